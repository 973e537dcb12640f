"""API keys on /v1/*: both header forms, wrong and missing keys, open operational routes."""

import logging
from collections.abc import Iterator

import pytest
from api_helpers import MakeSettings, Serve, assert_problem, upload
from fastapi.testclient import TestClient

KEYS = ("first-key-0123456789", "second-key-9876543210")


@pytest.fixture(scope="module")
def secured(serve: Serve, make_settings: MakeSettings) -> Iterator[TestClient]:
    with serve(make_settings(api_keys=",".join(KEYS))) as client:
        yield client


@pytest.mark.parametrize(
    "headers",
    [
        {"X-API-Key": KEYS[0]},
        {"X-API-Key": KEYS[1]},
        {"Authorization": f"Bearer {KEYS[0]}"},
        {"Authorization": f"bearer {KEYS[1]}"},
    ],
)
def test_either_header_form_is_accepted(
    secured: TestClient, radiograph_png: bytes, headers: dict[str, str]
) -> None:
    assert upload(secured, radiograph_png, headers=headers).status_code == 200
    assert secured.get("/v1/model", headers=headers).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-API-Key": ""},
        {"X-API-Key": "wrong-key-0123456789"},
        {"X-API-Key": KEYS[0][:-1]},
        {"X-API-Key": KEYS[0] + "x"},
        {"Authorization": "Bearer wrong-key-0123456789"},
        {"Authorization": f"Basic {KEYS[0]}"},
        {"Authorization": KEYS[0]},
        {"X-API-Key": "wrong-key-0123456789", "Authorization": f"Bearer {KEYS[0]}"},
        {"X-API-Key": "clé-fausse-123456".encode("latin-1")},
    ],
)
def test_missing_or_wrong_keys_are_401(
    secured: TestClient, radiograph_png: bytes, headers: dict[str, str]
) -> None:
    for response in (
        upload(secured, radiograph_png, headers=headers),
        secured.get("/v1/model", headers=headers),
    ):
        problem = assert_problem(response, 401)
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert all(key not in problem["detail"] for key in KEYS)


def test_auth_is_checked_before_the_body_is_read(secured: TestClient) -> None:
    response = secured.post(
        "/v1/predict", content=b"garbage", headers={"Content-Type": "multipart/form-data"}
    )
    assert_problem(response, 401)


@pytest.mark.parametrize(
    "path",
    ["/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/redoc", "/docs/static/swagger-ui.css"],
)
def test_operational_routes_need_no_key(secured: TestClient, path: str) -> None:
    assert secured.get(path).status_code == 200


def test_without_keys_no_auth_is_asked(client: TestClient, radiograph_png: bytes) -> None:
    assert upload(client, radiograph_png).status_code == 200
    assert upload(client, radiograph_png, headers={"X-API-Key": "anything-at-all"}).status_code == 200


def test_keys_never_reach_the_logs(
    secured: TestClient, radiograph_png: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        upload(secured, radiograph_png, headers={"X-API-Key": KEYS[0]})
        upload(secured, radiograph_png, headers={"Authorization": f"Bearer {KEYS[1]}"})
        upload(secured, radiograph_png, headers={"X-API-Key": "wrong-key-0123456789"})
    text = caplog.text + " ".join(str(record.__dict__) for record in caplog.records)
    assert caplog.records, "requests were logged"
    assert all(key not in text for key in (*KEYS, "wrong-key-0123456789"))
