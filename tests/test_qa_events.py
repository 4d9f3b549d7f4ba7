"""Ad-hoc events with each sign mode, redelivery (re-signed), and cancel (nothing more arrives)."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from emulator.core.signing import sign
from emulator.receiver import Receiver, Reply

KEY = "Xz4ZgayTr7rMgWQrH"
DATA = {"TaskId": "bj0mt2l23osdj300hl30", "RoomId": 1253, "Progress": 46}


def send(emulator: Any, **body: Any) -> dict[str, Any]:
    r = emulator.api("POST", "/api/events", json=body)
    assert r.status_code == 200, r.text
    return dict(r.json())


@pytest.mark.parametrize("mode", ["valid", "invalid", "expired", "none"])
def test_ad_hoc_event_with_each_sign_mode(emulator: Any, receiver: Receiver, mode: str) -> None:
    delivery = send(emulator, event_type="OfflineRecordProgressChanged", event_data=DATA, sign=mode)
    assert delivery["ok"] and delivery["status_code"] == 200
    (got,) = receiver.received
    body = got.json
    assert body["EventType"] == "OfflineRecordProgressChanged" and body["EventData"] == DATA
    assert got.body.decode() == delivery["request_body"]
    if mode == "none":
        assert "Sign" not in body and "ExpireTime" not in body
        return
    signed_right = body["Sign"] == sign(KEY, body["ExpireTime"])
    assert signed_right is (mode != "invalid")
    assert (body["ExpireTime"] < body["Timestamp"]) is (mode == "expired")


def test_ad_hoc_event_goes_to_its_own_url_verbatim(emulator: Any, receiver: Receiver) -> None:
    data = {"Error": {"Code": "FailedOperation.Transcode", "Message": "录制对时信息获取失败"}}
    with Receiver() as other:
        send(
            emulator,
            event_type="OfflineRecordFinished",
            event_data=data,
            callback_url=other.url + "?via=adhoc",
            sdk_app_id=1400000042,
        )
        (got,) = other.received
    assert receiver.received == []
    assert (
        got.path.endswith("?via=adhoc")
        and got.json["EventData"] == data
        and got.json["SdkAppId"] == 1400000042
    )
    assert "录制对时信息获取失败".encode() in got.body


def test_ad_hoc_event_reports_a_refusal_without_retrying(emulator: Any, receiver: Receiver) -> None:
    receiver.respond = lambda req: Reply(status=500, body=b"boom")
    delivery = send(emulator, event_type="OfflineRecordProgressChanged", event_data=DATA)
    assert not delivery["ok"] and delivery["status_code"] == 500
    assert delivery["response_body"] == "boom"
    emulator.api("POST", "/api/clock/advance", json={"seconds": 3600}).raise_for_status()
    assert len(receiver.received) == 1


def test_ad_hoc_events_sent_at_once_from_many_threads_each_get_their_own_attempt(
    emulator: Any, receiver: Receiver
) -> None:
    """Threads handing the engine an event at the same moment share its wake-ups: each still
    gets its own recorded attempt back, and each callback arrives once."""
    receiver.respond = lambda req: Reply(delay_s=0.01)  # keep several in flight together
    got: dict[int, dict[str, Any]] = {}

    def one(n: int) -> None:
        data = {**DATA, "Progress": n}
        got[n] = emulator.emu.send_event(event_type="OfflineRecordProgressChanged", event_data=data)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(got) == list(range(16))
    for n, delivery in got.items():
        assert delivery["ok"] and json.loads(delivery["request_body"])["EventData"]["Progress"] == n
    assert len({delivery["id"] for delivery in got.values()}) == 16
    assert sorted(r.json["EventData"]["Progress"] for r in receiver.received) == list(range(16))


def test_an_ad_hoc_event_after_the_engine_stopped_is_refused(
    make_emulator: Any, receiver: Receiver
) -> None:
    running = make_emulator(callback_url=receiver.url)
    running.emu.engine.stop()
    with pytest.raises(RuntimeError, match="delivery engine has stopped"):
        running.emu.send_event(event_type="OfflineRecordProgressChanged", event_data=DATA)
    assert receiver.received == []


def test_bad_ad_hoc_events_are_refused(emulator: Any, receiver: Receiver) -> None:
    for body, field in [
        ({"event_data": DATA}, "event_type"),
        ({"event_type": "OfflineRecordFinished"}, "event_data"),
        ({"event_type": "X", "event_data": DATA, "sign": "maybe"}, "sign"),
        ({"event_type": "X", "event_data": [1]}, "event_data"),
    ]:
        r = emulator.api("POST", "/api/events", json=body)
        assert r.status_code == 400 and r.json()["error"]["details"]["field"] == field, r.text
    assert receiver.received == []


def test_redeliver_resends_with_fresh_timestamp_and_sign(
    emulator: Any, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    task = emulator.api("POST", "/api/tasks", json={"scenario": "success", "seed": 1}).json()
    emulator.api("POST", "/api/clock/advance", json={"seconds": 86400}).raise_for_status()
    deliveries = emulator.api("GET", "/api/deliveries", params={"task_id": task["task_id"]}).json()
    original = next(
        d for d in deliveries["deliveries"] if d["event_type"] == "OfflineRecordFinished"
    )
    before = receiver.events()[-1]
    receiver.clear()

    # A later wall clock and a new key: the copy must be rebuilt, not replayed byte for byte.
    later = before["Timestamp"] + 3600
    monkeypatch.setattr(emulator.emu.clock, "_wall", lambda: later + 0.5)
    emulator.api("PATCH", "/api/config", json={"callback_key": "aNewKey123"}).raise_for_status()
    r = emulator.api("POST", f"/api/deliveries/{original['id']}/redeliver")
    assert r.status_code == 200, r.text
    assert r.json()["redelivery_of"] == original["id"] and r.json()["ok"]

    (again,) = receiver.events()
    assert again["EventData"] == before["EventData"] and again["EventType"] == before["EventType"]
    assert again["Timestamp"] == later and again["ExpireTime"] == later + 300
    assert again["Sign"] == sign("aNewKey123", again["ExpireTime"]) != before["Sign"]
    assert emulator.api("POST", "/api/deliveries/999999/redeliver").status_code == 404


def test_cancel_stops_pending_events(emulator: Any, receiver: Receiver) -> None:
    task = emulator.api("POST", "/api/tasks", json={"scenario": "slow", "seed": 3}).json()
    first = task["events"][0]
    clock = emulator.api("GET", "/api/clock").json()["now"]
    emulator.api("POST", "/api/clock/advance", json={"seconds": first["due_at"] - clock})
    assert len(receiver.received) == 1

    r = emulator.api("POST", f"/api/tasks/{task['task_id']}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    emulator.api("POST", "/api/clock/advance", json={"seconds": 30 * 86400}).raise_for_status()
    assert len(receiver.received) == 1  # nothing more arrived
    states = [
        e["state"] for e in emulator.api("GET", f"/api/tasks/{task['task_id']}").json()["events"]
    ]
    assert states[0] == "delivered" and set(states[1:]) == {"cancelled"}
    again = emulator.api("POST", f"/api/tasks/{task['task_id']}/cancel")
    assert again.status_code == 409
