"""Row conversions shared by the stores: record dataclasses to column values, rows to API dicts."""

from __future__ import annotations

import json
from typing import Any

from emulator.store.base import DELIVERY_COLUMNS, NewEvent, NewTask, Row

# An attempt's columns as inserted (the id comes from the database).
ATTEMPT_COLUMNS: tuple[str, ...] = DELIVERY_COLUMNS[1:]


def task_values(t: NewTask) -> tuple[Any, ...]:
    return (
        t.task_id,
        t.room_id,
        t.group_id,
        t.sdk_app_id,
        t.scenario,
        t.seed,
        t.params,
        t.callback_url,
        t.source,
        t.request_id,
        t.created_at,
        t.created_wall,
        t.queued_until,
        t.finish_at,
        t.outcome,
        t.error_code,
    )


def event_values(e: NewEvent) -> tuple[Any, ...]:
    return (
        e.task_id,
        e.seq,
        e.event_type,
        e.due_at,
        e.state,
        e.event_data,
        e.sign_mode,
        e.note,
        e.sdk_app_id,
        e.callback_url,
    )


def column_value(key: str, value: Any) -> Any:
    if key in ("request_headers", "response_headers"):
        return None if value is None else json.dumps(value, ensure_ascii=False)
    if key == "ok":
        return int(bool(value))
    return value


def delivery_row(row: Row) -> Row:
    out = {k: row[k] for k in DELIVERY_COLUMNS}
    out["ok"] = bool(out["ok"])
    for key in ("request_headers", "response_headers"):
        if out[key] is not None:
            out[key] = json.loads(out[key])
    return out


def cloud_call_row(row: Row) -> Row:
    return {"id": row["id"], **json.loads(row["record"])}
