"""The OpenAPI 3.1 description of the control API, the cloud API and /healthz, served as JSON.

Control-API components and query parameters are generated from emulator.core.models; the
scenario document from the scenario JSON Schema; the cloud API's requests from its parameter
specs (emulator.cloudapi.params). Only the paths and the cloud API envelope are written here.
"""

from __future__ import annotations

import types
import typing
from typing import Any

import msgspec
from flask import Blueprint, Response

from emulator.cloudapi.params import ACTIONS, API_VERSION, SPECS, Param
from emulator.core import models, parsing
from emulator.core.scenarios import PARAMS
from emulator.core.scenarios import SCHEMA as SCENARIO_SCHEMA

Schema = dict[str, Any]
OPENAPI_VERSION = "3.1.0"
REF = "#/components/schemas/{name}"


def _ref(name: str) -> Schema:
    return {"$ref": REF.format(name=name)}


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


def _path(name: str, kind: str = "string") -> Schema:
    return {"name": name, "in": "path", "required": True, "schema": {"type": kind}}


def _id_path(name: str) -> Schema:
    (schema,), _ = parsing.schema_components([models.Id], ref_template=REF)
    return {**_path(name), "schema": schema}


def _obj(
    properties: dict[str, Schema], *, required: tuple[str, ...] = (), extra: bool = False
) -> Schema:
    out: Schema = {"type": "object", "properties": properties, "additionalProperties": extra}
    if required:
        out["required"] = list(required)
    return out


def _list_of(key: str, item: Schema) -> Schema:
    return _obj({key: {"type": "array", "items": item}}, required=(key,))


def _schemas() -> dict[str, Schema]:
    """Components generated from emulator.core.models, plus the scenario and cloud API parts."""
    _, schemas = parsing.schema_components(models.COMPONENTS, ref_template=REF)
    for schema in schemas.values():
        if "properties" in schema:  # the shapes are exact: extra keys are drift, not data
            schema.setdefault("additionalProperties", False)
    document = {k: v for k, v in SCENARIO_SCHEMA.items() if k not in ("$schema", "$id")}
    schemas["ScenarioDocument"] = document
    for section in ("class", "processing", "outcome", "delivery"):
        schemas["Scenario"]["properties"][section] = {
            "$ref": REF.format(name=f"ScenarioDocument/properties/{section}")
        }
    # A rule matching every task would be a default scenario, which is the config's job.
    schemas["RuleMatch"]["minProperties"] = 1
    schemas["TaskParams"] = _task_params()
    schemas["TaskCreate"]["properties"]["params"] = {
        "anyOf": [_ref("TaskParams"), {"type": "null"}]
    }
    schemas["CloudResponse"] = _obj(
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
    )
    for action in sorted(ACTIONS):
        schemas[f"{action}Request"] = _cloud_params(SPECS[action])
    return schemas


def _task_params() -> Schema:
    """POST /api/tasks `params`: each flat override with its scenario-schema declaration."""
    sections = SCENARIO_SCHEMA["properties"]
    properties = {
        name: {
            **sections[section]["properties"][key],
            "description": f"overrides {section}.{key}: "
            + sections[section]["properties"][key].get("description", ""),
        }
        for name, (section, key) in PARAMS.items()
    }
    return {**_obj(properties), "title": "TaskParams", "description": "flat scenario overrides"}


def _query_parameters(model: Any) -> list[Schema]:
    """One `in: query` parameter per field of a query model, with its type, bounds, default."""
    out = []
    for f in msgspec.structs.fields(model):
        (schema,), _ = parsing.schema_components([_not_none(f.type)], ref_template=REF)
        described = schema.pop("description", "")
        if f.default is not msgspec.NODEFAULT and f.default is not None:
            schema["default"] = f.default
        parameter: Schema = {"name": f.encode_name, "in": "query", "required": False}
        if described:
            parameter["description"] = described
        out.append({**parameter, "schema": schema})
    return out


def _not_none(tp: Any) -> Any:
    """`X | None` → X: a query parameter is absent rather than null."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    is_union = typing.get_origin(tp) in (typing.Union, types.UnionType)
    return args[0] if is_union and len(args) == 1 else tp


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
    ok = {"200": _json(_ref("Status"))}
    task_id, name = _path("task_id"), _path("name")
    tasks, deliveries = _query_parameters(models.TaskQuery), _query_parameters(models.DeliveryQuery)
    any_object: Schema = {"type": "object"}
    return {
        "/": {"post": _cloud_operation("post"), "get": _cloud_operation("get")},
        "/healthz": {"get": {**_op("healthz", "liveness", ok), "tags": ["health"]}},
        "/api/openapi.json": {"get": _op("openapi", "this document", {"200": _json(any_object)})},
        "/api/config": {
            "get": _op("getConfig", "runtime configuration", {"200": _json(_ref("Config"))}),
            "patch": _op(
                "patchConfig",
                "change runtime configuration (run_seed is read-only)",
                {"200": _json(_ref("Config")), **_errors(400, 413)},
                # An empty body is an empty patch: it changes nothing and answers the config.
                requestBody=_body(_ref("ConfigPatch"), required=False),
            ),
        },
        "/api/tasks": {
            "post": _op(
                "createTask",
                "create a task",
                {"201": _json(_ref("TaskCreated"), "created"), **_errors(400, 404, 409, 413)},
                requestBody=_body(_ref("TaskCreate"), required=False),
            ),
            "get": _op(
                "listTasks",
                "list tasks, newest first, a page at a time (next_offset)",
                {"200": _json(_ref("TaskList")), **_errors(400)},
                parameters=tasks,
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
                {"200": _json(_ref("Task")), **_errors(400, 404, 409, 413)},
                parameters=[task_id],
            ),
        },
        "/api/tasks/{task_id}/events": {
            "get": _op(
                "taskEvents",
                "a task's planned and sent events",
                {"200": _json(_ref("EventList")), **_errors(400, 404)},
                parameters=[task_id, *_query_parameters(models.EventQuery)],
            ),
        },
        "/api/deliveries": {
            "get": _op(
                "listDeliveries",
                "callback attempt log: the newest matching page, oldest first (next_before)",
                {"200": _json(_ref("DeliveryList")), **_errors(400)},
                parameters=deliveries,
            ),
        },
        "/api/deliveries/{delivery_id}/redeliver": {
            "post": _op(
                "redeliver",
                "send a recorded payload again, re-signed",
                # 409: the emulator was reset while the callback was being sent
                {"200": _json(_ref("Delivery")), **_errors(400, 404, 409, 413)},
                parameters=[_id_path("delivery_id")],
            ),
        },
        "/api/events": {
            "post": _op(
                "sendEvent",
                "post an ad-hoc event at once",
                # 409: the emulator was reset while the callback was being sent
                {"200": _json(_ref("Delivery")), **_errors(400, 409, 413)},
                requestBody=_body(_ref("EventCreate")),
            ),
        },
        "/api/clock": {"get": _op("getClock", "emulated clock", {"200": _json(_ref("Clock"))})},
        "/api/clock/advance": {
            "post": _op(
                "advanceClock",
                "move the clock and fire what is due",
                {"200": _json(_ref("Clock")), **_errors(400, 413)},
                requestBody=_body(_ref("ClockAdvance")),
            ),
        },
        "/api/scenarios": {
            "get": _op(
                "listScenarios", "the scenario catalogue", {"200": _json(_ref("ScenarioList"))}
            ),
            "post": _op(
                "addScenario",
                "add or replace a user scenario",
                {"201": _json(_ref("Scenario"), "created"), **_errors(400, 413)},
                requestBody=_body(_ref("ScenarioDocument")),
            ),
        },
        "/api/scenarios/schema": {
            "get": _op(
                "scenarioSchema", "JSON Schema of scenario documents", {"200": _json(any_object)}
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
                {"204": {"description": "deleted"}, **_errors(404, 409)},
                parameters=[name],
            ),
        },
        "/api/rules": {
            "get": _op("listRules", "scenario rules", {"200": _json(_ref("RuleList"))}),
            "post": _op(
                "addRule",
                "add a rule: tasks matching `match` get `scenario`",
                {"201": _json(_ref("Rule"), "created"), **_errors(400, 404, 413)},
                requestBody=_body(_ref("RuleCreate")),
            ),
        },
        "/api/rules/{rule_id}": {
            "delete": _op(
                "deleteRule",
                "delete a rule",
                {"204": {"description": "deleted"}, **_errors(404)},
                parameters=[_id_path("rule_id")],
            ),
        },
        "/api/cloud-calls": {
            "get": _op(
                "listCloudCalls",
                "cloud API call log: the newest matching page, oldest first; secrets masked",
                {"200": _json(_ref("CloudCallList")), **_errors(400)},
                parameters=_query_parameters(models.CloudCallQuery),
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
        return Response(parsing.encode(openapi_document()), mimetype="application/json")

    return bp
