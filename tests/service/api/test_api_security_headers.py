"""Security headers on every kind of response."""

import pytest
from fastapi.testclient import TestClient

from service.api.security_headers import API_CSP, PAGE_CSP, csp_for


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


def test_docs_have_no_csp_but_the_other_headers(client: TestClient) -> None:
    response = client.get("/docs")
    assert response.status_code == 200
    assert "content-security-policy" not in response.headers
    assert response.headers["x-frame-options"] == "DENY"
