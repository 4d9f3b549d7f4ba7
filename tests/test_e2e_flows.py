"""End to end over real loopback HTTP: the emulator posts a task's callbacks to a receiver."""

from __future__ import annotations

from typing import Any

from emulator.core.signing import sign
from emulator.receiver import Receiver

KEY = "Xz4ZgayTr7rMgWQrH"


def _create(emulator: Any, **body: Any) -> dict[str, Any]:
    r = emulator.api("POST", "/api/tasks", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def _advance(emulator: Any, seconds: float) -> dict[str, Any]:
    r = emulator.api("POST", "/api/clock/advance", json={"seconds": seconds})
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_success_flow_delivers_progress_then_finished(emulator: Any, receiver: Receiver) -> None:
    task = _create(emulator, scenario="success", room_id=900822, seed=7)
    assert task["status"] == "queued"
    assert receiver.received == []  # manual clock: nothing fires on its own

    _advance(emulator, 24 * 3600)

    bodies = receiver.events()
    types = [b["EventType"] for b in bodies]
    assert types[-1] == "OfflineRecordFinished"
    assert set(types[:-1]) == {"OfflineRecordProgressChanged"} and len(types) >= 2
    progresses = [b["EventData"]["Progress"] for b in bodies[:-1]]
    assert progresses == sorted(progresses) and all(0 <= p <= 99 for p in progresses)
    finished = bodies[-1]["EventData"]
    assert finished["TaskId"] == task["task_id"] and finished["Progress"] == 100
    assert finished["RoomId"] == 900822 and finished["GroupId"] == "900822"
    assert finished["VideoInfos"] and "Error" not in finished
    for body in bodies:
        assert body["SdkAppId"] == 1400000001
        assert body["Sign"] == sign(KEY, body["ExpireTime"])
        assert body["ExpireTime"] == body["Timestamp"] + 300
    for r in receiver.received:
        assert r.method == "POST" and r.headers["content-type"] == "application/json"

    task = emulator.api("GET", f"/api/tasks/{task['task_id']}").json()
    assert task["status"] == "finished" and task["outcome"] == "success" and task["progress"] == 100
    assert {e["state"] for e in task["events"]} == {"delivered"}


def test_transcode_failure_flow(emulator: Any, receiver: Receiver) -> None:
    task = _create(emulator, scenario="transcode-failure", room_id=1253)
    _advance(emulator, 24 * 3600)
    finished = receiver.events("OfflineRecordFinished")
    assert len(finished) == 1
    data = finished[0]["EventData"]
    assert data["Error"] == {"Code": "FailedOperation.Transcode", "Message": "录制对时信息获取失败"}
    assert data["TaskId"] == task["task_id"] and data["Progress"] == 100
    # Chinese travels as real UTF-8, not \\u escapes.
    raw = next(r.body for r in receiver.received if r.event_type == "OfflineRecordFinished")
    assert "录制对时信息获取失败".encode() in raw
    task = emulator.api("GET", f"/api/tasks/{task['task_id']}").json()
    assert task["outcome"] == "failure" and task["error"]["Code"] == "FailedOperation.Transcode"


def test_advance_fires_only_what_is_due_in_order(emulator: Any, receiver: Receiver) -> None:
    task = _create(emulator, scenario="success", seed=3)
    events = task["events"]
    first_due = events[0]["due_at"] - emulator.api("GET", "/api/clock").json()["now"]
    _advance(emulator, first_due - 0.01)
    assert receiver.received == []
    _advance(emulator, 0.02)
    assert len(receiver.received) == 1
    assert (
        receiver.events()[0]["EventData"]["Progress"]
        == events[0]["payload"]["EventData"]["Progress"]
    )
    _advance(emulator, 24 * 3600)
    seqs = [e["EventData"].get("Progress") for e in receiver.events()]
    assert seqs == [e["payload"]["EventData"]["Progress"] for e in events]
