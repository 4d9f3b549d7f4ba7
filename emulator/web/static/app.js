// tiw-emulator dashboard: the views, the URL that holds them, and live updates (SSE, else polling).

import { $, api, fmtTime, linkTo, notify, setUrlState, shared, streamUrl, urlState } from "./lib.js";
import { bindLog, refreshLog, reloadLog, select, showSelected, syncFilterForm } from "./log.js";
import { bindDetail, setRedeliveredHandler } from "./detail.js";
import { bindTasks, refreshTaskView, refreshTasks, syncTaskFilterForm } from "./tasks.js";
import {
  bindActions, loadScenarios, refreshConfig, refreshRules, setChangeHandler,
} from "./actions.js";
import { bindCloud, refreshCloud, syncCloudFilterForm } from "./cloud.js";
import { forgetAll } from "./taskcache.js";

const POLL_MS = 2000;
const VIEWS = ["log", "tasks", "actions", "cloud"];
const live = { source: null, pending: null };

const currentView = () => {
  const view = urlState().get("view");
  return VIEWS.includes(view) ? view : "log";
};

function renderClock() {
  const c = shared.clock;
  if (!c) return;
  $("clock-mode").textContent = `${c.mode} clock`;
  $("clock-speed").textContent = c.mode === "real" ? `×${c.speed}` : "";
  $("clock-now").textContent = fmtTime(c.now);
  $("clock-now").setAttribute("datetime", new Date(c.now * 1000).toISOString());
  $("clock-pending").textContent = String(c.pending_events);
}

async function refreshClock() {
  shared.clock = await api("GET", "/api/clock");
  renderClock();
}

// Refresh what the current view shows; the log asks only for attempts newer than its newest.
async function refreshView() {
  const view = currentView();
  const work = [refreshClock()];
  if (view === "log") work.push(refreshLog());
  if (view === "tasks") work.push(refreshTasks(false), refreshTaskView());
  if (view === "actions") work.push(refreshRules());
  if (view === "cloud") work.push(refreshCloud());
  await Promise.all(work);
}

function showView() {
  const view = currentView();
  for (const name of VIEWS) {
    $(`view-${name}`).hidden = name !== view;
    const tab = $(`tab-${name}`);
    tab.classList.toggle("active", name === view);
    tab.setAttribute("aria-current", name === view ? "page" : "false");
  }
  document.body.dataset.view = view;
  syncFilterForm();
  syncTaskFilterForm();
  syncCloudFilterForm();
  const load = view === "log" ? reloadLog().then(showSelected)
    : view === "tasks" ? Promise.all([refreshTasks(true), refreshTaskView()])
      : view === "actions" ? Promise.all([refreshRules(), refreshConfig()])
        : refreshCloud();
  delete document.body.dataset.loaded;
  load.then(() => { document.body.dataset.loaded = view; }).catch((err) => notify(err.message));
}

function go(view, extra, push = true) {
  setUrlState({ view: view === "log" ? null : view, ...(extra || {}) }, { push });
  showView();
}

function scheduleRefresh() {
  if (live.pending) return;
  live.pending = setTimeout(() => {
    live.pending = null;
    refreshView().catch(() => {});
  }, 150);
}

function setLive(which) {
  const badge = $("live");
  badge.dataset.state = which;
  badge.textContent = which;
}

function connectStream() {
  const source = new EventSource(streamUrl());
  live.source = source;
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

// Progress that follows from emulated time alone sends no delivery: a light poll picks it up.
async function poll() {
  if (!document.hidden) {
    try {
      await refreshView();
      const open = live.source && live.source.readyState === EventSource.OPEN;
      setLive(open ? "live" : "polling");
    } catch (_) {
      setLive("offline");
    }
  }
  setTimeout(poll, POLL_MS);
}

async function afterAction({ task, delivery, reset }) {
  if (reset) { forgetAll(); await Promise.all([loadScenarios(), refreshConfig()]); }
  if (task) { go("tasks", { task }); return; }
  if (delivery) { go("log", { d: delivery }); return; }
  await refreshView();
}

function bindNavigation() {
  for (const name of VIEWS) {
    $(`tab-${name}`).href = linkTo({ view: name });
    $(`tab-${name}`).addEventListener("click", (ev) => { ev.preventDefault(); go(name, {}); });
  }
  window.addEventListener("popstate", showView);
  window.addEventListener("tiw:select", (ev) => select(ev.detail, true));
  setRedeliveredHandler(async (fresh) => { go("log", { d: fresh.id }); });
  setChangeHandler(afterAction);
}

async function start() {
  bindNavigation();
  bindLog();
  bindDetail();
  bindTasks();
  bindActions();
  bindCloud();
  try {
    await Promise.all([loadScenarios(), refreshConfig(), refreshClock()]);
  } catch (err) {
    notify(`Cannot load the emulator state: ${err.message}`);
  }
  showView();
  connectStream();
  setTimeout(poll, POLL_MS);
}

start();
