"""The built-in catalogue: every file loads, and each scenario shows its behaviour on the wire."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from spec_facts import FAILED_FINISHED_KEYS, SPEC_SCENARIOS

from emulator.core import outcomes
from emulator.core.scenarios import BUILTIN_DIR, load_file
from emulator.core.signing import sign, verify
from emulator.receiver import Receiver

KEY = "Xz4ZgayTr7rMgWQrH"
PROGRESS, FINISHED = "OfflineRecordProgressChanged", "OfflineRecordFinished"
SEEDS = [1, 2, 3]
FOREVER = 30 * 86400  # emulated seconds: longer than any built-in timeline


def play(emulator: Any, scenario: str, *, seed: int, room_id: int = 1253, **extra: Any) -> Any:
    """Create a task, run the clock to the end; returns (task after the run, bodies received)."""
    r = emulator.api(
        "POST", "/api/tasks", json={"scenario": scenario, "room_id": room_id, "seed": seed, **extra}
    )
    assert r.status_code == 201, r.text
    task_id = r.json()["task_id"]
    emulator.api("POST", "/api/clock/advance", json={"seconds": FOREVER}).raise_for_status()
    return emulator.api("GET", f"/api/tasks/{task_id}").json()


def progress_values(receiver: Receiver) -> list[Any]:
    return [b["EventData"]["Progress"] for b in receiver.events(PROGRESS)]


def finished_data(receiver: Receiver) -> dict[str, Any]:
    finished = receiver.events(FINISHED)
    assert len(finished) == 1, [b["EventType"] for b in receiver.events()]
    return dict(finished[0]["EventData"])


def types(data: dict[str, Any]) -> list[int]:
    return sorted(v["VideoType"] for v in data["VideoInfos"])


@pytest.mark.parametrize("path", sorted(BUILTIN_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_builtin_file_loads_and_has_a_description(path: Path) -> None:
    scenario = load_file(path)
    assert scenario.name == path.stem
    assert len(scenario.description.split()) >= 8, "describe what the backend sees"


def test_catalogue_is_the_spec_catalogue(emulator: Any) -> None:
    names = {s["name"] for s in emulator.api("GET", "/api/scenarios").json()["scenarios"]}
    assert names == set(SPEC_SCENARIOS)


@pytest.mark.parametrize("seed", SEEDS)
def test_success(emulator: Any, receiver: Receiver, seed: int) -> None:
    task = play(emulator, "success", seed=seed)
    values = progress_values(receiver)
    assert values and values == sorted(values) and all(isinstance(v, int) for v in values)
    assert receiver.events()[-1]["EventType"] == FINISHED
    data = finished_data(receiver)
    assert "Error" not in data and data["Progress"] == 100 and data["TaskId"] == task["task_id"]
    assert set(types(data)) == {0, 2}
    assert all((v["UserId"] == "") == (v["VideoType"] == 2) for v in data["VideoInfos"])
    assert task["status"] == "finished" and task["outcome"] == "success"


@pytest.mark.parametrize("seed", SEEDS)
def test_success_mixed_stream(emulator: Any, receiver: Receiver, seed: int) -> None:
    play(emulator, "success-mixed-stream", seed=seed, room_id=8000)
    data = finished_data(receiver)
    mixed = [v for v in data["VideoInfos"] if v["VideoType"] == 3]
    assert len(mixed) == 1 and mixed[0]["UserId"] == "tic_mixstream_8000_1"
    assert mixed[0]["VideoFormat"] == "mp4" and mixed[0]["VideoDuration"] > 0
    assert types(data) == [2, 3]


@pytest.mark.parametrize("seed", SEEDS)
def test_success_large_class(emulator: Any, receiver: Receiver, seed: int) -> None:
    play(emulator, "success-large-class", seed=seed)
    data = finished_data(receiver)
    by_type: dict[int, list[dict[str, Any]]] = {}
    for video in data["VideoInfos"]:
        by_type.setdefault(video["VideoType"], []).append(video)
    assert set(by_type) == {0, 1, 2, 4}
    assert len(by_type[1]) == 1 and len(by_type[4]) == 4
    assert len(by_type[0]) + len(by_type[4]) >= 12  # many participants
    assert all(v["VideoFormat"] == "mp3" and v["Width"] == 0 for v in by_type[4])
    users = [v["UserId"] for v in by_type[0] + by_type[4]]
    assert len(set(users)) == len(users) and by_type[1][0]["UserId"] in users
    play_times = {v["VideoPlayTime"] for v in by_type[0] + by_type[4] + by_type[1]}
    assert len(play_times) >= 10  # staggered: people join at different times
    assert all(v["VideoPlayTime"] + v["VideoDuration"] <= data["TotalTime"] for v in by_type[0])


@pytest.mark.parametrize("seed", SEEDS)
def test_transcode_failure_keeps_the_documented_fields(
    emulator: Any, receiver: Receiver, seed: int
) -> None:
    task = play(emulator, "transcode-failure", seed=seed)
    assert progress_values(receiver)
    data = finished_data(receiver)
    assert data["Error"] == {"Code": "FailedOperation.Transcode", "Message": "录制对时信息获取失败"}
    assert set(data) == set(FAILED_FINISHED_KEYS)
    assert data["Progress"] == 100 and data["VideoInfos"] == [] and data["TotalTime"] == 0
    assert task["outcome"] == "failure" and task["error"]["Code"] == "FailedOperation.Transcode"


@pytest.mark.parametrize("seed", SEEDS)
def test_transcode_failure_bare_holds_only_error(
    emulator: Any, receiver: Receiver, seed: int
) -> None:
    play(emulator, "transcode-failure-bare", seed=seed)
    assert progress_values(receiver)[-1] == 60
    assert finished_data(receiver) == {
        "Error": {"Code": "FailedOperation.Transcode", "Message": "录制对时信息获取失败"}
    }


@pytest.mark.parametrize("seed", SEEDS)
def test_record_failure(emulator: Any, receiver: Receiver, seed: int) -> None:
    task = play(emulator, "record-failure", seed=seed)
    assert progress_values(receiver)[-1] == 30  # fails early
    error = finished_data(receiver)["Error"]
    assert error == {
        "Code": "FailedOperation.Record",
        "Message": outcomes.resolve("FailedOperation.Record")[1],
    }
    assert task["error"] == error


@pytest.mark.parametrize("seed", SEEDS)
def test_stalled_stops_and_never_finishes(emulator: Any, receiver: Receiver, seed: int) -> None:
    task = play(emulator, "stalled", seed=seed)
    values = progress_values(receiver)
    assert values and values[-1] == 46 and values == sorted(values)
    assert receiver.events(FINISHED) == []
    assert task["status"] == "processing" and task["progress"] == 46 and task["outcome"] is None
    emulator.api("POST", "/api/clock/advance", json={"seconds": FOREVER}).raise_for_status()
    assert len(receiver.received) == len(values)  # still nothing more
    again = emulator.api("GET", f"/api/tasks/{task['task_id']}").json()
    assert again["status"] == "processing"


@pytest.mark.parametrize("seed", SEEDS)
def test_slow_queues_long_and_progresses_slowly(
    emulator: Any, receiver: Receiver, seed: int
) -> None:
    r = emulator.api("POST", "/api/tasks", json={"scenario": "slow", "seed": seed})
    task = r.json()
    emulator.api("POST", "/api/clock/advance", json={"seconds": 1800}).raise_for_status()
    assert receiver.received == []  # half an hour later: still queued
    assert emulator.api("GET", f"/api/tasks/{task['task_id']}").json()["status"] == "queued"
    emulator.api("POST", "/api/clock/advance", json={"seconds": FOREVER}).raise_for_status()
    assert len(progress_values(receiver)) >= 10
    finished_data(receiver)
    # Processing took about three times the class: far longer than a `success` task.
    task = emulator.api("GET", f"/api/tasks/{task['task_id']}").json()
    assert task["finish_at"] - task["created_at"] >= 1800 + 3 * 1800


@pytest.mark.parametrize("seed", SEEDS)
def test_duplicate_callbacks(emulator: Any, receiver: Receiver, seed: int) -> None:
    play(emulator, "duplicate-callbacks", seed=seed)
    seen: dict[str, list[dict[str, Any]]] = {}
    for body in receiver.events():
        seen.setdefault(json.dumps(body["EventData"], sort_keys=True), []).append(body)
    twice = [bodies for bodies in seen.values() if len(bodies) == 2]
    assert twice and all(len(b) <= 2 for b in seen.values())
    assert len(seen) < len(receiver.received)
    for first, second in twice:
        assert first["EventType"] == second["EventType"]
        assert first["Sign"] == sign(KEY, first["ExpireTime"])
        assert second["Sign"] == sign(KEY, second["ExpireTime"])


@pytest.mark.parametrize("seed", SEEDS)
def test_out_of_order_progress_arrives_after_a_later_one(
    emulator: Any, receiver: Receiver, seed: int
) -> None:
    play(emulator, "out-of-order", seed=seed)
    values = progress_values(receiver)
    assert any(later < earlier for earlier, later in itertools.pairwise(values))
    assert sorted(values) != values
    assert receiver.events()[-1]["EventType"] == FINISHED


def test_out_of_order_after_finished_param(emulator: Any, receiver: Receiver) -> None:
    play(emulator, "out-of-order", seed=4, params={"out_of_order": "after_finished"})
    kinds = [b["EventType"] for b in receiver.events()]
    assert kinds[-1] == PROGRESS and FINISHED in kinds


@pytest.mark.parametrize("seed", SEEDS)
def test_dropped_progress(emulator: Any, receiver: Receiver, seed: int) -> None:
    task = play(emulator, "dropped-progress", seed=seed)
    planned = [e for e in task["events"] if e["event_type"] == PROGRESS]
    dropped = [e for e in planned if e["state"] == "dropped"]
    values = progress_values(receiver)
    assert dropped and values and len(values) == len(planned) - len(dropped)
    assert not {e["payload"]["EventData"]["Progress"] for e in dropped} & set(values)
    finished_data(receiver)


@pytest.mark.parametrize("seed", SEEDS)
def test_progress_as_string(emulator: Any, receiver: Receiver, seed: int) -> None:
    play(emulator, "progress-as-string", seed=seed)
    values = progress_values(receiver)
    assert values and all(isinstance(v, str) and v.isdigit() for v in values)
    raw = next(r.body for r in receiver.received if r.event_type == PROGRESS)
    assert f'"Progress":"{values[0]}"'.encode() in raw
    assert finished_data(receiver)["Progress"] == 100


def test_bad_signature(emulator: Any, receiver: Receiver) -> None:
    play(emulator, "bad-signature", seed=1)
    for body in receiver.events():
        assert body["ExpireTime"] > body["Timestamp"]
        assert body["Sign"] != sign(KEY, body["ExpireTime"])
        assert verify(KEY, body["ExpireTime"], body["Sign"], now=body["Timestamp"])[0] is False


def test_expired_signature(emulator: Any, receiver: Receiver) -> None:
    play(emulator, "expired-signature", seed=1)
    for body in receiver.events():
        assert body["ExpireTime"] < body["Timestamp"]
        assert body["Sign"] == sign(KEY, body["ExpireTime"])  # right key, but already expired
        ok, reason = verify(KEY, body["ExpireTime"], body["Sign"], now=body["Timestamp"])
        assert not ok and "past" in reason


def test_every_built_in_file_validates_against_the_published_schema() -> None:
    """Start-up skips the schema pass for the built-in files; this is where they are checked."""
    import jsonschema
    import yaml

    from emulator.core.scenarios import SCHEMA

    files = sorted(BUILTIN_DIR.glob("*.yaml"))
    assert files
    validator = jsonschema.Draft202012Validator(SCHEMA)
    for path in files:
        errors = list(validator.iter_errors(yaml.safe_load(path.read_text(encoding="utf-8"))))
        assert errors == [], (path.name, [e.message for e in errors])
