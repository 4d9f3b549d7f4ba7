"""Benchmarks of `tiw-emulator serve` as a process: start-up, memory, control API, wall time."""

from __future__ import annotations

import collections
import http.client
import json
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from bench.recv import RecvProc

Progress = Callable[[str], None]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_command() -> list[str]:
    """The installed `tiw-emulator serve`; BENCH_SERVE_MODULE=1 runs the working tree's code."""
    script = Path(sys.executable).parent / "tiw-emulator"
    if script.exists() and not os.environ.get("BENCH_SERVE_MODULE"):
        return [str(script), "serve"]
    return [sys.executable, "-m", "emulator.cli", "serve"]


class Served:
    """`tiw-emulator serve` on a free loopback port with its own database file."""

    def __init__(
        self,
        workdir: Path,
        name: str,
        *flags: str,
        keep_db: bool = False,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """`env`: variables added to (or replacing) the benchmark's own, TIW_EMULATOR_* left out."""
        self.db = workdir / f"{name}.db"
        for suffix in ("", "-wal", "-shm"):
            if not keep_db:
                Path(f"{self.db}{suffix}").unlink(missing_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("TIW_EMULATOR_")}
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [*serve_command(), "--port", str(self.port), "--db", str(self.db), *flags],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**inherited, **(env or {})},
        )
        self.healthy_after = self._wait_healthy(timeout=20)

    def _wait_healthy(self, timeout: float) -> float:
        deadline = self.started + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"tiw-emulator serve exited: {err}")
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
            try:
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    return time.monotonic() - self.started
            except OSError:
                pass
            finally:
                conn.close()
            time.sleep(0.005)
        raise RuntimeError("tiw-emulator serve did not become healthy")

    def cpu_s(self) -> float:
        """The server's user + system CPU so far, every thread, from /proc."""
        return _stat_cpu_s(Path(f"/proc/{self.proc.pid}/stat"))

    def thread_cpu_s(self) -> dict[str, float]:
        """User + system CPU so far per thread name (`thread_cpu_s`); refuses rather than
        answer nothing, which would read as no CPU spent."""
        found = thread_cpu_s(self.proc.pid)
        if not found:
            raise RuntimeError(f"no per-thread CPU figures: /proc/{self.proc.pid}/task unreadable")
        return found

    def status_kib(self, field: str) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        return 0

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stderr:
            self.proc.stderr.close()


def thread_cpu_s(pid: int) -> dict[str, float]:
    """A process's user + system CPU so far per thread name (`comm`, as the emulator names its
    threads: numbered pool workers summed under one name), from /proc; the main thread as
    "main". Empty where there is no /proc."""
    out: dict[str, float] = {}
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return out
    for task in tasks:
        try:
            name = (task / "comm").read_text().strip().rstrip("0123456789").rstrip("_")
            if task.name == str(pid):
                name = "main"
            cpu = _stat_cpu_s(task / "stat")
        except OSError:  # the thread ended meanwhile
            continue
        out[name] = out.get(name, 0.0) + cpu
    return out


def _stat_cpu_s(stat: Path) -> float:
    """User + system CPU seconds from a /proc stat file (a process's or a thread's)."""
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def startup(workdir: Path, reps: int, progress: Progress) -> dict[str, Any]:
    """Popen -> first 200 from /healthz (polled every 5 ms), a fresh database each time."""
    times = []
    for i in range(reps):
        served = Served(workdir, f"startup{i}", "--clock", "manual")
        times.append(served.healthy_after)
        served.stop()
        progress(f"  start-up {i + 1}/{reps}: {served.healthy_after * 1000:.0f} ms")
    return {
        "reps": reps,
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
    }


def http_session() -> Any:
    import requests

    http = requests.Session()
    http.trust_env = False
    return http


def expected_keys(db: Path) -> collections.Counter[str]:
    """TaskId|EventType|Progress of every planned, non-dropped event, from the database."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT task_id, event_type, event_data FROM events WHERE state != 'dropped'"
        ).fetchall()
    finally:
        conn.close()
    keys: collections.Counter[str] = collections.Counter()
    for task_id, event_type, data in rows:
        keys[f"{task_id}|{event_type}|{json.loads(data).get('Progress')}"] += 1
    return keys


def _states(db: Path) -> dict[str, int]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return dict(conn.execute("SELECT state, COUNT(*) FROM events GROUP BY state").fetchall())
    finally:
        conn.close()


def many_tasks(workdir: Path, recv: RecvProc, tasks: int, progress: Progress) -> dict[str, Any]:
    """`tasks` tasks created over HTTP, all in flight at once; then every callback, once."""
    served = Served(workdir, "many", "--clock", "manual", "--callback-url", recv.url)
    http = http_session()
    try:
        idle_kib = served.status_kib("VmRSS")
        recv.reset()
        started = time.monotonic()
        first_1000 = None
        for i in range(tasks):
            reply = http.post(served.url + "/api/tasks", json={}, timeout=30)
            reply.raise_for_status()
            if i + 1 == 1000:
                first_1000 = time.monotonic() - started
            if (i + 1) % 2000 == 0:
                progress(f"  created {i + 1}/{tasks}")
        create_s = time.monotonic() - started
        expected = expected_keys(served.db)
        total = sum(expected.values())
        progress(f"  {tasks} tasks in {create_s:.1f} s; advancing the clock: {total} callbacks")
        fire = time.monotonic()
        http.post(served.url + "/api/clock/advance", json={"seconds": 30 * 86400}, timeout=600)
        stats = recv.wait_count(total, 120)
        stats = recv.wait_quiet(0.5, 30)
        deliver_s = (stats["last"] or time.monotonic()) - fire
        got: collections.Counter[str] = collections.Counter(
            key for key, _ in recv.stats(rows=True)["rows"]
        )
        peak_kib = served.status_kib("VmHWM")
    finally:
        http.close()
        served.stop()
    lost = sum((expected - got).values())
    extra = sum((got - expected).values())
    return {
        "tasks": tasks,
        "create_s": create_s,
        "create_rate": tasks / create_s,
        "create_rate_first_1000": 1000 / first_1000 if first_1000 else None,
        "expected": total,
        "arrived": sum(got.values()),
        "lost": lost,
        "duplicated_or_unexpected": extra,
        "deliver_s": deliver_s,
        "deliver_rate": sum(got.values()) / deliver_s,
        "states": _states(served.db),
        "idle_rss_mib": idle_kib / 1024,
        "peak_rss_mib": peak_kib / 1024,
    }


def long_class(workdir: Path, recv: RecvProc, reps: int, progress: Progress) -> dict[str, Any]:
    """A 2-hour class (duration_s 7200) at full speed: creation -> its Finished callback."""
    served = Served(
        workdir, "longclass", "--clock", "real", "--speed", "1000000", "--callback-url", recv.url
    )
    http = http_session()
    times, emulated = [], []
    try:
        for _ in range(reps):
            recv.reset()
            started = time.monotonic()
            reply = http.post(
                served.url + "/api/tasks", json={"params": {"duration_s": 7200}}, timeout=30
            )
            task = reply.json()
            want = f"{task['task_id']}|OfflineRecordFinished|100"
            arrived = None
            deadline = started + 30
            while arrived is None and time.monotonic() < deadline:
                arrived = next(
                    (at for key, at in recv.stats(rows=True)["rows"] if key == want), None
                )
                if arrived is None:
                    time.sleep(0.002)
            if arrived is not None:
                times.append(arrived - started)
                emulated.append(task["finish_at"] - task["created_at"])
    finally:
        http.close()
        served.stop()
    progress(f"  wall times: {', '.join(f'{t * 1000:.0f} ms' for t in times)}")
    return {
        "reps": reps,
        "finished": len(times),
        "median_s": statistics.median(times) if times else None,
        "max_s": max(times) if times else None,
        "emulated_s": statistics.median(emulated) if emulated else None,
    }


def plugin_startup(progress: Progress) -> dict[str, Any] | None:
    """Figures from bench/plugin_startup.py (pytest plugin start and reset), if it exists."""
    script = Path(__file__).with_name("plugin_startup.py")
    if not script.exists():
        return None
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=script.parent.parent,
    )
    if done.returncode != 0:
        progress(f"  plugin_startup.py failed: {done.stderr.strip()[-500:]}")
        return {"error": done.stderr.strip()[-500:]}
    for line in reversed(done.stdout.strip().splitlines()):
        try:
            result: dict[str, Any] = json.loads(line)
            return result
        except ValueError:
            continue
    return {"error": "no JSON in its output"}
