# syntax=docker/dockerfile:1
#
# Three stages, two images:
#   export   TensorFlow + tf2onnx; runs `python -m export` on the committed Keras model, so the
#            ONNX the API serves is produced here from the weights in the build context.
#   api      slim: onnxruntime + FastAPI, no TensorFlow; the ONNX export and the model card.
#   gradcam  the Grad-CAM sidecar: TensorFlow + the Keras model.
#
#   docker build --target api     -t cxr-api .
#   docker build --target gradcam -t cxr-gradcam .
#   docker build --target api --build-arg MODEL_DIR=models/other -t cxr-api:other .
#   (MODEL_DIR must be inside the build context and not excluded by .dockerignore)
# `api` is the last stage, so a plain `docker build .` builds the API image.
#
# Each target installs from its own lock (requirements-{export,api,gradcam}.lock, made by
# `make lock` with the versions of requirements.lock), so the api image cannot pull TensorFlow in.
#
# Base image: pinned to an exact tag. It is not pinned by digest because the digest cannot be
# resolved from the machine this file is maintained on (no registry access); a release pipeline
# with registry access should append "@sha256:..." to the FROM line below.
# No secrets are baked in: API keys come from the environment at run time (API_KEYS).

# The model to package: a directory holding model.keras, model_card.json and splits.csv. Declared
# before the first FROM so each stage that repeats `ARG MODEL_DIR` gets this default.
ARG MODEL_DIR=models/chexnet-densenet121

FROM python:3.11.13-slim-bookworm AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/app
WORKDIR /app

# ---------------------------------------------------------------------------------------------
FROM base AS export
ARG MODEL_DIR
COPY requirements-export.lock ./
RUN pip install --no-cache-dir -r requirements-export.lock
COPY cxr/ cxr/
COPY training/ training/
COPY export/ export/
COPY ${MODEL_DIR}/ /opt/cxr/model/
# The export proves Keras/onnxruntime parity on the committed NIH radiographs (its default images)
# and writes model.onnx, head.npz, manifest.json and model.int8.onnx into /opt/cxr/onnx. The int8
# model is quantised with the calibration ranges recorded beside the model (the NIH images it was
# calibrated on are not in the build context): the file whose AUROC the model card records.
COPY tests/fixtures/*.png tests/fixtures/
RUN python -m export --model-dir /opt/cxr/model --out /opt/cxr/onnx --quantize int8

# ---------------------------------------------------------------------------------------------
FROM base AS runtime
RUN groupadd --system --gid 10001 cxr \
    && useradd --system --uid 10001 --gid cxr --create-home --home-dir /home/cxr --shell /usr/sbin/nologin cxr
COPY deploy/healthcheck.py /usr/local/bin/cxr-healthcheck

# ---------------------------------------------------------------------------------------------
FROM runtime AS gradcam
ARG MODEL_DIR
COPY requirements-gradcam.lock ./
RUN pip install --no-cache-dir -r requirements-gradcam.lock
COPY cxr/ cxr/
COPY service/ service/
COPY ${MODEL_DIR}/model.keras ${MODEL_DIR}/model_card.json /opt/cxr/model/
ENV MODEL_DIR=/opt/cxr/model \
    GRADCAM_HOST=0.0.0.0 \
    GRADCAM_PORT=8001 \
    TF_CPP_MIN_LOG_LEVEL=2
USER 10001:10001
EXPOSE 8001
HEALTHCHECK --interval=30s --timeout=5s --start-period=90s --retries=3 \
    CMD ["python", "/usr/local/bin/cxr-healthcheck", "--port-env", "GRADCAM_PORT", "--default-port", "8001"]
CMD ["python", "-m", "service.sidecar"]

# ---------------------------------------------------------------------------------------------
FROM runtime AS api
ARG MODEL_DIR
COPY requirements-api.lock ./
RUN pip install --no-cache-dir -r requirements-api.lock
COPY cxr/ cxr/
COPY service/ service/
COPY --from=export /opt/cxr/onnx/ /opt/cxr/onnx/
COPY ${MODEL_DIR}/model_card.json /opt/cxr/model/model_card.json
ENV MODEL_DIR=/opt/cxr/model \
    ONNX_DIR=/opt/cxr/onnx \
    API_HOST=0.0.0.0 \
    API_PORT=8000
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "/usr/local/bin/cxr-healthcheck", "--port-env", "API_PORT", "--default-port", "8000"]
CMD ["python", "-m", "service.api"]
