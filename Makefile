# VM-Desk: `make demo` and `make test` set everything up themselves.
ARCH ?= aarch64
VENV := .venv
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: setup test demo lint bench clean

setup:
	@bash scripts/setup.sh

test: setup
	$(VENV)/bin/pytest $(PYTEST_ARGS)

demo: setup
	$(VENV)/bin/vmdesk demo --arch $(ARCH)

# Every benchmark, about 20 minutes (bench/README.md); e.g. BENCH_ARGS="--only P3,P4".
bench: setup
	$(VENV)/bin/python -m bench $(BENCH_ARGS)

lint: setup
	$(VENV)/bin/ruff check src tests tests_macos bench
	$(VENV)/bin/ruff format --check src tests tests_macos bench
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
