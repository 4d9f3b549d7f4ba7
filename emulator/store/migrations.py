"""Versioned schema migrations for the SQLite store (`PRAGMA user_version` is the version).

Version 1 is the schema of the first release (0.1.0), which set no version: a database with a
`tasks` table and user_version 0 is taken as version 1. Every start runs the steps above the
stored version, each in its own transaction, so a database written by any release opens.
"""

from __future__ import annotations

import logging
import sqlite3
import time

log = logging.getLogger("tiw_emulator.store")

V1 = """
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

# Version 2: columns and indexes so lists filter, sort and page in SQL (one index per filter,
# so each walks its index in rowid order and never sorts); plans (a few KiB of JSON each) in a
# table of their own, so a deep page skips narrow task rows instead of reading every plan;
# ids that are never reused (AUTOINCREMENT), so a delivery id from before a reset can never
# name a new record; request and response headers in the attempt log.
V2 = """
ALTER TABLE tasks ADD COLUMN queued_until REAL;
ALTER TABLE tasks ADD COLUMN outcome TEXT;
ALTER TABLE tasks ADD COLUMN error_code TEXT;
UPDATE tasks SET queued_until = json_extract(plan, '$.queued_until'),
    outcome = json_extract(plan, '$.outcome'), error_code = json_extract(plan, '$.error.Code');
DROP INDEX IF EXISTS tasks_room;
CREATE INDEX tasks_room ON tasks (room_id);
CREATE INDEX tasks_scenario ON tasks (scenario);
CREATE INDEX tasks_outcome ON tasks (outcome);
CREATE INDEX tasks_error ON tasks (error_code);
CREATE INDEX tasks_app ON tasks (sdk_app_id);
CREATE TABLE task_plans (task_id TEXT PRIMARY KEY, plan TEXT NOT NULL);
INSERT INTO task_plans SELECT task_id, plan FROM tasks;
ALTER TABLE tasks DROP COLUMN plan;

CREATE TABLE events_v2 (
    id INTEGER PRIMARY KEY AUTOINCREMENT, task_id TEXT, seq INTEGER NOT NULL,
    event_type TEXT NOT NULL, due_at REAL NOT NULL, state TEXT NOT NULL,
    event_data TEXT NOT NULL, sign_mode TEXT NOT NULL, note TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0, payload TEXT, sdk_app_id INTEGER NOT NULL,
    callback_url TEXT
);
INSERT INTO events_v2 SELECT id, task_id, seq, event_type, due_at, state, event_data, sign_mode,
    note, attempts, payload, sdk_app_id, callback_url FROM events;
DROP TABLE events;
ALTER TABLE events_v2 RENAME TO events;
CREATE INDEX events_task ON events (task_id, seq);
CREATE INDEX events_pending ON events (state) WHERE state IN ('scheduled', 'delivering');
CREATE INDEX events_failed ON events (task_id) WHERE state = 'failed';

CREATE TABLE deliveries_v2 (
    id INTEGER PRIMARY KEY AUTOINCREMENT, event_id INTEGER, task_id TEXT,
    event_type TEXT NOT NULL, attempt INTEGER NOT NULL, url TEXT, request_headers TEXT,
    request_body TEXT NOT NULL, status_code INTEGER, response_headers TEXT, response_body TEXT,
    error TEXT, started_at REAL NOT NULL, duration_ms REAL NOT NULL, ok INTEGER NOT NULL,
    emulated_at REAL NOT NULL, redelivery_of INTEGER
);
INSERT INTO deliveries_v2 (id, event_id, task_id, event_type, attempt, url, request_body,
    status_code, response_body, error, started_at, duration_ms, ok, emulated_at, redelivery_of)
    SELECT id, event_id, task_id, event_type, attempt, url, request_body, status_code,
    response_body, error, started_at, duration_ms, ok, emulated_at, redelivery_of FROM deliveries;
DROP TABLE deliveries;
ALTER TABLE deliveries_v2 RENAME TO deliveries;
CREATE INDEX deliveries_task ON deliveries (task_id);
CREATE INDEX deliveries_ok ON deliveries (ok);
CREATE INDEX deliveries_status ON deliveries (status_code);
CREATE INDEX deliveries_type ON deliveries (event_type);

ALTER TABLE cloud_calls ADD COLUMN task_id TEXT;
UPDATE cloud_calls SET task_id = json_extract(record, '$.task_id');
CREATE INDEX cloud_calls_action ON cloud_calls (action);
CREATE INDEX cloud_calls_task ON cloud_calls (task_id);
"""

# 0.3: an attempt sent after a takeover (shared PostgreSQL mode) is marked; SQLite never sets it.
V3 = """
ALTER TABLE deliveries ADD COLUMN possible_duplicate INTEGER NOT NULL DEFAULT 0
"""

# Version 4: a task's plan, events and attempts point to it by its row number (`tasks.row_no`)
# instead of its TaskId. A TaskId is random, so each index keyed by it took every new row at a
# random leaf: a batch of creations wrote about one page per task and index to the WAL, and once
# an index outgrew SQLite's page cache, read it back first. Keyed by row number, the rows land
# on each index's last page. Measured in-process (held creations in batches of eight, the
# committer thread's CPU): 74 against 88-89 µs a task over 20,000 tasks with 3,000 stored
# before, 94 against 119 with 60,000 stored; through HTTP (50 clients, about 0.5 ms of CPU a
# task in all) inside the machine's spread (docs/benchmarks.md, "Front door, ninth round"). The
# TaskId stays the tasks' unique key, for lookups. Row numbers may be reused after a reset,
# which deletes every row that could name one (tasks are never pruned).
V4 = """
CREATE TABLE tasks_v4 (
    row_no INTEGER PRIMARY KEY, task_id TEXT NOT NULL UNIQUE,
    room_id INTEGER NOT NULL, group_id TEXT NOT NULL, sdk_app_id INTEGER NOT NULL,
    scenario TEXT NOT NULL, seed INTEGER NOT NULL, params TEXT NOT NULL, callback_url TEXT,
    source TEXT NOT NULL, request_id TEXT, created_at REAL NOT NULL, created_wall REAL NOT NULL,
    finish_at REAL, cancelled_at REAL, queued_until REAL, outcome TEXT, error_code TEXT
);
INSERT INTO tasks_v4 (row_no, task_id, room_id, group_id, sdk_app_id, scenario, seed, params,
    callback_url, source, request_id, created_at, created_wall, finish_at, cancelled_at,
    queued_until, outcome, error_code)
    SELECT rowid, task_id, room_id, group_id, sdk_app_id, scenario, seed, params, callback_url,
    source, request_id, created_at, created_wall, finish_at, cancelled_at, queued_until, outcome,
    error_code FROM tasks ORDER BY rowid;
DROP TABLE tasks;
ALTER TABLE tasks_v4 RENAME TO tasks;
CREATE INDEX tasks_room ON tasks (room_id);
CREATE INDEX tasks_scenario ON tasks (scenario);
CREATE INDEX tasks_outcome ON tasks (outcome);
CREATE INDEX tasks_error ON tasks (error_code);
CREATE INDEX tasks_app ON tasks (sdk_app_id);

CREATE TABLE task_plans_v4 (task_row INTEGER PRIMARY KEY, plan TEXT NOT NULL);
INSERT INTO task_plans_v4 SELECT t.row_no, p.plan FROM task_plans p JOIN tasks t USING (task_id);
DROP TABLE task_plans;
ALTER TABLE task_plans_v4 RENAME TO task_plans;

ALTER TABLE events ADD COLUMN task_row INTEGER;
UPDATE events SET task_row = (SELECT row_no FROM tasks WHERE tasks.task_id = events.task_id);
DROP INDEX events_task;
DROP INDEX events_failed;
CREATE INDEX events_task ON events (task_row, seq);
CREATE INDEX events_failed ON events (task_row) WHERE state = 'failed';

ALTER TABLE deliveries ADD COLUMN task_row INTEGER;
UPDATE deliveries
    SET task_row = (SELECT row_no FROM tasks WHERE tasks.task_id = deliveries.task_id);
DROP INDEX deliveries_task;
CREATE INDEX deliveries_task ON deliveries (task_row);
CREATE INDEX deliveries_loose ON deliveries (task_id) WHERE task_row IS NULL AND task_id IS NOT NULL
"""

STEPS: tuple[tuple[int, str], ...] = ((1, V1), (2, V2), (3, V3), (4, V4))
LATEST = STEPS[-1][0]


def current_version(conn: sqlite3.Connection) -> int:
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version == 0 and _has_table(conn, "tasks"):
        return 1  # written by the first release, which set no version
    return version


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the database to LATEST; returns the version it had. Refuses a newer one."""
    found = current_version(conn)
    if found > LATEST:
        raise RuntimeError(
            f"database schema version {found} is newer than this tiw-emulator knows ({LATEST}):"
            " upgrade tiw-emulator or use another --db"
        )
    if found == 1:
        _v1_fixups(conn)
    upgrading = 0 < found < LATEST  # a file with records: say so, it reads all of them
    if upgrading:
        log.warning(
            "upgrading the database from schema version %d to %d (once; a large file takes a"
            " while: 8 s for 100,000 tasks and 500,000 attempts on the dev machine)",
            found,
            LATEST,
        )
    started = time.monotonic()
    for version, script in STEPS:
        if version <= found:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(script):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    if upgrading:
        log.warning(
            "database upgraded to schema version %d in %.1f s", LATEST, time.monotonic() - started
        )
    return found


def _v1_fixups(conn: sqlite3.Connection) -> None:
    """Early 0.1.0 databases lacked tasks.request_id; V2 expects it."""
    columns = {r[1] for r in conn.execute("PRAGMA table_info(tasks)")}
    if "request_id" not in columns:
        conn.execute("ALTER TABLE tasks ADD COLUMN request_id TEXT")


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    row = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))
    return row.fetchone() is not None


def _statements(script: str) -> list[str]:
    # The scripts hold no string literals with semicolons, so a plain split is exact.
    return [s.strip() for s in script.split(";") if s.strip()]
