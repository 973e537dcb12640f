"""The OpenAPI document: both request bodies with examples, problem+json errors, response schema."""

from typing import Any

import pytest
from fastapi.testclient import TestClient


@pytest.fixture(scope="module")
def openapi(client: TestClient) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def test_predict_documents_both_request_bodies_with_examples(openapi: dict[str, Any]) -> None:
    body = openapi["paths"]["/v1/predict"]["post"]["requestBody"]
    assert body["required"] is True
    content = body["content"]
    assert set(content) == {"multipart/form-data", "application/json"}
    multipart = content["multipart/form-data"]
    assert multipart["schema"]["required"] == ["file"]
    assert multipart["schema"]["properties"]["file"]["format"] == "binary"
    assert multipart["examples"]
    json_body = content["application/json"]
    assert set(json_body["schema"]["properties"]) == {
        "image_base64",
        "heatmaps",
        "heatmap_style",
        "heatmap_size",
    }
    assert json_body["schema"]["required"] == ["image_base64"]
    assert len(json_body["examples"]) >= 2
    assert all("image_base64" in example["value"] for example in json_body["examples"].values())


def test_predict_query_parameters(openapi: dict[str, Any]) -> None:
    parameters = {p["name"]: p for p in openapi["paths"]["/v1/predict"]["post"]["parameters"]}
    assert set(parameters) == {"heatmaps", "heatmap_style", "heatmap_size", "format"}
    assert all(p["in"] == "query" and p.get("description") for p in parameters.values())


def test_the_fhir_answer_is_documented(openapi: dict[str, Any]) -> None:
    content = openapi["paths"]["/v1/predict"]["post"]["responses"]["200"]["content"]
    assert {"application/json", "application/fhir+json"} <= set(content)


def test_inference_protocol_errors_are_documented_as_its_own(openapi: dict[str, Any]) -> None:
    responses = openapi["paths"]["/v2/models/{model_name}/infer"]["post"]["responses"]
    assert {"200", "400", "401", "404", "503"} <= set(responses)
    for status in ("400", "404", "503"):
        content = responses[status]["content"]
        assert set(content) == {"application/json"}
        assert content["application/json"]["schema"]["$ref"].endswith("/ErrorResponse")


def test_errors_are_documented_as_problem_json(openapi: dict[str, Any]) -> None:
    responses = openapi["paths"]["/v1/predict"]["post"]["responses"]
    assert {"200", "400", "401", "413", "415", "422", "503"} <= set(responses)
    for status in ("400", "401", "413", "415", "422", "503"):
        content = responses[status]["content"]
        assert list(content) == ["application/problem+json"], status
        assert content["application/problem+json"]["schema"]["$ref"].endswith("/ProblemDetails")
        assert content["application/problem+json"]["example"]["status"] == int(status)


def test_response_schema_has_descriptions_and_examples(openapi: dict[str, Any]) -> None:
    schema = openapi["components"]["schemas"]["PredictResponse"]
    for field in ("probabilities", "findings", "heatmaps", "heatmap_engine", "request_id", "warnings"):
        assert schema["properties"][field].get("description"), field
    assert schema["examples"][0]["probabilities"]
    assert openapi["components"]["securitySchemes"].keys() == {"ApiKey", "Bearer"}


def test_docs_page(client: TestClient) -> None:
    response = client.get("/docs")
    assert response.status_code == 200 and "swagger" in response.text.lower()
