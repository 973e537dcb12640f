"""OpenAPI details FastAPI cannot infer: the two request bodies of /v1/predict, its FHIR answer,
and error responses documented as application/problem+json (but under /v2, whose errors are the
Open Inference Protocol's)."""

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from service.api.problems import PROBLEM_JSON, speaks_inference_protocol
from service.api.schemas import PredictJSONRequest, ProblemDetails

PREDICT_REQUEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The radiograph, as a multipart upload or as base64 in JSON. PNG (8 or 16 bit, "
        "grey, RGB or RGBA), JPEG or DICOM, recognised by content, not by file name or declared type.",
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "The image file (exactly one part, named `file`).",
                        }
                    },
                    "additionalProperties": False,
                },
                "encoding": {
                    "file": {
                        "contentType": "image/png, image/jpeg, application/dicom, application/octet-stream"
                    }
                },
                "examples": {
                    "png": {
                        "summary": "Upload a PNG (curl -F file=@chest.png)",
                        "value": {"file": "(binary contents of chest.png)"},
                    }
                },
            },
            "application/json": {
                "schema": PredictJSONRequest.model_json_schema(),
                "examples": {
                    "plain": {
                        "summary": "Probabilities and findings only",
                        "value": {"image_base64": "iVBORw0KGgoAAAANSUhEUgAABAAAAAQACAAAAAB..."},
                    },
                    "top3_overlay": {
                        "summary": "Heatmaps of the 3 most probable labels, over the X-ray, 512 px",
                        "value": {
                            "image_base64": "iVBORw0KGgoAAAANSUhEUgAABAAAAAQACAAAAAB...",
                            "heatmaps": "top:3",
                            "heatmap_style": "overlay",
                            "heatmap_size": 512,
                        },
                    },
                    "labels_mask": {
                        "summary": "Masks of two named labels",
                        "value": {
                            "image_base64": "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAB...",
                            "heatmaps": "Effusion,Cardiomegaly",
                            "heatmap_style": "mask",
                        },
                    },
                },
            },
        },
    }
}

_PROBLEM_EXAMPLES = {
    400: "the multipart body has no 'file' part",
    401: "the API key is not valid",
    413: "the request body is larger than the limit of 20971520 bytes",
    415: "the content is not a PNG, JPEG or DICOM (Part 10) file",
    422: "heatmaps: unknown label 'Efusion'; use none, all, top:K or a comma-separated list of: ...",
    503: "4 predictions running and 16 queued (limits 4 and 16); retry shortly",
}


PREDICT_FHIR_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The prediction: this API's JSON (below), or with `Accept: application/fhir+json` "
        "or `?format=fhir` a FHIR R4 DiagnosticReport (status preliminary, LOINC 36554-4) whose "
        "contained resources are the model (Device), one Observation per label (probability, "
        "POS/NEG from the operating threshold) and one Media per heatmap; for DICOM input it "
        "refers to the study and image by their Study and SOP Instance UIDs only.",
        "content": {
            "application/fhir+json": {
                "schema": {
                    "type": "object",
                    "description": "FHIR R4 DiagnosticReport (https://hl7.org/fhir/R4/diagnosticreport.html)",
                    "required": ["resourceType", "status", "code"],
                    "properties": {"resourceType": {"const": "DiagnosticReport"}},
                }
            }
        },
    }
}


def problem_responses(descriptions: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries for error statuses (made problem+json by `install_openapi`)."""
    return {status: {"model": ProblemDetails, "description": text} for status, text in descriptions.items()}


def install_openapi(app: FastAPI) -> None:
    """Generate the schema once, with error responses under application/problem+json."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
                tags=app.openapi_tags,
            )
            for path, operations in schema.get("paths", {}).items():
                if speaks_inference_protocol(path):  # /v2 errors are the protocol's {"error": ...}
                    continue
                for operation in operations.values():
                    for status, response in operation.get("responses", {}).items():
                        _as_problem(int(status) if status.isdigit() else 0, response)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _as_problem(status: int, response: dict[str, Any]) -> None:
    content = response.get("content", {})
    if status < 400 or "application/json" not in content:
        return
    media = content.pop("application/json")
    example = _PROBLEM_EXAMPLES.get(status)
    if example is not None:
        media["example"] = {
            "type": "urn:cxr:problem:...",
            "title": response.get("description", "Error"),
            "status": status,
            "detail": example,
            "request_id": "0f8c2b6e9d5a4f1e8b7c6d5e4f3a2b1c",
        }
    content[PROBLEM_JSON] = media
