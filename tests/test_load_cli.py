"""`tiw-emulator load`: real Locust (in a subprocess) against a real receiver on loopback."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from emulator import cli
from emulator.core.signing import verify
from emulator.load import LOCUSTFILE
from emulator.receiver import Received, Receiver, Reply

KEY = "load-test-key"
Capsys = pytest.CaptureFixture[str]


def load(
    tmp_path: Path, *args: str, key_in_env: str = "", timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run `tiw-emulator load` as a user would, reports under tmp_path."""
    cmd = [sys.executable, "-m", "emulator.cli", "load", "--report-dir", str(tmp_path / "rep")]
    env = {**os.environ, "TIW_LOAD_CALLBACK_KEY": key_in_env}
    return subprocess.run(
        [*cmd, *args], capture_output=True, text=True, timeout=timeout, cwd=tmp_path, env=env
    )


def verifying(request: Received) -> Reply:
    """A correct backend: 200 for a valid signature, 401 otherwise."""
    body = request.json
    ok, why = verify(KEY, body.get("ExpireTime", 0), body.get("Sign", ""), now=time.time())
    return Reply() if ok else Reply(status=401, body=why.encode())


def summary_of(tmp_path: Path) -> dict[str, Any]:
    return dict(json.loads((tmp_path / "rep" / "summary.json").read_text()))


def test_a_run_plays_the_mix_signed_and_reports(tmp_path: Path, receiver: Receiver) -> None:
    receiver.respond = verifying
    mix = "success=4,transcode-failure=2,bad-signature=1,expired-signature=1"
    run = load(
        tmp_path,
        *("--callback-url", receiver.url, "--callback-key", KEY, "--sdk-app-id", "1400000042"),
        *("--users", "4", "--spawn-rate", "4", "--tasks", "40", "--speed", "max"),
        *("--mix", mix),
    )
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    assert out.splitlines()[0].startswith(f"tiw-emulator load: load goes to {receiver.url}")
    assert KEY not in out + run.stderr  # the key never shows, not even on Locust's command line
    result = summary_of(tmp_path)
    arrived = receiver.received
    assert result["tasks_played"] == 40
    assert result["callbacks_sent"] == len(arrived) == receiver.count
    bodies = [r.json for r in arrived]
    assert {b["SdkAppId"] for b in bodies} == {1400000042}
    refused = [b for b in bodies if not verify(KEY, b["ExpireTime"], b["Sign"], now=time.time())[0]]
    assert result["refused_as_expected"] == len(refused) > 0
    assert result["acknowledged"] == len(bodies) - len(refused)
    assert result["failed"] == 0
    assert len({b["EventData"]["TaskId"] for b in bodies if "TaskId" in b["EventData"]}) == 40
    codes = Counter(b["EventData"].get("Error", {}).get("Code") for b in bodies)
    assert codes["FailedOperation.Transcode"] > 0
    for line in ("tasks played      40", f"callbacks sent    {len(arrived)}", "p95", "p99"):
        assert line in out
    assert str(tmp_path / "rep" / "report.html") in out
    assert (tmp_path / "rep" / "report.html").stat().st_size > 1000
    with (tmp_path / "rep" / "load_stats.csv").open() as f:
        names = {row["Name"] for row in csv.DictReader(f)}
    # Each kind of callback that arrived has its row: the mix is drawn at random per task, so
    # which refused kinds came depends on the draw (no bad-signature task in 40 happens ~0.5%).
    expected = {"OfflineRecordProgressChanged", "OfflineRecordFinished"}
    for body in refused:
        _, why = verify(KEY, body["ExpireTime"], body["Sign"], now=time.time())
        reason = "expired ExpireTime" if "in the past" in why else "forged Sign"
        expected.add(f"{body['EventType']} ({reason}: must be refused)")
    assert len(expected) > 2 and expected <= names


def test_a_timed_run_at_a_fixed_pace_counts_every_callback_sent(
    tmp_path: Path, receiver: Receiver
) -> None:
    run = load(
        tmp_path,
        *("--callback-url", receiver.url, "--users", "5", "--spawn-rate", "5"),
        *("--run-time", "3s", "--rate", "40", "--mix", "success"),
    )
    assert run.returncode == 0, run.stdout + run.stderr
    result = summary_of(tmp_path)
    # Stopping lets a callback in flight finish, so the count is exact even mid-task.
    assert result["callbacks_sent"] == receiver.count > 10
    assert receiver.count <= 40 * 3 * 1.5  # paced, not flat out
    assert result["tasks_cut_short"] > 0
    progress = [line for line in run.stdout.splitlines() if " users " in line]
    assert progress and "callbacks" in progress[0]  # the live line (one per 5 s off a terminal)


def test_the_speed_factor_spreads_a_task_over_its_timeline(
    tmp_path: Path, receiver: Receiver
) -> None:
    # A success task processes a 1200-3600 s class for 1.1x its length: at x1000, the progress
    # events (from about 20 %) to Finished (100 %) span at least ~1 s of wall time.
    run = load(
        tmp_path,
        *("--callback-url", receiver.url, "--users", "2", "--spawn-rate", "2"),
        *("--tasks", "2", "--speed", "1000", "--mix", "success"),
    )
    assert run.returncode == 0, run.stdout + run.stderr
    arrivals: dict[str, list[float]] = {}
    for r in receiver.received:
        arrivals.setdefault(r.json["EventData"]["TaskId"], []).append(r.received_at)
    assert len(arrivals) == 2
    assert all(times[-1] - times[0] > 0.7 for times in arrivals.values())


def test_backend_failures_fail_the_run_with_their_reasons(
    tmp_path: Path, receiver: Receiver
) -> None:
    def flaky(request: Received) -> Reply:
        body = request.json
        if body["EventType"] == "OfflineRecordFinished":
            return Reply(status=500, body=b"boom")
        if body["EventData"]["Progress"] > 50:
            return Reply(hang=True)  # a stuck handler: the request times out
        return Reply()

    receiver.respond = flaky
    run = load(
        tmp_path,
        *("--callback-url", receiver.url, "--callback-key", KEY, "--mix", "success"),
        *("--users", "3", "--spawn-rate", "3", "--tasks", "6", "--speed", "max"),
        *("--timeout", "1"),
    )
    assert run.returncode == 1, run.stdout + run.stderr
    result = summary_of(tmp_path)
    reasons = result["failures_by_reason"]
    assert reasons["HTTP 500"] == 6
    assert reasons["timeout"] >= 6
    assert result["failed"] == sum(reasons.values())
    assert "HTTP 500" in run.stdout
    assert result["callbacks_sent"] == receiver.count


def test_refused_connections_and_accepted_forgeries_are_failures(
    tmp_path: Path, receiver: Receiver
) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}/cb"
    run = load(
        tmp_path,
        *("--callback-url", closed, "--users", "2", "--spawn-rate", "2", "--tasks", "2"),
        *("--speed", "max", "--mix", "success"),
    )
    assert run.returncode == 1, run.stdout + run.stderr
    assert set(summary_of(tmp_path)["failures_by_reason"]) == {"connection refused"}

    # The receiver answers 200 to everything, so it accepts forged signatures: a failure.
    # (The key comes from the environment here, as it can to keep it off the command line.)
    run = load(
        tmp_path,
        *("--callback-url", receiver.url, "--mix", "bad-signature"),
        *("--users", "1", "--spawn-rate", "1", "--tasks", "2", "--speed", "max"),
        key_in_env=KEY,
    )
    assert run.returncode == 1, run.stdout + run.stderr
    result = summary_of(tmp_path)
    assert result["failed"] == result["callbacks_sent"] == receiver.count > 0
    assert all("Sign" in body for body in receiver.events())  # signed, with the env's key
    assert list(result["failures_by_reason"]) == [
        "accepted a callback a correct backend must refuse (HTTP 200)"
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--users", "5000", "--spawn-rate", "1", "--run-time", "2h"], "--users 5000 > 1000"),
        (["--users", "5", "--spawn-rate", "1", "--run-time", "2h"], "--run-time 7200s > 3600s"),
        (["--users", "5", "--spawn-rate", "1", "--tasks", "5", "--rate", "1e6"], "--rate"),
        (["--users", "5", "--spawn-rate", "1"], "give --run-time T or --tasks K"),
        (["--users", "5", "--spawn-rate", "1", "--tasks", "5", "--timeout", "0"], "--timeout"),
        (["--users", "5", "--spawn-rate", "1", "--tasks", "5", "--mix", "bad-signature"], "key"),
    ],
)
def test_arguments_over_the_limits_are_refused_before_any_load(
    receiver: Receiver, capsys: Capsys, args: list[str], message: str
) -> None:
    code = cli.main(["load", "--callback-url", receiver.url, *args])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert receiver.count == 0


def test_limits_name_the_way_past_them(receiver: Receiver, capsys: Capsys) -> None:
    args = ["--users", "5000", "--spawn-rate", "1", "--tasks", "1"]
    code = cli.main(["load", "--callback-url", receiver.url, *args])
    assert code == 2
    assert "--no-limits lifts them" in capsys.readouterr().err


def test_a_remote_target_needs_allow_remote(capsys: Capsys) -> None:
    # 192.0.2.0/24 is TEST-NET-1; the command refuses before sending anything.
    args = ["--users", "1", "--spawn-rate", "1", "--tasks", "1"]
    code = cli.main(["load", "--callback-url", "http://192.0.2.10/cb", *args])
    assert code == 2
    assert "not on loopback; pass --allow-remote" in capsys.readouterr().err


def test_locustfile_prints_the_shipped_module(capsys: Capsys) -> None:
    assert cli.main(["load", "--locustfile"]) == 0
    assert capsys.readouterr().out.strip() == str(LOCUSTFILE)
