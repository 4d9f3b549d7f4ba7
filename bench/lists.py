"""List routes at scale: latency of each list route at limit=50 through the HTTP front door.

The database is filled the honest way first: tasks through the core's `create_task` (as the
control API does), then failed attempts through the store's attempt log (as the engine records
them). Then `tiw-emulator serve` opens that file and each route is timed over keep-alive HTTP.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.proc import Served, http_session
from emulator.core.config import Settings
from emulator.core.service import Emulator

Progress = Callable[[str], None]
SCENARIOS = ("success", "transcode-failure", "record-failure", "slow", "success-mixed-stream")


def fill(db: Path, tasks: int, attempts: int, progress: Progress) -> dict[str, Any]:
    settings = {"db": str(db), "clock": "manual", "seed": 1, "retry": "none"}
    # Nothing listens on port 9: every callback fails at once, as a dead backend's would.
    settings["callback_url"] = "http://127.0.0.1:9/tiw"
    emu = Emulator(Settings.load(settings, env={})).start()
    try:
        started = time.monotonic()
        made = []
        for n in range(tasks):
            made.append(emu.create_task(scenario=SCENARIOS[n % len(SCENARIOS)], room_id=n + 1))
            if n and n % 5000 == 0:
                progress(f"  {n:,} tasks")
        progress(f"  {tasks:,} tasks in {time.monotonic() - started:.1f} s")
        emu.advance(30 * 86400)  # every task finishes (the callbacks have nowhere to go)
        store = emu.store
        per_task = max(1, attempts // tasks)
        n = 0
        for task in made:
            for k in range(per_task):
                store.record_attempt(_failed_attempt(task, k))
                n += 1
            if n % 20000 < per_task:
                store.flush()
        store.flush()
        progress(f"  {n:,} failed attempts recorded")
        return {"tasks": tasks, "attempts": n, "sample": made[tasks // 2]}
    finally:
        emu.close()


def _failed_attempt(task: dict[str, Any], k: int) -> dict[str, Any]:
    return {
        "event_id": None,
        "task_id": task["task_id"],
        "event_type": "OfflineRecordProgressChanged",
        "attempt": k + 1,
        "url": "http://127.0.0.1:9/tiw",
        "request_headers": {"Content-Type": "application/json"},
        "request_body": '{"EventType": "OfflineRecordProgressChanged"}',
        "status_code": 500,
        "response_headers": None,
        "response_body": "internal error",
        "error": None,
        "started_at": time.time(),
        "duration_ms": 1.0,
        "ok": False,
        "emulated_at": 0.0,
        "redelivery_of": None,
        "possible_duplicate": False,
    }


def routes(sample: dict[str, Any]) -> list[str]:
    task_id, room = sample["task_id"], sample["room_id"]
    return [
        "/api/tasks?limit=50",
        "/api/tasks?limit=50&status=finished",
        "/api/tasks?limit=50&scenario=transcode-failure",
        "/api/tasks?limit=50&outcome=failure",
        "/api/tasks?limit=50&error_code=FailedOperation.Record",
        f"/api/tasks?limit=50&room_id={room}",
        "/api/tasks?limit=50&offset=10000",
        "/api/deliveries?limit=50",
        "/api/deliveries?limit=50&ok=false",
        "/api/deliveries?limit=50&status_code=500",
        "/api/deliveries?limit=50&event_type=OfflineRecordFinished",
        f"/api/deliveries?limit=50&task_id={task_id}",
        "/api/deliveries?limit=50&before=50000",
        f"/api/tasks/{task_id}/events",
        "/api/cloud-calls?limit=50",
    ]


def list_latency(
    workdir: Path, tasks: int, attempts: int, progress: Progress, reps: int = 20
) -> dict[str, Any]:
    progress(f"  filling a database: {tasks:,} tasks, {attempts:,} failed attempts")
    filled = fill(workdir / "lists.db", tasks, attempts, progress)
    served = Served(workdir, "lists", "--clock", "manual", keep_db=True)
    http = http_session()
    out: dict[str, Any] = {"tasks": filled["tasks"], "attempts": filled["attempts"], "routes": {}}
    try:
        for path in routes(filled["sample"]):
            http.get(served.url + path, timeout=60).raise_for_status()  # warm
            times = []
            for _ in range(reps):
                began = time.perf_counter()
                response = http.get(served.url + path, timeout=60)
                times.append((time.perf_counter() - began) * 1000)
                response.raise_for_status()
            times.sort()
            out["routes"][path] = {
                "p50_ms": statistics.median(times),
                "p95_ms": times[int(len(times) * 0.95) - 1],
                "max_ms": times[-1],
            }
            progress(f"  {path}: p50 {statistics.median(times):.1f} ms, max {times[-1]:.1f} ms")
    finally:
        http.close()
        served.stop()
    return out
