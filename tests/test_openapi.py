"""The OpenAPI document: valid OpenAPI 3.1, generated from the models, true to real replies."""

from __future__ import annotations

import re
from typing import Any

import msgspec
import requests
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from emulator.core import models
from emulator.core.scenarios import PARAMS
from emulator.receiver import Receiver
from emulator.web.app import create_app
from emulator.web.openapi import openapi_document

HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def _app_routes() -> set[tuple[str, str]]:
    app = create_app({"db": ":memory:"}, start=False)
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.rule.startswith("/ui/"):
            continue  # the dashboard's pages and assets are not an API
        path = re.sub(r"<(?:[^:>]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            routes.add((method.lower(), path))
    return routes


def _documented(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method, path)
        for path, item in doc["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }


def test_document_is_valid_openapi() -> None:
    doc = openapi_document()
    assert doc["openapi"].startswith("3.1")
    validate(doc)  # raises OpenAPIValidationError with the offending path


def test_every_route_is_documented_and_nothing_else() -> None:
    routes, documented = _app_routes(), _documented(openapi_document())
    assert routes - documented == set(), "routes missing from emulator/openapi.py"
    assert documented - routes == set(), "documented operations the app does not serve"


def test_path_parameters_match_the_template() -> None:
    for path, item in openapi_document()["paths"].items():
        names = set(re.findall(r"{([a-z_]+)}", path))
        for method, op in item.items():
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == names, f"{method.upper()} {path}"


def test_operation_ids_are_unique() -> None:
    ids = [
        op["operationId"] for item in openapi_document()["paths"].values() for op in item.values()
    ]
    assert len(ids) == len(set(ids))


def test_served_at_api_openapi_json(make_emulator: Any) -> None:
    running = make_emulator()
    reply = running.api("GET", "/api/openapi.json")
    assert reply.status_code == 200
    assert reply.json() == openapi_document()


def test_cloud_request_schemas_follow_the_parameter_specs() -> None:
    schemas = openapi_document()["components"]["schemas"]
    create = schemas["CreateOfflineRecordRequest"]
    assert create["required"] == ["SdkAppId", "RoomId"]
    assert create["properties"]["MixStream"]["required"] == ["Enabled"]
    assert schemas["SetOfflineRecordCallbackRequest"]["required"] == ["SdkAppId", "Callback"]


# -- real responses of every route against the document ------------------------------------------
class Recorder:
    """Sends control/cloud API requests to a served emulator and keeps every reply."""

    def __init__(self, running: Any) -> None:
        self.running = running
        self.replies: list[tuple[str, str, requests.Response]] = []

    def __call__(self, method: str, path: str, **kw: Any) -> requests.Response:
        reply = self.running.api(method, path, **kw)
        self.replies.append((method.lower(), path.split("?")[0], reply))
        return reply


def _template(doc: dict[str, Any], path: str) -> str:
    for template in doc["paths"]:
        pattern = "^" + re.sub(r"{[a-z_]+}", "[^/]+", template) + "$"
        if re.match(pattern, path):
            return template
    raise AssertionError(f"{path} matches no documented path")


def _check_reply(doc: dict[str, Any], method: str, path: str, reply: requests.Response) -> str:
    template = _template(doc, path)
    operation = doc["paths"][template][method]
    status = str(reply.status_code)
    where = f"{method.upper()} {path} -> {status}"
    assert status in operation["responses"], f"{where}: status not documented: {reply.text}"
    documented = operation["responses"][status]
    if "content" not in documented:
        assert not reply.content, where
        return template
    assert reply.headers["Content-Type"].startswith("application/json"), where
    schema = {
        **documented["content"]["application/json"]["schema"],
        "components": doc["components"],
    }
    errors = list(Draft202012Validator(schema).iter_errors(reply.json()))
    assert not errors, f"{where}: " + "; ".join(
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:5]
    )
    return template


def _exercise(api: Recorder, receiver: Receiver, url: str) -> None:
    """Every route at least once with success, and the usual refusals."""
    api("GET", "/healthz")
    api("GET", "/api/openapi.json")
    api("GET", "/api/config")
    api("PATCH", "/api/config", json={"retry": {"max_attempts": 2, "interval_s": 1}})
    api("PATCH", "/api/config", json={"retry": "fast", "speed": 10})
    api("PATCH", "/api/config", json={"speed": -1})
    api("POST", "/api/tasks", data="x" * 2_000_000, headers={"Content-Type": "application/json"})
    task = api("POST", "/api/tasks", json={"room_id": 1, "scenario": "transcode-failure"}).json()
    api("POST", "/api/tasks", json={"room_id": 1})  # 409 room_busy
    api("POST", "/api/tasks", json={"scenario": "nope"})  # 404
    api("POST", "/api/tasks", json={"room_id": -1})  # 400
    other = api("POST", "/api/tasks", json={"room_id": 2, "params": {"progress_steps": 2}}).json()
    api("POST", "/api/tasks")  # no body at all: every field defaulted
    api("GET", "/api/tasks?limit=1")
    api("GET", "/api/tasks?limit=0")
    api("GET", f"/api/tasks/{task['task_id']}")
    api("GET", "/api/tasks/nope")
    api("GET", f"/api/tasks/{task['task_id']}/events?limit=3")
    api("GET", f"/api/tasks/{task['task_id']}/events?limit=x")
    api("GET", "/api/tasks/nope/events")
    api("POST", f"/api/tasks/{other['task_id']}/cancel")
    api("POST", f"/api/tasks/{other['task_id']}/cancel")  # 409
    api("POST", "/api/tasks/nope/cancel")
    api("GET", "/api/clock")
    api("POST", "/api/clock/advance", json={"seconds": 86400})
    api("POST", "/api/clock/advance", json={"seconds": "soon"})
    api("GET", f"/api/tasks/{task['task_id']}")  # finished: outcome, error
    delivery = api("GET", "/api/deliveries?limit=2").json()["deliveries"][-1]
    api("GET", "/api/deliveries?ok=maybe")
    api("POST", f"/api/deliveries/{delivery['id']}/redeliver")
    api("POST", "/api/deliveries/999999/redeliver")
    api(
        "POST", "/api/events", json={"event_type": "OfflineRecordProgressChanged", "event_data": {}}
    )
    api("POST", "/api/events", json={"event_type": "X"})
    api("POST", "/api/events", json={"event_type": "X", "event_data": {}, "callback_url": url})
    api("GET", "/api/scenarios")
    api("GET", "/api/scenarios/schema")
    api("GET", "/api/scenarios/success")
    api("GET", "/api/scenarios/none-such")
    api("POST", "/api/scenarios", json={"name": "mine", "outcome": {"result": "failure"}})
    api("POST", "/api/scenarios", json={"name": "Bad Name"})
    api("DELETE", "/api/scenarios/success")  # 400: built-in
    api("DELETE", "/api/scenarios/mine")
    api("DELETE", "/api/scenarios/mine")  # 404
    rule = api("POST", "/api/rules", json={"match": {"room_id": 5}, "scenario": "success"}).json()
    api("POST", "/api/rules", json={"match": {"room_id": 5}, "scenario": "nope"})
    api("POST", "/api/rules", json={"match": {}, "scenario": "success"})
    api("GET", "/api/rules")
    api("DELETE", f"/api/rules/{rule['id']}")
    api("DELETE", f"/api/rules/{rule['id']}")
    cloud = {"X-TC-Version": "2019-09-19", "X-TC-Region": "ap-guangzhou"}
    body = {"SdkAppId": 1400000001, "RoomId": 77}
    api("POST", "/", json=body, headers={**cloud, "X-TC-Action": "CreateOfflineRecord"})
    api("POST", "/", json={}, headers={**cloud, "X-TC-Action": "CreateOfflineRecord"})
    api("GET", "/?SdkAppId=1400000001", headers={**cloud, "X-TC-Action": "Describe"})
    api("GET", "/")
    api("GET", "/api/cloud-calls?limit=1")
    api("GET", "/api/cloud-calls?limit=1001")
    api("POST", "/api/reset")
    assert receiver.received, "the callbacks went out"


def test_real_responses_of_every_route_match_the_document(
    make_emulator: Any, receiver: Receiver
) -> None:
    running = make_emulator(callback_url=receiver.url, verify_signature=False)
    doc = running.api("GET", "/api/openapi.json").json()
    api = Recorder(running)
    _exercise(api, receiver, receiver.url)
    answered = {(m, _check_reply(doc, m, p, r)) for m, p, r in api.replies if r.ok}
    for method, path, reply in api.replies:
        _check_reply(doc, method, path, reply)
    assert _documented(doc) - answered == set(), "documented operations never answered 2xx"
    assert all(r.status_code < 500 for _, _, r in api.replies)

    locked = make_emulator(token="s3cret")
    denied = Recorder(locked)("GET", "/api/tasks")
    _check_reply(doc, "get", "/api/tasks", denied)
    assert denied.status_code == 401


def test_query_parameters_and_components_come_from_the_models() -> None:
    doc = openapi_document()
    schemas = doc["components"]["schemas"]
    for name in ("Task", "TaskCreate", "Delivery", "Config", "ConfigPatch", "Rule", "CloudCall"):
        assert schemas[name]["additionalProperties"] is False, name
    assert schemas["TaskCreate"]["properties"]["room_id"]["anyOf"][0]["maximum"] == 4294967295
    assert "run_seed" in schemas["Config"]["required"]
    assert "run_seed" not in schemas["ConfigPatch"]["properties"]
    assert set(schemas["TaskParams"]["properties"]) == set(PARAMS)
    listed = doc["paths"]["/api/tasks"]["get"]["parameters"]
    assert [p["name"] for p in listed] == [
        f.encode_name for f in msgspec.structs.fields(models.TaskQuery)
    ]
    limit = next(p for p in listed if p["name"] == "limit")
    assert limit["schema"] == {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}
    assert {"next_offset", "tasks"} == set(schemas["TaskList"]["properties"])
