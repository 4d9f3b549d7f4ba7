// The detail pane of one delivery attempt: request, Sign check, response or error, timing, actions.

import {
  $, api, chip, copyText, el, fmtDuration, fmtMs, fmtTime, guarded, linkTo, notify, parseJson, pretty,
  shared, shortEvent,
} from "./lib.js";
import { cachedTask, loadTasks } from "./taskcache.js";

let current = null;
let shown = 0;  // the latest request to show an attempt: an earlier, slower one must not win
let onRedelivered = () => {};

export function setRedeliveredHandler(handler) { onRedelivered = handler; }

async function fetchDelivery(id) {
  const data = await api("GET", `/api/deliveries?before=${id + 1}&limit=1`);
  const found = data.deliveries[0];
  return found && found.id === id ? found : null;
}

export async function showDelivery(id, row) {
  const pane = $("delivery-detail");
  const ticket = ++shown;
  if (!id) {
    current = null;
    $("detail-none").hidden = false;
    $("detail-content").hidden = true;
    return;
  }
  const d = row || await fetchDelivery(id);
  if (ticket !== shown) return;
  if (!d) { notify(`Delivery #${id} is not in the log (reset or pruned).`); return; }
  if (d.task_id) await loadTasks([d.task_id]);
  if (ticket !== shown) return;
  current = d;
  $("detail-none").hidden = true;
  $("detail-content").hidden = false;
  pane.dataset.deliveryId = d.id;
  pane.dataset.ok = d.ok ? "true" : "false";
  render(d);
  if (window.matchMedia("(max-width: 900px)").matches) pane.scrollIntoView({ block: "start" });
}

const kv = (label, ...value) => el("div", {}, el("dt", {}, label), el("dd", {}, ...value));

function headerTable(headers) {
  const entries = Object.entries(headers || {});
  if (!entries.length) return el("p", { className: "sub" }, "(no headers recorded)");
  return el("table", { className: "headers" },
    el("tbody", {}, entries.map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", { className: "mono" }, v)))));
}

// Why a backend would accept or refuse this Sign: which key, which ExpireTime, valid or expired.
function signCheck(d) {
  const body = parseJson(d.request_body) || {};
  const task = d.task_id ? cachedTask(d.task_id) : null;
  const scenario = task && shared.scenarios.find((s) => s.name === task.scenario);
  const mode = (task && task.params && task.params.sign) || (scenario && scenario.delivery.sign) || null;
  const key = shared.config ? shared.config.callback_key : null;
  const box = el("div", { className: "sign", id: "sign-check" });
  if (body.Sign === undefined || body.ExpireTime === undefined) {
    box.dataset.verdict = "unsigned";
    box.append(chip("unsigned", "warn"), el("p", {},
      "No Sign or ExpireTime: no callback key was configured, or the event was sent with sign mode ",
      el("code", {}, "none"), ". A backend that checks signatures refuses it."));
    return box;
  }
  // Timestamp and ExpireTime are wall-clock Unix seconds: a backend checks them against its own clock.
  const expire = Number(body.ExpireTime);
  const sentAt = d.started_at;
  const expired = sentAt > expire;
  const expiredNow = Date.now() / 1000 > expire;
  const verdict = mode === "invalid" ? "wrong" : expired ? "expired" : "valid";
  box.dataset.verdict = verdict;
  const verdictChip = {
    valid: chip("Sign valid", "ok"), expired: chip("ExpireTime passed", "bad"), wrong: chip("Sign deliberately wrong", "bad"),
  }[verdict];
  const lifetime = body.Timestamp !== undefined ? ` (Timestamp + ${expire - Number(body.Timestamp)} s)` : "";
  box.append(verdictChip, el("dl", { className: "kv" },
    kv("rule", el("code", {}, "Sign = md5(callback key + ExpireTime)")),
    kv("key", el("code", {}, key || "none configured now"),
      " ", el("span", { className: "sub" }, "the callback key as configured now (masked); a redelivery is signed with it")),
    kv("ExpireTime", `${expire} = ${fmtTime(expire)} wall${lifetime}`),
    kv("when sent", `${fmtTime(sentAt)} wall: `, expired
      ? `already expired ${fmtDuration(sentAt - expire)} before`
      : `valid for ${fmtDuration(expire - sentAt)} more`),
    expiredNow && !expired ? kv("now", "expired: replaying this exact body (copy as curl) fails the check; Redeliver re-signs it") : null,
    mode ? kv("sign mode", el("code", {}, mode), mode === "invalid"
      ? " (this scenario signs with a wrong key on purpose: the backend must refuse it)"
      : mode === "expired" ? " (this scenario sends a past ExpireTime on purpose)" : "") : null));
  return box;
}

function curlOf(d) {
  const quote = (s) => `'${String(s).replace(/'/g, "'\\''")}'`;
  const skip = new Set(["content-length", "host", "connection", "accept-encoding"]);
  const headers = Object.entries(d.request_headers || { "Content-Type": "application/json" })
    .filter(([k]) => !skip.has(k.toLowerCase()))
    .map(([k, v]) => ` \\\n  -H ${quote(`${k}: ${v}`)}`).join("");
  return `curl -X POST ${quote(d.url || "http://127.0.0.1:8000/tiw/callback")}${headers} \\\n  --data-raw ${quote(d.request_body)}`;
}

function render(d) {
  const task = d.task_id ? cachedTask(d.task_id) : null;
  $("detail-title").replaceChildren(`#${d.id} `, shortEvent(d.event_type), " ",
    chip(d.ok ? "acknowledged" : "failed", d.ok ? "ok" : "bad"));
  $("detail-facts").replaceChildren(
    kv("task", d.task_id
      ? el("a", { href: linkTo({ view: "tasks", task: d.task_id }), id: "detail-task-link" }, d.task_id)
      : "ad-hoc event (no task)",
    task && task.room_id ? ` · room ${task.room_id} · ${task.scenario}` : ""),
    kv("attempt", d.redelivery_of
      ? el("span", {}, "redelivery of ", el("a", { href: linkTo({ view: "log", d: d.redelivery_of }), id: "detail-original",
        onclick: (ev) => { ev.preventDefault(); window.dispatchEvent(new CustomEvent("tiw:select", { detail: d.redelivery_of })); } },
      `#${d.redelivery_of}`))
      : `${d.attempt}`),
    kv("sent", fmtTime(d.started_at), el("span", { className: "sub" }, " wall")),
    kv("emulated", d.emulated_at !== null ? fmtTime(d.emulated_at) : "–", el("span", { className: "sub" }, " emulated")),
    kv("took", fmtMs(d.duration_ms)));
  $("detail-request-line").textContent = `POST ${d.url || "(no callback URL)"}`;
  $("detail-request-headers").replaceChildren(headerTable(d.request_headers));
  $("detail-request-body").textContent = pretty(d.request_body);
  $("detail-sign").replaceChildren(signCheck(d));
  const error = $("detail-error");
  error.hidden = !d.error;
  error.textContent = d.error || "";
  $("detail-response-status").replaceChildren(d.status_code === null
    ? chip("no HTTP answer", "bad")
    : chip(`HTTP ${d.status_code}`, d.ok ? "ok" : "bad"));
  $("detail-response-headers").replaceChildren(d.status_code === null ? "" : headerTable(d.response_headers));
  $("detail-response-body").textContent = d.status_code === null ? "(none)" : pretty(d.response_body);
}

export function bindDetail() {
  $("detail-curl").addEventListener("click", () => current && copyText(curlOf(current), "curl command"));
  $("detail-copy").addEventListener("click", () => current && copyText(pretty(current.request_body), "payload"));
  $("detail-redeliver").addEventListener("click", (ev) => guarded(ev.currentTarget, async () => {
    if (!current) return;
    const fresh = await api("POST", `/api/deliveries/${current.id}/redeliver`, {});
    notify(`Redelivered #${current.id} as #${fresh.id}: ${fresh.ok ? "acknowledged" : fresh.error || `HTTP ${fresh.status_code}`}`, fresh.ok);
    await onRedelivered(fresh);
  }));
}
