"""Emulator faults: its own storage, port and files going wrong give a short clear error.

Start-up faults run the real `tiw-emulator serve` in a subprocess: a clear `error:` line (no
traceback), a non-zero exit, and the stored state untouched. The full disk happens while
serving, over real HTTP: a 503 naming the problem, nothing acknowledged lost, recovery when
space returns.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import reliability_log

from emulator.core.config import Settings
from emulator.core.service import Emulator
from emulator.receiver import Receiver
from emulator.store.sqlite import SQLiteStore

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "emulator.cli"]


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("TIW_EMULATOR_")}


def _serve(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`tiw-emulator serve ...` that must fail at start-up (a hang would be a bug: capped)."""
    return subprocess.run(
        [*CLI, "serve", "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env=_clean_env(),
        check=False,
    )


def _assert_clear_failure(
    done: subprocess.CompletedProcess[str], *words: str, tmp: Path | None = None
) -> str:
    """The error line, with the test's own folder shown as <tmp> (for the report)."""
    err = done.stderr.strip()
    assert done.returncode != 0, (done.stdout, err)
    assert "Traceback" not in err and "Traceback" not in done.stdout, err
    lines = err.splitlines()
    assert lines and lines[0].startswith("error: "), err
    assert len(lines) <= 2 and len(err) < 600, err
    for word in words:
        assert word in err, err
    return lines[0].replace(str(tmp), "<tmp>") if tmp else lines[0]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _stored_db(path: Path) -> None:
    emu = Emulator(Settings.load({"db": str(path), "clock": "manual"}, env={})).start()
    try:
        emu.create_task(scenario="success")
    finally:
        emu.close()


def test_corrupt_database_file(tmp_path: Path) -> None:
    db = tmp_path / "corrupt.db"
    db.write_bytes(b"SQLite format 3\x00" + os.urandom(4096))
    before = _digest(db)
    line = _assert_clear_failure(_serve("--db", str(db), cwd=tmp_path), str(db), tmp=tmp_path)
    assert _digest(db) == before
    reliability_log.record("emulator", "corrupt database file", observed=f"exit 2: {line}")


def test_database_path_that_cannot_be_a_file(tmp_path: Path) -> None:
    db = tmp_path / "a-directory.db"
    db.mkdir()
    line = _assert_clear_failure(_serve("--db", str(db), cwd=tmp_path), str(db), tmp=tmp_path)
    reliability_log.record("emulator", "database path is a directory", observed=line)


@contextlib.contextmanager
def _read_only(path: Path) -> Iterator[None]:
    """Make `path` unwritable even for root (chattr +i), or by mode bits for anyone else."""
    if os.geteuid() == 0:
        chattr = shutil.which("chattr")
        if chattr is None:
            if os.environ.get("CI") == "true":
                pytest.fail("chattr missing: apt-get install -y e2fsprogs")
            pytest.skip("root ignores file modes and chattr is missing: apt-get install e2fsprogs")
        made = subprocess.run([chattr, "+i", str(path)], capture_output=True, check=False)
        if made.returncode != 0:
            pytest.skip(f"this filesystem cannot make a file immutable: {made.stderr!r}")
        try:
            yield
        finally:
            subprocess.run([chattr, "-i", str(path)], check=True)
    else:
        path.chmod(0o444)
        path.parent.chmod(0o555)
        try:
            yield
        finally:
            path.parent.chmod(0o755)
            path.chmod(0o644)


def test_read_only_database_file(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    _stored_db(db)
    before = _digest(db)
    with _read_only(db):
        done = _serve("--db", str(db), cwd=tmp_path)
        line = _assert_clear_failure(done, str(db), "readonly", tmp=tmp_path)
    assert _digest(db) == before
    reliability_log.record("emulator", "read-only database file", observed=f"exit 2: {line}")


def test_port_in_use_says_how_to_choose_another(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = str(taken.getsockname()[1])
        done = subprocess.run(
            [*CLI, "serve", "--db", ":memory:", "--port", port],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        _assert_clear_failure(done, port, "--port")
        assert done.returncode == 3
        # `make serve` adds how to do it with make.
        via_make = subprocess.run(
            ["make", "-s", "serve", f"PORT={port}", "STAMP=", f"BIN={Path(sys.executable).parent}"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            env={**_clean_env(), "TIW_EMULATOR_DB": ":memory:"},  # no file in the checkout
            check=False,
        )
    assert via_make.returncode != 0, via_make.stderr
    assert f"make serve PORT={int(port) + 1}" in via_make.stderr, via_make.stderr
    reliability_log.record(
        "emulator",
        "port in use",
        observed="exit 3; names the port, --port N, and `make serve PORT=N` under make",
    )


def test_missing_scenarios_folder(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-folder"
    done = _serve("--db", str(tmp_path / "s.db"), "--scenarios", str(missing), cwd=tmp_path)
    line = _assert_clear_failure(done, str(missing), tmp=tmp_path)
    reliability_log.record("emulator", "missing --scenarios folder", observed=f"exit 2: {line}")


def test_full_disk_while_serving_is_reported_and_recovers(
    make_emulator: Any, receiver: Receiver, tmp_path: Path
) -> None:
    running = make_emulator(db=str(tmp_path / "full.db"), callback_url=receiver.url, retry="none")
    acknowledged = [running.api("POST", "/api/tasks", json={"scenario": "success"}).json()]
    store = running.emu.store
    assert isinstance(store, SQLiteStore)
    store.limit_pages(1)  # SQLite now refuses to grow the file: a real SQLITE_FULL
    refused = None
    for _ in range(500):
        reply = running.api("POST", "/api/tasks", json={"scenario": "success"})
        if reply.status_code != 201:
            refused = reply
            break
        acknowledged.append(reply.json())
    assert refused is not None and refused.status_code == 503, refused
    error = refused.json()["error"]
    assert "database or disk is full" in error["message"] and "\n" not in error["message"]
    health = running.api("GET", "/healthz")
    assert health.status_code == 503 and "full" in health.json()["storage_error"]

    store.limit_pages(None)  # space returns
    for task in acknowledged:  # every task the emulator said 201 to is still there
        assert running.api("GET", f"/api/tasks/{task['task_id']}").status_code == 200
    # The next write succeeds, and with it the health check.
    assert running.api("POST", "/api/tasks", json={"scenario": "success"}).status_code == 201
    assert running.api("GET", "/healthz").status_code == 200
    reliability_log.record(
        "emulator",
        "disk full while serving (SQLite max_page_count)",
        observed="503 naming 'database or disk is full'; /healthz 503; every acknowledged task"
        " kept; recovered when space returned",
    )
