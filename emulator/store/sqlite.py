"""The SQLite store (stdlib sqlite3, WAL): the embedded default behind `emulator.store.base.Store`.

Task creation, configuration and QA changes commit at once. The delivery hot path (attempts and
event states) is written behind: `WriteQueue` keeps those writes in order, a flusher thread
commits them in batches, and every read commits what is queued before it under the same lock,
so a read sees every write that came before it. A write the database refuses stays queued (never
dropped), is retried, and is reported by `health()` and as StorageError to readers. The queue is
bounded: a producer waits for room instead of growing memory.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from typing import Any

from emulator.store.base import (
    AttemptListener,
    DeliveryFilter,
    DuplicateTaskId,
    NewEvent,
    NewTask,
    RoomTaken,
    Row,
    StorageError,
    TaskFilter,
    rows_to_page,
)
from emulator.store.group import Committer, GroupCommit
from emulator.store.migrations import migrate
from emulator.store.owner import OwnerLock
from emulator.store.queries import SharedQueries
from emulator.store.rows import (
    ATTEMPT_COLUMNS,
    attempt_values,
    delivery_row,
    event_values,
    newest_page,
    newest_page_sql,
    task_values,
)
from emulator.store.writes import Discarded, WriteBehind, WriteQueue, sort_batch

log = logging.getLogger("tiw_emulator.store")

SQL_DELIVERING = "UPDATE events SET state = 'delivering' WHERE id = ? AND state = 'scheduled'"
SQL_SETTLE = "UPDATE events SET state = ?, attempts = ?, due_at = ?, payload = ? WHERE id = ?"
# A row names its task by the task's row number (migrations.V4): an attempt's from its event,
# else from its TaskId (COALESCE stops at the first that is not NULL). NULL when there is no
# task: an ad-hoc event's rows (no TaskId), or an attempt recorded with a TaskId that names no
# task, which `deliveries_loose` finds by that TaskId.
_TASK_ROW_OF_ID = "(SELECT row_no FROM tasks WHERE task_id = ?)"
SQL_ATTEMPT = (
    f"INSERT INTO deliveries ({', '.join(ATTEMPT_COLUMNS)}, task_row)"
    f" VALUES ({', '.join('?' * len(ATTEMPT_COLUMNS))},"
    f" COALESCE((SELECT task_row FROM events WHERE id = ?), {_TASK_ROW_OF_ID}))"
)
_EVENT_COLUMNS = (
    "task_id, seq, event_type, due_at, state, event_data, sign_mode, note, sdk_app_id,"
    " callback_url, task_row"
)
SQL_EVENT = f"INSERT INTO events ({_EVENT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
# An event not inserted with its task (ad-hoc, user-scheduled): its task found by TaskId.
SQL_EVENT_OF = (
    f"INSERT INTO events ({_EVENT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,{_TASK_ROW_OF_ID})"
)
SQL_TASK = (
    "INSERT INTO tasks (task_id, room_id, group_id, sdk_app_id, scenario, seed, params,"
    " callback_url, source, request_id, created_at, created_wall, queued_until, finish_at,"
    " outcome, error_code) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
UNFINISHED = "cancelled_at IS NULL AND (finish_at IS NULL OR finish_at > ?)"
# The room's unfinished task. The index is named: without statistics the planner may take the
# SdkAppId index (one value for most tasks) and scan them all, slowing creation linearly.
SQL_ROOM_BUSY = (
    "SELECT task_id FROM tasks INDEXED BY tasks_room WHERE room_id = ? AND sdk_app_id = ?"
    f" AND {UNFINISHED} LIMIT 1"
)
STATUS_SQL = {
    "cancelled": ("cancelled_at IS NOT NULL", 0),
    "finished": ("cancelled_at IS NULL AND finish_at IS NOT NULL AND finish_at <= ?", 1),
    "queued": (f"{UNFINISHED} AND queued_until > ?", 2),
    "processing": (f"{UNFINISHED} AND queued_until <= ?", 2),
}
RESET_TABLES = ("tasks", "task_plans", "events", "deliveries", "rules", "scenarios", "cloud_calls")


class SQLiteStore(WriteBehind, SharedQueries):
    """One connection guarded by a lock; safe to share between threads."""

    MARK = "?"
    shared = False
    commits_later = True  # group.Committer

    def __init__(
        self,
        path: str,
        *,
        max_pending: int = 50_000,
        max_deliveries: int = 500_000,
        max_cloud_calls: int = 100_000,
    ) -> None:
        self.location = path
        self.max_deliveries = max_deliveries
        self.max_cloud_calls = max_cloud_calls
        self._owner = OwnerLock(path) if path != ":memory:" else None
        try:
            self._conn = _connect(path)
        except BaseException:
            if self._owner:
                self._owner.release()
            raise
        self._lock = threading.RLock()
        self._listeners: list[AttemptListener] = []
        self._writes = WriteQueue(
            self._commit_batch, lock=self._lock, max_pending=max_pending, on_committed=self._notify
        )
        self._since_prune = 0
        self._creations: GroupCommit[tuple[NewTask, float]] = GroupCommit(self._commit_creations)
        self._later: Committer[tuple[NewTask, float]] = Committer(self._commit_creations)
        self._sync_error: str | None = (
            None  # the last refused synchronous write, until one succeeds
        )

    # -- lifecycle -------------------------------------------------------------------------
    def close(self) -> None:
        self._later.close()
        self._writes.stop()
        with self._lock, contextlib.suppress(StorageError):
            self._writes.flush_locked()
        with self._lock:
            self._conn.close()
        if self._owner:
            self._owner.release()

    def health(self) -> str | None:
        return self._writes.error or self._sync_error

    def limit_pages(self, pages: int | None) -> None:
        """Cap the file at `pages` pages (None: no cap): a real 'database or disk is full'.

        For fault drills and tests: SQLite refuses writes past the cap exactly as on a full disk.
        """
        with self._lock:
            self._conn.execute(f"PRAGMA max_page_count = {int(pages or 4294967294)}")

    # -- plumbing ----------------------------------------------------------------------------
    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        with self._lock:
            self._writes.flush_locked()
            return [dict(r) for r in self._guard(lambda: self._conn.execute(sql, args).fetchall())]

    def _write(self, statements: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run `statements` in one transaction, after every queued write (keeps the order)."""
        with self._lock:
            self._writes.flush_locked()
            return self._transact(statements)

    def _transact(self, statements: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run `statements` in one transaction now; called under the lock."""
        result = self._guard(lambda: _transaction(self._conn, statements), write=True)
        self._sync_error = None  # the database takes writes again
        return result

    def _guard(self, fn: Callable[[], Any], *, write: bool = False) -> Any:
        try:
            return fn()
        except sqlite3.IntegrityError:
            raise
        except sqlite3.Error as exc:
            if write:
                self._sync_error = _describe(exc)
            raise StorageError(_describe(exc)) from exc

    def _commit_batch(self, batch: list[tuple[str, Any]]) -> list[tuple[Future[Row] | None, Row]]:
        """Commit queued hot-path writes in one transaction; called under the lock."""
        done: list[tuple[Future[Row] | None, Row]] = []  # None: nobody waits for that row

        def run(conn: sqlite3.Connection) -> None:
            # One executemany per kind (writes.sort_batch says in which order). Attempt ids
            # are the last row id and the ones before it, as AUTOINCREMENT numbers one
            # writer's rows consecutively inside a transaction.
            grouped = sort_batch(batch)
            attempts, adhocs = grouped.attempts, grouped.adhocs
            settles, delivering = grouped.settles, [(op,) for op in grouped.delivering]
            if attempts:
                conn.executemany(SQL_ATTEMPT, [_attempt_args(row) for row, _, _ in attempts])
                last = int(conn.execute("SELECT last_insert_rowid()").fetchone()[0])
                first = last - len(attempts) + 1
                done.extend(
                    (future, {**row, "id": first + n})
                    for n, (row, future, _) in enumerate(attempts)
                )
            for row, future, adhoc in adhocs:
                row = {**row, "event_id": _insert_adhoc(conn, adhoc, row)}
                row_id = conn.execute(SQL_ATTEMPT, _attempt_args(row)).lastrowid
                done.append((future, {**row, "id": row_id}))
            conn.executemany(SQL_SETTLE, settles)
            conn.executemany(SQL_DELIVERING, delivering)
            self._since_prune += len(done)
            if self._since_prune >= 1000:
                self._since_prune = 0
                _prune(conn, "deliveries", self.max_deliveries)

        try:
            _transaction(self._conn, run)
        except sqlite3.Error as exc:
            raise StorageError(_describe(exc)) from exc
        self._sync_error = None  # the database takes writes again
        return done

    # -- configuration ---------------------------------------------------------------------
    def save_config(self, values: Mapping[str, Any]) -> None:
        rows = [(k, json.dumps(v)) for k, v in values.items()]
        self._write(
            lambda c: c.executemany(
                "INSERT OR REPLACE INTO config (key, value) VALUES (?, ?)", rows
            )
        )

    def add_rule(self, match: Mapping[str, Any], scenario: str, created_at: float) -> int:
        sql = "INSERT INTO rules (match, scenario, created_at) VALUES (?, ?, ?)"
        args = (json.dumps(dict(match)), scenario, created_at)
        return int(self._write(lambda c: c.execute(sql, args).lastrowid))

    def list_scenarios(self) -> list[Row]:
        return [{**r, "doc": json.loads(r["doc"])} for r in self._read("SELECT * FROM scenarios")]

    def save_scenario(self, name: str, doc: str) -> None:
        sql = "INSERT OR REPLACE INTO scenarios (name, doc) VALUES (?, ?)"
        self._write(lambda c: c.execute(sql, (name, doc)))

    def set_app_callback(self, sdk_app_id: int, url: str | None) -> None:
        if url is None:
            sql, args = "DELETE FROM app_callbacks WHERE sdk_app_id = ?", (sdk_app_id,)
        else:
            sql = "INSERT OR REPLACE INTO app_callbacks (sdk_app_id, url) VALUES (?, ?)"
            args = (sdk_app_id, url)  # type: ignore[assignment]
        self._write(lambda c: c.execute(sql, args))

    # -- tasks and events --------------------------------------------------------------------
    def creating(self, later: bool = False) -> contextlib.AbstractContextManager[None]:
        return self._later.announced() if later else self._creations.announced()

    def insert_task(self, task: NewTask, *, now: float) -> None:
        """Insert a task with its plan and events, committed before this returns.

        Group commit (`group.py`): the creations announced by `creating()` that arrive together
        share one transaction (a taken room or TaskId fails only its own creation: both are
        checked before any of its rows is written).
        """
        self._creations.submit((task, now))

    def insert_task_later(self, task: NewTask, *, now: float) -> Future[None]:
        """As insert_task, committed on the store's committer thread (`group.Committer`) with
        the creations queued beside it: the caller goes on at once."""
        return self._later.submit((task, now))

    def _commit_creations(self, batch: list[tuple[NewTask, float]]) -> list[BaseException | None]:
        """Commit creations in one transaction: for each, None or what refused it."""
        refused: list[BaseException | None] = [None] * len(batch)

        def run(conn: sqlite3.Connection) -> None:
            for n, (task, now) in enumerate(batch):
                try:
                    _insert_task(conn, task, now)
                except (RoomTaken, DuplicateTaskId) as exc:
                    refused[n] = exc  # refused before any of its rows was written

        try:
            # Not after the queued writes, unlike _write: they are attempts and event states of
            # tasks already stored, which a new task's rows neither read nor touch, and the
            # writer commits them within its interval. Flushing them here cost a second
            # transaction per creation batch.
            with self._lock:
                self._transact(run)
        except Exception as exc:  # the transaction failed: none of them is stored
            return [exc] * len(batch)
        return refused

    def unfinished_task(self, room_id: int, sdk_app_id: int, now: float) -> str | None:
        rows = self._read(SQL_ROOM_BUSY, (room_id, sdk_app_id, now))
        return str(rows[0]["task_id"]) if rows else None

    def get_task(self, task_id: str) -> Row | None:
        with self._lock:  # one consistent view: no reset between the row and its plan
            rows = self._read("SELECT * FROM tasks WHERE task_id = ?", (task_id,))
            rows = self._with_counts(rows)
        return rows[0] if rows else None

    def list_tasks(
        self, where: TaskFilter, *, now: float, limit: int, offset: int
    ) -> tuple[list[Row], int | None]:
        sql, args = task_query(where, now)
        with self._lock:  # one consistent view: no reset between the page and its plans
            rows = self._read(
                f"{sql} ORDER BY rowid DESC LIMIT ? OFFSET ?", [*args, limit + 1, offset]
            )
            page, more = rows_to_page(rows, limit)
            page = self._with_counts(page)
        return page, (offset + limit if more else None)

    def _with_counts(self, rows: list[Row]) -> list[Row]:
        """Add each task's plan and attempt counts (on indexes, for this page only)."""
        if not rows:
            return rows
        ids = [r["row_no"] for r in rows]
        marks = ",".join("?" * len(ids))
        plans = {
            r["task_row"]: r["plan"]
            for r in self._read(f"SELECT * FROM task_plans WHERE task_row IN ({marks})", ids)
        }
        attempts = {
            r["task_row"]: r
            for r in self._read(
                "SELECT task_row, COUNT(*) AS attempts, SUM(ok = 0) AS failed FROM deliveries"
                f" WHERE task_row IN ({marks}) GROUP BY task_row",
                ids,
            )
        }
        failed = {
            r["task_row"]: r["n"]
            for r in self._read(
                "SELECT task_row, COUNT(*) AS n FROM events WHERE state = 'failed'"
                f" AND task_row IN ({marks}) GROUP BY task_row",
                ids,
            )
        }
        for row in rows:
            row_no = row["row_no"]
            row["plan"] = plans[row_no]
            counts = attempts.get(row_no)
            row["attempts"] = counts["attempts"] if counts else 0
            row["failed_attempts"] = int(counts["failed"] or 0) if counts else 0
            row["undelivered_events"] = failed.get(row_no, 0)
        return rows

    def cancel_task(self, task_id: str, at: float) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute("UPDATE tasks SET cancelled_at = ? WHERE task_id = ?", (at, task_id))
            conn.execute(
                f"UPDATE events SET state = 'cancelled' WHERE task_row = {_TASK_ROW_OF_ID}"
                " AND state IN ('scheduled', 'delivering')",
                (task_id,),
            )

        self._write(run)

    def insert_events(self, events: list[NewEvent]) -> None:
        def run(conn: sqlite3.Connection) -> None:
            for event in events:
                event.id = _insert_event_of(conn, event)

        self._write(run)

    def task_events(self, task_id: str, limit: int = 1000) -> list[Row]:
        sql = f"SELECT * FROM events WHERE task_row = {_TASK_ROW_OF_ID} ORDER BY seq LIMIT ?"
        return self._read(sql, (task_id, limit))

    # -- the attempt log and the cloud-call log ----------------------------------------------
    def list_deliveries(
        self, where: DeliveryFilter, *, limit: int, before: int | None, after: int | None
    ) -> tuple[list[Row], int | None]:
        with self._lock:  # the task's row number and its page in one view
            sql, args = self.deliveries_query(where, limit=limit, before=before, after=after)
            return newest_page(self._read(sql, args), limit, delivery_row)

    def deliveries_query(
        self, where: DeliveryFilter, *, limit: int, before: int | None, after: int | None
    ) -> tuple[str, list[Any]]:
        """The page's SELECT: a task's attempts by its row number, or, when the TaskId names
        no task, the loose attempts that carry it (both on an index, newest first)."""
        task: tuple[str, Any] = ("task_id", None)
        loose: tuple[str, ...] = ()
        if where.task_id is not None:
            found = self._read("SELECT row_no FROM tasks WHERE task_id = ?", (where.task_id,))
            task = ("task_row", found[0]["row_no"]) if found else ("task_id", where.task_id)
            loose = () if found else ("task_row IS NULL",)  # what deliveries_loose holds
        filters = (
            task,
            ("ok", None if where.ok is None else int(where.ok)),
            ("status_code", where.status_code),
            ("event_type", where.event_type),
        )
        return newest_page_sql("deliveries", filters, limit, before, after, mark="?", also=loose)

    def log_cloud_call(self, at: float, action: str, task_id: str | None, record: str) -> None:
        sql = "INSERT INTO cloud_calls (at, action, task_id, record) VALUES (?, ?, ?, ?)"

        def run(conn: sqlite3.Connection) -> None:
            row_id = conn.execute(sql, (at, action, task_id, record)).lastrowid or 0
            if row_id % 1000 == 0:
                _prune(conn, "cloud_calls", self.max_cloud_calls)

        self._write(run)

    def reset(self) -> None:
        with self._lock:
            self._writes.discard_locked()

            def run(conn: sqlite3.Connection) -> None:
                for table in RESET_TABLES:
                    conn.execute(f"DELETE FROM {table}")

            self._transact(run)

    # -- for tests and tooling -----------------------------------------------------------------
    def explain(self, sql: str, args: Sequence[Any] = ()) -> list[str]:
        """SQLite's query plan for `sql` (the detail column of each step)."""
        rows = self._read(f"EXPLAIN QUERY PLAN {sql}", args)
        return [str(r["detail"]) for r in rows]


def task_query(where: TaskFilter, now: float) -> tuple[str, list[Any]]:
    """The SELECT and its arguments for a task filter (status is derived from the clock)."""
    conds, args = [], list[Any]()
    for column, value in (
        ("room_id", where.room_id),
        ("sdk_app_id", where.sdk_app_id),
        ("scenario", where.scenario),
        ("outcome", where.outcome),
        ("error_code", where.error_code),
    ):
        if value is not None:
            conds.append(f"{column} = ?")
            args.append(value)
    status = where.status
    if status is None and (where.outcome is not None or where.error_code is not None):
        status = "finished"  # an outcome shows only once the task has finished
    if status is not None:
        clause, nows = STATUS_SQL[status]
        conds.append(clause)
        args.extend([now] * nows)
    sql = "SELECT * FROM tasks" + (f" WHERE {' AND '.join(conds)}" if conds else "")
    return sql, args


def _connect(path: str) -> sqlite3.Connection:
    try:
        conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        conn.row_factory = sqlite3.Row
        if path != ":memory:":
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        migrate(conn)
        return conn
    except sqlite3.Error as exc:
        raise StorageError(f"cannot open database {path}: {_describe(exc)}") from exc


def _transaction(conn: sqlite3.Connection, statements: Callable[[sqlite3.Connection], Any]) -> Any:
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = statements(conn)
        conn.execute("COMMIT")
        return result
    except BaseException:
        # After some errors (e.g. SQLITE_FULL) SQLite has already rolled back: a second
        # ROLLBACK would hide the real error behind "no transaction is active".
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise


def _insert_task(conn: sqlite3.Connection, task: NewTask, now: float) -> None:
    """A task's rows: refused if its room has an unfinished task or its TaskId is taken."""
    busy = conn.execute(SQL_ROOM_BUSY, (task.room_id, task.sdk_app_id, now)).fetchone()
    if busy is not None:
        raise RoomTaken(busy[0])
    try:
        row_no = conn.execute(SQL_TASK, task_values(task)).lastrowid
    except sqlite3.IntegrityError:
        raise DuplicateTaskId(task.task_id) from None
    conn.execute("INSERT INTO task_plans (task_row, plan) VALUES (?, ?)", (row_no, task.plan))
    for event in task.events:
        event.task_id = task.task_id
        event.id = int(conn.execute(SQL_EVENT, (*event_values(event), row_no)).lastrowid or 0)


def _insert_adhoc(conn: sqlite3.Connection, event: NewEvent, attempt: Row) -> int:
    """An ad-hoc event's row, settled by its one attempt; returns its id."""
    event.state = "delivered" if attempt["ok"] else "failed"
    event.id = _insert_event_of(conn, event)
    conn.execute(
        "UPDATE events SET attempts = 1, payload = ? WHERE id = ?",
        (attempt["request_body"], event.id),
    )
    return event.id


def _insert_event_of(conn: sqlite3.Connection, event: NewEvent) -> int:
    """Insert an event not inserted with its task (SQL_EVENT_OF: its task found by TaskId);
    returns its id."""
    return int(conn.execute(SQL_EVENT_OF, (*event_values(event), event.task_id)).lastrowid or 0)


def _attempt_args(row: Row) -> list[Any]:
    """SQL_ATTEMPT's arguments: the attempt's values, then what finds its task's row number."""
    return [*attempt_values(row), row["event_id"], row["task_id"]]


def _prune(conn: sqlite3.Connection, table: str, keep: int) -> None:
    """Retention: keep the newest `keep` rows (ids are never reused, so an id cut is exact)."""
    conn.execute(f"DELETE FROM {table} WHERE id <= (SELECT MAX(id) FROM {table}) - ?", (keep,))


def _describe(exc: sqlite3.Error) -> str:
    return str(exc) or type(exc).__name__


__all__ = ["Discarded", "SQLiteStore", "task_query"]
