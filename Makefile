# The project's user interface: `make help` lists every target.
# LOCAL=1 runs a job from the local .venv instead of a container.

SHELL := bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
WORKERS ?= 1
LOCAL ?=
SCRIPTS := scripts/train.py scripts/evaluate.py

# Containers: one compose project; the images run as the host user who calls make, so
# what they write to models/ and notebooks/ is that user's. JupyterLab refuses to run
# as root, so under root (sudo make up) they run as the checkout's owner, or as
# 1000:1000 when root owns it too. HOST_UID=... HOST_GID=... override.
COMPOSE_PROJECT_NAME ?= penguins
DOCKER_COMPOSE ?= docker compose
# REPLICAS=N above 1 runs N API containers behind HAProxy, which takes the API's port
# (compose/replicas.yml); 1 runs one API container that publishes it (compose/api-port.yml).
REPLICAS ?= 1
# HAProxy has a slot for each replica up to a limit, read from its config rather than repeated.
MAX_REPLICAS := $(shell sed -n 's/^ *server-template [^ ]* \([0-9]*\) .*/\1/p' compose/haproxy/haproxy.cfg)
SCALED := $(filter-out 1,$(REPLICAS))
API_SERVICE := $(if $(SCALED),haproxy,api)
COMPOSE_FILES := -f compose/docker-compose.yml
COMPOSE = $(DOCKER_COMPOSE) $(COMPOSE_FILES) -f compose/$(if $(SCALED),replicas.yml,api-port.yml) --env-file .env
# MONITORING=1 adds Prometheus (the compose profile `monitoring`) to `make up`.
MONITORING ?=
UP_PROFILES := $(if $(MONITORING),--profile monitoring)
# Stopping, listing and logs reach every service, whichever profiles and files started them.
COMPOSE_ALL = $(DOCKER_COMPOSE) $(COMPOSE_FILES) -f compose/replicas.yml --env-file .env --profile monitoring
# One API container publishes the port HAProxy held: HAProxy goes first (nothing when it is not running).
RELEASE_API_PORT = $(if $(SCALED),,$(COMPOSE_ALL) rm -sf haproxy)
WAIT_SECONDS ?= 180
HOST_UID ?= $(shell id -u)
HOST_GID ?= $(shell id -g)
ifeq ($(HOST_UID),0)
  HOST_UID := $(shell stat -c %u . 2>/dev/null || stat -f %u .)
  HOST_GID := $(shell stat -c %g . 2>/dev/null || stat -f %g .)
endif
ifeq ($(HOST_UID),0)
  HOST_UID := 1000
  HOST_GID := 1000
endif
export COMPOSE_PROJECT_NAME HOST_UID HOST_GID

# uv when it is installed (fast), pip otherwise: the same lock file either way, every
# package checked against its hash.
UV := $(shell command -v uv 2>/dev/null)
ifdef UV
  MAKE_VENV := uv venv -q --python $(PYTHON) $(VENV)
  # --compile-bytecode: imports stay fast even where PYTHONDONTWRITEBYTECODE is set
  INSTALL := VIRTUAL_ENV=$(VENV) uv pip install -q --compile-bytecode --require-hashes -r requirements-dev.lock
else
  MAKE_VENV := $(PYTHON) -m venv $(VENV)
  INSTALL := $(BIN)/pip install -q --require-hashes -r requirements-dev.lock
endif

# `make lock` resolves each requirements file into a lock file: every package, direct or
# not, pinned with the hashes of its files. Existing pins are kept unless a requirement
# changed; LOCK_FLAGS=--upgrade moves every unpinned dependency to its newest release.
# The images' locks target Python 3.11 on Linux. The venv's is universal: it installs on
# Linux, macOS and Windows (uvloop, which Windows lacks, is marked for the others; pip install
# --require-hashes -r requirements-dev.lock where make is missing). The Makefile itself needs a
# POSIX shell: Linux, macOS, or WSL on Windows.
LOCK_FLAGS ?=
LOCK := uv pip compile -q --generate-hashes --python-version 3.11 --custom-compile-command 'make lock' $(LOCK_FLAGS)
LINUX_LOCK := $(LOCK) --python-platform linux

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "  LOCAL=1 runs train/evaluate/notebooks/serve/routes from $(VENV) instead of the containers."

$(BIN)/.installed: requirements-dev.lock
	@test -x $(BIN)/python || $(MAKE_VENV)
	$(INSTALL)
	@touch $@

.PHONY: venv
venv: $(BIN)/.installed ## create .venv from requirements-dev.lock (pinned, hash-checked)

.PHONY: lock
lock: ## regenerate the lock files from the requirements files (needs uv and PyPI)
	@command -v uv >/dev/null || { echo "make lock needs uv (pip install uv)" >&2; exit 1; }
	$(LINUX_LOCK) compose/installer.txt -o compose/installer.lock
	$(LINUX_LOCK) compose/api/requirements.uv.txt -o compose/api/requirements.lock
	$(LINUX_LOCK) compose/jupyter/requirements.uv.txt -o compose/jupyter/requirements.lock
	$(LOCK) --universal requirements-dev.txt -o requirements-dev.lock
	$(LOCK) --universal scripts/mlserver.txt -o scripts/mlserver.lock

ifdef LOCAL
RUN_JOB := $(BIN)/python
JOB_DEPS := venv
else
# One-off containers of the jupyter service: same image, mounts and user as JupyterLab,
# no published ports, so they run beside a running stack. -T: no TTY needed.
RUN_JOB = $(COMPOSE) run --rm -T jupyter python
JOB_DEPS := jupyter-image
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
ifdef LOCAL
serve: venv ## start only the API (REPLICAS=N: N containers behind HAProxy); LOCAL=1: uvicorn in the foreground on PORT
	PORT=$(PORT) WEB_CONCURRENCY=$${WEB_CONCURRENCY:-1} $(BIN)/python -m app
else
serve: dotenv
	$(RELEASE_API_PORT)
	$(COMPOSE) up -d --build --scale api=$(REPLICAS) api $(if $(SCALED),haproxy)
	@$(call wait_healthy,api $(if $(SCALED),haproxy))
	@echo "API: http://$$($(COMPOSE) port $(API_SERVICE) 8000)/docs"
endif

.PHONY: test
test: venv ## run the test suite (no Docker needed), its files spread over the CPUs
	$(BIN)/python -m pytest -n auto --dist worksteal -m "not compose and not soak and not browser"

.PHONY: lint
lint: venv ## ruff (lint and format), mypy --strict over app/, tests/ and scripts/, the app's import contract
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache --no-logo

.PHONY: test-soak
test-soak: venv ## soak and fault tests: a live server under load while its models change (about a minute)
	$(BIN)/python -m pytest -m soak -s

# Where make drift-demo and make feedback-demo find the API: the stack's service from a one-off container, or this machine with LOCAL=1.
DEMO_URL ?= $(if $(LOCAL),http://127.0.0.1:$(PORT),http://api:8000)

# A demo runs in a one-off Jupyter container (or from the venv with LOCAL=1), with the token, when there is
# one: exported in the shell, else the one make up wrote to .env.
DEMO_NEEDS := $(if $(LOCAL),venv,jupyter-image)
define run_demo
$(if $(LOCAL),$(BIN)/python scripts/$(1) --url $(DEMO_URL),\
  API_TOKEN="$${API_TOKEN-$$(sed -n 's/^API_TOKEN=//p' .env | tail -n 1)}" \
  $(COMPOSE) run --rm -T -e API_TOKEN jupyter python scripts/$(1) --url $(DEMO_URL))
endef

.PHONY: drift-demo
drift-demo: $(DEMO_NEEDS) ## send the running API realistic, then shifted traffic, and print each feature's drift as it moves
	$(call run_demo,drift_demo.py)

.PHONY: feedback-demo
feedback-demo: $(DEMO_NEEDS) ## send the running API held-out records and their true labels late, then a label change and a shift, printing live and estimated accuracy against the reference
	$(call run_demo,feedback_demo.py)

# The store is read with the app's own module, so the container job runs in the API image (the Jupyter image has
# no database driver), with scripts/ and data/ mounted where it finds them: /srv beside app/, /shared beside models.
.PHONY: export-labelled
ifdef LOCAL
export-labelled: venv ## write the captured records that have a true label to data/labelled.csv, which make train adds
	$(BIN)/python scripts/export_labelled.py
else
export-labelled: api-image
	$(COMPOSE) run --rm -T --no-deps -v "$(CURDIR)/scripts:/srv/scripts:ro" -v "$(CURDIR)/data:/shared/data" \
	  api python scripts/export_labelled.py --out /shared/data/labelled.csv
endif

# Routes (app/README.md, "Routes, shadows and promotion"): scripts/routes.py edits models/routes.json, checked with
# the app's own model, and the running API follows on its next request. With LOCAL=1 from the venv (MODELS_DIR, else
# models/); otherwise a one-off container of the API image, as for export-labelled (the Jupyter image has neither
# app/ nor pydantic), with models/ mounted writable there (the API service mounts it read-only).
ROUTE ?=
MODEL ?=
VARIANTS ?=
SHADOWS ?=
STICKY ?=
ifdef LOCAL
RUN_ROUTES := $(BIN)/python scripts/routes.py
ROUTES_NEEDS := venv
else
RUN_ROUTES = $(COMPOSE) run --rm -T --no-deps -v "$(CURDIR)/scripts:/srv/scripts:ro" -v "$(CURDIR)/models:/srv/models" \
  api python scripts/routes.py --models-dir /srv/models
ROUTES_NEEDS := api-image
endif
# $(call need,VARIABLE,example): stop with one line when a target's variable is not given.
need = @test -n "$($(1))" || { echo "$(1) is missing: make $@ $(2)" >&2; exit 1; }

.PHONY: routes
routes: $(ROUTES_NEEDS) ## print models/routes.json: each route's variants and shares, and what a rollback restores
	$(RUN_ROUTES) show

.PHONY: route
route: $(ROUTES_NEEDS) ## set a route: ROUTE=penguins VARIANTS="logistic_regression=90 random_forest=10" [SHADOWS=svc] [STICKY=X-Client-ID]
	$(call need,ROUTE,ROUTE=penguins VARIANTS='logistic_regression=90 random_forest=10')
	$(call need,VARIANTS,ROUTE=$(ROUTE) VARIANTS='logistic_regression=90 random_forest=10')
	$(RUN_ROUTES) set "$(ROUTE)" --variants "$(VARIANTS)" --shadows "$(SHADOWS)" $(if $(STICKY),--sticky "$(STICKY)")

.PHONY: promote
promote: $(ROUTES_NEEDS) ## send all of a route's traffic to one variant: ROUTE=penguins MODEL=random_forest (make rollback undoes it)
	$(call need,ROUTE,ROUTE=penguins MODEL=random_forest)
	$(call need,MODEL,ROUTE=$(ROUTE) MODEL=random_forest)
	$(RUN_ROUTES) promote "$(ROUTE)" "$(MODEL)"

.PHONY: rollback
rollback: $(ROUTES_NEEDS) ## put a route back as it was before its last route or promote: ROUTE=penguins (again: swaps back)
	$(call need,ROUTE,ROUTE=penguins)
	$(RUN_ROUTES) rollback "$(ROUTE)"

# MLServer 1.7.1 with mlserver-sklearn, measured beside the API by make bench: its own virtualenv from its own
# lock (scripts/mlserver.lock), never in .venv, whose Starlette and FastAPI pins it does not share.
MLSERVER_VENV := .venv-mlserver
ifdef UV
  MAKE_MLSERVER_VENV := uv venv -q --python $(PYTHON) $(MLSERVER_VENV)
  INSTALL_MLSERVER := VIRTUAL_ENV=$(MLSERVER_VENV) uv pip install -q --require-hashes -r scripts/mlserver.lock
else
  MAKE_MLSERVER_VENV := $(PYTHON) -m venv $(MLSERVER_VENV)
  INSTALL_MLSERVER := $(MLSERVER_VENV)/bin/pip install -q --require-hashes -r scripts/mlserver.lock
endif

$(MLSERVER_VENV)/.installed: scripts/mlserver.lock
	@test -x $(MLSERVER_VENV)/bin/python || $(MAKE_MLSERVER_VENV)
	$(INSTALL_MLSERVER)
	@touch $@

.PHONY: bench
bench: venv ## measure the API against its HTTP and model floors, and MLServer when it installs (needs wrk; WORKERS=2 to scale)
	@if $(MAKE) --no-print-directory -s $(MLSERVER_VENV)/.installed >$(MLSERVER_VENV).log 2>&1; then \
	  mlserver=$(MLSERVER_VENV)/bin/mlserver; \
	else \
	  echo "MLServer rows skipped: installing MLServer 1.7.1 into $(MLSERVER_VENV) failed ($$(grep -v '^ *$$' $(MLSERVER_VENV).log | tail -n 1 | cut -c1-160)); the rest of the bench goes on."; \
	  mlserver=; \
	fi; \
	$(BIN)/python scripts/benchmark.py --workers $(WORKERS) --mlserver "$$mlserver"

.PHONY: test-compose
test-compose: venv ## end-to-end tests against real containers (needs Docker; builds the images)
	$(BIN)/python -m pytest -m compose

.PHONY: test-browser
test-browser: venv chromium ## JupyterLab, /docs and /monitor in headless Chromium against real containers (needs Docker)
	$(BIN)/python -m pytest -m browser

# ---- containers (compose/docker-compose.yml) ----

.PHONY: build
build: dotenv ## build both images (jupyter, api)
	$(COMPOSE) build

.PHONY: up
up: build ## build, train if models/ has none, pair the notebooks if notebooks/ has none, start (MONITORING=1: and Prometheus; REPLICAS=N: N API containers behind HAProxy), wait
	@ls models/*.pkl >/dev/null 2>&1 || { echo "models/ has no model yet: training them first"; $(COMPOSE) run --rm -T jupyter python scripts/train.py; }
	@ls notebooks/*.ipynb >/dev/null 2>&1 || { echo "notebooks/ has no notebook yet: creating them from scripts/"; $(COMPOSE) run --rm -T jupyter python -m jupytext --sync $(SCRIPTS); }
	$(RELEASE_API_PORT)
	$(COMPOSE) $(UP_PROFILES) up -d --scale api=$(REPLICAS)
	@$(call wait_healthy,jupyter api $(if $(SCALED),haproxy) $(if $(MONITORING),prometheus))
	@echo "JupyterLab: http://$$($(COMPOSE) port jupyter 8888)/lab?token=$$($(COMPOSE) exec -T jupyter printenv JUPYTER_TOKEN)"
	@echo "API:        http://$$($(COMPOSE) port $(API_SERVICE) 8000)/docs"
	@$(if $(MONITORING),echo "Prometheus: http://$$($(COMPOSE_ALL) port prometheus 9090)/")

.PHONY: down
down: dotenv ## stop and remove the containers (models/ and notebooks/ stay)
	$(COMPOSE_ALL) down --remove-orphans

.PHONY: logs
logs: dotenv ## follow the containers' logs
	$(COMPOSE_ALL) logs -f --tail=100

.PHONY: ps
ps: dotenv ## list the containers and their health
	$(COMPOSE_ALL) ps

.PHONY: clean
clean: ## remove generated files: models/, notebooks/*.ipynb, caches (never data/ or scripts/)
	find models -mindepth 1 ! -name .gitkeep -delete
	rm -f notebooks/*.ipynb
	find . -path ./.venv -prune -o -type d \( -name __pycache__ -o -name .ipynb_checkpoints -o -name .pytest_cache \) -print0 | xargs -0 rm -rf

# Internal steps (no ##, so `make help` leaves them out).

.PHONY: docker-check
docker-check:
	@docker info >/dev/null 2>&1 || { echo "No Docker daemon answers (docker info failed): start Docker, or run the job from .venv with LOCAL=1, e.g. make train LOCAL=1." >&2; exit 1; }

# .env holds the tokens (git-ignored, readable by its owner only). JupyterLab always
# gets one; the API gets one when its port is published beyond loopback, so it is
# never exposed open by accident. A token exported in the shell wins over .env.
# data/capture/ is made here, as the caller, before compose would make it as root.
# As root, the container user (HOST_UID) is given the folders it writes to (data/ itself for make export-labelled).
.PHONY: dotenv
dotenv: docker-check
	@case "$(REPLICAS)" in ''|*[!0-9]*|0*) false;; *) [ "$(REPLICAS)" -le "$(MAX_REPLICAS)" ];; esac || { \
	  echo "REPLICAS=$(REPLICAS) is not a whole number from 1 to $(MAX_REPLICAS) (the server-template slots in compose/haproxy/haproxy.cfg)." >&2; exit 1; }
	@umask 077; test -f .env || cp .env.example .env; \
	$(call ensure_token,JUPYTER_TOKEN,JupyterLab token); \
	bind=$${BIND_ADDRESS-$$(sed -n 's/^BIND_ADDRESS=//p' .env | tail -n 1)}; \
	case "$${bind:-127.0.0.1}" in \
	  127.*|localhost|::1|'[::1]') ;; \
	  *) if [ -n "$${API_TOKEN+set}" ] && [ -z "$$API_TOKEN" ]; then \
	       echo "API_TOKEN is exported empty, which would publish an open API on $$bind: unset it or give it a value." >&2; \
	       exit 1; \
	     fi; \
	     $(call ensure_token,API_TOKEN,API token for BIND_ADDRESS=$$bind);; \
	esac
	@mkdir -p data/capture
	@if [ "$$(id -u)" = 0 ]; then \
	  find models notebooks scripts data/capture ! -user $(HOST_UID) -exec chown $(HOST_UID):$(HOST_GID) {} +; \
	  chown $(HOST_UID):$(HOST_GID) data; \
	fi

# $(call ensure_token,NAME,what): unless NAME is exported or set in .env, write a
# random token to .env as NAME and print it. Runs under the caller's umask 077.
define ensure_token
if [ -z "$${$(1):-}" ] && ! grep -Eq '^$(1)=.+' .env; then \
  token=$$(od -An -tx1 -N24 /dev/urandom | tr -d ' \n'); \
  grep -q '^$(1)=' .env || echo '$(1)=' >> .env; \
  sed "s/^$(1)=.*/$(1)=$$token/" .env > .env.new && mv .env.new .env; \
  echo "Wrote a new $(2) to .env: $$token"; \
fi
endef
# Debian's chromium for the browser tests (playwright drives it; it downloads no browser).
# The lock timeout: another apt run may hold dpkg for a while.
.PHONY: chromium
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" != 0 ]; then echo "chromium is missing: install Debian's package (sudo apt-get install chromium)" >&2; exit 1; fi; \
	  apt-get -o DPkg::Lock::Timeout=600 update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends chromium; \
	}

.PHONY: jupyter-image
jupyter-image: dotenv
	$(COMPOSE) build jupyter

.PHONY: api-image
api-image: dotenv
	$(COMPOSE) build api

# $(call wait_healthy,SERVICES): poll the health check of each container of each service
# (the api has REPLICAS) until it is healthy; docker-compose 1.29 has no `up --wait`.
# Fails with the logs' tail.
define wait_healthy
for service in $(1); do \
  printf 'waiting for %s ' $$service; \
  for id in $$($(COMPOSE_ALL) ps -q $$service); do \
    for _ in $$(seq $(WAIT_SECONDS)); do \
      state=$$(docker inspect -f '{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}' $$id 2>/dev/null); \
      case "$$state" in \
        "running healthy") continue 2;; \
        "running starting") printf .; sleep 1;; \
        *) echo "$$state"; $(COMPOSE_ALL) logs --tail=40 $$service; exit 1;; \
      esac; \
    done; \
    echo "not healthy after $(WAIT_SECONDS)s"; $(COMPOSE_ALL) logs --tail=40 $$service; exit 1; \
  done; \
  echo ok; \
done
endef
