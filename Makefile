# Set-up and every task of the project. `make install` is idempotent: it reinstalls only when
# pyproject.toml or requirements.lock changed.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
DATA ?= ../shared/data/nih
MODEL_DIR ?= models/chexnet-densenet121
BUILD_DIR ?= build
API_PORT ?= 8000
GRADCAM_PORT ?= 8001
export API_PORT GRADCAM_PORT

.PHONY: install lock run test lint train train-smoke evaluate export bench loadtest soak chaos audit browser clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	test -x $(UV) || $(PY) -m pip install --quiet "uv>=0.5,<1"
	$(UV) pip install --quiet --python $(PY) -r requirements.lock
	$(UV) pip install --quiet --python $(PY) --no-deps -e .
	touch $@

# Regenerate the lock of exact versions after changing pyproject.toml.
lock:
	test -x $(UV) || { $(PYTHON) -m venv $(VENV) && $(PY) -m pip install --quiet "uv>=0.5,<1"; }
	$(UV) pip compile --quiet --python $(PY) --all-extras pyproject.toml -o requirements.lock

$(BUILD_DIR)/model.onnx: install $(MODEL_DIR)/model.keras $(MODEL_DIR)/model_card.json
	$(PY) -m export --model-dir $(MODEL_DIR) --out $(BUILD_DIR)

export: $(BUILD_DIR)/model.onnx

run: install $(BUILD_DIR)/model.onnx
	MODEL_DIR=$(MODEL_DIR) ONNX_DIR=$(BUILD_DIR) $(PY) -m service.run

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy cxr training export service

# The shipped model: about an hour on 2 CPU cores (see README).
train: install
	$(PY) -m training --labels-csv $(DATA)/images_labels.csv --out $(MODEL_DIR) \
		--teacher-csv $(DATA)/reference/reproduce_chexnet_preds_for_images.csv $(TRAIN_ARGS)

evaluate: install
	$(PY) -m training.evaluate --model-dir $(MODEL_DIR) --labels-csv $(DATA)/images_labels.csv \
		--reference-csv $(DATA)/reference/reproduce_chexnet_preds_for_images.csv \
		--reference-aucs $(DATA)/reference/reproduce_chexnet_aucs.csv $(EVALUATE_ARGS)

clean:
	rm -rf $(BUILD_DIR) runs .pytest_cache
