"""Property-based tests (hypothesis) of scenario files and of payload building.

Scenario files: random bytes, truncated valid YAML, alias bombs, deep nesting and special files
(/dev/zero behind a symlink) load or are refused with one ScenarioInvalid of bounded size that
names the file; a folder with one bad file loads nothing. Payloads: any valid scenario and params
give callbacks in the wire format of SPEC section 2.
"""

from __future__ import annotations

import json
import os
import random
import re
from pathlib import Path
from typing import Any

import pytest
import reliability_log
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from spec_facts import VIDEO_INFO_TYPES

from emulator.core import payloads
from emulator.core.errors import ScenarioInvalid
from emulator.core.scenarios import (
    BUILTIN_DIR,
    PARAMS,
    SCHEMA,
    Catalogue,
    Scenario,
    load_dir,
    load_file,
)
from emulator.core.timeline import plan_task

SEED = 12
EXAMPLES = 150
PAYLOAD_EXAMPLES = 100  # plans of up to 1000 participants: fewer, larger cases
PROPERTIES = settings(
    max_examples=EXAMPLES,
    derandomize=True,  # the same cases every run: the report's counts do not move
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
CATALOGUE = Catalogue(load_dir(BUILTIN_DIR))
SUCCESS_YAML = (BUILTIN_DIR / "success.yaml").read_text("utf-8")
MAX_MESSAGE = 1000


def _load_or_refuse(path: Path) -> Scenario | None:
    try:
        return load_file(path)
    except ScenarioInvalid as err:
        assert str(path) in err.message, err.message
        assert len(err.message) <= MAX_MESSAGE, len(err.message)
        return None


@PROPERTIES
@given(data=st.binary(max_size=4096))
def test_random_bytes_as_a_scenario_file(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "random.yaml"
    path.write_bytes(data)
    assert _load_or_refuse(path) is None  # random bytes are never a valid scenario


@PROPERTIES
@given(cut=st.integers(min_value=0, max_value=len(SUCCESS_YAML.encode())))
def test_truncated_scenario_file(tmp_path: Path, cut: int) -> None:
    path = tmp_path / "success.yaml"
    path.write_bytes(SUCCESS_YAML.encode()[:cut])
    loaded = _load_or_refuse(path)
    if loaded is not None:  # a cut at a line end can still be a whole, valid document
        assert loaded.name == "success"


@PROPERTIES
@given(width=st.integers(2, 12), depth=st.integers(2, 12))
def test_yaml_alias_bomb_is_refused(tmp_path: Path, width: int, depth: int) -> None:
    lines = [f"l0: &l0 [{', '.join(['x'] * width)}]"]
    for level in range(1, depth + 1):
        lines.append(f"l{level}: &l{level} [{', '.join([f'*l{level - 1}'] * width)}]")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join([*lines, "name: bomb"]), "utf-8")
    assert _load_or_refuse(path) is None


def test_deep_nesting_and_special_files_are_refused(tmp_path: Path) -> None:
    deep = tmp_path / "deep.yaml"
    deep.write_text("name: deep\nclass: " + "[" * 100_000, "utf-8")
    assert _load_or_refuse(deep) is None
    if os.path.exists("/dev/zero"):
        zero = tmp_path / "zero.yaml"
        zero.symlink_to("/dev/zero")
        with pytest.raises(ScenarioInvalid, match="not a regular file"):
            load_file(zero)
    big = tmp_path / "big.yaml"
    big.write_bytes(b"name: big\n#" + b"x" * (2 << 20))
    with pytest.raises(ScenarioInvalid, match="larger than"):
        load_file(big)


def test_a_folder_with_one_bad_file_loads_nothing(tmp_path: Path) -> None:
    (tmp_path / "success.yaml").write_text(SUCCESS_YAML, "utf-8")
    (tmp_path / "zz-broken.yaml").write_bytes(SUCCESS_YAML.encode()[:40] + b"\x00\xff")
    with pytest.raises(ScenarioInvalid, match=r"zz-broken\.yaml"):
        load_dir(tmp_path)
    reliability_log.record(
        "properties",
        "scenario files",
        cases=f"{EXAMPLES} random-bytes, {EXAMPLES} truncations, {EXAMPLES} alias bombs;"
        " deep nesting; /dev/zero symlink; 2 MB file; one bad file in a folder",
        observed="each loads or raises one ScenarioInvalid naming the file,"
        f" <= {MAX_MESSAGE} chars; nothing half-loaded",
        seed="derandomized",
    )


# -- payload building ---------------------------------------------------------------------------


def _from_schema(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values valid for the simple JSON Schemas of scenario parameters."""
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "oneOf" in schema:
        return st.one_of([_from_schema(s) for s in schema["oneOf"]])
    kind = schema.get("type")
    if isinstance(kind, list):
        return st.one_of([_from_schema({**schema, "type": k}) for k in kind])
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        return st.integers(schema.get("minimum"), schema.get("maximum"))
    if kind == "number":
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        return st.floats(
            low, schema.get("maximum"), exclude_min="exclusiveMinimum" in schema, allow_nan=False
        )
    if kind == "array":
        item = _from_schema(schema["items"])
        return st.lists(item, min_size=schema["minItems"], max_size=schema["maxItems"])
    if kind == "string" and "pattern" in schema:
        return st.from_regex(schema["pattern"], fullmatch=True).filter(
            lambda s: len(s) <= schema.get("maxLength", 10**6)
        )
    assert kind == "string", schema
    return st.text(max_size=min(schema.get("maxLength", 50), 50))


PARAM_STRATEGIES = {
    name: _from_schema(SCHEMA["properties"][section]["properties"][key])
    for name, (section, key) in PARAMS.items()
}
TASK_ID = re.compile(r"^[0-9a-v]{20}$")


def _check_wire_format(event: Any, scenario: Scenario, task_id: str, room: int) -> None:
    data = event.event_data
    as_string = scenario.section("delivery")["progress_as_string"]
    if event.event_type == payloads.PROGRESS_CHANGED:
        assert list(data) == ["TaskId", "RoomId", "Progress"], data
        progress = int(data["Progress"]) if as_string else data["Progress"]
        assert isinstance(progress, int) and 0 <= progress <= 99, data
    else:
        assert event.event_type == payloads.FINISHED
        if list(data) == ["Error"]:  # the seed's bare failure
            assert scenario.section("outcome")["bare"], data
        else:
            for key, kind in {"GroupId": str, "RecordStartTime": int, "TotalTime": int}.items():
                assert isinstance(data[key], kind), (key, data)
            assert data["Progress"] == (100 if not as_string else "100") or as_string
            for video in data["VideoInfos"]:
                assert set(video) == set(VIDEO_INFO_TYPES), video
                for key, kind in VIDEO_INFO_TYPES.items():
                    assert isinstance(video[key], kind), (key, video)
                assert video["VideoType"] in (0, 1, 2, 3, 4)
                assert re.fullmatch(r"\d{19}", video["VideoId"]), video
                assert video["VideoPlayTime"] + video["VideoDuration"] <= data["TotalTime"] + 1
        if "Error" in data:
            assert set(data["Error"]) == {"Code", "Message"}
            assert all(isinstance(v, str) for v in data["Error"].values())
    if "TaskId" in data:
        assert data["TaskId"] == task_id and data["RoomId"] == room
    body = json.loads(
        payloads.envelope_bytes(
            event.event_type,
            payloads.encode_data(data),
            sdk_app_id=1400000001,
            timestamp=1_700_000_000,
            callback_key="Xz4ZgayTr7rMgWQrH",
            ttl_s=300,
            sign_mode=event.sign_mode,
        )
    )
    signature = {"ExpireTime", "Sign"}
    assert set(body) - signature == {"Timestamp", "SdkAppId", "EventType", "EventData"}, body
    if signature <= set(body):  # a scenario may send callbacks unsigned (sign: none)
        assert isinstance(body["ExpireTime"], int), body
        assert re.fullmatch(r"[0-9a-f]{32}", body["Sign"]), body
    else:
        assert not signature & set(body), body
    assert body["EventData"] == data


@settings(max_examples=PAYLOAD_EXAMPLES, derandomize=True, deadline=None, database=None)
@given(
    name=st.sampled_from([s.name for s in CATALOGUE.all()]),
    params=st.fixed_dictionaries({}, optional=PARAM_STRATEGIES),
    seed=st.integers(0, 2**63 - 1),
    room=st.integers(1, 4_294_967_295),
)
def test_any_valid_scenario_and_params_give_wire_format_callbacks(
    name: str, params: dict[str, Any], seed: int, room: int
) -> None:
    try:
        scenario = CATALOGUE.get(name).with_params(params)
    except ScenarioInvalid:
        assume(False)  # e.g. a range with min > max: refused, with a message, as it should
        raise
    draw = random.Random(seed)
    task_id = "".join(draw.choice("0123456789abcdefghijklmnopqrstuv") for _ in range(20))
    assert TASK_ID.match(task_id)
    plan = plan_task(
        scenario,
        rng=random.Random(seed),
        task_id=task_id,
        room_id=room,
        group_id=str(room),
        created_at=1000.0,
        wall_created_at=1_700_000_000.0,
    )
    for event in plan.events:
        _check_wire_format(event, scenario, task_id, room)


def test_payload_property_is_recorded() -> None:
    reliability_log.record(
        "properties",
        "payload building",
        cases=f"{PAYLOAD_EXAMPLES} (scenario, params, seed, room) draws, every built-in scenario",
        observed="every planned callback matches SPEC section 2 (keys, types, signature)",
        seed="derandomized",
    )
