"""SQLite persistence (WAL): tasks, events, delivery attempts, config, rules, user scenarios.

Task creation commits at once (a created task survives kill -9). The delivery hot path only
queues its writes; a flusher thread commits them in batches, and every read flushes first, so
readers never see stale state.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS config (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (
    task_id TEXT PRIMARY KEY, room_id INTEGER NOT NULL, group_id TEXT NOT NULL,
    sdk_app_id INTEGER NOT NULL, scenario TEXT NOT NULL, seed INTEGER NOT NULL,
    params TEXT NOT NULL, callback_url TEXT, source TEXT NOT NULL, request_id TEXT,
    created_at REAL NOT NULL, created_wall REAL NOT NULL, finish_at REAL,
    cancelled_at REAL, plan TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tasks_room ON tasks (room_id, sdk_app_id);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY, task_id TEXT, seq INTEGER NOT NULL, event_type TEXT NOT NULL,
    due_at REAL NOT NULL, state TEXT NOT NULL, event_data TEXT NOT NULL,
    sign_mode TEXT NOT NULL, note TEXT NOT NULL DEFAULT '', attempts INTEGER NOT NULL DEFAULT 0,
    payload TEXT, sdk_app_id INTEGER NOT NULL, callback_url TEXT
);
CREATE INDEX IF NOT EXISTS events_task ON events (task_id, seq);
CREATE INDEX IF NOT EXISTS events_state ON events (state);
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY, event_id INTEGER, task_id TEXT, event_type TEXT NOT NULL,
    attempt INTEGER NOT NULL, url TEXT, request_body TEXT NOT NULL, status_code INTEGER,
    response_body TEXT, error TEXT, started_at REAL NOT NULL, duration_ms REAL NOT NULL,
    ok INTEGER NOT NULL, emulated_at REAL NOT NULL, redelivery_of INTEGER
);
CREATE INDEX IF NOT EXISTS deliveries_task ON deliveries (task_id, id);
CREATE TABLE IF NOT EXISTS rules (
    id INTEGER PRIMARY KEY, match TEXT NOT NULL, scenario TEXT NOT NULL, created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS scenarios (name TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS app_callbacks (sdk_app_id INTEGER PRIMARY KEY, url TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cloud_calls (
    id INTEGER PRIMARY KEY, at REAL NOT NULL, action TEXT NOT NULL, record TEXT NOT NULL
);
"""

Row = dict[str, Any]


class Store:
    """One SQLite connection guarded by a lock; safe to share between threads."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        if path != ":memory:":
            self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(SCHEMA)
        columns = {r[1] for r in self._conn.execute("PRAGMA table_info(tasks)")}
        if "request_id" not in columns:  # databases from before cloud API request ids
            self._conn.execute("ALTER TABLE tasks ADD COLUMN request_id TEXT")
        self._pending: list[tuple[str, Sequence[Any]]] = []
        self._pending_lock = threading.Lock()

    # -- write-behind --------------------------------------------------------------------
    def defer(self, sql: str, params: Sequence[Any]) -> None:
        """Queue a write; it is committed by the next flush (at the latest, before any read)."""
        with self._pending_lock:
            self._pending.append((sql, params))

    def flush(self) -> int:
        with self._pending_lock:
            batch, self._pending = self._pending, []
        if not batch:
            return 0
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                for sql, group in itertools.groupby(batch, key=lambda item: item[0]):
                    self._conn.executemany(sql, [params for _, params in group])
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return len(batch)

    def start_flusher(self, interval_s: float = 0.05) -> None:
        """Commit queued writes every `interval_s` from a daemon thread until close()."""
        self._stop = threading.Event()

        def run() -> None:
            while not self._stop.wait(interval_s):
                self.flush()

        self._flusher = threading.Thread(target=run, name="tiw-store-flusher", daemon=True)
        self._flusher.start()

    # -- plain access --------------------------------------------------------------------
    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one write now (flushing queued writes first, to keep their order)."""
        self.flush()
        with self._lock:
            cur = self._conn.execute(sql, params)
            return int(cur.lastrowid or 0)

    def transaction(self, statements: Iterable[tuple[str, Sequence[Any]]]) -> None:
        self.flush()
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                for sql, params in statements:
                    self._conn.execute(sql, params)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        self.flush()
        with self._lock:
            return [dict(r) for r in self._conn.execute(sql, params).fetchall()]

    def query_one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        rows = self.query(sql, params)
        return rows[0] if rows else None

    def close(self) -> None:
        stop = getattr(self, "_stop", None)
        if stop is not None:
            stop.set()
            self._flusher.join(timeout=2)
        self.flush()
        with self._lock:
            self._conn.close()

    # -- config --------------------------------------------------------------------------
    def load_config(self) -> dict[str, Any]:
        return {r["key"]: json.loads(r["value"]) for r in self.query("SELECT * FROM config")}

    def save_config(self, values: dict[str, Any]) -> None:
        self.transaction(
            ("INSERT OR REPLACE INTO config (key, value) VALUES (?, ?)", (k, json.dumps(v)))
            for k, v in values.items()
        )

    def reset(self) -> None:
        """Forget tasks, events, deliveries, rules, user scenarios and cloud-call logs."""
        with self._pending_lock:
            self._pending.clear()
        self.transaction(
            (f"DELETE FROM {table}", ())
            for table in ("tasks", "events", "deliveries", "rules", "scenarios", "cloud_calls")
        )

    def max_id(self, table: str) -> int:
        row = self.query_one(f"SELECT COALESCE(MAX(id), 0) AS m FROM {table}")
        return int(row["m"]) if row else 0
