"""Store records for tests that talk to a store directly (no planning, no HTTP)."""

from __future__ import annotations

from typing import Any

from emulator.store.base import NewEvent, NewTask


def an_event(**overrides: Any) -> NewEvent:
    """A scheduled OfflineRecordFinished event; `overrides` replace any field."""
    fields: dict[str, Any] = {
        "seq": 1,
        "event_type": "OfflineRecordFinished",
        "due_at": 5.0,
        "state": "scheduled",
        "event_data": "{}",
        "sign_mode": "valid",
        "note": "",
        "sdk_app_id": 1400000001,
        "callback_url": None,
    }
    return NewEvent(**{**fields, **overrides})


def a_task(task_id: str, room_id: int, seed: int = 0, **overrides: Any) -> NewTask:
    """An unfinished `success` task in `room_id` (finished at emulated 5.0, no events)."""
    fields: dict[str, Any] = {
        "task_id": task_id,
        "room_id": room_id,
        "group_id": str(room_id),
        "sdk_app_id": 1400000001,
        "scenario": "success",
        "seed": seed,
        "params": "{}",
        "callback_url": None,
        "source": "control",
        "request_id": None,
        "created_at": 0.0,
        "created_wall": 0.0,
        "queued_until": 1.0,
        "finish_at": 5.0,
        "outcome": "success",
        "error_code": None,
        "plan": "{}",
    }
    return NewTask(**{**fields, **overrides})
