# SignalStack — `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: help setup lint format typecheck test test-unit test-integration demo bench clean distclean

help: ## Show this help
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'

setup: ## Install the venv and every real component (Kafka, Spark connector, TimescaleDB, Prometheus, helm, kubeconform); idempotent
	@bash scripts/setup.sh

lint: setup ## ruff (lint + format check) and mypy (the package, strict; the bench scripts)
	$(VENV)/bin/ruff check services tests bench spark-apps
	$(VENV)/bin/ruff format --check services tests bench spark-apps
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy bench

format: ## Apply ruff fixes and formatting
	$(VENV)/bin/ruff check --fix services tests bench spark-apps
	$(VENV)/bin/ruff format services tests bench spark-apps

test: setup lint ## Set up, lint, then run the whole suite (unit, integration, slow: all of it)
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: setup ## Only the fast unit tests
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-integration: setup ## Only the tests against the real servers
	$(PY) -m pytest -m integration $(PYTEST_ARGS)

demo: ## Run the pipeline on the embedded default (Python 3.11 only: no root, JDK, Maven, Go or API key)
	@bash scripts/setup.sh demo
	$(VENV)/bin/signalstack demo

bench: setup ## Run every benchmark in bench/ (writes bench/results/*.json)
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean: ## Remove caches of the Python tools (keeps the set-up cache)
	rm -rf .pytest_cache .mypy_cache .ruff_cache .hypothesis

distclean: clean ## Remove the venv and the set-up cache too
	rm -rf $(VENV) .cache
