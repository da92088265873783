# Two entry points that work on a fresh machine: `make demo` and `make test`.
# Each creates .venv and installs the package on first use.
PYTHON ?= python3
VENV ?= .venv
TORCH_VERSION ?= 2.13.0
# Where a local torch wheel lies (the CPU build on our CI machines), use it.
WHEELS ?= /opt/wheels
FIND_LINKS := $(if $(wildcard $(WHEELS)/torch-*.whl),--find-links $(WHEELS),)
BIN := $(VENV)/bin
STAMP := $(VENV)/.fcnseg-installed

.PHONY: demo test lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(FIND_LINKS) "torch==$(TORCH_VERSION)"
	$(BIN)/python -m pip install --quiet $(FIND_LINKS) -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/fcnseg demo

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks hubconf.py
	$(BIN)/python -m pytest -q -n auto --maxprocesses 4

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks hubconf.py
	$(BIN)/ruff format --check src tests benchmarks hubconf.py

clean:
	rm -rf $(VENV) build src/*.egg-info
