// The cloud-API call log: every call the app's Tencent SDK made, filtered by action and TaskId.

import { $, api, chip, el, fmtTime, guarded, notify, pretty, query, setUrlState, urlState } from "./lib.js";

const PAGE = 100;
const state = { rows: [], next: null };

function callRow(call) {
  return el("tr", { dataset: { callId: call.id, ok: call.ok ? "true" : "false" }, className: call.ok ? "" : "failed" },
    el("td", {}, chip(call.ok ? "ok" : call.code || "error", call.ok ? "ok" : "bad", call.message)),
    el("td", {}, call.action, el("span", { className: "sub" }, call.method)),
    el("td", { className: "mono opt" }, call.task_id || "–", el("span", { className: "sub" }, call.request_id)),
    el("td", { className: "mono when" }, fmtTime(call.at), el("span", { className: "sub" }, "wall")),
    el("td", {}, el("details", {}, el("summary", {}, "params"),
      el("pre", {}, pretty(call.params)),
      call.secret_id ? el("span", { className: "sub" }, `SecretId ${call.secret_id}`) : null,
      call.message ? el("span", { className: "sub err" }, call.message) : null)));
}

function render() {
  $("cloud-rows").replaceChildren(...state.rows.map(callRow));
  $("cloud-empty").hidden = state.rows.length > 0;
  $("cloud-more").hidden = state.next === null;
}

function filters() {
  const p = urlState();
  return { action: p.get("c_action"), task_id: p.get("c_task") };
}

export async function refreshCloud() {
  const data = await api("GET", `/api/cloud-calls${query({ ...filters(), limit: PAGE })}`);
  state.rows = data.cloud_calls.slice().reverse();
  state.next = data.next_before;
  render();
}

export function syncCloudFilterForm() {
  const p = urlState();
  $("f-c_action").value = p.get("c_action") || "";
  $("f-c_task").value = p.get("c_task") || "";
}

export function bindCloud() {
  $("cloud-filters").addEventListener("submit", (ev) => {
    ev.preventDefault();
    setUrlState({ c_action: $("f-c_action").value.trim(), c_task: $("f-c_task").value.trim() });
    refreshCloud().catch((err) => notify(err.message));
  });
  $("cloud-more").addEventListener("click", (ev) => guarded(ev.currentTarget, async () => {
    const data = await api("GET", `/api/cloud-calls${query({ ...filters(), limit: PAGE, before: state.next })}`);
    state.rows.push(...data.cloud_calls.slice().reverse());
    state.next = data.next_before;
    render();
  }));
}
