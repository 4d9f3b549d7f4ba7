"""`tiw-emulator run` tells the truth: why each attempt did not count, a verdict in words, and
exit codes that mean "your backend did the right thing", forged-signature scenarios included."""

from __future__ import annotations

import json
import socket
import time

import pytest

from emulator import cli
from emulator.core.signing import verify
from emulator.receiver import Received, Receiver, Reply

KEY = "Xz4ZgayTr7rMgWQrH"
FAST = ["--speed", "1000000", "--param", "duration_s=300", "--param", "queue_delay_s=0"]
Capsys = pytest.CaptureFixture[str]
HEAD = ("#", "event", "progress", "attempt", "status", "ack", "ms", "response", "reason")


def table(stdout: str) -> list[dict[str, str]]:
    """The attempt table as dicts, cut at the column starts of its header line."""
    lines = stdout.split("\n\n")[0].splitlines()
    starts = [lines[0].index(name) for name in HEAD]
    assert lines[0].split() == list(HEAD)
    bounds = list(zip(starts, [*starts[1:], None], strict=True))
    return [
        {name: line[a:b].strip() for name, (a, b) in zip(HEAD, bounds, strict=True)}
        for line in lines[1:]
    ]


def summary(stdout: str) -> str:
    return stdout.split("\n\n", 1)[1]


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (204, b"", "204 is not an acknowledgement: only HTTP 200 counts"),
        (403, b'{"msg": "who are you"}', "403: the backend refused the callback"),
        (500, b"Traceback: boom", "500: the backend failed (server error)"),
    ],
)
def test_every_attempt_that_did_not_count_says_why(
    receiver: Receiver, capsys: Capsys, status: int, body: bytes, reason: str
) -> None:
    receiver.respond = lambda req: Reply(status=status, body=body)
    code = cli.main(["run", "record-failure", "--callback-url", receiver.url, *FAST])
    out, err = capsys.readouterr()
    assert code == 1
    rows = table(out)
    assert len(rows) == len(receiver.received)
    for row in rows:
        assert (row["status"], row["ack"], row["reason"]) == (str(status), "NO", reason)
        assert row["response"] == (body.decode() if body else "-")
    words = summary(out)
    assert "finished with the error FailedOperation.Record" in words
    # Distinct callbacks, not bodies: a retry re-signs, so its Timestamp can differ.
    callbacks = {(r.json["EventType"], json.dumps(r.json["EventData"])) for r in receiver.received}
    assert f"acknowledged 0 of {len(callbacks)}" in words
    assert f"Why: {reason} ({len(rows)} attempts)" in words
    assert "Only HTTP 200 acknowledges a callback" in words
    assert "Result: FAIL" in words and "did not acknowledge" in err


def test_strict_ack_refuses_a_200_without_the_legacy_body(
    receiver: Receiver, capsys: Capsys
) -> None:
    receiver.respond = lambda req: Reply(status=200, body=b'{"ok": true}')
    assert cli.main(["run", "success", "--callback-url", receiver.url, *FAST]) == 0
    assert "Result: PASS" in capsys.readouterr().out
    args = ["run", "success", "--callback-url", receiver.url, "--strict-ack", *FAST]
    assert cli.main(args) == 1
    rows = table(capsys.readouterr().out)
    assert {r["reason"] for r in rows} == {'strict_ack: response body is not {"error_code": 0}'}
    assert {r["status"] for r in rows} == {"200"} and {r["response"] for r in rows} == {
        '{"ok": true}'
    }


def test_a_backend_that_is_not_there_gets_the_connection_error(capsys: Capsys) -> None:
    with socket.socket() as s:  # a port nobody listens on (bound, never listening)
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/callback"
        code = cli.main(["run", "success", "--callback-url", url, "--retry", "none", *FAST])
    out, _ = capsys.readouterr()
    assert code == 1
    rows = table(out)
    assert rows and all(r["status"] == "-" and r["response"] == "-" for r in rows)
    reasons = {r["reason"] for r in rows}
    assert len(reasons) == 1 and "127.0.0.1" in reasons.pop()
    assert "Why: " in summary(out)


def _verifying(req: Received) -> Reply:
    """A correct backend: 200 for a good signature, 403 otherwise."""
    body = req.json
    expire, signature = int(body.get("ExpireTime", 0)), str(body.get("Sign", ""))
    ok, reason = verify(KEY, expire, signature, now=time.time())
    return Reply() if ok else Reply(status=403, body=reason.encode())


@pytest.mark.parametrize("scenario", ["bad-signature", "expired-signature"])
def test_forged_scenarios_pass_when_the_backend_refuses_them(
    receiver: Receiver, capsys: Capsys, scenario: str
) -> None:
    receiver.respond = _verifying
    args = ["run", scenario, "--callback-url", receiver.url, "--callback-key", KEY, *FAST]
    assert cli.main(args) == 0
    out, _ = capsys.readouterr()
    assert {r["status"] for r in table(out)} == {"403"}
    words = summary(out)
    assert "a correct backend refuses them all" in words
    assert "refused all" in words and "as it should" in words and "Result: PASS" in words


@pytest.mark.parametrize("scenario", ["bad-signature", "expired-signature"])
def test_forged_scenarios_fail_when_the_backend_accepts_them(
    receiver: Receiver, capsys: Capsys, scenario: str
) -> None:
    args = ["run", scenario, "--callback-url", receiver.url, "--callback-key", KEY, *FAST]
    assert cli.main(args) == 1
    out, err = capsys.readouterr()
    sent = len({r.body for r in receiver.received})
    assert f"acknowledged {sent} of {sent} of them with HTTP 200" in summary(out)
    assert "Result: FAIL" in out and "ACCEPTED" in err


def test_a_forged_signature_without_a_key_is_refused_before_sending(
    receiver: Receiver, capsys: Capsys
) -> None:
    assert cli.main(["run", "bad-signature", "--callback-url", receiver.url, *FAST]) == 2
    assert "--callback-key" in capsys.readouterr().err
    args = ["run", "success", "--param", "sign=expired", "--callback-url", receiver.url]
    assert cli.main([*args, *FAST]) == 2
    assert "ExpireTime already in the past" in capsys.readouterr().err
    assert receiver.received == []


def test_timeout_is_no_verdict(receiver: Receiver, capsys: Capsys) -> None:
    # speed 1: the first callback is due seconds away, the 0.2 s timeout comes first.
    args = ["run", "success", "--callback-url", receiver.url, "--speed", "1", "--timeout", "0.2"]
    assert cli.main(args) == 3
    out, err = capsys.readouterr()
    assert "no verdict" in out and "no verdict" in err


def test_help_documents_the_exit_codes_and_the_acknowledgement(capsys: Capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["run", "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    for line in ("0  your backend did the right thing", "1  it did not", "2  the run could"):
        assert line in text
    assert "3  --timeout passed" in text
    assert "acknowledged only by HTTP 200" in text and "204" in text and "--strict-ack" in text
