"""tccli 3.0.1009.1 (the newest release with the OfflineRecord actions) against the emulator.

tccli signs with the older HmacSHA256 form signature over POST, sends the endpoint's scheme in
the Host header (`Host: http://127.0.0.1:PORT`) and signs that string, and exits 0 even when
the call failed: the assertions read its JSON output and its error line.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from clients_support import CALL_TIMEOUT_S, client_env

from emulator.core.config import DEMO_SECRET_ID, DEMO_SECRET_KEY
from emulator.receiver import Receiver

APP = "1400000001"
DAY = 86400
ERROR_LINE = re.compile(r"code:(\S+) message:(.*) requestId:(\S+)")


class Tccli:
    """The tccli command, run with a HOME of its own (see the `tccli_home` fixture)."""

    def __init__(self, command: Path, home: Path) -> None:
        self.command, self.home = command, home

    def call(
        self, running: Any, action: str, *args: str, secret_key: str = DEMO_SECRET_KEY
    ) -> dict[str, Any]:
        """Run one command; `{"ok": output JSON}` or `{"error": {"code", "message"}}`."""
        cmd = [str(self.command), "tiw", action, "--endpoint", running.url.rstrip("/")]
        cmd += ["--region", "ap-guangzhou", "--secretId", DEMO_SECRET_ID]
        cmd += ["--secretKey", secret_key, *args]
        done = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=CALL_TIMEOUT_S,
            env=client_env(HOME=str(self.home)),
        )
        assert done.returncode == 0, done.stderr  # tccli exits 0 even on failure
        if done.stdout.strip():
            return {"ok": json.loads(done.stdout)}
        found = ERROR_LINE.search(done.stderr)
        assert found, f"tccli printed neither JSON nor an SDK error: {done.stderr[-2000:]}"
        return {"error": {"code": found.group(1), "message": found.group(2)}}


@pytest.fixture
def cli(tccli: Path, tccli_home: Path) -> Tccli:
    return Tccli(tccli, tccli_home)


def describe(cli: Tccli, running: Any, task_id: str) -> dict[str, Any]:
    return cli.call(running, "DescribeOfflineRecord", "--SdkAppId", APP, "--TaskId", task_id)


def test_create_and_describe_through_v1_signatures(
    cli: Tccli, emulator: Any, receiver: Receiver
) -> None:
    # tccli prints the typed response model, which holds only RequestId (as documented), so
    # the new TaskId is read from the cloud-call log, as a QA person would from the dashboard.
    created = cli.call(
        emulator,
        "CreateOfflineRecord",
        *("--SdkAppId", APP, "--RoomId", "8000", "--GroupId", "8000"),
        *("--MixStream", '{"Enabled": true, "ModelId": 1}'),
    )
    [logged] = emulator.api("GET", "/api/cloud-calls").json()["cloud_calls"]
    assert created == {"ok": {"RequestId": logged["request_id"]}}
    task_id = logged["task_id"]
    assert logged["params"]["MixStream"] == {"Enabled": True, "ModelId": 1}
    assert "RequestId" in describe(cli, emulator, task_id)["ok"]

    emulator.api("POST", "/api/clock/advance", json={"seconds": DAY}).raise_for_status()
    assert receiver.events("OfflineRecordFinished")[-1]["EventData"]["TaskId"] == task_id
    assert "RequestId" in describe(cli, emulator, task_id)["ok"]

    logged = emulator.api("GET", "/api/cloud-calls").json()["cloud_calls"]
    assert [(c["action"], c["method"], c["ok"], c["task_id"]) for c in logged] == [
        ("CreateOfflineRecord", "POST", True, task_id),
        ("DescribeOfflineRecord", "POST", True, task_id),
        ("DescribeOfflineRecord", "POST", True, task_id),
    ]


def test_describe_shows_a_failed_task_as_its_error(cli: Tccli, emulator: Any) -> None:
    rule = {"match": {"room_id": 8100}, "scenario": "transcode-failure"}
    emulator.api("POST", "/api/rules", json=rule).raise_for_status()
    cli.call(emulator, "CreateOfflineRecord", "--SdkAppId", APP, "--RoomId", "8100")
    task_id = emulator.api("GET", "/api/cloud-calls").json()["cloud_calls"][0]["task_id"]
    emulator.api("POST", "/api/clock/advance", json={"seconds": DAY}).raise_for_status()
    failed = describe(cli, emulator, task_id)
    assert failed["error"] == {
        "code": "FailedOperation.Transcode",
        "message": "录制对时信息获取失败",
    }


def test_errors_are_reported_with_their_codes(cli: Tccli, emulator: Any) -> None:
    missing = cli.call(emulator, "DescribeOfflineRecord", "--SdkAppId", APP, "--TaskId", "nope")
    assert missing["error"]["code"] == "InvalidParameter.TaskNotFound"
    wrong_key = cli.call(
        emulator, "DescribeOfflineRecordCallback", "--SdkAppId", APP, secret_key="bad"
    )
    assert wrong_key["error"]["code"] == "AuthFailure.SignatureFailure"
    logged = emulator.api("GET", "/api/cloud-calls").json()["cloud_calls"]
    assert [c["action"] for c in logged] == [
        "DescribeOfflineRecord",
        "DescribeOfflineRecordCallback",
    ]
