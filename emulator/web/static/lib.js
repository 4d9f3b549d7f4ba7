// Shared helpers of the dashboard: the control API, DOM building, formatting, URL state.
// All server data goes into the page as text nodes / attributes, never parsed as HTML.

const TOKEN = new URLSearchParams(window.location.search).get("token");

export const $ = (id) => document.getElementById(id);

export function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "className") node.className = value;
    else if (key === "dataset") {
      for (const [k, v] of Object.entries(value)) if (v !== null && v !== undefined) node.dataset[k] = v;
    } else if (key === "value") node.value = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// -- the control API ---------------------------------------------------------------------------
export async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (TOKEN) headers.Authorization = `Bearer ${TOKEN}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
  if (!response.ok) {
    const err = data && data.error;
    const field = err && err.details && err.details.field ? ` (${err.details.field})` : "";
    throw new Error(err ? `${err.message}${field}` : `${response.status} ${response.statusText}`);
  }
  return data;
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== "") q.set(k, v);
  const text = q.toString();
  return text ? `?${text}` : "";
}

export const streamUrl = () => `events${TOKEN ? `?token=${encodeURIComponent(TOKEN)}` : ""}`;

// -- the URL keeps the view and its filters, so a view can be shared ------------------------------
export function urlState() {
  return new URLSearchParams(window.location.search);
}

export function setUrlState(changes, { push = false } = {}) {
  const params = urlState();
  for (const [k, v] of Object.entries(changes)) {
    if (v === null || v === undefined || v === "") params.delete(k); else params.set(k, v);
  }
  const url = `${window.location.pathname}?${params.toString()}`;
  if (push) window.history.pushState(null, "", url); else window.history.replaceState(null, "", url);
}

export function linkTo(params) {
  const q = new URLSearchParams();
  if (TOKEN) q.set("token", TOKEN);
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== "") q.set(k, v);
  return `${window.location.pathname}?${q.toString()}`;
}

// -- feedback ----------------------------------------------------------------------------------------
export function notify(message, ok) {
  const box = $("notice");
  box.textContent = message;
  box.classList.toggle("ok", Boolean(ok));
  box.hidden = false;
  clearTimeout(notify.timer);
  notify.timer = setTimeout(() => { box.hidden = true; }, ok ? 4000 : 9000);
}

export async function guarded(button, action) {
  if (button) button.disabled = true;
  try { return await action(); } catch (err) { notify(err.message); return undefined; } finally {
    if (button) button.disabled = false;
  }
}

export async function copyText(text, what) {
  const buffer = $("copy-buffer");
  buffer.value = text;  // also the fallback where the Clipboard API is not allowed
  try {
    await navigator.clipboard.writeText(text);
  } catch (_) {
    buffer.hidden = false;
    buffer.select();
    document.execCommand("copy");
    buffer.hidden = true;
  }
  notify(`Copied ${what} (${text.length} characters)`, true);
}

// -- formatting -------------------------------------------------------------------------------------
const pad = (n) => String(n).padStart(2, "0");

export function fmtTime(epochSeconds) {
  if (epochSeconds === null || epochSeconds === undefined) return "–";
  const d = new Date(epochSeconds * 1000);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function fmtDuration(seconds) {
  let s = Math.round(Math.abs(seconds));
  const parts = [];
  for (const [unit, size] of [["d", 86400], ["h", 3600], ["m", 60]]) {
    if (s >= size) { parts.push(`${Math.floor(s / size)}${unit}`); s %= size; }
  }
  if (s || !parts.length) parts.push(`${s}s`);
  return parts.slice(0, 2).join(" ");
}

export function fmtMs(ms) {
  const n = Number(ms);
  return n >= 1000 ? `${(n / 1000).toFixed(2)} s` : `${n.toFixed(1)} ms`;
}

// A time with its base: wall (this machine's clock) or emulated (the emulator's clock).
export function stamp(epochSeconds, base) {
  return el("span", { className: `stamp ${base}`, title: `${base} time` },
    fmtTime(epochSeconds), el("abbr", { className: "base", title: `${base} clock` }, base === "wall" ? "wall" : "emu"));
}

export function pretty(text) {
  if (text === null || text === undefined || text === "") return "(empty)";
  if (typeof text !== "string") return JSON.stringify(text, null, 2);
  try { return JSON.stringify(JSON.parse(text), null, 2); } catch (_) { return text; }
}

export function parseJson(text) {
  try { return JSON.parse(text); } catch (_) { return null; }
}

export const shortEvent = (type) => String(type || "").replace(/^OfflineRecord/, "");

export function chip(text, kind, title) {
  return el("span", { className: `chip ${kind || text}`, title }, text);
}

// -- task health: a task whose callbacks were not acknowledged must not look all green ----------
export function taskHealth(task) {
  const d = task.deliveries || { attempts: 0, failed_attempts: 0, undelivered_events: 0 };
  if (d.undelivered_events > 0) {
    return { kind: "unacked", label: `${d.undelivered_events} undelivered`,
      title: "retries ran out: the backend never acknowledged these callbacks" };
  }
  if (d.failed_attempts > 0) {
    return { kind: "refused", label: `${d.failed_attempts} failed ${d.failed_attempts === 1 ? "attempt" : "attempts"}`,
      title: "attempts the backend did not acknowledge (later ones may have succeeded)" };
  }
  return null;
}

export function taskChip(task) {
  const health = taskHealth(task);
  let kind = task.status === "finished" ? task.outcome || "success" : task.status;
  let label = task.status;
  if (health && health.kind === "unacked") { kind = "unacked"; label = `${task.status} · unacknowledged`; }
  return el("span", { className: `chip ${kind}`, dataset: { status: task.status }, title: health ? health.title : null }, label);
}

export function progressBar(task) {
  const pct = Math.max(0, Math.min(100, Number(task.progress) || 0));
  const health = taskHealth(task);
  const kind = health && health.kind === "unacked" ? "unacked"
    : task.status === "finished" ? task.outcome : task.status;
  return el("div", { className: "progress" },
    el("div", { className: `bar ${kind}` }, el("span", { style: `width: ${pct}%` })),
    el("span", { className: "pct" }, `${pct}%`));
}

export function healthNote(task) {
  const health = taskHealth(task);
  return health ? el("span", { className: `health ${health.kind}`, title: health.title }, health.label) : null;
}

// What several views read: the configuration (key masked), the scenario catalogue, the clock.
export const shared = { config: null, scenarios: [], clock: null };
