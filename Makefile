# Wine MLOps reference stack. `make help` lists the targets.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ENV_FILE ?= .env
# Where `make env` writes each secret of $(ENV_FILE) as a file for compose (see .env.example).
SECRETS_DIR ?= .secrets
export SECRETS_DIR
# A digest of the secret files (not of any one secret): compose labels the containers with it,
# so that a changed secret recreates them on the next `make up` (compose does not look into
# secret files). Expanded when a recipe runs, after `make env` has written the files.
export SECRETS_DIGEST = $(shell cat $(SECRETS_DIR)/* 2>/dev/null | sha256sum | cut -c1-16)
REPORTS ?= reports
# The stack's MLflow as seen from the host: its published port is MLFLOW_PORT of $(ENV_FILE).
MLFLOW_PORT ?= $(or $(shell sed -n 's/^MLFLOW_PORT=\([0-9][0-9]*\).*/\1/p' $(ENV_FILE) 2>/dev/null | tail -n 1),5000)
MLFLOW_TRACKING_URI ?= http://127.0.0.1:$(MLFLOW_PORT)
COMPOSE := docker compose --env-file $(ENV_FILE)

# Long-running services of the stack (model-training is a one-shot job). The serving ones
# are started after training: they are ready only once a champion model exists.
SERVICES := mlflow-db mlflow-server mlflow-exporter model-training-webhook prometheus \
  alertmanager grafana
SERVING := prediction-api

# AIRGAP=1: build and use local stand-ins of the upstream base images (airgap/build.sh),
# for machines without a container registry. Grafana and Jenkins have none: no Debian or
# PyPI package exists for them, so Grafana is left out (and `make deploy` says so).
AIRGAP ?= 0
export AIRGAP
ifeq ($(AIRGAP),1)
SERVICES := $(filter-out grafana,$(SERVICES))
export PYTHON_IMAGE := wine-mlops-airgap/python:3.11
export POSTGRES_IMAGE := wine-mlops-airgap/postgres:15
export PROMETHEUS_IMAGE := wine-mlops-airgap/prometheus:2
export ALERTMANAGER_IMAGE := wine-mlops-airgap/alertmanager:0.25
# The classic builder: machines without a registry usually have no buildx either.
export DOCKER_BUILDKIT := 0
AIRGAP_DEPS := airgap-images
endif
GIT_COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null)
export GIT_COMMIT

.PHONY: help install lock env lint test e2e bench up build train-stack retrain train dev urls down \
        destroy-data logs ps airgap-images clean dashboards backup restore

help: ## Show this help
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

# The workspace: one package per service, the shared one and the dev-only devstack (tools/),
# each folder with its pyproject.toml, listed in the root pyproject.toml; one lockfile for all.
PACKAGES := common mlflow-server model-training mlflow-exporter prediction-api tools
NO_EMIT := $(foreach p,wine-mlops-common wine-mlflow-server wine-model-training wine-devstack \
             wine-mlflow-exporter wine-prediction-api,--no-emit-package $(p))

# The whole lockfile (every package's dependencies, the build backend and the dev tools), each
# file checked against the lock's hashes, then the workspace packages, editable, without
# dependencies and built by the locked backend (--no-build-isolation: nothing fetched
# unpinned). `pip check` fails on anything a package needs that the lock lacks.
$(BIN)/.installed: pyproject.toml $(PACKAGES:%=%/pyproject.toml) requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation $(PACKAGES:%=-e %)
	$(BIN)/pip check
	touch $@

install: $(BIN)/.installed ## Create .venv with the pinned dependencies, dev tools included (needs Python 3.11: PYTHON=python3.11)

# uv keeps the pins of the existing lockfile that still resolve. The lockfile never names a
# package index: index options are dropped, and any address left fails the target. The
# workspace packages themselves are not locked (they are installed from their folders).
lock: $(BIN)/.installed ## Re-resolve requirements.lock (with hashes) from the pyproject.toml files
	$(BIN)/uv pip compile pyproject.toml --group build --group dev --universal \
	  --python-version 3.11 --generate-hashes --no-header --quiet $(NO_EMIT) -o requirements.lock
	sed -i -E '/^(-i|--index-url|--extra-index-url|-f|--find-links)[ =]/d' requirements.lock
	@if grep -n '://' requirements.lock; then echo "requirements.lock names an address" >&2; exit 1; fi

env: ## Create or complete .env (random secrets, never changes a set value); write .secrets/
	$(PYTHON) tools/init_env.py --env $(ENV_FILE) --example .env.example --secrets $(SECRETS_DIR)

# Every Dockerfile of the repository; any hadolint finding fails (.hadolint.yaml).
DOCKERFILES = $(wildcard Dockerfile */Dockerfile */*/Dockerfile)

lint: $(BIN)/.installed ## ruff (lint + format check), mypy and hadolint (Dockerfiles)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy common model-training mlflow-server mlflow-exporter prediction-api grafana tests \
	  tools bench
	$(BIN)/hadolint --config .hadolint.yaml $(DOCKERFILES)

test: $(BIN)/.installed ## Unit and integration tests (real mlflow server, SQLite and PostgreSQL)
	$(BIN)/pytest tests --ignore=tests/e2e --ignore=tests/smoke --junitxml=$(REPORTS)/junit-test.xml

e2e: $(BIN)/.installed $(AIRGAP_DEPS) ## The compose stack end to end, in real containers
	$(BIN)/pytest tests/e2e --junitxml=$(REPORTS)/junit-e2e.xml

bench: $(BIN)/.installed ## Benchmarks: print figures and compare with a baseline
	$(BIN)/python bench/run.py

dashboards: $(BIN)/.installed ## Regenerate grafana/dashboards/*.json from grafana/dashboards_as_code/
	$(BIN)/python -m grafana.dashboards_as_code

airgap-images: ## Build local stand-ins for the upstream base images from Debian packages
	bash airgap/build.sh python postgres prometheus alertmanager

build: env $(AIRGAP_DEPS) ## Build the images
	$(COMPOSE) build

up: build ## Build, start, wait until healthy, train, print the URLs (AIRGAP=1 without a registry)
	$(MAKE) --no-print-directory deploy train-stack serve urls

train-stack: env ## Run the training container against the stack's MLflow
	$(COMPOSE) run --rm -T model-training $(TRAIN_ARGS)

retrain: env ## Retrain now on the data plus the labelled production rows (what a retraining alert starts)
	$(COMPOSE) run --rm -T --entrypoint python3 model-training-webhook -m model_training --with-feedback $(TRAIN_ARGS)

train: $(BIN)/.installed ## Train as a local process against MLFLOW_TRACKING_URI (ARGS="--data f.csv")
	MLFLOW_TRACKING_URI=$(MLFLOW_TRACKING_URI) $(BIN)/python -m model_training $(ARGS)

dev: $(BIN)/.installed ## Run the services as local processes on SQLite, no Docker (Ctrl-C stops)
	$(BIN)/python -m devstack

urls: ## Print the URLs of the running stack
	@echo "MLflow UI and API:  http://$$($(COMPOSE) port mlflow-server 5000)  (press \"Model training\" in its sidebar to see the runs)"
	@echo "Prediction form:    http://$$($(COMPOSE) port prediction-api 7654)/  (API docs: /docs)"
	@echo "MLflow exporter:    http://$$($(COMPOSE) port mlflow-exporter 8000)/metrics"
	@echo "Prometheus:         http://$$($(COMPOSE) port prometheus 9090)"
	@echo "Alertmanager:       http://$$($(COMPOSE) port alertmanager 9093)  (alerts that retrain: model-training-webhook)"
	@if grafana="$$($(COMPOSE) port grafana 3000 2>/dev/null)"; then echo "Grafana:            http://$$grafana  (user admin)"; \
	 else echo "Grafana:            not running (never with AIRGAP=1)"; fi

down: ## Stop the stack; keeps the database, artifacts and dashboards
	$(COMPOSE) down

destroy-data: ## Stop the stack AND delete its volumes (database, artifacts, metrics, Grafana): irreversible
	$(COMPOSE) down --volumes --remove-orphans

# Backups (tools/backup.py): one archive of the databases, artifacts and Grafana's data.
BACKUP_DIR ?= backups

backup: $(BIN)/.installed env ## Back up the running stack: one timestamped archive in backups/
	$(BIN)/python tools/backup.py --env-file $(ENV_FILE) backup --dir $(BACKUP_DIR)

restore: $(BIN)/.installed env ## Restore BACKUP=backups/<file>.tar onto an empty stack (make destroy-data)
	@if [ -z "$(BACKUP)" ]; then echo "usage: make restore BACKUP=$(BACKUP_DIR)/<file>.tar" >&2; exit 2; fi
	$(BIN)/python tools/backup.py --env-file $(ENV_FILE) restore $(BACKUP)

logs: ## Follow the stack's logs
	$(COMPOSE) logs --follow --tail=100

ps: ## Show the stack's containers and their health
	$(COMPOSE) ps

clean: ## Remove local build, test and dev state (not the Docker volumes)
	rm -rf $(REPORTS) .dev .pytest_cache .ruff_cache .mypy_cache

# --- Continuous delivery: the Jenkinsfile's stages, each one make target ------------------
# `make ci` runs them in the Jenkinsfile's order. COMPOSE_PROJECT_NAME (the Jenkinsfile sets
# wine-mlops) scopes every compose command; nothing here touches another project.
NPM_TOOLS := tools/npm
GROOVY_LINT := $(NPM_TOOLS)/node_modules/.bin/npm-groovy-lint
CI_MAKEFILE := $(firstword $(MAKEFILE_LIST))
CI_STAGES := clean-reports install lint lint-jenkins test build deploy train-stack serve smoke \
             summary
# Host folder mounted at the same path in the jenkins-agent container (jenkins/agent/Dockerfile).
JENKINS_WORKSPACES ?= /var/lib/wine-mlops-ci/workspace

.PHONY: ci clean-reports lint-jenkins deploy serve smoke summary logs-archive logs-dump clean-oneoff \
        jenkins-up

ci: ## Run the Jenkinsfile's stages locally, in order (stops at the first failure)
	@for stage in $(CI_STAGES); do \
	  printf '\n==> make %s\n' "$$stage"; \
	  $(MAKE) --no-print-directory -f $(CI_MAKEFILE) $$stage || { $(MAKE) --no-print-directory -f $(CI_MAKEFILE) logs-archive logs-dump || true; exit 1; }; \
	done
	@$(MAKE) --no-print-directory -f $(CI_MAKEFILE) logs-archive clean-oneoff

clean-reports: ## Empty the reports folder (test reports, smoke results, archived logs)
	rm -rf $(REPORTS) && mkdir -p $(REPORTS)

$(GROOVY_LINT): $(NPM_TOOLS)/package.json $(NPM_TOOLS)/package-lock.json
	npm ci --prefix $(NPM_TOOLS) --no-audit --no-fund --loglevel=error
	touch $@

lint-jenkins: $(GROOVY_LINT) ## npm-groovy-lint on the Jenkinsfile (offline, the machine's Java)
	$(GROOVY_LINT) --noserver --config jenkins/.groovylintrc.json --failon info Jenkinsfile

deploy: env ## Start or update the platform services; wait until healthy (no build)
	@if [ "$(AIRGAP)" = 1 ]; then echo "AIRGAP=1: grafana has no air-gapped stand-in; not started"; fi
	$(COMPOSE) up --detach --wait --no-build $(SERVICES)

serve: env ## Start or update the serving services; wait until they serve a champion
	$(COMPOSE) up --detach --wait --no-build $(SERVING)

# tests/smoke: one pytest test per check of a deployed service, against the URLs of
# `docker compose port`; a service the stack left out is skipped (grafana with AIRGAP=1).
smoke: $(BIN)/.installed env ## Smoke-test the running stack (reports/smoke-junit.xml, summary.txt)
	ENV_FILE=$(ENV_FILE) $(BIN)/pytest tests/smoke --junitxml=$(REPORTS)/smoke-junit.xml

summary: ## Print the last smoke test's summary (champion, accuracy, URLs)
	@cat $(REPORTS)/summary.txt

logs-archive: ## Write the project's compose logs to reports/compose-logs.txt
	@mkdir -p $(REPORTS)
	$(COMPOSE) ps --all > $(REPORTS)/compose-ps.txt 2>&1 || true
	$(COMPOSE) logs --no-color --timestamps > $(REPORTS)/compose-logs.txt 2>&1 || true

logs-dump: ## Print the state and the last log lines of the project's containers (after a failure)
	-$(COMPOSE) ps --all
	-$(COMPOSE) logs --no-color --timestamps --tail=200

clean-oneoff: ## Remove this project's one-off containers (an interrupted train-stack), nothing else
	@project="$${COMPOSE_PROJECT_NAME:-wine-mlops}"; \
	ids="$$(docker ps --all --quiet --filter "label=com.docker.compose.project=$$project" \
	        --filter label=com.docker.compose.oneoff=True)"; \
	if [ -n "$$ids" ]; then echo "removing one-off containers of $$project: $$ids"; docker rm --force $$ids; fi

jenkins-up: env ## Build and start Jenkins and its build agent (profile ci); wait until healthy
	@grep -q '^JENKINS_REPO_URL=.' $(ENV_FILE) || { echo "set JENKINS_REPO_URL in $(ENV_FILE): the git URL Jenkins builds" >&2; exit 1; }
	install -d -o 1000 -g 1000 $(JENKINS_WORKSPACES)
	DOCKER_GID="$$(stat -c %g /var/run/docker.sock)" $(COMPOSE) --profile ci up --detach --build --wait \
	  jenkins jenkins-agent
	@echo "Jenkins: http://127.0.0.1:$${JENKINS_PORT:-8080} (user admin, JENKINS_ADMIN_PASSWORD of $(ENV_FILE)); builds run on jenkins-agent"
