"""Parse and validate the request parameters of the four OfflineRecord actions (2019-09-19)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl

from emulator.cloudapi import errors
from emulator.core.urls import callback_url_problem

API_VERSION = "2019-09-19"
ACTIONS: frozenset[str] = frozenset(
    {
        "CreateOfflineRecord",
        "DescribeOfflineRecord",
        "SetOfflineRecordCallback",
        "DescribeOfflineRecordCallback",
    }
)

Kind = Literal["Integer", "Boolean", "String", "Object"]
INT64_MAX = 2**63 - 1
_INTEGER_TEXT = re.compile(r"-?[0-9]+")
_BOOLEAN_TEXT = {"true": True, "false": False}


@dataclass(frozen=True)
class Param:
    """One request parameter: its API type, whether required, and its allowed values."""

    kind: Kind
    required: bool = False
    minimum: int | None = None
    maximum: int | None = None
    choices: tuple[int, ...] | None = None
    fields: Mapping[str, Param] = field(default_factory=dict)
    # Passes the type check, then is refused with this reason (documented as unsupported).
    unsupported: str | None = None


_SDK_APP_ID = Param("Integer", required=True, minimum=1, maximum=INT64_MAX)

SPECS: dict[str, dict[str, Param]] = {
    "CreateOfflineRecord": {
        "SdkAppId": _SDK_APP_ID,
        "RoomId": Param("Integer", required=True, minimum=1, maximum=4294967295),
        "GroupId": Param("String"),
        "MixStream": Param(
            "Object",
            fields={
                "Enabled": Param("Boolean", required=True),
                "DisableAudio": Param("Boolean"),
                "ModelId": Param("Integer", choices=(1, 2)),
                "TeacherId": Param("String"),
                "Custom": Param(
                    "Object",
                    unsupported="custom mix layouts are not supported for offline recording; "
                    "use MixStream.ModelId 1 or 2",
                ),
            },
        ),
        "Whiteboard": Param(
            "Object",
            fields={
                "Width": Param("Integer", minimum=2, maximum=INT64_MAX),
                "Height": Param("Integer", minimum=2, maximum=INT64_MAX),
                "InitParam": Param("String"),
            },
        ),
    },
    "DescribeOfflineRecord": {
        "SdkAppId": _SDK_APP_ID,
        "TaskId": Param("String", required=True),
    },
    "SetOfflineRecordCallback": {
        "SdkAppId": _SDK_APP_ID,
        "Callback": Param("String", required=True),
    },
    "DescribeOfflineRecordCallback": {
        "SdkAppId": _SDK_APP_ID,
    },
}


def parse_query(query_string: str) -> dict[str, Any]:
    """Unflatten SDK-style GET parameters (`MixStream.Enabled=True`, `Name.0=x`)."""
    return unflatten(parse_qsl(query_string, keep_blank_values=True))


def unflatten(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Nest flattened `(name, value)` pairs: `MixStream.Enabled` → `{"MixStream": {...}}`.

    Values stay strings; all-digit key segments become list indices (0..n-1, no gaps).
    Duplicate or conflicting keys raise InvalidParameter naming the key.
    """
    tree: dict[str, Any] = {}
    for key, value in pairs:
        segments = key.split(".")
        if not all(segments):
            raise errors.invalid_parameter(f"The parameter name `{key}` is malformed.")
        node = tree
        for depth, segment in enumerate(segments[:-1]):
            child = node.setdefault(segment, {})
            if not isinstance(child, dict):
                prefix = ".".join(segments[: depth + 1])
                raise errors.invalid_parameter(
                    f"The parameter `{prefix}` is given both as a value and as an object."
                )
            node = child
        leaf = segments[-1]
        if leaf in node:
            kind = "twice" if not isinstance(node[leaf], dict) else "as a value and an object"
            raise errors.invalid_parameter(f"The parameter `{key}` is given {kind}.")
        node[leaf] = value
    return {k: _listify(v, k) for k, v in tree.items()}


def _listify(node: Any, path: str) -> Any:
    if not isinstance(node, dict):
        return node
    converted = {k: _listify(v, f"{path}.{k}") for k, v in node.items()}
    if not converted or not all(k.isdigit() for k in converted):
        return converted
    indices = sorted(int(k) for k in converted)
    if indices != list(range(len(indices))):
        raise errors.invalid_parameter(
            f"The list parameter `{path}` must have indices 0..{len(indices) - 1} without gaps."
        )
    return [converted[str(i)] for i in range(len(indices))]


def validate_params(action: str, params: Mapping[str, Any], *, from_query: bool) -> dict[str, Any]:
    """Type-check `params` for `action` and return them typed (only the fields given).

    `from_query=True` converts strings ("123", "True"/"true"/"False"/"false"); a JSON body
    must already carry the right types (a bool is not an Integer). JSON nulls count as absent.
    """
    if action not in SPECS:
        raise errors.invalid_action(action)
    if not isinstance(params, Mapping):
        raise errors.invalid_parameter("The request parameters must be a JSON object.")
    typed = _validate_object(SPECS[action], params, "", from_query)
    if action == "CreateOfflineRecord":
        _check_mix_stream(typed.get("MixStream"))
    elif action == "SetOfflineRecordCallback":
        check_callback_url(typed["Callback"])
    return typed


def _validate_object(
    spec: Mapping[str, Param], given: Mapping[str, Any], prefix: str, from_query: bool
) -> dict[str, Any]:
    for name in given:
        if name not in spec:
            raise errors.unknown_parameter(prefix + str(name))
    typed: dict[str, Any] = {}
    for name, param in spec.items():
        path = prefix + name
        value = given.get(name)
        if value is None:
            if param.required:
                raise errors.missing_parameter(path)
            continue
        typed[name] = _validate_value(param, value, path, from_query)
    return typed


def _validate_value(param: Param, value: Any, path: str, from_query: bool) -> Any:
    if param.kind == "Object":
        if not isinstance(value, Mapping):
            raise errors.type_unmatched(path, "Object", _type_name(value))
        if param.unsupported:
            raise errors.invalid_value(path, "{...}", param.unsupported)
        return _validate_object(param.fields, value, path + ".", from_query)
    if param.kind == "String":
        if not isinstance(value, str):
            raise errors.type_unmatched(path, "String", _type_name(value))
        return value
    if param.kind == "Boolean":
        if isinstance(value, bool):
            return value
        if from_query and isinstance(value, str) and value.lower() in _BOOLEAN_TEXT:
            return _BOOLEAN_TEXT[value.lower()]
        raise errors.type_unmatched(path, "Boolean", _type_name(value))
    return _check_integer(param, _to_integer(value, path, from_query), path)


def _to_integer(value: Any, path: str, from_query: bool) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if from_query and isinstance(value, str) and _INTEGER_TEXT.fullmatch(value.strip()):
        return int(value.strip())
    raise errors.type_unmatched(path, "Integer", _type_name(value))


def _check_integer(param: Param, number: int, path: str) -> int:
    if param.choices is not None and number not in param.choices:
        allowed = " or ".join(str(c) for c in param.choices)
        raise errors.invalid_value(path, number, f"must be {allowed}")
    if param.minimum is not None and number < param.minimum:
        raise errors.invalid_value(path, number, f"must be at least {param.minimum}")
    if param.maximum is not None and number > param.maximum:
        raise errors.invalid_value(path, number, f"must be at most {param.maximum}")
    return number


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, int):
        return "Integer"
    if isinstance(value, float):
        return "Float"
    if isinstance(value, str):
        return "String"
    if isinstance(value, list):
        return "Array"
    if isinstance(value, Mapping):
        return "Object"
    return type(value).__name__


def _check_mix_stream(mix_stream: Mapping[str, Any] | None) -> None:
    # ModelId is documented as required unless Custom is given, and Custom is refused.
    if mix_stream and mix_stream.get("Enabled") and "ModelId" not in mix_stream:
        raise errors.missing_parameter("MixStream.ModelId")


def check_callback_url(url: str) -> None:
    """Empty deletes the callback; otherwise an absolute http(s) URL with a host is required."""
    problem = callback_url_problem(url) if url else None
    if problem is not None:
        raise errors.callback_address_format_error(url, problem)
