"""Row conversions shared by the stores: record dataclasses to column values, rows to API dicts."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

import msgspec

from emulator.store.base import DELIVERY_COLUMNS, NewEvent, NewTask, Row, rows_to_page

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


_HEADERS_AT = [ATTEMPT_COLUMNS.index(k) for k in ("request_headers", "response_headers")]
_FLAGS_AT = [ATTEMPT_COLUMNS.index(k) for k in ("ok", "possible_duplicate")]
_encode_json = msgspec.json.Encoder().encode  # 10x json.dumps on the hot path; the same JSON


def attempt_values(row: Row) -> list[Any]:
    """An attempt's values in ATTEMPT_COLUMNS order, as SQLite stores them (the hot path)."""
    values = [row[k] for k in ATTEMPT_COLUMNS]
    for at in _HEADERS_AT:
        if values[at] is not None:
            values[at] = _encode_json(values[at]).decode()
    for at in _FLAGS_AT:
        values[at] = int(bool(values[at]))
    return values


def delivery_row(row: Row) -> Row:
    out = {k: row[k] for k in DELIVERY_COLUMNS}
    out["ok"] = bool(out["ok"])
    out["possible_duplicate"] = bool(out["possible_duplicate"])
    for key in ("request_headers", "response_headers"):
        if out[key] is not None:
            out[key] = json.loads(out[key])
    return out


def cloud_call_row(row: Row) -> Row:
    return {"id": row["id"], **json.loads(row["record"])}


def newest_page_sql(
    table: str,
    filters: Iterable[tuple[str, Any]],
    limit: int,
    before: int | None,
    after: int | None,
    *,
    mark: str,
    also: Iterable[str] = (),
) -> tuple[str, list[Any]]:
    """The query for the newest `limit` (+1) rows by id matching `filters` (None: any) and the
    conditions `also` (SQL without arguments), below `before` and above `after`; `mark` is the
    driver's placeholder."""
    given = [(column, value) for column, value in filters if value is not None]
    conds = [*also, *(f"{column} = {mark}" for column, _ in given)]
    args = [value for _, value in given]
    for bound, op in ((before, "<"), (after, ">")):
        if bound is not None:
            conds.append(f"id {op} {mark}")
            args.append(bound)
    where = f" WHERE {' AND '.join(conds)}" if conds else ""
    return f"SELECT * FROM {table}{where} ORDER BY id DESC LIMIT {mark}", [*args, limit + 1]


def newest_page(
    rows: list[Row], limit: int, convert: Callable[[Row], Row]
) -> tuple[list[Row], int | None]:
    """The page oldest first, and the cursor to older rows (None: this is the last page)."""
    page, more = rows_to_page(rows, limit)
    page.reverse()
    return [convert(r) for r in page], (page[0]["id"] if more and page else None)
