"""The API process never imports TensorFlow, Keras, training/ or export/."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from processes import REPO

pytestmark = pytest.mark.slow

FORBIDDEN = ("tensorflow", "keras", "tf2onnx", "training", "export", "matplotlib")

PROGRAM = """
import json, sys
from pathlib import Path
from fastapi.testclient import TestClient
from service.api.app import create_app
from service.api.settings import Settings
import service.api.__main__

settings = Settings.from_environ({"MODEL_DIR": sys.argv[1], "ONNX_DIR": sys.argv[2], "GRADCAM_URL": "http://127.0.0.1:9"})
app = create_app(settings)
with TestClient(app) as client:
    assert app.state.service.load_finished.wait(120)
    image = Path(sys.argv[3]).read_bytes()
    response = client.post("/v1/predict?heatmaps=all", files={"file": ("x.png", image)})
    assert response.status_code == 200, response.text
print(json.dumps(sorted(sys.modules)))
"""


def test_serving_a_prediction_imports_no_training_stack(
    model_dir: Path, onnx_dir: Path, radiograph_png: bytes
) -> None:
    image = REPO / "tests" / "fixtures" / "00000001_000.png"
    result = subprocess.run(
        [sys.executable, "-c", PROGRAM, str(model_dir), str(onnx_dir), str(image)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    modules = json.loads(result.stdout.strip().splitlines()[-1])
    leaked = [name for name in modules if name.split(".")[0] in FORBIDDEN]
    assert leaked == []
