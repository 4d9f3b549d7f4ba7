"""Control API blueprint (/healthz, /api/...): thin views over the Emulator core."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from emulator.core.errors import InvalidInput, InvalidJson, UnknownField
from emulator.core.scenarios import SCHEMA
from emulator.core.service import Emulator

TASK_FIELDS = {
    "scenario": str,
    "room_id": int,
    "group_id": str,
    "sdk_app_id": int,
    "callback_url": str,
    "seed": int,
    "params": dict,
}
EVENT_FIELDS = {
    "event_type": str,
    "event_data": dict,
    "callback_url": str,
    "sign": str,
    "sdk_app_id": int,
}


def emulator() -> Emulator:
    emu: Emulator = current_app.extensions["tiw_emulator"]
    return emu


def json_body(allowed: Mapping[str, type] | None = None) -> dict[str, Any]:
    """The request's JSON object; with `allowed`, unknown fields and wrong types are refused."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        data: Any = {}
    else:
        try:
            data = request.get_json(force=True, silent=False)
        except Exception:
            raise InvalidJson("request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise InvalidJson("request body must be a JSON object")
    if allowed is not None:
        for key, value in data.items():
            if key not in allowed:
                raise UnknownField(key, list(allowed))
            check_type(key, value, allowed[key])
    return data


def check_type(field: str, value: Any, expected: type) -> None:
    if value is None:
        return
    wanted: Any = (int, float) if expected is float else expected
    ok = isinstance(value, wanted) and not (expected in (int, float) and isinstance(value, bool))
    if not ok:
        names = {int: "an integer", str: "a string", dict: "an object", float: "a number"}
        raise InvalidInput(field, f"must be {names.get(expected, expected.__name__)}")


def query_args(allowed: Mapping[str, type]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in request.args.items():
        if key not in allowed:
            raise UnknownField(key, list(allowed))
        if allowed[key] is bool:
            if value not in ("true", "false"):
                raise InvalidInput(key, f"{value!r} is not true or false")
            out[key] = value == "true"
        elif allowed[key] is int:
            try:
                out[key] = int(value)
            except ValueError:
                raise InvalidInput(key, f"{value!r} is not an integer") from None
        else:
            out[key] = value
    return out


def create_control_blueprint() -> Blueprint:
    bp = Blueprint("control", __name__)

    @bp.get("/healthz")
    def healthz() -> Response | tuple[Response, int]:
        problem = emulator().health()
        if problem is not None:
            return jsonify(status="error", storage_error=problem), 503
        return jsonify(status="ok")

    @bp.get("/api/config")
    def get_config() -> Response:
        return jsonify(emulator().public_config())

    @bp.patch("/api/config")
    def patch_config() -> Response:
        emu = emulator()
        emu.update_config(json_body())
        return jsonify(emu.public_config())

    @bp.post("/api/tasks")
    def create_task() -> tuple[Response, int]:
        body = json_body(TASK_FIELDS)
        return jsonify(emulator().create_task(**body)), 201

    @bp.get("/api/tasks")
    def list_tasks() -> Response:
        args = query_args(
            {
                "status": str,
                "room_id": int,
                "sdk_app_id": int,
                "scenario": str,
                "outcome": str,
                "error_code": str,
                "limit": int,
                "offset": int,
            }
        )
        tasks, next_offset = emulator().list_tasks(**args)
        return jsonify(tasks=tasks, next_offset=next_offset)

    @bp.get("/api/tasks/<task_id>")
    def get_task(task_id: str) -> Response:
        return jsonify(emulator().get_task(task_id))

    @bp.post("/api/tasks/<task_id>/cancel")
    def cancel_task(task_id: str) -> Response:
        json_body({})
        return jsonify(emulator().cancel_task(task_id))

    @bp.get("/api/tasks/<task_id>/events")
    def task_events(task_id: str) -> Response:
        emulator().get_task(task_id, with_events=False)  # 404 for an unknown task
        return jsonify(events=emulator().task_events(task_id))

    @bp.get("/api/deliveries")
    def deliveries() -> Response:
        args = query_args(
            {
                "task_id": str,
                "ok": bool,
                "status_code": int,
                "event_type": str,
                "limit": int,
                "before": int,
                "after": int,
            }
        )
        deliveries, next_before = emulator().deliveries(**args)
        return jsonify(deliveries=deliveries, next_before=next_before)

    @bp.post("/api/deliveries/<int:delivery_id>/redeliver")
    def redeliver(delivery_id: int) -> Response:
        json_body({})
        return jsonify(emulator().redeliver(delivery_id))

    @bp.post("/api/events")
    def send_event() -> Response:
        body = json_body(EVENT_FIELDS)
        for required in ("event_type", "event_data"):
            if required not in body:
                raise InvalidInput(required, "is required")
        return jsonify(emulator().send_event(**body))

    @bp.get("/api/clock")
    def clock() -> Response:
        return jsonify(emulator().clock_info())

    @bp.post("/api/clock/advance")
    def advance() -> Response:
        body = json_body({"seconds": float})
        if "seconds" not in body:
            raise InvalidInput("seconds", "is required")
        return jsonify(emulator().advance(body["seconds"]))

    @bp.get("/api/scenarios")
    def scenarios() -> Response:
        return jsonify(scenarios=[s.public() for s in emulator().catalogue.all()])

    @bp.get("/api/scenarios/schema")
    def scenario_schema() -> Response:
        return jsonify(SCHEMA)

    @bp.get("/api/scenarios/<name>")
    def scenario(name: str) -> Response:
        return jsonify(emulator().catalogue.get(name).public())

    @bp.post("/api/scenarios")
    def add_scenario() -> tuple[Response, int]:
        return jsonify(emulator().add_scenario(json_body()).public()), 201

    @bp.delete("/api/scenarios/<name>")
    def delete_scenario(name: str) -> tuple[str, int]:
        emulator().delete_scenario(name)
        return "", 204

    @bp.get("/api/rules")
    def rules() -> Response:
        return jsonify(rules=emulator().list_rules())

    @bp.post("/api/rules")
    def add_rule() -> tuple[Response, int]:
        body = json_body({"match": dict, "scenario": str})
        return jsonify(emulator().add_rule(body.get("match"), body.get("scenario"))), 201

    @bp.delete("/api/rules/<int:rule_id>")
    def delete_rule(rule_id: int) -> tuple[str, int]:
        emulator().delete_rule(rule_id)
        return "", 204

    @bp.get("/api/cloud-calls")
    def cloud_calls() -> Response:
        args = query_args({"action": str, "task_id": str, "limit": int, "before": int})
        calls, next_before = emulator().cloud_calls(**args)
        return jsonify(cloud_calls=calls, next_before=next_before)

    @bp.post("/api/reset")
    def reset() -> Response:
        emulator().reset()
        return jsonify(status="reset")

    return bp
