"""Benchmarks of the delivery engine run in this process against receiver subprocesses.

The emulator core (`Emulator`: store, clock, engine) runs here without its HTTP front end, so
the measured path is exactly "events scheduled in the engine -> POSTs arriving at the receiver";
task creation happens before the clock starts.
"""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.recv import RecvProc
from emulator.core import payloads
from emulator.core.config import Settings
from emulator.core.service import Emulator
from emulator.core.signing import SignMode
from emulator.delivery.dispatcher import HEADERS
from emulator.delivery.scheduler import Outgoing
from emulator.store.base import NewEvent

Progress = Callable[[str], None]
FAR = 30 * 86400.0  # an advance that finishes every planned task


def new_emulator(workdir: Path, name: str, **settings: Any) -> Emulator:
    db = workdir / f"{name}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    return Emulator(Settings.load({"db": str(db), **settings}, env={})).start()


def scheduled_count(emu: Emulator) -> int:
    return sum(1 for e in emu.store.pending_events() if e["state"] == "scheduled")


def sample_body() -> bytes:
    """A real ProgressChanged envelope (about the size the emulator sends)."""
    data = payloads.encode_data(payloads.progress_data("0" * 20, 12345678, 42))
    return payloads.envelope_bytes(
        payloads.PROGRESS_CHANGED,
        data,
        sdk_app_id=1400000001,
        timestamp=int(time.time()),
        callback_key="Xz4ZgayTr7rMgWQrH",
        ttl_s=300,
        sign_mode=SignMode.VALID,
    )


def naive_requests(recv: RecvProc, n: int) -> dict[str, Any]:
    """A naive `requests.post` loop (no Session: a new connection per POST)."""
    import requests

    body = sample_body()
    recv.reset()
    started = time.monotonic()
    for _ in range(n):
        requests.post(recv.url, data=body, headers=HEADERS, timeout=10)
    elapsed = time.monotonic() - started
    stats = recv.stats()
    return {"sent": n, "arrived": stats["count"], "seconds": elapsed, "rate": n / elapsed}


def _deliver_all(
    emu: Emulator, recv: RecvProc, tasks: int, progress: Progress, timeout: float
) -> dict[str, Any]:
    created = time.monotonic()
    for _ in range(tasks):
        emu.create_task(scenario="success")
    create_s = time.monotonic() - created
    expected = scheduled_count(emu)
    progress(f"  {tasks} tasks created in {create_s:.2f} s; {expected} callbacks to deliver")
    recv.reset()
    cpu = process_cpu_s()
    started = time.monotonic()
    emu.advance(FAR)
    stats = recv.wait_count(expected, timeout)
    end = stats["last"] or time.monotonic()
    cpu = process_cpu_s() - cpu
    return {
        "tasks": tasks,
        "expected": expected,
        "arrived": stats["count"],
        "seconds": end - started,
        "rate": stats["count"] / (end - started),
        # every thread of this process (engine, store writer, the waiting main thread), not the
        # receiver's: unlike the rate, it hardly moves when other work shares the machine
        "cpu_us_per_callback": cpu / max(stats["count"], 1) * 1e6,
        "create_s": create_s,
    }


def process_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def delivery_throughput(
    workdir: Path, recv: RecvProc, tasks: int, progress: Progress
) -> dict[str, Any]:
    """All callbacks of `tasks` success tasks fired by one manual advance, as fast as they go."""
    emu = new_emulator(workdir, "throughput", clock="manual", callback_url=recv.url)
    try:
        return _deliver_all(emu, recv, tasks, progress, timeout=120)
    finally:
        emu.close()


def slow_backend(workdir: Path, recv: RecvProc, tasks: int, progress: Progress) -> dict[str, Any]:
    """The same, to a backend that answers each callback after 50 ms."""
    emu = new_emulator(workdir, "slow", clock="manual", callback_url=recv.url)
    try:
        return _deliver_all(emu, recv, tasks, progress, timeout=120)
    finally:
        emu.close()


def paced_events(
    emu: Emulator, prefix: str, count: int, rate: float, first_due: float
) -> tuple[list[NewEvent], dict[str, float]]:
    """`count` callbacks due `rate` per second (0: all at once) from emulated `first_due`,
    as rows for the events table, and each one's receiver key -> monotonic deadline."""
    cfg = emu.config()
    rows, deadlines = [], {}
    for i in range(count):
        task_id = f"{prefix}{i:07d}"
        data_json = payloads.encode_data(payloads.progress_data(task_id, 1, 50))
        due = round(first_due + (i / rate * emu.clock.speed if rate else 0.0), 6)
        rows.append(
            NewEvent(
                seq=1,
                event_type=payloads.PROGRESS_CHANGED,
                due_at=due,
                state="scheduled",
                event_data=data_json,
                sign_mode="valid",
                note="",
                sdk_app_id=cfg.sdk_app_id,
                callback_url=None,
                task_id=task_id,
            )
        )
        deadline = emu.clock.deadline_for(due)
        assert deadline is not None
        deadlines[f"{task_id}|{payloads.PROGRESS_CHANGED}|50"] = deadline
    return rows, deadlines


def _schedule_paced(
    emu: Emulator, prefix: str, count: int, rate: float, lead_s: float
) -> dict[str, float]:
    """Schedule `count` callbacks due `rate` per second from now + lead_s; key -> deadline."""
    rows, deadlines = paced_events(emu, prefix, count, rate, emu.clock.now() + lead_s)
    emu.store.insert_events(rows)
    emu.engine.schedule(Outgoing.of(e) for e in rows)
    return deadlines


def lateness(
    workdir: Path, recv: RecvProc, count: int, rate: float, progress: Progress
) -> dict[str, Any]:
    """Callbacks due at 1,000/s on a real clock: arrival (monotonic) minus deadline."""
    emu = new_emulator(workdir, "lateness", clock="real", speed=1.0, callback_url=recv.url)
    try:
        warm = _schedule_paced(emu, "warm", 200, rate, 0.2)
        recv.wait_count(len(warm), 10)
        recv.reset()
        deadlines = _schedule_paced(emu, "late", count, rate, 0.5)
        progress(f"  {count} callbacks scheduled at {rate:g}/s; waiting")
        recv.wait_count(count, 0.5 + count / rate + 10)
        rows = recv.stats(rows=True)["rows"]
    finally:
        emu.close()
    late_ms = sorted((at - deadlines[key]) * 1000 for key, at in rows if key in deadlines)
    return {
        "scheduled": count,
        "arrived": len(late_ms),
        "p50_ms": statistics.median(late_ms) if late_ms else None,
        "p99_ms": late_ms[int(len(late_ms) * 0.99) - 1] if late_ms else None,
        "max_ms": late_ms[-1] if late_ms else None,
        "min_ms": late_ms[0] if late_ms else None,
    }
