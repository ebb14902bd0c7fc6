# Quick start: `make run` (default experiment) and `make test` (test suite). Both create .venv when missing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
DATA ?= $(abspath ../shared/datasets)
export RETRIEVAL_LAB_DATA ?= $(DATA)
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: run test test-slow test-all lint bench clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[cpu,dev]'
	touch $@

run: $(BIN)/.installed
	$(BIN)/python run.py

test: $(BIN)/.installed
	$(BIN)/python -m pytest -q

lint: $(BIN)/.installed
	$(BIN)/lint-imports --no-cache

test-slow: $(BIN)/.installed
	$(BIN)/python -m pytest -q -m slow || [ $$? -eq 5 ]

test-all: $(BIN)/.installed
	$(BIN)/python -m pytest -q -m "slow or not slow"

bench: $(BIN)/.installed
	$(BIN)/python -m benchmarks.run all

clean:
	rm -rf outputs multirun wandb
