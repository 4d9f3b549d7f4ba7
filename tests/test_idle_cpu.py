"""Idle costs nothing: an idle `serve` and the plugin's session server use < 1% of a core.

Each runs as its own process; its CPU time (utime + stime from /proc/PID/stat) is read across a
few idle seconds. Before the fix, waitress's serving loop polled with timeout 0 (it truncates
`asyncore_loop_timeout=0.2` to 0) and burnt a whole core doing nothing.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

IDLE_WINDOW_S = 3.0
MAX_CORE_SHARE = 0.01

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/stat").exists(), reason="reads CPU time from /proc (Linux only)"
)


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def idle_share(proc: subprocess.Popen[str]) -> float:
    """CPU seconds per wall second over the idle window (after a short settle)."""
    time.sleep(0.5)  # let start-up work (imports, first flush) finish: not what is measured
    c0, t0 = cpu_seconds(proc.pid), time.monotonic()
    time.sleep(IDLE_WINDOW_S)  # measuring idleness: nothing to wait on but time itself
    return (cpu_seconds(proc.pid) - c0) / (time.monotonic() - t0)


def start(argv: list[str], ready: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIW_EMULATOR_")}
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()  # blocks until the server says it is up
    if not re.search(ready, first):
        proc.kill()
        _, err = proc.communicate(timeout=10)
        pytest.fail(f"unexpected first line {first!r}; stderr: {err}")
    return proc


def stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate(timeout=10)


def test_idle_serve_uses_under_one_percent_of_a_core(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "emulator.cli", "serve", "--port", "0"]
    proc = start([*argv, "--db", str(tmp_path / "idle.db")], r"listening on http://")
    try:
        share = idle_share(proc)
    finally:
        stop(proc)
    assert share < MAX_CORE_SHARE, f"idle serve burnt {share:.1%} of a core"


SESSION_SERVER = """
import sys
from emulator.testing import ServedEmulator
served = ServedEmulator().start()
print("session server on", served.url, flush=True)
sys.stdin.read()  # idle until the test closes stdin
served.stop()
"""


def test_idle_plugin_session_server_uses_under_one_percent_of_a_core() -> None:
    proc = start([sys.executable, "-c", SESSION_SERVER], r"session server on http://")
    try:
        share = idle_share(proc)
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            stop(proc)
    assert share < MAX_CORE_SHARE, f"idle session server burnt {share:.1%} of a core"
