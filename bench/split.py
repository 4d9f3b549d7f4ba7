"""Where a created task's CPU goes, thread by thread: the control plane against delivery.

A fresh `tiw-emulator serve --clock real --speed 1 --retry none` whose callbacks go to a
receiver process; 50 concurrent keep-alive aiohttp clients create `tasks` tasks whose only event
is the Finished due 0.1 s after creation (the peer harness's sat100 work, bench/frontdoor.py);
then the benchmark waits for every callback. The server's CPU over that span is read per thread
from /proc (the emulator names its threads for the OS: emulator/core/threadname.py) and divided
by the tasks: the control plane is the HTTP loop (the main thread), the app's threads (the lane
that creations run on, the pool) and the store's committer; delivery is the engine's thread
and the store's attempt writer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from bench.proc import Served
from bench.recv import RecvProc

Progress = Callable[[str], None]
CLIENTS = 50
D100 = {"progress_steps": 0, "queue_delay_s": 0, "duration_s": 1, "duration_factor": 0.1}
CONTROL = {"main": "HTTP loop", "tiw-lane": "app: lane", "tiw-http": "app: pool"}
CONTROL_STORE = {"tiw-commit": "committer"}
DELIVERY = {"tiw-engine": "engine", "tiw-store-write": "attempt writer"}


def run(workdir: Path, recv: RecvProc, tasks: int, progress: Progress) -> dict[str, Any]:
    served = Served(
        workdir, "split", "--clock", "real", "--speed", "1", "--retry", "none",
        "--callback-url", recv.url,
    )  # fmt: skip
    try:
        asyncio.run(_create(served.url, 200))  # warm-up: not counted
        recv.wait_count(200, 30)
        recv.reset()
        before, started = served.thread_cpu_s(), time.monotonic()
        asyncio.run(_create(served.url, tasks))
        created = time.monotonic() - started
        stats = recv.wait_count(tasks, 60)
        after = served.thread_cpu_s()
    finally:
        served.stop()
    per_task = {
        name: (after[name] - before.get(name, 0.0)) / tasks * 1e6 for name in after
    }  # µs of CPU per created task, by thread
    control = sum(per_task.get(n, 0.0) for n in (*CONTROL, *CONTROL_STORE))
    delivery = sum(per_task.get(n, 0.0) for n in DELIVERY)
    out = {
        "tasks": tasks,
        "arrived": stats["count"],
        "rate": tasks / created,
        "per_thread_us": {k: round(v, 1) for k, v in sorted(per_task.items()) if v > 0},
        "control_us": control,
        "delivery_us": delivery,
        "total_us": sum(per_task.values()),
    }
    progress(
        f"  {tasks:,} tasks at {out['rate']:,.0f}/s, {out['arrived']:,} callbacks;"
        f" CPU per task {out['total_us']:,.0f} µs: control plane {control:,.0f},"
        f" delivery {delivery:,.0f}"
    )
    return out


async def _create(url: str, tasks: int) -> None:
    left = iter(range(tasks))
    connector = aiohttp.TCPConnector(limit=CLIENTS)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def client() -> None:
            for _ in left:
                body = {"scenario": "success", "params": D100}
                async with session.post(url + "/api/tasks", json=body) as reply:
                    await reply.read()
                    if reply.status != 201:
                        raise RuntimeError(f"POST /api/tasks: {reply.status}")

        await asyncio.gather(*(client() for _ in range(CLIENTS)))


def labels() -> dict[str, str]:
    """Thread name -> what it is, for the report."""
    return {**CONTROL, **CONTROL_STORE, **DELIVERY}


def rows(result: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """The report's row: CPU per created task, control plane and delivery, thread by thread."""
    per = result["per_thread_us"]
    names = labels()

    def parts(group: dict[str, str]) -> str:
        return ", ".join(f"{names[n]} {per[n]:,.0f}" for n in group if n in per)

    control = result["control_us"]
    return [
        (
            "a created task's CPU by thread (`serve`, 50 clients, one callback due 0.1 s"
            " after), µs",
            f"{result['total_us']:,.0f} at {result['rate']:,.0f} tasks/s"
            f" ({result['arrived']:,}/{result['tasks']:,} callbacks): control plane"
            f" {control:,.0f} ({parts({**CONTROL, **CONTROL_STORE})}); delivery"
            f" {result['delivery_us']:,.0f} ({parts(DELIVERY)})",
            "control plane ≤ 500 per created callback",
            "–",
            "yes" if control <= 500 else "**no**",
        )
    ]


NOTE = (
    "- CPU by thread: `bench/split.py`. A fresh `tiw-emulator serve` (real clock, speed 1, no"
    " retries), 50 keep-alive aiohttp clients creating tasks whose only callback is due 0.1 s"
    " after creation, then every callback awaited; each thread's user + system CPU over that"
    " span (/proc, by the names the emulator gives its threads) per task. Control plane: the"
    " HTTP loop (main thread), the app's lane and pool threads, the store's committer; delivery:"
    " the engine and the attempt writer. The front-door row above counts both."
)
