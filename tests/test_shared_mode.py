"""Several `serve` processes on one PostgreSQL database behave as one emulator (issue 10).

Real processes, a real PostgreSQL server and a real receiver, all on loopback.
"""

from __future__ import annotations

import collections
import json
import signal
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from pgserver import PASSWORD
from polling import wait_until
from served import Served, serve_refuses

from emulator.receiver import Receiver

SPEED = "400"  # a `success` task's five callbacks span 3-10 s of wall time


@pytest.fixture
def cluster(pg_url: str, receiver: Receiver) -> Iterator[Callable[..., list[Served]]]:
    """Start n `serve` processes on one database, callbacks to `receiver`; all stopped after."""
    started: list[Served] = []

    def start(n: int, *extra: str) -> list[Served]:
        common = ("--db", pg_url, "--callback-url", receiver.url, "--retry", "fast")
        for _ in range(n):
            started.append(Served(*common, "--clock", "real", "--speed", SPEED, *extra))
        return started[-n:]

    yield start
    for s in started:
        s.kill()


def _create_round_robin(procs: list[Served], count: int) -> list[dict[str, Any]]:
    """`count` success tasks through the processes in turn, 8 requests in flight."""
    local = threading.local()

    def create(n: int) -> dict[str, Any]:
        if not hasattr(local, "http"):
            local.http = requests.Session()
            local.http.trust_env = False
        proc = procs[n % len(procs)]
        try:
            reply = local.http.post(
                f"{proc.url}/api/tasks", json={"scenario": "success"}, timeout=60
            )
        except requests.ConnectionError as exc:  # show what the server said, and if it lives
            status = proc.proc.poll()
            raise AssertionError(
                f"{exc}; the server {'exited ' + str(status) if status is not None else 'runs'}"
                f", its stderr ends: {proc.stderr()[-3000:]}"
            ) from exc
        assert reply.status_code == 201, reply.text
        return dict(reply.json())

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(create, range(count)))


def _epoch(p: Served) -> float:
    """The emulated time at wall time 0, by this process's clock (constant while it runs)."""
    c = p.api("GET", "/api/clock").json()
    return float(c["now"] - c["wall"] * c["speed"])


def _same_clock(a: Served, b: Served, speed: float) -> None:
    """Both read the same emulated time for the same wall time, at `speed`."""
    assert [p.api("GET", "/api/clock").json()["speed"] for p in (a, b)] == [speed, speed]
    assert abs(_epoch(a) - _epoch(b)) < speed * 0.01  # 10 ms of wall time


def _pending(proc: Served) -> int:
    return int(proc.api("GET", "/api/clock").json()["pending_events"])


def _key(event_data: dict[str, Any], event_type: str) -> tuple[str, str, Any]:
    return (event_data["TaskId"], event_type, event_data.get("Progress"))


def _planned(tasks: list[dict[str, Any]]) -> collections.Counter[tuple[str, str, Any]]:
    return collections.Counter(
        _key(e["payload"]["EventData"], e["event_type"])
        for t in tasks
        for e in t["events"]
        if e["state"] == "scheduled"
    )


def _arrived(receiver: Receiver) -> collections.Counter[tuple[str, str, Any]]:
    return collections.Counter(
        _key(body["EventData"], body["EventType"]) for body in receiver.events()
    )


def test_three_processes_deliver_every_planned_event_exactly_once(
    cluster: Any, receiver: Receiver
) -> None:
    procs = cluster(3)
    tasks = _create_round_robin(procs, 1000)
    planned = _planned(tasks)
    assert len(planned) >= 4000 and max(planned.values()) == 1
    receiver.wait_for_count(sum(planned.values()), timeout=120)
    wait_until(lambda: all(_pending(p) == 0 for p in procs), "every process to have sent all")
    assert _arrived(receiver) == planned  # each planned event once, and nothing else
    # Any process answers for any task, and each task's callbacks went out in order.
    sample = tasks[1]["task_id"]
    seen = [procs[i].api("GET", f"/api/tasks/{sample}").json()["status"] for i in range(3)]
    assert seen == ["finished"] * 3
    by_task: dict[str, list[int]] = collections.defaultdict(list)
    for body in receiver.events():
        by_task[body["EventData"]["TaskId"]].append(body["EventData"].get("Progress") or 0)
    assert all(p == sorted(p) for p in by_task.values())
    log = procs[2].api("GET", "/api/deliveries?limit=1000").json()["deliveries"]
    assert log and not any(d["possible_duplicate"] for d in log)
    # An attempt any process made is redelivered through another.
    again = procs[0].api("POST", f"/api/deliveries/{log[0]['id']}/redeliver")
    assert again.status_code == 200 and again.json()["redelivery_of"] == log[0]["id"]


def test_a_killed_process_loses_nothing_and_duplicates_are_marked(
    cluster: Any, receiver: Receiver
) -> None:
    procs = cluster(3, "--lease", "2")
    tasks = _create_round_robin(procs, 1000)
    planned = _planned(tasks)
    total = sum(planned.values())
    receiver.wait_for_count(total // 2, timeout=120)
    procs[1].proc.send_signal(signal.SIGKILL)
    procs[1].kill()
    receiver.wait_for(lambda got: set(_arrived(receiver)) >= set(planned), timeout=120)
    arrived = _arrived(receiver)
    assert set(arrived) == set(planned)  # every event at least once, nothing unplanned
    twice = {key for key, n in arrived.items() if n > 1}
    attempts: dict[tuple[str, str, Any], list[dict[str, Any]]] = collections.defaultdict(list)
    before = None
    while True:  # the whole attempt log, through a survivor
        query = "/api/deliveries?limit=1000" + (f"&before={before}" if before else "")
        page = procs[0].api("GET", query).json()
        for d in page["deliveries"]:
            body = json.loads(d["request_body"])
            attempts[_key(body["EventData"], body["EventType"])].append(d)
        before = page["next_before"]
        if before is None:
            break
    marked = {k for k, log in attempts.items() if any(d["possible_duplicate"] for d in log)}
    # A retry after an attempt that failed (a timeout on a loaded machine: the backend may have
    # got it) is a duplicate the attempt log shows too; the takeover's must be marked.
    retried = {k for k, log in attempts.items() if any(not d["ok"] for d in log)}
    unexplained = sorted(twice - marked - retried)
    shown = {
        k: [(d["ok"], d["error"], d["possible_duplicate"]) for d in attempts[k]]
        for k in unexplained[:3]
    }
    assert not unexplained, f"{len(unexplained)} duplicates not marked, e.g. {shown}"
    assert procs[2].api("GET", "/healthz").status_code == 200


def test_a_process_stopping_cleanly_hands_its_callbacks_over_at_once(
    cluster: Any, receiver: Receiver
) -> None:
    """A lease of ten minutes: only the stopping process giving its claims back (and telling
    the others) can explain the survivor sending them within the test's timeout."""
    a, b = cluster(2, "--lease", "600", "--speed", "1000")
    tasks = _create_round_robin([a], 50)
    planned = _planned(tasks)
    code, _ = a.stop(signal.SIGTERM)
    assert code == 0
    receiver.wait_for(lambda got: set(_arrived(receiver)) >= set(planned), timeout=60)
    wait_until(lambda: _pending(b) == 0, "process b to have sent all")
    assert _arrived(receiver) == planned
    log = b.api("GET", "/api/deliveries?limit=1000").json()["deliveries"]
    assert len(log) == sum(planned.values()) and not any(d["possible_duplicate"] for d in log)


def test_two_processes_racing_for_a_room_give_one_201_and_the_rest_409(cluster: Any) -> None:
    procs = cluster(2)
    rooms = list(range(5000, 5010))
    start = threading.Barrier(4)
    codes: dict[int, list[int]] = collections.defaultdict(list)
    lock = threading.Lock()

    def race(worker: int) -> None:
        http = requests.Session()
        http.trust_env = False
        start.wait()
        for room in rooms:
            url = procs[worker % 2].url
            reply = http.post(f"{url}/api/tasks", json={"room_id": room}, timeout=60)
            with lock:
                codes[room].append(reply.status_code)

    threads = [threading.Thread(target=race, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert {room: sorted(c) for room, c in codes.items()} == {
        room: [201, 409, 409, 409] for room in rooms
    }


def test_config_rules_scenarios_and_cancel_apply_to_every_process(
    cluster: Any, receiver: Receiver
) -> None:
    (a,) = cluster(1)
    before = _epoch(a)
    (b,) = cluster(1)
    # b joined a's clock: the running clock did not move, and both read it.
    assert abs(_epoch(a) - before) < 0.01 * float(SPEED)
    _same_clock(a, b, speed=float(SPEED))
    assert a.api("PATCH", "/api/config", json={"retry": "none", "speed": 100}).status_code == 200
    wait_until(lambda: b.api("GET", "/api/config").json()["retry"] == "none", "the config")
    _same_clock(a, b, speed=100.0)
    # b reads (and keeps) the rules at a creation, then a adds one: b follows it.
    app = {"sdk_app_id": 1400000099}
    assert b.api("POST", "/api/tasks", json=app).json()["scenario"] == "success"
    rule = {"match": app, "scenario": "transcode-failure"}
    assert a.api("POST", "/api/rules", json=rule).status_code == 201
    wait_until(
        lambda: b.api("POST", "/api/tasks", json=app).json()["scenario"] == "transcode-failure",
        "process b to apply process a's rule",
    )
    doc = {
        "name": "team-scenario",
        "description": "from process a",
        "outcome": {"result": "success"},
    }
    assert a.api("POST", "/api/scenarios", json=doc).status_code == 201
    wait_until(
        lambda: b.api("POST", "/api/tasks", json={"scenario": "team-scenario"}).status_code == 201,
        "the user scenario to reach process b",
    )
    # A task created through a (its only one) is cancelled through b: a drops its callbacks.
    slow = a.api("POST", "/api/tasks", json={"scenario": "slow"}).json()
    assert _pending(a) == sum(e["state"] == "scheduled" for e in slow["events"]) > 0
    cancelled = b.api("POST", f"/api/tasks/{slow['task_id']}/cancel").json()
    assert cancelled["status"] == "cancelled"
    wait_until(lambda: _pending(a) == 0, "process a to drop the cancelled task's callbacks")
    assert a.api("GET", f"/api/tasks/{slow['task_id']}").json()["status"] == "cancelled"
    assert not [e for e in receiver.events() if e["EventData"]["TaskId"] == slow["task_id"]]


def test_the_manual_clock_is_refused_while_processes_share_the_database(
    cluster: Any, pg_url: str
) -> None:
    (a,) = cluster(1)
    refusal = serve_refuses("--db", pg_url, "--clock", "manual")
    assert "manual clock needs the database to itself" in refusal
    assert PASSWORD not in refusal
    assert a.api("PATCH", "/api/config", json={"clock": "manual"}).status_code == 200  # alone
    assert a.api("PATCH", "/api/config", json={"clock": "real"}).status_code == 200
    (b,) = cluster(1)
    refused = a.api("PATCH", "/api/config", json={"clock": "manual"})
    assert refused.status_code == 409
    assert "manual clock needs the database to itself" in refused.json()["error"]["message"]
    assert b.api("GET", "/api/config").json()["clock"] == "real"


def test_after_a_lost_listening_session_a_process_drops_what_it_missed(
    pg_url: str, receiver: Receiver
) -> None:
    """Notices sent while a process's listening session was down are gone; on reconnecting it
    resyncs, and asks the database which of its scheduled callbacks are still its to send."""
    import psycopg

    from emulator.core.config import Settings
    from emulator.core.service import Emulator
    from emulator.store.pg_shared import Notice

    settings = {"db": pg_url, "clock": "manual", "retry": "none", "callback_url": receiver.url}
    emu = Emulator(Settings.load(settings, env={})).start()
    try:
        kept = emu.create_task(scenario="success")
        missed = emu.create_task(scenario="success")
        with psycopg.connect(pg_url, autocommit=True) as conn:  # another process's cancel
            conn.execute(
                "UPDATE events SET state = 'cancelled' WHERE task_id = %s", (missed["task_id"],)
            )
        planned = [e for t in (kept, missed) for e in t["events"] if e["state"] == "scheduled"]
        assert emu.engine.pending_count() == len(planned)
        emu.apply_change(Notice("resync"))
        wait_until(
            lambda: emu.engine.pending_count() == len(planned) // 2,
            "the missed cancellation's callbacks to be dropped",
        )
        assert emu.advance(86400)["fired"] == len(planned) // 2
        assert {e["EventData"]["TaskId"] for e in receiver.events()} == {kept["task_id"]}
    finally:
        emu.close()


def test_a_lease_out_of_range_is_refused_in_one_line(tmp_path: Any) -> None:
    refusal = serve_refuses("--db", str(tmp_path / "e.db"), "--lease", "0.1")
    assert "lease_s" in refusal and "between 0.5 and 3600" in refusal
