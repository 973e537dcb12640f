"""/docs and /redoc in real headless Chromium with no internet: they render from this service alone.

The live API and the browser are the fixtures of conftest.py (as for test_page.py). Every browser
context here is offline: a request to any host but the loopback is aborted and recorded, so a
page that still needed a CDN would not render, and one that merely tried would be caught.
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from processes import LOOPBACK

pytestmark = [pytest.mark.browser, pytest.mark.slow]

LOCAL_SCHEMES = ("data", "blob", "about")
# ReDoc 2 draws its "API docs by Redocly" logo from this URL (hard-coded); the /redoc CSP refuses it.
REDOCLY_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


@pytest.fixture
def requests_elsewhere(page: Any) -> Iterator[list[str]]:
    """URLs the page asked for on another host; each is aborted, as on a network without internet."""
    elsewhere: list[str] = []

    def is_local(url: str) -> bool:
        parts = urlsplit(url)
        return parts.scheme in LOCAL_SCHEMES or parts.hostname == LOOPBACK

    def offline(route: Any) -> None:
        if is_local(route.request.url):
            route.continue_()
        else:
            route.abort("internetdisconnected")

    page.on("request", lambda request: None if is_local(request.url) else elsewhere.append(request.url))
    page.context.route("**/*", offline)
    yield elsewhere


@pytest.fixture(scope="module")
def openapi(api_url: str) -> dict[str, Any]:
    document: dict[str, Any] = httpx.get(f"{api_url}/openapi.json", timeout=10.0).json()
    return document


def loaded_resources(page: Any) -> list[str]:
    return list(page.evaluate("() => performance.getEntriesByType('resource').map(entry => entry.name)"))


def test_swagger_ui_renders_every_operation_and_runs_one_offline(
    page: Any, page_errors: list[str], requests_elsewhere: list[str], openapi: dict[str, Any], tmp_path: Path
) -> None:
    page.goto("/docs")
    predict = page.locator('.opblock-summary-path[data-path="/v1/predict"]')
    predict.wait_for()
    shown = page.locator(".opblock-summary-path").evaluate_all("paths => paths.map(p => p.dataset.path)")
    assert sorted(shown) == sorted(openapi["paths"])
    assert page.locator(".info .title").inner_text().startswith(openapi["info"]["title"])

    # "Try it out" on GET /healthz: the console calls the API from the page.
    healthz = page.locator(".opblock").filter(has=page.locator('[data-path="/healthz"]'))
    healthz.locator(".opblock-summary-control").click()
    healthz.get_by_role("button", name="Try it out").click()
    healthz.get_by_role("button", name="Execute").click()
    status = healthz.locator(".live-responses-table tr.response .response-col_status")
    status.wait_for()
    assert status.inner_text().strip() == "200"
    page.screenshot(path=str(tmp_path / "docs-swagger-ui.png"), full_page=True)

    resources = loaded_resources(page)
    assert any(url.endswith("/swagger-ui-bundle.js") for url in resources)
    assert all(urlsplit(url).hostname == LOOPBACK for url in resources), resources
    assert requests_elsewhere == []
    assert page_errors == []


def test_redoc_renders_the_operations_offline(
    page: Any, page_errors: list[str], requests_elsewhere: list[str], openapi: dict[str, Any], tmp_path: Path
) -> None:
    page.goto("/redoc")
    summary = openapi["paths"]["/v1/predict"]["post"]["summary"]
    page.get_by_role("heading", name=summary).wait_for()
    for path in openapi["paths"]:
        assert page.get_by_text(path, exact=True).count() >= 1, path
    page.screenshot(path=str(tmp_path / "docs-redoc.png"), full_page=True)

    assert all(
        urlsplit(url).scheme in LOCAL_SCHEMES or urlsplit(url).hostname == LOOPBACK
        for url in loaded_resources(page)
        if url != REDOCLY_LOGO
    )
    assert set(requests_elsewhere) <= {REDOCLY_LOGO}
    assert all(REDOCLY_LOGO in error and "img-src" in error for error in page_errors), page_errors
