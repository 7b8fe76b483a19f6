# MIA — the two commands of a fresh machine are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.mia-setup
# This workplace keeps the CPU build of torch in a local wheel directory; use it when present.
WHEELS := $(wildcard /opt/wheels)
PIP := $(BIN)/python -m pip --disable-pip-version-check
PIP_FLAGS := $(if $(WHEELS),--find-links $(WHEELS),)
export MIA_HOME ?= $(CURDIR)/.mia

.PHONY: setup demo ui test lint type imports unit bench audit lock clean

setup: $(STAMP)  ## create .venv and install the pinned stack (idempotent)

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet "$$(grep -E '^pip==' requirements.lock)"
	$(PIP) install --quiet $(PIP_FLAGS) -r requirements.lock
	$(PIP) install --quiet --no-deps --no-build-isolation -e .
	$(PIP) check
	@touch $@
	@echo "setup done: $(VENV) matches requirements.lock"

demo: setup  ## the main job on embedded defaults (files under MIA_HOME): data, retrain DAG, replay
	$(BIN)/mia demo

ui: setup  ## the Airflow UI (:8080) and the MLflow UI (:5000) of MIA_HOME until Ctrl-C
	$(BIN)/mia ui

test: setup lint type imports  ## lint, type-check, import rules, then every test CI runs
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check .

type: setup
	$(BIN)/mypy

imports: setup
	$(BIN)/lint-imports

bench: setup  ## benchmarks -> tests/benchmarks/results/*.json
	$(BIN)/python -m tests.benchmarks

audit: setup  ## the locked pins against PyPI's vulnerability data (tools/audit-ignore.yaml)
	$(BIN)/python -m tools.audit_deps --json $(MIA_HOME)/reports/audit.json

lock:  ## re-resolve requirements.in into requirements.lock in a scratch venv
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet --upgrade pip setuptools wheel
	.venv-lock/bin/python -m pip install --quiet $(PIP_FLAGS) -r requirements.in
	.venv-lock/bin/python -m pip check
	{ sed -n '1,3p' requirements.lock; .venv-lock/bin/python -m pip freeze --all | sort -f; } > requirements.lock.new
	mv requirements.lock.new requirements.lock && rm -rf .venv-lock

clean:
	rm -rf $(VENV) .mia .pytest_cache .mypy_cache .ruff_cache
