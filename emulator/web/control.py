"""Control API blueprint (/healthz, /api/...): parse with the models, call the core, encode.

Bodies and queries are parsed by emulator.core.parsing into emulator.core.models, so every
refusal has one format and names the field; replies are encoded with msgspec.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
from flask import Blueprint, Response, current_app, request
from werkzeug.routing import BaseConverter

from emulator.core import models, parsing
from emulator.core.config import read_only
from emulator.core.errors import UnknownField
from emulator.core.models import INT64_MAX
from emulator.core.scenarios import SCHEMA
from emulator.core.service import Emulator
from emulator.web.wsgi_bridge import hold_of, request_body, waited_s

M = TypeVar("M")
# Path ids are int64 row ids: anything else is a 404 from the router, never an overflow.
ID = f"int(min=1, max={INT64_MAX})"
# A scenario name in a path: anything but "schema", which is /api/scenarios/schema (so that
# route's Allow header does not list the DELETE of a scenario that cannot exist).
SCENARIO = "scenario_name"


class ScenarioName(BaseConverter):
    regex = r"(?!schema$)[^/]+"


def emulator() -> Emulator:
    emu: Emulator = current_app.extensions["tiw_emulator"]
    return emu


def body(model: type[M]) -> M:
    return parsing.decode_body(request_body(request), model)


def query(model: type[M]) -> M:
    return parsing.parse_query(request.args, model)


def reply(value: Any, status: int = 200) -> Response:
    return Response(parsing.encode(value), status=status, mimetype="application/json")


def given(struct: msgspec.Struct) -> dict[str, Any]:
    """The fields of a parsed body that were given (not None, not UNSET), as keywords."""
    return {
        k: v
        for k, v in msgspec.structs.asdict(struct).items()
        if v is not None and v is not msgspec.UNSET
    }


def create_control_blueprint() -> Blueprint:
    bp = Blueprint("control", __name__)

    @bp.record_once
    def add_converter(state: Any) -> None:
        state.app.url_map.converters[SCENARIO] = ScenarioName

    @bp.get("/healthz")
    def healthz() -> Response:
        problem = emulator().health()
        if problem is not None:
            return reply({"status": "error", "storage_error": problem}, 503)
        return reply({"status": "ok"})

    @bp.get("/api/config")
    def get_config() -> Response:
        return reply(_config_view(emulator()))

    @bp.patch("/api/config")
    def patch_config() -> Response:
        try:
            patch = body(models.ConfigPatch)
        except UnknownField as err:
            name = err.details["field"]
            if name in models.READ_ONLY_CONFIG:
                raise read_only(name) from None
            raise
        changes = {k: v for k, v in msgspec.structs.asdict(patch).items() if v is not msgspec.UNSET}
        emulator().update_config(changes)
        return reply(_config_view(emulator()))

    @bp.post("/api/tasks")
    def create_task() -> Response:
        fields = given(body(models.TaskCreate))
        environ = request.environ
        hold = hold_of(environ)
        created = emulator().create_task(**fields, waited_s=waited_s(environ), hold=hold)
        return reply(created, 201)

    @bp.get("/api/tasks")
    def list_tasks() -> Response:
        tasks, next_offset = emulator().list_tasks(**given(query(models.TaskQuery)))
        return reply({"tasks": tasks, "next_offset": next_offset})

    @bp.get("/api/tasks/<task_id>")
    def get_task(task_id: str) -> Response:
        return reply(emulator().get_task(task_id))

    @bp.post("/api/tasks/<task_id>/cancel")
    def cancel_task(task_id: str) -> Response:
        body(models.Empty)
        return reply(emulator().cancel_task(task_id))

    @bp.get("/api/tasks/<task_id>/events")
    def task_events(task_id: str) -> Response:
        limit = query(models.EventQuery).limit
        emulator().get_task(task_id, with_events=False)  # 404 for an unknown task
        return reply({"events": emulator().task_events(task_id, limit=limit)})

    @bp.get("/api/deliveries")
    def deliveries() -> Response:
        found, next_before = emulator().deliveries(**given(query(models.DeliveryQuery)))
        return reply({"deliveries": found, "next_before": next_before})

    @bp.post(f"/api/deliveries/<{ID}:delivery_id>/redeliver")
    def redeliver(delivery_id: int) -> Response:
        body(models.Empty)
        return reply(emulator().redeliver(delivery_id))

    @bp.post("/api/events")
    def send_event() -> Response:
        event = body(models.EventCreate)
        return reply(emulator().send_event(**given(event)))

    @bp.get("/api/clock")
    def clock() -> Response:
        return reply(emulator().clock_info())

    @bp.post("/api/clock/advance")
    def advance() -> Response:
        return reply(emulator().advance(body(models.ClockAdvance).seconds))

    @bp.get("/api/scenarios")
    def scenarios() -> Response:
        return reply({"scenarios": [s.public() for s in emulator().catalogue.all()]})

    @bp.get("/api/scenarios/schema")
    def scenario_schema() -> Response:
        return reply(SCHEMA)

    @bp.get(f"/api/scenarios/<{SCENARIO}:name>")
    def scenario(name: str) -> Response:
        return reply(emulator().catalogue.get(name).public())

    @bp.post("/api/scenarios")
    def add_scenario() -> Response:
        doc = parsing.decode_object(request_body(request))
        return reply(emulator().add_scenario(doc).public(), 201)

    @bp.delete(f"/api/scenarios/<{SCENARIO}:name>")
    def delete_scenario(name: str) -> tuple[str, int]:
        emulator().delete_scenario(name)
        return "", 204

    @bp.get("/api/rules")
    def rules() -> Response:
        return reply({"rules": emulator().list_rules()})

    @bp.post("/api/rules")
    def add_rule() -> Response:
        rule = body(models.RuleCreate)
        match = msgspec.to_builtins(rule.match)  # only the given keys
        return reply(emulator().add_rule(match, rule.scenario), 201)

    @bp.delete(f"/api/rules/<{ID}:rule_id>")
    def delete_rule(rule_id: int) -> tuple[str, int]:
        emulator().delete_rule(rule_id)
        return "", 204

    @bp.get("/api/cloud-calls")
    def cloud_calls() -> Response:
        calls, next_before = emulator().cloud_calls(**given(query(models.CloudCallQuery)))
        return reply({"cloud_calls": calls, "next_before": next_before})

    @bp.post("/api/reset")
    def reset() -> Response:
        emulator().reset()
        return reply({"status": "reset"})

    return bp


def _config_view(emu: Emulator) -> dict[str, Any]:
    return emu.public_config()
