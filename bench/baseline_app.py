"""The naive baseline of `make bench` (a): the same Keras model behind FastAPI, `model.predict` per request.

    python -m bench.baseline_app --model-dir runs/dev-model --port 8090

What a first version of the service would look like: one uvicorn process, TensorFlow in it, the
request's image through the project's preprocessing (so only the serving path differs) and
`model.predict` on a batch of one inside the request handler. Not part of the product.
"""

import argparse
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def build_app(model_dir: str) -> "FastAPI":
    import keras
    import numpy as np
    from fastapi import FastAPI, File, UploadFile

    from cxr.model_card import load_model_card, verify_weights
    from cxr.preprocessing import preprocess_bytes

    card = load_model_card(model_dir)
    model = keras.saving.load_model(verify_weights(card, model_dir), compile=False)
    app = FastAPI(title="naive Keras baseline")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/predict")
    async def predict(file: UploadFile = File(...)) -> dict[str, object]:  # noqa: B008 (FastAPI idiom)
        data = await file.read()
        tensor = preprocess_bytes(data, card.input_size, card.normalisation.mean, card.normalisation.std)
        probabilities = model.predict(np.expand_dims(tensor, 0), verbose=0)[0]
        return {
            "probabilities": {label: float(p) for label, p in zip(card.labels, probabilities, strict=True)}
        }

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.baseline_app", description=__doc__)
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    args = parser.parse_args(argv)
    import uvicorn

    uvicorn.run(build_app(args.model_dir), host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
