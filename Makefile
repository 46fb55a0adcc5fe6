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
	$(PY) -m pip install -q -e ".[dev,exchange]" -c constraints.txt
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
