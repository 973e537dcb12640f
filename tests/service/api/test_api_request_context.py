"""Request ids: echoed when sane, generated otherwise, in headers, bodies and problems."""

import pytest
from fastapi.testclient import TestClient

from service.api.request_context import choose_request_id


@pytest.mark.parametrize("incoming", ["abc", "req-42.x:y_z", "A" * 128])
def test_sane_ids_are_kept(incoming: str) -> None:
    assert choose_request_id(incoming) == incoming


@pytest.mark.parametrize("incoming", [None, "", "A" * 129, "has space", "new\nline", "<script>", "é"])
def test_other_ids_are_replaced(incoming: str | None) -> None:
    generated = choose_request_id(incoming)
    assert generated != incoming and len(generated) == 32 and generated.isalnum()


def test_id_is_echoed_or_generated(client: TestClient) -> None:
    echoed = client.get("/healthz", headers={"X-Request-ID": "trace-123"})
    assert echoed.headers["x-request-id"] == "trace-123"
    first, second = client.get("/healthz"), client.get("/healthz")
    assert first.headers["x-request-id"] != second.headers["x-request-id"]
    replaced = client.get("/healthz", headers={"X-Request-ID": "bad id"})
    assert replaced.headers["x-request-id"] != "bad id"


def test_problem_bodies_carry_the_id(client: TestClient) -> None:
    response = client.get("/nowhere", headers={"X-Request-ID": "lost-1"})
    assert response.json()["request_id"] == "lost-1" == response.headers["x-request-id"]
