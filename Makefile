# Set-up and every task of the project. `make install` is idempotent: it reinstalls only when
# pyproject.toml or requirements.lock changed.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
SHARED ?= ../shared/data
DATA ?= $(SHARED)/nih
MODEL_DIR ?= models/chexnet-densenet121
BUILD_DIR ?= build
API_PORT ?= 8000
GRADCAM_PORT ?= 8001
export API_PORT GRADCAM_PORT

.PHONY: install lock run test lint train train-validation evaluate export export-int8 clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	test -x $(UV) || $(PY) -m pip install --quiet "uv>=0.5,<1"
	$(UV) pip install --quiet --python $(PY) -r requirements.lock
	$(UV) pip install --quiet --python $(PY) --no-deps -e .
	touch $@

# Regenerate the lock of exact versions after changing pyproject.toml, and the Docker images'
# per-target locks (same versions, only that target's extra: the api image gets no TensorFlow).
IMAGE_LOCK_FLAGS := --python-version 3.11 --python-platform x86_64-manylinux_2_28
lock:
	test -x $(UV) || { $(PYTHON) -m venv $(VENV) && $(PY) -m pip install --quiet "uv>=0.5,<1"; }
	$(UV) pip compile --quiet --python $(PY) --all-extras pyproject.toml -o requirements.lock
	$(UV) pip compile --quiet $(IMAGE_LOCK_FLAGS) --extra api -c requirements.lock pyproject.toml -o requirements-api.lock
	$(UV) pip compile --quiet $(IMAGE_LOCK_FLAGS) --extra sidecar -c requirements.lock pyproject.toml -o requirements-gradcam.lock
	$(UV) pip compile --quiet $(IMAGE_LOCK_FLAGS) --extra train -c requirements.lock pyproject.toml -o requirements-export.lock

# With the int8 calibration ranges recorded beside the model, the int8 model is rebuilt from them.
INT8_RANGES = $(wildcard $(MODEL_DIR)/int8_calibration.json)
$(BUILD_DIR)/model.onnx: $(MODEL_DIR)/model.keras $(MODEL_DIR)/model_card.json $(INT8_RANGES) | install
	$(PY) -m export --model-dir $(MODEL_DIR) --out $(BUILD_DIR) $(if $(INT8_RANGES),--quantize int8)

export: $(BUILD_DIR)/model.onnx

# Also model.int8.onnx: calibrated on the model's training split, AUROC and speed vs fp32 on its test split;
# the manifest (both files' sha256, the int8 AUROC change) is recorded in the model card, and
# model.onnx is made newer than the card so that make does not export again (dropping int8).
export-int8: $(MODEL_DIR)/model.keras $(MODEL_DIR)/model_card.json | install
	$(PY) -m export --model-dir $(MODEL_DIR) --out $(BUILD_DIR) --quantize int8 $(MODEL_DATA) --record-in-card
	touch $(BUILD_DIR)/model.onnx

run: install $(BUILD_DIR)/model.onnx
	MODEL_DIR=$(MODEL_DIR) ONNX_DIR=$(BUILD_DIR) $(PY) -m service.run

# The tests use build/ when it was exported from the model under test (else they export it).
test: install $(BUILD_DIR)/model.onnx
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy cxr training export service bench loadtest

# Model 1.2.1's data and recipe (128 px, 90 epochs on nih/), phase 1 of `make train`.
TRAIN_DATA = --labels-csv $(DATA)/images_labels.csv \
	--teacher-csv $(DATA)/reference/reproduce_chexnet_preds_for_images.csv
# The shipped model's folders (each folder's reference/ teacher probabilities come along).
MODEL_DATASETS ?= $(SHARED)/nih $(SHARED)/nih-extra
# Combined folders for train-validation and evaluate, e.g. DATASETS="$(MODEL_DATASETS)"
# TRAIN_ONLY_DATASETS=../shared/data/nih-thumbs. Empty: phase 1's data (train-validation) or the
# shipped model's (evaluate).
DATASETS ?=
TRAIN_ONLY_DATASETS ?=
FOLDER_DATA = $(foreach folder,$(DATASETS),--dataset $(folder)) \
	$(foreach folder,$(TRAIN_ONLY_DATASETS),--train-only-dataset $(folder))
MODEL_DATA = $(foreach folder,$(MODEL_DATASETS),--dataset $(folder))
RUN_DATA = $(if $(strip $(DATASETS)),$(FOLDER_DATA),$(TRAIN_DATA))
EVALUATE_DATA = $(if $(strip $(DATASETS)),$(FOLDER_DATA),$(MODEL_DATA))
REFERENCE_CSVS = $(foreach folder,$(if $(strip $(DATASETS)),$(DATASETS),$(MODEL_DATASETS)),\
	$(wildcard $(folder)/reference/reproduce_chexnet_preds_for_images.csv))
VALIDATION_RUN ?= runs/validation
PHASE1 ?= runs/phase1
THRESHOLDS_FROM ?= $(MODEL_DIR)/phase1-validation-run
# Phase 2: from phase 1's weights at 224 px (a 7x7 heatmap grid), on nih/ + nih-extra/; phase 1's
# patients only train, validation and test are 30% each of the others. It runs once per training
# seed (same split; another initial head, batch order and augmentation) into PHASE2-s<seed>, and the
# shipped model is the mean of their weights (python -m training.soup), thresholded on validation.
PHASE2 ?= runs/phase2
PHASE2_SEEDS ?= 7 2
# The version `make train` gives the model (each seed's run: that version with -s<seed>).
TRAIN_VERSION ?= 2.1.0
PHASE2_RECIPE = --input-size 224 --epochs 12 --learning-rate 3e-4 --warmup-epochs 1 \
	--teacher-weight 0.9 --split 0.4,0.3,0.3
PHASE2_DIRS = $(foreach seed,$(PHASE2_SEEDS),$(PHASE2)-s$(seed))
RUN_FILES = model.keras model_card.json splits.csv training_log.csv

# The shipped model: phase 1, phase 2 per seed, the soup (2 CPU cores with AVX-512: 40 min, 24 min
# per seed and under 2 min for the soup, 91 min in all; on an AVX2 host about 85 min and 57 per
# seed, where PHASE2_SEEDS=7 trains one seed, which is then the model). Finished phases and seeds are
# kept: a second `make train` redoes only what is missing. PHASE1_ARGS=--resume continues an
# interrupted phase 1, TRAIN_ARGS=--resume an interrupted seed.
train: $(foreach run,$(PHASE2_DIRS),$(run)/model_card.json) | install
	$(if $(word 2,$(PHASE2_DIRS)),\
		$(PY) -m training.soup $(foreach run,$(PHASE2_DIRS),--model-dir $(run)) --out $(MODEL_DIR) \
			$(MODEL_DATA) --version $(TRAIN_VERSION),\
		cp $(foreach file,$(RUN_FILES),$(PHASE2_DIRS)/$(file)) $(MODEL_DIR)/)

$(PHASE2)-s%/model_card.json: $(PHASE1)/model_card.json | install
	$(PY) -m training $(MODEL_DATA) --init-from $(PHASE1) --out $(PHASE2)-s$* $(PHASE2_RECIPE) \
		--train-seed $* --version $(TRAIN_VERSION)-s$* $(TRAIN_ARGS)

# Phase 1: model 1.2.1's recipe refit on nih/'s train + validation patients, with the thresholds of
# its validation run (whose card, log and split are committed beside the model).
$(PHASE1)/model_card.json: | install
	$(PY) -m training $(TRAIN_DATA) --out $(PHASE1) --refit --thresholds-from $(THRESHOLDS_FROM) \
		--version 1.2.1 $(PHASE1_ARGS)

# A validation run: early stopping and thresholds on the validation split (phase 1's recipe: about
# 70 min). TRAIN_ARGS=--resume continues an interrupted run from its last epoch checkpoint.
train-validation: install
	$(PY) -m training $(RUN_DATA) --out $(VALIDATION_RUN) $(TRAIN_ARGS)

evaluate: install
	$(PY) -m training.evaluate --model-dir $(MODEL_DIR) $(EVALUATE_DATA) \
		$(foreach table,$(REFERENCE_CSVS),--reference-csv $(table)) \
		--reference-aucs $(DATA)/reference/reproduce_chexnet_aucs.csv $(EVALUATE_ARGS)

clean:
	rm -rf $(BUILD_DIR) runs .pytest_cache

# --- Deployment, load testing, benchmark -------------------------------------------------------
.PHONY: docker-lint compose-config compose-check

# Lint the Dockerfile (hadolint from the dev extra; ignores, if any, are justified in .hadolint.yaml).
docker-lint: install
	$(VENV)/bin/hadolint Dockerfile

# Validate docker-compose.yml (Debian's docker-compose: apt-get install docker-compose) and run each
# container's command outside Docker against the repo's model (tests/deploy).
compose-config:
	@command -v docker-compose >/dev/null || { echo "docker-compose is not installed (apt-get install -y docker-compose)"; exit 1; }
	API_KEYS=compose-check docker-compose -f docker-compose.yml config -q
	API_KEYS=compose-check docker-compose -f docker-compose.yml --profile scaled config -q
	@if env -u API_KEYS docker-compose -f docker-compose.yml config -q 2>/dev/null; then \
		echo "docker-compose.yml must refuse to start without API_KEYS"; exit 1; fi

compose-check: install compose-config
	$(PY) -m pytest tests/deploy $(PYTEST_ARGS)

# Validate deploy/k8s against Kubernetes' own schemas, offline and strict (unknown fields fail), with
# kubernetes-validate's bundled schemas; tests/deploy/test_k8s.py does the same in `make test` and
# checks the manifests against the Dockerfile, the compose file and the apps.
K8S_VERSION ?= 1.33
.PHONY: k8s-validate
k8s-validate: install
	$(VENV)/bin/kubernetes-validate --strict --quiet -k $(K8S_VERSION) \
		$$(find deploy/k8s -name '*.yaml' ! -name kustomization.yaml | sort)

# Headless locust against a running service (make run): CSV + HTML in loadtest-results/, then
# requests/s, p50/p95/p99 and failures printed. Fails when any request failed.
LOADTEST_USERS ?= 4
LOADTEST_SPAWN_RATE ?= 2
LOADTEST_DURATION ?= 60s
LOADTEST_HOST ?= http://127.0.0.1:$(API_PORT)
LOADTEST_OUT ?= loadtest-results
.PHONY: loadtest
loadtest: install
	mkdir -p $(LOADTEST_OUT)
	$(VENV)/bin/locust -f loadtest/locustfile.py --headless --only-summary \
		--users $(LOADTEST_USERS) --spawn-rate $(LOADTEST_SPAWN_RATE) --run-time $(LOADTEST_DURATION) \
		--host $(LOADTEST_HOST) --csv $(LOADTEST_OUT)/loadtest --html $(LOADTEST_OUT)/loadtest.html \
		--stop-timeout 30 --loglevel WARNING; status=$$?; \
	$(PY) -m loadtest.summary $(LOADTEST_OUT)/loadtest && exit $$status

# The benchmark: (a)-(e) in rounds with their targets, spread and verdicts, the CPU stage table,
# memory and batch scoring; JSON in bench-results/. About 5 minutes on an idle 2-core machine.
# BENCH_ARGS="--sweep" also measures serving settings, sidecar threads, micro-batching (+5 min);
# BENCH_ARGS="--rounds 2 --duration 1.5 --requests 4 --heatmap-requests 1" is a quick smoke run.
BENCH_ARGS ?=
.PHONY: bench
bench: install $(BUILD_DIR)/model.onnx
	$(PY) -m bench --model-dir $(MODEL_DIR) --onnx-dir $(BUILD_DIR) $(BENCH_ARGS)

# --- Reliability ---------------------------------------------------------------------------------
# tests/reliability runs real processes: bad input (+ hypothesis and schemathesis), security, and
# (mark chaos) a killed and a hanging sidecar, the launcher (service.run) healing a SIGKILLed
# sidecar and API under load (until Grad-CAM is back) and giving up on a child that crashes at
# start (make test: 3 s of load around the kill; here CHAOS_LOAD_SECONDS=20), broken models at
# start-up, overload; (mark soak) sustained load. Each prints its figures at the end of the run
# (requests and req/s, faults injected and survived, bad inputs tried, 5xx, RSS growth, file
# descriptors) and writes them as JSON into reliability-results/. `make test` (CI) runs all of it
# with a 45 s soak, except the hand-started sidecar kill that CHAOS_FULL=1 (set here) adds.
# chaos: the chaos-marked suites with the bad-input and security ones (everything but the soak).
SOAK_SECONDS ?= 300
.PHONY: chaos soak audit
CHAOS_LOAD_SECONDS ?= 20
chaos: install
	CHAOS_LOAD_SECONDS=$(CHAOS_LOAD_SECONDS) CHAOS_FULL=1 $(PY) -m pytest tests/reliability -m "not soak" $(PYTEST_ARGS)

soak: install
	SOAK_SECONDS=$(SOAK_SECONDS) $(PY) -m pytest tests/reliability -m soak $(PYTEST_ARGS)

# Known vulnerabilities in the exact versions of requirements.lock. pip-audit asks the PyPI / OSV
# vulnerability database, so run it where that is reachable; CI (.ci/run) does not run it.
# --strict: a package that could not be looked up fails the audit (else an unreachable database
# would pass it with every package skipped).
audit: install
	$(VENV)/bin/pip-audit --requirement requirements.lock --no-deps --disable-pip --strict --progress-spinner off
