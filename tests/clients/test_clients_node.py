"""The official Node.js SDKs against the emulator's plain loopback address, as an app uses them.

`tencentcloud-sdk-nodejs@4.0.745` (the last with the typed OfflineRecord methods) and the
newest `tencentcloud-sdk-nodejs-common` CommonClient, each with the TC3 signature (which
signs the host without its port, under the service `127`) and the older HmacSHA1/HmacSHA256
one, over POST and GET.
"""

from __future__ import annotations

from typing import Any

import pytest
from clients_support import LineDriver

from emulator.core.config import DEMO_SECRET_ID, DEMO_SECRET_KEY
from emulator.receiver import Receiver

APP = 1400000001
DAY = 86400
CLIENTS = ("tiw", "common")
SIGNATURES = [
    ("TC3-HMAC-SHA256", "POST"),
    ("TC3-HMAC-SHA256", "GET"),
    ("HmacSHA1", "GET"),
    ("HmacSHA256", "POST"),
]


class NodeApp:
    """One app backend's view: a Node.js client of one kind, signing one way."""

    def __init__(self, driver: LineDriver, running: Any, client: str, sign: str, method: str):
        self.driver, self.running = driver, running
        self.base = {
            "client": client,
            "endpoint": running.url.removeprefix("http://"),
            "secretId": DEMO_SECRET_ID,
            "secretKey": DEMO_SECRET_KEY,
            "signMethod": sign,
            "reqMethod": method,
        }

    def call(self, action: str, **params: Any) -> dict[str, Any]:
        return self.driver.call(**self.base, action=action, params=params)

    def ok(self, action: str, **params: Any) -> dict[str, Any]:
        reply = self.call(action, **params)
        assert "ok" in reply, reply
        return dict(reply["ok"])

    def error(self, action: str, **params: Any) -> dict[str, Any]:
        reply = self.call(action, **params)
        assert "error" in reply, reply
        assert reply["error"]["requestId"], reply  # the SDK raised on Response.Error
        return dict(reply["error"])


@pytest.mark.parametrize(("sign", "method"), SIGNATURES)
@pytest.mark.parametrize("client", CLIENTS)
def test_full_loop(
    node_driver: LineDriver,
    emulator: Any,
    receiver: Receiver,
    client: str,
    sign: str,
    method: str,
) -> None:
    app = NodeApp(node_driver, emulator, client, sign, method)
    app.ok(
        "SetOfflineRecordCallback",
        SdkAppId=APP,
        Callback=receiver.url.removesuffix("/callback") + "/node",
    )
    assert app.ok("DescribeOfflineRecordCallback", SdkAppId=APP)["Callback"].endswith("/node")

    created = app.ok(
        "CreateOfflineRecord",
        SdkAppId=APP,
        RoomId=8000,
        GroupId="8000",
        MixStream={"Enabled": True, "ModelId": 1},
        Whiteboard={"Width": 1280, "Height": 960},
    )
    task_id = created["TaskId"]
    assert created["RequestId"]
    assert app.ok("DescribeOfflineRecord", SdkAppId=APP, TaskId=task_id)["Status"] == "queued"

    emulator.api("POST", "/api/clock/advance", json={"seconds": DAY}).raise_for_status()
    events = [r.json for r in receiver.received if r.path == "/node"]
    assert {e["EventType"] for e in events} == {
        "OfflineRecordProgressChanged",
        "OfflineRecordFinished",
    }
    assert {e["EventData"]["TaskId"] for e in events} == {task_id}

    done = app.ok("DescribeOfflineRecord", SdkAppId=APP, TaskId=task_id)
    assert (done["Status"], done["Progress"]) == ("finished", 100)
    assert any(v["VideoType"] == 3 for v in done["VideoInfos"])  # MixStream reached the task

    logged = emulator.api("GET", "/api/cloud-calls").json()["cloud_calls"]
    assert [c["action"] for c in logged] == [
        "SetOfflineRecordCallback",
        "DescribeOfflineRecordCallback",
        "CreateOfflineRecord",
        "DescribeOfflineRecord",
        "DescribeOfflineRecord",
    ]
    assert all(c["ok"] and c["method"] == method for c in logged)


@pytest.mark.parametrize(("sign", "method"), [SIGNATURES[0], SIGNATURES[2]])
@pytest.mark.parametrize("client", CLIENTS)
def test_errors_come_back_as_sdk_exceptions(
    node_driver: LineDriver, emulator: Any, client: str, sign: str, method: str
) -> None:
    app = NodeApp(node_driver, emulator, client, sign, method)
    missing = app.error("DescribeOfflineRecord", SdkAppId=APP, TaskId="00e1jv8ve0jcqk7da9lb")
    assert missing["code"] == "InvalidParameter.TaskNotFound"

    app.ok("CreateOfflineRecord", SdkAppId=APP, RoomId=8001)
    busy = app.error("CreateOfflineRecord", SdkAppId=APP, RoomId=8001)
    assert busy["code"] == "LimitExceeded.TaskConcurrency" and "8001" in busy["message"]

    typed = app.error("CreateOfflineRecord", SdkAppId=APP, RoomId="room-8002")
    assert typed["code"] == "InvalidParameter.BodyParameterTypeUnmatched"
    assert "RoomId" in typed["message"]

    app.base["secretKey"] = "not-the-key"
    wrong_key = app.error("DescribeOfflineRecordCallback", SdkAppId=APP)
    assert wrong_key["code"] == "AuthFailure.SignatureFailure"


def test_strict_fidelity_refuses_what_tc3_signs_at_an_ip_but_not_v1(
    node_driver: LineDriver, make_emulator: Any
) -> None:
    strict = make_emulator(fidelity="strict")
    tc3 = NodeApp(node_driver, strict, "tiw", "TC3-HMAC-SHA256", "POST")
    # Exact checks: the SDK's scope service is `127` and its signed host lacks the port.
    assert tc3.error("DescribeOfflineRecordCallback", SdkAppId=APP)["code"] == (
        "AuthFailure.SignatureFailure"
    )
    v1 = NodeApp(node_driver, strict, "tiw", "HmacSHA256", "POST")
    assert list(v1.ok("DescribeOfflineRecordCallback", SdkAppId=APP)) == ["RequestId"]
