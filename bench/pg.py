"""The PostgreSQL store beside SQLite, in one run (issue 10): one emulator process and two.

A throwaway PostgreSQL server (tests/pgserver.py: initdb on a temp dir, a free loopback port)
holds a fresh database per measurement. Each emulator process is a `bench.pgworker` (the core
and its engine, no HTTP front end) planning its share of the callbacks, so the figures are the
delivery path's: store, scheduler, dispatcher, transport. Variants, interleaved over rounds:
SQLite with one process, PostgreSQL with one, PostgreSQL with two sharing the database.

- burst: every callback due at one instant; rate = arrived / (last arrival - that instant).
- paced: callbacks due at 1,000/s; lateness = arrival - deadline (the receiver's monotonic
  clock is system-wide, so the workers' deadlines compare with it).
- creation: `POST /api/tasks` over HTTP to `serve` processes (16 keep-alive clients, round
  robin over the processes), tasks per second.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.pgworker import WARM_UP
from bench.proc import Served, http_session
from bench.recv import RecvProc

Progress = Callable[[str], None]
VARIANTS = (("sqlite", 1), ("postgres", 1), ("postgres", 2))
LEAD_S = 4.0  # workers start, connect and plan before the first callback falls due


def start_server(progress: Progress) -> Any | None:
    """A PgServer from the test suite's helper, or None (with the reason) if it cannot run."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    try:
        import psycopg  # noqa: F401
        from pgserver import INSTALL_HINT, PgServer, find_bindir
    except ImportError:
        progress("  skipped: psycopg is not installed (pip install -e '.[dev,postgres]')")
        return None
    bindir = find_bindir()
    if bindir is None:
        progress(f"  skipped: {INSTALL_HINT}")
        return None
    return PgServer(bindir)


def _workers(dbs: list[str], recv: RecvProc, count: int, rate: float) -> list[dict[str, Any]]:
    """Run one worker per entry of `dbs` at once, sharing `count` callbacks and `rate`."""
    recv.reset()
    start = time.time() + LEAD_S
    procs = []
    for n, db in enumerate(dbs):
        args = {
            "db": db,
            "recv": recv.url,
            "prefix": f"w{n}x",
            "count": count // len(dbs),
            "rate": rate / len(dbs),
            "start": start,
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "bench.pgworker", json.dumps(args)],
                stdout=subprocess.PIPE,
                text=True,
            )
        )
    # The workers' warm-up callbacks fall due a second before `start`: not measured.
    recv.wait_count(WARM_UP * len(dbs), LEAD_S + 10)
    recv.reset()
    results = []
    for p in procs:
        out, _ = p.communicate(timeout=300)
        if p.returncode != 0:
            raise RuntimeError(f"bench.pgworker exited with {p.returncode}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    if not all(r["ready"] for r in results):
        print(f"  warning: a worker planned past the start ({LEAD_S:g} s): a loaded machine")
    return results


def _dbs(kind: str, processes: int, server: Any, workdir: Path, name: str) -> list[str]:
    if kind == "sqlite":
        return [str(workdir / f"{name}.db")]
    url = server.database()
    return [url] * processes


def burst(dbs: list[str], recv: RecvProc, count: int) -> dict[str, Any]:
    done = _workers(dbs, recv, count, 0.0)
    stats = recv.wait_count(count, 60)
    start = min(min(r["deadlines"].values()) for r in done)
    seconds = (stats["last"] or start) - start
    return {
        "arrived": stats["count"],
        "rate": stats["count"] / seconds if seconds > 0 else None,
        "cpu_us": sum(r["cpu_s"] for r in done) / max(1, stats["count"]) * 1e6,
    }


def paced(dbs: list[str], recv: RecvProc, count: int, rate: float) -> dict[str, Any]:
    done = _workers(dbs, recv, count, rate)
    recv.wait_count(count, 30)
    deadlines = {k: v for r in done for k, v in r["deadlines"].items()}
    rows = recv.stats(rows=True)["rows"]
    late = sorted((at - deadlines[key]) * 1000 for key, at in rows if key in deadlines)
    return {
        "arrived": len(late),
        "p50_ms": statistics.median(late) if late else None,
        "p99_ms": late[int(len(late) * 0.99) - 1] if late else None,
    }


def creation(kind: str, processes: int, server: Any, workdir: Path, tasks: int) -> float:
    """Tasks per second through `processes` serve processes (16 clients round robin)."""
    name = f"create-{kind}-{processes}"
    db = str(workdir / f"{name}.db") if kind == "sqlite" else server.database()
    flags = ("--clock", "real", "--speed", "1", "--db", db)
    served = [Served(workdir, f"{name}-{i}", *flags) for i in range(processes)]
    try:
        sessions = [http_session() for _ in range(16)]

        def create(n: int) -> None:
            url = served[n % processes].url
            sessions[n % 16].post(f"{url}/api/tasks", json={"scenario": "success"}, timeout=60)

        started = time.monotonic()
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(create, range(tasks)))
        return tasks / (time.monotonic() - started)
    finally:
        for s in served:
            s.stop()


def run(workdir: Path, recv: RecvProc, scale: float, progress: Progress) -> dict[str, Any] | None:
    server = start_server(progress)
    if server is None:
        return None
    count, paced_count, tasks = int(20000 * scale), int(3000 * scale), int(2000 * scale)
    rounds = 2
    got: dict[str, dict[str, list[Any]]] = {}
    try:
        for r in range(rounds):
            for kind, n in VARIANTS:
                key = f"{kind}-{n}"
                row = got.setdefault(key, {"rate": [], "cpu_us": [], "p50": [], "p99": []})
                b = burst(_dbs(kind, n, server, workdir, f"b{r}{key}"), recv, count)
                p = paced(_dbs(kind, n, server, workdir, f"p{r}{key}"), recv, paced_count, 1000)
                row["rate"].append(b["rate"])
                row["cpu_us"].append(b["cpu_us"])
                row["p50"].append(p["p50_ms"])
                row["p99"].append(p["p99_ms"])
                progress(
                    f"  round {r + 1} {key}: {b['rate']:,.0f} callbacks/s,"
                    f" {b['cpu_us']:.0f} µs CPU each; lateness p50 {p['p50_ms']:.2f}"
                    f" / p99 {p['p99_ms']:.2f} ms"
                )
        for kind, n in VARIANTS:
            key = f"{kind}-{n}"
            rate = creation(kind, n, server, workdir, tasks)
            got[key]["create"] = [rate]
            progress(f"  {key}: task creation over HTTP {rate:,.0f}/s")
    finally:
        server.remove()
    out: dict[str, Any] = {
        key: {name: statistics.median(values) for name, values in row.items() if values}
        for key, row in got.items()
    }
    sqlite, pg1, pg2 = out["sqlite-1"], out["postgres-1"], out["postgres-2"]
    out["pg_vs_sqlite"] = pg1["rate"] / sqlite["rate"]
    out["two_vs_one"] = pg2["rate"] / pg1["rate"]
    out["rounds"] = rounds
    out["callbacks"] = count
    return out


def rows(r: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """The report's rows: PostgreSQL (one process, two) beside SQLite, medians of the rounds."""
    sqlite, pg1, pg2 = r["sqlite-1"], r["postgres-1"], r["postgres-2"]

    def lat(v: dict[str, Any]) -> str:
        return f"{v['p50']:.2f} / {v['p99']:.2f}"

    return [
        (
            "PostgreSQL store, one process: delivery callbacks/s (in-process engine)",
            f"{pg1['rate']:,.0f} vs SQLite {sqlite['rate']:,.0f}: **{r['pg_vs_sqlite']:.2f}×**"
            f" ({pg1['cpu_us']:.0f} vs {sqlite['cpu_us']:.0f} µs CPU per callback)",
            "≥ 0.5× SQLite",
            "–",
            "yes" if r["pg_vs_sqlite"] >= 0.5 else "**no**",
        ),
        (
            "PostgreSQL, two processes sharing one database: callbacks/s",
            f"{pg2['rate']:,.0f}: **{r['two_vs_one']:.2f}×** one process"
            " (2 cores, shared with the receiver and the server)",
            "> 1× one process",
            "–",
            "yes" if r["two_vs_one"] > 1 else "**no**",
        ),
        (
            "lateness at 1,000/s, p50 / p99 ms: SQLite / PostgreSQL 1 / 2 processes",
            f"{lat(sqlite)} / {lat(pg1)} / {lat(pg2)}",
            "p99 ≤ 5 (PostgreSQL)",
            "–",
            "yes" if max(pg1["p99"], pg2["p99"]) <= 5 else "**no**",
        ),
        (
            "task creation over HTTP (16 clients), tasks/s: SQLite / PostgreSQL 1 / 2 processes",
            f"{sqlite['create']:,.0f} / {pg1['create']:,.0f} / {pg2['create']:,.0f}",
            "–",
            "–",
            "–",
        ),
    ]
