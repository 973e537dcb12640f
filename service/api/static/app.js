// Chest X-ray diagnosis page: upload -> POST /v1/predict -> bars, heatmaps, warnings.
// Plain JS, no dependencies; served from 'self' because the page's CSP forbids inline code.
//
// Heatmaps: one request asks for heatmaps=all. The sidecar computes Grad-CAM for all labels in one
// batched backward pass (as costly as one label) and the maps are small (model input size), so the
// label selector then switches instantly, without re-uploading the image and re-running the model.
// PNG/JPEG: the browser shows the original and the API returns `mask` heatmaps (transparent where
// there is no heat) stacked on it with an opacity slider. DICOM: browsers cannot display it, so the
// API returns `overlay` heatmaps, which draw the radiograph as the model saw it under the colours.
"use strict";

(() => {
  const KEY_STORAGE = "cxr.apiKey";
  const byId = (id) => document.getElementById(id);
  const ui = {
    serviceStatus: byId("service-status"),
    form: byId("upload-form"),
    dropZone: byId("drop-zone"),
    fileInput: byId("file-input"),
    keyDetails: byId("key-details"),
    apiKey: byId("api-key"),
    forgetKey: byId("forget-key"),
    analyse: byId("analyse"),
    cancel: byId("cancel"),
    status: byId("status"),
    error: byId("error"),
    errorTitle: byId("error-title"),
    errorDetail: byId("error-detail"),
    errorMeta: byId("error-meta"),
    results: byId("results"),
    resultsFile: byId("results-file"),
    preview: byId("preview"),
    heatmap: byId("heatmap"),
    noPreview: byId("no-preview"),
    caption: byId("viewer-caption"),
    imageNote: byId("image-note"),
    labelSelect: byId("label-select"),
    opacityControl: byId("opacity-control"),
    opacity: byId("opacity"),
    findingsSummary: byId("findings-summary"),
    probabilities: byId("probabilities"),
    warningsBox: byId("warnings-box"),
    warnings: byId("warnings"),
    modelName: byId("model-name"),
    modelSha: byId("model-sha"),
    engine: byId("heatmap-engine"),
    requestId: byId("request-id"),
  };

  const ENGINES = {
    tensorflow: "Grad-CAM (TensorFlow sidecar)",
    cam: "class activation maps (fast path)",
  };

  let chosenFile = null;
  let controller = null; // AbortController of the request in flight
  let shown = null; // {response, thresholds, kind}
  const thresholdsBySha = new Map(); // model sha256 -> {label: threshold} from GET /v1/model

  // ---------- helpers ----------

  const percent = (value) => `${(value * 100).toFixed(1)}%`;

  function setState(state) {
    document.body.dataset.state = state; // idle | busy | done | error (also used by the tests)
  }

  function setStatus(text, busy = false) {
    ui.status.textContent = text;
    ui.status.classList.toggle("busy", busy);
  }

  function authHeaders() {
    const key = ui.apiKey.value.trim();
    return key ? { "X-API-Key": key } : {};
  }

  async function sniff(file) {
    const head = new Uint8Array(await file.slice(0, 132).arrayBuffer());
    const starts = (bytes, offset = 0) => bytes.every((byte, i) => head[offset + i] === byte);
    if (starts([0x89, 0x50, 0x4e, 0x47])) return "png";
    if (starts([0xff, 0xd8, 0xff])) return "jpeg";
    if (starts([0x44, 0x49, 0x43, 0x4d], 128)) return "dicom"; // "DICM" after the preamble
    if (/\.(dcm|dicom)$/i.test(file.name)) return "dicom"; // bare data set without preamble
    return "unknown";
  }

  function readAsDataUrl(file) {
    // A data: URL, not a blob: one: the CSP allows only 'self' and data: images.
    return new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve(reader.result);
      reader.onerror = () => reject(reader.error);
      reader.readAsDataURL(file);
    });
  }

  async function readProblem(response) {
    const requestId = response.headers.get("X-Request-ID");
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null;
    }
    const problem = {
      status: response.status,
      title: `Request failed (HTTP ${response.status})`,
      detail: response.statusText || "The server gave no explanation.",
      requestId,
      retryAfter: response.headers.get("Retry-After"),
    };
    if (body && typeof body === "object") {
      if (typeof body.title === "string") problem.title = body.title;
      if (typeof body.detail === "string") problem.detail = body.detail;
      if (typeof body.request_id === "string") problem.requestId = body.request_id;
    }
    return problem;
  }

  // ---------- service status (GET /readyz needs no key) ----------

  async function checkService() {
    try {
      const response = await fetch("/readyz", { cache: "no-store" });
      const body = await response.json();
      const model = body.model || {};
      const name = model.name ? `${model.name} ${model.version}` : "model";
      if (body.state === "loading") {
        ui.serviceStatus.textContent = "Model loading…";
        setTimeout(checkService, 5000);
      } else if (body.state === "failed") {
        ui.serviceStatus.textContent = `Model failed to load: ${model.error || "see the server log"}`;
      } else if (body.state === "degraded") {
        ui.serviceStatus.textContent = `${name}: ready (heatmaps by the fast path)`;
      } else {
        ui.serviceStatus.textContent = `${name}: ready`;
      }
    } catch (_) {
      ui.serviceStatus.textContent = "Service not reachable";
    }
  }

  // ---------- errors ----------

  function clearError() {
    ui.error.hidden = true;
    ui.errorTitle.textContent = "";
    ui.errorDetail.textContent = "";
    ui.errorMeta.textContent = "";
  }

  function showError(problem) {
    ui.errorTitle.textContent = problem.title;
    ui.errorDetail.textContent = problem.detail;
    const meta = [];
    if (problem.status) meta.push(`HTTP ${problem.status}`);
    if (problem.retryAfter) meta.push(`retry after ${problem.retryAfter} s`);
    if (problem.requestId) meta.push(`request ID ${problem.requestId}`);
    ui.errorMeta.textContent = meta.join(" · ");
    ui.error.hidden = false;
    if (problem.status === 401) {
      ui.keyDetails.open = true;
      ui.errorDetail.textContent += " Enter the API key below the file chooser, then choose “Analyse again”.";
      ui.apiKey.focus();
    }
  }

  // ---------- analysis ----------

  async function modelThresholds(sha256, signal) {
    // Thresholds of every label (findings carry only their own); optional: absent if this fails.
    if (thresholdsBySha.has(sha256)) return thresholdsBySha.get(sha256);
    try {
      const response = await fetch("/v1/model", { headers: authHeaders(), signal });
      if (!response.ok) return {};
      const card = await response.json();
      if (card.sha256 !== sha256 || typeof card.thresholds !== "object") return {};
      thresholdsBySha.set(sha256, card.thresholds);
      return card.thresholds;
    } catch (_) {
      return {};
    }
  }

  async function analyse(file) {
    if (controller) controller.abort();
    const mine = new AbortController();
    controller = mine;
    clearError();
    setState("busy");
    setStatus(`Analysing ${file.name}…`, true);
    ui.results.setAttribute("aria-busy", "true");
    ui.analyse.disabled = true;
    ui.cancel.hidden = false;
    const started = performance.now();
    try {
      const kind = await sniff(file);
      const style = kind === "dicom" ? "overlay" : "mask";
      const preview = kind === "png" || kind === "jpeg" ? await readAsDataUrl(file) : null;
      const form = new FormData();
      form.append("file", file, file.name);
      const response = await fetch(`/v1/predict?heatmaps=all&heatmap_style=${style}`, {
        method: "POST",
        body: form,
        headers: authHeaders(),
        signal: mine.signal,
      });
      if (!response.ok) {
        const problem = await readProblem(response);
        if (controller !== mine) return;
        ui.results.hidden = true;
        showError(problem);
        setStatus("");
        setState("error");
        return;
      }
      const body = await response.json();
      const thresholds = await modelThresholds(body.model.sha256, mine.signal);
      if (controller !== mine) return;
      render(file, kind, preview, body, thresholds);
      const seconds = ((performance.now() - started) / 1000).toFixed(1);
      const count = body.findings.length;
      setStatus(`Analysed ${file.name} in ${seconds} s: ${count} finding${count === 1 ? "" : "s"}.`);
      setState("done");
    } catch (error) {
      if (controller !== mine) return;
      if (error.name === "AbortError") {
        setStatus("Cancelled.");
        setState("idle");
      } else {
        ui.results.hidden = true;
        showError({ title: "Could not reach the service", detail: String(error.message || error) });
        setStatus("");
        setState("error");
      }
    } finally {
      if (controller === mine) {
        controller = null;
        ui.results.removeAttribute("aria-busy");
        ui.analyse.disabled = chosenFile === null;
        ui.cancel.hidden = true;
      }
    }
  }

  // ---------- rendering ----------

  function render(file, kind, previewUrl, response, cardThresholds) {
    const thresholds = { ...cardThresholds };
    for (const finding of response.findings) thresholds[finding.label] = finding.threshold;
    const findingLabels = new Set(response.findings.map((finding) => finding.label));
    const ranked = Object.entries(response.probabilities).sort((a, b) => b[1] - a[1]);
    shown = { response, thresholds, findingLabels, ranked, kind };

    ui.resultsFile.textContent = `— ${file.name}`;

    // Image: the original for PNG/JPEG; for DICOM only the API's overlay can show it.
    const stacked = previewUrl !== null;
    ui.preview.hidden = !stacked;
    if (stacked) {
      ui.preview.src = previewUrl;
      ui.preview.alt = `The uploaded radiograph ${file.name}`;
    } else {
      ui.preview.removeAttribute("src");
    }
    ui.heatmap.classList.toggle("stacked", stacked);
    ui.heatmap.classList.toggle("alone", !stacked);
    ui.opacityControl.hidden = !stacked;
    const hasHeatmaps = Object.keys(response.heatmaps).length > 0;
    ui.noPreview.hidden = stacked || hasHeatmaps;
    ui.noPreview.textContent =
      kind === "dicom"
        ? "Browsers cannot display DICOM, and no heatmap came back to show the image (see the warnings)."
        : "This file cannot be displayed here.";
    ui.imageNote.hidden = stacked || !hasHeatmaps;
    ui.imageNote.textContent =
      "Browsers cannot display DICOM: the image is the API's heatmap overlay, drawn on the radiograph " +
      "as the model saw it (at its input size).";

    // Findings summary and bars, most probable first.
    ui.findingsSummary.textContent = response.findings.length
      ? `Findings: ${response.findings.map((f) => `${f.label} (${percent(f.probability)})`).join(", ")}.`
      : "No label is at or over its threshold.";
    ui.probabilities.replaceChildren(...ranked.map(([label, probability]) => barItem(label, probability)));

    // Label selector.
    ui.labelSelect.replaceChildren(
      ...ranked.map(([label, probability]) => {
        const option = document.createElement("option");
        option.value = label;
        const tag = findingLabels.has(label) ? ", finding" : "";
        const missing = response.heatmaps[label] ? "" : " (no heatmap)";
        option.textContent = `${label.replaceAll("_", " ")} — ${percent(probability)}${tag}${missing}`;
        return option;
      }),
    );
    ui.labelSelect.disabled = !hasHeatmaps;
    ui.opacity.disabled = !hasHeatmaps;
    const first = ranked.find(([label]) => response.heatmaps[label]) || ranked[0];
    selectLabel(first[0]);

    // Warnings and model.
    ui.warnings.replaceChildren(
      ...response.warnings.map((text) => {
        const item = document.createElement("li");
        item.textContent = text;
        return item;
      }),
    );
    ui.warningsBox.hidden = response.warnings.length === 0;
    ui.modelName.textContent = `${response.model.name} ${response.model.version}`;
    ui.modelSha.textContent = response.model.sha256;
    ui.engine.textContent = response.heatmap_engine ? ENGINES[response.heatmap_engine] || response.heatmap_engine : "none";
    ui.requestId.textContent = response.request_id;
    ui.results.hidden = false;
  }

  function barItem(label, probability) {
    const { thresholds, findingLabels } = shown;
    const threshold = thresholds[label];
    const finding = findingLabels.has(label);
    const item = document.createElement("li");
    const row = document.createElement("button");
    row.type = "button";
    row.className = finding ? "prob-row finding" : "prob-row";
    row.dataset.label = label;
    row.setAttribute("aria-pressed", "false");
    const thresholdText = threshold === undefined ? "" : `, threshold ${percent(threshold)}`;
    row.setAttribute(
      "aria-label",
      `${label.replaceAll("_", " ")}: ${percent(probability)}${thresholdText}${finding ? ", finding" : ""}. Show its heatmap.`,
    );

    const name = document.createElement("span");
    name.className = "prob-label";
    name.textContent = label.replaceAll("_", " ");
    if (finding) {
      const badge = document.createElement("span");
      badge.className = "prob-badge";
      badge.textContent = "Finding";
      name.append(badge);
    }

    const track = document.createElement("span");
    track.className = "prob-track";
    track.setAttribute("aria-hidden", "true");
    const bar = document.createElement("span");
    bar.className = "prob-bar";
    bar.style.width = `${Math.min(100, Math.max(0, probability * 100))}%`; // CSSOM: allowed by the CSP
    track.append(bar);
    if (threshold !== undefined) {
      const tick = document.createElement("span");
      tick.className = "prob-threshold";
      tick.style.left = `${threshold * 100}%`;
      track.append(tick);
    }

    const value = document.createElement("span");
    value.className = "prob-value";
    value.textContent = percent(probability);

    row.append(name, track, value);
    if (threshold !== undefined) {
      const text = document.createElement("span");
      text.className = "prob-thr-text";
      text.setAttribute("aria-hidden", "true");
      text.textContent = `threshold ${percent(threshold)}`;
      row.append(text);
    }
    row.addEventListener("click", () => selectLabel(label));
    item.append(row);
    return item;
  }

  function selectLabel(label) {
    if (!shown) return;
    const { response } = shown;
    ui.labelSelect.value = label;
    for (const row of ui.probabilities.querySelectorAll(".prob-row")) {
      row.setAttribute("aria-pressed", String(row.dataset.label === label));
    }
    const png = response.heatmaps[label];
    const pretty = label.replaceAll("_", " ");
    const probability = percent(response.probabilities[label]);
    if (png) {
      ui.heatmap.src = `data:image/png;base64,${png}`;
      ui.heatmap.alt = `Heatmap for ${pretty} (${probability})`;
      ui.heatmap.hidden = false;
      const engine = ENGINES[response.heatmap_engine] || response.heatmap_engine || "heatmap";
      ui.caption.textContent =
        `${pretty}, ${probability}: ${engine}. Warm colours mark the regions that raised this label's score.`;
    } else {
      ui.heatmap.removeAttribute("src");
      ui.heatmap.alt = "";
      ui.heatmap.hidden = true;
      ui.caption.textContent = Object.keys(response.heatmaps).length
        ? `No heatmap for ${pretty}.`
        : "No heatmaps came back (see the warnings).";
    }
    applyOpacity();
  }

  function applyOpacity() {
    ui.heatmap.style.opacity = ui.heatmap.classList.contains("stacked") ? String(ui.opacity.value / 100) : "1";
  }

  // ---------- file choice ----------

  function choose(file) {
    if (!file) return;
    chosenFile = file;
    ui.analyse.disabled = false;
    analyse(file);
  }

  ui.fileInput.addEventListener("change", () => choose(ui.fileInput.files[0]));

  ui.form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (chosenFile) analyse(chosenFile);
  });

  ui.cancel.addEventListener("click", () => {
    if (controller) controller.abort();
  });

  // Drag and drop: onto the drop zone; a file dropped elsewhere must not navigate away.
  for (const type of ["dragover", "drop"]) {
    document.addEventListener(type, (event) => event.preventDefault());
  }
  ui.dropZone.addEventListener("dragenter", () => ui.dropZone.classList.add("dragging"));
  ui.dropZone.addEventListener("dragover", (event) => {
    event.dataTransfer.dropEffect = "copy";
    ui.dropZone.classList.add("dragging");
  });
  ui.dropZone.addEventListener("dragleave", (event) => {
    if (!ui.dropZone.contains(event.relatedTarget)) ui.dropZone.classList.remove("dragging");
  });
  ui.dropZone.addEventListener("drop", (event) => {
    ui.dropZone.classList.remove("dragging");
    const files = event.dataTransfer.files;
    if (!files || files.length === 0) return;
    try {
      ui.fileInput.files = files; // shows the dropped file's name in the input
    } catch (_) {
      /* read-only in some browsers */
    }
    choose(files[0]);
  });

  // ---------- heatmap controls and API key ----------

  ui.labelSelect.addEventListener("change", () => selectLabel(ui.labelSelect.value));
  ui.opacity.addEventListener("input", applyOpacity);

  try {
    ui.apiKey.value = sessionStorage.getItem(KEY_STORAGE) || "";
  } catch (_) {
    /* storage disabled: the key lives only in the field */
  }
  if (ui.apiKey.value) ui.keyDetails.open = true;
  ui.apiKey.addEventListener("input", () => {
    try {
      const key = ui.apiKey.value.trim();
      if (key) sessionStorage.setItem(KEY_STORAGE, key);
      else sessionStorage.removeItem(KEY_STORAGE);
    } catch (_) {
      /* storage disabled */
    }
  });
  ui.forgetKey.addEventListener("click", () => {
    ui.apiKey.value = "";
    try {
      sessionStorage.removeItem(KEY_STORAGE);
    } catch (_) {
      /* storage disabled */
    }
    ui.apiKey.focus();
  });

  setState("idle");
  checkService();
})();
