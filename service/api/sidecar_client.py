"""HTTP client of the Grad-CAM sidecar (service/gradcam_protocol.py), behind a circuit breaker.

Every failure is a `SidecarUnavailable` with a short machine reason (refused, timeout,
http_error, bad_response, model_mismatch, circuit_open) so the caller can fall back and count it.
Before its maps are used, the sidecar must show (GET /readyz, re-checked every
`VERIFY_SECONDS`) that it serves the same weights (sha256) as this process: Grad-CAM of another
model would be a wrong explanation, not a slow one.

The sidecar's /readyz also carries its `instance_id` (new with every process): when the one this
client sees changes, the sidecar was restarted (by service.run, Docker or Kubernetes alike) and
`on_restart` is called (the API counts it in /metrics and shows it in /readyz).
"""

import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import numpy as np
from pydantic import ValidationError

from service.api.circuit_breaker import CircuitBreaker
from service.gradcam_protocol import GRADCAM_PATH, GradCamRequest, GradCamResponse, decode_array, encode_array

VERIFY_SECONDS = 60.0
PROBE_TIMEOUT_SECONDS = 1.0


class SidecarUnavailable(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class SidecarInstance:
    """One sidecar process, as its /readyz describes it."""

    id: str
    started_at: float | None  # Unix seconds


@dataclass(frozen=True)
class SidecarStatus:
    reachable: bool
    ready: bool
    same_model: bool | None
    detail: str


class SidecarClient:
    def __init__(
        self,
        base_url: str,
        timeout_seconds: float,
        breaker: CircuitBreaker,
        model_sha256: str | None,
        transport: httpx.AsyncBaseTransport | None = None,
        on_restart: Callable[["SidecarInstance"], None] | None = None,
    ) -> None:
        self.base_url = base_url
        self.breaker = breaker
        self.model_sha256 = model_sha256
        self.timeout = httpx.Timeout(timeout_seconds, connect=min(timeout_seconds, 2.0))
        self._client = httpx.AsyncClient(base_url=base_url, timeout=self.timeout, transport=transport)
        self._verified_until = 0.0
        self.on_restart = on_restart
        self.instance: SidecarInstance | None = None  # the sidecar process last seen
        self.restarts_seen = 0

    async def aclose(self) -> None:
        await self._client.aclose()

    async def gradcam(self, tensor: np.ndarray, labels: list[str]) -> dict[str, np.ndarray]:
        """Label -> (h, w) float32 Grad-CAM map in [0, 1] for the preprocessed `tensor`."""
        if not self.breaker.allow():
            raise SidecarUnavailable("circuit_open", "skipped after repeated failures; retried periodically")
        try:
            if time.monotonic() >= self._verified_until:
                await self._verify_model()
            maps = await self._request_gradcam(tensor, labels)
        except SidecarUnavailable:
            self.breaker.record_failure()
            self._verified_until = 0.0
            raise
        except BaseException:  # cancelled (request timeout): free the half-open trial, blame no one
            self.breaker.abandon_trial()
            raise
        self.breaker.record_success()
        return maps

    async def status(self) -> SidecarStatus:
        """GET /readyz with a short timeout: reachable, ready, serving the same weights."""
        try:
            response = await self._client.get(
                "/readyz", timeout=min(PROBE_TIMEOUT_SECONDS, self.timeout.read or 1.0)
            )
        except httpx.HTTPError as error:
            return SidecarStatus(False, False, None, _describe(error))
        self._note_instance(response)
        if response.status_code != 200:
            return SidecarStatus(True, False, None, f"sidecar /readyz answered {response.status_code}")
        if self.model_sha256 is None:
            return SidecarStatus(True, True, None, "ready (this API's model is still loading)")
        same = _sha256_of(response) == self.model_sha256
        return SidecarStatus(True, True, same, "ready" if same else "the sidecar serves different weights")

    async def _verify_model(self) -> None:
        try:
            response = await self._client.get("/readyz")
        except httpx.HTTPError as error:
            raise _unavailable(error) from None
        self._note_instance(response)
        if response.status_code != 200:
            raise SidecarUnavailable("http_error", f"/readyz answered {response.status_code}")
        sha256 = _sha256_of(response)
        if sha256 != self.model_sha256:
            raise SidecarUnavailable(
                "model_mismatch", f"the sidecar serves weights {sha256}, this API serves {self.model_sha256}"
            )
        self._verified_until = time.monotonic() + VERIFY_SECONDS

    def _note_instance(self, response: httpx.Response) -> None:
        """Remember the sidecar process that answered /readyz; a new one after another is a restart."""
        instance = _instance_of(response)
        if instance is None or (self.instance is not None and instance.id == self.instance.id):
            return
        restarted = self.instance is not None
        self.instance = instance
        if restarted:
            self.restarts_seen += 1
            if self.on_restart is not None:
                self.on_restart(instance)

    async def _request_gradcam(self, tensor: np.ndarray, labels: list[str]) -> dict[str, np.ndarray]:
        shape = (int(tensor.shape[0]), int(tensor.shape[1]), int(tensor.shape[2]))
        body = GradCamRequest(tensor=encode_array(tensor), shape=shape, labels=labels)
        try:
            response = await self._client.post(
                GRADCAM_PATH, content=body.model_dump_json(), headers={"Content-Type": "application/json"}
            )
        except httpx.HTTPError as error:
            raise _unavailable(error) from None
        if response.status_code != 200:
            raise SidecarUnavailable("http_error", f"{GRADCAM_PATH} answered {response.status_code}")
        try:
            answer = GradCamResponse.model_validate_json(response.content)
            maps = {label: decode_array(answer.heatmaps[label], answer.heatmap_shape) for label in labels}
        except (ValidationError, KeyError, ValueError) as error:
            raise SidecarUnavailable("bad_response", f"unusable answer ({type(error).__name__})") from None
        for label, heatmap in maps.items():
            if not np.all(np.isfinite(heatmap)):
                raise SidecarUnavailable("bad_response", f"the map of {label} has non-finite values")
            maps[label] = np.clip(heatmap, 0.0, 1.0)
        return maps


def _unavailable(error: httpx.HTTPError) -> SidecarUnavailable:
    if isinstance(error, httpx.TimeoutException):
        return SidecarUnavailable("timeout", _describe(error))
    if isinstance(error, httpx.ConnectError):
        return SidecarUnavailable("refused", _describe(error))
    return SidecarUnavailable("http_error", _describe(error))


def _describe(error: httpx.HTTPError) -> str:
    if isinstance(error, httpx.TimeoutException):
        return "timed out"
    if isinstance(error, httpx.ConnectError):
        return "connection failed"
    return type(error).__name__


def _json_object(response: httpx.Response) -> dict[str, object]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _sha256_of(response: httpx.Response) -> str | None:
    value = _json_object(response).get("sha256")
    return value if isinstance(value, str) else None


def _instance_of(response: httpx.Response) -> SidecarInstance | None:
    body = _json_object(response)
    instance_id, started_at = body.get("instance_id"), body.get("started_at")
    if not isinstance(instance_id, str) or not instance_id:
        return None
    started = float(started_at) if isinstance(started_at, int | float) else None
    return SidecarInstance(instance_id, started)
