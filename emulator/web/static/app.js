// tiw-emulator dashboard: vanilla JS over the control API, live through Server-Sent Events.
// All server data goes into the page as text nodes / attributes, never parsed as HTML.
"use strict";

(function () {
  const POLL_MS = 2000;
  const TASK_LIMIT = 200;
  const TOKEN = new URLSearchParams(window.location.search).get("token");

  const state = {
    tasks: [],
    tasksKey: "",
    selected: null,
    detailKey: "",
    clock: null,
    config: null,
    scenarios: [],
    refreshTimer: null,
    source: null,
  };

  const $ = (id) => document.getElementById(id);

  // -- DOM helpers ---------------------------------------------------------------------------
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "className") node.className = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const pad = (n) => String(n).padStart(2, "0");

  function fmtTime(epochSeconds) {
    if (epochSeconds === null || epochSeconds === undefined) return "–";
    const d = new Date(epochSeconds * 1000);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
      `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  function fmtClockTime(epochSeconds) {
    const d = new Date(epochSeconds * 1000);
    return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}` +
      `.${String(d.getMilliseconds()).padStart(3, "0")}`;
  }

  function fmtDuration(seconds) {
    let s = Math.round(Math.abs(seconds));
    const parts = [];
    for (const [unit, size] of [["d", 86400], ["h", 3600], ["m", 60]]) {
      if (s >= size) { parts.push(`${Math.floor(s / size)}${unit}`); s %= size; }
    }
    if (s || !parts.length) parts.push(`${s}s`);
    return parts.slice(0, 2).join(" ");
  }

  function fmtRelative(epochSeconds) {
    if (!state.clock || epochSeconds === null || epochSeconds === undefined) return "";
    const delta = epochSeconds - state.clock.now;
    if (Math.abs(delta) < 0.5) return "now";
    return delta > 0 ? `in ${fmtDuration(delta)}` : `${fmtDuration(delta)} ago`;
  }

  function pretty(text) {
    if (text === null || text === undefined || text === "") return "(empty)";
    if (typeof text !== "string") return JSON.stringify(text, null, 2);
    try { return JSON.stringify(JSON.parse(text), null, 2); } catch (_) { return text; }
  }

  function shortEvent(type) {
    return String(type || "").replace(/^OfflineRecord/, "");
  }

  function breakAtDots(text) {
    // "FailedOperation.Transcode" may wrap after the dot, nowhere else.
    return String(text).split(".").flatMap((part, i) => (i ? [".", el("wbr"), part] : [part]));
  }

  function chip(text, kind, extra) {
    return el("span", { className: `chip ${kind || text}`, ...(extra || {}) }, text);
  }

  function payloadBlock(key, label, text, open) {
    return el("details", { dataset: { key }, open: open.has(key) },
      el("summary", {}, label),
      el("pre", {}, pretty(text)));
  }

  function openDetails(container) {
    return new Set([...container.querySelectorAll("details[open]")].map((d) => d.dataset.key));
  }

  // -- API -------------------------------------------------------------------------------------
  async function api(method, path, body) {
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
      const message = data && data.error ? data.error.message : `${response.status} ${response.statusText}`;
      throw new Error(message);
    }
    return data;
  }

  function notify(message, ok) {
    const box = $("notice");
    box.textContent = message;
    box.classList.toggle("ok", Boolean(ok));
    box.hidden = false;
    clearTimeout(notify.timer);
    notify.timer = setTimeout(() => { box.hidden = true; }, ok ? 3000 : 8000);
  }

  async function guarded(button, action) {
    if (button) button.disabled = true;
    try { await action(); } catch (err) { notify(err.message); } finally {
      if (button) button.disabled = false;
    }
  }

  // -- clock and config ---------------------------------------------------------------------------
  function renderClock() {
    const c = state.clock;
    if (!c) return;
    $("clock-mode").textContent = `${c.mode} clock`;
    $("clock-speed").textContent = c.mode === "real" ? `×${c.speed}` : "";
    $("clock-now").textContent = fmtTime(c.now);
    $("clock-now").setAttribute("datetime", new Date(c.now * 1000).toISOString());
    $("clock-pending").textContent = String(c.pending_events);
  }

  async function refreshClock() {
    state.clock = await api("GET", "/api/clock");
    renderClock();
  }

  function renderConfig() {
    const c = state.config;
    const input = $("config-url");
    if (document.activeElement !== input) input.value = c.callback_url || "";
    const rows = [
      ["callback key", c.callback_key === null ? "none (unsigned)" : c.callback_key],
      ["SdkAppId", c.sdk_app_id],
      ["retry", typeof c.retry === "string" ? c.retry : JSON.stringify(c.retry)],
      ["timeout", `${c.timeout_s} s`],
      ["sign TTL", `${c.sign_ttl_s} s`],
      ["strict ack", c.strict_ack ? "yes" : "no"],
    ];
    $("config-list").replaceChildren(...rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  }

  async function refreshConfig() {
    state.config = await api("GET", "/api/config");
    renderConfig();
  }

  async function loadScenarios() {
    const data = await api("GET", "/api/scenarios");
    state.scenarios = data.scenarios;
    const select = $("create-scenario");
    const current = select.value || "success";
    select.replaceChildren(...state.scenarios.map((s) => el("option", { value: s.name }, s.name)));
    if (state.scenarios.some((s) => s.name === current)) select.value = current;
    describeScenario();
  }

  function describeScenario() {
    const s = state.scenarios.find((x) => x.name === $("create-scenario").value);
    $("scenario-description").textContent = s ? s.description || "" : "";
  }

  // -- tasks ------------------------------------------------------------------------------------
  function statusKind(task) {
    if (task.status === "finished") return task.outcome || "success";
    return task.status;
  }

  function progressBar(task) {
    const pct = Math.max(0, Math.min(100, Number(task.progress) || 0));
    return el("div", { className: "progress" },
      el("div", { className: `bar ${task.status === "finished" ? task.outcome : task.status}` },
        el("span", { style: `width: ${pct}%` })),
      el("span", { className: "pct" }, `${pct}%`));
  }

  function canCancel(task) {
    return task.status === "queued" || task.status === "processing";
  }

  // A finished task whose backend refused its callbacks must not look all green.
  function deliveryHealth(task) {
    const d = task.deliveries;
    if (!d) return null;
    if (d.undelivered_events > 0) {
      return el("span", { className: "health bad", title: "retries ran out without an acknowledgement" },
        `${d.undelivered_events} undelivered`);
    }
    if (d.failed_attempts > 0) {
      return el("span", { className: "health warn", title: "attempts the backend did not acknowledge" },
        `${d.failed_attempts} failed ${d.failed_attempts === 1 ? "attempt" : "attempts"}`);
    }
    return null;
  }

  function taskRow(task) {
    const errorCode = task.error && task.error.Code ? task.error.Code : null;
    return el("tr", {
      dataset: { taskId: task.task_id, status: task.status },
      className: task.task_id === state.selected ? "selected" : "",
      onclick: () => selectTask(task.task_id),
    },
    el("td", {}, chip(task.status, statusKind(task), { title: task.outcome ? `outcome: ${task.outcome}` : null })),
    el("td", {}, progressBar(task)),
    el("td", {}, task.scenario, errorCode ? el("span", { className: "err code" }, breakAtDots(errorCode)) : null,
      deliveryHealth(task)),
    el("td", { className: "mono" }, task.room_id),
    el("td", { className: "task-id" }, task.task_id),
    el("td", {}, canCancel(task)
      ? el("button", {
        type: "button", className: "danger small",
        onclick: (ev) => { ev.stopPropagation(); cancelTask(task.task_id, ev.currentTarget); },
      }, "Cancel")
      : null));
  }

  function renderTasks() {
    $("task-rows").replaceChildren(...state.tasks.map(taskRow));
    $("tasks-empty").hidden = state.tasks.length > 0;
    $("task-count").textContent = state.tasks.length ? `(${state.tasks.length})` : "";
  }

  async function refreshTasks() {
    const status = $("status-filter").value;
    const query = `?limit=${TASK_LIMIT}${status ? `&status=${encodeURIComponent(status)}` : ""}`;
    const data = await api("GET", `/api/tasks${query}`);
    const key = JSON.stringify(data.tasks) + state.selected;
    if (key === state.tasksKey) return false;
    state.tasksKey = key;
    state.tasks = data.tasks;
    renderTasks();
    return true;
  }

  async function cancelTask(taskId, button) {
    await guarded(button, async () => {
      await api("POST", `/api/tasks/${encodeURIComponent(taskId)}/cancel`, {});
      notify(`Cancelled task ${taskId}`, true);
      await refreshAll();
    });
  }

  // -- detail pane ----------------------------------------------------------------------------------
  function selectTask(taskId) {
    state.selected = taskId;
    state.detailKey = "";
    state.tasksKey = "";
    renderTasks();
    refreshDetail().catch((err) => notify(err.message));
  }

  function fact(label, value, className) {
    return el("div", { className }, el("dt", {}, label), el("dd", {}, value));
  }

  function renderFacts(task) {
    const facts = [
      fact("scenario", task.scenario),
      fact("room / group", `${task.room_id} / ${task.group_id}`),
      fact("SdkAppId", task.sdk_app_id),
      fact("progress", `${task.progress}%`),
      fact("created (emulated)", fmtTime(task.created_at)),
      fact(task.status === "finished" ? "finished (emulated)" : "finishes (emulated)",
        task.finish_at ? `${fmtTime(task.finish_at)} (${fmtRelative(task.finish_at)})` : "never"),
      fact("callback URL", task.callback_url || "default from config"),
      fact("seed", task.seed),
    ];
    if (task.outcome) facts.push(fact("outcome", task.outcome));
    if (task.error) facts.push(fact("error", `${task.error.Code}: ${task.error.Message}`, "error"));
    if (task.result && task.result.VideoInfos) facts.push(fact("videos", task.result.VideoInfos.length));
    if (task.params && Object.keys(task.params).length) facts.push(fact("params", JSON.stringify(task.params)));
    $("detail-facts").replaceChildren(...facts);
  }

  function timelineRow(event, open) {
    return el("tr", { dataset: { seq: event.seq, state: event.state } },
      el("td", { className: "mono" }, event.seq),
      el("td", {}, shortEvent(event.event_type),
        event.note ? el("span", { className: "note" }, event.note) : null,
        event.sign && event.sign !== "valid" ? el("span", { className: "note" }, `sign: ${event.sign}`) : null),
      el("td", { className: "mono" }, fmtTime(event.due_at), el("span", { className: "rel" }, fmtRelative(event.due_at))),
      el("td", {}, chip(event.state)),
      el("td", { className: "mono" }, event.attempts),
      el("td", {}, payloadBlock(`event-${event.seq}`, "payload", event.payload, open)));
  }

  function deliveryRow(d, open) {
    const statusText = d.status_code === null ? "no response" : String(d.status_code);
    const request = `POST ${d.url || "(no callback URL)"}\n\n${pretty(d.request_body)}`;
    return el("tr", { dataset: { deliveryId: d.id, ok: d.ok ? "true" : "false" } },
      el("td", { className: "mono" }, d.id),
      el("td", {}, shortEvent(d.event_type), el("span", { className: "rel" },
        d.redelivery_of ? `redelivery of #${d.redelivery_of}` : `try ${d.attempt}`)),
      el("td", { className: "mono", title: `${fmtTime(d.started_at)} (wall clock)` }, fmtClockTime(d.started_at)),
      el("td", {}, chip(statusText, d.ok ? "ok" : "bad", { className: `chip ${d.ok ? "ok" : "bad"} status-code` })),
      el("td", { className: "mono" }, `${Number(d.duration_ms).toFixed(1)} ms`),
      el("td", {},
        el("div", { className: "inline-details" },
          payloadBlock(`req-${d.id}`, "request", request, open),
          payloadBlock(`res-${d.id}`, "response", d.response_body, open)),
        d.error ? el("div", { className: "err" }, d.error) : null),
      el("td", {}, el("button", {
        type: "button", className: "secondary redeliver",
        onclick: (ev) => redeliver(d.id, ev.currentTarget),
      }, "Redeliver")));
  }

  async function refreshDetail() {
    const taskId = state.selected;
    $("detail-empty").hidden = Boolean(taskId);
    $("detail-body").hidden = !taskId;
    if (!taskId) return;
    const id = encodeURIComponent(taskId);
    const [task, deliveries] = await Promise.all([
      api("GET", `/api/tasks/${id}`),
      api("GET", `/api/deliveries?task_id=${id}`),
    ]);
    if (taskId !== state.selected) return;
    const key = JSON.stringify([task, deliveries, state.clock && state.clock.now]);
    if (key === state.detailKey) return;
    state.detailKey = key;
    const open = openDetails($("detail"));
    $("detail-task-id").textContent = task.task_id;
    const status = $("detail-status");
    status.textContent = task.status;
    status.className = `chip ${statusKind(task)}`;
    status.dataset.status = task.status;
    $("detail-cancel").hidden = !canCancel(task);
    renderFacts(task);
    $("timeline-rows").replaceChildren(...task.events.map((e) => timelineRow(e, open)));
    const attempts = deliveries.deliveries.slice().reverse();  // newest first
    $("delivery-rows").replaceChildren(...attempts.map((d) => deliveryRow(d, open)));
    $("deliveries-empty").hidden = attempts.length > 0;
    $("delivery-count").textContent = attempts.length ? `(${attempts.length})` : "";
  }

  async function redeliver(deliveryId, button) {
    await guarded(button, async () => {
      const d = await api("POST", `/api/deliveries/${deliveryId}/redeliver`, {});
      notify(`Redelivered #${deliveryId} as #${d.id}: ${d.ok ? "ok" : d.error || d.status_code}`, d.ok);
      await refreshAll();
    });
  }

  // -- refresh and live updates -------------------------------------------------------------------
  async function refreshAll() {
    await Promise.all([refreshClock(), refreshTasks()]);
    await refreshDetail();
  }

  function scheduleRefresh() {
    if (state.refreshTimer) return;
    state.refreshTimer = setTimeout(() => {
      state.refreshTimer = null;
      refreshAll().catch(() => {});
    }, 100);
  }

  function setLive(which) {
    const badge = $("live");
    badge.dataset.state = which;
    badge.textContent = which;
  }

  function connectStream() {
    const url = `events${TOKEN ? `?token=${encodeURIComponent(TOKEN)}` : ""}`;
    const source = new EventSource(url);
    state.source = source;
    source.addEventListener("hello", () => { setLive("live"); scheduleRefresh(); });
    source.addEventListener("resync", scheduleRefresh);
    source.addEventListener("delivery", scheduleRefresh);
    source.onerror = () => {
      // A stream ends every minute by design and EventSource reconnects by itself. It gives up
      // (CLOSED) on an error status, e.g. 503 when every stream slot is taken: poll meanwhile.
      if (source.readyState === EventSource.CLOSED) {
        setLive("polling");
        setTimeout(connectStream, 5000);
      } else {
        setLive("connecting");
      }
    };
  }

  async function poll() {
    if (!document.hidden) {
      try {
        await refreshAll();
        const open = state.source && state.source.readyState === EventSource.OPEN;
        setLive(open ? "live" : "polling");
      } catch (err) {
        setLive("offline");
      }
    }
    setTimeout(poll, POLL_MS);
  }

  // -- forms ----------------------------------------------------------------------------------------
  function bindForms() {
    $("create-scenario").addEventListener("change", describeScenario);
    $("status-filter").addEventListener("change", () => { state.tasksKey = ""; refreshTasks(); });

    $("create-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      guarded($("create-submit"), async () => {
        const body = { scenario: $("create-scenario").value };
        const room = $("create-room").value.trim();
        if (room) body.room_id = Number(room);
        const task = await api("POST", "/api/tasks", body);
        notify(`Created task ${task.task_id} (${task.scenario}, room ${task.room_id})`, true);
        $("create-room").value = "";
        state.selected = task.task_id;
        state.detailKey = "";
        await refreshAll();
      });
    });

    const advance = async (seconds, button) => guarded(button, async () => {
      const result = await api("POST", "/api/clock/advance", { seconds });
      $("advance-result").textContent =
        `Advanced ${fmtDuration(seconds)}: ${result.fired} event(s) fired.`;
      await refreshAll();
    });
    $("advance-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const seconds = Number($("advance-seconds").value);
      if (!Number.isFinite(seconds) || seconds < 0) { notify("seconds must be a number ≥ 0"); return; }
      advance(seconds, $("advance-submit"));
    });
    for (const button of document.querySelectorAll("[data-advance]")) {
      button.addEventListener("click", () => advance(Number(button.dataset.advance), button));
    }

    $("config-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      guarded($("config-submit"), async () => {
        const url = $("config-url").value.trim();
        state.config = await api("PATCH", "/api/config", { callback_url: url || null });
        $("config-url").blur();
        renderConfig();
        notify(url ? `Callbacks now go to ${url}` : "Callback URL cleared", true);
      });
    });

    $("detail-cancel").addEventListener("click", (ev) => cancelTask(state.selected, ev.currentTarget));
  }

  async function start() {
    bindForms();
    try {
      await Promise.all([loadScenarios(), refreshConfig()]);
    } catch (err) {
      notify(`Cannot load the emulator state: ${err.message}`);
    }
    connectStream();
    poll();
  }

  document.addEventListener("DOMContentLoaded", start);
})();
