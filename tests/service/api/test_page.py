"""The web page at GET / in real headless Chromium (Debian's /usr/bin/chromium, python playwright).

One real API process (`python -m service.api`, real model, API key configured, no Grad-CAM sidecar
so heatmaps come from the CAM fast path with a warning) serves the page; each test gets a fresh
browser context (fixtures api_url, page and page_errors of conftest.py). Skips where
/usr/bin/chromium is absent; CI installs it (.ci/run).
"""

import base64
import io
import re
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from api_helpers import BROWSER_API_KEY
from PIL import Image

from cxr.labels import LABELS

pytestmark = [pytest.mark.browser, pytest.mark.slow]

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
RADIOGRAPH = FIXTURES / "00000001_000.png"


# Page scripts are given as arrow functions: Playwright polls a bare expression with eval(), which
# the page's CSP (no 'unsafe-eval') refuses.
def open_page(page: Any, key: str | None = BROWSER_API_KEY) -> None:
    page.goto("/")
    page.wait_for_function("() => document.body.dataset.state === 'idle'")
    if key is not None:
        page.locator("#key-details summary").click()
        page.fill("#api-key", key)


def wait_for_state(page: Any, state: str) -> None:
    """Wait until the analysis ends; it must have ended in `state` ('done' or 'error')."""
    page.wait_for_function("() => ['done', 'error'].includes(document.body.dataset.state)")
    ended = page.evaluate("() => document.body.dataset.state")
    assert ended == state, f"page ended in {ended!r}: {page.inner_text('#error')}"


def upload(page: Any, files: Any) -> dict[str, Any]:
    """Choose `files` in the file input; the /v1/predict answer (status, body, url)."""
    with page.expect_response(re.compile(r"/v1/predict\?")) as answer:
        page.set_input_files("#file-input", files)
    response = answer.value
    return {"status": response.status, "body": response.json(), "url": response.url}


def heatmap_loaded(page: Any) -> dict[str, Any]:
    page.wait_for_function(
        "() => { const img = document.getElementById('heatmap');"
        " return !img.hidden && img.complete && img.naturalWidth > 0; }"
    )
    return dict(
        page.evaluate(
            "() => { const img = document.getElementById('heatmap');"
            " return {src: img.src, width: img.naturalWidth, height: img.naturalHeight, alt: img.alt,"
            " opacity: getComputedStyle(img).opacity}; }"
        )
    )


def test_page_and_its_files_are_served_under_the_page_csp(api_url: str) -> None:
    with httpx.Client(base_url=api_url, timeout=10.0) as client:
        page = client.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        for path in re.findall(r'(?:src|href)="(/static/[^"]+)"', page.text):
            asset = client.get(path)
            assert asset.status_code == 200, path
        assert not re.search(r"https?://", page.text), "the page must not load anything from elsewhere"
        assert not re.search(r"\son[a-z]+=", page.text), "no inline event handlers under the CSP"


def test_radiograph_shows_sorted_bars_findings_heatmaps_and_model(
    page: Any, page_errors: list[str], tmp_path: Path
) -> None:
    open_page(page)
    answer = upload(page, str(RADIOGRAPH))
    assert answer["status"] == 200, answer
    body = answer["body"]
    wait_for_state(page, "done")

    # 14 bars, most probable first, each value as the API gave it.
    rows = page.locator("#probabilities .prob-row")
    assert rows.count() == len(LABELS)
    shown = [(row.get_attribute("data-label"), row.locator(".prob-value").inner_text()) for row in rows.all()]
    expected = sorted(body["probabilities"].items(), key=lambda item: -item[1])
    assert [label for label, _ in shown] == [label for label, _ in expected]
    assert [value for _, value in shown] == [f"{100 * p:.1f}%" for _, p in expected]
    widths = page.eval_on_selector_all(
        "#probabilities .prob-bar", "bars => bars.map(bar => bar.getBoundingClientRect().width)"
    )
    assert widths == sorted(widths, reverse=True) and widths[0] > 0

    # Findings highlighted with their threshold; every bar shows one (from GET /v1/model).
    found = {row.get_attribute("data-label") for row in page.locator(".prob-row.finding").all()}
    assert found == {finding["label"] for finding in body["findings"]}
    for finding in body["findings"]:
        row = page.locator(f'.prob-row[data-label="{finding["label"]}"]')
        assert f"threshold {100 * finding['threshold']:.1f}%" in row.inner_text()
        assert row.locator(".prob-badge").text_content() == "Finding"
    assert page.locator(".prob-threshold").count() == len(LABELS)

    # The original image, and the most probable label's heatmap stacked on it, as data: PNGs.
    preview = page.evaluate(
        "() => { const img = document.getElementById('preview');"
        " return {loaded: img.complete && img.naturalWidth > 0, src: img.src.slice(0, 22)}; }"
    )
    assert preview == {"loaded": True, "src": "data:image/png;base64,"}
    top_label = expected[0][0]
    heatmap = heatmap_loaded(page)
    assert heatmap["src"] == f"data:image/png;base64,{body['heatmaps'][top_label]}"
    assert heatmap["width"] > 0 and heatmap["height"] > 0
    assert top_label.replace("_", " ") in heatmap["alt"]
    assert float(heatmap["opacity"]) == pytest.approx(0.6)
    assert page.input_value("#label-select") == top_label

    # Warnings (no sidecar: the fast path says so) and the model.
    assert body["heatmap_engine"] == "cam" and body["warnings"]
    assert page.locator("#warnings li").all_inner_texts() == body["warnings"]
    assert page.inner_text("#model-name") == f"{body['model']['name']} {body['model']['version']}"
    assert page.inner_text("#model-sha") == body["model"]["sha256"]
    assert page.inner_text("#request-id") == body["request_id"]
    assert page.locator("#error").is_hidden()

    page.screenshot(path=str(tmp_path / "page-radiograph.png"), full_page=True)

    # Keyboard: the label selector switches the heatmap without a new request.
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.focus("#label-select")
    page.keyboard.press("ArrowDown")
    second_label = expected[1][0]
    assert page.input_value("#label-select") == second_label
    assert heatmap_loaded(page)["src"] == f"data:image/png;base64,{body['heatmaps'][second_label]}"
    # A bar is a button: Enter on it shows that label's heatmap.
    last_label = expected[-1][0]
    page.focus(f'.prob-row[data-label="{last_label}"]')
    page.keyboard.press("Enter")
    assert page.input_value("#label-select") == last_label
    assert page.get_attribute(f'.prob-row[data-label="{last_label}"]', "aria-pressed") == "true"
    assert heatmap_loaded(page)["src"] == f"data:image/png;base64,{body['heatmaps'][last_label]}"
    # The opacity slider (a range input, End = maximum) changes the stacked heatmap's opacity.
    page.focus("#opacity")
    page.keyboard.press("End")
    assert float(heatmap_loaded(page)["opacity"]) == pytest.approx(1.0)
    assert requests == []
    assert page_errors == []


def test_jpeg_is_shown_with_the_heatmap_stacked_on_it(page: Any, page_errors: list[str]) -> None:
    buffer = io.BytesIO()
    Image.open(RADIOGRAPH).convert("L").save(buffer, format="JPEG", quality=90)
    open_page(page)
    answer = upload(page, {"name": "chest.jpg", "mimeType": "image/jpeg", "buffer": buffer.getvalue()})
    assert answer["status"] == 200, answer
    assert "heatmap_style=mask" in answer["url"]
    wait_for_state(page, "done")
    assert page.locator("#probabilities .prob-row").count() == len(LABELS)
    preview = page.evaluate(
        "() => { const img = document.getElementById('preview');"
        " return {loaded: img.complete && img.naturalWidth > 0, src: img.src.slice(0, 23)}; }"
    )
    assert preview == {"loaded": True, "src": "data:image/jpeg;base64,"}
    assert "stacked" in (page.get_attribute("#heatmap", "class") or "")
    heatmap_loaded(page)
    assert page.locator("#image-note").is_hidden()
    assert page_errors == []


def test_text_file_shows_the_problem_title_and_detail(
    page: Any, page_errors: list[str], tmp_path: Path
) -> None:
    open_page(page)
    answer = upload(page, {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not an image\n" * 20})
    assert answer["status"] == 415
    problem = answer["body"]
    wait_for_state(page, "error")
    error = page.locator("#error")
    assert error.is_visible() and error.get_attribute("role") == "alert"
    assert page.inner_text("#error-title") == problem["title"]
    assert page.inner_text("#error-detail") == problem["detail"]
    meta = page.inner_text("#error-meta")
    assert "HTTP 415" in meta and problem["request_id"] in meta
    assert page.locator("#results").is_hidden()
    page.screenshot(path=str(tmp_path / "page-error.png"), full_page=True)
    assert page_errors == []


def test_dropped_file_without_key_asks_for_it_then_works(page: Any, page_errors: list[str]) -> None:
    open_page(page, key=None)
    png = base64.b64encode(RADIOGRAPH.read_bytes()).decode("ascii")
    with page.expect_response(re.compile(r"/v1/predict\?")) as answer:
        page.evaluate(
            """([name, data]) => {
                const bytes = Uint8Array.from(atob(data), c => c.charCodeAt(0));
                const transfer = new DataTransfer();
                transfer.items.add(new File([bytes], name, {type: 'image/png'}));
                const zone = document.getElementById('drop-zone');
                for (const type of ['dragenter', 'dragover', 'drop']) {
                    const init = {dataTransfer: transfer, bubbles: true, cancelable: true};
                    zone.dispatchEvent(new DragEvent(type, init));
                }
            }""",
            [RADIOGRAPH.name, png],
        )
    assert answer.value.status == 401
    wait_for_state(page, "error")
    assert page.inner_text("#error-title") == answer.value.json()["title"]
    assert page.evaluate("() => document.activeElement.id") == "api-key"

    page.keyboard.type(BROWSER_API_KEY)
    page.click("#analyse")
    wait_for_state(page, "done")
    assert page.locator("#probabilities .prob-row").count() == len(LABELS)
    assert page.locator("#error").is_hidden()
    heatmap_loaded(page)
    # The key stays for this tab only (sessionStorage), so a reload keeps it.
    page.reload()
    page.wait_for_function("() => document.body.dataset.state === 'idle'")
    assert page.input_value("#api-key") == BROWSER_API_KEY
    assert page_errors == []


def test_dicom_shows_the_api_overlay_instead_of_a_preview(
    page: Any, page_errors: list[str], tmp_path: Path
) -> None:
    from dicom_factory import make_dicom

    pixels = np.asarray(Image.open(RADIOGRAPH).convert("L").resize((512, 512)), dtype=np.uint8)
    dicom = make_dicom(pixels, bits_stored=8)
    open_page(page)
    answer = upload(page, {"name": "chest.dcm", "mimeType": "application/dicom", "buffer": dicom})
    assert answer["status"] == 200, answer
    wait_for_state(page, "done")
    assert "heatmap_style=overlay" in answer["url"]
    assert page.locator("#preview").is_hidden()
    assert page.locator("#opacity-control").is_hidden()
    assert "cannot display DICOM" in page.inner_text("#image-note")
    heatmap = heatmap_loaded(page)
    assert heatmap["src"].startswith("data:image/png;base64,") and float(heatmap["opacity"]) == 1.0
    # The overlay draws the radiograph under the colours: not transparent, not one colour.
    overlay = Image.open(io.BytesIO(base64.b64decode(heatmap["src"].split(",", 1)[1]))).convert("RGB")
    assert np.asarray(overlay).std() > 5
    page.screenshot(path=str(tmp_path / "page-dicom.png"), full_page=True)
    assert page_errors == []
