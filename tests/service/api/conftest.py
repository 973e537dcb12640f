"""Fixtures of the API tests: settings from a dict (never os.environ), an app served by
TestClient with its lifespan, the real exported model loaded once, real refused/hanging ports;
for the browser tests, a live API process and headless Debian chromium (python playwright)."""

from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from api_helpers import BROWSER_API_KEY, MakeSettings, Serve, served
from fastapi.testclient import TestClient
from processes import LOOPBACK, free_port, hanging_server, running_module, wait_until_ready

from service.api.app import create_app
from service.api.model_runtime import ModelRuntime, load_model_runtime
from service.api.settings import Settings

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
RADIOGRAPH = FIXTURES / "00000001_000.png"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
API_START_SECONDS = 180.0
UI_TIMEOUT_MS = 90_000  # a prediction with 14 heatmaps on 2 busy cores


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


# --- browser tests: one live API and one chromium for the session, a fresh context per test -----


@pytest.fixture(scope="session")
def chromium() -> Path:
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    return CHROMIUM


@pytest.fixture(scope="session")
def api_url(
    chromium: Path, model_dir: Path, onnx_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Base URL of a ready API (`python -m service.api`, key BROWSER_API_KEY); nothing listens at
    its GRADCAM_URL, so heatmaps fall back to CAM."""
    port = free_port()
    env = {
        "MODEL_DIR": str(model_dir),
        "ONNX_DIR": str(onnx_dir),
        "API_HOST": LOOPBACK,
        "API_PORT": str(port),
        "GRADCAM_URL": f"http://{LOOPBACK}:{free_port()}",
        "API_KEYS": BROWSER_API_KEY,
        "LOG_FORMAT": "text",
    }
    base_url = f"http://{LOOPBACK}:{port}"
    with running_module("service.api", env, tmp_path_factory.mktemp("browser-api-logs"), base_url) as api:
        wait_until_ready(f"{base_url}/readyz", api, timeout=API_START_SECONDS)
        yield base_url


@pytest.fixture(scope="session")
def browser(chromium: Path) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Any, api_url: str) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 1000}, base_url=api_url)
    page = context.new_page()
    page.set_default_timeout(UI_TIMEOUT_MS)
    try:
        yield page
    finally:
        context.close()


@pytest.fixture
def page_errors(page: Any) -> list[str]:
    """JavaScript errors and Content-Security-Policy violations the page reports (should stay empty)."""
    errors: list[str] = []

    def on_console(message: Any) -> None:
        if "Content Security Policy" in message.text or "Refused to" in message.text:
            errors.append(f"console: {message.text}")

    page.on("pageerror", lambda error: errors.append(f"page error: {error}"))
    page.on("console", on_console)
    return errors
