"""The API process: FastAPI + onnxruntime. Never imports TensorFlow, training/ or export/.

`create_app(settings)` builds an app; `python -m service.api` (cxr-api) serves one with uvicorn.
"""
