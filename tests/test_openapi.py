"""The OpenAPI document: valid OpenAPI 3.1, served by the app, and in step with its routes."""

from __future__ import annotations

import re
from typing import Any

from openapi_spec_validator import validate

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
