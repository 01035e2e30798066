// The digitlite web view's behaviour: live status and readings, correcting a reading, the readings graph, photo
// upload, the drawing canvas.
// Plain JavaScript, no build step; served by edge_app/web/app.py (`digitlite serve`).
// The page's own ?token=... (when the server was started with --token) is sent with every request.
"use strict";

const HEALTH_EVERY_MS = 5000;
const LATEST_EVERY_MS = 1000;
const PREDICT_AFTER_MS = 350; // after the last stroke ends: a digit drawn in two strokes is read once
const STREAM_RETRY_MS = 2000;
const PEN_WIDTH = 20; // px on the 280 px canvas: about MNIST's stroke once fit in 20x20
const GRAPH_EVERY_MS = 10000;
const GRAPH_SINCE = "24h"; // the graph's window
const GRAPH = { width: 320, height: 160, left: 44, right: 8, top: 8, bottom: 18 }; // svg viewBox units

const token = new URLSearchParams(location.search).get("token");
const $ = (id) => document.getElementById(id);

function withToken(url) {
  return token ? `${url}${url.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}` : url;
}

// A header value must be printable ASCII (fetch refuses anything else): a non-ASCII token goes in the query,
// as its UTF-8 percent-encoded, which the server compares byte for byte as it does a header.
const HEADER_SAFE = /^[\x20-\x7e]*$/;

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  const inHeader = token && HEADER_SAFE.test(token);
  if (inHeader) headers.Authorization = `Bearer ${token}`;
  const url = token && !inHeader ? withToken(path) : path;
  const response = await fetch(url, Object.assign({}, options, { headers, cache: "no-store" }));
  let body = null;
  try {
    body = await response.json();
  } catch (e) {
    body = null;
  }
  if (!response.ok) {
    const detail = body && typeof body.detail === "string" ? body.detail
      : body && body.detail ? JSON.stringify(body.detail) : `HTTP ${response.status}`;
    throw new Error(detail);
  }
  return body;
}

function show(el, on) { el.hidden = !on; }
function timeOf(iso) {
  const t = new Date(iso);
  return Number.isNaN(t.getTime()) ? iso : t.toLocaleTimeString();
}

// ------------------------------------------------------------------------------------ status and live

let streamStarted = false;

function startStream() {
  const img = $("stream");
  img.onerror = () => {
    $("live-note").textContent = "stream interrupted; reconnecting…";
    setTimeout(() => { img.src = withToken(`stream.mjpg?t=${Date.now()}`); }, STREAM_RETRY_MS);
  };
  img.onload = () => { $("live-note").textContent = ""; };
  img.src = withToken("stream.mjpg");
  show(img, true);
  streamStarted = true;
}

async function refreshHealth() {
  try {
    const h = await api("api/health");
    const parts = [h.model.name, `${h.runtime.name} ${h.runtime.version}`];
    if (h.live) parts.push(h.fps == null ? "starting…" : `${h.fps.toFixed(1)} FPS`);
    if (h.live && h.live.error) parts.push(h.live.error);
    if (h.live && h.live.ended) parts.push("the source has ended");
    $("status").textContent = parts.join(" · ");
    if (h.live && !streamStarted) startStream();
    if (!h.live) $("live-note").textContent = "No live camera on this server: upload a photo or draw a digit.";
    renderModels(h.models);
  } catch (e) {
    $("status").textContent = `cannot reach the device: ${e.message}`;
  }
}

function span(className, text) {
  const el = document.createElement("span");
  el.className = className;
  el.textContent = text;
  return el;
}

function renderHistory(items) {
  const list = $("history");
  list.replaceChildren(...items.map((item) => {
    const li = document.createElement("li");
    li.dataset.id = item.id;
    const time = document.createElement("time");
    time.dateTime = item.time;
    time.textContent = timeOf(item.time);
    li.append(time);
    if (item.corrected_text != null) {
      // The correction is the value; what was read stays visible beside it.
      li.append(span("text", item.corrected_text), span("was", item.text || "(none)"));
      li.classList.add("corrected");
    } else {
      li.append(span("text", item.text || "(none)"));
    }
    if (item.suspect && item.corrected_text == null) {
      const flag = span("flag", "suspect");
      flag.title = item.suspect;
      li.append(flag);
      li.classList.add("suspect");
    }
    li.append(span("origin", item.origin === "upload" ? "photo" : "camera"));
    if (item.id != null) {
      const fix = document.createElement("button");
      fix.type = "button";
      fix.className = "fix";
      fix.textContent = "correct";
      fix.setAttribute("aria-label", `correct reading ${item.id} (${item.text})`);
      fix.addEventListener("click", () => openCorrection(item));
      li.append(fix);
    }
    return li;
  }));
}

async function refreshLatest() {
  try {
    const latest = await api("api/latest");
    const stable = latest.stable;
    $("stable").textContent = stable && stable.text ? stable.text : "—";
    $("stable-suspect").textContent = stable && stable.suspect ? `suspect: ${stable.suspect}` : "";
    show($("stable-suspect"), Boolean(stable && stable.suspect));
    if (correcting == null) renderHistory(latest.history); // never under the user's fingers while correcting
  } catch (e) {
    // the status line already says when the device cannot be reached
  }
}

// ------------------------------------------------------------------------------------ readings graph

const SVG = "http://www.w3.org/2000/svg";

function svgEl(name, attributes, text) {
  const el = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) el.setAttribute(key, value);
  if (text != null) el.textContent = text;
  return el;
}

// The numeric readings (one number, its value: the correction where there is one), oldest first.
function numericPoints(readings) {
  return readings
    .filter((r) => /^[0-9]+$/.test(r.value || ""))
    .map((r) => ({ t: new Date(r.time).getTime(), v: Number(r.value), r }))
    .filter((p) => Number.isFinite(p.t));
}

function renderGraph(readings) {
  const points = numericPoints(readings);
  const g = GRAPH;
  const svg = $("graph");
  if (points.length === 0) {
    svg.replaceChildren();
    $("graph-note").textContent = `no numeric readings in the last ${GRAPH_SINCE}`;
    return;
  }
  const t0 = points[0].t, t1 = points[points.length - 1].t;
  const suspect = (p) => Boolean(p.r.suspect) && p.r.corrected_text == null;
  // The scale is the plausible readings': a wild suspect one is drawn at the edge, not allowed to flatten the line.
  const plausible = points.filter((p) => !suspect(p));
  const values = (plausible.length ? plausible : points).map((p) => p.v);
  const lo = Math.min(...values), hi = Math.max(...values);
  const x = (t) => g.left + (t1 > t0 ? (t - t0) / (t1 - t0) : 0.5) * (g.width - g.left - g.right);
  const clamp = (f) => Math.min(1, Math.max(0, f));
  const y = (v) => g.top + (hi > lo ? clamp((hi - v) / (hi - lo)) : 0.5) * (g.height - g.top - g.bottom);
  const line = points.filter((p) => !suspect(p)).map((p) => `${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`);
  const children = [
    svgEl("text", { class: "axis", x: 2, y: g.top + 8 }, String(hi)),
    svgEl("text", { class: "axis", x: 2, y: g.height - g.bottom }, String(lo)),
    svgEl("text", { class: "axis", x: g.left, y: g.height - 4 }, timeOf(points[0].r.time)),
    svgEl("text", { class: "axis", x: g.width - g.right, y: g.height - 4, "text-anchor": "end" },
      timeOf(points[points.length - 1].r.time)),
    svgEl("polyline", { class: "line", points: line.join(" ") }),
  ];
  for (const p of points) {
    const dot = svgEl("circle", { class: suspect(p) ? "point suspect" : "point", cx: x(p.t).toFixed(1),
      cy: y(p.v).toFixed(1), r: 3, "data-id": p.r.id });
    dot.append(svgEl("title", {}, `${p.r.value} at ${timeOf(p.r.time)}${suspect(p) ? ` (suspect: ${p.r.suspect})` : ""}`));
    children.push(dot);
  }
  svg.replaceChildren(...children);
  const flagged = points.filter(suspect).length;
  $("graph-note").textContent = `${points.length} numeric readings in the last ${GRAPH_SINCE}` +
    (flagged ? `, ${flagged} suspect (red, not the value)` : "");
}

function renderModels(models) {
  if (!models) return;
  const parts = [models.bundle ? `model bundle ${models.bundle}` : "the models installed with digitlite"];
  if (models.signer) parts.push(`signed by ${models.signer.describe}`);
  if (models.fallback) parts.push(`NOT LOADED, reading with ${models.loaded ? `bundle ${models.loaded}` : "the packaged models"}`);
  if (models.recognizer_sha256) parts.push(`recognizer ${models.recognizer_sha256.slice(0, 12)}…`);
  const u = models.last_update;
  if (u) parts.push(`last update: ${u.version || "packaged models"} ${u.outcome} at ${timeOf(u.time)}`);
  $("model-line").textContent = parts.join(" · ");
  const why = [models.fallback, u && u.reason].filter(Boolean).join("\n");
  if (why) $("model-line").title = why;
}

async function refreshGraph() {
  try {
    const history = await api(`api/history?since=${GRAPH_SINCE}&limit=1000`);
    renderGraph(history.readings);
  } catch (e) {
    $("graph-note").textContent = `readings unavailable: ${e.message}`;
  }
}

// ------------------------------------------------------------------------------------ corrections

let correcting = null; // the reading being corrected, while the form is open

function openCorrection(item) {
  correcting = item;
  $("correction-of").textContent = `#${item.id} (${item.text || "nothing"})`;
  $("correction-text").value = item.corrected_text != null ? item.corrected_text : item.text;
  show($("correction-error"), false);
  show($("correction"), true);
  $("correction-text").focus();
  $("correction-text").select();
}

function closeCorrection() {
  correcting = null;
  show($("correction"), false);
}

async function saveCorrection(event) {
  event.preventDefault();
  if (correcting == null) return;
  const text = $("correction-text").value.trim();
  try {
    const result = await api(`api/readings/${correcting.id}/correction`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ text }),
    });
    const ex = result.examples;
    const what = ex.kind === "digits" ? "digits" : ex.crops === 1 ? "number region" : "number regions";
    const kept = ex.labelled ? `${ex.crops} ${what} kept as training examples`
      : ex.frame ? "its image is kept for evaluation" : "no regions were kept for it";
    $("correction-done").textContent = `#${result.id} corrected: ${result.text} → ${result.corrected_text} (${kept})`;
    closeCorrection();
    refreshLatest();
  } catch (e) {
    $("correction-error").textContent = e.message;
    show($("correction-error"), true);
  }
}

// ------------------------------------------------------------------------------------ photo upload

let tableCsvUrl = null;

function renderTable(result) {
  // the grid read: one cell per table cell, so the columns line up as in the CSV
  const grid = $("table-grid");
  grid.replaceChildren();
  for (const row of result.cells) {
    const tr = document.createElement("tr");
    for (const cell of row) {
      const td = document.createElement("td");
      td.className = cell.state;
      td.textContent = cell.state === "text" ? "text" : cell.value;
      td.title = cell.state === "number" || cell.state === "unsure"
        ? `${cell.state}, least sure digit ${(cell.confidence * 100).toFixed(0)} %` : cell.state;
      tr.append(td);
    }
    grid.append(tr);
  }
  const ms = Object.values(result.latency_ms || {}).reduce((a, b) => a + b, 0) - (result.latency_ms.total || 0);
  const count = (state) => result.cells.flat().filter((c) => c.state === state).length;
  $("table-detail").textContent = `${result.rows} rows × ${result.columns} columns · ${count("number")} numbers, `
    + `${count("unsure")} unsure (?), ${count("text")} text not read · ${ms.toFixed(0)} ms`;
  if (tableCsvUrl) URL.revokeObjectURL(tableCsvUrl);
  tableCsvUrl = URL.createObjectURL(new Blob([result.csv], { type: "text/csv" }));
  $("table-csv").href = tableCsvUrl;
  if (result.annotated_jpeg) $("table-annotated").src = result.annotated_jpeg;
  show($("table-result"), true);
}

async function readPhoto(file) {
  show($("photo-error"), false);
  show($("photo-busy"), true);
  show($("photo-result"), false);
  show($("table-result"), false);
  const form = new FormData();
  form.append("file", file, file.name || "photo.jpg");
  try {
    if ($("photo-table").checked) {
      renderTable(await api("api/table?annotate=true", { method: "POST", body: form }));
      return;
    }
    const result = await api("api/read?annotate=true", { method: "POST", body: form });
    $("photo-text").textContent = result.text || "no digits found";
    const n = result.digits.length;
    const ms = Object.values(result.latency_ms || {}).reduce((a, b) => a + b, 0);
    $("photo-detail").textContent = `${n} digit${n === 1 ? "" : "s"} · ${result.image.width}×${result.image.height} px`
      + ` · ${ms.toFixed(0)} ms`;
    if (result.annotated_jpeg) $("photo-annotated").src = result.annotated_jpeg;
    show($("photo-result"), true);
    refreshLatest();
  } catch (e) {
    $("photo-error").textContent = e.message;
    show($("photo-error"), true);
  } finally {
    show($("photo-busy"), false);
    $("photo-input").value = ""; // choosing the same file again reads it again
  }
}

// ------------------------------------------------------------------------------------ drawing canvas

const pad = $("pad");
const pen = pad.getContext("2d");
let drawing = false;
let hasInk = false;
let predictTimer = null;

function clearPad() {
  pen.fillStyle = "#fff";
  pen.fillRect(0, 0, pad.width, pad.height);
  hasInk = false;
  show($("prediction"), false);
  show($("crop"), false);
  show($("draw-error"), false);
}

function padPoint(event) {
  const rect = pad.getBoundingClientRect();
  return [(event.clientX - rect.left) * (pad.width / rect.width), (event.clientY - rect.top) * (pad.height / rect.height)];
}

function onDown(event) {
  event.preventDefault();
  pad.setPointerCapture(event.pointerId);
  clearTimeout(predictTimer);
  drawing = true;
  const [x, y] = padPoint(event);
  pen.strokeStyle = "#000";
  pen.lineWidth = PEN_WIDTH;
  pen.lineCap = "round";
  pen.lineJoin = "round";
  pen.beginPath();
  pen.moveTo(x, y);
  pen.lineTo(x + 0.01, y); // a tap leaves a dot
  pen.stroke();
  hasInk = true;
}

function onMove(event) {
  if (!drawing) return;
  event.preventDefault();
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
  for (const e of events.length ? events : [event]) {
    const [x, y] = padPoint(e);
    pen.lineTo(x, y);
  }
  pen.stroke();
}

function onUp() {
  if (!drawing) return;
  drawing = false;
  clearTimeout(predictTimer);
  predictTimer = setTimeout(predict, PREDICT_AFTER_MS);
}

function renderTop3(top3) {
  $("top3").replaceChildren(...top3.map((t) => {
    const li = document.createElement("li");
    const digit = document.createElement("strong");
    digit.textContent = String(t.digit);
    const bar = document.createElement("progress");
    bar.max = 1;
    bar.value = t.probability;
    const p = document.createElement("span");
    p.className = "p";
    p.textContent = `${(100 * t.probability).toFixed(1)}%`;
    li.append(digit, bar, p);
    return li;
  }));
}

async function predict() {
  if (!hasInk) return;
  const blob = await new Promise((resolve) => pad.toBlob(resolve, "image/png"));
  const form = new FormData();
  form.append("file", blob, "digit.png");
  try {
    const result = await api("api/digit", { method: "POST", body: form });
    $("draw-digit").textContent = String(result.digit);
    $("draw-confidence").textContent = `${(100 * result.confidence).toFixed(1)}%`;
    renderTop3(result.top3);
    $("crop").src = result.crop_png;
    show($("crop"), true);
    show($("prediction"), true);
    show($("draw-error"), false);
  } catch (e) {
    $("draw-error").textContent = e.message;
    show($("draw-error"), true);
  }
}

// ------------------------------------------------------------------------------------ start

function start() {
  $("schema-link").href = withToken("openapi.json");
  $("photo-input").addEventListener("change", (e) => {
    if (e.target.files && e.target.files[0]) readPhoto(e.target.files[0]);
  });
  pad.addEventListener("pointerdown", onDown);
  pad.addEventListener("pointermove", onMove);
  pad.addEventListener("pointerup", onUp);
  pad.addEventListener("pointercancel", onUp);
  $("clear").addEventListener("click", clearPad);
  $("correction").addEventListener("submit", saveCorrection);
  $("correction-cancel").addEventListener("click", closeCorrection);
  clearPad();
  refreshHealth();
  refreshLatest();
  refreshGraph();
  setInterval(refreshHealth, HEALTH_EVERY_MS);
  setInterval(refreshLatest, LATEST_EVERY_MS);
  setInterval(refreshGraph, GRAPH_EVERY_MS);
}

start();
