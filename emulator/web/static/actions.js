// What a QA person does from the page: tasks from scenarios with params, rules, ad-hoc events,
// the clock, the callback URL and key, reset. All through the control API.

import { $, api, el, fmtDuration, guarded, notify, shared } from "./lib.js";

const SECTIONS = ["class", "processing", "outcome", "delivery"];
let schema = null;
let onChange = async () => {};

export function setChangeHandler(handler) { onChange = handler; }

// -- scenario params: one input per schema property, parsed back by its kind ----------------------
function kindOf(prop) {
  if (prop.enum) return "enum";
  if (prop.oneOf && prop.oneOf.some((o) => o.type === "array")) return "range";
  if (prop.oneOf) return "text";
  const type = Array.isArray(prop.type) ? prop.type.find((t) => t !== "null") : prop.type;
  return type === "boolean" ? "boolean" : type === "integer" || type === "number" ? "number" : "text";
}

function paramInput(name, prop) {
  const kind = kindOf(prop);
  const id = `param-${name}`;
  let input;
  if (kind === "enum" || kind === "boolean") {
    const values = kind === "boolean" ? [true, false] : prop.enum;
    input = el("select", { id, name, dataset: { kind } }, el("option", { value: "" }, "(scenario's)"),
      ...[...new Set(values.map(String))].map((v) => el("option", { value: v }, v)));
  } else {
    input = el("input", {
      id, name, dataset: { kind }, type: kind === "number" ? "number" : "text", step: "any",
      min: prop.minimum, max: prop.maximum, autocomplete: "off",
    });
  }
  return el("label", { title: prop.description || "" }, el("span", {}, name), input,
    prop.description ? el("small", {}, prop.description) : null);
}

function renderParams() {
  const box = $("create-params-fields");
  const groups = SECTIONS.map((section) => {
    const props = (schema.properties[section] || {}).properties || {};
    return el("fieldset", {}, el("legend", {}, section),
      ...Object.entries(props).map(([name, prop]) => paramInput(name, prop)));
  });
  box.replaceChildren(...groups);
  showScenarioDefaults();
}

function showScenarioDefaults() {
  const scenario = shared.scenarios.find((s) => s.name === $("create-scenario").value);
  $("scenario-description").textContent = scenario ? scenario.description || "" : "";
  if (!scenario || !schema) return;
  for (const section of SECTIONS) {
    for (const [name, value] of Object.entries(scenario[section] || {})) {
      const input = $(`param-${name}`);
      if (!input) continue;
      const shown = Array.isArray(value) ? value.join(",") : value === null ? "null" : String(value);
      if (input.tagName === "SELECT") input.options[0].textContent = `(scenario's: ${shown})`;
      else input.placeholder = shown;
    }
  }
}

function readParams() {
  const params = {};
  for (const input of $("create-params-fields").querySelectorAll("input, select")) {
    const raw = input.value.trim();
    if (!raw) continue;
    const kind = input.dataset.kind;
    if (kind === "boolean") params[input.name] = raw === "true";
    else if (kind === "number") params[input.name] = Number(raw);
    else if (kind === "range") {
      const parts = raw.split(/[,\s]+/).filter(Boolean).map(Number);
      params[input.name] = parts.length === 1 ? parts[0] : parts;
    } else if (kind === "enum") params[input.name] = /^-?\d+$/.test(raw) ? Number(raw) : raw;
    else params[input.name] = raw;
  }
  return params;
}

export async function loadScenarios() {
  const [data, loadedSchema] = await Promise.all([
    api("GET", "/api/scenarios"), schema ? Promise.resolve(schema) : api("GET", "/api/scenarios/schema"),
  ]);
  shared.scenarios = data.scenarios;
  schema = loadedSchema;
  const names = shared.scenarios.map((s) => s.name);
  for (const id of ["create-scenario", "rule-scenario"]) {
    const select = $(id);
    const current = select.value || "success";
    select.replaceChildren(...names.map((n) => el("option", { value: n }, n)));
    if (names.includes(current)) select.value = current;
  }
  for (const id of ["f-scenario", "f-t_scenario"]) {
    const select = $(id);
    const current = select.value;
    select.replaceChildren(el("option", { value: "" }, "any"), ...names.map((n) => el("option", { value: n }, n)));
    select.value = current;
  }
  renderParams();
}

// -- clock and configuration ---------------------------------------------------------------------------
export function renderConfig() {
  const c = shared.config;
  if (!c) return;
  const url = $("config-url");
  if (document.activeElement !== url) url.value = c.callback_url || "";
  $("config-key-shown").textContent = c.callback_key === null ? "none (callbacks unsigned)" : c.callback_key;
  if (document.activeElement !== $("clock-speed-input")) $("clock-speed-input").value = c.speed;
  if (document.activeElement !== $("clock-mode-input")) $("clock-mode-input").value = c.clock;
  $("config-strict").checked = Boolean(c.strict_ack);
  const rows = [
    ["SdkAppId", c.sdk_app_id],
    ["retry", typeof c.retry === "string" ? c.retry : JSON.stringify(c.retry)],
    ["timeout", `${c.timeout_s} s`],
    ["sign TTL", `${c.sign_ttl_s} s`],
    ["run seed", c.run_seed],
  ];
  $("config-list").replaceChildren(...rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
}

export async function refreshConfig() {
  shared.config = await api("GET", "/api/config");
  renderConfig();
}

// -- rules ---------------------------------------------------------------------------------------------
export async function refreshRules() {
  const data = await api("GET", "/api/rules");
  $("rule-rows").replaceChildren(...data.rules.map((rule) => el("tr", { dataset: { ruleId: rule.id } },
    el("td", { className: "mono" }, `#${rule.id}`),
    el("td", { className: "mono" }, Object.entries(rule.match).map(([k, v]) => `${k}=${v}`).join(" ") || "every task"),
    el("td", {}, rule.scenario),
    el("td", {}, el("button", {
      type: "button", className: "danger small rule-delete",
      onclick: (ev) => guarded(ev.currentTarget, async () => {
        await api("DELETE", `/api/rules/${rule.id}`);
        notify(`Deleted rule #${rule.id}`, true);
        await refreshRules();
      }),
    }, "Delete")))));
  $("rules-empty").hidden = data.rules.length > 0;
}

// -- ad-hoc events ------------------------------------------------------------------------------------
const EXAMPLES = {
  OfflineRecordProgressChanged: { TaskId: "adhoc-task", RoomId: 1253, Progress: 50 },
  OfflineRecordFinished: { TaskId: "adhoc-task", RoomId: 1253, GroupId: "1253", TotalTime: 3600, VideoInfos: [] },
};

function fillExample() {
  const example = EXAMPLES[$("adhoc-type").value];
  if (example) $("adhoc-data").value = JSON.stringify(example, null, 2);
}

// -- binding ---------------------------------------------------------------------------------------------
function numberOrNull(id) {
  const raw = $(id).value.trim();
  return raw ? Number(raw) : null;
}

export function bindActions() {
  $("create-scenario").addEventListener("change", showScenarioDefaults);
  $("create-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    guarded($("create-submit"), async () => {
      const body = { scenario: $("create-scenario").value };
      const room = numberOrNull("create-room");
      if (room !== null) body.room_id = room;
      const params = readParams();
      if (Object.keys(params).length) body.params = params;
      const task = await api("POST", "/api/tasks", body);
      const warn = task.warnings && task.warnings.length ? ` Warning: ${task.warnings.join("; ")}` : "";
      notify(`Created task ${task.task_id} (${task.scenario}, room ${task.room_id}).${warn}`, !warn);
      $("create-room").value = "";
      await onChange({ task: task.task_id });
    });
  });

  const advance = (seconds, button) => guarded(button, async () => {
    const result = await api("POST", "/api/clock/advance", { seconds });
    $("advance-result").textContent = `Advanced ${fmtDuration(seconds)}: ${result.fired} event(s) fired.`;
    await onChange({});
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
  $("speed-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    guarded($("speed-submit"), async () => {
      shared.config = await api("PATCH", "/api/config", {
        clock: $("clock-mode-input").value, speed: Number($("clock-speed-input").value),
      });
      renderConfig();
      notify(`Clock ${shared.config.clock}, speed ×${shared.config.speed}`, true);
      await onChange({});
    });
  });

  $("config-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    guarded($("config-submit"), async () => {
      const url = $("config-url").value.trim();
      const patch = { callback_url: url || null, strict_ack: $("config-strict").checked };
      const key = $("config-key").value;
      if (key) patch.callback_key = key;
      if ($("config-key-clear").checked) patch.callback_key = null;
      shared.config = await api("PATCH", "/api/config", patch);
      $("config-key").value = "";
      $("config-key-clear").checked = false;
      $("config-url").blur();
      renderConfig();
      notify(url ? `Callbacks now go to ${url}` : "Callback URL cleared", true);
    });
  });

  $("rule-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    guarded($("rule-submit"), async () => {
      const match = {};
      const room = numberOrNull("rule-room");
      const app = numberOrNull("rule-app");
      const group = $("rule-group").value.trim();
      if (room !== null) match.room_id = room;
      if (group) match.group_id = group;
      if (app !== null) match.sdk_app_id = app;
      const rule = await api("POST", "/api/rules", { match, scenario: $("rule-scenario").value });
      notify(`Rule #${rule.id}: ${rule.scenario} for ${JSON.stringify(rule.match)}`, true);
      for (const id of ["rule-room", "rule-group", "rule-app"]) $(id).value = "";
      await refreshRules();
    });
  });

  $("adhoc-type").addEventListener("change", fillExample);
  fillExample();
  $("adhoc-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    guarded($("adhoc-submit"), async () => {
      let data;
      try { data = JSON.parse($("adhoc-data").value); } catch (err) {
        throw new Error(`EventData is not JSON: ${err.message}`);
      }
      const body = { event_type: $("adhoc-type").value.trim(), event_data: data, sign: $("adhoc-sign").value };
      const url = $("adhoc-url").value.trim();
      if (url) body.callback_url = url;
      const d = await api("POST", "/api/events", body);
      notify(`Sent ${body.event_type} as #${d.id}: ${d.ok ? "acknowledged" : d.error || `HTTP ${d.status_code}`}`, d.ok);
      await onChange({ delivery: d.id });
    });
  });

  $("reset-button").addEventListener("click", (ev) => {
    if (!window.confirm("Reset the emulator? Every task, delivery, rule, user scenario and cloud call is forgotten.")) return;
    guarded(ev.currentTarget, async () => {
      await api("POST", "/api/reset", {});
      notify("Emulator reset", true);
      await onChange({ reset: true });
    });
  });
}
