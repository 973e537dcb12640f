"""GET /docs and /redoc: served with every file they load from this service, under their CSP."""

import base64
import hashlib
import re

import pytest
from fastapi.testclient import TestClient

from service.api.routes.docs import ASSETS_PATH
from service.api.security_headers import PAGE_CSP, REDOC_CSP, csp_for

CONTENT_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".png": "image/png",
    ".json": "application/json",
}
# What each page loads: <script src>, <link href>, Swagger UI's `url: '...'`, ReDoc's spec-url.
REFERENCE = re.compile(r"""(?:src|href|spec-url)="([^"]*)"|\burl: '([^']*)'""")


def references(html: str) -> list[str]:
    return [first or second for first, second in REFERENCE.findall(html)]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/docs", {"swagger-ui-bundle.js", "swagger-ui.css", "favicon.png", "openapi.json"}),
        ("/redoc", {"redoc.standalone.js", "favicon.png", "openapi.json"}),
    ],
)
def test_docs_load_every_file_from_this_service(client: TestClient, path: str, expected: set[str]) -> None:
    page = client.get(path)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert not re.search(r"https?://", page.text), "nothing may come from another host"
    loaded = references(page.text)
    assert {url.rsplit("/", 1)[-1] for url in loaded} == expected
    for url in loaded:
        assert url.startswith("/") and not url.startswith("//"), url
        asset = client.get(url)
        assert asset.status_code == 200, url
        suffix = url[url.rfind(".") :]
        assert asset.headers["content-type"].startswith(CONTENT_TYPES[suffix]), url


def test_swagger_ui_is_version_5(client: TestClient) -> None:
    """Swagger UI 4 cannot read OpenAPI 3.1, which FastAPI emits."""
    bundle = client.get(f"{ASSETS_PATH}/swagger-ui-bundle.js").text
    assert re.search(r'PACKAGE_VERSION:"5\.\d+\.\d+"', bundle)
    assert client.get("/openapi.json").json()["openapi"].startswith("3.1")


def test_swagger_ui_csp_allows_only_its_start_up_script(client: TestClient) -> None:
    page = client.get("/docs")
    inline = re.findall(r"<script>(.*?)</script>", page.text, re.DOTALL)
    assert len(inline) == 1 and "SwaggerUIBundle(" in inline[0]
    digest = base64.b64encode(hashlib.sha256(inline[0].encode()).digest()).decode()
    csp = page.headers["content-security-policy"]
    directives = dict(part.strip().split(" ", 1) for part in csp.split(";"))
    assert directives["script-src"] == f"'self' 'sha256-{digest}'"
    assert directives["default-src"] == directives["connect-src"] == "'self'"
    assert "unsafe" not in csp
    assert page.headers["x-frame-options"] == "DENY"


def test_redoc_csp_allows_no_inline_script(client: TestClient) -> None:
    page = client.get("/redoc")
    assert page.headers["content-security-policy"] == REDOC_CSP
    assert "<script>" not in page.text
    directives = dict(part.strip().split(" ", 1) for part in REDOC_CSP.split(";"))
    assert directives["script-src"] == "'self'" and directives["connect-src"] == "'self'"


def test_docs_files_get_the_page_csp(client: TestClient) -> None:
    response = client.get(f"{ASSETS_PATH}/swagger-ui.css")
    assert response.headers["content-security-policy"] == PAGE_CSP == csp_for(f"{ASSETS_PATH}/x.js")
    assert client.get(f"{ASSETS_PATH}/missing.js").status_code == 404


def test_no_oauth2_redirect_page(client: TestClient) -> None:
    """The API's security schemes are an API key and a bearer token: no OAuth2 flow to return to."""
    assert client.get("/docs/oauth2-redirect").status_code == 404
