"""GET / serves service/api/static/index.html under the page CSP, or 404 problem+json."""

from pathlib import Path

import pytest
from api_helpers import assert_problem
from fastapi.testclient import TestClient

from service.api.routes import page
from service.api.security_headers import PAGE_CSP


def test_page_is_served_with_its_headers(
    client: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = tmp_path / "index.html"
    index.write_text("<!doctype html><title>cxr</title>")
    monkeypatch.setattr(page, "PAGE", index)
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.text == index.read_text()
    assert response.headers["content-security-policy"] == PAGE_CSP
    assert (
        response.headers["x-frame-options"] == "DENY"
        and response.headers["x-content-type-options"] == "nosniff"
    )


def test_missing_page_is_a_404_problem(
    client: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(page, "PAGE", tmp_path / "absent.html")
    assert "not installed" in assert_problem(client.get("/"), 404)["detail"]


def test_static_files_get_the_page_csp_and_missing_ones_a_problem(client: TestClient) -> None:
    assert_problem(client.get("/static/no-such-file.js"), 404)
    for asset in sorted(page.STATIC_DIR.glob("*.js")) + sorted(page.STATIC_DIR.glob("*.css")):
        response = client.get(f"/static/{asset.name}")
        assert response.status_code == 200 and response.headers["content-security-policy"] == PAGE_CSP
