"""The QA commands: run, scenarios [validate], sign, verify and send, against a real receiver."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from emulator import cli
from emulator.core.scenarios import BUILTIN_DIR, load_dir
from emulator.core.signing import sign
from emulator.receiver import Receiver, Reply

KEY = "Xz4ZgayTr7rMgWQrH"
FAST = ["--speed", "1000000", "--param", "duration_s=300", "--param", "queue_delay_s=0"]
Capsys = pytest.CaptureFixture[str]


def table_rows(stdout: str) -> list[list[str]]:
    lines = stdout.split("\n\n")[0].splitlines()
    assert lines[0].split()[:3] == ["#", "event", "progress"]
    return [line.split() for line in lines[1:]]


def test_run_plays_a_scenario_and_tabulates_every_attempt(
    receiver: Receiver, capsys: Capsys
) -> None:
    args = ["run", "success", "--callback-url", receiver.url, "--callback-key", KEY, *FAST]
    code = cli.main([*args, "--seed", "7", "--room-id", "1253"])
    out, err = capsys.readouterr()
    assert code == 0, err
    bodies = receiver.events()
    assert bodies[-1]["EventType"] == "OfflineRecordFinished"
    assert all(b["Sign"] == sign(KEY, b["ExpireTime"]) for b in bodies)
    assert bodies[-1]["EventData"]["RoomId"] == 1253
    assert bodies[-1]["EventData"]["TotalTime"] <= 300_000  # --param duration_s=300
    rows = table_rows(out)
    assert len(rows) == len(bodies)
    assert [r[1] for r in rows] == [b["EventType"] for b in bodies]
    assert all(r[4] == "200" and r[5] == "yes" for r in rows)
    assert "100% finished" in err and f"{len(bodies)}/{len(bodies)} callbacks delivered" in err
    assert "finished success" in out


def test_run_exits_non_zero_when_the_backend_does_not_acknowledge(
    receiver: Receiver, capsys: Capsys
) -> None:
    receiver.respond = lambda req: Reply(status=500, body=b"nope")
    code = cli.main(["run", "record-failure", "--callback-url", receiver.url, *FAST])
    out, err = capsys.readouterr()
    assert code == 1
    assert "did not acknowledge" in err
    rows = table_rows(out)
    assert len(rows) == len(receiver.received) and {r[4] for r in rows} == {"500"}
    assert {r[3] for r in rows} == {"1", "2", "3"}  # the fast retry policy: three attempts
    assert "FailedOperation.Record" in out


def test_run_stalled_reports_the_stall(receiver: Receiver, capsys: Capsys) -> None:
    code = cli.main(["run", "stalled", "--callback-url", receiver.url, *FAST])
    out, err = capsys.readouterr()
    assert code == 0 and "stalled" in out and "46% processing" in err
    assert receiver.events()[-1]["EventData"]["Progress"] == 46


def test_run_refuses_bad_input_by_name(receiver: Receiver, capsys: Capsys) -> None:
    assert cli.main(["run", "nope", "--callback-url", receiver.url]) == 2
    assert "no scenario named 'nope'" in capsys.readouterr().err
    assert cli.main(["run", "success", "--callback-url", receiver.url, "--param", "x=1"]) == 2
    assert "params.x: unknown parameter" in capsys.readouterr().err
    assert cli.main(["run", "success", "--callback-url", receiver.url, "--param", "oops"]) == 2
    assert "--param: 'oops' is not K=V" in capsys.readouterr().err
    assert receiver.received == []


def test_scenarios_lists_the_catalogue(capsys: Capsys) -> None:
    assert cli.main(["scenarios"]) == 0
    out = capsys.readouterr().out
    for scenario in load_dir(BUILTIN_DIR):
        line = next(x for x in out.splitlines() if x.split()[0] == scenario.name)
        assert scenario.description in line


def test_scenarios_validate(tmp_path: Path, capsys: Capsys) -> None:
    builtins = [str(p) for p in sorted(BUILTIN_DIR.glob("*.yaml"))]
    assert cli.main(["scenarios", "validate", *builtins]) == 0
    assert capsys.readouterr().out.count("ok: ") == len(builtins)

    bad = tmp_path / "mine.yaml"
    bad.write_text("name: mine\nprocessing:\n  progress_steps: lots\n")
    assert cli.main(["scenarios", "validate", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}: processing.progress_steps: 'lots' is not of type 'integer'" in err
    assert cli.main(["scenarios", "validate", str(tmp_path / "missing.yaml")]) == 1
    assert "cannot read" in capsys.readouterr().err


def test_sign_prints_the_golden_vector(capsys: Capsys) -> None:
    assert cli.main(["sign", "--key", KEY, "--expire", "1588040109"]) == 0
    assert capsys.readouterr().out.strip() == "a2dabb362a9b811c0e26953a6276a41c"


@pytest.mark.parametrize(
    ("mode", "code", "reason"),
    [
        ("valid", 0, "Sign matches"),
        ("invalid", 1, "does not match"),
        ("expired", 1, "in the past"),
        ("none", 1, "no Sign/ExpireTime"),
    ],
)
def test_verify_checks_what_the_backend_received(
    receiver: Receiver, tmp_path: Path, capsys: Capsys, mode: str, code: int, reason: str
) -> None:
    sent = ["send", "progress", "--callback-url", receiver.url, "--key", KEY, "--sign", mode]
    assert cli.main(sent) == 0
    capsys.readouterr()
    body = tmp_path / "body.json"
    body.write_bytes(receiver.received[0].body)
    assert cli.main(["verify", "--key", KEY, "--body", str(body)]) == code
    out, err = capsys.readouterr()
    assert reason in (out if code == 0 else err)


def test_verify_reads_stdin_and_rejects_garbage(
    monkeypatch: pytest.MonkeyPatch, capsys: Capsys
) -> None:
    body = {"Timestamp": 1588039809, "ExpireTime": 1588040109, "Sign": sign(KEY, 1588040109)}
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(body)))
    assert cli.main(["verify", "--key", KEY, "--body", "-", "--now", "1588040000"]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(body)))
    assert cli.main(["verify", "--key", "other", "--body", "-", "--now", "1588040000"]) == 1
    monkeypatch.setattr("sys.stdin", io.StringIO("not json"))
    assert cli.main(["verify", "--key", KEY, "--body", "-"]) == 1
    assert "not JSON" in capsys.readouterr().err


def test_send_posts_one_event_and_prints_the_response(receiver: Receiver, capsys: Capsys) -> None:
    data = {"TaskId": "bj0mt2l23osdj300hl30", "RoomId": 1253, "Progress": 46}
    args = ["send", "OfflineRecordProgressChanged", "--callback-url", receiver.url]
    assert cli.main([*args, "--data", json.dumps(data), "--key", KEY]) == 0
    out = capsys.readouterr().out
    (got,) = receiver.received
    assert got.json["EventData"] == data and got.json["Sign"] == sign(KEY, got.json["ExpireTime"])
    assert "HTTP 200" in out and '{"error_code":0}' in out and got.body.decode() in out


def test_send_finished_with_realistic_default_data(receiver: Receiver, capsys: Capsys) -> None:
    assert cli.main(["send", "finished", "--callback-url", receiver.url]) == 0
    body = receiver.events()[0]
    assert body["EventType"] == "OfflineRecordFinished" and "Sign" not in body
    assert body["EventData"]["Progress"] == 100 and body["EventData"]["VideoInfos"]


def test_send_reports_a_refusal(receiver: Receiver, capsys: Capsys) -> None:
    receiver.respond = lambda req: Reply(status=503, body=b"busy")
    assert cli.main(["send", "progress", "--callback-url", receiver.url]) == 1
    out, err = capsys.readouterr()
    assert "HTTP 503" in out and "busy" in out and "not acknowledged" in err
    assert cli.main(["send", "progress", "--callback-url", receiver.url, "--data", "[1]"]) == 2
    assert "--data: must be a JSON object" in capsys.readouterr().err
