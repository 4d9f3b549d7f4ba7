"""Load mode benchmarks: what Locust-driven load sustains, beside the emulator's own engine.

Every figure is measured against the same fast local receiver (`bench.recv`, its own process):
- one load process (`locust --headless`, the `tiw-emulator load` path) sending flat out
  (`--speed max`): callbacks/s between the first and the last arrival at the receiver;
- the same with a master and two worker processes (the distributed path);
- a fixed pace of 500 callbacks/s (`--user-rate`): the latency Locust measures, which is what
  the load machinery itself adds, since the receiver answers in microseconds.
"""

from __future__ import annotations

import json
import resource
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.recv import RecvProc
from emulator.load import LOCUSTFILE

Progress = Callable[[str], None]
USERS = 50
FIXED_RATE = 500.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _locust(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _load_args(recv: RecvProc, summary: Path, *extra: str) -> list[str]:
    return [
        *("--headless", "--host", recv.url, "-u", str(USERS), "-r", "1000"),
        *("--mix", "success", "--summary-file", str(summary), "--only-summary", *extra),
    ]


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _finish(
    recv: RecvProc, summary: Path, procs: list[subprocess.Popen[str]], cpu_before: float
) -> dict[str, Any]:
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    cpu_s = _children_cpu_s() - cpu_before  # the Locust processes just waited for
    if procs[0].returncode != 0 or not summary.exists():
        raise RuntimeError(f"load run failed (exit {procs[0].returncode}): {outputs[0][-2000:]}")
    result: dict[str, Any] = json.loads(summary.read_text())
    stats = recv.wait_quiet(0.3)
    span = (stats["last"] or 0) - (stats["first"] or 0)
    return {
        "sent": result["callbacks_sent"],
        "arrived": stats["count"],
        "failed": result["failed"],
        "rate": stats["count"] / span if span > 0 else None,
        "latency_ms": result["latency_ms"],
        "workers": len(result["by_worker"]),
        # CPU of the Locust processes per callback: unlike the rate, not diluted by other
        # work on the machine.
        "cpu_ms_per_callback": cpu_s * 1000 / stats["count"] if stats["count"] else None,
    }


def flat_out(recv: RecvProc, tasks: int, workers: int) -> dict[str, Any]:
    """`tasks` success tasks (~5 callbacks each) as fast as one process or `workers` go."""
    recv.reset()
    with tempfile.TemporaryDirectory(prefix="tiw-bench-load-") as tmp:
        summary = Path(tmp) / "summary.json"
        args = _load_args(recv, summary, "--tasks", str(tasks), "--speed", "max", "-t", "300s")
        cpu = _children_cpu_s()
        if workers == 0:
            return _finish(recv, summary, [_locust(*args)], cpu)
        port = str(_free_port())
        master = _locust(
            *args,
            *("--master", "--expect-workers", str(workers), "--master-bind-host", "127.0.0.1"),
            *("--master-bind-port", port),
        )
        helpers = [
            _locust("--worker", "--master-host", "127.0.0.1", "--master-port", port)
            for _ in range(workers)
        ]
        return _finish(recv, summary, [master, *helpers], cpu)


def fixed_pace(recv: RecvProc, seconds: float) -> dict[str, Any]:
    """500 callbacks/s (50 users x 10/s) for `seconds`: achieved rate and measured latency."""
    recv.reset()
    with tempfile.TemporaryDirectory(prefix="tiw-bench-load-") as tmp:
        summary = Path(tmp) / "summary.json"
        per_user = f"{FIXED_RATE / USERS:g}"
        args = _load_args(recv, summary, "--user-rate", per_user, "-t", f"{seconds:g}s")
        result = _finish(recv, summary, [_locust(*args)], _children_cpu_s())
    result["target_rate"] = FIXED_RATE
    return result


def _said(progress: Progress, result: dict[str, Any]) -> None:
    progress(
        f"    {result['rate']:,.0f} callbacks/s, {result['cpu_ms_per_callback']:.2f} ms CPU each"
    )


def run(recv: RecvProc, scale: float, progress: Progress) -> dict[str, Any]:
    tasks = max(200, int(3000 * scale))
    out: dict[str, Any] = {"tasks": tasks, "users": USERS}
    progress(f"  one load process, {tasks:,} tasks flat out")
    out["one"] = flat_out(recv, tasks, workers=0)
    _said(progress, out["one"])
    progress(f"  master + two workers, {tasks * 2:,} tasks flat out")
    out["two"] = flat_out(recv, tasks * 2, workers=2)
    _said(progress, out["two"])
    seconds = 4.0 if scale < 1 else 10.0
    progress(f"  fixed pace {FIXED_RATE:g} callbacks/s for {seconds:g} s")
    out["paced"] = fixed_pace(recv, seconds)
    lat = out["paced"]["latency_ms"]
    progress(f"    {out['paced']['rate']:,.0f}/s, p50 {lat['p50']} ms, p99 {lat['p99']} ms")
    return out
