"""One prediction: decode -> checks -> shared preprocessing -> onnxruntime -> findings -> heatmaps.

Every protocol goes through here: /v1 JSON and its FHIR form call `predict`; the Open Inference
Protocol (/v2) calls `analyse_images` (encoded images) or `infer_tensors` (preprocessed inputs).
`analyse` (one image, decode to inference) and `infer` (one preprocessed tensor) are the CPU parts
and run in a worker thread while holding an admission slot; `predict` adds the heatmap engine
(sidecar, else CAM fast path, else none) and the rendering, and builds the response. Heatmap
trouble is a warning, never an error. `refuse_if_full` and `within_limits` turn overload and
REQUEST_TIMEOUT_SECONDS into 503s, counted in the metrics, for every route alike.
"""

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Literal, TypeVar

import anyio
import numpy as np

from cxr.imaging import DicomInstance, decode_image
from cxr.labels import LABELS
from cxr.preprocessing import resize_grey
from service.api.admission import Overloaded
from service.api.heatmaps import HeatmapStyle, cam_heatmaps, check_heatmap_size
from service.api.model_runtime import ModelRuntime, Prediction
from service.api.ood import ANALYSIS_SIZE, out_of_distribution_reasons
from service.api.problems import Problem, overloaded
from service.api.rendering import render_heatmap
from service.api.request_context import current_request_id
from service.api.request_parsing import PredictionRequest
from service.api.schemas import Finding, ModelInfo, PredictResponse
from service.api.sidecar_client import SidecarUnavailable
from service.api.state import ServiceState

Engine = Literal["tensorflow", "cam"]
T = TypeVar("T")


@dataclass(frozen=True)
class Analysis:
    probabilities: np.ndarray  # (14,)
    feature_map: np.ndarray  # (h, w, channels)
    tensor: np.ndarray  # the preprocessed input, sent to the sidecar
    background: np.ndarray | None  # the radiograph at heatmap size, for overlays
    heatmap_size: int
    ood_reasons: list[str]
    instance: DicomInstance | None  # the DICOM source's Study/SOP Instance UIDs, else None


@dataclass(frozen=True)
class Outcome:
    """A /v1 prediction: the response and the DICOM UIDs it may be linked to (FHIR)."""

    response: PredictResponse
    instance: DicomInstance | None


def analyse(
    state: ServiceState,
    runtime: ModelRuntime,
    image: bytes,
    heatmap_size: int | None = None,
    overlay: bool = False,
) -> Analysis:
    """One image: decode -> size and out-of-distribution checks -> preprocessing -> inference."""
    settings, metrics = state.settings, state.metrics
    started = time.perf_counter()
    # A JPEG needs no more pixels than the guard's analysis, the model and the heatmap use.
    needed = max(ANALYSIS_SIZE, runtime.input_size, heatmap_size or 0) if settings.jpeg_reduced_decode else 0
    decoded = decode_image(image, settings.max_pixels, min_side=needed)
    height, width = decoded.pixels.shape
    size = check_heatmap_size(heatmap_size, runtime.input_size, (height, width), settings.heatmap_max_size)
    source = decoded.float_image  # made once, here: the guard, the model and an overlay resize it
    guard = state.side_thread.submit(out_of_distribution_reasons, decoded) if is_alone(state) else None
    tensor = runtime.preprocess(source)
    metrics.preprocess_seconds.observe(time.perf_counter() - started)
    if guard is None:
        # Under load every core is busy: the guard runs first, so a refused image costs no inference.
        reasons = checked(out_of_distribution_reasons(decoded), settings.ood_mode)
        prediction = infer(state, runtime, tensor)
    else:
        # Alone, the guard takes the idle core while the preprocessing and the inference run; its
        # verdict is still awaited before any answer.
        prediction = infer(state, runtime, tensor)
        reasons = checked(guard.result(), settings.ood_mode)
    background = resize_grey(source, size) if overlay else None
    return Analysis(
        prediction.probabilities,
        prediction.feature_map,
        tensor,
        background,
        size,
        reasons,
        decoded.instance,
    )


def checked(reasons: list[str], ood_mode: str) -> list[str]:
    """The guard's reasons, or the 422 problem when OOD_MODE=refuse and there are any."""
    if reasons and ood_mode == "refuse":
        raise Problem(
            422,
            "the image does not look like a frontal chest X-ray: " + "; ".join(reasons),
            slug="out-of-distribution",
            title="Not a chest X-ray",
        )
    return reasons


def infer(state: ServiceState, runtime: ModelRuntime, tensor: np.ndarray) -> Prediction:
    """One preprocessed (size, size, 3) input through onnxruntime, timed in the metrics."""
    started = time.perf_counter()
    # Alone, the wide thread pool gets the idle cores; with other requests in flight, one thread.
    prediction = runtime.predict(tensor, alone=is_alone(state))
    state.metrics.inference_seconds.observe(time.perf_counter() - started)
    return prediction


def is_alone(state: ServiceState) -> bool:
    """No other request is running or queued: the cores beyond this request's thread are idle."""
    return state.admission.running + state.admission.queued <= 1


async def analyse_images(state: ServiceState, runtime: ModelRuntime, images: list[bytes]) -> list[Analysis]:
    """`analyse` for each image, in one admission slot (a batch is one request)."""
    async with state.admission.slot():
        return await anyio.to_thread.run_sync(lambda: [analyse(state, runtime, image) for image in images])


async def infer_tensors(state: ServiceState, runtime: ModelRuntime, tensors: np.ndarray) -> list[Prediction]:
    """`infer` for each (size, size, 3) input of an (N, size, size, 3) batch, in one admission slot.

    One at a time, as /v1 runs them, so that the same input gives the same numbers on every route.
    """
    async with state.admission.slot():
        return await anyio.to_thread.run_sync(lambda: [infer(state, runtime, tensor) for tensor in tensors])


def refuse_if_full(state: ServiceState) -> None:
    """503 at once, before the body is read, when every slot and the queue are taken."""
    try:
        state.admission.check()
    except Overloaded as error:
        state.metrics.rejected.labels("overloaded").inc()
        raise overloaded(str(error)) from None


async def within_limits(state: ServiceState, work: Callable[[], Awaitable[T]]) -> T:
    """Await `work()` within REQUEST_TIMEOUT_SECONDS; overload and timeout become 503 problems."""
    try:
        with anyio.fail_after(state.settings.request_timeout_seconds):
            return await work()
    except Overloaded as error:
        state.metrics.rejected.labels("overloaded").inc()
        raise overloaded(str(error)) from None
    except TimeoutError:
        state.metrics.rejected.labels("timeout").inc()
        raise Problem(
            503,
            f"the prediction took longer than {state.settings.request_timeout_seconds:g} s",
            slug="timeout",
            title="Timed out",
            headers={"Retry-After": "5"},
        ) from None


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


async def predict(state: ServiceState, runtime: ModelRuntime, request: PredictionRequest) -> Outcome:
    overlay = request.spec.wanted and request.style is HeatmapStyle.OVERLAY
    async with state.admission.slot():
        analysis = await anyio.to_thread.run_sync(
            partial(analyse, state, runtime, request.image, request.size, overlay)
        )
    warnings = [f"the image may not be a frontal chest X-ray: {reason}" for reason in analysis.ood_reasons]
    maps, engine, heatmap_warnings = await explain(
        state, runtime, analysis, request.spec.select(analysis.probabilities)
    )
    warnings += heatmap_warnings
    # Either way a cancellation point after the (uncancellable) analysis, where
    # REQUEST_TIMEOUT_SECONDS turns a late prediction into a 503; no thread hop when nothing is drawn.
    if maps:
        heatmaps = await anyio.to_thread.run_sync(
            partial(render_all, maps, analysis, request.style), limiter=state.render_limiter
        )
    else:
        await anyio.lowlevel.checkpoint()
        heatmaps = {}
    if engine is not None:
        state.metrics.heatmap_responses.labels(engine).inc()
    card = runtime.card
    response = PredictResponse(
        probabilities={label: float(p) for label, p in zip(LABELS, analysis.probabilities, strict=True)},
        findings=findings_of(analysis.probabilities, card.thresholds),
        heatmaps=heatmaps,
        heatmap_engine=engine if heatmaps else None,
        model=ModelInfo(
            name=card.name, version=card.version, sha256=card.sha256, precision=runtime.precision
        ),
        request_id=current_request_id() or "",
        warnings=warnings,
    )
    return Outcome(response, analysis.instance)
