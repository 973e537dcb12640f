"""FHIR answers of /v1/predict (Accept: application/fhir+json or ?format=fhir): every answer is
parsed and validated by fhir.resources, and must say what the JSON answer says."""

import io
from typing import Any

import numpy as np
import pytest
from dicom_factory import IDENTIFYING_HEADER, dataset_bytes, identifying_strings_in, make_dataset
from fastapi.testclient import TestClient
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.media import Media
from fhir.resources.R4B.observation import Observation
from PIL import Image

from cxr.labels import LABELS
from service.api.fhir import FINDING_SYSTEM, MODEL_SHA256_SYSTEM, observation
from service.api.routes.predict import wants_fhir

FHIR_JSON = "application/fhir+json"
# More header values than dicom_factory's, distinctive enough to search for in the answers.
MORE_HEADER = {"StudyDate": "19870305", "AccessionNumber": "ACC-QZ-55102", "StudyID": "STUDY-QZ-8812"}


def fhir_report(
    client: TestClient, data: bytes, query: str = "", accept: str | None = None
) -> DiagnosticReport:
    headers = {"Accept": accept} if accept else None
    response = client.post(f"/v1/predict{query}", files={"file": ("image", data)}, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == FHIR_JSON
    return DiagnosticReport.model_validate_json(response.content)  # validates every element


def contained(report: DiagnosticReport, kind: type) -> dict[str, Any]:
    return {f"#{item.id}": item for item in report.contained or [] if isinstance(item, kind)}


@pytest.fixture(scope="module")
def plain(client: TestClient, radiograph_png: bytes) -> dict[str, Any]:
    response = client.post("/v1/predict", files={"file": ("image", radiograph_png)})
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture(scope="module")
def thresholds(client: TestClient) -> dict[str, float]:
    values: dict[str, float] = client.get("/v1/model").json()["thresholds"]
    return values


@pytest.mark.parametrize(
    ("query", "accept"),
    [("?format=fhir", None), ("", FHIR_JSON), ("", "application/json;q=0.5, application/fhir+json")],
)
def test_the_fhir_report_says_what_the_json_answer_says(
    client: TestClient,
    radiograph_png: bytes,
    plain: dict[str, Any],
    thresholds: dict[str, float],
    query: str,
    accept: str | None,
) -> None:
    report = fhir_report(client, radiograph_png, query, accept)
    assert report.status == "preliminary"
    assert [(c.system, c.code) for c in report.code.coding] == [("http://loinc.org", "36554-4")]
    observations = contained(report, Observation)
    assert [reference.reference for reference in report.result] == list(observations)
    assert len(observations) == len(LABELS)
    for item in observations.values():
        label = next(c.code for c in item.code.coding if c.system == FINDING_SYSTEM)
        probability = float(item.valueQuantity.value)
        assert probability == pytest.approx(plain["probabilities"][label], abs=1e-9)
        expected = "POS" if probability >= thresholds[label] else "NEG"
        assert item.interpretation[0].coding[0].code == expected
        assert item.status == "preliminary" and item.device.reference == "#model"
    (device,) = [item for item in report.contained if item.get_resource_type() == "Device"]
    assert (device.identifier[0].system, device.identifier[0].value) == (
        MODEL_SHA256_SYSTEM,
        plain["model"]["sha256"],
    )
    assert (
        device.deviceName[0].name == plain["model"]["name"]
        and device.version[0].value == plain["model"]["version"]
    )
    for finding in plain["findings"]:
        assert finding["label"].replace("_", " ") in report.conclusion
    assert len(report.conclusionCode or []) == len(plain["findings"])
    assert report.imagingStudy is None and report.media is None


def test_the_json_answer_stays_the_default(client: TestClient, radiograph_png: bytes) -> None:
    response = client.post(
        "/v1/predict?format=json", files={"file": ("image", radiograph_png)}, headers={"Accept": FHIR_JSON}
    )
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    assert set(response.json()["probabilities"]) == set(LABELS)


def test_heatmaps_are_media_attachments(client: TestClient, radiograph_png: bytes) -> None:
    report = fhir_report(client, radiograph_png, "?format=fhir&heatmaps=Effusion,Nodule&heatmap_size=64")
    media = contained(report, Media)
    assert [link.link.reference for link in report.media] == list(media)
    assert len(media) == 2
    for item in media.values():
        assert item.content.contentType == "image/png"
        png = item.content.data  # fhir.resources decodes base64Binary
        with Image.open(io.BytesIO(png)) as image:
            assert image.size == (64, 64)


def test_a_dicom_report_names_the_study_and_image_by_uid_only(
    client: TestClient, radiograph_png: bytes
) -> None:
    with Image.open(io.BytesIO(radiograph_png)) as image:
        grey = np.asarray(image.convert("L").resize((256, 256)), dtype=np.uint8)
    dataset = make_dataset(grey, 8, **MORE_HEADER)
    response = client.post(
        "/v1/predict?format=fhir&heatmaps=top:1", files={"file": ("patient.dcm", dataset_bytes(dataset))}
    )
    assert response.status_code == 200, response.text
    report = DiagnosticReport.model_validate_json(response.content)
    assert report.imagingStudy[0].identifier.value == f"urn:oid:{dataset.StudyInstanceUID}"
    for item in contained(report, Observation).values():
        assert item.derivedFrom[0].identifier.value == f"urn:oid:{dataset.SOPInstanceUID}"
    text = response.text
    assert identifying_strings_in(text) == []
    assert [value for value in (*IDENTIFYING_HEADER.values(), *MORE_HEADER.values()) if value in text] == []


def test_errors_stay_problem_json(client: TestClient) -> None:
    response = client.post("/v1/predict?format=fhir", files={"file": ("x.png", b"not an image")})
    assert response.status_code == 415 and response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("", False),
        ("application/json", False),
        ("application/fhir+json", True),
        ("application/fhir+json; fhirVersion=4.0", True),
        ("APPLICATION/FHIR+JSON", True),
        ("application/json, application/fhir+json;q=0", False),
        ("*/*", False),
    ],
)
def test_accept_header(accept: str, expected: bool) -> None:
    assert wants_fhir(accept) is expected


@pytest.mark.parametrize(("value", "code"), [(0.5, "POS"), (0.49999, "NEG"), (0.9, "POS")])
def test_interpretation_is_positive_at_or_above_the_threshold(value: float, code: str) -> None:
    item = observation("Effusion", value, 0.5, [])
    assert item.interpretation[0].coding[0].code == code
    assert float(item.referenceRange[0].high.value) == 0.5
