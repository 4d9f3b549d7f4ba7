"""Scenarios as data: the JSON Schema, YAML loading, per-task params, and the catalogue."""

from __future__ import annotations

import copy
import functools
import importlib.resources
import math
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Any

import msgspec
import yaml

from emulator.core import outcomes
from emulator.core.errors import InvalidState, ScenarioInvalid, ScenarioNotFound

BUILTIN_PACKAGE = "emulator.builtin_scenarios"


def builtin_dir() -> Path:
    """Where the built-in scenario files are: inside the installed package, wheel or editable.

    pyproject.toml maps the top-level `scenarios/` folder to the data package
    `emulator.builtin_scenarios`. A source tree used without installing (only PYTHONPATH) has
    no such package; the folder beside `emulator/` is then the catalogue.
    """
    try:
        found = importlib.resources.files(BUILTIN_PACKAGE)
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[2] / "scenarios"
    # An installed package is a directory on disk (pip never installs zipped), so a Path.
    return Path(str(found)).resolve()


BUILTIN_DIR = builtin_dir()

# Every number is bounded, so no document can plan unbounded work (issue 9: `participants:
# 200000` held the creation lock for a minute; `duration_s: 1e308` answered 500).
MAX_SECONDS = 86400  # a class, a queue delay: at most a day of emulated time
MAX_PARTICIPANTS = 1000
MAX_FILE_BYTES = 1 << 20  # a scenario file is a few hundred bytes
MAX_VALUES = 10_000  # values in one document, YAML aliases expanded


def _bounded_range(kind: str, minimum: int, maximum: int) -> dict[str, Any]:
    one = {"type": kind, "minimum": minimum, "maximum": maximum}
    return {"oneOf": [one, {"type": "array", "items": one, "minItems": 2, "maxItems": 2}]}


_range = _bounded_range("number", 0, MAX_SECONDS)
_int_range = _bounded_range("integer", 1, MAX_PARTICIPANTS)

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://tiw-emulator.local/scenario.schema.json",
    "title": "tiw-emulator scenario",
    "type": "object",
    "additionalProperties": False,
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,63}$"},
        "description": {"type": "string", "maxLength": 2000},
        "class": {
            "description": "The class being recorded.",
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "duration_s": {**_range, "description": "class length in seconds, or [min, max]"},
                "participants": {**_int_range, "description": "users whose streams are recorded"},
                "camera": {"type": "boolean", "description": "a camera video (type 0) per user"},
                "screen_share": {
                    "type": "boolean",
                    "description": "the teacher shares the screen for a while (type 1)",
                },
                "mixed_stream": {
                    "type": "boolean",
                    "description": "one mixed-stream video (type 3, UserId tic_mixstream_...)",
                },
                "mix_model_id": {
                    "enum": [1, 2],
                    "description": "MixStream.ModelId: the layout template in the mixed UserId",
                },
                "audio_only": {
                    "type": "boolean",
                    "description": "every user joined by audio only (type 4, mp3), no camera",
                },
                "audio_participants": {
                    "type": "integer",
                    "minimum": 0,
                    "maximum": MAX_PARTICIPANTS,
                    "description": "with camera: this many students joined by audio only (type 4)",
                },
                "whiteboard": {
                    "type": "boolean",
                    "description": "the whiteboard video (type 2, UserId empty)",
                },
            },
        },
        "processing": {
            "description": "How the recording is processed, in emulated seconds.",
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "queue_delay_s": {**_range, "description": "wait before processing starts"},
                "duration_factor": {
                    "type": "number",
                    "exclusiveMinimum": 0,
                    "maximum": 100,
                    "description": "processing time as a multiple of the class length",
                },
                "progress_steps": {
                    "type": "integer",
                    "minimum": 0,
                    "maximum": 99,
                    "description": "how many OfflineRecordProgressChanged events a full run sends",
                },
                "jitter": {
                    "type": "number",
                    "minimum": 0,
                    "maximum": 1,
                    "description": "randomness of the progress values and their spacing",
                },
                "stall_at": {
                    "type": ["integer", "null"],
                    "minimum": 1,
                    "maximum": 99,
                    "description": "progress stops at this value: no more events, no Finished",
                },
            },
        },
        "outcome": {
            "description": "How the task ends.",
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "result": {
                    "enum": ["success", "failure"],
                    "description": "failure when error_code is given, else success",
                },
                "error_code": {
                    "description": "Error.Code (see docs/errors.md) or a legacy task error number",
                    "oneOf": [
                        {"type": "string", "pattern": outcomes.CODE_PATTERN, "maxLength": 128},
                        {"enum": [*outcomes.LEGACY_KEYS, *(int(k) for k in outcomes.LEGACY_KEYS)]},
                    ],
                },
                "error_message": {
                    "type": "string",
                    "maxLength": 1000,
                    "description": "Error.Message; default: the code's message in docs/errors.md",
                },
                "fail_at": {
                    "type": "integer",
                    "minimum": 0,
                    "maximum": 99,
                    "description": "last progress value reported before a failure",
                },
                "bare": {
                    "type": "boolean",
                    "description": "failure EventData holds only Error, as in the seed example",
                },
            },
        },
        "delivery": {
            "description": "Delivery quirks.",
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "sign": {
                    "enum": ["valid", "invalid", "expired", "none"],
                    "description": "a good Sign, a wrong Sign, a past ExpireTime, or unsigned",
                },
                "progress_as_string": {
                    "type": "boolean",
                    "description": 'progress events carry Progress as a string, e.g. "46"',
                },
                "duplicate": {
                    "type": "number",
                    "minimum": 0,
                    "maximum": 1,
                    "description": "chance that an event is sent twice (at least one when > 0)",
                },
                "drop_progress": {
                    "type": "number",
                    "minimum": 0,
                    "maximum": 1,
                    "description": "chance that a progress event is never sent (one is kept)",
                },
                "out_of_order": {
                    "enum": ["none", "swap", "after_finished"],
                    "description": "swap two progress events, or send the last one after Finished",
                },
            },
        },
    },
}

DEFAULTS: dict[str, dict[str, Any]] = {
    "class": {
        "duration_s": [1200, 3600],
        "participants": [2, 4],
        "camera": True,
        "screen_share": False,
        "mixed_stream": False,
        "mix_model_id": 1,
        "audio_only": False,
        "audio_participants": 0,
        "whiteboard": True,
    },
    "processing": {
        "queue_delay_s": [5, 30],
        "duration_factor": 1.1,
        "progress_steps": 4,
        "jitter": 0.2,
        "stall_at": None,
    },
    "outcome": {"result": "success", "fail_at": 60, "bare": False},
    "delivery": {
        "sign": "valid",
        "progress_as_string": False,
        "duplicate": 0.0,
        "drop_progress": 0.0,
        "out_of_order": "none",
    },
}

# Flat per-task overrides accepted in POST /api/tasks `params`, and where each one lands.
PARAMS: dict[str, tuple[str, str]] = {
    **{k: ("class", k) for k in DEFAULTS["class"]},
    **{k: ("processing", k) for k in DEFAULTS["processing"]},
    **{k: ("outcome", k) for k in ("result", "error_code", "error_message", "fail_at", "bare")},
    **{k: ("delivery", k) for k in DEFAULTS["delivery"]},
}


# libyaml's safe loader where PyYAML has it (its wheels do): loading the built-in catalogue was
# about half of start-up with the pure-Python one.
SAFE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# The resolved-overrides cache's key: the params' JSON with sorted keys (msgspec: 0.2 µs against
# json.dumps' 4.6 for the four-key params of a task).
_params_key = msgspec.json.Encoder(order="sorted", enc_hook=str).encode
RESOLVED_CACHE = 256  # distinct params kept per scenario
_RESOLVED_LOCK = threading.Lock()


@dataclass(frozen=True)
class Scenario:
    """A validated scenario document, with defaults filled in."""

    name: str
    description: str
    doc: dict[str, Any]  # the full document, every section complete
    source: str  # "builtin", a file path, or "api"
    # Resolved overrides, by their JSON: re-validating the same params for every task of a
    # run cost about 0.3 ms of each creation (deep copy and schema check).
    _resolved: dict[bytes, Scenario] = dataclass_field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def section(self, name: str) -> dict[str, Any]:
        return dict(self.doc[name])

    def with_params(self, params: Mapping[str, Any] | None) -> Scenario:
        """This scenario with flat per-task overrides applied; errors name `params.<name>`."""
        if not params:
            return self
        key = _params_key(params)
        cached = self._resolved.get(key)
        if cached is None:
            cached = self._apply(params)
            with _RESOLVED_LOCK:
                if len(self._resolved) >= RESOLVED_CACHE:
                    self._resolved.pop(next(iter(self._resolved)))
                self._resolved[key] = cached
        return cached

    def _apply(self, params: Mapping[str, Any]) -> Scenario:
        doc = copy.deepcopy(self.doc)
        for key, value in params.items():
            if key not in PARAMS:
                raise ScenarioInvalid(
                    f"params.{key}: unknown parameter; allowed: {', '.join(sorted(PARAMS))}",
                    details={"field": f"params.{key}", "allowed": sorted(PARAMS)},
                )
            section, field = PARAMS[key]
            _check_param(key, value, SCHEMA["properties"][section]["properties"][field])
            doc[section][field] = value
        if "error_code" in params or "error_message" in params:
            # A task that names an error fails, with that code's own message unless it gives one.
            if "error_message" not in params:
                doc["outcome"].pop("error_message", None)
            if "result" not in params:
                doc["outcome"]["result"] = "failure"
        try:
            return parse_scenario(doc, source=self.source, where="params")
        except ScenarioInvalid as err:
            raise _as_param_error(err, params) from None

    def public(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "source": self.source,
            **{k: v for k, v in self.doc.items() if k not in ("name", "description")},
        }


@functools.cache
def _validator() -> Any:
    import jsonschema  # imported lazily: it is the slowest import on the start-up path

    return jsonschema.Draft202012Validator(SCHEMA)


def _complete(doc: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"name": doc["name"], "description": doc.get("description", "")}
    for section, defaults in DEFAULTS.items():
        out[section] = {**defaults, **(doc.get(section) or {})}
    given = doc.get("outcome") or {}
    outcome = out["outcome"]
    if "result" not in given and ("error_code" in given or "error_message" in given):
        outcome["result"] = "failure"
    if outcome["result"] == "failure":
        code, message = outcomes.resolve(
            outcome.get("error_code", outcomes.DEFAULT_FAILURE_CODE), outcome.get("error_message")
        )
        outcome["error_code"], outcome["error_message"] = code, message
    return out


def _check_param(key: str, value: Any, schema: Mapping[str, Any]) -> None:
    import jsonschema

    error = next(jsonschema.Draft202012Validator(schema).iter_errors(value), None)
    if error is not None:
        reason = _explain(error, field=key)
        raise ScenarioInvalid(
            f"params.{key}: {reason}", details={"field": f"params.{key}", "reason": reason}
        )


def _as_param_error(err: ScenarioInvalid, params: Mapping[str, Any]) -> ScenarioInvalid:
    """Re-address a cross-field error on the merged document to the param that caused it."""
    field = str(err.details.get("field", ""))
    for key in params:
        if ".".join(PARAMS.get(key, ())) == field:
            reason = err.message.split(f"{field}: ", 1)[-1]
            return ScenarioInvalid(
                f"params.{key}: {reason}", details={"field": f"params.{key}", "reason": reason}
            )
    return err


def parse_scenario(
    doc: Any, *, source: str, where: str | None = None, schema_checked: bool = True
) -> Scenario:
    """Validate a scenario document; errors name the file (or 'params'), the field and why.

    `schema_checked=False` skips the JSON Schema pass (the bounds and completeness checks still
    run): for the built-in files, which the test suite validates against the schema, because
    importing jsonschema was a third of start-up.
    """
    where = where or source
    if not isinstance(doc, Mapping):
        raise ScenarioInvalid(f"{where}: a scenario must be a mapping, got {type(doc).__name__}")
    errors = (
        sorted(_validator().iter_errors(doc), key=lambda e: list(e.absolute_path))
        if schema_checked
        else []
    )
    if errors:
        first = errors[0]
        path = ".".join(str(p) for p in first.absolute_path) or "(top level)"
        raise ScenarioInvalid(
            f"{where}: {path}: {_explain(first)}",
            details={
                "source": where,
                "field": path,
                "errors": [
                    {
                        "field": ".".join(str(p) for p in e.absolute_path) or "(top level)",
                        "message": _explain(e),
                    }
                    for e in errors[:20]
                ],
            },
        )
    _check_finite(doc, where)
    complete = _complete(doc)
    _check_ranges(complete, where)
    return Scenario(complete["name"], complete["description"], complete, source)


def _explain(error: Any, field: str | None = None) -> str:
    field = field or (str(error.absolute_path[-1]) if error.absolute_path else "")
    if error.validator == "additionalProperties":
        return f"{error.message} (allowed: {', '.join(sorted(error.schema.get('properties', {})))})"
    if error.validator == "oneOf" and field == "error_code":
        return (
            f"{error.instance!r} is not an error code such as FailedOperation.Transcode, nor a"
            f" legacy task error ({', '.join(outcomes.LEGACY_KEYS)})"
        )
    if error.validator == "oneOf" and field == "participants":
        return (
            f"{error.instance!r} must be an integer >= 1 and <= {MAX_PARTICIPANTS}"
            " or a [min, max] pair of them"
        )
    if error.validator == "oneOf":
        return (
            f"{error.instance!r} must be a number >= 0 and <= {MAX_SECONDS}"
            " or a [min, max] pair of them"
        )
    return str(error.message)


def _check_finite(doc: Any, where: str, path: str = "") -> None:
    """YAML can say .nan and .inf, which every bound above lets through (NaN compares false)."""
    if isinstance(doc, float) and not math.isfinite(doc):
        raise ScenarioInvalid(
            f"{where}: {path}: {doc!r} is not a finite number",
            details={"source": where, "field": path},
        )
    if isinstance(doc, Mapping | list):
        for key, value in doc.items() if isinstance(doc, Mapping) else enumerate(doc):
            _check_finite(value, where, f"{path}.{key}" if path else str(key))


def _check_ranges(doc: Mapping[str, Any], where: str) -> None:
    for section, field in (
        ("class", "duration_s"),
        ("class", "participants"),
        ("processing", "queue_delay_s"),
    ):
        value = doc[section][field]
        if isinstance(value, list) and value[0] > value[1]:
            raise ScenarioInvalid(
                f"{where}: {section}.{field}: range {value} has min > max",
                details={"source": where, "field": f"{section}.{field}"},
            )
    if doc["class"]["duration_s"] == 0 or doc["class"]["duration_s"] == [0, 0]:
        raise ScenarioInvalid(
            f"{where}: class.duration_s: must be > 0",
            details={"source": where, "field": "class.duration_s"},
        )
    cls = doc["class"]
    if not (
        cls["camera"]
        or cls["screen_share"]
        or cls["mixed_stream"]
        or cls["audio_only"]
        or cls["whiteboard"]
    ):
        raise ScenarioInvalid(
            f"{where}: class: at least one of camera, screen_share, mixed_stream, audio_only,"
            " whiteboard must be true",
            details={"source": where, "field": "class"},
        )


def load_file(path: Path) -> Scenario:
    try:
        doc = yaml.load(_read_bounded(path), Loader=SAFE_LOADER)
    except yaml.YAMLError as exc:
        raise ScenarioInvalid(
            f"{path}: not valid YAML: {_first_lines(str(exc))}", details={"source": str(path)}
        ) from None
    except RecursionError:
        raise ScenarioInvalid(
            f"{path}: nested too deeply to be a scenario", details={"source": str(path)}
        ) from None
    except OSError as exc:
        raise ScenarioInvalid(
            f"{path}: cannot read: {exc.strerror}", details={"source": str(path)}
        ) from None
    _check_expanded_size(doc, str(path))
    builtin = path.resolve().parent == BUILTIN_DIR
    scenario = parse_scenario(
        doc,
        source="builtin" if builtin else str(path),
        where=str(path),
        schema_checked=not builtin,
    )
    if scenario.name != path.stem:
        raise ScenarioInvalid(
            f"{path}: name: {scenario.name!r} must match the file name {path.stem!r}",
            details={"source": str(path), "field": "name"},
        )
    return scenario


def _read_bounded(path: Path) -> str:
    """The file's text, refusing what no scenario is: not a regular file (a symlink to
    /dev/zero, a FIFO), over MAX_FILE_BYTES, or not UTF-8."""
    where = str(path)
    if path.exists() and not path.is_file():
        raise ScenarioInvalid(f"{path}: not a regular file", details={"source": where})
    with path.open("rb") as file:
        data = file.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise ScenarioInvalid(
            f"{path}: larger than {MAX_FILE_BYTES} bytes (a scenario is a few hundred)",
            details={"source": where},
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ScenarioInvalid(
            f"{path}: not UTF-8 text (byte {exc.start})", details={"source": where}
        ) from None


def _check_expanded_size(doc: Any, where: str) -> None:
    """Refuse a YAML alias bomb: count values as if every alias were expanded, up to a cap."""
    stack = [doc]
    seen = 0
    while stack:
        node = stack.pop()
        seen += 1
        if seen > MAX_VALUES:
            raise ScenarioInvalid(
                f"{where}: over {MAX_VALUES} values once YAML aliases are expanded",
                details={"source": where},
            )
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def _first_lines(text: str, limit: int = 400) -> str:
    """A YAML error, bounded: its text up to `limit` characters."""
    return text if len(text) <= limit else text[:limit] + "..."


def load_dir(directory: Path) -> list[Scenario]:
    if not directory.is_dir():
        raise ScenarioInvalid(f"{directory}: not a directory", details={"source": str(directory)})
    return [load_file(p) for p in sorted(directory.glob("*.y*ml"))]


class Catalogue:
    """Built-in, directory and API-added scenarios; API ones can be deleted, built-ins cannot."""

    def __init__(self, builtin: Iterable[Scenario], user: Iterable[Scenario] = ()) -> None:
        self._lock = threading.Lock()
        self._builtin = {s.name: s for s in builtin}
        self._user: dict[str, Scenario] = {}
        for s in user:
            self._user[s.name] = s

    def get(self, name: str) -> Scenario:
        with self._lock:
            found = self._user.get(name) or self._builtin.get(name)
            if found is None:
                raise ScenarioNotFound(name, [*self._builtin, *self._user])
            return found

    def names(self) -> list[str]:
        with self._lock:
            return sorted({*self._builtin, *self._user})

    def all(self) -> list[Scenario]:
        with self._lock:
            merged = {**self._builtin, **self._user}
        return [merged[n] for n in sorted(merged)]

    def add(self, scenario: Scenario) -> None:
        with self._lock:
            self._user[scenario.name] = scenario

    def remove(self, name: str) -> Scenario:
        with self._lock:
            if name in self._user:
                return self._user.pop(name)
            known = [*self._builtin, *self._user]
        if name in known:
            source = self._builtin[name].source
            what = "a built-in scenario" if source == "builtin" else f"loaded from {source}"
            # 409: the request is well formed, the scenario's state forbids it.
            raise InvalidState(
                f"{name!r} is {what} and cannot be deleted", details={"scenario": name}
            )
        raise ScenarioNotFound(name, known)

    def clear_user(self) -> None:
        with self._lock:
            self._user.clear()
