# Entry points used by the README and CI (.ci/run calls `make test`).
#   make demo   - set up, start the local control plane, print its nodes by GPU pool, run the
#                 operator on the samples, serve a tiny model and stream a chat completion
#   make test   - set up, then run every test (unit + e2e); idempotent, works with CI=true
# Long steps print progress; set-up steps are cached and take seconds on a second run.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
export PATH := $(PATH):/usr/local/go/bin:$(HOME)/.local/bin

VENV := .venv
PY := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.deepseek-k8s-installed
EXTRAS := runtime,test,dev
PYTEST_ARGS ?=
# The demo's model: trained on these pages for this many CPU seconds, cached by content hash.
DEMO_CACHE := $(or $(DSK_CACHE),$(HOME)/.cache/deepseek-k8s)/demo
DEMO_TEXT := README.md docs/runtime.md docs/operator.md docs/install.md docs/runtime-engine.md
DEMO_TRAIN_SECONDS ?= 60

.PHONY: help venv system-deps toolchain setup cluster-up cluster-down nodes lint test demo images

help:
	@echo "make demo          set up; local cluster + operator on the samples + a served tiny model"
	@echo "make test          set up and run every test (tests/ and e2e/)"
	@echo "make setup         venv + system-deps + toolchain"
	@echo "make images        build the operator and CPU runtime images here (no Docker) and run them"
	@echo "make venv | system-deps | toolchain | cluster-up | cluster-down | nodes | lint"

venv: $(VENV_STAMP)

$(VENV_STAMP): pyproject.toml
	@start=$$SECONDS; \
	if command -v uv >/dev/null; then uv=(uv); \
	elif python3 -m uv --version >/dev/null 2>&1; then uv=(python3 -m uv); \
	else echo "[venv] installing uv with pip"; python3 -m pip install --quiet uv; uv=(python3 -m uv); fi; \
	if [[ ! -x $(PY) ]]; then \
	  echo "[venv] creating $(VENV)"; "$${uv[@]}" venv --python "$$(command -v python3.11 || command -v python3)" $(VENV); \
	fi; \
	echo "[venv] installing -e '.[$(EXTRAS)]' (first run downloads torch and friends: minutes)"; \
	"$${uv[@]}" pip install --python $(PY) -e '.[$(EXTRAS)]'; \
	touch $@; \
	echo "[venv] ready in $$((SECONDS - start))s"

system-deps:
	@bash scripts/install-system-deps.sh

toolchain: venv
	@bash e2e/toolchain/build.sh
	@echo "[toolchain] LeaderWorkerSet controller (sigs.k8s.io/lws)"
	@$(PY) -m e2e.lws_controller

setup: venv system-deps toolchain

cluster-up: venv toolchain
	@$(PY) -m e2e.devcluster up

cluster-down: venv
	@$(PY) -m e2e.devcluster down

nodes: venv
	@$(PY) -m e2e.devcluster nodes

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy --strict e2e
	@if [[ -f .importlinter ]]; then $(VENV)/bin/lint-imports; fi

test: setup
	@echo "[test] lint: ruff, mypy --strict, import-linter"
	@$(MAKE) --no-print-directory lint
	@echo "[test] pytest tests/ e2e/ (e2e tests start or reuse the local cluster)"
	$(VENV)/bin/pytest tests e2e $(PYTEST_ARGS)

demo: setup cluster-up
	@echo "== 1/3 the local control plane: nodes by GPU pool"
	@$(PY) -m e2e.devcluster nodes
	@echo "== 2/3 the operator on the samples in manifests/samples/"
	@$(PY) -m e2e.demo_operator
	@echo "== 3/3 the runtime: a tiny DeepSeek-V3-architecture model trained $(DEMO_TRAIN_SECONDS) CPU-seconds on this repo's docs, served; a streamed chat through the openai client"
	@$(PY) -m deepseek_runtime.cli make-tiny --arch v3 --set hidden_size=96 \
	  --train-seconds $(DEMO_TRAIN_SECONDS) $(addprefix --train-text ,$(DEMO_TEXT)) \
	  --out $(DEMO_CACHE)/tiny-deepseek-v3 > /dev/null
	@cat $(DEMO_CACHE)/tiny-deepseek-v3/MODEL_CARD.md
	@$(PY) -m deepseek_runtime.demo --cache $(DEMO_CACHE)

# Not part of `make test`: a cold build downloads torch into the runtime image (minutes).
# Cached in containers-storage by content hash; images/README.md explains the steps.
images: venv
	@bash scripts/install-system-deps.sh images
	@bash images/build-local.sh
	$(VENV)/bin/pytest images/test_built_images.py -q
