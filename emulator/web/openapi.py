"""The OpenAPI 3.1 description of the control API, the cloud API and /healthz, served as JSON."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

from emulator.cloudapi.params import ACTIONS, API_VERSION, SPECS, Param

Schema = dict[str, Any]
OPENAPI_VERSION = "3.1.0"


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: Schema, description: str = "OK") -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _body(schema: Schema, *, required: bool = True) -> Schema:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Schema]:
    meaning = {
        400: "invalid input (the field is named in `details`)",
        401: "missing or wrong bearer token (only when the emulator runs with --token)",
        404: "not found",
        409: "conflict with the current state",
        413: "request body too large",
    }
    return {str(s): _json(_ref("Error"), meaning[s]) for s in (*statuses, 401)}


def _query(name: str, kind: str, description: str) -> Schema:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": {"type": kind},
        "description": description,
    }


def _path(name: str, kind: str = "string") -> Schema:
    return {"name": name, "in": "path", "required": True, "schema": {"type": kind}}


def _obj(
    properties: dict[str, Schema], *, required: tuple[str, ...] = (), extra: bool = False
) -> Schema:
    out: Schema = {"type": "object", "properties": properties, "additionalProperties": extra}
    if required:
        out["required"] = list(required)
    return out


def _list_of(key: str, item: Schema) -> Schema:
    return _obj({key: {"type": "array", "items": item}}, required=(key,))


_NULL_STR: Schema = {"type": ["string", "null"]}
_NULL_INT: Schema = {"type": ["integer", "null"]}
_NULL_NUM: Schema = {"type": ["number", "null"]}
_ANY_OBJ: Schema = {"type": "object", "additionalProperties": True}


def _schemas() -> dict[str, Schema]:
    retry = {
        "oneOf": [
            {"type": "string", "enum": ["none", "fast", "tencent"]},
            _obj(
                {
                    "max_attempts": {"type": "integer", "minimum": 1, "maximum": 100},
                    "interval_s": {"type": "number", "minimum": 0},
                    "backoff": {"type": "number", "minimum": 1, "maximum": 10},
                    "name": {"type": "string"},
                },
                required=("max_attempts", "interval_s"),
            ),
        ]
    }
    config_fields: dict[str, Schema] = {
        "callback_url": {**_NULL_STR, "description": "default callback target"},
        "callback_key": {**_NULL_STR, "description": "signs callbacks; shown masked"},
        "sdk_app_id": {"type": "integer", "minimum": 1},
        "clock": {"type": "string", "enum": ["real", "manual"]},
        "speed": {"type": "number", "exclusiveMinimum": 0, "maximum": 1_000_000},
        "retry": retry,
        "timeout_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 600},
        "sign_ttl_s": {"type": "integer", "minimum": 1, "maximum": 604800},
        "strict_ack": {"type": "boolean"},
    }
    event_state = ["scheduled", "delivering", "delivered", "failed", "dropped", "cancelled"]
    return {
        "Error": _obj(
            {
                "error": _obj(
                    {
                        "code": {"type": "string", "description": "snake_case error code"},
                        "message": {"type": "string"},
                        "details": _ANY_OBJ,
                    },
                    required=("code", "message", "details"),
                )
            },
            required=("error",),
        ),
        "Config": _obj(config_fields, required=tuple(config_fields)),
        "ConfigPatch": _obj(config_fields),
        "TaskInput": _obj(
            {
                "scenario": {
                    "type": "string",
                    "description": "default: a matching rule, else success",
                },
                "room_id": {"type": "integer"},
                "group_id": {"type": "string"},
                "sdk_app_id": {"type": "integer"},
                "callback_url": {"type": "string"},
                "seed": {"type": "integer"},
                "params": {**_ANY_OBJ, "description": "flat per-task scenario overrides"},
            }
        ),
        "Task": _obj(
            {
                "task_id": {"type": "string"},
                "room_id": {"type": "integer"},
                "group_id": {"type": "string"},
                "sdk_app_id": {"type": "integer"},
                "scenario": {"type": "string"},
                "status": {
                    "type": "string",
                    "enum": ["queued", "processing", "finished", "cancelled"],
                },
                "progress": {"type": "integer"},
                "outcome": {"type": ["string", "null"], "enum": ["success", "failure", None]},
                "error": {"type": ["object", "null"]},
                "result": {"type": ["object", "null"]},
                "created_at": {"type": "number"},
                "created_at_wall": {"type": "number"},
                "finish_at": _NULL_NUM,
                "seed": {"type": "integer"},
                "params": _ANY_OBJ,
                "callback_url": _NULL_STR,
                "source": {"type": "string", "description": "control or cloudapi"},
                "request_id": {**_NULL_STR, "description": "RequestId of the creating cloud call"},
                "deliveries": _obj(
                    {
                        "attempts": {"type": "integer"},
                        "failed_attempts": {"type": "integer"},
                        "undelivered_events": {
                            "type": "integer",
                            "description": "events whose retries ran out without an ack",
                        },
                    },
                    required=("attempts", "failed_attempts", "undelivered_events"),
                ),
                "events": {"type": "array", "items": _ref("TaskEvent")},
            },
            required=("task_id", "status", "progress", "source"),
            extra=True,
        ),
        "TaskEvent": _obj(
            {
                "seq": {"type": "integer"},
                "event_type": {"type": "string"},
                "due_at": {"type": "number"},
                "state": {"type": "string", "enum": event_state},
                "attempts": {"type": "integer"},
                "sign": {"type": "string"},
                "note": {"type": "string"},
                "payload": _ANY_OBJ,
            },
            extra=True,
        ),
        "Delivery": _obj(
            {
                "id": {"type": "integer"},
                "event_id": _NULL_INT,
                "task_id": _NULL_STR,
                "event_type": {"type": "string"},
                "attempt": {"type": "integer"},
                "url": _NULL_STR,
                "request_body": {"type": "string"},
                "status_code": _NULL_INT,
                "response_body": _NULL_STR,
                "error": _NULL_STR,
                "started_at": {"type": "number"},
                "duration_ms": {"type": "number"},
                "ok": {"type": "boolean"},
                "emulated_at": {"type": "number"},
                "redelivery_of": _NULL_INT,
            },
            extra=True,
        ),
        "EventInput": _obj(
            {
                "event_type": {"type": "string"},
                "event_data": _ANY_OBJ,
                "callback_url": {"type": "string"},
                "sign": {"type": "string", "enum": ["valid", "invalid", "expired", "none"]},
                "sdk_app_id": {"type": "integer"},
            },
            required=("event_type", "event_data"),
        ),
        "Clock": _obj(
            {
                "mode": {"type": "string", "enum": ["real", "manual"]},
                "speed": {"type": "number"},
                "now": {"type": "number", "description": "emulated Unix seconds"},
                "wall": {"type": "number"},
                "pending_events": {"type": "integer"},
                "fired": {"type": "integer", "description": "advance only: events fired"},
            },
            extra=True,
        ),
        "Scenario": {
            **_ANY_OBJ,
            "description": "a scenario document; its JSON Schema is "
            "served at GET /api/scenarios/schema",
        },
        "RuleInput": _obj(
            {
                "match": _obj(
                    {
                        "room_id": {"type": "integer"},
                        "group_id": {"type": "string"},
                        "sdk_app_id": {"type": "integer"},
                    }
                ),
                "scenario": {"type": "string"},
            },
            required=("match", "scenario"),
        ),
        "Rule": _obj(
            {"id": {"type": "integer"}, "match": _ANY_OBJ, "scenario": {"type": "string"}},
            required=("id", "match", "scenario"),
        ),
        "CloudCall": _obj(
            {
                "id": {"type": "integer"},
                "at": {"type": "number"},
                "request_id": {"type": "string"},
                "action": {"type": "string"},
                "method": {"type": "string"},
                "secret_id": {**_NULL_STR, "description": "masked"},
                "params": {"description": "typed if valid, else as received"},
                "task_id": _NULL_STR,
                "ok": {"type": "boolean"},
                "code": {**_NULL_STR, "description": "error code, null on success"},
                "message": _NULL_STR,
            },
            extra=True,
        ),
        "CloudResponse": _obj(
            {
                "Response": _obj(
                    {
                        "RequestId": {"type": "string"},
                        "Error": _obj(
                            {"Code": {"type": "string"}, "Message": {"type": "string"}},
                            required=("Code", "Message"),
                        ),
                    },
                    required=("RequestId",),
                    extra=True,
                )
            },
            required=("Response",),
        ),
        **{f"{action}Request": _cloud_params(SPECS[action]) for action in sorted(ACTIONS)},
    }


def _cloud_params(spec: dict[str, Param]) -> Schema:
    kinds = {"Integer": "integer", "Boolean": "boolean", "String": "string", "Object": "object"}
    props: dict[str, Schema] = {}
    for name, param in spec.items():
        if param.kind == "Object":
            props[name] = _cloud_params(dict(param.fields))
            continue
        prop: Schema = {"type": kinds[param.kind]}
        if param.minimum is not None:
            prop["minimum"] = param.minimum
        if param.maximum is not None:
            prop["maximum"] = param.maximum
        if param.choices is not None:
            prop["enum"] = list(param.choices)
        props[name] = prop
    return _obj(props, required=tuple(n for n, p in spec.items() if p.required))


def _cloud_operation(method: str) -> Schema:
    headers = [
        # Required with TC3-HMAC-SHA256; a v1-signed call carries them as parameters instead.
        ("X-TC-Action", False, {"type": "string", "enum": sorted(ACTIONS)}),
        ("X-TC-Version", False, {"type": "string", "enum": [API_VERSION]}),
        ("X-TC-Timestamp", False, {"type": "string", "pattern": "^[0-9]+$"}),
        ("Authorization", False, {"type": "string", "pattern": "^TC3-HMAC-SHA256 "}),
        ("X-TC-Region", False, {"type": "string"}),
        ("X-TC-Language", False, {"type": "string", "enum": ["zh-CN", "en-US"]}),
    ]
    op: Schema = {
        "tags": ["cloudapi"],
        "operationId": f"cloudApi{method.capitalize()}",
        "summary": f"TIW API 3.0 call ({method.upper()}), as sent by the Tencent Cloud SDK",
        "description": "Dispatches on X-TC-Action; TC3-HMAC-SHA256 verified unless disabled. "
        "The older v1 signature (HmacSHA1/HmacSHA256) is accepted too: Action, Version, "
        "Timestamp, Nonce, SecretId, Signature and the action's parameters as form "
        "parameters (a form body for POST, the query string for GET). "
        "Always HTTP 200 with Content-Type exactly application/json; errors in "
        "Response.Error. Fidelity strict returns only RequestId.",
        "parameters": [
            {"name": n, "in": "header", "required": r, "schema": s} for n, r, s in headers
        ],
        "responses": {"200": _json(_ref("CloudResponse"), "Response (or Response.Error)")},
    }
    request_schema = {"oneOf": [_ref(f"{a}Request") for a in sorted(ACTIONS)]}
    if method == "post":
        op["requestBody"] = _body(request_schema)
    else:
        op["description"] += (
            " GET carries the parameters flattened in the query string "
            "(MixStream.Enabled=True); without Authorization, an X-TC-* header or an Action "
            "parameter it answers 404."
        )
        op["responses"]["404"] = _json(
            _ref("Error"), "not an API call (no Authorization, X-TC-* header or Action)"
        )
    return op


def _op(op_id: str, summary: str, responses: dict[str, Schema], **extra: Any) -> Schema:
    return {
        "tags": ["control"],
        "operationId": op_id,
        "summary": summary,
        "responses": responses,
        **extra,
    }


def _paths() -> dict[str, Schema]:
    ok = {"200": _json(_obj({"status": {"type": "string"}}, required=("status",)))}
    task_id, name = _path("task_id"), _path("name")
    limit = _query("limit", "integer", "at most this many (the newest)")
    return {
        "/": {"post": _cloud_operation("post"), "get": _cloud_operation("get")},
        "/healthz": {"get": {**_op("healthz", "liveness", ok), "tags": ["health"]}},
        "/api/openapi.json": {"get": _op("openapi", "this document", {"200": _json(_ANY_OBJ)})},
        "/api/config": {
            "get": _op("getConfig", "runtime configuration", {"200": _json(_ref("Config"))}),
            "patch": _op(
                "patchConfig",
                "change runtime configuration",
                {"200": _json(_ref("Config")), **_errors(400)},
                requestBody=_body(_ref("ConfigPatch")),
            ),
        },
        "/api/tasks": {
            "post": _op(
                "createTask",
                "create a task",
                {"201": _json(_ref("Task"), "created"), **_errors(400, 404, 409)},
                requestBody=_body(_ref("TaskInput"), required=False),
            ),
            "get": _op(
                "listTasks",
                "list tasks, newest first",
                {"200": _json(_list_of("tasks", _ref("Task"))), **_errors(400)},
                parameters=[
                    _query("status", "string", "queued, processing, finished or cancelled"),
                    _query("room_id", "integer", "room"),
                    _query("scenario", "string", "scenario name"),
                    limit,
                ],
            ),
        },
        "/api/tasks/{task_id}": {
            "get": _op(
                "getTask",
                "one task with its events",
                {"200": _json(_ref("Task")), **_errors(404)},
                parameters=[task_id],
            ),
        },
        "/api/tasks/{task_id}/cancel": {
            "post": _op(
                "cancelTask",
                "cancel a task's pending events",
                {"200": _json(_ref("Task")), **_errors(404, 409)},
                parameters=[task_id],
            ),
        },
        "/api/tasks/{task_id}/events": {
            "get": _op(
                "taskEvents",
                "a task's planned and sent events",
                {"200": _json(_list_of("events", _ref("TaskEvent"))), **_errors(404)},
                parameters=[task_id],
            ),
        },
        "/api/deliveries": {
            "get": _op(
                "listDeliveries",
                "callback attempt log, oldest first",
                {"200": _json(_list_of("deliveries", _ref("Delivery"))), **_errors(400)},
                parameters=[_query("task_id", "string", "only this task"), limit],
            ),
        },
        "/api/deliveries/{delivery_id}/redeliver": {
            "post": _op(
                "redeliver",
                "send a recorded payload again, re-signed",
                {"200": _json(_ref("Delivery")), **_errors(404)},
                parameters=[_path("delivery_id", "integer")],
            ),
        },
        "/api/events": {
            "post": _op(
                "sendEvent",
                "post an ad-hoc event at once",
                {"200": _json(_ref("Delivery")), **_errors(400)},
                requestBody=_body(_ref("EventInput")),
            ),
        },
        "/api/clock": {"get": _op("getClock", "emulated clock", {"200": _json(_ref("Clock"))})},
        "/api/clock/advance": {
            "post": _op(
                "advanceClock",
                "move the clock and fire what is due",
                {"200": _json(_ref("Clock")), **_errors(400)},
                requestBody=_body(
                    _obj({"seconds": {"type": "number", "minimum": 0}}, required=("seconds",))
                ),
            ),
        },
        "/api/scenarios": {
            "get": _op(
                "listScenarios",
                "the scenario catalogue",
                {"200": _json(_list_of("scenarios", _ref("Scenario")))},
            ),
            "post": _op(
                "addScenario",
                "add or replace a user scenario",
                {"201": _json(_ref("Scenario"), "created"), **_errors(400)},
                requestBody=_body(_ref("Scenario")),
            ),
        },
        "/api/scenarios/schema": {
            "get": _op(
                "scenarioSchema", "JSON Schema of scenario documents", {"200": _json(_ANY_OBJ)}
            ),
        },
        "/api/scenarios/{name}": {
            "get": _op(
                "getScenario",
                "one scenario",
                {"200": _json(_ref("Scenario")), **_errors(404)},
                parameters=[name],
            ),
            "delete": _op(
                "deleteScenario",
                "delete a user scenario",
                {"204": {"description": "deleted"}, **_errors(400, 404)},
                parameters=[name],
            ),
        },
        "/api/rules": {
            "get": _op(
                "listRules", "scenario rules", {"200": _json(_list_of("rules", _ref("Rule")))}
            ),
            "post": _op(
                "addRule",
                "add a rule: tasks matching `match` get `scenario`",
                {"201": _json(_ref("Rule"), "created"), **_errors(400, 404)},
                requestBody=_body(_ref("RuleInput")),
            ),
        },
        "/api/rules/{rule_id}": {
            "delete": _op(
                "deleteRule",
                "delete a rule",
                {"204": {"description": "deleted"}, **_errors(404)},
                parameters=[_path("rule_id", "integer")],
            ),
        },
        "/api/cloud-calls": {
            "get": _op(
                "listCloudCalls",
                "cloud API call log, oldest first; secrets masked",
                {"200": _json(_list_of("cloud_calls", _ref("CloudCall"))), **_errors(400)},
                parameters=[
                    _query("action", "string", "only this X-TC-Action"),
                    _query("task_id", "string", "created or described task"),
                    limit,
                ],
            ),
        },
        "/api/reset": {
            "post": _op("reset", "forget tasks, deliveries, rules, user scenarios, call log", ok),
        },
    }


def openapi_document() -> dict[str, Any]:
    """The whole document; built on each call (cheap), so it never goes stale in memory."""
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "tiw-emulator",
            "version": "0.1.0",
            "description": "Control API of the TIW after-class recording emulator, plus the "
            "TIW API 3.0 endpoint (`/`) its Tencent Cloud SDK clients call.",
        },
        "servers": [{"url": "/"}],
        "tags": [
            {"name": "control", "description": "the emulator's own JSON API"},
            {"name": "cloudapi", "description": "TIW API 3.0 (OfflineRecord actions)"},
            {"name": "health", "description": "liveness"},
        ],
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {
                "token": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "only when the emulator runs with --token",
                },
            },
        },
        "paths": _paths(),
    }


def create_openapi_blueprint() -> Blueprint:
    bp = Blueprint("openapi", __name__)

    @bp.get("/api/openapi.json")
    def openapi_json() -> Response:
        return jsonify(openapi_document())

    return bp
