"""What a new user reads: --version, truthful --help defaults, the busy-port hint, subcommand
usage on a bad flag, `send`'s event names, `demo --clock manual`, and the dashboard's token hint."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import emulator
from emulator import cli
from emulator.cli import commands as cli_commands
from emulator.cli.demo import DEMO_DEFAULTS, DEMO_SCENARIOS
from emulator.core.config import RuntimeConfig, Settings
from emulator.receiver import Receiver
from emulator.web.app import create_app

ROOT = Path(__file__).resolve().parents[1]
Capsys = pytest.CaptureFixture[str]


def help_text(capsys: Capsys, *command: str) -> str:
    with pytest.raises(SystemExit) as exited:
        cli.main([*command, "--help"])
    assert exited.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # argparse wraps lines anywhere


def usage_error(capsys: Capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as exited:
        cli.main(list(argv))
    assert exited.value.code == 2
    return capsys.readouterr().err


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def test_version(capsys: Capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"tiw-emulator {emulator.__version__}"


def test_serve_help_shows_the_defaults_serve_uses(capsys: Capsys) -> None:
    text = help_text(capsys, "serve")
    settings, runtime = Settings(), RuntimeConfig()
    assert f"--speed SPEED emulated seconds per wall second (default {runtime.speed:g})" in text
    assert f"(default {runtime.retry.name})" in text and f"(default {settings.db};" in text
    assert f"(default {settings.port};" in text and f"(default {runtime.clock})" in text
    assert "exit status" in text and "3 when the port cannot be bound" in text


def test_demo_help_shows_the_defaults_the_demo_uses(capsys: Capsys) -> None:
    text = help_text(capsys, "demo")
    speed = re.search(r"--speed SPEED emulated seconds per wall second \(default (\S+)\)", text)
    retry = re.search(r"retry policy: none, fast or tencent \(default (\w+)\)", text)
    db = re.search(r"SQLite file \(default (\S+);", text)
    assert speed and retry and db, text
    assert (float(speed[1]), retry[1], db[1]) == (600.0, "fast", ":memory:")
    assert DEMO_DEFAULTS == {"speed": 600.0, "retry": "fast", "db": ":memory:"}


def test_demo_plays_at_the_documented_speed_and_retry(capsys: Capsys) -> None:
    assert cli.main(["demo", "--port", "0", "--exit", "--class-minutes", "2"]) == 0
    out = capsys.readouterr().out
    assert f"clock real x{DEMO_DEFAULTS['speed']:g}" in out
    # bad-signature is refused every time: the fast policy stops after its third attempt.
    refused = re.findall(r"bad-signature .* 403 refused .*attempt (\d+)\)", out)
    assert refused and max(map(int, refused)) == 3


def test_demo_with_a_manual_clock_plays_everything_and_exits() -> None:
    # A subprocess with a timeout: a hang fails the test instead of hanging the suite.
    done = subprocess.run(
        [
            *(sys.executable, "-m", "emulator.cli", "demo", "--port", "0", "--clock", "manual"),
            *("--exit", "--class-minutes", "5"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("TIW_EMULATOR_")},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "clock manual: the demo advances it" in done.stdout
    for name in DEMO_SCENARIOS:
        assert re.search(rf"{name}\s+\S{{20}}\s+Finished\s+100", done.stdout), name
        assert re.search(rf"^\s+{name}\s+finished", done.stdout, flags=re.MULTILINE), name


def test_busy_port_says_what_to_do(busy_port: int, capsys: Capsys) -> None:
    for command in ("serve", "demo"):
        assert cli.main([command, "--port", str(busy_port), "--db", ":memory:"]) == 3
        err = capsys.readouterr().err
        assert f"cannot listen on 127.0.0.1:{busy_port}: Address already in use" in err
        assert "--port N" in err and "--port 0" in err


def test_make_run_on_a_busy_port_suggests_make_run_port(busy_port: int) -> None:
    if shutil.which("make") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("make is missing: apt-get install -y make")
        pytest.skip("make is not installed: apt-get install -y make")
    bin_dir = Path(sys.executable).parent
    done = subprocess.run(
        # -o: treat the install stamp as up to date; this test must not reinstall anything.
        ["make", "-s", "-o", ".venv/.installed", f"BIN={bin_dir}", "run", f"PORT={busy_port}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("TIW_EMULATOR_", "MAKE", "MFLAGS"))  # not `make test`'s flags
        },
        check=False,
    )
    assert done.returncode != 0
    assert f"make run: port {busy_port} is not free" in done.stderr
    assert f"make run PORT={busy_port + 1}" in done.stderr


@pytest.mark.parametrize(
    ("argv", "usage", "bad"),
    [
        (["run", "success", "--callback-url", "http://x", "--bogus"], "run", "--bogus"),
        (["serve", "--prot", "1"], "serve", "--prot 1"),
        (["send", "progress", "--callback-url", "http://x", "--kye", "k"], "send", "--kye k"),
        (["scenarios", "validate", "a.yaml", "--strict"], "scenarios validate", "--strict"),
    ],
)
def test_a_bad_flag_shows_the_subcommand_usage(
    capsys: Capsys, argv: list[str], usage: str, bad: str
) -> None:
    err = usage_error(capsys, *argv)
    assert err.startswith(f"usage: tiw-emulator {usage} ")
    assert err.rstrip().endswith(f"error: unrecognized arguments: {bad}")


def test_send_lists_the_valid_event_names(receiver: Receiver, capsys: Capsys) -> None:
    assert cli.main(["send", "Finishd", "--callback-url", receiver.url]) == 2
    err = capsys.readouterr().err
    assert "unknown event 'Finishd'" in err and "did you mean OfflineRecordFinished?" in err
    assert "OfflineRecordProgressChanged or OfflineRecordFinished" in err
    assert "progress / finished" in err and "pass --data" not in err
    assert cli.main(["send", "OfflineRecordFinishedX", "--callback-url", receiver.url]) == 2
    assert "OfflineRecordFinished" in capsys.readouterr().err
    assert receiver.received == []
    assert cli.main(["send", "offlinerecordfinished", "--callback-url", receiver.url]) == 0
    assert receiver.events()[0]["EventType"] == "OfflineRecordFinished"


def test_send_help_documents_the_shortcuts(capsys: Capsys) -> None:
    text = help_text(capsys, "send")
    assert "progress = OfflineRecordProgressChanged" in text
    assert "finished = OfflineRecordFinished" in text


# -- the dashboard without its token --------------------------------------------------------------
@pytest.fixture
def token_client() -> Iterator[Any]:
    app = create_app({"db": ":memory:", "clock": "manual", "token": "s3cret-t0ken"})
    yield app.test_client()
    app.extensions["tiw_emulator"].close()


def test_a_browser_without_the_token_is_told_about_query_token(token_client: Any) -> None:
    accept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    page = token_client.get("/ui/", headers={"Accept": accept})
    assert page.status_code == 401 and page.mimetype == "text/html"
    text = page.get_data(as_text=True)
    assert "http://localhost/ui/?token=&lt;your token&gt;" in text
    assert "s3cret-t0ken" not in text


def test_a_script_without_the_token_gets_json_naming_both_ways(token_client: Any) -> None:
    ui = token_client.get("/ui/", headers={"Accept": "*/*"})
    assert ui.status_code == 401 and ui.is_json
    assert "/ui/?token=<token>" in ui.get_json()["error"]["message"]
    api = token_client.get("/api/tasks", headers={"Accept": "text/html"})
    assert api.status_code == 401 and api.is_json  # the API is not a page: header only
    assert "Authorization: Bearer <token>" in api.get_json()["error"]["message"]
    assert "s3cret-t0ken" not in api.get_data(as_text=True) + ui.get_data(as_text=True)


# -- the README in step with the CLI --------------------------------------------------------------
def readme_section(name: str) -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return text.split(f"<!-- section:{name} -->")[1].split(f"<!-- /section:{name} -->")[0]


def test_readme_lists_every_command_and_run_exit_status() -> None:
    parser = cli_commands.build_parser()
    commands = set(innermost_choices(parser))
    first_column = re.findall(r"^\| ([^|]+)\|", readme_section("cli"), flags=re.MULTILINE)
    documented = {m for cell in first_column for m in re.findall(r"(?:^|· )`(\w+)", cell)}
    assert documented == commands, "add each command to the README's Command line table"
    for status in ("0", "1", "2", "3"):
        assert f"\n| {status} | " in readme_section("cli")


def test_readme_acknowledgement_section_states_the_rule() -> None:
    ack = readme_section("ack")
    assert "**HTTP 200**" in ack and "204" in ack and "`strict_ack`" in ack
    assert 'strict_ack: response body is not {"error_code": 0}' in ack  # the engine's words


def innermost_choices(parser: Any) -> list[str]:
    [sub] = [a for a in parser._actions if a.dest == "command"]
    return list(sub.choices)


def test_a_reader_that_leaves_early_gets_no_traceback() -> None:
    """`tiw-emulator scenarios | head -3`: the pipe closes before the list is written."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody reads: the first write fails with EPIPE
    try:
        done = subprocess.run(
            [sys.executable, "-m", "emulator.cli", "scenarios"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert done.returncode == 1
    assert done.stderr == ""
