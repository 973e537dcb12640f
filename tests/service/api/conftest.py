"""Fixtures of the API tests: settings from a dict (never os.environ), an app served by
TestClient with its lifespan, the real exported model loaded once, real refused/hanging ports."""

from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from api_helpers import MakeSettings, Serve, served
from fastapi.testclient import TestClient
from processes import LOOPBACK, free_port, hanging_server

from service.api.app import create_app
from service.api.model_runtime import ModelRuntime, load_model_runtime
from service.api.settings import Settings

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
RADIOGRAPH = FIXTURES / "00000001_000.png"


@pytest.fixture(scope="session")
def runtime(model_dir: Path, onnx_dir: Path) -> ModelRuntime:
    """The real exported model, loaded and checked once for the session."""
    return load_model_runtime(model_dir, onnx_dir, 2, 1)


@pytest.fixture(scope="session")
def closed_port_url() -> str:
    """An http URL where nothing listens: connections are refused (a dead sidecar)."""
    return f"http://{LOOPBACK}:{free_port()}"


@pytest.fixture(scope="session")
def make_settings(model_dir: Path, onnx_dir: Path, closed_port_url: str) -> MakeSettings:
    """Settings(**OVERRIDES) as environment variables would give them; the sidecar is dead."""

    def make(**overrides: object) -> Settings:
        environ = {
            "MODEL_DIR": str(model_dir),
            "ONNX_DIR": str(onnx_dir),
            "GRADCAM_URL": closed_port_url,
            "ORT_INTRA_OP_THREADS": "2",
        }
        environ.update({name.upper(): str(value) for name, value in overrides.items()})
        return Settings.from_environ(environ)

    return make


@pytest.fixture(scope="session")
def serve(runtime: ModelRuntime) -> Serve:
    """serve(settings) -> context manager of a ready TestClient reusing the loaded model."""

    def start(settings: Settings) -> AbstractContextManager[TestClient]:
        return served(create_app(settings, loader=lambda _: runtime))

    return start


@pytest.fixture(scope="module")
def client(serve: Serve, make_settings: MakeSettings) -> Iterator[TestClient]:
    """A ready app with default settings: no API keys, sidecar down (CAM fallback)."""
    with serve(make_settings()) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def radiograph_png() -> bytes:
    """A real NIH radiograph, 1024 x 1024 8-bit greyscale PNG."""
    return RADIOGRAPH.read_bytes()


@pytest.fixture
def hanging_url() -> Iterator[str]:
    with hanging_server() as url:
        yield url
