"""Concurrency stress over loopback HTTP: creators, ad-hoc events, resets, config patches and
readers at once for a few seconds. Zero 5xx, and every callback the backend saw is logged."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import reliability_log
import requests

from emulator.receiver import Receiver

RUN_S = 4.0


class Worker(threading.Thread):
    """Repeats `step` until the deadline; records every 5xx and unexpected failure."""

    def __init__(
        self, url: str, step: Callable[[requests.Session, int], None], run_s: float = RUN_S
    ) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.step = step
        self.failures: list[str] = []
        self.stop_at = time.monotonic() + run_s

    def run(self) -> None:
        http = requests.Session()
        http.trust_env = False
        n = 0
        try:
            while time.monotonic() < self.stop_at:
                try:
                    self.step(http, n)
                except Exception as exc:
                    self.failures.append(f"{type(exc).__name__}: {exc}")
                n += 1
        finally:
            http.close()


def test_concurrent_control_traffic_gives_no_5xx_and_loses_no_attempt(
    make_emulator: Any, receiver: Receiver, db: str
) -> None:
    running = make_emulator(
        db=db, callback_url=receiver.url, clock="real", speed=1_000_000, retry="fast", timeout_s=5
    )
    url = running.url
    statuses: list[tuple[str, int]] = []
    lock = threading.Lock()
    last_reset_done = [0.0]
    # TaskId (or ad-hoc marker) -> when the request that made it started
    started_at: dict[str, float] = {}
    adhoc_ids: dict[str, int] = {}

    def note(route: str, response: requests.Response) -> None:
        with lock:
            statuses.append((route, response.status_code))

    def create(http: requests.Session, n: int) -> None:
        began = time.monotonic()
        r = http.post(f"{url}/api/tasks", json={"scenario": "success"}, timeout=30)
        note("create", r)
        if r.status_code == 201:
            with lock:
                started_at[r.json()["task_id"]] = began

    def adhoc(http: requests.Session, n: int) -> None:
        marker = f"adhoc-{threading.get_ident()}-{n}"
        began = time.monotonic()
        r = http.post(
            f"{url}/api/events",
            json={
                "event_type": "OfflineRecordProgressChanged",
                "event_data": {"TaskId": marker, "RoomId": 1, "Progress": n % 100},
            },
            timeout=30,
        )
        note("event", r)
        if r.status_code == 200:
            with lock:
                started_at[marker] = began
                adhoc_ids[marker] = r.json()["id"]

    def reset(http: requests.Session, n: int) -> None:
        time.sleep(0.4)  # pacing the load, not synchronisation: a reset every ~0.4 s
        r = http.post(f"{url}/api/reset", timeout=30)
        note("reset", r)
        with lock:
            last_reset_done[0] = time.monotonic()

    def patch(http: requests.Session, n: int) -> None:
        body = {"speed": 500_000 if n % 2 else 1_000_000, "timeout_s": 5 + n % 3}
        note("config", http.patch(f"{url}/api/config", json=body, timeout=30))

    def read(http: requests.Session, n: int) -> None:
        for path in ("/api/tasks?limit=50", "/api/deliveries?limit=50", "/api/clock"):
            note(path, http.get(url + path, timeout=30))
        with lock:
            some = next(iter(started_at), None)
        if some is not None and not some.startswith("adhoc"):
            r = http.get(f"{url}/api/tasks/{some}", timeout=30)
            note("task", r)

    workers = [
        Worker(url, create),
        Worker(url, create),
        Worker(url, adhoc),
        Worker(url, reset, RUN_S - 1.5),  # the last second and a half runs without resets
        Worker(url, patch),
        Worker(url, read),
        Worker(url, read),
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join(RUN_S + 60)
    assert not any(w.is_alive() for w in workers)
    assert [f for w in workers for f in w.failures] == []
    server_errors = [s for s in statuses if s[1] >= 500]
    assert server_errors == []
    assert sum(1 for route, code in statuses if route == "create" and code == 201) > 10
    assert sum(1 for route, _ in statuses if route == "reset") >= 3

    # Everything made after the last reset must be in the log once its callbacks are out.
    kept = {k for k, began in started_at.items() if began > last_reset_done[0]}
    kept_tasks = [k for k in kept if not k.startswith("adhoc")]
    assert kept, "the run made nothing after its last reset"
    for task_id in kept_tasks:
        deadline = time.monotonic() + 30
        while running.api("GET", f"/api/tasks/{task_id}").json()["status"] != "finished":
            assert time.monotonic() < deadline, task_id
            time.sleep(0.02)  # polling the emulator's own state, bounded by the deadline

    def seen_bodies() -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for r in receiver.received:
            task_id = r.json["EventData"].get("TaskId")
            if task_id in kept:
                out.setdefault(task_id, set()).add(r.body.decode())
        return out

    expected = {
        t: sum(
            e["state"] != "dropped" for e in running.api("GET", f"/api/tasks/{t}").json()["events"]
        )
        for t in kept_tasks
    }
    receiver.wait_for(
        lambda _: all(len(seen_bodies().get(t, ())) >= n for t, n in expected.items()), 30
    )
    logged: set[str] = set()
    before = None
    while True:
        page = running.api(
            "GET",
            "/api/deliveries",
            params={"limit": 1000, **({"before": before} if before else {})},
        ).json()
        logged |= {d["request_body"] for d in page["deliveries"]}
        before = page["next_before"]
        if before is None:
            break
    missing = {t: b - logged for t, b in seen_bodies().items() if b - logged}
    assert missing == {}
    for marker in kept & set(adhoc_ids):
        r = running.api(
            "GET", "/api/deliveries", params={"limit": 1, "before": adhoc_ids[marker] + 1}
        )
        assert r.json()["deliveries"][-1]["id"] == adhoc_ids[marker]
    reliability_log.record(
        "stress",
        "7 threads for 4 s over loopback: 2 creating tasks, ad-hoc events, resets every ~0.4 s,"
        " config patches, 2 readers",
        observed="no 5xx; every callback the backend saw after the last reset is in the attempt"
        " log",
    )
