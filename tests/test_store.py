"""The store seam: migrations, indexes, ids, read order, retention, owner lock, full disk.

The tests taking `db` run on both stores: a SQLite file and a database on a real PostgreSQL
server (tests/pgserver.py).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from pgserver import PASSWORD
from polling import wait_until
from records import a_task, an_event

from emulator.core.config import Settings
from emulator.core.service import Emulator
from emulator.receiver import Receiver
from emulator.store import Store, open_store
from emulator.store.base import DatabaseBusy, DeliveryFilter, NewTask, TaskFilter
from emulator.store.migrations import LATEST, STEPS, V1
from emulator.store.sqlite import SQLiteStore, task_query
from emulator.web.app import create_app, get_emulator

V1_PLAN = {
    "created_at": 100.0,
    "queued_until": 110.0,
    "milestones": [[120.0, 50]],
    "finish_at": 200.0,
    "outcome": "failure",
    "error": {"Code": "FailedOperation.Transcode", "Message": "x"},
    "result": None,
}


def _first_release_db(path: Path) -> None:
    """A database as release 0.1.0 wrote it: its schema, no user_version, a task and attempts."""
    conn = sqlite3.connect(path)
    conn.executescript(V1)
    conn.execute(
        "INSERT INTO tasks (task_id, room_id, group_id, sdk_app_id, scenario, seed, params,"
        " callback_url, source, request_id, created_at, created_wall, finish_at, plan)"
        " VALUES ('t0000000000000000001', 42, '42', 1400000001, 'transcode-failure', 1, '{}',"
        " NULL, 'control', NULL, 100.0, 1.7e9, 200.0, ?)",
        (json.dumps(V1_PLAN),),
    )
    conn.execute(
        "INSERT INTO events (id, task_id, seq, event_type, due_at, state, event_data, sign_mode,"
        " sdk_app_id) VALUES (7, 't0000000000000000001', 1, 'OfflineRecordFinished', 200.0,"
        " 'failed', '{}', 'valid', 1400000001)"
    )
    conn.execute(
        "INSERT INTO deliveries (id, event_id, task_id, event_type, attempt, url, request_body,"
        " status_code, response_body, error, started_at, duration_ms, ok, emulated_at)"
        " VALUES (3, 7, 't0000000000000000001', 'OfflineRecordFinished', 1, 'http://x/', '{}',"
        " 500, 'no', NULL, 1.7e9, 1.0, 0, 200.0)"
    )
    conn.execute(
        "INSERT INTO cloud_calls (at, action, record) VALUES (1.7e9, 'DescribeOfflineRecord', ?)",
        (json.dumps({"action": "DescribeOfflineRecord", "task_id": "t0000000000000000001"}),),
    )
    conn.execute("INSERT INTO config (key, value) VALUES ('speed', '120.0')")
    conn.commit()
    conn.close()


def test_a_database_written_by_the_first_release_opens_and_keeps_its_records(
    tmp_path: Path,
) -> None:
    db = tmp_path / "old.db"
    _first_release_db(db)
    store = SQLiteStore(str(db))
    try:
        task = store.get_task("t0000000000000000001")
        assert task is not None
        assert (task["outcome"], task["error_code"]) == ("failure", "FailedOperation.Transcode")
        assert (task["attempts"], task["failed_attempts"], task["undelivered_events"]) == (1, 1, 1)
        found, _ = store.list_tasks(
            TaskFilter(error_code="FailedOperation.Transcode"), now=300.0, limit=10, offset=0
        )
        assert [t["task_id"] for t in found] == ["t0000000000000000001"]
        deliveries, _ = store.list_deliveries(
            DeliveryFilter(ok=False), limit=10, before=None, after=None
        )
        assert [(d["id"], d["status_code"], d["request_headers"]) for d in deliveries] == [
            (3, 500, None)
        ]
        calls, _ = store.list_cloud_calls(
            action=None, task_id="t0000000000000000001", limit=10, before=None
        )
        assert len(calls) == 1
        assert store.load_config() == {"speed": 120.0}
    finally:
        store.close()
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST
    conn.close()


def test_a_new_database_file_is_created_without_a_word(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING", logger="tiw_emulator.store"):
        SQLiteStore(str(tmp_path / "new.db")).close()
    assert caplog.records == []


def test_an_emulator_starts_on_a_first_release_database(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    _first_release_db(db)
    emu = Emulator(Settings.load({"db": str(db), "clock": "manual"}, env={})).start()
    try:
        task = emu.get_task("t0000000000000000001")
        assert task["status"] == "finished" or task["status"] == "processing"
        assert emu.create_task(scenario="success")["task_id"]
    finally:
        emu.close()


def _third_schema_db(path: Path) -> None:
    """A database as release 0.3 wrote it (schema version 3): two tasks with plans, events and
    attempts keyed by TaskId, an ad-hoc attempt (no TaskId), and an attempt whose TaskId names
    no task (recorded straight through the store)."""
    conn = sqlite3.connect(path, isolation_level=None)
    for version, script in STEPS:
        if version <= 3:
            for statement in script.split(";"):
                if statement.strip():
                    conn.execute(statement)
    conn.execute("PRAGMA user_version = 3")
    for n, task_id in enumerate(("t0000000000000000002", "t0000000000000000001")):
        conn.execute(
            "INSERT INTO tasks (task_id, room_id, group_id, sdk_app_id, scenario, seed, params,"
            " source, created_at, created_wall, finish_at, queued_until, outcome, error_code)"
            " VALUES (?, ?, '1', 1400000001, 'transcode-failure', 1, '{}', 'control', 100.0,"
            " 1.7e9, 200.0, 110.0, 'failure', 'FailedOperation.Transcode')",
            (task_id, 40 + n),
        )
        conn.execute(
            "INSERT INTO task_plans (task_id, plan) VALUES (?, ?)", (task_id, json.dumps(V1_PLAN))
        )
        for seq, state in ((1, "delivered"), (2, "failed")):
            event_id = conn.execute(
                "INSERT INTO events (task_id, seq, event_type, due_at, state, event_data,"
                " sign_mode, sdk_app_id) VALUES (?, ?, 'OfflineRecordFinished', 200.0, ?, '{}',"
                " 'valid', 1400000001)",
                (task_id, seq, state),
            ).lastrowid
            conn.execute(
                "INSERT INTO deliveries (event_id, task_id, event_type, attempt, request_body,"
                " status_code, started_at, duration_ms, ok, emulated_at) VALUES (?, ?,"
                " 'OfflineRecordFinished', 1, '{}', ?, 1.7e9, 1.0, ?, 200.0)",
                (event_id, task_id, 200 if state == "delivered" else 500, state == "delivered"),
            )
    for task_id in (None, "gone"):
        conn.execute(
            "INSERT INTO deliveries (event_id, task_id, event_type, attempt, request_body,"
            " status_code, started_at, duration_ms, ok, emulated_at) VALUES (NULL, ?,"
            " 'OfflineRecordProgressChanged', 1, '{}', 200, 1.7e9, 1.0, 1, 200.0)",
            (task_id,),
        )
    conn.close()


def test_a_third_schema_database_links_rows_to_their_tasks_by_row_number(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "v3.db"
    _third_schema_db(db)
    with caplog.at_level("WARNING", logger="tiw_emulator.store"):
        store = SQLiteStore(str(db))
    said = [r.getMessage() for r in caplog.records]
    assert said[0].startswith(f"upgrading the database from schema version 3 to {LATEST} (once")
    assert said[1].startswith(f"database upgraded to schema version {LATEST} in ")
    try:
        found, _ = store.list_tasks(TaskFilter(), now=300.0, limit=10, offset=0)
        # newest first, as before: the row numbers are the rows' old rowids
        assert [t["task_id"] for t in found] == ["t0000000000000000001", "t0000000000000000002"]
        for task in found:
            assert (task["attempts"], task["failed_attempts"], task["undelivered_events"]) == (
                2,
                1,
                1,
            )
            assert json.loads(task["plan"]) == V1_PLAN
            events = store.task_events(task["task_id"])
            assert [(e["seq"], e["state"]) for e in events] == [(1, "delivered"), (2, "failed")]
            attempts, _ = store.list_deliveries(
                DeliveryFilter(task_id=task["task_id"]), limit=10, before=None, after=None
            )
            assert {d["task_id"] for d in attempts} == {task["task_id"]} and len(attempts) == 2
        loose, _ = store.list_deliveries(
            DeliveryFilter(task_id="gone"), limit=10, before=None, after=None
        )
        assert [d["task_id"] for d in loose] == ["gone"]
        every, _ = store.list_deliveries(DeliveryFilter(), limit=10, before=None, after=None)
        assert len(every) == 6
        store.insert_task(a_task("t0000000000000000003", 99), now=0.0)
        newest, _ = store.list_tasks(TaskFilter(), now=300.0, limit=1, offset=0)
        assert newest[0]["task_id"] == "t0000000000000000003"
    finally:
        store.close()


def test_no_index_a_new_tasks_rows_enter_is_keyed_by_its_random_task_id(tmp_path: Path) -> None:
    """A TaskId is random: an index keyed by it takes each new row at a random leaf, one WAL
    page per row and index. Only the tasks' own unique key is (lookups need it); the rows of a
    task's plan, events and attempts name it by row number (migrations.V4). The one index on
    deliveries.task_id holds only attempts whose TaskId names no task."""
    path = tmp_path / "keys.db"
    SQLiteStore(str(path)).close()  # a new file, migrated
    conn = sqlite3.connect(path)
    try:
        keyed: list[tuple[str, str, int]] = []
        for table in ("tasks", "task_plans", "events", "deliveries"):
            for _, name, _, _, partial in conn.execute(f"PRAGMA index_list({table})"):
                first = conn.execute(f"PRAGMA index_info({name})").fetchone()[2]
                if first == "task_id":
                    keyed.append((table, name, partial))
        assert keyed == [
            ("tasks", "sqlite_autoindex_tasks_1", 0),
            ("deliveries", "deliveries_loose", 1),
        ]
    finally:
        conn.close()


def test_sqlite_finds_a_tasks_rows_on_its_row_number_index(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "plans.db"))
    try:
        store.insert_task(a_task("t1", 5), now=0.0)
        for task_id, index in (("t1", "deliveries_task"), ("unknown", "deliveries_loose")):
            sql, args = store.deliveries_query(
                DeliveryFilter(task_id=task_id, ok=False), limit=50, before=10, after=None
            )
            plan = " | ".join(store.explain(sql, args))
            assert f"USING INDEX {index}" in plan and "TEMP B-TREE" not in plan, plan
        plan = " | ".join(
            store.explain(
                "SELECT * FROM events WHERE task_row ="
                " (SELECT row_no FROM tasks WHERE task_id = ?) ORDER BY seq LIMIT 5",
                ("t1",),
            )
        )
        assert "USING INDEX events_task" in plan and "TEMP B-TREE" not in plan, plan
    finally:
        store.close()


def make_store(db: str, **options: Any) -> Any:
    """The store for `db` with test options (retention caps)."""
    if db.startswith("postgresql://"):
        from emulator.store.postgres import PostgresStore

        return PostgresStore(db, **options)
    return SQLiteStore(db, **options)


@pytest.fixture
def big_store(db: str) -> Any:
    store = make_store(db)
    yield store
    store.close()


def _plan(store: Any, sql: str, args: Any = ()) -> str:
    """The query plan of `sql` (SQLite spelling) in the store's own dialect, one line."""
    if not isinstance(store, SQLiteStore):
        sql = sql.replace("rowid", "row_no").replace("?", "%s")
    return " | ".join(store.explain(sql, args))


def _uses_index_without_sorting(store: Any, plan: str) -> None:
    if isinstance(store, SQLiteStore):
        assert "USING INDEX" in plan or "USING COVERING INDEX" in plan or "PRIMARY KEY" in plan
        assert "TEMP B-TREE" not in plan, plan
    else:
        assert "Index Scan" in plan or "Index Only Scan" in plan, plan
        assert "Sort" not in plan and "Seq Scan" not in plan, plan


LIST_QUERIES: list[tuple[str, TaskFilter]] = [
    ("room", TaskFilter(room_id=5)),
    ("app", TaskFilter(sdk_app_id=5)),
    ("scenario", TaskFilter(scenario="success")),
    ("outcome", TaskFilter(outcome="failure")),
    ("error code", TaskFilter(outcome="failure", error_code="FailedOperation.Record")),
]


@pytest.mark.parametrize(("name", "where"), LIST_QUERIES, ids=[q[0] for q in LIST_QUERIES])
def test_task_filters_use_an_index(big_store: Any, name: str, where: TaskFilter) -> None:
    sql, args = task_query(where, now=0.0)
    plan = _plan(big_store, f"{sql} ORDER BY rowid DESC LIMIT 50", args)
    _uses_index_without_sorting(big_store, plan)


@pytest.mark.parametrize("column", ["task_id", "ok", "status_code", "event_type"])
def test_delivery_filters_use_an_index(big_store: Any, column: str) -> None:
    value: Any = {"ok": True, "task_id": "t", "event_type": "x"}.get(column, 1)
    if not isinstance(big_store, SQLiteStore):
        plan = _plan(
            big_store,
            f"SELECT * FROM deliveries WHERE {column} = ? AND id < ? ORDER BY id DESC LIMIT 51",
            (value, 10),
        )
    else:  # the query list_deliveries makes (a TaskId: by its task's row number, or loose)
        where = DeliveryFilter(**{column: value})
        sql, args = big_store.deliveries_query(where, limit=50, before=10, after=None)
        plan = _plan(big_store, sql, args)
        assert "PRIMARY KEY" not in plan, plan  # an index of the filter, not the id range
    _uses_index_without_sorting(big_store, plan)


def test_unfiltered_lists_walk_the_primary_key_without_sorting(big_store: Any) -> None:
    for sql in (
        "SELECT * FROM tasks ORDER BY rowid DESC LIMIT 51",
        "SELECT * FROM deliveries WHERE id < 100 ORDER BY id DESC LIMIT 51",
        "SELECT * FROM cloud_calls ORDER BY id DESC LIMIT 51",
    ):
        plan = _plan(big_store, sql)
        assert "TEMP B-TREE" not in plan and "Sort" not in plan, plan
    plan = _plan(
        big_store,
        "SELECT * FROM events WHERE state IN ('scheduled', 'delivering') ORDER BY due_at, id",
    )
    assert "events_pending" in plan, plan


def test_ids_come_from_the_database_and_never_repeat_after_reset(db: str) -> None:
    store = open_store(db)
    try:
        first = [store.record_attempt(_attempt(n)) for n in range(5)]
        store.flush()
        ids = [f.result(timeout=1)["id"] for f in first]
        assert ids == sorted(ids) and len(set(ids)) == 5
        store.reset()
        again = store.record_attempt(_attempt(9))
        store.flush()
        assert again.result(timeout=1)["id"] > max(ids)
        assert store.get_delivery(ids[0]) is None
    finally:
        store.close()


def _attempt(n: int, **overrides: Any) -> dict[str, Any]:
    return {
        "event_id": None,
        "task_id": f"task{n}",
        "event_type": "OfflineRecordProgressChanged",
        "attempt": 1,
        "url": "http://127.0.0.1:9/",
        "request_headers": {"Content-Type": "application/json"},
        "request_body": json.dumps({"n": n}),
        "status_code": 200,
        "response_headers": None,
        "response_body": "",
        "error": None,
        "started_at": 1.0,
        "duration_ms": 1.0,
        "ok": True,
        "emulated_at": 0.0,
        "redelivery_of": None,
        "possible_duplicate": False,
        **overrides,
    }


def test_a_read_sees_every_write_queued_before_it(db: str) -> None:
    """Writers queue attempts from 4 threads while readers read: no read is ever behind."""
    store: Store = open_store(db)
    stale = 0

    def write_then_read(worker: int) -> int:
        misses = 0
        for n in range(300):
            task_id = f"w{worker}-{n}"
            store.record_attempt(_attempt(n, task_id=task_id))
            rows, _ = store.list_deliveries(
                DeliveryFilter(task_id=task_id), limit=1, before=None, after=None
            )
            misses += not rows
        return misses

    try:
        with ThreadPoolExecutor(4) as pool:
            stale = sum(pool.map(write_then_read, range(4)))
        assert stale == 0
    finally:
        store.close()


def test_retention_keeps_the_newest_attempts(db: str) -> None:
    store = make_store(db, max_deliveries=500)
    try:
        for n in range(2100):
            store.record_attempt(_attempt(n))
        store.flush()
        rows, _ = store.list_deliveries(DeliveryFilter(), limit=1000, before=None, after=None)
        assert 500 <= len(rows) <= 1500
        assert rows[-1]["request_body"] == json.dumps({"n": 2099})
    finally:
        store.close()


def test_a_second_owner_of_the_same_sqlite_file_is_refused(tmp_path: Path) -> None:
    """One process per SQLite file (PostgreSQL is shared: tests/test_shared_mode.py)."""
    db = str(tmp_path / "store.db")
    store = open_store(db)
    try:
        with pytest.raises(DatabaseBusy, match=r"in use by (another )?tiw-emulator (process|pid)"):
            open_store(db)
    finally:
        store.close()
    open_store(db).close()  # free again once the owner closed it


def test_a_second_serve_process_on_the_same_sqlite_file_refuses_in_one_line(
    tmp_path: Path,
) -> None:
    db = str(tmp_path / "store.db")
    store = open_store(db)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "emulator.cli", "serve", "--port", "0", "--db", db],
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        store.close()
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "is in use by" in lines[0] and "tiw-emulator" in lines[0]
    assert PASSWORD not in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_full_disk_answers_503_loses_nothing_and_recovers(tmp_path: Path) -> None:
    """SQLite's page cap gives a real SQLITE_FULL: the same error as a full disk."""
    with Receiver() as receiver:
        app = create_app(
            {
                "db": str(tmp_path / "full.db"),
                "clock": "manual",
                "retry": "none",
                "callback_url": receiver.url,
            }
        )
        emu = get_emulator(app)
        client = app.test_client()
        try:
            created = [
                client.post("/api/tasks", json={"scenario": "success"}).get_json() for _ in range(3)
            ]
            assert client.get("/healthz").status_code == 200
            store = emu.store
            assert isinstance(store, SQLiteStore)
            store.limit_pages(1)  # the file cannot grow: what fits in free pages, then full
            for _ in range(500):
                refused = client.post("/api/tasks", json={"scenario": "success"})
                if refused.status_code != 201:
                    break
                created.append(refused.get_json())
            assert refused.status_code == 503
            error = refused.get_json()["error"]
            assert error["code"] == "storage_unavailable"
            assert "database or disk is full" in error["message"]
            health = client.get("/healthz")
            assert health.status_code == 503
            assert "database or disk is full" in health.get_json()["storage_error"]
            # Deliveries go out while the disk is full; their records wait in the queue.
            assert client.post("/api/clock/advance", json={"seconds": 86400}).status_code == 503
            planned = sum(e["state"] == "scheduled" for t in created for e in t["events"])
            receiver.wait_for(lambda got: len(got) >= planned)
            assert client.get("/api/deliveries").status_code == 503  # never a stale read
            store.limit_pages(None)  # space returns
            log = client.get("/api/deliveries?limit=1000")
            assert log.status_code == 200
            logged = {d["request_body"] for d in log.get_json()["deliveries"]}
            seen = {r.body.decode() for r in receiver.received}
            assert seen <= logged  # every attempt the backend saw is in the attempt log
            assert client.get("/healthz").status_code == 200
            assert client.post("/api/tasks", json={"scenario": "success"}).status_code == 201
        finally:
            emu.close()


def test_pending_writes_are_bounded_and_wait_for_room(tmp_path: Path) -> None:
    """A producer facing a full queue waits (back-pressure) instead of growing memory."""
    import threading

    store = SQLiteStore(str(tmp_path / "bounded.db"), max_pending=50)
    try:
        store.limit_pages(1)  # the file cannot grow: once its free room is used, writes fail
        n = 0  # fill whatever the free room takes, until the disk refuses and the queue is full
        while store.health() is None or store.queued_writes() < 50:
            assert n < 100_000, "the capped file never refused a write"
            if store.queued_writes() < 50:
                store.record_attempt(_attempt(n))
                n += 1
            else:  # full while a commit is under way, which may still fit: wait for its outcome
                wait_until(
                    lambda: store.health() is not None or store.queued_writes() < 50,
                    "the commit under way to settle",
                    10,
                )
        done = threading.Event()
        producer = threading.Thread(
            target=lambda: (store.record_attempt(_attempt(999)), done.set()), daemon=True
        )
        producer.start()
        assert not done.wait(0.5)  # blocked: the queue is full and the disk refuses
        assert store.queued_writes() <= 50
        assert store.health() is not None and "full" in store.health()
        store.limit_pages(None)
        assert done.wait(10)  # room again once the queued writes commit
        producer.join(5)
        store.flush()
        assert store.health() is None
    finally:
        store.close()


def test_an_ad_hoc_event_and_its_attempt_are_stored_in_one_commit(db: str) -> None:
    """The attempt points at the event row the same commit made, settled by the attempt."""
    store = open_store(db)
    try:
        event = an_event(
            seq=0,
            event_type="OfflineRecordProgressChanged",
            due_at=1.0,
            state="delivering",
            event_data='{"TaskId": "x"}',
            note="ad-hoc",
        )
        refused = _attempt(1, task_id=None, ok=False, status_code=500)
        future = store.record_attempt(refused, event)
        store.flush()
        stored = future.result(timeout=5)
        assert stored["event_id"] and stored["id"]
        row = store.get_event(stored["event_id"])
        assert row is not None
        assert (row["state"], row["attempts"]) == ("failed", 1)
        assert row["payload"] == refused["request_body"]
        assert store.get_delivery(stored["id"])["event_id"] == stored["event_id"]  # type: ignore[index]
    finally:
        store.close()


def test_an_event_ends_in_the_state_of_its_last_queued_write(db: str) -> None:
    """Queued together (one batch): attempt, retry scheduled, retry sent and scheduled again
    ends 'scheduled' with the last due time; a 'delivering' mark after the last settle wins."""
    store = open_store(db)
    try:
        events = [
            an_event(
                event_type="OfflineRecordProgressChanged",
                due_at=1.0,
                event_data='{"TaskId": "x"}',
                task_id=task_id,
            )
            for task_id in ("retried", "resent")
        ]
        store.insert_events(events)
        retried, resent = (e.id for e in events)
        for n, event_id in enumerate((retried, resent, retried, resent)):
            store.mark_delivering(event_id)
            failed = _attempt(n, event_id=event_id, ok=False, status_code=500)
            store.log_attempt(failed, ("scheduled", n // 2 + 1, 2.0 + n))
        store.mark_delivering(resent)
        store.flush()
        states = {e["id"]: e for e in store.pending_events()}
        assert (states[retried]["state"], states[retried]["attempts"]) == ("scheduled", 2)
        assert states[retried]["due_at"] == 4.0
        assert (states[resent]["state"], states[resent]["attempts"]) == ("delivering", 2)
    finally:
        store.close()


def _new_task(n: int, room_id: int, task_id: str | None = None) -> NewTask:
    return a_task(task_id or f"group{n:015d}", room_id, n, events=[an_event()])


def test_creations_arriving_together_fail_alone(tmp_path: Path) -> None:
    """Creations announced together share one transaction (group commit, tests/
    test_group_commit.py); a taken room or TaskId refuses only its own creation, the others are
    stored with their events' ids."""
    store = SQLiteStore(str(tmp_path / "group.db"))
    first = _new_task(1, 501)
    tasks = [
        _new_task(2, 502),
        _new_task(3, 501),  # the same room as the first task, still unfinished: refused
        _new_task(4, 503, task_id=first.task_id),  # the first task's TaskId: refused
        _new_task(5, 504),
    ]
    everyone_in = threading.Barrier(len(tasks))

    def create(task: NewTask) -> None:
        with store.creating():
            everyone_in.wait(10)
            store.insert_task(task, now=0.5)

    outcomes: dict[int, str] = {}
    try:
        store.insert_task(first, now=0.5)
        with ThreadPoolExecutor(len(tasks)) as pool:
            futures = {n: pool.submit(create, task) for n, task in enumerate(tasks)}
        for n, future in futures.items():
            error = future.exception(timeout=10)
            outcomes[n] = "stored" if error is None else type(error).__name__
        assert outcomes == {0: "stored", 1: "RoomTaken", 2: "DuplicateTaskId", 3: "stored"}
        stored = store.list_tasks(TaskFilter(), now=0.5, limit=10, offset=0)[0]
        kept = [first, tasks[0], tasks[3]]
        assert sorted(r["task_id"] for r in stored) == sorted(t.task_id for t in kept)
        for task in kept:
            events = store.task_events(task.task_id, 10)
            assert [e["id"] for e in events] == [task.events[0].id]
        assert store.task_events(tasks[1].task_id, 10) == []
    finally:
        store.close()
