# Two entry points for a fresh machine: `make run` and `make test`. Both are idempotent:
# the venv is (re)installed only when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck pytest clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/quantdesk

lint: $(STAMP)
	$(BIN)/ruff check app tests benchmarks main.py
	$(BIN)/ruff format --check app tests benchmarks main.py

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	QT_QPA_PLATFORM=offscreen HF_HUB_DISABLE_TELEMETRY=1 $(BIN)/python -m pytest

test: lint typecheck pytest

clean:
	rm -rf $(VENV) build *.egg-info
