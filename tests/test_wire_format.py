"""Wire format (SPEC section 2): signatures, the seed's examples, realism and determinism."""

from __future__ import annotations

import json
import random
import re
from typing import Any

from spec_facts import FAILED_FINISHED_KEYS, VIDEO_INFO_TYPES

from emulator.core import payloads
from emulator.core.config import Settings
from emulator.core.scenarios import BUILTIN_DIR, Catalogue, load_dir
from emulator.core.service import Emulator
from emulator.core.signing import SignMode, sign, signature_fields, verify
from emulator.core.timeline import plan_task

SEED_PROGRESS = {
    "Timestamp": 1575545412,
    "EventType": "OfflineRecordProgressChanged",
    "EventData": {"TaskId": "bj0mt2l23osdj300hl30", "RoomId": 1253, "Progress": 46},
}
SEED_SUCCESS_DATA = {
    "TaskId": "00e1jv8ve0jcqk7da9lb",
    "RoomId": 900822,
    "GroupId": "900822",
    "Progress": 100,
    "RecordStartTime": 1565690613,
    "TotalTime": 156750,
    "VideoInfos": [
        {
            "UserId": "",
            "VideoDuration": 156750,
            "VideoFormat": "mp4",
            "VideoId": "5285890792776509100",
            "VideoPlayTime": 0,
            "VideoSize": 318384,
            "VideoType": 2,
            "VideoUrl": "http://1257240443.vod2.myqcloud.com/cc35b442vodcq1257240443/video.mp4",
        }
    ],
}
SEED_FAILURE_DATA = {
    "Error": {"Code": "FailedOperation.Transcode", "Message": "录制对时信息获取失败"}
}


def test_signature_golden_vector() -> None:
    assert sign("Xz4ZgayTr7rMgWQrH", 1588040109) == "a2dabb362a9b811c0e26953a6276a41c"


def test_verify_explains_failures() -> None:
    good = sign("k", 2000)
    assert verify("k", 2000, good, now=1000) == (True, "ok")
    ok, reason = verify("other", 2000, good, now=1000)
    assert not ok and "does not match" in reason
    ok, reason = verify("k", 2000, good, now=2001)
    assert not ok and "in the past" in reason


def test_sign_modes() -> None:
    valid = signature_fields("k", timestamp=1000, ttl_s=300, mode=SignMode.VALID)
    assert valid == {"ExpireTime": 1300, "Sign": sign("k", 1300)}
    invalid = signature_fields("k", timestamp=1000, ttl_s=300, mode=SignMode.INVALID)
    assert invalid["ExpireTime"] == 1300 and invalid["Sign"] != sign("k", 1300)
    assert re.fullmatch(r"[0-9a-f]{32}", str(invalid["Sign"]))
    expired = signature_fields("k", timestamp=1000, ttl_s=300, mode=SignMode.EXPIRED)
    assert int(expired["ExpireTime"]) < 1000 and expired["Sign"] == sign("k", expired["ExpireTime"])
    assert signature_fields("k", timestamp=1000, ttl_s=300, mode=SignMode.NONE) == {}
    assert signature_fields(None, timestamp=1000, ttl_s=300, mode=SignMode.VALID) == {}


def test_seed_progress_example_field_by_field() -> None:
    data = payloads.progress_data("bj0mt2l23osdj300hl30", 1253, 46)
    assert data == SEED_PROGRESS["EventData"]
    assert list(data) == list(SEED_PROGRESS["EventData"])
    env = payloads.envelope(
        payloads.PROGRESS_CHANGED,
        data,
        sdk_app_id=1400000001,
        timestamp=1575545412,
        callback_key=None,
        ttl_s=300,
    )
    assert {k: v for k, v in env.items() if k != "SdkAppId"} == SEED_PROGRESS
    assert list(env) == ["Timestamp", "SdkAppId", "EventType", "EventData"]


def test_seed_success_example_field_by_field() -> None:
    video = SEED_SUCCESS_DATA["VideoInfos"][0]
    data = payloads.finished_data(
        task_id="00e1jv8ve0jcqk7da9lb",
        room_id=900822,
        group_id="900822",
        record_start_time=1565690613,
        total_time_ms=156750,
        video_infos=[video],
    )
    assert data == SEED_SUCCESS_DATA
    assert list(data) == list(SEED_SUCCESS_DATA)  # the seed's key order


def test_seed_failure_example_is_bare_error() -> None:
    data = payloads.finished_data(
        task_id="t",
        room_id=1,
        group_id="1",
        record_start_time=0,
        total_time_ms=0,
        video_infos=[],
        error=SEED_FAILURE_DATA["Error"],
        bare_error=True,
    )
    assert data == SEED_FAILURE_DATA


def test_failure_with_documented_fields_keeps_them() -> None:
    data = payloads.finished_data(
        task_id="t",
        room_id=1,
        group_id="1",
        record_start_time=5,
        total_time_ms=0,
        video_infos=[],
        error=SEED_FAILURE_DATA["Error"],
    )
    assert list(data) == list(FAILED_FINISHED_KEYS)


def test_envelope_bytes_are_utf8_json_identical_to_encode() -> None:
    data = {"Error": {"Code": "FailedOperation.Transcode", "Message": "录制对时信息获取失败"}}
    for mode in SignMode:
        env = payloads.envelope(
            payloads.FINISHED,
            data,
            sdk_app_id=1,
            timestamp=100,
            callback_key="key",
            ttl_s=300,
            sign_mode=mode,
        )
        fast = payloads.envelope_bytes(
            payloads.FINISHED,
            payloads.encode_data(data),
            sdk_app_id=1,
            timestamp=100,
            callback_key="key",
            ttl_s=300,
            sign_mode=mode,
        )
        assert fast == payloads.encode(env)
        assert "录制对时信息获取失败".encode() in fast
        assert json.loads(fast) == env


def test_envelope_bytes_match_json_dumps_for_any_event_type_and_sdk_app_id() -> None:
    """The envelope's head (msgspec) is what json.dumps writes, for a hand-written event type
    with every code point but the surrogates and SdkAppIds to the ends of int64."""
    every_char = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)
    for event_type, sdk_app_id in ((every_char, 2**63 - 1), ('"\\/\x00\x7f', -(2**63))):
        env = payloads.envelope(
            event_type, {}, sdk_app_id=sdk_app_id, timestamp=0, callback_key="k", ttl_s=300
        )
        fast = payloads.envelope_bytes(
            event_type, "{}", sdk_app_id=sdk_app_id, timestamp=0, callback_key="k", ttl_s=300
        )
        assert fast == payloads.encode(env)


def test_planned_event_data_encodes_byte_for_byte_as_json_dumps() -> None:
    """encode_planned_data (msgspec) writes what encode_data (json.dumps) writes for the planner's
    types: every code point but the surrogates, ints to int64, bools, None, nesting, key order."""
    every_char = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)
    data: dict[str, Any] = {
        "GroupId": every_char,
        "n": [0, -1, 2**63 - 1, -(2**63), True, False, None],
        "Error": {"Code": "FailedOperation.Transcode", "Message": "录制对时信息获取失败"},
    }
    assert payloads.encode_planned_data(data) == payloads.encode_data(data)
    catalogue = Catalogue(load_dir(BUILTIN_DIR))
    for name in [s.name for s in catalogue.all()]:
        for seed in range(5):
            for event in _plan(name, seed=seed).events:
                encoded = payloads.encode_planned_data(event.event_data)
                assert encoded == payloads.encode_data(event.event_data), (name, seed)


def _plan(scenario: str, *, seed: int, room: int = 4242, task_id: str = "t" * 20) -> Any:
    catalogue = Catalogue(load_dir(BUILTIN_DIR))
    return plan_task(
        catalogue.get(scenario),
        rng=random.Random(seed),
        task_id=task_id,
        room_id=room,
        group_id=str(room),
        created_at=1000.0,
        wall_created_at=1_700_000_000.0,
    )


def test_generated_finished_event_is_realistic_and_consistent() -> None:
    for seed in range(20):
        plan = _plan("success", seed=seed)
        finished = plan.events[-1]
        assert finished.event_type == payloads.FINISHED
        data = finished.event_data
        assert list(data) == list(SEED_SUCCESS_DATA)
        assert data["Progress"] == 100 and isinstance(data["TotalTime"], int)
        assert data["RecordStartTime"] + data["TotalTime"] / 1000 < 1_700_000_000
        ids = set()
        for video in data["VideoInfos"]:
            assert {k: type(v) for k, v in video.items()} == VIDEO_INFO_TYPES
            assert video["VideoPlayTime"] + video["VideoDuration"] <= data["TotalTime"]
            assert re.fullmatch(r"[1-9]\d{18}", video["VideoId"])
            assert re.fullmatch(
                r"http://(\d{10})\.vod2\.myqcloud\.com/[0-9a-f]{8}vod[a-z]+\1/[\w.-]+\.mp[34]",
                video["VideoUrl"],
            )
            kbps = video["VideoSize"] * 8 / video["VideoDuration"]
            assert 10 <= kbps <= 2000, video
            ids.add(video["VideoId"])
        assert len(ids) == len(data["VideoInfos"])
        assert {v["VideoType"] for v in data["VideoInfos"]} >= {0, 2}
        progress = [e.event_data["Progress"] for e in plan.events[:-1]]
        assert progress == sorted(progress) and all(0 < p < 100 for p in progress)
        assert [e.due_at for e in plan.events] == sorted(e.due_at for e in plan.events)


def test_same_seed_gives_byte_identical_event_data() -> None:
    a = _plan("success", seed=99)
    b = _plan("success", seed=99)
    assert [payloads.encode_data(e.event_data) for e in a.events] == [
        payloads.encode_data(e.event_data) for e in b.events
    ]
    c = _plan("success", seed=100)
    assert payloads.encode_data(c.events[-1].event_data) != payloads.encode_data(
        a.events[-1].event_data
    )


def _event_data(task: dict[str, Any], *, keep_task_id: bool) -> list[Any]:
    out = []
    for e in task["events"]:
        d = dict(e["payload"]["EventData"])
        d.pop("RecordStartTime", None)  # follows the wall clock
        if not keep_task_id:
            d.pop("TaskId", None)
        out.append((e["event_type"], d))
    return out


def test_a_given_run_seed_repeats_everything_after_reset() -> None:
    settings = {"db": ":memory:", "clock": "manual", "seed": 1234}
    emu = Emulator(Settings.load(settings, env={})).start()
    try:
        first = emu.create_task(scenario="success", room_id=77)
        emu.reset()
        second = emu.create_task(scenario="success", room_id=77)
        assert first["task_id"] == second["task_id"]
        assert first["seed"] == second["seed"]
        assert _event_data(first, keep_task_id=True) == _event_data(second, keep_task_id=True)
    finally:
        emu.close()


def test_same_task_seed_and_room_give_the_same_event_data_but_a_new_task_id() -> None:
    emu = Emulator(Settings.load({"db": ":memory:", "clock": "manual"}, env={})).start()
    try:
        first = emu.create_task(scenario="success", room_id=77, seed=5)
        emu.reset()
        second = emu.create_task(scenario="success", room_id=77, seed=5)
        assert first["task_id"] != second["task_id"]  # backends index TaskIds
        assert _event_data(first, keep_task_id=False) == _event_data(second, keep_task_id=False)
    finally:
        emu.close()


def test_task_ids_are_unique_and_well_formed() -> None:
    emu = Emulator(Settings.load({"db": ":memory:", "clock": "manual"}, env={})).start()
    try:
        ids = {emu.create_task(scenario="success")["task_id"] for _ in range(200)}
        assert len(ids) == 200
        assert all(re.fullmatch(r"[0-9a-v]{20}", t) for t in ids)
    finally:
        emu.close()
