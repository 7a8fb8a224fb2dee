# GenProp — every target installs what it needs into .venv first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

export OMP_NUM_THREADS ?= 2
export RAY_DISABLE_USAGE_STATS := 1
export HF_HUB_OFFLINE := 1

.DEFAULT_GOAL := help

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# The CPU wheel first: a looser pin would pull a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install the project (CPU torch)

lint: $(STAMP) ## ruff check + format check + import-linter layering contracts
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

test: lint ## Lint, then the fast CPU test suite
	$(BIN)/pytest $(PYTEST_ARGS)

test-slow: $(STAMP) ## The slow tests too
	$(BIN)/pytest -m 'not gpu' $(PYTEST_ARGS)

test-gpu: $(STAMP) ## GPU tests (needs CUDA)
	$(BIN)/pytest -m gpu $(PYTEST_ARGS)

format: $(STAMP) ## Apply ruff fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean: ## Remove outputs (keeps .venv)
	rm -rf outputs multirun .pytest_cache .ruff_cache

.PHONY: help install lint test test-slow test-gpu format clean
