"""Delivery: acknowledgement, retries per policy, attempt records, timeouts, isolation."""

from __future__ import annotations

import itertools
import json
import threading
from typing import Any

from emulator.core import payloads
from emulator.delivery.scheduler import Outgoing
from emulator.receiver import Receiver, Reply
from emulator.store.base import DeliveryFilter, NewEvent
from emulator.store.sqlite import SQLiteStore

KEY = "Xz4ZgayTr7rMgWQrH"


def _task(emulator: Any, **body: Any) -> dict[str, Any]:
    r = emulator.api("POST", "/api/tasks", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def _advance(emulator: Any, seconds: float) -> None:
    r = emulator.api("POST", "/api/clock/advance", json={"seconds": seconds})
    assert r.status_code == 200, r.text


def _deliveries(emulator: Any, task_id: str) -> list[dict[str, Any]]:
    return list(
        emulator.api("GET", "/api/deliveries", params={"task_id": task_id}).json()["deliveries"]
    )


def test_every_attempt_is_recorded_with_request_and_response(
    emulator: Any, receiver: Receiver
) -> None:
    task = _task(emulator, scenario="success", seed=1)
    _advance(emulator, 86400)
    records = _deliveries(emulator, task["task_id"])
    assert len(records) == len(receiver.received) == len(task["events"])
    for record, got in zip(records, receiver.received, strict=True):
        assert record["request_body"].encode() == got.body  # exactly what went on the wire
        assert record["status_code"] == 200 and record["ok"] is True
        assert record["response_body"] == '{"error_code":0}'
        assert record["error"] is None and record["duration_ms"] >= 0
        assert record["url"] == receiver.url and record["attempt"] == 1
        assert record["task_id"] == task["task_id"]


def test_non_200_is_retried_by_the_fast_policy(emulator: Any, receiver: Receiver) -> None:
    receiver.respond = lambda r: Reply(status=500, body=b"boom")
    task = _task(emulator, scenario="success", params={"progress_steps": 0})
    _advance(emulator, 86400)
    records = _deliveries(emulator, task["task_id"])
    assert [r["attempt"] for r in records] == [1, 2, 3]  # fast = 3 tries
    assert all(r["status_code"] == 500 and r["response_body"] == "boom" for r in records)
    events = emulator.api("GET", f"/api/tasks/{task['task_id']}/events").json()["events"]
    assert events[0]["state"] == "failed" and events[0]["attempts"] == 3
    summary = emulator.api("GET", f"/api/tasks/{task['task_id']}").json()["deliveries"]
    assert summary == {"attempts": 3, "failed_attempts": 3, "undelivered_events": 1}
    [listed] = emulator.api("GET", "/api/tasks").json()["tasks"]
    assert listed["deliveries"] == summary


def test_recovery_after_a_failure_acknowledges(emulator: Any, receiver: Receiver) -> None:
    calls = {"n": 0}

    def flaky(request: Any) -> Reply:
        calls["n"] += 1
        return Reply(status=503) if calls["n"] == 1 else Reply()

    receiver.respond = flaky
    task = _task(emulator, scenario="success", params={"progress_steps": 0})
    _advance(emulator, 86400)
    records = _deliveries(emulator, task["task_id"])
    summary = emulator.api("GET", f"/api/tasks/{task['task_id']}").json()["deliveries"]
    assert summary == {"attempts": 2, "failed_attempts": 1, "undelivered_events": 0}
    assert [(r["attempt"], r["status_code"], r["ok"]) for r in records] == [
        (1, 503, False),
        (2, 200, True),
    ]
    assert (
        emulator.api("GET", f"/api/tasks/{task['task_id']}/events").json()["events"][0]["state"]
        == "delivered"
    )


def test_tencent_policy_retries_once_per_emulated_minute_up_to_ten(
    make_emulator: Any, receiver: Receiver
) -> None:
    emu = make_emulator(callback_url=receiver.url, retry="tencent")
    receiver.respond = lambda r: Reply(status=502)
    task = _task(emu, scenario="success", params={"progress_steps": 0})
    finish_due = task["events"][0]["due_at"]
    now = emu.api("GET", "/api/clock").json()["now"]
    _advance(emu, finish_due - now + 9 * 60 - 1)  # just short of the 10th try
    assert len(_deliveries(emu, task["task_id"])) == 9
    _advance(emu, 3600)
    records = _deliveries(emu, task["task_id"])
    assert len(records) == 10
    gaps = [round(b["emulated_at"] - a["emulated_at"]) for a, b in itertools.pairwise(records)]
    assert gaps == [60] * 9


def test_none_policy_tries_once(make_emulator: Any, receiver: Receiver) -> None:
    emu = make_emulator(callback_url=receiver.url, retry="none")
    receiver.respond = lambda r: Reply(status=404)
    task = _task(emu, scenario="success", params={"progress_steps": 0})
    _advance(emu, 86400)
    assert len(_deliveries(emu, task["task_id"])) == 1


def test_strict_ack_needs_error_code_zero(make_emulator: Any, receiver: Receiver) -> None:
    emu = make_emulator(callback_url=receiver.url, retry="none")
    r = emu.api("PATCH", "/api/config", json={"strict_ack": True})
    assert r.status_code == 200 and r.json()["strict_ack"] is True
    receiver.respond = lambda req: Reply(body=b"ok")
    task = _task(emu, scenario="success", params={"progress_steps": 0})
    _advance(emu, 86400)
    [record] = _deliveries(emu, task["task_id"])
    assert (
        record["status_code"] == 200 and record["ok"] is False and "strict_ack" in record["error"]
    )


def test_timeout_and_connection_errors_are_recorded(make_emulator: Any, receiver: Receiver) -> None:
    emu = make_emulator(callback_url=receiver.url, retry="none")
    emu.api("PATCH", "/api/config", json={"timeout_s": 0.2})
    receiver.respond = lambda r: Reply(hang=True)
    task = _task(emu, scenario="success", params={"progress_steps": 0})
    _advance(emu, 86400)
    [record] = _deliveries(emu, task["task_id"])
    assert record["status_code"] is None and record["error"].startswith("timeout")
    assert record["duration_ms"] >= 200

    dead = Receiver().start()
    dead_url = dead.url
    dead.stop()  # nothing listens there any more
    task = _task(emu, scenario="success", params={"progress_steps": 0}, callback_url=dead_url)
    _advance(emu, 86400)
    [record] = _deliveries(emu, task["task_id"])
    assert record["status_code"] is None and "cannot connect to" in record["error"]


def test_missing_callback_url_is_a_recorded_failed_attempt(make_emulator: Any) -> None:
    emu = make_emulator(retry="none")
    task = _task(emu, scenario="success", params={"progress_steps": 0})
    _advance(emu, 86400)
    [record] = _deliveries(emu, task["task_id"])
    assert record["ok"] is False and "no callback URL" in record["error"]


def test_a_hanging_backend_does_not_stall_other_tasks(
    make_emulator: Any, receiver: Receiver
) -> None:
    """Real clock: one task's backend never answers; another task's callbacks still flow."""
    with Receiver() as stuck:
        stuck.respond = lambda r: Reply(hang=True)
        emu = make_emulator(callback_url=receiver.url, clock="real", speed=100000, retry="none")
        emu.api("PATCH", "/api/config", json={"timeout_s": 30})
        slow = _task(emu, scenario="success", callback_url=stuck.url, room_id=1)
        fast = _task(emu, scenario="success", room_id=2)
        stuck.wait_for_count(1)
        got = receiver.wait_for(
            lambda rs: any(r.event_type == "OfflineRecordFinished" for r in rs), timeout=20
        )
        assert {r.json["EventData"].get("TaskId") for r in got} == {fast["task_id"]}
        # the stuck task is still waiting on its first callback
        assert len(stuck.received) == 1
        assert json.loads(stuck.received[0].body)["EventData"]["TaskId"] == slow["task_id"]


def test_speed_change_at_run_time_keeps_emulated_due_times(
    make_emulator: Any, receiver: Receiver
) -> None:
    emu = make_emulator(callback_url=receiver.url, clock="real", speed=1)
    task = _task(emu, scenario="success", params={"queue_delay_s": 600})
    before = [e["due_at"] for e in task["events"]]
    assert receiver.received == []  # at x1 the first callback is at least ten minutes away
    r = emu.api("PATCH", "/api/config", json={"speed": 1_000_000})
    assert r.status_code == 200
    receiver.wait_for(
        lambda rs: any(x.event_type == "OfflineRecordFinished" for x in rs), timeout=20
    )
    events = emu.api("GET", f"/api/tasks/{task['task_id']}/events").json()["events"]
    assert [e["due_at"] for e in events] == before
    assert [x.json["EventData"].get("Progress") for x in receiver.received] == [
        e["payload"]["EventData"]["Progress"] for e in events
    ]


def _schedule(emu: Any, task_id: str, due_at: float, seq: int = 1, progress: int = 10) -> None:
    """One planned callback for `task_id` at emulated `due_at` (bypassing scenario timing)."""
    data = payloads.encode_data(payloads.progress_data(task_id, 1, progress))
    event = NewEvent(
        seq=seq,
        event_type=payloads.PROGRESS_CHANGED,
        due_at=due_at,
        state="scheduled",
        event_data=data,
        sign_mode="valid",
        note="",
        sdk_app_id=emu.config().sdk_app_id,
        callback_url=None,
        task_id=task_id,
    )
    emu.store.insert_events([event])
    emu.engine.schedule([Outgoing.of(event)])


def test_one_advance_sends_a_tasks_attempts_retries_included_in_due_order(
    make_emulator: Any, receiver: Receiver
) -> None:
    """Task A: Progress 10 due at t fails and is retried at t+1 and t+3 (fast policy); its
    Progress 20 is due at t+2. A's backend sees 10, 10, 20, 10: the first retry before the
    later event, as their due times say (it used to get 10, 20, 10, 10). Task B, due at t+2
    too, is not held back by A's retries."""
    emu = make_emulator(callback_url=receiver.url, retry="fast").emu
    receiver.respond = lambda r: Reply(500 if r.json["EventData"]["Progress"] == 10 else 200)
    now = emu.clock.now()
    _schedule(emu, "A", now + 10, seq=1, progress=10)
    _schedule(emu, "A", now + 12, seq=2, progress=20)
    _schedule(emu, "B", now + 12, seq=1, progress=30)
    emu.advance(60)
    seen = [r.json["EventData"] for r in receiver.received]
    assert [d["Progress"] for d in seen if d["TaskId"] == "A"] == [10, 10, 20, 10]
    assert [d["Progress"] for d in seen if d["TaskId"] == "B"] == [30]
    attempts, _ = emu.deliveries(limit=10)
    timeline = sorted(
        (round(d["emulated_at"] - now, 2), json.loads(d["request_body"])["EventData"]["Progress"])
        for d in attempts
        if d["task_id"] == "A"
    )
    assert timeline == [(10.0, 10), (11.0, 10), (12.0, 20), (13.0, 10)]


def test_an_advance_sends_retries_due_inside_it_and_counts_them_as_fired(
    make_emulator: Any, receiver: Receiver
) -> None:
    """Fast policy (retries 1 s and 2 s after a failure): an advance of 2.5 s past the due time
    sends the first try and the first retry; the second retry waits for the next advance."""
    emu = make_emulator(callback_url=receiver.url, retry="fast").emu
    receiver.respond = lambda r: Reply(500)
    now = emu.clock.now()
    _schedule(emu, "A", now + 10)
    assert emu.advance(12.5)["fired"] == 2
    [waiting] = emu.store.pending_events()
    assert (waiting["state"], waiting["attempts"]) == ("scheduled", 2)
    assert round(waiting["due_at"] - now, 2) == 13.0
    assert emu.advance(60)["fired"] == 1
    assert [e["state"] for e in emu.store.pending_events()] == []
    attempts, _ = emu.deliveries(limit=10)
    assert sorted(round(d["emulated_at"] - now, 2) for d in attempts) == [10.0, 11.0, 13.0]


def test_a_clean_stop_leaves_no_event_marked_delivering(tmp_path: Any, receiver: Receiver) -> None:
    """Stop in the middle of a busy run: an event whose attempt is recorded is settled."""
    from emulator.core.config import Settings
    from emulator.core.service import Emulator

    db = str(tmp_path / "busy.db")
    settings = {"db": db, "clock": "manual", "retry": "none", "callback_url": receiver.url}
    emu = Emulator(Settings.load(settings, env={})).start()
    for n in range(200):
        emu.create_task(scenario="success", room_id=1000 + n)
    receiver.respond = lambda r: Reply(delay_s=0.001)
    advanced: list[int] = []
    runner = threading.Thread(target=lambda: advanced.append(emu.advance(86400)["fired"]))
    runner.start()
    receiver.wait_for(lambda got: len(got) >= 100)
    emu.close()
    runner.join(10)
    assert not runner.is_alive()  # the advance returns when the engine stops
    store = SQLiteStore(db)
    try:
        stuck = [e for e in store.pending_events() if e["state"] == "delivering"]
        recorded: set[int] = set()
        before = None
        while True:
            page, before = store.list_deliveries(
                DeliveryFilter(), limit=1000, before=before, after=None
            )
            recorded |= {d["event_id"] for d in page}
            if before is None:
                break
        assert recorded
        assert [e["id"] for e in stuck if e["id"] in recorded] == []
    finally:
        store.close()


def test_a_backend_gate_serves_waiters_in_order_and_passes_on_a_cancelled_waiters_slot() -> None:
    """One slot: a waiter cancelled while waiting never enters; one cancelled just after it
    was handed the slot passes it on; the slot is free again at the end."""
    import asyncio

    from emulator.delivery.dispatcher import Gate

    async def scenario() -> tuple[list[str], list[bool]]:
        gate, order = Gate(1), []

        async def user(name: str) -> None:
            async with gate:
                order.append(name)

        await gate.__aenter__()  # the first user holds the slot
        waiting = [asyncio.create_task(user(name)) for name in ("second", "third", "fourth")]
        await asyncio.sleep(0)  # all three wait, in order
        waiting[0].cancel()  # cancelled while waiting
        await asyncio.sleep(0)
        await gate.__aexit__()  # hands the slot to "third"...
        waiting[1].cancel()  # ...cancelled before it could run: "fourth" gets the slot
        await asyncio.gather(*waiting, return_exceptions=True)
        async with asyncio.timeout(5), gate:  # the slot came back
            order.append("last")
        return order, [task.cancelled() for task in waiting]

    order, cancelled = asyncio.run(scenario())
    assert order == ["fourth", "last"]
    assert cancelled == [True, True, False]
