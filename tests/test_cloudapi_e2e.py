"""The app's own Tencent Cloud SDK calls against a real emulator server over loopback HTTP."""

from __future__ import annotations

import json
import time
import types
from pathlib import Path
from typing import Any

import pytest
from tencentcloud.common import abstract_client, credential
from tencentcloud.common.common_client import CommonClient
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.tiw.v20190919 import models, tiw_client

from emulator.cli.demo import cloud_credentials
from emulator.core.config import DEMO_SECRET_ID, DEMO_SECRET_KEY, Settings
from emulator.receiver import Receiver

APP = 1400000001
KEY = "Xz4ZgayTr7rMgWQrH"
DAY = 24 * 3600


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # With protocol="http" the SDK hands HTTP_PROXY to requests itself (see the README).
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


def _profile(running: Any, method: str = "POST") -> ClientProfile:
    endpoint = running.url.removeprefix("http://")  # host:port only: it is the signed Host
    return ClientProfile(
        httpProfile=HttpProfile(endpoint=endpoint, protocol="http", reqMethod=method, reqTimeout=30)
    )


def tiw(
    running: Any,
    *,
    secret_id: str = DEMO_SECRET_ID,
    secret_key: str = DEMO_SECRET_KEY,
    method: str = "POST",
) -> tiw_client.TiwClient:
    cred = credential.Credential(secret_id, secret_key)
    return tiw_client.TiwClient(cred, "ap-guangzhou", _profile(running, method))


def common(running: Any, region: str = "ap-guangzhou") -> CommonClient:
    cred = credential.Credential(DEMO_SECRET_ID, DEMO_SECRET_KEY)
    return CommonClient("tiw", "2019-09-19", cred, region, _profile(running))


def set_callback(client: tiw_client.TiwClient, url: str, sdk_app_id: int = APP) -> str:
    req = models.SetOfflineRecordCallbackRequest()
    req.SdkAppId, req.Callback = sdk_app_id, url
    return str(client.SetOfflineRecordCallback(req).RequestId)


def create(client: tiw_client.TiwClient, room_id: int, sdk_app_id: int = APP) -> str:
    """Like an app: a typed CreateOfflineRecord; returns the RequestId (all the model holds)."""
    req = models.CreateOfflineRecordRequest()
    req.from_json_string(
        json.dumps(
            {
                "SdkAppId": sdk_app_id,
                "RoomId": room_id,
                "GroupId": str(room_id),
                "MixStream": {"Enabled": True, "ModelId": 1},
                "Whiteboard": {"Width": 1280, "Height": 960},
            }
        )
    )
    return str(client.CreateOfflineRecord(req).RequestId)


def describe(client: Any, task_id: str, sdk_app_id: int = APP) -> dict[str, Any]:
    reply = client.call_json("DescribeOfflineRecord", {"SdkAppId": sdk_app_id, "TaskId": task_id})
    return dict(reply["Response"])


def advance(running: Any, seconds: float) -> None:
    reply = running.api("POST", "/api/clock/advance", json={"seconds": seconds})
    assert reply.status_code == 200, reply.text


def calls(running: Any, **filters: Any) -> list[dict[str, Any]]:
    reply = running.api("GET", "/api/cloud-calls", params=filters)
    assert reply.status_code == 200, reply.text
    return list(reply.json()["cloud_calls"])


def sdk_error(call: Any) -> TencentCloudSDKException:
    with pytest.raises(TencentCloudSDKException) as caught:
        call()
    assert caught.value.requestId, "every error envelope carries a RequestId"
    return caught.value


# -- the full loop, written like an app ---------------------------------------------------------


def test_full_loop_set_callback_create_receive_describe(
    make_emulator: Any, receiver: Receiver
) -> None:
    running = make_emulator(callback_key=KEY)  # no global callback_url: only the SDK sets one
    client = tiw(running)
    set_callback(client, receiver.url)
    create_request_id = create(client, room_id=8000)

    [logged] = calls(running, action="CreateOfflineRecord")
    task_id = logged["task_id"]
    assert logged["request_id"] == create_request_id and logged["ok"] is True
    state = describe(client, task_id)
    assert state["TaskId"] == task_id and state["Status"] == "queued"
    assert state["Progress"] == 0 and state["RoomId"] == 8000 and state["GroupId"] == "8000"
    assert receiver.received == []  # manual clock: nothing happens until the test says so

    advance(running, DAY)

    bodies = receiver.events()
    assert [b["EventType"] for b in bodies][-1] == "OfflineRecordFinished"
    assert {b["EventType"] for b in bodies[:-1]} == {"OfflineRecordProgressChanged"}
    assert len(bodies) >= 2
    assert all(b["EventData"]["TaskId"] == task_id and b["SdkAppId"] == APP for b in bodies)
    finished = bodies[-1]["EventData"]
    assert finished["Progress"] == 100 and "Error" not in finished

    state = describe(client, task_id)
    assert state["Status"] == "finished" and state["Progress"] == 100
    assert state["VideoInfos"] == finished["VideoInfos"]
    assert state["TotalTime"] == finished["TotalTime"]
    assert state["RecordStartTime"] == finished["RecordStartTime"]
    # The typed model holds only RequestId, as documented; extras need call_json.
    req = models.DescribeOfflineRecordRequest()
    req.SdkAppId, req.TaskId = APP, task_id
    assert client.DescribeOfflineRecord(req).RequestId

    task = running.api("GET", f"/api/tasks/{task_id}").json()
    assert task["source"] == "cloudapi" and task["request_id"] == create_request_id
    assert task["params"] == {"mixed_stream": True}  # MixStream.Enabled reaches the scenario
    assert task["callback_url"] is None  # resolved per SdkAppId when sent


def test_full_loop_with_a_failure_rule(make_emulator: Any, receiver: Receiver) -> None:
    running = make_emulator(callback_key=KEY)
    rule = running.api(
        "POST", "/api/rules", json={"match": {"room_id": 8001}, "scenario": "transcode-failure"}
    )
    assert rule.status_code == 201, rule.text
    client = tiw(running)
    set_callback(client, receiver.url)
    create(client, room_id=8001)
    task_id = calls(running, action="CreateOfflineRecord")[-1]["task_id"]

    advance(running, DAY)

    [finished] = receiver.events("OfflineRecordFinished")
    assert finished["EventData"]["TaskId"] == task_id
    assert finished["EventData"]["Error"]["Code"] == "FailedOperation.Transcode"
    assert running.api("GET", f"/api/tasks/{task_id}").json()["scenario"] == "transcode-failure"

    # A failed task is answered with its error: a documented code of this action, which the
    # SDK raises (it cannot hand back a Response carrying Error as data).
    req = models.DescribeOfflineRecordRequest()
    req.SdkAppId, req.TaskId = APP, task_id
    error = sdk_error(lambda: client.DescribeOfflineRecord(req))
    assert error.code == "FailedOperation.Transcode"
    assert error.message == finished["EventData"]["Error"]["Message"]
    [logged] = calls(running, action="DescribeOfflineRecord", task_id=task_id)
    assert logged["ok"] is False and logged["code"] == "FailedOperation.Transcode"
    # Rooms not matched by the rule still get the default scenario.
    create(client, room_id=8002)
    advance(running, DAY)
    other = calls(running, action="CreateOfflineRecord")[-1]["task_id"]
    assert describe(client, other)["Status"] == "finished"


# -- business errors through the SDK -----------------------------------------------------------


def test_second_unfinished_task_in_a_room_is_refused(make_emulator: Any) -> None:
    running = make_emulator()
    client = tiw(running)
    create(client, room_id=8100)
    first = calls(running)[-1]["task_id"]
    error = sdk_error(lambda: create(client, room_id=8100))
    assert error.code == "LimitExceeded.TaskConcurrency"
    assert "8100" in error.message and first in error.message
    create(client, room_id=8100, sdk_app_id=APP + 1)  # another SdkAppId's room is another room
    advance(running, DAY)
    create(client, room_id=8100)  # the first one has finished: the room is free again
    assert len(calls(running, action="CreateOfflineRecord")) == 4


def test_unknown_task_and_wrong_sdk_app_id(make_emulator: Any) -> None:
    running = make_emulator()
    client = tiw(running)
    req = models.DescribeOfflineRecordRequest()
    req.SdkAppId, req.TaskId = APP, "nosuchtask0000000000"
    error = sdk_error(lambda: client.DescribeOfflineRecord(req))
    assert error.code == "InvalidParameter.TaskNotFound" and "nosuchtask" in error.message
    create(client, room_id=8200)
    task_id = calls(running)[-1]["task_id"]
    assert describe(client, task_id)["TaskId"] == task_id
    error = sdk_error(lambda: describe(client, task_id, sdk_app_id=APP + 7))
    assert error.code == "InvalidParameter.TaskNotFound"


@pytest.mark.parametrize(
    ("action", "params", "code"),
    [
        ("CreateOfflineRecord", {"SdkAppId": APP}, "MissingParameter"),
        ("CreateOfflineRecord", {"SdkAppId": APP, "RoomId": "8000"}, "BodyParameterTypeUnmatched"),
        ("CreateOfflineRecord", {"SdkAppId": APP, "RoomId": 1, "Foo": 1}, "UnknownParameter"),
        (
            "CreateOfflineRecord",
            {"SdkAppId": APP, "RoomId": 1, "MixStream": {"Enabled": True, "ModelId": 3}},
            "InvalidParameterValue",
        ),
        ("SetOfflineRecordCallback", {"SdkAppId": APP, "Callback": "ftp://x"}, "AddressFormat"),
        ("StartOnlineRecord", {"SdkAppId": APP}, "InvalidAction"),
    ],
)
def test_parameter_errors_reach_the_sdk(
    make_emulator: Any, action: str, params: dict[str, Any], code: str
) -> None:
    running = make_emulator()
    error = sdk_error(lambda: common(running).call_json(action, params))
    assert code in error.code
    assert calls(running)[-1]["code"] == error.code


# -- authentication against the real server ----------------------------------------------------


def test_wrong_key_and_unknown_secret_id(make_emulator: Any) -> None:
    running = make_emulator()
    wrong_key = tiw(running, secret_key=DEMO_SECRET_KEY + "x")
    assert sdk_error(lambda: create(wrong_key, 8300)).code == "AuthFailure.SignatureFailure"
    stranger = tiw(running, secret_id="AKIDsomebodyElse0000")
    assert sdk_error(lambda: create(stranger, 8300)).code == "AuthFailure.SecretIdNotFound"
    assert running.api("GET", "/api/tasks").json()["tasks"] == []  # nothing was created


def test_expired_timestamp(make_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    running = make_emulator()
    client = tiw(running)
    late = types.SimpleNamespace(time=lambda: time.time() - 600)  # only the SDK's clock is off
    monkeypatch.setattr(abstract_client, "time", late)
    error = sdk_error(lambda: create(client, 8400))
    assert error.code == "AuthFailure.SignatureExpire" and "300" in error.message


@pytest.mark.parametrize(
    "authorization",
    ["Bearer abc", "TC3-HMAC-SHA256 Credential=AKID/2024-01-01/tiw", "", "TC3-HMAC-SHA256"],
)
def test_malformed_authorization(make_emulator: Any, authorization: str) -> None:
    running = make_emulator()
    reply = running.api(
        "POST",
        "/",
        data=b'{"SdkAppId": 1400000001}',
        headers={
            "Content-Type": "application/json",
            "X-TC-Action": "DescribeOfflineRecordCallback",
            "X-TC-Version": "2019-09-19",
            "X-TC-Timestamp": str(int(time.time())),
            "X-TC-Region": "ap-guangzhou",
            "Authorization": authorization,
        },
    )
    assert reply.status_code == 200 and reply.headers["Content-Type"] == "application/json"
    error = reply.json()["Response"]["Error"]
    assert error["Code"] == "AuthFailure.InvalidAuthorization" or (
        authorization == "" and error["Code"].startswith("AuthFailure.")
    )


def test_no_verify_signature_mode(make_emulator: Any) -> None:
    running = make_emulator(verify_signature=False)
    anyone = tiw(running, secret_id="AKIDanybodyAtAll0000", secret_key="whatever")
    create(anyone, 8500)
    [logged] = calls(running)
    assert logged["ok"] is True and logged["secret_id"] == "AKID****0000"  # claimed, masked


# -- wire details ----------------------------------------------------------------------------


def test_get_mode(make_emulator: Any) -> None:
    running = make_emulator()
    client = tiw(running, method="GET")
    create(client, 8600)  # MixStream.Enabled=True travels as the text "True"
    [logged] = calls(running)
    assert logged["method"] == "GET" and logged["params"]["MixStream"] == {
        "Enabled": True,
        "ModelId": 1,
    }
    assert describe(client, logged["task_id"])["Status"] == "queued"


def test_default_and_strict_fidelity(make_emulator: Any) -> None:
    default, strict = make_emulator(), make_emulator(fidelity="strict")
    created = common(default).call_json("CreateOfflineRecord", {"SdkAppId": APP, "RoomId": 1})
    assert set(created["Response"]) == {"TaskId", "RequestId"}
    state = describe(common(default), created["Response"]["TaskId"])
    assert {"TaskId", "Status", "Progress", "RoomId", "GroupId", "RequestId"} <= set(state)

    created = common(strict).call_json("CreateOfflineRecord", {"SdkAppId": APP, "RoomId": 1})
    assert list(created["Response"]) == ["RequestId"]
    task_id = calls(strict)[-1]["task_id"]
    assert list(describe(common(strict), task_id)) == ["RequestId"]
    reply = common(strict).call_json("DescribeOfflineRecordCallback", {"SdkAppId": APP})
    assert list(reply["Response"]) == ["RequestId"]
    # Strict also wants the region, as the real API did.
    no_region = common(strict, region="")
    error = sdk_error(
        lambda: no_region.call_json("DescribeOfflineRecordCallback", {"SdkAppId": APP})
    )
    assert error.code == "MissingParameter" and "X-TC-Region" in error.message
    common(default, region="").call_json("DescribeOfflineRecordCallback", {"SdkAppId": APP})


@pytest.mark.parametrize(
    ("fidelity", "fields"), [("default", ["Callback", "RequestId"]), ("strict", ["RequestId"])]
)
def test_describe_callback_never_returns_the_key(
    make_emulator: Any, fidelity: str, fields: list[str]
) -> None:
    # The real API documented only RequestId; a masked key in CallbackKey could pass for the key.
    running = make_emulator(callback_key="topSecretCallbackKey", fidelity=fidelity)
    set_callback(tiw(running), "http://127.0.0.1:9/cb")
    reply = common(running).call_json("DescribeOfflineRecordCallback", {"SdkAppId": APP})
    assert list(reply["Response"]) == fields
    assert "topSecret" not in json.dumps(reply) and "****" not in json.dumps(reply)


def test_content_type_is_exactly_application_json(make_emulator: Any) -> None:
    running = make_emulator(verify_signature=False)  # lets a bare request reach every stage
    cases = [
        ("DescribeOfflineRecordCallback", {"SdkAppId": APP}, None),
        ("DescribeOfflineRecord", {"SdkAppId": APP}, "MissingParameter"),
        ("Nope", {}, "InvalidAction"),
    ]
    for action, params, code in cases:
        headers = {"X-TC-Version": "2019-09-19", "X-TC-Action": action}
        reply = running.api("POST", "/", json=params, headers=headers)
        assert reply.status_code == 200
        assert reply.headers["Content-Type"] == "application/json"
        assert reply.json()["Response"]["RequestId"]
        assert reply.json()["Response"].get("Error", {}).get("Code") == code


# -- callback routing ------------------------------------------------------------------------


def test_callback_precedence_task_then_sdk_app_id_then_global(
    make_emulator: Any, receiver: Receiver
) -> None:
    base = receiver.url.removesuffix("/callback")
    running = make_emulator(callback_url=f"{base}/global")
    client = tiw(running)
    set_callback(client, f"{base}/app")
    reply = client.call_json("DescribeOfflineRecordCallback", {"SdkAppId": APP})["Response"]
    assert reply["Callback"] == f"{base}/app" and "CallbackKey" not in reply

    create(client, room_id=1)  # cloud task of APP: the SdkAppId callback
    create(client, room_id=2, sdk_app_id=APP + 1)  # no callback set for it: the global one
    task = running.api(
        "POST", "/api/tasks", json={"room_id": 3, "sdk_app_id": APP, "callback_url": f"{base}/t"}
    ).json()  # its own URL beats everything
    advance(running, DAY)

    def paths(room: int) -> set[str]:
        return {r.path for r in receiver.received if r.json["EventData"]["RoomId"] == room}

    assert paths(1) == {"/app"} and paths(2) == {"/global"} and paths(3) == {"/t"}
    assert task["source"] == "control" and task["request_id"] is None

    set_callback(client, "")  # empty deletes
    reply = client.call_json("DescribeOfflineRecordCallback", {"SdkAppId": APP})["Response"]
    assert reply["Callback"] == ""
    receiver.clear()
    create(client, room_id=4)
    advance(running, DAY)
    assert paths(4) == {"/global"}


# -- the call log ----------------------------------------------------------------------------


def test_every_call_is_logged_without_secrets(make_emulator: Any) -> None:
    running = make_emulator(callback_key="topSecretCallbackKey")
    client = tiw(running)
    set_callback(client, "http://127.0.0.1:9/cb")
    create(client, 8700)
    create(client, 8701)
    sdk_error(lambda: create(client, 8700))
    task_id = calls(running, action="CreateOfflineRecord")[0]["task_id"]
    describe(client, task_id)
    sdk_error(lambda: create(tiw(running, secret_key="bad"), 8702))

    log = calls(running)
    assert [c["action"] for c in log] == [
        "SetOfflineRecordCallback",
        "CreateOfflineRecord",
        "CreateOfflineRecord",
        "CreateOfflineRecord",
        "DescribeOfflineRecord",
        "CreateOfflineRecord",
    ]  # newest last
    assert [c["code"] for c in log] == [
        None,
        None,
        None,
        "LimitExceeded.TaskConcurrency",
        None,
        "AuthFailure.SignatureFailure",
    ]
    assert [c["id"] for c in log] == sorted(c["id"] for c in log)
    assert log[1]["params"]["RoomId"] == 8700 and log[1]["method"] == "POST"
    assert all(len(c["request_id"]) == 36 for c in log)
    text = json.dumps(log)
    for secret in (DEMO_SECRET_KEY, DEMO_SECRET_ID, "topSecretCallbackKey"):
        assert secret not in text
    assert log[0]["secret_id"] == "AKID****0000"

    assert [c["action"] for c in calls(running, task_id=task_id)] == [
        "CreateOfflineRecord",
        "DescribeOfflineRecord",
    ]
    assert len(calls(running, limit=2)) == 2 and calls(running, limit=2)[-1] == log[-1]
    bad = running.api("GET", "/api/cloud-calls", params={"limit": "x"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_field"
    assert running.api("POST", "/api/reset").status_code == 200
    assert calls(running) == []


def test_all_four_actions_with_the_generic_client(make_emulator: Any, receiver: Receiver) -> None:
    running = make_emulator()
    client = common(running)
    client.call_json("SetOfflineRecordCallback", {"SdkAppId": APP, "Callback": receiver.url})
    assert (
        client.call_json("DescribeOfflineRecordCallback", {"SdkAppId": APP})["Response"]["Callback"]
        == receiver.url
    )
    task_id = client.call_json("CreateOfflineRecord", {"SdkAppId": APP, "RoomId": 9})["Response"][
        "TaskId"
    ]
    advance(running, DAY)
    assert describe(client, task_id)["Status"] == "finished"
    assert receiver.events("OfflineRecordFinished")[0]["EventData"]["TaskId"] == task_id


def test_requests_without_the_sdk_get_a_hint(make_emulator: Any) -> None:
    running = make_emulator()
    reply = running.api("GET", "/")
    assert reply.status_code == 404 and "/ui/" in reply.json()["error"]["message"]


def test_demo_prints_the_public_pair_but_masks_a_users() -> None:
    demo = cloud_credentials(Settings())
    assert DEMO_SECRET_ID in demo and DEMO_SECRET_KEY in demo
    own = cloud_credentials(Settings(secret_id="AKIDmineMine1234", secret_key="mySuperSecretKey"))
    assert "mySuperSecretKey" not in own and "AKIDmineMine1234" not in own
    assert "AKID****1234" in own
    assert "any SecretId" in cloud_credentials(Settings(verify_signature=False))


def test_readme_example_runs(make_emulator: Any, capsys: pytest.CaptureFixture[str]) -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("<!-- section:cloudapi -->")[1].split("<!-- /section:cloudapi -->")[0]
    code = section.split("```python\n")[1].split("```")[0]
    running = make_emulator()
    exec(code.replace("127.0.0.1:8765", running.url.removeprefix("http://")), {})
    assert capsys.readouterr().out == "queued 0\n"
    assert [c["code"] for c in calls(running)] == [None, None, None, None]
    assert running.emu.app_callback(APP) == "http://127.0.0.1:8000/tiw/callback"
