# VM-Desk: `make demo` and `make test` set everything up themselves.
ARCH ?= aarch64
VENV := .venv
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: setup test demo lint bench reliability clean

setup:
	@bash scripts/setup.sh

test: setup
	$(VENV)/bin/pytest $(PYTEST_ARGS)

demo: setup
	$(VENV)/bin/vmdesk demo --arch $(ARCH)

# Every benchmark, about 20 minutes (bench/README.md); e.g. BENCH_ARGS="--only P3,P4".
bench: setup
	$(VENV)/bin/python -m bench $(BENCH_ARGS)

# The full reliability campaign (tests/reliability/, about 35 minutes): RELIABILITY.md.
RESULTS := build/reliability.jsonl
reliability: setup
	@mkdir -p build && rm -f $(RESULTS)
	status=0; VMDESK_CAMPAIGN=full VMDESK_CAMPAIGN_RESULTS=$(RESULTS) \
		$(VENV)/bin/pytest tests/reliability -q -p no:cacheprovider || status=$$?; \
	$(VENV)/bin/python -m tests.reliability.report $(RESULTS) > RELIABILITY.md; exit $$status

lint: setup
	$(VENV)/bin/ruff check src tests tests_macos bench
	$(VENV)/bin/ruff format --check src tests tests_macos bench
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
