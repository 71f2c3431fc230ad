# Wine MLOps reference stack. `make help` lists the targets.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ENV_FILE ?= .env
REPORTS ?= reports
MLFLOW_TRACKING_URI ?= http://127.0.0.1:5000
COMPOSE := docker compose --env-file $(ENV_FILE)

# AIRGAP=1: build and use local stand-ins of the upstream base images (airgap/build.sh),
# for machines without a container registry. Grafana and Jenkins have none.
AIRGAP ?= 0
export AIRGAP
ifeq ($(AIRGAP),1)
export PYTHON_IMAGE := wine-mlops-airgap/python:3.11
export POSTGRES_IMAGE := wine-mlops-airgap/postgres:15
export PROMETHEUS_IMAGE := wine-mlops-airgap/prometheus:2
# The classic builder: machines without a registry usually have no buildx either.
export DOCKER_BUILDKIT := 0
AIRGAP_DEPS := airgap-images
endif
GIT_COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null)
export GIT_COMMIT

# Long-running services of the stack (model-training is a one-shot job).
SERVICES := mlflow-db mlflow-server

.PHONY: help install lock env lint test e2e bench up build train-stack train dev urls down \
        destroy-data logs ps airgap-images clean

help: ## Show this help
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(BIN)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c requirements.lock -e '.[dev]'
	touch $@

install: $(BIN)/.installed ## Create .venv with the pinned dependencies (dev tools included)

lock: $(BIN)/.installed ## Re-resolve requirements.lock from pyproject.toml
	$(BIN)/uv pip compile pyproject.toml --all-extras --universal --python-version 3.11 \
	  --no-header --quiet -o requirements.lock

$(ENV_FILE):
	tools/init-env.sh $(ENV_FILE) .env.example

env: $(ENV_FILE) ## Create .env from .env.example with random secrets (never overwrites)

lint: $(BIN)/.installed ## ruff (lint + format check) and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy common model-training mlflow-server tests tools

test: $(BIN)/.installed ## Unit and integration tests (real mlflow server, SQLite and PostgreSQL)
	$(BIN)/pytest tests --ignore=tests/e2e --junitxml=$(REPORTS)/junit-test.xml

e2e: $(BIN)/.installed $(AIRGAP_DEPS) ## The compose stack end to end, in real containers
	$(BIN)/pytest tests/e2e --junitxml=$(REPORTS)/junit-e2e.xml

bench: $(BIN)/.installed ## Benchmarks: print figures and compare with a baseline
	$(BIN)/python bench/run.py

airgap-images: ## Build local stand-ins for the upstream base images from Debian packages
	bash airgap/build.sh python postgres prometheus

build: $(ENV_FILE) $(AIRGAP_DEPS) ## Build the images
	$(COMPOSE) build

up: build ## Build, start, wait until healthy, train, print the URLs
	$(COMPOSE) up --detach --wait $(SERVICES)
	$(MAKE) --no-print-directory train-stack
	$(MAKE) --no-print-directory urls

train-stack: $(ENV_FILE) ## Run the training container against the stack's MLflow
	$(COMPOSE) run --rm -T model-training $(TRAIN_ARGS)

train: $(BIN)/.installed ## Train as a local process against MLFLOW_TRACKING_URI (ARGS="--data f.csv")
	MLFLOW_TRACKING_URI=$(MLFLOW_TRACKING_URI) $(BIN)/python -m model_training $(ARGS)

dev: $(BIN)/.installed ## Run the services as local processes on SQLite, no Docker (Ctrl-C stops)
	$(BIN)/python tools/dev.py

urls: ## Print the URLs of the running stack
	@echo "MLflow UI and API:  http://127.0.0.1:$${MLFLOW_PORT:-5000}"

down: ## Stop the stack; keeps the database, artifacts and dashboards
	$(COMPOSE) down

destroy-data: ## Stop the stack AND delete its volumes (database, artifacts): irreversible
	$(COMPOSE) down --volumes --remove-orphans

logs: ## Follow the stack's logs
	$(COMPOSE) logs --follow --tail=100

ps: ## Show the stack's containers and their health
	$(COMPOSE) ps

clean: ## Remove local build, test and dev state (not the Docker volumes)
	rm -rf $(REPORTS) .dev .pytest_cache .ruff_cache .mypy_cache
