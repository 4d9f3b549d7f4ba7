"""Locust's distributed mode: a master and two workers on loopback, against a verifying receiver."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
from pgserver import free_port

from emulator.core import payloads
from emulator.core.signing import verify
from emulator.load import LOCUSTFILE
from emulator.receiver import Received, Receiver, Reply

KEY = "distributed-key"
TASKS = 60


def locust(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "locust", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.parametrize(
    ("bound", "answer_after_s"),
    [
        pytest.param(["--tasks", str(TASKS), "--speed", "max", "-t", "60s"], 0.0, id="tasks"),
        # Timed, against a backend taking 1 s: the run stops with callbacks in flight on both
        # workers, answered after Locust's own half-second wait for final reports.
        pytest.param(["-t", "3s", "--speed", "3000"], 1.0, id="run-time"),
    ],
)
def test_master_and_two_workers_deliver_every_callback_signed_in_order(
    tmp_path: Path, receiver: Receiver, bound: list[str], answer_after_s: float
) -> None:
    def verifying(request: Received) -> Reply:
        body = request.json
        ok, why = verify(KEY, body["ExpireTime"], body["Sign"], now=time.time())
        if not ok:
            return Reply(status=401, body=why.encode())
        return Reply(delay_s=answer_after_s)

    receiver.respond = verifying
    port = free_port()
    summary_file = tmp_path / "summary.json"
    # The README's commands: options go to the master, which hands them to its workers.
    master = locust(
        *("-f", str(LOCUSTFILE), "--master", "--headless", "--expect-workers", "2"),
        *("--master-bind-host", "127.0.0.1", "--master-bind-port", str(port)),
        *("--host", receiver.url, "-u", "6", "-r", "100", *bound),  # all users at once
        *("--mix", "success=3,transcode-failure=1"),
        *("--callback-key", KEY, "--summary-file", str(summary_file), "--only-summary"),
        cwd=tmp_path,
    )
    workers = [
        # One worker loads the module itself, the other gets it from the master (`-f -`).
        locust(
            *("-f", source, "--worker", "--master-host", "127.0.0.1"),
            *("--master-port", str(port)),
            cwd=tmp_path,
        )
        for source in (str(LOCUSTFILE), "-")
    ]
    try:
        out, _ = master.communicate(timeout=90)
        for worker in workers:
            worker.wait(timeout=30)
    finally:
        for proc in (master, *workers):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert master.returncode == 0, out
    summary: dict[str, Any] = json.loads(summary_file.read_text())
    arrived = receiver.received

    # The master's totals are the receiver's count, every one acknowledged (signed correctly).
    assert summary["callbacks_sent"] == len(arrived) == receiver.count > 0
    assert summary["acknowledged"] == len(arrived)
    assert summary["failed"] == 0
    bodies = [r.json for r in arrived]
    assert all(verify(KEY, b["ExpireTime"], b["Sign"], now=time.time())[0] for b in bodies)

    # Both workers sent, and each one's count is what the master reports for it.
    by_worker = summary["by_worker"]
    assert len(by_worker) == 2
    senders = Counter(r.headers["user-agent"].split("(", 1)[1].rstrip(")") for r in arrived)
    assert senders == {worker: row["callbacks"] for worker, row in by_worker.items()}
    assert all(count > 0 for count in senders.values())

    # Per task: one sender, progress rising, and at most one Finished, last.
    tasks: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
    for request, body in zip(arrived, bodies, strict=True):
        tasks[body["EventData"]["TaskId"]].append((request.headers["user-agent"], body))
    finished = 0
    for events in tasks.values():
        assert len({agent for agent, _ in events}) == 1
        types = [body["EventType"] for _, body in events]
        assert payloads.FINISHED not in types[:-1]
        finished += types[-1] == payloads.FINISHED
        progress = [body["EventData"]["Progress"] for _, body in events]
        assert progress == sorted(progress) and len(set(progress)) == len(progress)
    assert summary["tasks_played"] == finished
    assert len(tasks) - finished <= summary["tasks_cut_short"]
    if "--tasks" in bound:
        assert finished == len(tasks) == TASKS
    else:
        assert summary["tasks_cut_short"] > 0  # it did stop mid-task
