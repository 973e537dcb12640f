"""The FHIR R4 form of a prediction: one DiagnosticReport with its resources contained.

    DiagnosticReport  status preliminary, LOINC chest X-ray code, conclusion naming the findings
      contained Device          the model: name, version, sha256 of the weights
      contained Observation     one per label: probability as valueQuantity, POS/NEG interpretation
                                from the label's operating threshold (also its referenceRange.high)
      contained Media           one per heatmap asked for (PNG attachment)
      imagingStudy / derivedFrom  DICOM input only: the Study and SOP Instance UIDs, nothing else

Built as fhir.resources objects (the R4B models, whose JSON for these resources is R4's), so
construction validates every element; never assembled by hand. Pure: arrays and models in, a
resource out; the route serialises it.
"""

from datetime import UTC, datetime
from decimal import Decimal

from fhir.resources.R4B.attachment import Attachment
from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.coding import Coding
from fhir.resources.R4B.device import Device, DeviceDeviceName, DeviceVersion
from fhir.resources.R4B.diagnosticreport import DiagnosticReport, DiagnosticReportMedia
from fhir.resources.R4B.identifier import Identifier
from fhir.resources.R4B.media import Media
from fhir.resources.R4B.observation import Observation, ObservationReferenceRange
from fhir.resources.R4B.quantity import Quantity
from fhir.resources.R4B.reference import Reference

from cxr.imaging import DicomInstance
from cxr.labels import LABELS
from cxr.model_card import ModelCard
from service.api.schemas import PredictResponse

FHIR_JSON = "application/fhir+json"

# The project's own code system for the 14 labels (codes are the canonical label names), and
# identifier systems, under the project's URN namespace (as the problem types' urn:cxr:problem:).
FINDING_SYSTEM = "urn:cxr:fhir:CodeSystem:chestxray14-finding"
MODEL_SHA256_SYSTEM = "urn:cxr:fhir:model-sha256"
REQUEST_ID_SYSTEM = "urn:cxr:fhir:request-id"
DICOM_UID_SYSTEM = "urn:dicom:uid"  # FHIR's system for DICOM UIDs, values written urn:oid:<uid>

LOINC = "http://loinc.org"
SNOMED_CT = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"  # diagnostic service sections
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"

# LOINC 36554-4 "XR Chest Single view": this service reads one frontal film. Checked in public
# HL7 v2 / FHIR examples found with the search tool (an OpenMRS HL7 test names it "X-ray of chest,
# 1 view"; a FHIR ImagingStudy example "Chest, 1 view (X-ray)"); 36643-5 is "XR Chest 2 Views".
REPORT_CODE = Coding(system=LOINC, code="36554-4", display="XR Chest Single view")

# SNOMED CT codes only where checked against a SNOMED CT browser (the rest carry the project code
# only; a wrong clinical code is worse than none):
#   Nodule -> 786838002 "Nodule of lung (disorder)", synonym "Pulmonary nodule":
#   http://35.223.3.115/snomed/32506021000036107-20230731/?id=786838002&type=snomed
SNOMED_CODES: dict[str, tuple[str, str]] = {"Nodule": ("786838002", "Nodule of lung")}

POSITIVE = Coding(system=INTERPRETATION, code="POS", display="Positive")
NEGATIVE = Coding(system=INTERPRETATION, code="NEG", display="Negative")
DEVICE_ID = "model"


def finding_code(label: str) -> CodeableConcept:
    """The label in the project's code system, plus SNOMED CT where a checked code exists."""
    codings = [Coding(system=FINDING_SYSTEM, code=label, display=label.replace("_", " "))]
    if label in SNOMED_CODES:
        code, display = SNOMED_CODES[label]
        codings.append(Coding(system=SNOMED_CT, code=code, display=display))
    return CodeableConcept(coding=codings, text=label.replace("_", " "))


def probability(value: float) -> Quantity:
    # repr: the shortest decimal that reads back as the same float, as the JSON answer writes it
    return Quantity(value=Decimal(repr(float(value))), unit="probability", system=UCUM, code="1")


def model_device(card: ModelCard) -> Device:
    return Device(
        id=DEVICE_ID,
        identifier=[Identifier(system=MODEL_SHA256_SYSTEM, value=card.sha256)],
        deviceName=[DeviceDeviceName(name=card.name, type="model-name")],
        version=[DeviceVersion(value=card.version)],
        type=CodeableConcept(text=f"Chest X-ray classifier: {card.architecture}"),
    )


def uid_reference(uid: str, what: str) -> Reference:
    """A logical reference to a DICOM object by its UID alone."""
    identifier = Identifier(system=DICOM_UID_SYSTEM, value=f"urn:oid:{uid}", type=CodeableConcept(text=what))
    return Reference(identifier=identifier, display=what)


def observation(label: str, value: float, threshold: float, derived_from: list[Reference]) -> Observation:
    positive = value >= threshold
    return Observation(
        id=f"finding-{label.lower().replace('_', '-')}",
        status="preliminary",
        category=[
            CodeableConcept(coding=[Coding(system=OBSERVATION_CATEGORY, code="imaging", display="Imaging")])
        ],
        code=finding_code(label),
        valueQuantity=probability(value),
        interpretation=[CodeableConcept(coding=[POSITIVE if positive else NEGATIVE])],
        referenceRange=[
            ObservationReferenceRange(
                high=probability(threshold),
                text="operating threshold from the model card: a finding at or above it",
            )
        ],
        device=Reference(reference=f"#{DEVICE_ID}"),
        derivedFrom=derived_from or None,
    )


def conclusion(response: PredictResponse) -> str:
    if response.findings:
        named = ", ".join(
            f"{f.label.replace('_', ' ')} (p = {f.probability:.2f}, threshold {f.threshold:.2f})"
            for f in response.findings
        )
        text = f"Findings at or above their operating thresholds: {named}."
    else:
        text = "No finding at or above its operating threshold."
    text += " Preliminary result of an AI model, not a diagnosis."
    if response.warnings:
        text += " Warnings: " + "; ".join(response.warnings) + "."
    return text


def diagnostic_report(
    response: PredictResponse,
    card: ModelCard,
    instance: DicomInstance | None = None,
    issued: datetime | None = None,
) -> DiagnosticReport:
    """The prediction `response` as a DiagnosticReport (validated on construction)."""
    study = instance.study_instance_uid if instance else None
    sop = instance.sop_instance_uid if instance else None
    study_reference = uid_reference(study, "DICOM Study Instance UID") if study else None
    derived_from = [uid_reference(sop, "DICOM SOP Instance UID")] if sop else []
    observations = [
        observation(label, response.probabilities[label], card.thresholds[label], derived_from)
        for label in LABELS
    ]
    media = [
        Media(
            id=f"heatmap-{label.lower().replace('_', '-')}",
            status="completed",
            content=Attachment(
                contentType="image/png",
                data=png.encode("ascii"),  # base64 text: the type decodes it to check
                title=f"{response.heatmap_engine} heatmap: {label}",
            ),
            device=Reference(reference=f"#{DEVICE_ID}"),
        )
        for label, png in response.heatmaps.items()
    ]
    return DiagnosticReport(
        contained=[model_device(card), *observations, *media],
        identifier=[Identifier(system=REQUEST_ID_SYSTEM, value=response.request_id)]
        if response.request_id
        else None,
        status="preliminary",
        category=[CodeableConcept(coding=[Coding(system=V2_0074, code="RAD", display="Radiology")])],
        code=CodeableConcept(coding=[REPORT_CODE], text="Chest X-ray: AI classification of 14 findings"),
        issued=issued or datetime.now(UTC),
        imagingStudy=[study_reference] if study_reference else None,
        result=[Reference(reference=f"#{item.id}") for item in observations],
        media=[
            DiagnosticReportMedia(comment=item.content.title, link=Reference(reference=f"#{item.id}"))
            for item in media
        ]
        or None,
        conclusion=conclusion(response),
        conclusionCode=[finding_code(finding.label) for finding in response.findings] or None,
    )


def fhir_json(report: DiagnosticReport) -> bytes:
    """The resource as FHIR JSON (fhir.resources' own serialisation)."""
    return report.model_dump_json(exclude_none=True).encode("utf-8")
