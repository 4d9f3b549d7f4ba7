"""The PostgreSQL store on a real server: start-up failures, a lost connection, the room rule.

The store's shared behaviour runs on both stores in tests/test_store.py; these tests cover what
only a server has: a connection that can be refused or lost, and writers in several sessions.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from typing import Any

import pytest
from pgserver import PASSWORD, PgServer, free_port
from polling import wait_until
from records import a_task, an_event

from emulator.receiver import Receiver
from emulator.store.base import NewTask, RoomTaken
from emulator.web.app import create_app, get_emulator


def _serve(db: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "emulator.cli", "serve", "--port", "0", "--db", db],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("problem", ["no server", "wrong password", "no database"])
def test_serve_refuses_an_unreachable_database_in_one_line(
    pg_server: PgServer, problem: str
) -> None:
    db = {
        "no server": f"postgresql://tiw:{PASSWORD}@127.0.0.1:{free_port()}/postgres",
        "wrong password": pg_server.url(password=f"{PASSWORD}-wrong"),
        "no database": pg_server.url("missing"),
    }[problem]
    proc = _serve(db)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: cannot open database postgresql://tiw:****@127.0.0.1:")
    expected = {
        "no server": "Connection refused",
        "wrong password": "password authentication failed",
        "no database": 'database "missing" does not exist',
    }[problem]
    assert expected in lines[0]
    assert PASSWORD not in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr


def test_a_lost_connection_answers_503_loses_nothing_and_recovers(pg_server: PgServer) -> None:
    """The server stops while tasks deliver: attempts wait in the queue, then all are stored."""
    with Receiver() as receiver:
        app = create_app(
            {
                "db": pg_server.database(),
                "clock": "manual",
                "retry": "none",
                "callback_url": receiver.url,
            }
        )
        emu = get_emulator(app)
        client = app.test_client()
        stopped = False
        try:
            created = [
                client.post("/api/tasks", json={"scenario": "success"}).get_json() for _ in range(3)
            ]
            assert client.get("/healthz").status_code == 200
            pg_server.stop()
            stopped = True
            health = client.get("/healthz")
            assert health.status_code == 503
            assert "Connection refused" in health.get_json()["storage_error"]
            refused = client.post("/api/tasks", json={"scenario": "success"})
            assert refused.status_code == 503
            assert refused.get_json()["error"]["code"] == "storage_unavailable"
            # Deliveries go out while the server is away; their records wait in the queue.
            assert client.post("/api/clock/advance", json={"seconds": 86400}).status_code == 503
            planned = sum(e["state"] == "scheduled" for t in created for e in t["events"])
            receiver.wait_for(lambda got: len(got) >= planned)
            assert client.get("/api/deliveries").status_code == 503  # never a stale read
            assert PASSWORD not in client.get("/healthz").get_data(as_text=True)
            pg_server.start()
            stopped = False
            wait_until(lambda: client.get("/healthz").status_code == 200, "the store to recover")
            log = client.get("/api/deliveries?limit=1000")
            assert log.status_code == 200
            logged = {d["request_body"] for d in log.get_json()["deliveries"]}
            seen = {r.body.decode() for r in receiver.received}
            assert len(seen) == planned and seen <= logged  # every attempt sent is logged
            assert client.post("/api/tasks", json={"scenario": "success"}).status_code == 201
        finally:
            if stopped:
                pg_server.start()
            emu.close()


def _task(n: int, room_id: int) -> NewTask:
    return a_task(f"race{n:016d}", room_id, n, queued_until=10.0, finish_at=100.0)


def test_the_database_keeps_one_unfinished_task_per_room_across_stores(pg_url: str) -> None:
    """Four stores (four sessions, as four processes would have) race for the same rooms."""
    from emulator.store.postgres import PostgresStore

    stores = [PostgresStore(pg_url) for _ in range(4)]
    rooms = 10
    won: list[str] = []
    taken: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(len(stores))

    def race(worker: int) -> None:
        start.wait()
        for room in range(rooms):
            try:
                stores[worker].insert_task(_task(worker * 100 + room, room), now=1.0)
                with lock:
                    won.append(f"{room}")
            except RoomTaken as exc:
                with lock:
                    taken.append(exc.task_id)

    threads = [threading.Thread(target=race, args=(w,)) for w in range(len(stores))]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert sorted(won) == sorted(str(r) for r in range(rooms))  # one winner per room
        assert len(taken) == rooms * (len(stores) - 1)
        for room in range(rooms):
            holder = stores[0].unfinished_task(room, 1400000001, now=1.0)
            assert holder is not None and holder in taken
    finally:
        for store in stores:
            store.close()


def test_events_claimed_under_an_id_already_taken_for_dead_are_taken_over(pg_url: str) -> None:
    """A process taken for dead (its lease ran out while it was starved) goes on until its next
    heartbeat, and a task it creates meanwhile is claimed under the id a peer's sweep has already
    removed. Those events belong to nobody: the next sweep takes them over, marked as possible
    duplicates once due. (Before, only the events of processes removed in the same sweep were
    taken. Under `make test`'s load the shared-mode kill test once lost every callback of two
    tasks, which this explains.)"""
    import psycopg

    from emulator.store.postgres import PostgresStore

    starved, peer = PostgresStore(pg_url, lease_s=2.0), PostgresStore(pg_url, lease_s=2.0)
    try:
        with psycopg.connect(pg_url, autocommit=True) as conn:  # what a peer's sweep does
            conn.execute("DELETE FROM processes WHERE id = %s", (starved.process_id,))
        due, later = an_event(seq=1, due_at=2.0), an_event(seq=2, due_at=50.0)
        starved.insert_task(a_task("orphan0000000000001", 7, events=[due, later]), now=1.0)
        taken = {int(r["id"]): bool(r["possible_duplicate"]) for r in peer.take_over(now=3.0)}
        assert taken == {due.id: True, later.id: False}
        assert peer.take_over(now=3.0) == []  # claimed now: nobody takes them twice
        assert starved.heartbeat() is False  # it learns it was taken for dead, and rejoins
    finally:
        starved.close()
        peer.close()


def test_an_emulator_keeps_its_state_on_postgresql_across_restarts(pg_url: str) -> None:
    settings: dict[str, Any] = {"db": pg_url, "clock": "manual", "retry": "none"}
    app = create_app(settings)
    client = app.test_client()
    created = client.post("/api/tasks", json={"scenario": "success", "room_id": 7}).get_json()
    rule = {"match": {"room_id": 8}, "scenario": "transcode-failure"}
    assert client.post("/api/rules", json=rule).status_code == 201
    get_emulator(app).close()
    app = create_app(settings)
    client = app.test_client()
    try:
        task = client.get(f"/api/tasks/{created['task_id']}").get_json()
        assert task["room_id"] == 7 and task["status"] == "queued"
        assert client.post("/api/tasks", json={"room_id": 7}).status_code == 409
        assert [r["scenario"] for r in client.get("/api/rules").get_json()["rules"]] == [
            "transcode-failure"
        ]
        assert type(get_emulator(app).store).__name__ == "PostgresStore"
    finally:
        get_emulator(app).close()


def test_without_the_postgres_extra_serve_says_how_to_install_it() -> None:
    """psycopg is imported only for a postgresql:// --db; without it, one line naming the extra."""
    code = (
        "import sys; sys.modules['psycopg'] = None; from emulator.cli import main;"
        " sys.exit(main(['serve', '--port', '0', '--db', 'postgresql://u:pw@127.0.0.1:1/x']))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "pip install 'tiw-emulator[postgres]'" in lines[0]


def test_the_sqlite_default_imports_no_postgres_driver(tmp_path: Any) -> None:
    code = (
        "import sys; from emulator.store import open_store;"
        f" open_store({str(tmp_path / 'x.db')!r}).close();"
        " sys.exit(3 if 'psycopg' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:pw@db.local:5433/tiw", "postgresql://u:****@db.local:5433/tiw"),
        (
            "postgresql://u@db.local/tiw?password=pw&x=1",
            "postgresql://u@db.local/tiw?password=****&x=1",
        ),
        ("postgres://u:pw@[::1]/tiw", "postgres://u:****@[::1]/tiw"),
        ("postgresql://u:pw@h:notaport/tiw", "postgresql://u:****@h:notaport/tiw"),
    ],
)
def test_a_database_url_is_shown_without_its_password(url: str, shown: str) -> None:
    from emulator.core.redact import mask_url

    assert mask_url(url) == shown


def test_serve_on_postgresql_prints_the_database_without_its_password(pg_url: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "emulator.cli", "serve", "--port", "0", "--db", pg_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:  # up to the last line of the banner
            lines.append(line)
            if line.lstrip().startswith("run seed"):
                break
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
    banner = "".join(lines)
    assert "tiw-emulator listening on http://127.0.0.1:" in banner
    assert "database    postgresql://tiw:****@127.0.0.1:" in banner
    assert PASSWORD not in banner + out + err
    assert proc.returncode == 0, err
