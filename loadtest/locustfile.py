"""Locust load test of the API: real NIH radiographs, probabilities-only and with-heatmaps requests.

    make loadtest                                    # headless, against make run on :8000
    make loadtest LOADTEST_USERS=8 LOADTEST_DURATION=2m LOADTEST_HOST=http://127.0.0.1:8080

Environment (all optional):
  LOADTEST_API_KEY              sent as LOADTEST_AUTH_HEADER (default X-API-Key) when set
  LOADTEST_WEIGHT_PROBABILITIES relative weight of POST /v1/predict?heatmaps=none   (default 3)
  LOADTEST_WEIGHT_HEATMAPS      relative weight of POST /v1/predict?heatmaps=...     (default 1)
  LOADTEST_HEATMAPS             the heatmaps query of the second task                (default top:3)
  LOADTEST_IMAGES               comma-separated image files (default tests/fixtures/*.png)
  LOADTEST_WAIT                 seconds a user waits between requests                (default 0)

Every answer is checked: a 200 whose JSON holds the 14 probabilities (and the heatmaps asked
for); anything else counts as a failure, including 429/503 refusals by a full queue.
"""

import itertools
import os
from collections import Counter
from pathlib import Path

from locust import HttpUser, constant, events

REPO = Path(__file__).resolve().parent.parent


def _images() -> list[tuple[str, bytes]]:
    listed = os.environ.get("LOADTEST_IMAGES", "")
    paths = [Path(p) for p in listed.split(",") if p] or sorted((REPO / "tests" / "fixtures").glob("*.png"))
    if not paths:
        raise SystemExit("no images for the load test: set LOADTEST_IMAGES")
    return [(path.name, path.read_bytes()) for path in paths]


IMAGES = _images()
WEIGHT_PROBABILITIES = int(os.environ.get("LOADTEST_WEIGHT_PROBABILITIES", "3"))
WEIGHT_HEATMAPS = int(os.environ.get("LOADTEST_WEIGHT_HEATMAPS", "1"))
HEATMAPS = os.environ.get("LOADTEST_HEATMAPS", "top:3")
API_KEY = os.environ.get("LOADTEST_API_KEY", "")
AUTH_HEADER = os.environ.get("LOADTEST_AUTH_HEADER", "X-API-Key")
HEATMAP_ENGINES: Counter[str] = Counter()


def _content_type(name: str) -> str:
    suffix = Path(name).suffix.lower()
    return {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}.get(suffix, "application/dicom")


class RadiologyClient(HttpUser):
    """A client posting radiographs back to back (closed loop, LOADTEST_WAIT between requests)."""

    wait_time = constant(float(os.environ.get("LOADTEST_WAIT", "0")))

    def on_start(self) -> None:
        if API_KEY:
            self.client.headers[AUTH_HEADER] = API_KEY
        self._images = itertools.cycle(IMAGES)

    def _predict(self, heatmaps: str, name: str) -> None:
        filename, data = next(self._images)
        with self.client.post(
            f"/v1/predict?heatmaps={heatmaps}",
            files={"file": (filename, data, _content_type(filename))},
            name=name,
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
                return
            try:
                body = response.json()
            except ValueError:
                response.failure("the answer is not JSON")
                return
            problem = _check(body, heatmaps)
            if problem:
                response.failure(problem)
            else:
                response.success()

    def probabilities(self) -> None:
        self._predict("none", "POST /v1/predict (probabilities)")

    def with_heatmaps(self) -> None:
        self._predict(HEATMAPS, f"POST /v1/predict (heatmaps={HEATMAPS})")

    # locust takes {task: weight}; its stubs declare only the list form.
    tasks = {  # type: ignore[assignment]  # noqa: RUF012 (locust reads this class attribute)
        function: weight
        for function, weight in ((probabilities, WEIGHT_PROBABILITIES), (with_heatmaps, WEIGHT_HEATMAPS))
        if weight > 0
    }


def _check(body: object, heatmaps: str) -> str | None:
    """What is wrong with a 200 answer (None when nothing is); counts the heatmap engines."""
    if not isinstance(body, dict):
        return "the answer is not a JSON object"
    probabilities = body.get("probabilities")
    if not isinstance(probabilities, dict) or len(probabilities) != 14:
        return "no 14 probabilities in the answer"
    if heatmaps != "none":
        if not body.get("heatmaps"):
            return f"heatmaps={heatmaps} asked, none returned: {body.get('warnings')}"
        HEATMAP_ENGINES[str(body.get("heatmap_engine"))] += 1
    return None


@events.test_stop.add_listener
def _report_engines(**_: object) -> None:
    if HEATMAP_ENGINES:
        engines = ", ".join(f"{engine} {count}" for engine, count in sorted(HEATMAP_ENGINES.items()))
        print(f"heatmap engine of the answers with heatmaps: {engines} (cam = the sidecar was not used)")
