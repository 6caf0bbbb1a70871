# VM-Desk: `make demo` and `make test` set everything up themselves.
ARCH ?= aarch64
VENV := .venv
PYTEST_ARGS ?=

.PHONY: setup test demo lint bench clean

setup:
	@bash scripts/setup.sh

test: setup
	$(VENV)/bin/pytest $(PYTEST_ARGS)

demo: setup
	$(VENV)/bin/vmdesk demo --arch $(ARCH)

bench: setup
	$(VENV)/bin/python bench/list_bench.py
	$(VENV)/bin/python bench/boot_bench.py
	$(VENV)/bin/python bench/storage_bench.py
	$(VENV)/bin/python bench/snapshot_bench.py
	$(VENV)/bin/python bench/share_bench.py

lint: setup
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
