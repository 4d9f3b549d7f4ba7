"""Bytes, query strings and mappings into the models of emulator.core.models, or a clear error.

Every refusal is one of the control API's error classes and names the field: `invalid_json`
(not JSON, NaN/Infinity, a lone surrogate, not an object), `unknown_field` (with the allowed
names), `invalid_field` (wrong type, out of bounds, missing). Free-form objects (task params,
event_data, scenario documents) are walked so that their integers stay inside int64 too.
"""

from __future__ import annotations

import re
import threading
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

import msgspec

from emulator.core.errors import EmulatorError, InvalidInput, InvalidJson, UnknownField
from emulator.core.models import INT64_MAX
from emulator.core.urls import CALLBACK_URL_PATTERN, CALLBACK_URL_RULE

M = TypeVar("M")
_INT64_MIN = -(2**63)
_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}
_first_use = threading.Lock()
_encoder = msgspec.json.Encoder()
# Bytes with every digit as "0" and everything else as " ": a run of 19 digits (int64's
# length) is then one substring test, far cheaper than a regex or a walk of the parsed value.
_DIGITS_ONLY = bytes(48 if 48 <= b <= 57 else 32 for b in range(256))
_NINETEEN_DIGITS = b"0" * 19
_AT = re.compile(r"^(?P<what>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<name>[^`]*)`$")
_MISSING = re.compile(r"^Object missing required field `(?P<name>[^`]*)`$")
_CALLBACK_URL_START = CALLBACK_URL_PATTERN[CALLBACK_URL_PATTERN.index("[Hh]") :][:24]
_TYPE_WORDS = {
    "int": "an integer",
    "float": "a number",
    "str": "a string",
    "bool": "true or false",
    "object": "an object",
    "array": "an array",
    "null": "null",
}


def encode(value: Any) -> bytes:
    """JSON bytes (UTF-8, non-ASCII as is) of a model, or of plain dicts and lists."""
    return _encoder.encode(value)


def decoder_for(model: type[M]) -> msgspec.json.Decoder[M]:
    """`model`'s JSON decoder, built on first use by one thread at a time.

    Call it before any other msgspec use of a model (`convert` too). msgspec before 0.23 filled
    in a Struct type's field table lazily, on its first use, without a lock: two threads using a
    new Struct type at once could crash the process (a segfault in msgspec 0.22's
    `json_decode_struct_map_inner`, seen on the first burst of requests to a fresh `serve`).
    0.23 locks it (pyproject.toml asks for it: the repro that crashed 0.22 within a few rounds
    ran clean); building each decoder once, under a lock, keeps the process safe whatever
    msgspec it is given, and the decoder is built once per model either way.
    """
    decoder = _decoders.get(model)
    if decoder is None:
        with _first_use:
            decoder = _decoders.get(model)
            if decoder is None:
                decoder = _decoders[model] = msgspec.json.Decoder(model)
    return decoder


def schema_components(
    types_: tuple[Any, ...] | list[Any], *, ref_template: str
) -> tuple[tuple[dict[str, Any], ...], dict[str, Any]]:
    """`msgspec.json.schema_components`, each type's first use made safe first: msgspec's
    inspection racing another thread's first decode of the same Struct crashes too."""
    for model in types_:
        decoder_for(model)
    return msgspec.json.schema_components(types_, ref_template=ref_template)


def decode_body(raw: bytes, model: type[M]) -> M:
    """A request body (empty means {}) as `model`; NaN, Infinity, lone surrogates refused."""
    decoder = decoder_for(model)
    try:
        value: M = decoder.decode(raw if raw.strip() else b"{}")
    except msgspec.ValidationError as err:
        if "got `float`" not in str(err):
            raise _as_error(err, model, body=True) from None
        value = _with_integral_floats(raw, model, err)
    except msgspec.DecodeError as err:
        raise InvalidJson(_not_json(raw, err)) from None
    if _has_long_number(raw):
        check_int64(value)
    return value


def _with_integral_floats(raw: bytes, model: type[M], err: msgspec.ValidationError) -> M:
    """`11.0` where an integer is due: JSON Schema (and so the OpenAPI document) counts it as
    the integer 11, so it is read as 11; any other mismatch is refused as before."""
    try:
        return msgspec.convert(_integral_floats_as_ints(msgspec.json.decode(raw)), model)
    except (msgspec.ValidationError, RecursionError):
        raise _as_error(err, model, body=True) from None


def _integral_floats_as_ints(node: Any) -> Any:
    if isinstance(node, float) and node.is_integer():
        return int(node)
    if isinstance(node, dict):
        return {k: _integral_floats_as_ints(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_integral_floats_as_ints(v) for v in node]
    return node


def decode_object(raw: bytes) -> dict[str, Any]:
    """A request body that must be a JSON object of any shape (e.g. a scenario document)."""
    return decode_body(raw, dict[str, Any])


def convert(data: Any, model: type[M], *, prefix: str = "") -> M:
    """A Python mapping (settings, a stored document) as `model`; errors name `prefix.field`."""
    decoder_for(model)  # the model's first use, safely (see there)
    try:
        value: M = msgspec.convert(data, model)
    except msgspec.ValidationError as err:
        raise _as_error(err, model, prefix=prefix) from None
    check_int64(value, prefix)
    return value


def parse_query(args: Mapping[str, str], model: type[M]) -> M:
    """Query-string arguments (all strings) as `model`: "12" → 12, "true" → True.

    A name given twice (`?status=a&status=b`) is refused: every query field holds one value.
    """
    getlist = getattr(args, "getlist", None)
    if getlist is not None:
        for name in args:
            if len(getlist(name)) > 1:
                raise InvalidInput(name, "is given more than once; give it once")
    decoder_for(model)  # the model's first use, safely (see there)
    try:
        value: M = msgspec.convert(dict(args), model, strict=False)
    except msgspec.ValidationError as err:
        raise _as_error(err, model) from None
    # Lax conversion reads "null" as None ("not given") for a non-string field; a query
    # field is either left out or holds a value of its type.
    for f in msgspec.structs.fields(model):  # type: ignore[arg-type]
        if f.encode_name in args and getattr(value, f.name) is None:
            raise InvalidInput(f.encode_name, f"must not be {args[f.encode_name]!r}; leave it out")
    return value


def check_int64(value: Any, prefix: str = "") -> None:
    """Refuse integers outside int64 anywhere in `value`, naming where (no recursion limit)."""
    stack: list[tuple[Any, str]] = [(value, prefix)]
    while stack:
        node, path = stack.pop()
        if isinstance(node, int) and not isinstance(node, bool):
            if not _INT64_MIN <= node <= INT64_MAX:
                raise InvalidInput(path or "body", "integer outside int64")
        elif isinstance(node, dict):
            stack.extend((v, _join(path, str(k))) for k, v in node.items())
        elif isinstance(node, list | tuple):
            stack.extend((v, f"{path}[{i}]") for i, v in enumerate(node))
        elif isinstance(node, msgspec.Struct):  # (structs.fields() is slow: it reads annotations)
            names = zip(node.__struct_fields__, node.__struct_encode_fields__, strict=True)
            stack.extend((getattr(node, n), _join(path, e)) for n, e in names)


def _has_long_number(raw: bytes) -> bool:
    return _NINETEEN_DIGITS in raw.translate(_DIGITS_ONLY)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _not_json(raw: bytes, err: msgspec.DecodeError) -> str:
    hint = ""
    lowered = raw.lower()
    if b"nan" in lowered or b"infinity" in lowered:
        hint = " (NaN and Infinity are not JSON numbers)"
    elif b"\\ud" in lowered:
        hint = " (a \\ud800-\\udfff escape must be half of a valid surrogate pair)"
    return f"request body is not valid JSON: {err}{hint}"


def _as_error(
    err: msgspec.ValidationError, model: Any, *, body: bool = False, prefix: str = ""
) -> EmulatorError:
    """msgspec's message ("Expected `int` <= 9 - at `$.a.b`") as our error naming `a.b`."""
    found = _AT.match(str(err))
    what, path = (found["what"], found["path"] or "") if found else (str(err), "")
    path = path.lstrip(".").replace("[...]", "")  # "[...]": some value of a free-form object
    full = _join(prefix, path) if prefix else path
    if body and not path and what.startswith("Expected `object`"):
        return InvalidJson("request body must be a JSON object")
    unknown = _UNKNOWN.match(what)
    if unknown:
        name = unknown["name"]
        allowed = _field_names(_type_at(model, path))
        return UnknownField(_join(full, name), allowed)
    missing = _MISSING.match(what)
    if missing:
        return InvalidInput(_join(full, missing["name"]), "is required")
    field_name = full or prefix or "body"
    if "matching regex" in what and _CALLBACK_URL_START in what:  # the regex explains nothing
        return InvalidInput(field_name, CALLBACK_URL_RULE)
    if what.startswith("Invalid enum value"):
        choices = _choices(_type_at(model, path))
        if choices:
            return InvalidInput(field_name, f"must be one of {', '.join(choices)}")
    return InvalidInput(field_name, _words(what))


def _words(message: str) -> str:
    """'Expected `int | null`, got `str`' → 'must be an integer or null, got a string'."""

    def name(found: re.Match[str]) -> str:
        return " or ".join(_TYPE_WORDS.get(p.strip(), p.strip()) for p in found[1].split("|"))

    text = re.sub(r"`([^`]*)`", name, message)
    return re.sub(r"^Expected ", "must be ", text)


def _unwrap(tp: Any) -> list[Any]:
    """The concrete types behind Annotated / Optional / unions."""
    if typing.get_origin(tp) is typing.Annotated:
        return _unwrap(typing.get_args(tp)[0])
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return [t for arg in typing.get_args(tp) for t in _unwrap(arg)]
    return [tp]


def _type_at(model: Any, path: str) -> Any:
    """The type of the field at dotted `path` inside `model` (None when not a struct field)."""
    current: Any = model
    for part in [p for p in re.split(r"[.\[]", path) if p and not p.endswith("]")]:
        structs = [t for t in _unwrap(current) if _is_struct(t)]
        if not structs:
            return None
        fields = {f.encode_name: f.type for f in msgspec.structs.fields(structs[0])}
        current = fields.get(part)
    return current


def _is_struct(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, msgspec.Struct)


def _field_names(tp: Any) -> list[str]:
    for t in _unwrap(tp):
        if _is_struct(t):
            return [f.encode_name for f in msgspec.structs.fields(t)]
    return []


def _choices(tp: Any) -> list[str]:
    out: list[str] = []
    for t in _unwrap(tp):
        if typing.get_origin(t) is typing.Literal:
            out.extend(str(a) for a in typing.get_args(t))
        elif isinstance(t, type) and issubclass(t, str) and hasattr(t, "__members__"):
            out.extend(str(m.value) for m in t.__members__.values())
    return out
