# Every target creates .venv on first use (and refreshes it when pyproject.toml or
# constraints.txt change), so a fresh clone needs nothing but `make train` / `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=
ARGS ?=

.PHONY: help install train test test-fast lint format clean

help:
	@echo "make train      train the default model on the bundled BTCUSDT candles (no network)"
	@echo "make test       the whole test suite CI runs"
	@echo "make test-fast  the suite without tests marked slow"
	@echo "make lint       ruff check + format check"

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev,exchange,serve]" -c constraints.txt
# hydra-optuna-sweeper 1.3.0 (the latest) pins optuna<3, and optuna 2.x's sqlite storage
# breaks under SQLAlchemy 2 ("assert version is not None"). optuna 5 (from pyproject) works
# with it, in-memory and sqlite, so install the plugin without its pins; `pip check` then
# reports "hydra-optuna-sweeper 1.3.0 has requirement optuna<3.0.0": expected, harmless.
	$(PY) -m pip install -q --no-deps "hydra-optuna-sweeper==1.3.0"
	@touch $(STAMP)

install: $(STAMP)

train: $(STAMP)
	$(PY) train.py $(ARGS)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src tests

format: $(STAMP)
	$(VENV)/bin/ruff format src tests
	$(VENV)/bin/ruff check --fix src tests

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache
