"""The real command: `tiw-emulator serve` as a process, SIGTERM, env settings, kill -9 recovery."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from served import Served

from emulator.receiver import Receiver


@pytest.fixture
def served() -> Iterator[Any]:
    started: list[Served] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Served:
        s = Served(*args, env=env)
        started.append(s)
        return s

    yield start
    for s in started:
        s.kill()


def test_serve_binds_loopback_and_stops_cleanly_on_sigterm(served: Any, tmp_path: Path) -> None:
    s = served("--db", str(tmp_path / "e.db"))
    assert s.url.startswith("http://127.0.0.1:")
    assert s.api("GET", "/healthz").json() == {"status": "ok"}
    code, out = s.stop(signal.SIGTERM)
    assert code == 0 and "shutting down" in out


def test_settings_come_from_the_environment_and_flags_win(served: Any, tmp_path: Path) -> None:
    s = served(
        "--speed",
        "7",
        env={
            "TIW_EMULATOR_DB": str(tmp_path / "env.db"),
            "TIW_EMULATOR_SPEED": "3",
            "TIW_EMULATOR_SDK_APP_ID": "1400000099",
            "TIW_EMULATOR_CALLBACK_KEY": "super-secret-key",
            "TIW_EMULATOR_CLOCK": "manual",
        },
    )
    cfg = s.api("GET", "/api/config").json()
    assert cfg["speed"] == 7.0 and cfg["sdk_app_id"] == 1400000099 and cfg["clock"] == "manual"
    assert "super-secret-key" not in str(cfg)
    _, out = s.stop()
    assert "super-secret-key" not in out
    assert (tmp_path / "env.db").exists()


def test_bad_flag_value_is_a_clear_error_not_a_traceback(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "emulator.cli",
            "serve",
            "--port",
            "0",
            "--speed",
            "-3",
            "--db",
            str(tmp_path / "x.db"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert "speed" in proc.stderr and "Traceback" not in proc.stderr


def test_kill_9_then_restart_delivers_every_scheduled_event(served: Any, db: str) -> None:
    """On each store (conftest `db`): a SQLite file, then a PostgreSQL database."""
    with Receiver() as receiver:
        args = ("--db", db, "--clock", "manual", "--retry", "fast", "--callback-url", receiver.url)
        s = served(*args)
        tasks = [
            s.api(
                "POST",
                "/api/tasks",
                json={
                    "scenario": "success",
                    "room_id": room,
                    "params": {"queue_delay_s": 10 * room},
                },
            ).json()
            for room in (1, 2, 3)
        ]
        planned = {t["task_id"]: [e["seq"] for e in t["events"]] for t in tasks}
        first_due = min(e["due_at"] for t in tasks for e in t["events"])
        now = s.api("GET", "/api/clock").json()["now"]
        # Deliver only the first few events, then crash hard.
        s.api("POST", "/api/clock/advance", json={"seconds": first_due - now + 400})
        before = len(receiver.received)
        assert 0 < before < sum(len(v) for v in planned.values())
        s.proc.kill()  # SIGKILL: no chance to clean up
        s.proc.communicate(timeout=20)

        again = served(*args)
        states = {
            t["task_id"]: again.api("GET", f"/api/tasks/{t['task_id']}").json()["status"]
            for t in tasks
        }
        assert set(states.values()) <= {"queued", "processing"}
        again.api("POST", "/api/clock/advance", json={"seconds": 86400})
        arrived: dict[str, set[int]] = {}
        for body in receiver.events():
            data = body["EventData"]
            events = again.api("GET", f"/api/tasks/{data['TaskId']}/events").json()["events"]
            for e in events:
                if e["payload"]["EventData"] == data:
                    arrived.setdefault(data["TaskId"], set()).add(e["seq"])
        assert {k: sorted(v) for k, v in arrived.items()} == planned  # every one, at least once
        for t in tasks:
            assert again.api("GET", f"/api/tasks/{t['task_id']}").json()["status"] == "finished"
        again.stop()


def test_demo_plays_success_and_transcode_failure(capsys: Any) -> None:
    from emulator.cli import main

    assert main(["demo", "--port", "0", "--db", ":memory:", "--exit"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"success\s+\S{20}\s+Finished\s+100\s+200 OK", out)
    assert re.search(r"transcode-failure\s+\S{20}\s+Finished\s+100\s+200 OK", out)
    assert "FailedOperation.Transcode" in out
    assert re.search(r"dashboard\s+http://127\.0\.0\.1:\d+/ui/", out)


FIRST_BURST: list[tuple[str, str, dict[str, Any] | None]] = [
    ("POST", "/api/tasks", {"scenario": "success"}),
    ("POST", "/api/events", {"event_type": "OfflineRecordProgressChanged", "event_data": {}}),
    ("GET", "/api/tasks?limit=5&status=finished", None),
    ("GET", "/api/deliveries?limit=5&ok=false", None),
    ("PATCH", "/api/config", {"speed": 60}),
    ("GET", "/api/openapi.json", None),
]


def test_a_fresh_server_survives_its_first_burst_of_every_kind_of_request(
    served: Any, tmp_path: Path
) -> None:
    """Every model's first use comes from many request threads at once: msgspec crashed the
    process there, now and then (this burst did not catch it in 8 runs of the code before the
    fix; tests/test_models.py has the case that does, at once). A smoke test of the real path."""
    with Receiver() as receiver:
        s = served("--db", str(tmp_path / "e.db"), "--callback-url", receiver.url)
        start = threading.Barrier(len(FIRST_BURST) * 4)

        def call(n: int) -> int:
            method, path, body = FIRST_BURST[n % len(FIRST_BURST)]
            with requests.Session() as http:
                http.trust_env = False
                start.wait(30)
                return http.request(method, s.url + path, json=body, timeout=30).status_code

        with ThreadPoolExecutor(len(FIRST_BURST) * 4) as pool:
            codes = list(pool.map(call, range(len(FIRST_BURST) * 4)))
        assert s.proc.poll() is None, s.stderr()
        assert all(code in (200, 201) for code in codes), codes
