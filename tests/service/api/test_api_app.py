"""App assembly: the public routes, CORS only when configured, one app per settings."""

from api_helpers import MakeSettings, Serve, upload
from fastapi.testclient import TestClient

ORIGIN = "https://pacs.example.org"
PREFLIGHT = {
    "Origin": ORIGIN,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "x-api-key",
}


def test_public_routes(client: TestClient) -> None:
    for path in ("/v1/model", "/healthz", "/readyz", "/metrics", "/docs", "/openapi.json"):
        assert client.get(path).status_code == 200, path
    assert client.get("/v1/predict").status_code == 405  # POST only
    assert client.get("/v2/predict").status_code == 404


def test_cors_is_off_by_default(client: TestClient) -> None:
    response = client.get("/healthz", headers={"Origin": ORIGIN})
    assert "access-control-allow-origin" not in response.headers
    assert client.options("/v1/predict", headers=PREFLIGHT).status_code == 405


def test_cors_allows_the_configured_origins(serve: Serve, make_settings: MakeSettings) -> None:
    with serve(make_settings(cors_origins=ORIGIN, api_keys="cors-test-key-123")) as client:
        preflight = client.options("/v1/predict", headers=PREFLIGHT)
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == ORIGIN
        assert "x-api-key" in preflight.headers["access-control-allow-headers"].lower()
        simple = client.get("/healthz", headers={"Origin": ORIGIN})
        assert simple.headers["access-control-allow-origin"] == ORIGIN
        assert "x-request-id" in simple.headers["access-control-expose-headers"].lower()
        other = client.get("/healthz", headers={"Origin": "https://elsewhere.example"})
        assert "access-control-allow-origin" not in other.headers


def test_settings_reach_the_routes_without_dependency_overrides(
    serve: Serve, make_settings: MakeSettings, radiograph_png: bytes
) -> None:
    """With any override in place FastAPI re-inspects every dependency on every request (about
    0.5-1 ms of event-loop CPU each, bench.stages): the app's settings come from its state."""
    with serve(make_settings(api_keys="settings-test-key-456")) as client:
        assert not client.app.dependency_overrides  # type: ignore[attr-defined]
        assert upload(client, radiograph_png).status_code == 401  # the app's settings: a key is needed
        assert (
            upload(client, radiograph_png, headers={"X-API-Key": "settings-test-key-456"}).status_code == 200
        )
