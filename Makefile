# rotate: every target creates the virtual environment it needs.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev

.PHONY: demo test lint fmt bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
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
