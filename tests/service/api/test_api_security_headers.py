"""Security headers on every kind of response."""

import pytest
from fastapi.testclient import TestClient

from service.api.security_headers import API_CSP, PAGE_CSP, csp_for, swagger_ui_csp


@pytest.mark.parametrize(
    ("path", "csp"),
    [
        ("/", PAGE_CSP),
        ("/static/app.js", PAGE_CSP),
        ("/v1/predict", API_CSP),
        ("/readyz", API_CSP),
        ("/openapi.json", API_CSP),
        ("/docs", None),
        ("/redoc", None),
        ("/docs/static/swagger-ui-bundle.js", PAGE_CSP),
        ("/docs/oauth2-redirect", API_CSP),
    ],
)
def test_csp_by_path(path: str, csp: str | None) -> None:
    assert csp_for(path) == csp


def test_page_csp_allows_only_self_and_data_images() -> None:
    directives = dict(part.strip().split(" ", 1) for part in PAGE_CSP.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["img-src"] == "'self' data:"
    assert directives["script-src"] == "'self'" and "unsafe" not in PAGE_CSP
    assert directives["frame-ancestors"] == "'none'"


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/healthz", 200), ("GET", "/nowhere", 404), ("POST", "/healthz", 405), ("GET", "/metrics", 200)],
)
def test_headers_on_every_response(client: TestClient, method: str, path: str, status: int) -> None:
    response = client.request(method, path)
    assert response.status_code == status
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["content-security-policy"] == API_CSP


def test_swagger_ui_csp_allows_each_inline_script_by_hash() -> None:
    html = b'<script src="/docs/static/a.js"></script>\n<script>start();</script><script>\n go()\n</script>'
    script_src = swagger_ui_csp(html).split("script-src ", 1)[1].split(";", 1)[0]
    # sha256 of b"start();" and of b"\n go()\n", base64: what a browser computes for these scripts.
    assert script_src == (
        "'self' 'sha256-E6jQvrT2ZivWG9GJ4AAEZf4MhI7l3QkLroW4hgvUT4c=' "
        "'sha256-1V9XdrsqMzHAJzrpf6o0zap5qVR2wZGB+NxlRP21gno='"
    )
    assert swagger_ui_csp(b"<p>no script</p>") == swagger_ui_csp(b'<script src="/x.js"></script>')
