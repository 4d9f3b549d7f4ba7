"""Control API (SPEC section 4): routes, validation errors that name the field, no 500s."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from emulator.web.app import create_app, get_emulator


@pytest.fixture
def app(db: str) -> Any:
    """On each store: a SQLite file, then a PostgreSQL database (conftest `db`)."""
    app = create_app({"db": db, "clock": "manual"})
    yield app
    get_emulator(app).close()


@pytest.fixture
def client(app: Flask) -> Any:
    return app.test_client()


def _error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return dict(body["error"])


def test_healthz(client: Any) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}


def test_config_masks_the_key_and_validates_fields(client: Any) -> None:
    r = client.patch(
        "/api/config",
        json={
            "callback_key": "Xz4ZgayTr7rMgWQrH",
            "callback_url": "http://127.0.0.1:9/cb",
            "speed": 5,
        },
    )
    assert r.status_code == 200
    body = r.get_json()
    assert "Xz4ZgayTr7rMgWQrH" not in r.get_data(as_text=True)
    assert body["callback_key"] == "Xz****"  # the first two characters, never the length
    assert body["speed"] == 5.0 and body["callback_url"] == "http://127.0.0.1:9/cb"
    assert "Xz4ZgayTr7rMgWQrH" not in client.get("/api/config").get_data(as_text=True)

    err = _error(client.patch("/api/config", json={"speed": -1}), 400, "invalid_field")
    assert err["details"]["field"] == "speed"
    err = _error(client.patch("/api/config", json={"colour": "red"}), 400, "unknown_field")
    assert err["details"]["field"] == "colour"
    _error(client.patch("/api/config", json={"callback_url": "ftp://x"}), 400, "invalid_field")
    _error(client.patch("/api/config", json={"retry": "sometimes"}), 400, "invalid_field")
    _error(
        client.patch("/api/config", json={"retry": {"max_attempts": 0, "interval_s": 1}}),
        400,
        "invalid_field",
    )
    r = client.patch("/api/config", json={"retry": {"max_attempts": 4, "interval_s": 2.5}})
    assert r.get_json()["retry"] == {
        "name": "custom",
        "max_attempts": 4,
        "interval_s": 2.5,
        "backoff": 1.0,
    }
    # nothing was lost by the refused patches
    assert client.get("/api/config").get_json()["speed"] == 5.0


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ({"room_id": "12"}, 400, "invalid_field", "room_id"),
        ({"room_id": True}, 400, "invalid_field", "room_id"),
        ({"scenario": "nope"}, 404, "scenario_not_found", None),
        ({"params": {"duration_s": -5}}, 400, "scenario_invalid", "params.duration_s"),
        ({"params": {"no_such": 1}}, 400, "scenario_invalid", "params.no_such"),
        ({"callback_url": "not a url"}, 400, "invalid_field", "callback_url"),
        ({"extra": 1}, 400, "unknown_field", "extra"),
    ],
)
def test_task_creation_refuses_bad_input(
    client: Any, body: dict[str, Any], status: int, code: str, field: str | None
) -> None:
    err = _error(client.post("/api/tasks", json=body), status, code)
    if field:
        assert err["details"].get("field") == field
    assert client.get("/api/tasks").get_json()["tasks"] == []


def test_bad_json_is_a_400_not_a_500(client: Any) -> None:
    _error(
        client.post("/api/tasks", data="{", content_type="application/json"), 400, "invalid_json"
    )
    _error(client.post("/api/tasks", json=[1, 2]), 400, "invalid_json")
    _error(client.post("/api/clock/advance", json={}), 400, "invalid_field")
    _error(client.post("/api/clock/advance", json={"seconds": "soon"}), 400, "invalid_field")
    _error(client.post("/api/clock/advance", json={"seconds": -1}), 400, "invalid_field")
    _error(client.get("/api/tasks?status=done"), 400, "invalid_field")
    _error(client.get("/api/tasks?room_id=abc"), 400, "invalid_field")
    _error(client.get("/api/tasks?bogus=1"), 400, "unknown_field")
    _error(client.get("/api/nothing-here"), 404, "not_found")
    _error(client.delete("/api/tasks"), 405, "method_not_allowed")


def test_task_lifecycle_and_filters(client: Any) -> None:
    r = client.post("/api/tasks", json={"scenario": "success", "room_id": 11, "seed": 1})
    assert r.status_code == 201
    task = r.get_json()
    assert set(task) >= {
        "task_id",
        "room_id",
        "group_id",
        "sdk_app_id",
        "scenario",
        "status",
        "progress",
        "outcome",
        "error",
        "created_at",
        "events",
    }
    assert task["group_id"] == "11" and task["status"] == "queued" and task["outcome"] is None
    client.post("/api/tasks", json={"scenario": "transcode-failure", "room_id": 12})

    assert len(client.get("/api/tasks").get_json()["tasks"]) == 2
    assert [t["room_id"] for t in client.get("/api/tasks?room_id=12").get_json()["tasks"]] == [12]
    only = client.get("/api/tasks?scenario=transcode-failure").get_json()["tasks"]
    assert [t["scenario"] for t in only] == ["transcode-failure"]
    assert len(client.get("/api/tasks?status=queued").get_json()["tasks"]) == 2

    events = client.get(f"/api/tasks/{task['task_id']}/events").get_json()["events"]
    assert events[0].keys() >= {"seq", "event_type", "due_at", "state", "payload", "attempts"}
    assert {e["state"] for e in events} == {"scheduled"}

    r = client.post(f"/api/tasks/{task['task_id']}/cancel")
    assert r.status_code == 200 and r.get_json()["status"] == "cancelled"
    assert {e["state"] for e in r.get_json()["events"]} == {"cancelled"}
    _error(client.post(f"/api/tasks/{task['task_id']}/cancel"), 409, "invalid_state")
    _error(client.get("/api/tasks/nope"), 404, "task_not_found")
    _error(client.get("/api/tasks/nope/events"), 404, "task_not_found")

    advanced = client.post("/api/clock/advance", json={"seconds": 86400}).get_json()
    assert advanced["mode"] == "manual" and advanced["fired"] >= 1
    statuses = {t["scenario"]: t["status"] for t in client.get("/api/tasks").get_json()["tasks"]}
    assert statuses == {"success": "cancelled", "transcode-failure": "finished"}
    assert len(client.get("/api/tasks?status=finished").get_json()["tasks"]) == 1


def test_one_unfinished_task_per_room(client: Any) -> None:
    first = client.post("/api/tasks", json={"room_id": 5}).get_json()
    err = _error(client.post("/api/tasks", json={"room_id": 5}), 409, "room_busy")
    assert err["details"]["task_id"] == first["task_id"]
    # a different SdkAppId is a different room
    assert (
        client.post("/api/tasks", json={"room_id": 5, "sdk_app_id": 1400000002}).status_code == 201
    )
    client.post("/api/clock/advance", json={"seconds": 86400})
    assert client.post("/api/tasks", json={"room_id": 5}).status_code == 201  # finished frees it


def test_reset_forgets_tasks_and_deliveries(client: Any) -> None:
    client.post("/api/tasks", json={"room_id": 5})
    client.post("/api/clock/advance", json={"seconds": 86400})
    assert client.get("/api/deliveries").get_json()["deliveries"]
    assert client.post("/api/reset").status_code == 200
    assert client.get("/api/tasks").get_json()["tasks"] == []
    assert client.get("/api/deliveries").get_json()["deliveries"] == []


def test_scenarios_are_listed(client: Any) -> None:
    names = [s["name"] for s in client.get("/api/scenarios").get_json()["scenarios"]]
    assert {"success", "transcode-failure"} <= set(names)
    one = client.get("/api/scenarios/transcode-failure").get_json()
    assert one["outcome"]["error_code"] == "FailedOperation.Transcode"
    _error(client.get("/api/scenarios/none-such"), 404, "scenario_not_found")


def test_body_size_limit_is_413(tmp_path: Any) -> None:
    app = create_app({"db": ":memory:", "max_body_bytes": 1000})
    try:
        r = app.test_client().post("/api/tasks", data="x" * 5000, content_type="application/json")
        _error(r, 413, "payload_too_large")
    finally:
        get_emulator(app).close()


def test_token_protects_the_control_api_but_not_healthz() -> None:
    app = create_app({"db": ":memory:", "token": "s3cret-token"})
    try:
        c = app.test_client()
        assert c.get("/healthz").status_code == 200
        _error(c.get("/api/tasks"), 401, "unauthorized")
        _error(c.get("/api/tasks", headers={"Authorization": "Bearer wrong"}), 401, "unauthorized")
        ok = c.get("/api/tasks", headers={"Authorization": "Bearer s3cret-token"})
        assert ok.status_code == 200
    finally:
        get_emulator(app).close()


def test_two_apps_live_in_one_process() -> None:
    a = create_app({"db": ":memory:", "clock": "manual"})
    b = create_app({"db": ":memory:", "clock": "manual"})
    try:
        a.test_client().post("/api/tasks", json={"room_id": 1})
        assert len(a.test_client().get("/api/tasks").get_json()["tasks"]) == 1
        assert b.test_client().get("/api/tasks").get_json()["tasks"] == []
        assert get_emulator(a) is not get_emulator(b)
    finally:
        get_emulator(a).close()
        get_emulator(b).close()


def test_the_creation_reply_is_the_task_as_stored(client: Any) -> None:
    """The reply is built from what was committed, not read back: it must still be the stored
    task, params and every event's payload included (status and progress follow the clock)."""
    body = {
        "scenario": "success",
        "room_id": 4321,
        "group_id": "课堂 7",
        "params": {"duration_s": 600, "duration_factor": 0.5, "progress_steps": 3},
    }
    created = client.post("/api/tasks", json=body)
    assert created.status_code == 201
    reply = created.get_json()
    reply.pop("warnings")
    stored = client.get(f"/api/tasks/{reply['task_id']}").get_json()
    assert reply == stored
    assert reply["params"] == body["params"]
    assert reply["events"][-1]["payload"]["EventData"]["GroupId"] == "课堂 7"
