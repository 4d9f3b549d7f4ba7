"""The PostgreSQL store (psycopg 3 and its pool): `--db postgresql://...`, same semantics as SQLite,
shared by several emulator processes that behave as one emulator (`emulator.store.pg_shared`).

Ids come from identity columns inside the writing transaction; the room rule (one unfinished
task per room and SdkAppId) is enforced in `insert_task` under a transaction-scoped advisory
lock keyed by room and SdkAppId, so the database serialises racing creators, in one process or
several. The delivery hot path is written behind through the same `WriteQueue` as SQLite
(pipelined batches), every read commits what is queued before it, and a lost connection is a
StorageError: health() names it, queued writes stay queued and are retried until the server
answers again. A task's events are claimed by the process that inserts them; writes that change
shared state announce it to the other processes (NOTIFY) in the same transaction.
psycopg is imported by this module and the pg_* ones only (open_store imports them for a
postgresql:// URL), so the SQLite default needs none of it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from typing import Any

import msgspec
import psycopg
from psycopg import errors as pg_errors
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from emulator.core.redact import mask_url
from emulator.store import pg_shared
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
from emulator.store.pg_connection import check_idle, describe
from emulator.store.pg_migrations import migrate
from emulator.store.pg_shared import SharedPostgres
from emulator.store.queries import SharedQueries
from emulator.store.rows import (
    ATTEMPT_COLUMNS,
    delivery_row,
    event_values,
    newest_page,
    newest_page_sql,
    task_values,
)
from emulator.store.sqlite import UNFINISHED, task_query
from emulator.store.writes import WriteBehind, WriteQueue, sort_batch

log = logging.getLogger("tiw_emulator.store")

# The hot path's statements take a batch's rows as arrays, one per column (see _commit_batch).
ATTEMPT_TYPES = {
    "event_id": "bigint",
    "task_id": "text",
    "event_type": "text",
    "attempt": "integer",
    "url": "text",
    "request_headers": "text",
    "request_body": "text",
    "status_code": "integer",
    "response_headers": "text",
    "response_body": "text",
    "error": "text",
    "started_at": "float8",
    "duration_ms": "float8",
    "ok": "boolean",
    "emulated_at": "float8",
    "redelivery_of": "bigint",
    "possible_duplicate": "boolean",
}
SQL_ATTEMPTS = (
    f"INSERT INTO deliveries ({', '.join(ATTEMPT_COLUMNS)})"
    f" SELECT * FROM unnest({', '.join(f'%b::{ATTEMPT_TYPES[c]}[]' for c in ATTEMPT_COLUMNS)})"
    " RETURNING id"
)
SQL_DELIVERING_MANY = (
    "UPDATE events SET state = 'delivering' WHERE id = ANY(%b::bigint[]) AND state = 'scheduled'"
)
SQL_SETTLES = (
    "UPDATE events e SET state = u.state, attempts = u.attempts, due_at = u.due_at,"
    " payload = u.payload FROM unnest(%b::text[], %b::integer[], %b::float8[], %b::text[],"
    " %b::bigint[]) AS u(state, attempts, due_at, payload, id) WHERE e.id = u.id"
)
SQL_EVENT = (
    "INSERT INTO events (task_id, seq, event_type, due_at, state, event_data, sign_mode, note,"
    " sdk_app_id, callback_url, claimed_by) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) RETURNING id"
)
SQL_TASK = (
    "INSERT INTO tasks (task_id, room_id, group_id, sdk_app_id, scenario, seed, params,"
    " callback_url, source, request_id, created_at, created_wall, queued_until, finish_at,"
    " outcome, error_code, plan) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"
)
SQL_UNFINISHED = (
    "SELECT task_id FROM tasks WHERE room_id = %s AND sdk_app_id = %s AND "
    + UNFINISHED.replace("?", "%s")
    + " LIMIT 1"
)
# An ad-hoc event and its one attempt in one statement (a pipeline cannot read the event's id
# back in between): the event row, settled by the attempt, then the attempt pointing at it.
SQL_ADHOC_ATTEMPT = (
    "WITH e AS (INSERT INTO events (task_id, seq, event_type, due_at, state, event_data,"
    " sign_mode, note, sdk_app_id, callback_url, attempts, payload)"
    " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,1,%s) RETURNING id)"
    f" INSERT INTO deliveries ({', '.join(ATTEMPT_COLUMNS)})"
    f" SELECT {', '.join('e.id' if c == 'event_id' else '%s' for c in ATTEMPT_COLUMNS)}"
    " FROM e RETURNING id, event_id"
)
_encode_json = msgspec.json.Encoder().encode  # the JSON json.dumps gives, several times faster
RESET_TABLES = ("tasks", "events", "deliveries", "rules", "scenarios", "cloud_calls")
Conn = Any  # psycopg.Connection[Row]


class PostgresStore(SharedPostgres, WriteBehind, SharedQueries):
    """A connection pool, a listening connection and this process's entry in the registry of
    processes sharing the database; safe to share between threads."""

    MARK = "%s"
    shared = True
    commits_later = False  # insert_task_later commits before it returns

    def __init__(
        self,
        url: str,
        *,
        max_pending: int = 50_000,
        max_deliveries: int = 500_000,
        max_cloud_calls: int = 100_000,
        pool_size: int = 18,  # the 16 HTTP worker threads, the writer and one spare
        timeout_s: float = 5.0,
        lease_s: float = 5.0,
    ) -> None:
        """Connect, migrate and join the processes sharing the database; StorageError in one
        line (password masked) if that fails. A process whose heartbeat is older than
        `lease_s` seconds is taken for dead and its claimed events are taken over."""
        self.location = mask_url(url)
        self.max_deliveries = max_deliveries
        self.max_cloud_calls = max_cloud_calls
        self.lease_s = lease_s
        self.beat_s = pg_shared.beat_s(lease_s)
        self._url = url
        self._timeout = timeout_s
        self._server_down = False
        try:
            with self._connect() as conn:
                migrate(conn)
        except psycopg.Error as exc:
            raise StorageError(f"cannot open database {self.location}: {describe(exc)}") from None
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            kwargs={
                "autocommit": True,
                "row_factory": dict_row,
                "application_name": "tiw-emulator",
            },
            check=check_idle,
            timeout=timeout_s,
            # Give up a background reconnection soon: the next caller starts a fresh one at
            # once, where a long exponential backoff would keep a returned server waiting.
            reconnect_timeout=3.0,
            name="tiw-emulator",
            open=False,
        )
        try:
            self._pool.open(wait=True, timeout=timeout_s)
            with self._pool.connection() as conn:
                self.process_id = pg_shared.register(conn, f"tiw-emulator pid {os.getpid()}")
        except (psycopg.Error, PoolTimeout) as exc:
            self._pool.close()
            raise StorageError(f"cannot open database {self.location}: {describe(exc)}") from None
        self._listener = pg_shared.Listener(url, self.process_id, timeout_s)
        try:
            self._listener.connect()
            with self._pool.connection() as conn:  # the first beat: listening from now on
                pg_shared.heartbeat(conn, self.process_id)
        except psycopg.Error as exc:
            self._pool.close()
            raise StorageError(f"cannot open database {self.location}: {describe(exc)}") from None
        self._lock = threading.RLock()
        self._listeners: list[AttemptListener] = []
        self._writes = WriteQueue(
            self._commit_batch, lock=self._lock, max_pending=max_pending, on_committed=self._notify
        )
        self._since_prune = 0
        self._sync_error: str | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def close(self) -> None:
        """Commit what is queued, give this process's pending events back (another process
        takes them at once) and leave the registry."""
        self._writes.stop()
        with self._lock, contextlib.suppress(StorageError):
            self._writes.flush_locked()
        try:
            with self._connection(timeout=2.0) as conn:
                pg_shared.release(conn, self.process_id)
        except StorageError as exc:  # the lease runs out instead; peers take them then
            log.warning("could not release this process's events: %s", exc)
        self._listener.close()
        self._pool.close()

    def health(self) -> str | None:
        return self._writes.error or self._sync_error or self._probe() or self._listener.error

    def _probe(self) -> str | None:
        """Ask the server on a pooled connection; None when it answers."""
        try:
            with self._connection(timeout=min(self._timeout, 2.0)) as conn:
                conn.execute("SELECT 1")
        except StorageError as exc:
            return str(exc)
        return None

    def _connect(self) -> Conn:
        return psycopg.connect(
            self._url,
            autocommit=True,
            row_factory=dict_row,
            connect_timeout=max(1, int(self._timeout)),
            application_name=f"tiw-emulator pid {os.getpid()}",
        )

    # -- plumbing ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def _connection(self, timeout: float | None = None) -> Iterator[Conn]:
        """A pooled connection; a refused or lost connection becomes StorageError."""
        wait = timeout or self._timeout
        if self._server_down:
            wait = min(wait, 0.5)  # known away: answer 503 at once rather than after the wait
        try:
            with self._pool.connection(timeout=wait) as conn:
                self._server_down = False
                yield conn
        except (pg_errors.IntegrityError, RoomTaken, DuplicateTaskId):
            raise
        except PoolTimeout:
            raise StorageError(self._why_no_connection()) from None
        except psycopg.Error as exc:
            raise StorageError(describe(exc)) from None

    def _why_no_connection(self) -> str:
        """The pool only says it timed out: connect once directly to learn why."""
        try:
            psycopg.connect(self._url, connect_timeout=2).close()
        except psycopg.Error as exc:
            self._server_down = True
            return f"PostgreSQL connection lost: {describe(exc)}"
        return f"no free PostgreSQL connection within {self._timeout:g} s (all busy)"

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        with self._lock:
            self._writes.flush_locked()
        with self._connection() as conn:
            return list(conn.execute(sql, args).fetchall())

    def _write(self, statements: Callable[[Conn], Any]) -> Any:
        """Run `statements` in one transaction, after every queued write (keeps the order)."""
        with self._lock:
            self._writes.flush_locked()
            try:
                with self._connection() as conn, conn.transaction():
                    result = statements(conn)
            except StorageError as exc:
                self._sync_error = str(exc)
                raise
            self._sync_error = None
            return result

    def _commit_batch(self, batch: list[tuple[str, Any]]) -> list[tuple[Future[Row] | None, Row]]:
        """Commit queued hot-path writes in one transaction; called under the lock.

        As in the SQLite store: one statement per kind, in the order `writes.sort_batch`
        gives (attempts, each event's last settle, the marks still due), each taking its rows
        as arrays, so a batch of thousands is a handful of round trips. The arrays go in binary
        (`%b`): psycopg escapes each element of a text-format array with a regex substitution,
        which was 85% of the writer's CPU. Measured on the in-process engine (bench/pg.py,
        8,000 callbacks): one statement per row, 255 µs of CPU per callback; arrays as text,
        199; binary, 3× less writer CPU again (yappi: 3.2 s -> 1.1 s of the writer thread).
        """
        grouped = sort_batch(batch)
        attempts, adhocs, delivering = grouped.attempts, grouped.adhocs, grouped.delivering
        done: list[tuple[Future[Row] | None, Row]] = []  # None: nobody waits for that row
        with self._connection() as conn:
            with conn.transaction():
                if attempts:
                    columns = [
                        [column_value(k, row[k]) for row, _, _ in attempts] for k in ATTEMPT_COLUMNS
                    ]
                    # The identity column numbers the rows in the order unnest yields them
                    # (the arrays' order), so the sorted ids pair with the rows in order.
                    ids = sorted(r["id"] for r in conn.execute(SQL_ATTEMPTS, columns))
                    done.extend(
                        (future, {**row, "id": row_id})
                        for (row, future, _), row_id in zip(attempts, ids, strict=True)
                    )
                for row, future, adhoc in adhocs:
                    adhoc.state = "delivered" if row["ok"] else "failed"
                    values = [
                        *event_values(adhoc),
                        row["request_body"],
                        *(column_value(k, row[k]) for k in ATTEMPT_COLUMNS if k != "event_id"),
                    ]
                    stored = conn.execute(SQL_ADHOC_ATTEMPT, values).fetchone()
                    done.append(
                        (future, {**row, "id": stored["id"], "event_id": stored["event_id"]})
                    )
                if grouped.settles:
                    columns = [list(c) for c in zip(*grouped.settles, strict=True)]
                    conn.execute(SQL_SETTLES, columns)
                if delivering:
                    conn.execute(SQL_DELIVERING_MANY, (delivering,))
            self._since_prune += len(done)
            if self._since_prune >= 1000:
                self._since_prune = 0
                _prune(conn, "deliveries", self.max_deliveries)
        self._sync_error = None  # the database takes writes again
        return done

    # -- configuration ---------------------------------------------------------------------
    def save_config(self, values: Mapping[str, Any]) -> None:
        rows = [(k, json.dumps(v)) for k, v in values.items()]
        sql = (
            "INSERT INTO config (key, value) VALUES (%s, %s)"
            " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
        )

        def run(conn: Conn) -> None:
            conn.cursor().executemany(sql, rows)
            self._changed(conn, "config")

        self._write(run)

    def add_rule(self, match: Mapping[str, Any], scenario: str, created_at: float) -> int:
        sql = "INSERT INTO rules (match, scenario, created_at) VALUES (%s, %s, %s) RETURNING id"
        args = (json.dumps(dict(match)), scenario, created_at)

        def run(conn: Conn) -> int:
            self._changed(conn, "rules")
            return int(conn.execute(sql, args).fetchone()["id"])

        return int(self._write(run))

    def list_scenarios(self) -> list[Row]:
        rows = self._read("SELECT * FROM scenarios ORDER BY name")
        return [{**r, "doc": json.loads(r["doc"])} for r in rows]

    def save_scenario(self, name: str, doc: str) -> None:
        sql = (
            "INSERT INTO scenarios (name, doc) VALUES (%s, %s)"
            " ON CONFLICT (name) DO UPDATE SET doc = EXCLUDED.doc"
        )

        def run(conn: Conn) -> None:
            conn.execute(sql, (name, doc))
            self._changed(conn, "scenarios")

        self._write(run)

    def set_app_callback(self, sdk_app_id: int, url: str | None) -> None:
        if url is None:
            sql, args = "DELETE FROM app_callbacks WHERE sdk_app_id = %s", (sdk_app_id,)
        else:
            sql = (
                "INSERT INTO app_callbacks (sdk_app_id, url) VALUES (%s, %s)"
                " ON CONFLICT (sdk_app_id) DO UPDATE SET url = EXCLUDED.url"
            )
            args = (sdk_app_id, url)  # type: ignore[assignment]

        def run(conn: Conn) -> None:
            conn.execute(sql, args)
            self._changed(conn, "app_callbacks")

        self._write(run)

    # -- tasks and events --------------------------------------------------------------------
    def creating(self, later: bool = False) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()  # each creation is its own transaction (a round trip)

    def insert_task(self, task: NewTask, *, now: float) -> None:
        def run(conn: Conn) -> None:
            for event in task.events:
                event.task_id = task.task_id
            try:
                # One round trip: the statements still run in order on the server, so the room
                # check takes its snapshot after the lock is granted. Creators of the same room
                # and SdkAppId queue on the lock until the first commits; a busy room rolls the
                # speculative inserts back with the transaction.
                with conn.pipeline():
                    conn.execute(
                        "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                        (f"room:{task.room_id}:{task.sdk_app_id}",),
                    )
                    busy = conn.execute(SQL_UNFINISHED, (task.room_id, task.sdk_app_id, now))
                    conn.execute(SQL_TASK, (*task_values(task), task.plan))
                    ids = [
                        conn.execute(SQL_EVENT, (*event_values(e), self.process_id))
                        for e in task.events
                    ]
            except pg_errors.UniqueViolation:
                raise DuplicateTaskId(task.task_id) from None
            holder = busy.fetchone()
            if holder is not None:
                raise RoomTaken(holder["task_id"])
            for event, cur in zip(task.events, ids, strict=True):
                event.id = int(cur.fetchone()["id"])

        self._write(run)

    def insert_task_later(self, task: NewTask, *, now: float) -> Future[None]:
        """As insert_task, done before this returns (a creation here is one round trip to the
        server, with nothing to batch it with): the future comes settled."""
        done: Future[None] = Future()
        try:
            self.insert_task(task, now=now)
        except Exception as exc:  # RoomTaken, DuplicateTaskId, StorageError: the caller's
            done.set_exception(exc)
        else:
            done.set_result(None)
        return done

    def unfinished_task(self, room_id: int, sdk_app_id: int, now: float) -> str | None:
        rows = self._read(SQL_UNFINISHED, (room_id, sdk_app_id, now))
        return str(rows[0]["task_id"]) if rows else None

    def get_task(self, task_id: str) -> Row | None:
        rows = self._with_counts(self._read("SELECT * FROM tasks WHERE task_id = %s", (task_id,)))
        return rows[0] if rows else None

    def list_tasks(
        self, where: TaskFilter, *, now: float, limit: int, offset: int
    ) -> tuple[list[Row], int | None]:
        sql, args = task_query_pg(where, now)
        rows = self._read(
            f"{sql} ORDER BY row_no DESC LIMIT %s OFFSET %s", [*args, limit + 1, offset]
        )
        page, more = rows_to_page(rows, limit)
        return self._with_counts(page), (offset + limit if more else None)

    def _with_counts(self, rows: list[Row]) -> list[Row]:
        """Add each task's attempt counts (on indexes, for this page only)."""
        if not rows:
            return rows
        ids = [r["task_id"] for r in rows]
        attempts = {
            r["task_id"]: r
            for r in self._read(
                "SELECT task_id, COUNT(*) AS attempts, COUNT(*) FILTER (WHERE NOT ok) AS failed"
                " FROM deliveries WHERE task_id = ANY(%s) GROUP BY task_id",
                (ids,),
            )
        }
        failed = {
            r["task_id"]: r["n"]
            for r in self._read(
                "SELECT task_id, COUNT(*) AS n FROM events WHERE state = 'failed'"
                " AND task_id = ANY(%s) GROUP BY task_id",
                (ids,),
            )
        }
        for row in rows:
            counts = attempts.get(row["task_id"])
            row["attempts"] = int(counts["attempts"]) if counts else 0
            row["failed_attempts"] = int(counts["failed"] or 0) if counts else 0
            row["undelivered_events"] = int(failed.get(row["task_id"], 0))
        return rows

    def cancel_task(self, task_id: str, at: float) -> None:
        def run(conn: Conn) -> None:
            conn.execute("UPDATE tasks SET cancelled_at = %s WHERE task_id = %s", (at, task_id))
            conn.execute(
                "UPDATE events SET state = 'cancelled' WHERE task_id = %s"
                " AND state IN ('scheduled', 'delivering')",
                (task_id,),
            )
            self._changed(conn, "cancel", task_id)

        self._write(run)

    def insert_events(self, events: list[NewEvent]) -> None:
        self._write(lambda conn: _insert_events(conn, events, self.process_id))

    # -- the attempt log and the cloud-call log ----------------------------------------------
    def list_deliveries(
        self, where: DeliveryFilter, *, limit: int, before: int | None, after: int | None
    ) -> tuple[list[Row], int | None]:
        filters = (
            ("task_id", where.task_id),
            ("ok", where.ok),
            ("status_code", where.status_code),
            ("event_type", where.event_type),
        )
        sql, args = newest_page_sql("deliveries", filters, limit, before, after, mark="%s")
        return newest_page(self._read(sql, args), limit, delivery_row)

    def log_cloud_call(self, at: float, action: str, task_id: str | None, record: str) -> None:
        sql = (
            "INSERT INTO cloud_calls (at, action, task_id, record) VALUES (%s, %s, %s, %s)"
            " RETURNING id"
        )

        def run(conn: Conn) -> None:
            row_id = conn.execute(sql, (at, action, task_id, record)).fetchone()["id"]
            if row_id % 1000 == 0:
                _prune(conn, "cloud_calls", self.max_cloud_calls)

        self._write(run)

    def reset(self) -> None:
        with self._lock:
            self._writes.discard_locked()

            def run(conn: Conn) -> None:
                for table in RESET_TABLES:
                    conn.execute(f"DELETE FROM {table}")
                self._changed(conn, "reset")

            self._write(run)

    # -- for tests and tooling -----------------------------------------------------------------
    def explain(self, sql: str, args: Sequence[Any] = ()) -> list[str]:
        """PostgreSQL's plan for `sql`, seq and bitmap scans discouraged (test tables are tiny)."""
        with self._connection() as conn, conn.transaction():
            conn.execute("SET LOCAL enable_seqscan = off")
            conn.execute("SET LOCAL enable_bitmapscan = off")
            rows = conn.execute(f"EXPLAIN {sql}", args).fetchall()
        return [str(r["QUERY PLAN"]) for r in rows]


def task_query_pg(where: TaskFilter, now: float) -> tuple[str, list[Any]]:
    """The SQLite store's task filter with PostgreSQL placeholders (the SQL is otherwise shared)."""
    sql, args = task_query(where, now)
    return sql.replace("?", "%s"), args


def _insert_events(conn: Conn, events: list[NewEvent], claimed_by: int) -> None:
    cursors = []
    with conn.pipeline():
        for event in events:
            cursors.append(conn.execute(SQL_EVENT, (*event_values(event), claimed_by)))
    for event, cur in zip(events, cursors, strict=True):
        event.id = int(cur.fetchone()["id"])


def _prune(conn: Conn, table: str, keep: int) -> None:
    """Retention: keep the newest `keep` rows (ids are never reused, so an id cut is exact)."""
    conn.execute(f"DELETE FROM {table} WHERE id <= (SELECT MAX(id) FROM {table}) - %s", (keep,))


def column_value(key: str, value: Any) -> Any:
    """An attempt's value as PostgreSQL stores it (`ok` a real boolean, headers JSON)."""
    if key in ("request_headers", "response_headers"):
        return None if value is None else _encode_json(value).decode()
    if key in ("ok", "possible_duplicate"):
        return bool(value)
    return value


__all__ = ["PostgresStore", "task_query_pg"]
