"""How the core shows stored rows: a task (status derived from its plan and the clock), an event."""

from __future__ import annotations

import json
from typing import Any

from emulator.core.redact import mask_url
from emulator.core.timeline import Plan
from emulator.store.base import Row


def task_view(row: Row, now: float, plan: Plan | None = None) -> dict[str, Any]:
    """The control API's task; `plan` saves parsing `row["plan"]` when the caller has it."""
    plan = plan or Plan.from_dict(json.loads(row["plan"]))
    if row.get("cancelled_at") is not None:
        status, progress = "cancelled", plan.status_at(row["cancelled_at"])[1]
    else:
        status, progress = plan.status_at(now)
    finished = status == "finished"
    params = row["params"]
    return {
        "task_id": row["task_id"],
        "room_id": row["room_id"],
        "group_id": row["group_id"],
        "sdk_app_id": row["sdk_app_id"],
        "scenario": row["scenario"],
        "status": status,
        "progress": progress,
        "outcome": plan.outcome if finished else None,
        "error": plan.error if finished else None,
        "result": plan.result if finished and plan.outcome == "success" else None,
        "created_at": row["created_at"],
        "created_at_wall": row["created_wall"],
        "finish_at": plan.finish_at,
        "seed": row["seed"],
        "params": json.loads(params) if isinstance(params, str) else params,
        "callback_url": mask_url(row["callback_url"]),
        "source": row["source"],
        "request_id": row["request_id"],  # the cloud API call that created it, if any
        "deliveries": {
            "attempts": row.get("attempts", 0),
            "failed_attempts": row.get("failed_attempts", 0),
            "undelivered_events": row.get("undelivered_events", 0),
        },
    }


def event_view(row: Row, data: dict[str, Any] | None = None) -> dict[str, Any]:
    """An event as shown; `data` saves parsing `row["event_data"]` when the caller has it."""
    if row["payload"]:
        payload = json.loads(row["payload"])
    else:  # not sent yet: the envelope as it will go out, before Timestamp and Sign are set
        payload = {
            "Timestamp": None,
            "SdkAppId": row["sdk_app_id"],
            "EventType": row["event_type"],
            "EventData": json.loads(row["event_data"]) if data is None else data,
        }
    return {
        "seq": row["seq"],
        "event_type": row["event_type"],
        "due_at": row["due_at"],
        "state": row["state"],
        "attempts": row["attempts"],
        "sign": row["sign_mode"],
        "note": row["note"],
        "payload": payload,
    }


def delivery_view(row: Row) -> Row:
    """An attempt as shown (API, dashboard, listeners): a password in its URL masked."""
    url = row.get("url")
    shown = mask_url(url)
    return row if shown == url else {**row, "url": shown}
