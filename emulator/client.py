"""A Python client for the control API: one method per route, typed results, errors as classes.

Replies decode into the server's own models (emulator.core.models), so the client cannot drift
from what the server sends; bodies are built from the same models and validated by the server.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TypeVar
from urllib.parse import quote

import msgspec
import requests

from emulator.core import models, parsing


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


M = TypeVar("M")


def _decode(model: type[M], raw: Any) -> M:
    """A server reply as its model; fields the model does not know (a newer server) ignored."""
    parsing.decoder_for(model)  # the model's first use, safe from several threads at once
    value: M = msgspec.convert(raw, model)
    return value


class _Raw:
    """`.raw`: the object as the server sent it (as JSON-like dicts and lists)."""

    __slots__ = ()

    @property
    def raw(self) -> dict[str, Any]:
        raw: dict[str, Any] = msgspec.to_builtins(self)
        return raw


# The control API's shapes are the server's own models (emulator.core.models); the client only
# adds conveniences. `Event`, `Rule` and `CloudCall` are the models themselves.
Event = models.Event
Rule = models.Rule
CloudCall = models.CloudCall


class Config(models.Config, _Raw, kw_only=True):
    """GET/PATCH /api/config reply; callback_key is masked by the server."""


class Task(models.Task, _Raw, kw_only=True):
    """A task as the control API shows it."""

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any]) -> Task:
        return _decode(cls, raw)


class Delivery(models.Delivery, _Raw, kw_only=True):
    """One delivery attempt: what was sent where, and how the backend answered."""

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any]) -> Delivery:
        return _decode(cls, raw)

    @property
    def body(self) -> dict[str, Any]:
        """The callback envelope that was sent, parsed."""
        parsed: dict[str, Any] = json.loads(self.request_body)
        return parsed


class ClockInfo(models.Clock, _Raw, kw_only=True):
    """The emulated clock; `fired` is set by advance()."""


class ScenarioInfo(models.Scenario, _Raw, kw_only=True):
    """A catalogue entry with its defaults filled in."""


class Page(list[M]):
    """One page of a list route: the items, plus `next`, the cursor of the next page or None.

    `next` is the `offset=` (tasks) or `before=` (deliveries, cloud calls) that fetches it.
    """

    def __init__(self, items: list[M], next_cursor: int | None) -> None:
        super().__init__(items)
        self.next = next_cursor


def _query(**values: Any) -> dict[str, Any]:
    """Query-string values: None left out, booleans as true/false."""
    return {
        k: ("true" if v else "false") if isinstance(v, bool) else v
        for k, v in values.items()
        if v is not None
    }


def _drop_none(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


class EmulatorClient:
    """The control API over HTTP. Proxies from the environment are ignored (loopback use)."""

    def __init__(self, base_url: str, token: str | None = None, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.http = requests.Session()
        self.http.trust_env = False
        self.last_warnings: list[str] = []  # warnings of the last create_task reply
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
        return _decode(Config, self.request("GET", "/api/config"))

    def update_config(self, **patch: Any) -> Config:
        """PATCH /api/config, e.g. update_config(callback_url=..., clock="manual")."""
        return _decode(Config, self.request("PATCH", "/api/config", json_body=patch))

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
        """POST /api/tasks; the reply's `warnings` are in `task.raw` too (e.g. no callback URL)."""
        body = models.TaskCreate(
            scenario=scenario,
            room_id=room_id,
            group_id=group_id,
            sdk_app_id=sdk_app_id,
            callback_url=callback_url,
            seed=seed,
            params=dict(params) if params is not None else None,
        )
        reply = self.request("POST", "/api/tasks", json_body=_body(body))
        task = _decode(Task, reply)
        self.last_warnings = list(reply.get("warnings") or [])
        return task

    def get_task(self, task_id: str) -> Task:
        return _decode(Task, self.request("GET", f"/api/tasks/{_segment(task_id)}"))

    def list_tasks(
        self,
        *,
        status: str | None = None,
        room_id: int | None = None,
        sdk_app_id: int | None = None,
        scenario: str | None = None,
        outcome: str | None = None,
        error_code: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> Page[Task]:
        """One page of tasks, newest first; `.next` is the offset of the next page, or None."""
        query = _query(
            status=status,
            room_id=room_id,
            sdk_app_id=sdk_app_id,
            scenario=scenario,
            outcome=outcome,
            error_code=error_code,
            limit=limit,
            offset=offset,
        )
        reply = self.request("GET", "/api/tasks", params=query)
        return Page([_decode(Task, t) for t in reply["tasks"]], reply["next_offset"])

    def cancel_task(self, task_id: str) -> Task:
        return _decode(Task, self.request("POST", f"/api/tasks/{_segment(task_id)}/cancel"))

    def task_events(self, task_id: str, *, limit: int | None = None) -> list[Event]:
        path = f"/api/tasks/{_segment(task_id)}/events"
        reply = self.request("GET", path, params=_query(limit=limit))
        return _decode(models.EventList, reply).events

    # -- deliveries and ad-hoc events ------------------------------------------------------------
    def deliveries(
        self,
        *,
        task_id: str | None = None,
        ok: bool | None = None,
        status_code: int | None = None,
        event_type: str | None = None,
        limit: int | None = None,
        before: int | None = None,
        after: int | None = None,
    ) -> Page[Delivery]:
        """The newest matching attempts, oldest first; `.next` is `before=` for older ones."""
        query = _query(
            task_id=task_id,
            ok=ok,
            status_code=status_code,
            event_type=event_type,
            limit=limit,
            before=before,
            after=after,
        )
        reply = self.request("GET", "/api/deliveries", params=query)
        return Page([_decode(Delivery, d) for d in reply["deliveries"]], reply["next_before"])

    def redeliver(self, delivery_id: int) -> Delivery:
        return _decode(Delivery, self.request("POST", f"/api/deliveries/{delivery_id}/redeliver"))

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
        body = models.EventCreate(
            event_type=event_type,
            event_data=dict(event_data),
            callback_url=callback_url,
            sdk_app_id=sdk_app_id,
        )
        sent = _body(body) | ({"sign": sign} if sign is not None else {})
        return _decode(Delivery, self.request("POST", "/api/events", json_body=sent))

    # -- clock ---------------------------------------------------------------------------------
    def clock(self) -> ClockInfo:
        return _decode(ClockInfo, self.request("GET", "/api/clock"))

    def advance(self, seconds: float) -> ClockInfo:
        """Move a manual clock; returns once everything due by then has been sent."""
        body = _body(models.ClockAdvance(seconds=seconds))
        return _decode(ClockInfo, self.request("POST", "/api/clock/advance", json_body=body))

    # -- scenarios -----------------------------------------------------------------------------
    def scenarios(self) -> list[ScenarioInfo]:
        reply = self.request("GET", "/api/scenarios")
        return [_decode(ScenarioInfo, s) for s in reply["scenarios"]]

    def get_scenario(self, name: str) -> ScenarioInfo:
        return _decode(ScenarioInfo, self.request("GET", f"/api/scenarios/{_segment(name)}"))

    def add_scenario(self, document: Mapping[str, Any]) -> ScenarioInfo:
        """Add (or replace) a user scenario; `document` is a scenario file's content as a dict."""
        reply = self.request("POST", "/api/scenarios", json_body=dict(document))
        return _decode(ScenarioInfo, reply)

    def delete_scenario(self, name: str) -> None:
        self.request("DELETE", f"/api/scenarios/{_segment(name)}")

    def scenario_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = self.request("GET", "/api/scenarios/schema")
        return schema

    # -- rules ---------------------------------------------------------------------------------
    def rules(self) -> list[Rule]:
        return _decode(models.RuleList, self.request("GET", "/api/rules")).rules

    def add_rule(self, match: Mapping[str, Any], scenario: str) -> Rule:
        """Tasks matching `match` (room_id / group_id / sdk_app_id) get `scenario` by default."""
        body = {"match": dict(match), "scenario": scenario}
        return _decode(Rule, self.request("POST", "/api/rules", json_body=body))

    def delete_rule(self, rule_id: int) -> None:
        self.request("DELETE", f"/api/rules/{rule_id}")

    # -- cloud API call log ------------------------------------------------------------------------
    def cloud_calls(
        self,
        *,
        action: str | None = None,
        task_id: str | None = None,
        limit: int | None = None,
        before: int | None = None,
    ) -> Page[CloudCall]:
        """The newest matching cloud API calls, oldest first; `.next` is `before=` for older."""
        query = _query(action=action, task_id=task_id, limit=limit, before=before)
        reply = _decode(models.CloudCallList, self.request("GET", "/api/cloud-calls", params=query))
        return Page(reply.cloud_calls, reply.next_before)

    # -- reset -----------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget tasks, deliveries, rules and user scenarios."""
        self.request("POST", "/api/reset")


def _body(model: msgspec.Struct) -> dict[str, Any]:
    """A request body from its model: the fields that were given (None and UNSET left out)."""
    return {k: v for k, v in msgspec.to_builtins(model).items() if v is not None}


def _segment(value: str) -> str:
    """A path segment, percent-encoded (a task id or scenario name with / or ? stays one)."""
    return quote(value, safe="")
