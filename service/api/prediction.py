"""One prediction: decode -> checks -> shared preprocessing -> onnxruntime -> findings -> heatmaps.

`analyse` is the CPU part and runs in a worker thread while holding an admission slot;
`predict` orchestrates it, the heatmap engine (sidecar, else CAM fast path, else none) and the
rendering, and builds the response. Heatmap trouble is a warning, never an error.
"""

import time
from dataclasses import dataclass
from functools import partial
from typing import Literal

import anyio
import numpy as np

from cxr.imaging import decode_image
from cxr.labels import LABELS
from cxr.preprocessing import resize_grey
from service.api.heatmaps import HeatmapStyle, cam_heatmaps, check_heatmap_size
from service.api.model_runtime import ModelRuntime
from service.api.ood import out_of_distribution_reasons
from service.api.problems import Problem
from service.api.rendering import render_heatmap
from service.api.request_context import current_request_id
from service.api.request_parsing import PredictionRequest
from service.api.schemas import Finding, ModelInfo, PredictResponse
from service.api.sidecar_client import SidecarUnavailable
from service.api.state import ServiceState

Engine = Literal["tensorflow", "cam"]


@dataclass(frozen=True)
class Analysis:
    probabilities: np.ndarray  # (14,)
    feature_map: np.ndarray  # (h, w, channels)
    tensor: np.ndarray  # the preprocessed input, sent to the sidecar
    background: np.ndarray | None  # the radiograph at heatmap size, for overlays
    heatmap_size: int
    ood_reasons: list[str]


def analyse(state: ServiceState, runtime: ModelRuntime, request: PredictionRequest) -> Analysis:
    settings, metrics = state.settings, state.metrics
    started = time.perf_counter()
    decoded = decode_image(request.image, settings.max_pixels)
    height, width = decoded.pixels.shape
    size = check_heatmap_size(request.size, runtime.input_size, (height, width), settings.heatmap_max_size)
    reasons = out_of_distribution_reasons(decoded)
    if reasons and settings.ood_mode == "refuse":
        raise Problem(
            422,
            "the image does not look like a frontal chest X-ray: " + "; ".join(reasons),
            slug="out-of-distribution",
            title="Not a chest X-ray",
        )
    tensor = runtime.preprocess(decoded.pixels)
    overlay = request.spec.wanted and request.style is HeatmapStyle.OVERLAY
    background = resize_grey(decoded.pixels, size) if overlay else None
    metrics.preprocess_seconds.observe(time.perf_counter() - started)
    started = time.perf_counter()
    prediction = runtime.predict(tensor)
    metrics.inference_seconds.observe(time.perf_counter() - started)
    return Analysis(prediction.probabilities, prediction.feature_map, tensor, background, size, reasons)


def findings_of(probabilities: np.ndarray, thresholds: dict[str, float]) -> list[Finding]:
    """Labels at or over their threshold, most probable first (ties in canonical order)."""
    found = [
        Finding(label=label, probability=float(probability), threshold=thresholds[label])
        for label, probability in zip(LABELS, probabilities, strict=True)
        if probability >= thresholds[label]
    ]
    return sorted(found, key=lambda finding: -finding.probability)


async def explain(
    state: ServiceState, runtime: ModelRuntime, analysis: Analysis, labels: list[str]
) -> tuple[dict[str, np.ndarray], Engine | None, list[str]]:
    """(label -> map in [0, 1], engine, warnings): the sidecar's Grad-CAM, else the fallback."""
    if not labels:
        return {}, None, []
    if state.sidecar is not None:
        try:
            return await state.sidecar.gradcam(analysis.tensor, labels), "tensorflow", []
        except SidecarUnavailable as error:
            state.metrics.sidecar_failures.labels(error.reason).inc()
            why = f"the Grad-CAM sidecar is unavailable ({error.reason}: {error.detail})"
    else:
        why = "the Grad-CAM sidecar is not configured"
    if state.settings.heatmap_fallback == "cam":
        maps = cam_heatmaps(analysis.feature_map, runtime.kernel, labels)
        return maps, "cam", [f"heatmaps: {why}; class activation maps were computed instead"]
    return {}, None, [f"heatmaps: {why}; no heatmaps (HEATMAP_FALLBACK=none)"]


def render_all(maps: dict[str, np.ndarray], analysis: Analysis, style: HeatmapStyle) -> dict[str, str]:
    return {
        label: render_heatmap(heatmap, analysis.heatmap_size, style, analysis.background)
        for label, heatmap in maps.items()
    }


async def predict(state: ServiceState, runtime: ModelRuntime, request: PredictionRequest) -> PredictResponse:
    async with state.admission.slot():
        analysis = await anyio.to_thread.run_sync(partial(analyse, state, runtime, request))
    warnings = [f"the image may not be a frontal chest X-ray: {reason}" for reason in analysis.ood_reasons]
    maps, engine, heatmap_warnings = await explain(
        state, runtime, analysis, request.spec.select(analysis.probabilities)
    )
    warnings += heatmap_warnings
    # Also when there is nothing to render: this await is the first cancellation point after the
    # (uncancellable) analysis, where REQUEST_TIMEOUT_SECONDS turns a late prediction into a 503.
    heatmaps = await anyio.to_thread.run_sync(
        partial(render_all, maps, analysis, request.style), limiter=state.render_limiter
    )
    if engine is not None:
        state.metrics.heatmap_responses.labels(engine).inc()
    card = runtime.card
    return PredictResponse(
        probabilities={label: float(p) for label, p in zip(LABELS, analysis.probabilities, strict=True)},
        findings=findings_of(analysis.probabilities, card.thresholds),
        heatmaps=heatmaps,
        heatmap_engine=engine if heatmaps else None,
        model=ModelInfo(name=card.name, version=card.version, sha256=card.sha256),
        request_id=current_request_id() or "",
        warnings=warnings,
    )
