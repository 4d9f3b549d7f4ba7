"""A Python client for the control API: one method per route, typed results, errors as classes."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import requests

T = TypeVar("T")


class EmulatorAPIError(Exception):
    """A control-API error reply: HTTP `status` plus the server's `code`, `message`, `details`."""

    def __init__(
        self, status: int, code: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}

    @classmethod
    def from_response(cls, response: requests.Response) -> EmulatorAPIError:
        try:
            error = response.json()["error"]
            return cls(
                response.status_code,
                str(error.get("code", "error")),
                str(error.get("message", "")),
                dict(error.get("details") or {}),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            text = response.text[:500]
            return cls(response.status_code, f"http_{response.status_code}", text)


def _build(cls: type[T], raw: Mapping[str, Any], **extra: Any) -> T:
    """A dataclass from a server dict: known fields picked, the whole dict kept as `.raw`."""
    factory: Any = cls
    names = {f.name for f in dataclasses.fields(factory)}
    values = {k: v for k, v in raw.items() if k in names and k != "raw"}
    built: T = factory(**values, **extra, raw=dict(raw))
    return built


@dataclass
class Config:
    callback_url: str | None = None
    callback_key: str | None = None  # always masked by the server
    sdk_app_id: int = 0
    clock: str = ""
    speed: float = 0.0
    retry: Any = None
    timeout_s: float = 0.0
    sign_ttl_s: int = 0
    strict_ack: bool = False
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass
class Event:
    """One planned callback of a task; `payload` is the exact envelope once sent."""

    seq: int = 0
    event_type: str = ""
    due_at: float = 0.0
    state: str = ""
    attempts: int = 0
    sign: str = "valid"
    note: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass
class Task:
    task_id: str = ""
    room_id: int = 0
    group_id: str = ""
    sdk_app_id: int = 0
    scenario: str = ""
    status: str = ""
    progress: int = 0
    outcome: str | None = None
    error: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    created_at: float = 0.0
    finish_at: float | None = None
    seed: int | None = None
    params: dict[str, Any] = field(default_factory=dict)
    callback_url: str | None = None
    source: str = ""
    events: list[Event] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any]) -> Task:
        events = [_build(Event, e) for e in raw.get("events") or []]
        return _build(cls, {k: v for k, v in raw.items() if k != "events"}, events=events)


@dataclass
class Delivery:
    """One delivery attempt: what was sent where, and how the backend answered."""

    id: int = 0
    event_id: int | None = None
    task_id: str | None = None
    event_type: str = ""
    attempt: int = 0
    url: str | None = None
    request_body: str = ""
    status_code: int | None = None
    response_body: str | None = None
    error: str | None = None
    started_at: float = 0.0
    duration_ms: float = 0.0
    ok: bool = False
    emulated_at: float | None = None
    redelivery_of: int | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any]) -> Delivery:
        return _build(cls, raw)

    @property
    def body(self) -> dict[str, Any]:
        """The callback envelope that was sent, parsed."""
        parsed: dict[str, Any] = json.loads(self.request_body)
        return parsed


@dataclass
class ClockInfo:
    mode: str = ""
    speed: float = 0.0
    now: float = 0.0
    wall: float = 0.0
    pending_events: int = 0
    fired: int | None = None  # set by advance(): events fired by that call
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass
class ScenarioInfo:
    name: str = ""
    description: str = ""
    source: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass
class Rule:
    id: int = 0
    match: dict[str, Any] = field(default_factory=dict)
    scenario: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


def _drop_none(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


class EmulatorClient:
    """The control API over HTTP. Proxies from the environment are ignored (loopback use)."""

    def __init__(self, base_url: str, token: str | None = None, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.http = requests.Session()
        self.http.trust_env = False
        if token:
            self.http.headers["Authorization"] = f"Bearer {token}"

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> EmulatorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> Any:
        """One call; the decoded JSON reply (None for 204), or EmulatorAPIError for >= 400."""
        response = self.http.request(
            method,
            self.base_url + path,
            json=json_body,
            params=_drop_none(params or {}),
            timeout=self.timeout,
        )
        if response.status_code >= 400:
            raise EmulatorAPIError.from_response(response)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    # -- health and configuration ------------------------------------------------------------
    def healthz(self) -> dict[str, Any]:
        reply: dict[str, Any] = self.request("GET", "/healthz")
        return reply

    def get_config(self) -> Config:
        return _build(Config, self.request("GET", "/api/config"))

    def update_config(self, **patch: Any) -> Config:
        """PATCH /api/config, e.g. update_config(callback_url=..., clock="manual")."""
        return _build(Config, self.request("PATCH", "/api/config", json_body=patch))

    # -- tasks -----------------------------------------------------------------------------------
    def create_task(
        self,
        scenario: str | None = None,
        *,
        room_id: int | None = None,
        group_id: str | None = None,
        sdk_app_id: int | None = None,
        callback_url: str | None = None,
        seed: int | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> Task:
        body = _drop_none(
            {
                "scenario": scenario,
                "room_id": room_id,
                "group_id": group_id,
                "sdk_app_id": sdk_app_id,
                "callback_url": callback_url,
                "seed": seed,
                "params": dict(params) if params is not None else None,
            }
        )
        return Task.from_raw(self.request("POST", "/api/tasks", json_body=body))

    def get_task(self, task_id: str) -> Task:
        return Task.from_raw(self.request("GET", f"/api/tasks/{task_id}"))

    def list_tasks(
        self,
        *,
        status: str | None = None,
        room_id: int | None = None,
        scenario: str | None = None,
        limit: int | None = None,
    ) -> list[Task]:
        query = {"status": status, "room_id": room_id, "scenario": scenario, "limit": limit}
        reply = self.request("GET", "/api/tasks", params=query)
        return [Task.from_raw(t) for t in reply["tasks"]]

    def cancel_task(self, task_id: str) -> Task:
        return Task.from_raw(self.request("POST", f"/api/tasks/{task_id}/cancel"))

    def task_events(self, task_id: str) -> list[Event]:
        reply = self.request("GET", f"/api/tasks/{task_id}/events")
        return [_build(Event, e) for e in reply["events"]]

    # -- deliveries and ad-hoc events ------------------------------------------------------------
    def deliveries(self, *, task_id: str | None = None, limit: int | None = None) -> list[Delivery]:
        reply = self.request("GET", "/api/deliveries", params={"task_id": task_id, "limit": limit})
        return [_build(Delivery, d) for d in reply["deliveries"]]

    def redeliver(self, delivery_id: int) -> Delivery:
        return _build(Delivery, self.request("POST", f"/api/deliveries/{delivery_id}/redeliver"))

    def send_event(
        self,
        event_type: str,
        event_data: Mapping[str, Any],
        *,
        callback_url: str | None = None,
        sign: str | None = None,
        sdk_app_id: int | None = None,
    ) -> Delivery:
        """Send a hand-written event at once; `sign` is valid, invalid, expired or none."""
        body = _drop_none(
            {
                "event_type": event_type,
                "event_data": dict(event_data),
                "callback_url": callback_url,
                "sign": sign,
                "sdk_app_id": sdk_app_id,
            }
        )
        return _build(Delivery, self.request("POST", "/api/events", json_body=body))

    # -- clock ---------------------------------------------------------------------------------
    def clock(self) -> ClockInfo:
        return _build(ClockInfo, self.request("GET", "/api/clock"))

    def advance(self, seconds: float) -> ClockInfo:
        """Move a manual clock; returns once everything due by then has been sent."""
        reply = self.request("POST", "/api/clock/advance", json_body={"seconds": seconds})
        return _build(ClockInfo, reply)

    # -- scenarios -----------------------------------------------------------------------------
    def scenarios(self) -> list[ScenarioInfo]:
        return [_build(ScenarioInfo, s) for s in self.request("GET", "/api/scenarios")["scenarios"]]

    def get_scenario(self, name: str) -> ScenarioInfo:
        return _build(ScenarioInfo, self.request("GET", f"/api/scenarios/{name}"))

    def add_scenario(self, document: Mapping[str, Any]) -> ScenarioInfo:
        """Add (or replace) a user scenario; `document` is a scenario file's content as a dict."""
        reply = self.request("POST", "/api/scenarios", json_body=dict(document))
        return _build(ScenarioInfo, reply)

    def delete_scenario(self, name: str) -> None:
        self.request("DELETE", f"/api/scenarios/{name}")

    def scenario_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = self.request("GET", "/api/scenarios/schema")
        return schema

    # -- rules ---------------------------------------------------------------------------------
    def rules(self) -> list[Rule]:
        return [_build(Rule, r) for r in self.request("GET", "/api/rules")["rules"]]

    def add_rule(self, match: Mapping[str, Any], scenario: str) -> Rule:
        """Tasks matching `match` (room_id / group_id / sdk_app_id) get `scenario` by default."""
        body = {"match": dict(match), "scenario": scenario}
        return _build(Rule, self.request("POST", "/api/rules", json_body=body))

    def delete_rule(self, rule_id: int) -> None:
        self.request("DELETE", f"/api/rules/{rule_id}")

    # -- reset -----------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget tasks, deliveries, rules and user scenarios."""
        self.request("POST", "/api/reset")
