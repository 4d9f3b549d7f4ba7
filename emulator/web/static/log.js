// The delivery log across all tasks: filters kept in the URL, pages by the API's cursor, live.

import {
  $, api, chip, el, fmtMs, fmtTime, guarded, linkTo, notify, query, setUrlState, shortEvent, urlState,
} from "./lib.js";
import { cachedTask, loadTasks, matchingTaskIds } from "./taskcache.js";
import { showDelivery } from "./detail.js";

const PAGE = 100;
const SCAN_PAGE = 500;  // pages read when a task-level filter is applied in the browser
const SCAN_PAGES = 10;
const BULK_MAX = 5000;
const MAX_ROWS = 1000;  // a tab left open on a busy emulator keeps the newest; older ones page back
const FILTERS = ["ok", "status_code", "event_type", "scenario", "outcome", "room", "task"];

const state = { rows: [], next: null, filterKey: "", scope: null, selected: null };

export function filters() {
  const params = urlState();
  return Object.fromEntries(FILTERS.map((k) => [k, params.get(k) || ""]));
}

// Which attempts the API can select itself, and which TaskIds the browser must match.
async function resolveScope(f) {
  const server = { ok: f.ok, status_code: f.status_code, event_type: f.event_type, task_id: f.task };
  if (f.task || !(f.scenario || f.outcome || f.room)) return { server, taskIds: null, note: "" };
  const { ids, truncated } = await matchingTaskIds(f);
  const note = `scenario, outcome and room are matched in the browser against ${ids.size} task(s)` +
    (truncated ? " (the newest 1000 that match: narrow the filter for older ones)" : "");
  if (ids.size === 1) return { server: { ...server, task_id: [...ids][0] }, taskIds: null, note };
  return { server, taskIds: ids, note };
}

async function fetchPage(scope, before) {
  if (!scope.taskIds) {
    const data = await api("GET", `/api/deliveries${query({ ...scope.server, limit: PAGE, before })}`);
    return { rows: data.deliveries.reverse(), next: data.next_before };
  }
  if (!scope.taskIds.size) return { rows: [], next: null };
  const rows = [];
  let cursor = before;
  for (let i = 0; i < SCAN_PAGES && rows.length < PAGE; i += 1) {
    const data = await api("GET", `/api/deliveries${query({ ...scope.server, limit: SCAN_PAGE, before: cursor })}`);
    rows.push(...data.deliveries.reverse().filter((d) => scope.taskIds.has(d.task_id)));
    cursor = data.next_before;
    if (cursor === null) break;
  }
  return { rows, next: cursor };
}

function deliveryRow(d) {
  const task = d.task_id ? cachedTask(d.task_id) : null;
  const status = d.status_code === null ? "no answer" : String(d.status_code);
  return el("tr", {
    dataset: { deliveryId: d.id, ok: d.ok ? "true" : "false" },
    className: `${d.ok ? "" : "failed"} ${d.id === state.selected ? "selected" : ""}`,
    tabindex: 0,
    onclick: () => select(d.id, true),
    onkeydown: (ev) => { if (ev.key === "Enter") select(d.id, true); },
  },
  el("td", {}, chip(status, d.ok ? "ok" : "bad", d.error || (d.ok ? "acknowledged" : "not acknowledged"))),
  el("td", {}, el("span", { className: "event" }, shortEvent(d.event_type)),
    el("span", { className: "sub" }, d.redelivery_of ? `redelivery of #${d.redelivery_of}` : `attempt ${d.attempt}`)),
  el("td", { className: "opt" }, d.task_id
    ? el("a", { href: linkTo({ view: "tasks", task: d.task_id }), className: "mono", onclick: (ev) => ev.stopPropagation() }, d.task_id)
    : el("span", { className: "sub" }, "ad-hoc"),
  task && task.room_id ? el("span", { className: "sub" }, `room ${task.room_id}`) : null),
  el("td", { className: "mono num opt-phone" }, fmtMs(d.duration_ms)),
  el("td", { className: "mono when" }, fmtTime(d.started_at), el("span", { className: "sub" }, "wall"),
    d.emulated_at !== null ? el("span", { className: "sub emu" }, `${fmtTime(d.emulated_at)} emulated`) : null),
  el("td", { className: "mono num opt" }, `#${d.id}`));
}

function render() {
  $("log-rows").replaceChildren(...state.rows.map(deliveryRow));
  $("log-empty").hidden = state.rows.length > 0;
  $("log-more").hidden = state.next === null;
  $("log-count").textContent = state.rows.length ? `(${state.rows.length}${state.next !== null ? "+" : ""})` : "";
  const scanned = state.scope && state.scope.taskIds && state.next !== null
    ? `; searched back to attempt #${state.next}, "Older attempts" searches further` : "";
  $("log-note").textContent = state.scope ? state.scope.note + scanned : "";
}

async function fillTaskInfo() {
  if (await loadTasks(state.rows.map((d) => d.task_id))) render();
}

export async function reloadLog() {
  const f = filters();
  const key = JSON.stringify(f);
  const scope = await resolveScope(f);
  const page = await fetchPage(scope, undefined);
  if (JSON.stringify(filters()) !== key) return;  // the filters changed meanwhile
  Object.assign(state, { rows: page.rows, next: page.next, filterKey: key, scope });
  render();
  fillTaskInfo();
}

async function loadOlder() {
  if (state.next === null) return;
  const page = await fetchPage(state.scope, state.next);
  state.rows.push(...page.rows);
  state.next = page.next;
  render();
  fillTaskInfo();
}

// New attempts since the newest shown, through the API's `after` cursor.
export async function refreshLog() {
  if (!state.scope || JSON.stringify(filters()) !== state.filterKey) { await reloadLog(); return; }
  const newest = state.rows.length ? state.rows[0].id : undefined;
  if (newest === undefined) { await reloadLog(); return; }
  const data = await api("GET", `/api/deliveries${query({ ...state.scope.server, limit: PAGE, after: newest })}`);
  if (data.deliveries.length >= PAGE) { await reloadLog(); return; }  // a gap: start over
  let fresh = data.deliveries.reverse();
  if (state.scope.taskIds) {
    // An attempt of a task not seen yet may match the task filters: look them up again.
    if (fresh.some((d) => !state.scope.taskIds.has(d.task_id))) state.scope = await resolveScope(filters());
    if (state.scope.taskIds) fresh = fresh.filter((d) => state.scope.taskIds.has(d.task_id));
  }
  if (!fresh.length) return;
  state.rows = [...fresh, ...state.rows];
  if (state.rows.length > MAX_ROWS) {
    state.rows = state.rows.slice(0, MAX_ROWS);
    state.next = state.rows[state.rows.length - 1].id;
  }
  render();
  fillTaskInfo();
}

export function select(id, push) {
  state.selected = id;
  setUrlState({ d: id }, { push: Boolean(push) });
  for (const row of $("log-rows").children) row.classList.toggle("selected", Number(row.dataset.deliveryId) === id);
  showDelivery(id, state.rows.find((d) => d.id === id) || null);
}

export function showSelected() {
  const id = Number(urlState().get("d")) || null;
  state.selected = id;
  return showDelivery(id, id ? state.rows.find((d) => d.id === id) || null : null);
}

function readFilterForm() {
  setUrlState(Object.fromEntries(FILTERS.map((k) => [k, $(`f-${k}`).value.trim()])));
  reloadLog().catch((err) => notify(err.message));
}

export function syncFilterForm() {
  const f = filters();
  for (const k of FILTERS) $(`f-${k}`).value = f[k];
}

// -- redeliver all failed attempts of the filtered view ---------------------------------------------
async function collectFailed() {
  const scope = await resolveScope(filters());
  if (scope.server.ok === "true") return [];
  scope.server = { ...scope.server, ok: "false" };
  const failed = [];
  let cursor;
  do {
    const data = await api("GET", `/api/deliveries${query({ ...scope.server, limit: 1000, before: cursor })}`);
    const rows = data.deliveries.reverse();
    failed.push(...(scope.taskIds ? rows.filter((d) => scope.taskIds.has(d.task_id)) : rows));
    cursor = data.next_before;
  } while (cursor !== null && failed.length < BULK_MAX);
  return failed;
}

async function redeliverAllFailed(button) {
  await guarded(button, async () => {
    const failed = await collectFailed();
    // One redelivery per event: its newest failed attempt (an event tried three times is sent once).
    const newestPerEvent = new Map();
    for (const d of failed) {
      const key = d.event_id !== null ? `e${d.event_id}` : `d${d.id}`;
      if (!newestPerEvent.has(key)) newestPerEvent.set(key, d);
    }
    const targets = [...newestPerEvent.values()];
    if (!targets.length) { notify("No failed attempts in this view.", true); return; }
    const question = `Redeliver ${targets.length} event(s) from the ${failed.length} failed attempt(s) ` +
      "in this view? Each is re-signed and sent again now, one after another.";
    if (!window.confirm(question)) return;
    const box = $("bulk");
    const bar = $("bulk-bar");
    const label = $("bulk-label");
    let stopped = false;
    $("bulk-stop").onclick = () => { stopped = true; };
    box.hidden = false;
    bar.max = targets.length;
    let ok = 0;
    let done = 0;
    for (const d of targets) {
      if (stopped) break;
      try {
        const result = await api("POST", `/api/deliveries/${d.id}/redeliver`, {});
        if (result.ok) ok += 1;
      } catch (err) {
        notify(`#${d.id}: ${err.message}`);
      }
      done += 1;
      bar.value = done;
      label.textContent = `${done} / ${targets.length} sent, ${ok} acknowledged`;
    }
    box.hidden = true;
    box.dataset.last = `${done}/${targets.length}/${ok}`;
    notify(`Redelivered ${done} of ${targets.length}: ${ok} acknowledged, ${done - ok} failed` +
      (stopped ? " (stopped)" : ""), ok === done);
    await reloadLog();
  });
}

export function bindLog() {
  $("log-filters").addEventListener("submit", (ev) => { ev.preventDefault(); readFilterForm(); });
  for (const id of ["f-ok", "f-outcome", "f-scenario"]) $(id).addEventListener("change", readFilterForm);
  $("log-clear").addEventListener("click", () => {
    for (const k of FILTERS) $(`f-${k}`).value = "";
    readFilterForm();
  });
  $("log-more").addEventListener("click", (ev) => guarded(ev.currentTarget, loadOlder));
  $("log-bulk").addEventListener("click", (ev) => redeliverAllFailed(ev.currentTarget));
}
