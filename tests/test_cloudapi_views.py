"""The cloud API blueprint over real loopback HTTP, driven by the official Tencent Cloud SDK."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from flask import Flask
from tc3_requests import tc3_headers
from tencentcloud.common import credential
from tencentcloud.common.common_client import CommonClient
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.tiw.v20190919 import models, tiw_client
from werkzeug.serving import make_server

from emulator.cloudapi import CloudApiSettings, create_cloudapi_blueprint, errors
from emulator.web.wsgi_bridge import RECEIVED_KEY

SID = "AKIDemulatorEXAMPLE0001"
SKEY = "emulatorSecretKeyEXAMPLE"
APP = 1400000001


class FakeBackend:
    """Just enough of the core to exercise the blueprint; implements CloudBackend."""

    def __init__(self) -> None:
        self.tasks: dict[str, dict[str, Any]] = {}
        self.created: list[dict[str, Any]] = []
        self.callbacks: dict[int, str] = {}
        self.log: list[dict[str, Any]] = []
        self.explode = False

    def create_offline_record(
        self,
        *,
        sdk_app_id: int,
        room_id: int,
        group_id: str | None,
        mix_stream: dict[str, Any] | None,
        whiteboard: dict[str, Any] | None,
        request_id: str,
        waited_s: float = 0.0,
    ) -> str:
        if self.explode:
            raise RuntimeError("database is locked")
        for task_id, task in self.tasks.items():
            if task["RoomId"] == room_id and task["Status"] != "finished":
                raise errors.task_concurrency(room_id, task_id)
        task_id = f"{len(self.tasks):020d}"
        self.created.append(
            {
                "sdk_app_id": sdk_app_id,
                "room_id": room_id,
                "group_id": group_id,
                "mix_stream": mix_stream,
                "whiteboard": whiteboard,
                "request_id": request_id,
                "waited_s": waited_s,
            }
        )
        self.tasks[task_id] = {
            "TaskId": task_id,
            "Status": "queued",
            "Progress": 0,
            "RoomId": room_id,
            "GroupId": group_id or str(room_id),
            "RecordStartTime": None,
            "TotalTime": None,
            "VideoInfos": None,
            "Error": None,
        }
        return task_id

    def finish(self, task_id: str, *, failed: bool = False) -> None:
        self.tasks[task_id].update(
            Status="finished",
            Progress=100,
            RecordStartTime=1565690613,
            TotalTime=156750,
            VideoInfos=[{"VideoType": 2, "UserId": "", "VideoDuration": 156750}],
        )
        if failed:
            failure = {"Code": "FailedOperation.Transcode", "Message": "录制对时信息获取失败"}
            self.tasks[task_id]["Error"] = failure

    def describe_offline_record(self, *, sdk_app_id: int, task_id: str) -> dict[str, Any]:
        if task_id not in self.tasks:
            raise errors.task_not_found(task_id)
        return dict(self.tasks[task_id])

    def set_offline_record_callback(self, *, sdk_app_id: int, callback: str) -> None:
        self.callbacks[sdk_app_id] = callback

    def describe_offline_record_callback(self, *, sdk_app_id: int) -> dict[str, Any]:
        return {"Callback": self.callbacks.get(sdk_app_id, "")}

    def log_cloud_call(self, record: dict[str, Any]) -> None:
        self.log.append(record)

    def new_request_id(self) -> str:
        return str(uuid.uuid4())


@dataclass
class Emulator:
    endpoint: str
    backend: FakeBackend
    settings: CloudApiSettings

    @property
    def url(self) -> str:
        return f"http://{self.endpoint}/"


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def emu() -> Iterator[Emulator]:
    backend = FakeBackend()
    settings = CloudApiSettings(secrets={SID: SKEY})
    app = Flask(__name__)
    app.register_blueprint(create_cloudapi_blueprint(backend, lambda: settings))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield Emulator(f"127.0.0.1:{server.server_port}", backend, settings)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def profile(emu: Emulator, method: str) -> ClientProfile:
    hp = HttpProfile(endpoint=emu.endpoint, protocol="http", reqMethod=method, reqTimeout=5)
    return ClientProfile(httpProfile=hp)


def tiw(
    emu: Emulator,
    method: str = "POST",
    *,
    sid: str = SID,
    key: str = SKEY,
    region: str = "ap-guangzhou",
) -> tiw_client.TiwClient:
    return tiw_client.TiwClient(credential.Credential(sid, key), region, profile(emu, method))


def create_req(room: int = 8000, **extra: Any) -> models.CreateOfflineRecordRequest:
    req = models.CreateOfflineRecordRequest()
    req.from_json_string(
        json.dumps(
            {
                "SdkAppId": APP,
                "RoomId": room,
                "GroupId": str(room),
                "MixStream": {"Enabled": True, "ModelId": 1},
                "Whiteboard": {"Width": 1280, "Height": 960},
                **extra,
            }
        )
    )
    return req


def sdk_error(call: Callable[[], Any]) -> TencentCloudSDKException:
    with pytest.raises(TencentCloudSDKException) as info:
        call()
    assert info.value.requestId, "error envelopes must carry a RequestId"
    return info.value


def raw_post(
    emu: Emulator,
    action: str,
    body: bytes,
    *,
    timestamp: int | None = None,
    headers: dict[str, str] | None = None,
) -> requests.Response:
    ts = int(time.time()) if timestamp is None else timestamp
    sent = {
        **tc3_headers(
            action, body, secret_id=SID, secret_key=SKEY, host=emu.endpoint, timestamp=ts
        ),
        **(headers or {}),
    }
    return requests.post(emu.url, data=body, headers=sent, timeout=5)


# --- success paths ---------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_typed_create_reaches_the_backend_with_typed_params(emu: Emulator, method: str) -> None:
    resp = tiw(emu, method).CreateOfflineRecord(create_req())
    assert isinstance(resp, models.CreateOfflineRecordResponse)
    assert uuid.UUID(resp.RequestId)
    assert emu.backend.created == [
        {
            "sdk_app_id": APP,
            "room_id": 8000,
            "group_id": "8000",
            "mix_stream": {"Enabled": True, "ModelId": 1},
            "whiteboard": {"Width": 1280, "Height": 960},
            "request_id": resp.RequestId,
            "waited_s": 0.0,  # werkzeug's server does not say when a request arrived
        }
    ]


def test_create_tells_the_backend_how_long_the_call_waited_in_the_server() -> None:
    """The task is created as of the call's arrival (as POST /api/tasks does): the server's
    arrival stamp (RECEIVED_KEY) reaches the backend as `waited_s`. A middleware stamps each
    request as if it had arrived 250 ms before the app got it."""
    backend = FakeBackend()
    settings = CloudApiSettings(secrets={SID: SKEY})
    app = Flask(__name__)
    app.register_blueprint(create_cloudapi_blueprint(backend, lambda: settings))
    inner = app.wsgi_app

    def arrived_earlier(environ: dict[str, Any], start_response: Any) -> Any:
        environ[RECEIVED_KEY] = time.monotonic() - 0.25
        return inner(environ, start_response)

    app.wsgi_app = arrived_earlier  # type: ignore[method-assign]
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        emu = Emulator(f"127.0.0.1:{server.server_port}", backend, settings)
        tiw(emu).CreateOfflineRecord(create_req())
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    (created,) = backend.created
    assert 0.25 <= created["waited_s"] < 5.0


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_call_json_shows_default_extras(emu: Emulator, method: str) -> None:
    client = tiw(emu, method)
    created = client.call_json("CreateOfflineRecord", {"SdkAppId": APP, "RoomId": 9})
    task_id = created["Response"]["TaskId"]
    assert set(created["Response"]) == {"TaskId", "RequestId"}
    assert emu.backend.created[0]["group_id"] is None
    assert emu.backend.created[0]["request_id"] == created["Response"]["RequestId"]

    described = client.call_json("DescribeOfflineRecord", {"SdkAppId": APP, "TaskId": task_id})
    assert described["Response"] == {
        "TaskId": task_id,
        "Status": "queued",
        "Progress": 0,
        "RoomId": 9,
        "GroupId": "9",
        "RequestId": described["Response"]["RequestId"],
    }

    emu.backend.finish(task_id)
    finished = client.call_json("DescribeOfflineRecord", {"SdkAppId": APP, "TaskId": task_id})
    assert finished["Response"]["Progress"] == 100
    assert finished["Response"]["TotalTime"] == 156750
    assert finished["Response"]["VideoInfos"][0]["VideoType"] == 2
    assert "Error" not in finished["Response"]


@pytest.mark.parametrize("fidelity", ["default", "strict"])
def test_failed_task_is_described_as_the_task_error(emu: Emulator, fidelity: str) -> None:
    emu.settings.fidelity = fidelity
    client = tiw(emu)
    client.call_json("CreateOfflineRecord", {"SdkAppId": APP, "RoomId": 9})
    task_id = next(iter(emu.backend.tasks))
    emu.backend.finish(task_id, failed=True)
    req = models.DescribeOfflineRecordRequest()
    req.SdkAppId, req.TaskId = APP, task_id
    err = sdk_error(lambda: client.DescribeOfflineRecord(req))
    assert (err.code, err.message) == ("FailedOperation.Transcode", "录制对时信息获取失败")
    assert emu.backend.log[-1]["task_id"] == task_id
    assert emu.backend.log[-1]["code"] == "FailedOperation.Transcode"


def test_strict_fidelity_returns_only_request_id(emu: Emulator) -> None:
    emu.settings.fidelity = "strict"
    client = tiw(emu)
    created = client.call_json("CreateOfflineRecord", {"SdkAppId": APP, "RoomId": 9})
    assert list(created["Response"]) == ["RequestId"]
    task_id = next(iter(emu.backend.tasks))
    described = client.call_json("DescribeOfflineRecord", {"SdkAppId": APP, "TaskId": task_id})
    assert list(described["Response"]) == ["RequestId"]
    callback = client.call_json("DescribeOfflineRecordCallback", {"SdkAppId": APP})
    assert list(callback["Response"]) == ["RequestId"]


def test_strict_fidelity_requires_a_region(emu: Emulator) -> None:
    emu.settings.fidelity = "strict"
    err = sdk_error(lambda: tiw(emu, region="").CreateOfflineRecord(create_req()))
    assert err.code == "MissingParameter" and "X-TC-Region" in err.message
    emu.settings.fidelity = "default"
    assert tiw(emu, region="").CreateOfflineRecord(create_req()).RequestId


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_callback_set_describe_and_delete(emu: Emulator, method: str) -> None:
    client = tiw(emu, method)
    req = models.SetOfflineRecordCallbackRequest()
    req.SdkAppId, req.Callback = APP, "https://example.com/offline/callback"
    assert client.SetOfflineRecordCallback(req).RequestId
    shown = client.call_json("DescribeOfflineRecordCallback", {"SdkAppId": APP})["Response"]
    assert shown["Callback"] == "https://example.com/offline/callback"
    assert "CallbackKey" not in shown  # a secret, and undocumented for this action

    req.Callback = ""
    client.SetOfflineRecordCallback(req)
    assert emu.backend.callbacks[APP] == ""
    typed = models.DescribeOfflineRecordCallbackRequest()
    typed.SdkAppId = APP
    assert client.DescribeOfflineRecordCallback(typed).RequestId


def test_content_type_is_exactly_application_json(emu: Emulator) -> None:
    ok = raw_post(emu, "DescribeOfflineRecordCallback", b'{"SdkAppId": 1}')
    bad = raw_post(emu, "DescribeOfflineRecord", b'{"SdkAppId": 1, "TaskId": "nope"}')
    for resp in (ok, bad):
        assert resp.status_code == 200
        assert resp.headers["Content-Type"] == "application/json"
    assert bad.json()["Response"]["Error"]["Code"] == "InvalidParameter.TaskNotFound"


# --- errors as the SDK sees them -----------------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_wrong_key(emu: Emulator, method: str) -> None:
    err = sdk_error(lambda: tiw(emu, method, key="wrong").CreateOfflineRecord(create_req()))
    assert err.code == "AuthFailure.SignatureFailure"
    assert emu.backend.created == []


def test_unknown_secret_id(emu: Emulator) -> None:
    err = sdk_error(lambda: tiw(emu, sid="AKIDnobody").CreateOfflineRecord(create_req()))
    assert err.code == "AuthFailure.SecretIdNotFound"


def test_expired_timestamp(emu: Emulator) -> None:
    resp = raw_post(emu, "DescribeOfflineRecordCallback", b'{"SdkAppId": 1}', timestamp=1_000)
    assert resp.status_code == 200
    assert resp.json()["Response"]["Error"]["Code"] == "AuthFailure.SignatureExpire"


def test_signature_check_can_be_switched_off(emu: Emulator) -> None:
    emu.settings.verify_signature = False
    assert tiw(emu, key="wrong").CreateOfflineRecord(create_req()).RequestId
    assert emu.backend.log[-1]["secret_id"] == "AKID****0001"


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_missing_parameter(emu: Emulator, method: str) -> None:
    err = sdk_error(lambda: tiw(emu, method).call_json("CreateOfflineRecord", {"SdkAppId": APP}))
    assert err.code == "MissingParameter" and "`RoomId`" in err.message


def test_wrong_type_names_the_field(emu: Emulator) -> None:
    err = sdk_error(
        lambda: tiw(emu).call_json(
            "CreateOfflineRecord",
            {"SdkAppId": APP, "RoomId": 1, "MixStream": {"Enabled": True, "ModelId": True}},
        )
    )
    assert err.code == "InvalidParameter.BodyParameterTypeUnmatched"
    assert "`MixStream.ModelId`" in err.message
    err = sdk_error(lambda: tiw(emu).CreateOfflineRecord(create_req(RoomId="8000")))
    assert err.code == "InvalidParameter.BodyParameterTypeUnmatched"


def test_unknown_parameter(emu: Emulator) -> None:
    err = sdk_error(
        lambda: tiw(emu).call_json("DescribeOfflineRecordCallback", {"SdkAppId": 1, "Foo": 2})
    )
    assert err.code == "UnknownParameter" and "`Foo`" in err.message


def test_unknown_action(emu: Emulator) -> None:
    err = sdk_error(lambda: tiw(emu).call_json("StartOnlineRecord", {"SdkAppId": APP}))
    assert err.code == "InvalidAction" and "StartOnlineRecord" in err.message


def test_unknown_version(emu: Emulator) -> None:
    client = CommonClient(
        "tiw", "2020-01-01", credential.Credential(SID, SKEY), "ap-guangzhou", profile(emu, "POST")
    )
    err = sdk_error(lambda: client.call_json("CreateOfflineRecord", {"SdkAppId": 1}))
    assert err.code == "NoSuchVersion"


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_bad_callback_url(emu: Emulator, method: str) -> None:
    req = models.SetOfflineRecordCallbackRequest()
    req.SdkAppId, req.Callback = APP, "example.com/callback"
    err = sdk_error(lambda: tiw(emu, method).SetOfflineRecordCallback(req))
    assert err.code == "InvalidParameter.CallbackAddressFormatError"
    assert APP not in emu.backend.callbacks


def test_task_not_found(emu: Emulator) -> None:
    req = models.DescribeOfflineRecordRequest()
    req.SdkAppId, req.TaskId = APP, "00e1jv8ve0jcqk7da9lb"
    err = sdk_error(lambda: tiw(emu).DescribeOfflineRecord(req))
    assert err.code == "InvalidParameter.TaskNotFound" and "00e1jv8ve0jcqk7da9lb" in err.message


def test_concurrency_limit_per_room(emu: Emulator) -> None:
    client = tiw(emu)
    first = client.call_json("CreateOfflineRecord", {"SdkAppId": APP, "RoomId": 7})
    err = sdk_error(lambda: client.CreateOfflineRecord(create_req(room=7)))
    assert err.code == "LimitExceeded.TaskConcurrency"
    emu.backend.finish(first["Response"]["TaskId"])
    assert client.CreateOfflineRecord(create_req(room=7)).RequestId


def test_unexpected_exception_becomes_internal_error(emu: Emulator) -> None:
    emu.backend.explode = True
    err = sdk_error(lambda: tiw(emu).CreateOfflineRecord(create_req()))
    assert err.code == "InternalError"
    assert "database" not in err.message and "Traceback" not in err.message


def test_invalid_json_body(emu: Emulator) -> None:
    resp = raw_post(emu, "DescribeOfflineRecordCallback", b'{"SdkAppId": ')
    error = resp.json()["Response"]["Error"]
    assert error["Code"] == "InvalidParameter" and "JSON" in error["Message"]
    resp = raw_post(emu, "DescribeOfflineRecordCallback", b"[1]")
    assert resp.json()["Response"]["Error"]["Code"] == "InvalidParameter"


def test_oversized_body_is_refused_with_http_200(emu: Emulator) -> None:
    emu.settings.max_body_bytes = 64
    body = json.dumps({"SdkAppId": 1, "Callback": "http://x/" + "a" * 100}).encode()
    resp = raw_post(emu, "SetOfflineRecordCallback", body)
    assert resp.status_code == 200
    assert resp.json()["Response"]["Error"]["Code"] == "RequestSizeLimitExceeded"


def test_bad_language_header(emu: Emulator) -> None:
    resp = raw_post(
        emu, "DescribeOfflineRecordCallback", b'{"SdkAppId": 1}', headers={"X-TC-Language": "fr-FR"}
    )
    assert resp.json()["Response"]["Error"]["Code"] == "InvalidParameterValue"


def test_post_without_action_header_is_an_api_error(emu: Emulator) -> None:
    resp = requests.post(emu.url, json={}, timeout=5, headers={"X-TC-Version": "2019-09-19"})
    assert resp.headers["Content-Type"] == "application/json"
    assert resp.json()["Response"]["Error"]["Code"] == "MissingParameter"


def test_plain_get_is_a_hint_not_an_api_call(emu: Emulator) -> None:
    resp = requests.get(emu.url, timeout=5)
    assert resp.status_code == 404
    assert resp.json()["error"]["details"]["dashboard"] == "/ui/"
    assert emu.backend.log == []


# --- call log ---------------------------------------------------------------------------------


def test_every_call_is_logged(emu: Emulator) -> None:
    client = tiw(emu)
    created = client.call_json("CreateOfflineRecord", {"SdkAppId": APP, "RoomId": 5})
    sdk_error(lambda: tiw(emu, key="bad").call_json("CreateOfflineRecord", {"SdkAppId": APP}))
    sdk_error(lambda: client.call_json("DescribeOfflineRecord", {"SdkAppId": APP, "TaskId": "x"}))

    ok, auth_fail, not_found = emu.backend.log
    assert ok["ok"] is True and ok["code"] is None
    assert ok["action"] == "CreateOfflineRecord" and ok["method"] == "POST"
    assert ok["task_id"] == created["Response"]["TaskId"]
    assert ok["request_id"] == created["Response"]["RequestId"]
    assert ok["params"] == {"SdkAppId": APP, "RoomId": 5}
    assert ok["secret_id"] == "AKID****0001" and SKEY not in json.dumps(emu.backend.log)
    assert isinstance(ok["at"], float)
    assert auth_fail["ok"] is False and auth_fail["code"] == "AuthFailure.SignatureFailure"
    assert auth_fail["secret_id"] is None
    assert not_found["code"] == "InvalidParameter.TaskNotFound" and not_found["task_id"] == "x"
