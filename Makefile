# Concord: every command a developer or CI needs. `make run` and `make test` do their own set-up.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Nothing may try to leave the machine: no SAM telemetry, no instance-metadata probing, dummy creds.
export SAM_CLI_TELEMETRY := 0
export AWS_EC2_METADATA_DISABLED := true
export AWS_ACCESS_KEY_ID := testing
export AWS_SECRET_ACCESS_KEY := testing
export AWS_DEFAULT_REGION := us-east-1
export PYTHONDONTWRITEBYTECODE := 1
# The concord package (the layer) and the repo's own packages (local, bench, tests) import from here,
# as in Lambda's /opt/python: set for every target, so nothing needs exporting in the shell first.
export PYTHONPATH := $(CURDIR)/layers/concord:$(CURDIR)

PYENV_ROOT ?= $(HOME)/.pyenv
# Lambda runs python3.12, so the dev venv and `sam build` use 3.12 too (pyenv has it on this machine kind).
PY312 ?= $(firstword $(wildcard $(PYENV_ROOT)/versions/3.12*/bin/python3.12) $(shell command -v python3.12))
PY_SAM ?= $(shell command -v python3)
VENV := .venv
SAM_VENV := .venv-sam
PY := $(VENV)/bin/python
SAM := PATH="$(dir $(PY312)):$$PATH" $(SAM_VENV)/bin/sam
STAMP := .local/stamps
B ?=
# Where the local AWS half listens: 127.0.0.1, or e.g. 0.0.0.0 for a function in a Docker container.
BIND ?= 127.0.0.1

.PHONY: help deps lint types fmt sam-validate sam-build test test-unit test-integration test-e2e run bench clean

help:
	@echo "make run    start the whole system on this machine (Ctrl-C stops it; BIND=0.0.0.0 for sam local)"
	@echo "make test   install what is needed, lint, type-check, validate and build the SAM app, run every test"
	@echo "make bench  run every benchmark (B=local|core|ingress|worker|catchup|e2e for one)"

# --- set-up (each step re-runs only when its inputs change)

$(STAMP):
	mkdir -p $(STAMP)

$(STAMP)/python: pyproject.toml layers/concord/requirements.txt | $(STAMP)
	@test -n "$(PY312)" || { echo "python3.12 not found: install it (pyenv install 3.12) or set PY312=/path/to/python3.12"; exit 1; }
	test -x $(PY) || $(PY312) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r layers/concord/requirements.txt --group dev
	touch $@

$(STAMP)/node: package.json package-lock.json | $(STAMP)
	@command -v npm >/dev/null || { echo "npm not found: apt-get install -y nodejs npm"; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(STAMP)/java: | $(STAMP)
	@command -v java >/dev/null || { apt-get update -q && apt-get install -y -q openjdk-17-jre-headless; }
	java -version 2>&1 | head -1
	touch $@

$(STAMP)/sam: | $(STAMP)
	test -x $(SAM_VENV)/bin/sam || $(PY_SAM) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install -q aws-sam-cli==1.170.0
	touch $@

deps: $(STAMP)/python $(STAMP)/node $(STAMP)/java

# --- quality gates

lint: $(STAMP)/python
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

types: $(STAMP)/python
	$(VENV)/bin/mypy layers/concord/concord

fmt: $(STAMP)/python
	$(VENV)/bin/ruff check --fix --unsafe-fixes -q .
	$(VENV)/bin/ruff format -q .

sam-validate: $(STAMP)/sam
	$(SAM) validate --lint

sam-build: $(STAMP)/sam
	$(SAM) build --parallel

# --- tests

test: deps lint types sam-validate sam-build
	$(PY) -m pytest tests/unit -q -p no:cacheprovider
	$(PY) -m pytest tests/integration tests/contract tests/e2e -q -p no:cacheprovider

test-unit: $(STAMP)/python
	$(PY) -m pytest tests/unit -q -p no:cacheprovider

test-integration: deps
	$(PY) -m pytest tests/integration tests/contract -q -p no:cacheprovider

test-e2e: deps
	$(PY) -m pytest tests/e2e -q -p no:cacheprovider

# --- the system on one machine

run: deps
	$(PY) -m local.run --bind $(BIND)

bench: deps
	@if [ -n "$(B)" ]; then $(PY) -m bench.$(B); else for b in local core ingress worker catchup e2e; do \
	  if [ -f bench/$$b.py ]; then $(PY) -m bench.$$b || exit 1; else echo "bench $$b: not built yet"; fi; done; fi

clean:
	rm -rf .aws-sam .local .mypy_cache .ruff_cache .pytest_cache
