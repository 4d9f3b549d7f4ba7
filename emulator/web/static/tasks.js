// The task list (filters in the URL, pages by offset) and one task's view: facts, timeline, attempts.

import {
  $, api, chip, el, fmtDuration, fmtMs, fmtTime, guarded, healthNote, linkTo, notify, pretty,
  progressBar, query, setUrlState, shared, shortEvent, taskChip, taskHealth, urlState,
} from "./lib.js";
import { remember } from "./taskcache.js";

const PAGE = 50;
const FILTERS = ["t_status", "t_scenario", "t_outcome", "t_room", "t_error"];
const state = { key: "", viewKey: "" };

function taskFilters() {
  const p = urlState();
  return {
    status: p.get("t_status"), scenario: p.get("t_scenario"), outcome: p.get("t_outcome"),
    room_id: p.get("t_room"), error_code: p.get("t_error"), offset: p.get("t_offset"),
  };
}

function taskRow(task, selected) {
  const code = task.error && task.error.Code ? task.error.Code : null;
  const health = taskHealth(task);
  return el("tr", {
    dataset: { taskId: task.task_id, status: task.status, health: health ? health.kind : "ok" },
    className: `${task.task_id === selected ? "selected" : ""} ${health ? health.kind : ""}`,
    tabindex: 0,
    onclick: () => openTask(task.task_id),
    onkeydown: (ev) => { if (ev.key === "Enter") openTask(task.task_id); },
  },
  el("td", {}, taskChip(task), healthNote(task)),
  el("td", {}, progressBar(task)),
  el("td", {}, task.scenario, code ? el("span", { className: "sub err code" }, code) : null),
  el("td", { className: "mono opt-phone" }, task.room_id),
  el("td", { className: "mono opt" }, task.task_id));
}

export async function refreshTasks(force) {
  const f = taskFilters();
  const data = await api("GET", `/api/tasks${query({ ...f, limit: PAGE })}`);
  const selected = urlState().get("task");
  const key = JSON.stringify([data, selected]);
  if (!force && key === state.key) return;
  state.key = key;
  for (const task of data.tasks) remember(task);
  $("task-rows").replaceChildren(...data.tasks.map((t) => taskRow(t, selected)));
  $("tasks-empty").hidden = data.tasks.length > 0;
  const offset = Number(f.offset) || 0;
  $("tasks-range").textContent = data.tasks.length ? `${offset + 1}–${offset + data.tasks.length}` : "";
  $("tasks-newer").hidden = offset === 0;
  $("tasks-older").hidden = data.next_offset === null;
  $("tasks-older").dataset.offset = data.next_offset === null ? "" : data.next_offset;
}

export function openTask(taskId) {
  setUrlState({ view: "tasks", task: taskId }, { push: true });
  state.viewKey = "";
  refreshTasks(true).catch(() => {});
  refreshTaskView().catch((err) => notify(err.message));
}

const fact = (label, ...value) => el("div", {}, el("dt", {}, label), el("dd", {}, ...value));

function timelineRow(event) {
  return el("tr", { dataset: { seq: event.seq, state: event.state } },
    el("td", { className: "mono" }, event.seq),
    el("td", {}, shortEvent(event.event_type),
      event.note ? el("span", { className: "sub warn" }, event.note) : null,
      event.sign && event.sign !== "valid" ? el("span", { className: "sub warn" }, `sign: ${event.sign}`) : null),
    el("td", { className: "mono when" }, fmtTime(event.due_at), el("span", { className: "sub" }, "emulated")),
    el("td", {}, chip(event.state)),
    el("td", { className: "mono" }, event.attempts),
    el("td", { className: "opt" }, el("details", {}, el("summary", {}, "payload"), el("pre", {}, pretty(event.payload)))));
}

function attemptRow(d) {
  return el("tr", { dataset: { deliveryId: d.id, ok: d.ok ? "true" : "false" }, className: d.ok ? "" : "failed" },
    el("td", {}, chip(d.status_code === null ? "no answer" : String(d.status_code), d.ok ? "ok" : "bad")),
    el("td", {}, el("a", { href: linkTo({ view: "log", task: d.task_id, d: d.id }) }, `#${d.id} ${shortEvent(d.event_type)}`),
      el("span", { className: "sub" }, d.redelivery_of ? `redelivery of #${d.redelivery_of}` : `attempt ${d.attempt}`)),
    el("td", { className: "mono when" }, fmtTime(d.started_at), el("span", { className: "sub" }, "wall")),
    el("td", { className: "mono num opt-phone" }, fmtMs(d.duration_ms)));
}

export async function refreshTaskView() {
  const taskId = urlState().get("task");
  $("task-none").hidden = Boolean(taskId);
  $("task-view").hidden = !taskId;
  if (!taskId) return;
  const id = encodeURIComponent(taskId);
  const [task, attempts] = await Promise.all([
    api("GET", `/api/tasks/${id}`), api("GET", `/api/deliveries?task_id=${id}&limit=50`),
  ]);
  if (urlState().get("task") !== taskId) return;
  const key = JSON.stringify([task, attempts, shared.clock && Math.floor(shared.clock.now)]);
  if (key === state.viewKey) return;
  state.viewKey = key;
  remember(task);
  const view = $("task-view");
  const health = taskHealth(task);
  view.dataset.taskId = task.task_id;
  view.dataset.status = task.status;
  view.dataset.health = health ? health.kind : "ok";
  $("task-title").replaceChildren("Task ", el("code", { id: "task-id" }, task.task_id), " ", taskChip(task));
  $("task-cancel").hidden = !(task.status === "queued" || task.status === "processing");
  const banner = $("task-banner");
  banner.hidden = !health;
  banner.className = `banner ${health ? health.kind : ""}`;
  banner.textContent = !health ? "" : health.kind === "unacked"
    ? `Your backend never acknowledged ${task.deliveries.undelivered_events} of this task's callbacks: ` +
      `retries ran out (${task.deliveries.failed_attempts} failed attempts of ${task.deliveries.attempts}).`
    : `${task.deliveries.failed_attempts} of ${task.deliveries.attempts} attempts were refused ` +
      "(retries or redeliveries later got through).";
  const now = shared.clock ? shared.clock.now : null;
  const finish = task.finish_at;
  $("task-facts").replaceChildren(...[
    fact("scenario", task.scenario),
    fact("room / group", `${task.room_id} / ${task.group_id}`),
    fact("SdkAppId", task.sdk_app_id),
    fact("progress", progressBar(task)),
    fact("created", fmtTime(task.created_at), el("span", { className: "sub" }, " emulated")),
    fact(task.status === "finished" ? "finished" : "finishes", finish ? fmtTime(finish) : "never",
      finish && now !== null && finish > now ? ` (in ${fmtDuration(finish - now)})` : "",
      el("span", { className: "sub" }, " emulated")),
    fact("callbacks", `${task.deliveries.attempts} attempts, ${task.deliveries.failed_attempts} failed, ` +
      `${task.deliveries.undelivered_events} undelivered`),
    fact("callback URL", task.callback_url || "default from config"),
    fact("source", task.source, task.request_id ? ` (${task.request_id})` : ""),
    fact("seed", task.seed),
    task.error ? fact("error", el("span", { className: "err" }, `${task.error.Code}: ${task.error.Message}`)) : null,
    Object.keys(task.params || {}).length ? fact("params", el("code", {}, JSON.stringify(task.params))) : null,
  ].filter(Boolean));
  $("task-timeline").replaceChildren(...(task.events || []).map(timelineRow));
  $("task-attempts").replaceChildren(...attempts.deliveries.slice().reverse().map(attemptRow));
  $("task-attempts-empty").hidden = attempts.deliveries.length > 0;
  $("task-log-link").href = linkTo({ view: "log", task: task.task_id });
}

function readTaskFilters() {
  setUrlState({ ...Object.fromEntries(FILTERS.map((k) => [k, $(`f-${k}`).value.trim()])), t_offset: null });
  refreshTasks(true).catch((err) => notify(err.message));
}

export function syncTaskFilterForm() {
  const p = urlState();
  for (const k of FILTERS) $(`f-${k}`).value = p.get(k) || "";
}

export function bindTasks() {
  $("task-filters").addEventListener("submit", (ev) => { ev.preventDefault(); readTaskFilters(); });
  for (const k of ["t_status", "t_scenario", "t_outcome"]) $(`f-${k}`).addEventListener("change", readTaskFilters);
  $("tasks-older").addEventListener("click", (ev) => {
    setUrlState({ t_offset: ev.currentTarget.dataset.offset });
    refreshTasks(true).catch((err) => notify(err.message));
  });
  $("tasks-newer").addEventListener("click", () => {
    const offset = Math.max(0, (Number(urlState().get("t_offset")) || 0) - PAGE);
    setUrlState({ t_offset: offset || null });
    refreshTasks(true).catch((err) => notify(err.message));
  });
  $("task-cancel").addEventListener("click", (ev) => {
    const taskId = urlState().get("task");
    if (!taskId || !window.confirm(`Cancel task ${taskId}? Its pending callbacks are never sent.`)) return;
    guarded(ev.currentTarget, async () => {
      await api("POST", `/api/tasks/${encodeURIComponent(taskId)}/cancel`, {});
      notify(`Cancelled task ${taskId}`, true);
      state.viewKey = "";
      await Promise.all([refreshTasks(true), refreshTaskView()]);
    });
  });
}
