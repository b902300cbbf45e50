# The project's user interface: `make help` lists every target.
# LOCAL=1 runs a job from the local .venv instead of a container.

SHELL := bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
LOCAL ?=
SCRIPTS := scripts/train.py scripts/evaluate.py

# uv when it is installed (fast), pip otherwise: same pinned files either way.
UV := $(shell command -v uv 2>/dev/null)
ifdef UV
  MAKE_VENV := uv venv -q --python $(PYTHON) $(VENV)
  INSTALL := VIRTUAL_ENV=$(VENV) uv pip install -q -r requirements-dev.txt
else
  MAKE_VENV := $(PYTHON) -m venv $(VENV)
  INSTALL := $(BIN)/pip install -q -r requirements-dev.txt
endif

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "  LOCAL=1 runs train/evaluate/notebooks/serve from $(VENV) instead of the containers."

$(BIN)/.installed: requirements-dev.txt compose/api/requirements.uv.txt compose/jupyter/requirements.uv.txt
	@test -x $(BIN)/python || $(MAKE_VENV)
	$(INSTALL)
	@touch $@

.PHONY: venv
venv: $(BIN)/.installed ## create .venv with the pinned packages

ifdef LOCAL
RUN_JOB := $(BIN)/python
JOB_DEPS := venv
else
RUN_JOB = $(error containers are not set up yet; run `make $@ LOCAL=1`)
JOB_DEPS :=
endif

.PHONY: train
train: $(JOB_DEPS) ## train the three models into models/
	$(RUN_JOB) scripts/train.py

.PHONY: evaluate
evaluate: $(JOB_DEPS) ## evaluate every model in models/, write models/evaluation/
	$(RUN_JOB) scripts/evaluate.py

.PHONY: notebooks
notebooks: $(JOB_DEPS) ## sync notebooks/*.ipynb with scripts/*.py (newest side wins)
	$(RUN_JOB) -m jupytext --sync $(SCRIPTS)

.PHONY: serve
serve: $(JOB_DEPS) ## serve the API on PORT (default 8000)
	$(BIN)/uvicorn app.main:app --host 127.0.0.1 --port $(PORT)

.PHONY: test
test: venv ## run the test suite (no Docker needed)
	$(BIN)/python -m pytest -m "not compose and not soak"
