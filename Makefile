# Triton ONNX toolkit. `make help` lists the targets.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SETUP_STAMP := $(VENV)/.setup-stamp
PACKAGES_STAMP := $(VENV)/.packages-stamp
# NVIDIA Model Analyzer (`tritonkit tune --engine model-analyzer`) in a virtualenv of its own:
# it needs numpy 2 and protobuf 6, .venv stays on numpy < 2. Tests and tune find it by this.
MA_VENV := .venv-model-analyzer
MA_REQUIREMENTS := tuning/model-analyzer-requirements.txt
MA_STAMP := $(MA_VENV)/.setup-stamp
export TRITONKIT_MODEL_ANALYZER ?= $(abspath $(MA_VENV)/bin/model-analyzer)
EXTRAS := build,serve,tune,bench,export,dev
CODE := src clients/tritonkit_client build_scripts examples harness
# Offline sources of Triton's ONNX Runtime backend, where a shared third_party folder is beside
# the checkout (CI); without them `tritonkit build-backend` clones the r24.10 branches from GitHub.
ifneq ($(wildcard ../shared/third_party/triton-r24.10),)
export TRITONKIT_BACKEND_SOURCES ?= $(abspath ../shared/third_party/triton-r24.10)
export TRITONKIT_ONNXRUNTIME_HEADERS ?= $(abspath ../shared/third_party/onnxruntime-1.19.0/include)
endif

.PHONY: help setup model-analyzer models model-zoo demo repository wheels check-repository lint-repository bench bench-smoke tune \
        test test-unit test-integration lint format clean scaleout check-deploy reliability

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | \
	  awk 'BEGIN {FS = ":.*## "}; {printf "  make %-18s %s\n", $$1, $$2}'

setup: $(SETUP_STAMP) $(MA_STAMP) ## create or refresh .venv with everything (registry packages only)

model-analyzer: $(MA_STAMP) ## NVIDIA Model Analyzer in .venv-model-analyzer (for tune --engine model-analyzer)

$(MA_STAMP): $(MA_REQUIREMENTS)
	@test -x $(MA_VENV)/bin/python || $(PYTHON) -m venv $(MA_VENV)
	$(MA_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(MA_VENV)/bin/python -m pip install --quiet -r $(MA_REQUIREMENTS)
	$(MA_VENV)/bin/model-analyzer --help > /dev/null
	@touch $@

# .venv in two steps: the packages (PACKAGES_STAMP), then Triton's ONNX Runtime backend
# (SETUP_STAMP); `demo` builds the backend beside the models, which need only the packages.
# Measured on 2 cores: the two editable builds in .venv's own setuptools instead of two
# isolated build environments save ~10 s; pip byte-compiles one file at a time, compileall
# writes the same .pyc files on every core.
$(PACKAGES_STAMP): pyproject.toml clients/pyproject.toml constraints.txt scripts/install_system_deps.sh
	@echo "setup: installing the packages into $(VENV) (about a minute or two)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip wheel 'setuptools>=68'
	$(PY) -m pip install --quiet --no-compile --no-build-isolation -c constraints.txt \
	  -e ./clients -e '.[$(EXTRAS)]'
	$(PY) -c 'import compileall, sysconfig; compileall.compile_dir(sysconfig.get_path("purelib"), quiet=2, workers=0)'
	bash scripts/install_system_deps.sh
	@touch $@

$(SETUP_STAMP): $(PACKAGES_STAMP)
	$(VENV)/bin/tritonkit build-backend
	@touch $@

# The example models, longest first: examples/model_zoo/all_models.py runs one builder per core
# side by side, each line prefixed with its model, then a line per model (each is cached by its
# own stamp).
MODELS := detector super-resolution text-encoder resnet digits
MODEL_ZOO = HF_HUB_OFFLINE=1 $(PY) -m examples.model_zoo.all_models --artifacts artifacts $(MODELS)

models: $(SETUP_STAMP) ## train and export the example models into artifacts/ (cached)
	$(MODEL_ZOO)

model-zoo: $(PACKAGES_STAMP)
	$(MODEL_ZOO)

demo: $(PACKAGES_STAMP) ## the main job: build, serve on a real local Triton, classify over HTTP and gRPC
	@echo "demo: the example models and Triton's ONNX Runtime backend, side by side"
	@$(MAKE) --no-print-directory -j2 $(SETUP_STAMP) model-zoo
	@echo "demo: building the repository, serving it on a local Triton, running the pipelines"
	$(PY) -m examples.demo --spec models.yaml --out build/model_repository $(OVERLAY_FLAG)

# Serving settings measured here by `make tune` (reviewed, committed); local builds use them.
OVERLAY := tuning/local.yaml
OVERLAY_FLAG = $(if $(wildcard $(OVERLAY)),--overlay $(OVERLAY))

repository: models ## build the example repository for this machine (target auto) into build/
	$(VENV)/bin/tritonkit build --spec models.yaml --target auto --out build/model_repository $(OVERLAY_FLAG)

tune: models ## measure the digits and resnet pipelines' serving settings -> tuning/local.yaml, tuning/report/
	$(PY) -m harness.benchmarks input-data --workload light --out build/tune/light.json
	$(PY) -m harness.benchmarks input-data --workload heavy --out build/tune/heavy.json
	$(VENV)/bin/tritonkit tune --pipeline digits --input-data build/tune/light.json \
	  --budget-p99-ms 10 --concurrency 1,2,4,8,16 --overlay $(OVERLAY) --report tuning/report/digits
	$(VENV)/bin/tritonkit tune --pipeline resnet --input-data build/tune/heavy.json \
	  --budget-p99-ms 250 --concurrency 2,4,8 --interval-ms 2500 --overlay $(OVERLAY) \
	  --knobs instance_count,max_queue_delay_us,preferred_batch_sizes \
	  --report tuning/report/resnet

check-repository: models ## fail if model_repository/ differs from what models.yaml generates
	$(VENV)/bin/tritonkit build --spec models.yaml --target tensorrt --out model_repository --check

bench: models ## full benchmark: all systems side by side -> results/bench/latest/
	$(PY) -m harness.benchmarks run --out results/bench $(OVERLAY_FLAG)

bench-smoke: models ## the same harness with short windows (< 90 s); checks it works, not speed
	$(PY) -m harness.benchmarks run --smoke --out results/bench $(OVERLAY_FLAG)

reliability: models ## bad input, faults, overload, 100k soak -> results/reliability/latest/
	$(PY) -m harness.reliability run

wheels: setup ## build the two wheels into dist/: tritonkit (build, serve, runtime) and tritonkit_client
	rm -rf dist
	$(PY) -m pip wheel --quiet --no-deps --no-build-isolation --wheel-dir dist . ./clients

lint-repository: repository ## lint the locally built repository
	$(VENV)/bin/tritonkit lint build/model_repository

lint: setup ## ruff and mypy over the code
	$(VENV)/bin/ruff check $(CODE) tests
	$(VENV)/bin/mypy $(CODE)

format: setup ## ruff format
	$(VENV)/bin/ruff format $(CODE) tests

test-unit: setup ## unit tests (no server)
	$(PY) -m pytest tests/unit -q

test-integration: models ## integration tests against a real local Triton
	$(PY) -m pytest tests/integration -q

test: setup models lint ## everything CI runs: lint, tests, repository check, bench-smoke
	$(PY) -m pytest tests -q
	$(MAKE) --no-print-directory check-repository
	$(MAKE) --no-print-directory bench-smoke

scaleout: models ## 3 local Tritons behind nginx + client failover, one killed -> results/scaleout/latest/
	$(PY) -m harness.scaleout run --out results/scaleout

check-deploy: setup ## docker/ and deploy/k8s checks: versions, hadolint, compose config, kustomize + schemas
	$(PY) -m harness.scaleout check-versions
	$(PY) -m pytest tests/unit/deployment -q

clean: ## remove build outputs and caches (keeps .venv)
	rm -rf build dist .cache artifacts results .pytest_cache
