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

lint: setup ## ruff (lint + format check) and mypy (the package, strict; the bench scripts and the dashboards)
	$(VENV)/bin/ruff check services tests bench spark-apps grafana charts/signalstack/hack
	$(VENV)/bin/ruff format --check services tests bench spark-apps grafana charts/signalstack/hack
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy bench grafana charts/signalstack/hack/schemas.py

format: ## Apply ruff fixes and formatting
	$(VENV)/bin/ruff check --fix services tests bench spark-apps grafana charts/signalstack/hack
	$(VENV)/bin/ruff format services tests bench spark-apps grafana charts/signalstack/hack

test: setup lint ## Set up, lint, then run the whole suite (unit, integration, slow: all of it)
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: setup ## Only the fast unit tests
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-integration: setup ## Only the tests against the real servers
	$(PY) -m pytest -m integration $(PYTEST_ARGS)

demo: ## Run the pipeline on the embedded default (Python 3.11 only: no root, JDK, Maven, Go or API key)
	@bash scripts/setup.sh demo
	$(VENV)/bin/signalstack demo

.PHONY: dashboards
dashboards: ## Generate the Grafana dashboards (grafana/, foundation SDK) into the monitoring chart's files
	$(PY) -m grafana

.PHONY: images
images: ## Build every container image (signalstack/<target>:dev; a private dockerd if none runs; IMAGE_TAG=...)
	@bash scripts/docker.sh images

bench: setup ## Run every benchmark in bench/ (writes bench/results/*.json)
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean: ## Remove caches of the Python tools (keeps the set-up cache)
	rm -rf .pytest_cache .mypy_cache .ruff_cache .hypothesis

distclean: clean ## Remove the venv and the set-up cache too
	rm -rf $(VENV) .cache

# --- The cluster path (docs/components/cluster.md): kind, the operators, skaffold ---------------
.PHONY: kind-up operators deploy port-forward kind-down
SKAFFOLD ?= skaffold
DEFAULT_REPO ?= localhost:5001

kind-up: ## kind cluster `signalstack` (kind-config.yaml) and its local registry on localhost:5001
	@bash manifests/cluster.sh kind-up

operators: ## Namespace + Strimzi, spark-operator, kube-prometheus-stack (pinned) into the current context; KSERVE=1 METRICS_SERVER=1 add those
	@bash manifests/operators.sh

deploy: ## Install the chart: on the local cluster (`make cluster-up`, the ci profile) when it runs, else on kind (skaffold run -p kind via $(DEFAULT_REPO))
	@if bash scripts/cluster.sh status; then bash scripts/cluster.sh deploy; \
	else PATH="$(CURDIR)/.cache/bin:$$PATH" $(SKAFFOLD) run -p kind --default-repo=$(DEFAULT_REPO); fi

port-forward: ## Grafana on :3000, serving on :8080, MLflow on :5000 (Ctrl-C stops)
	@bash manifests/cluster.sh port-forward

kind-down: ## Delete the kind cluster and its registry
	@bash manifests/cluster.sh kind-down

# --- A real single-node cluster on this machine (docs/components/cluster.md): no kind, no pulls ----
.PHONY: cluster-up cluster-down
cluster-up: images ## Build (once) and start Kubernetes on this machine (root): control plane, kubelet, containerd, CNI bridge, CoreDNS; our images loaded
	@bash scripts/cluster.sh up

cluster-down: ## Stop the local cluster and remove everything it made (processes, mounts, routes, iptables chains, cgroups, dirs)
	@bash scripts/cluster.sh down
