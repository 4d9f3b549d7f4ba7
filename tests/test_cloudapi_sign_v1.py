"""The older API 3.0 signature (v1, HmacSHA1/HmacSHA256): golden vector, checks, and real calls."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests
from tencentcloud.common import credential
from tencentcloud.common.common_client import CommonClient
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile

from emulator.cloudapi import errors, sign_v1
from emulator.cloudapi.hosts import SigningLeeway
from emulator.core.config import DEMO_SECRET_ID, DEMO_SECRET_KEY

APP = 1400000001
DAY = 86400

# Tencent's published v1 example (API 3.0 "Signature" page, CVM DescribeInstances).
DOC_SID = "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE"
DOC_SKEY = "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE"
DOC_PARAMS = {
    "Action": "DescribeInstances",
    "InstanceIds.0": "ins-09dx96dg",
    "Limit": "20",
    "Nonce": "11886",
    "Offset": "0",
    "Region": "ap-guangzhou",
    "SecretId": DOC_SID,
    "Timestamp": "1465185768",
    "Version": "2017-03-12",
}
DOC_STRING = (
    "GETcvm.tencentcloudapi.com/?Action=DescribeInstances&InstanceIds.0=ins-09dx96dg&Limit=20"
    f"&Nonce=11886&Offset=0&Region=ap-guangzhou&SecretId={DOC_SID}&Timestamp=1465185768"
    "&Version=2017-03-12"
)
DOC_SIGNATURE = "EliP9YW3pW28FpsEdkXt/+WcGeI="


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


# --- pure functions ---------------------------------------------------------------------------


def test_published_example() -> None:
    text = sign_v1.string_to_sign(
        method="GET", host="cvm.tencentcloudapi.com", path="/", params=DOC_PARAMS
    )
    assert text == DOC_STRING
    assert sign_v1.signature(DOC_SKEY, text, "HmacSHA1") == DOC_SIGNATURE
    signed = {**DOC_PARAMS, "Signature": DOC_SIGNATURE}
    assert verify(signed, host="cvm.tencentcloudapi.com", method="GET", secrets={}) == DOC_SID


def verify(
    params: dict[str, str],
    *,
    host: str = "127.0.0.1:8765",
    method: str = "POST",
    secrets: dict[str, str] | None = None,
    skew: float = 0,
    lenient: bool = False,
) -> str:
    stamp = params.get("Timestamp", "")
    return sign_v1.verify_params(
        method=method,
        host=host,
        path="/",
        params=params,
        secrets={DOC_SID: DOC_SKEY, **(secrets or {})},
        now=(int(stamp) if stamp.isdigit() else 1795506933) + skew,
        leeway=SigningLeeway(lenient=lenient),
    )


def signed(
    method: str = "HmacSHA256", host: str = "127.0.0.1:8765", **extra: str
) -> dict[str, str]:
    params = {
        "Action": "DescribeOfflineRecordCallback",
        "Version": "2019-09-19",
        "SdkAppId": str(APP),
        "Nonce": "42",
        "Timestamp": "1795506933",
        "SecretId": DOC_SID,
        "SignatureMethod": method,
        **extra,
    }
    return sign_v1.sign_params(secret_key=DOC_SKEY, method="POST", host=host, params=params)


@pytest.mark.parametrize("method", ["HmacSHA1", "HmacSHA256"])
def test_both_methods_verify(method: str) -> None:
    assert verify(signed(method)) == DOC_SID


def test_absent_signature_method_means_hmac_sha1() -> None:
    params = signed("HmacSHA1")
    del params["SignatureMethod"]
    params = sign_v1.sign_params(
        secret_key=DOC_SKEY, method="POST", host="127.0.0.1:8765", params=params
    )
    assert verify(params) == DOC_SID


@pytest.mark.parametrize("name", ["SecretId", "Signature", "Timestamp", "Nonce"])
def test_missing_parameter_is_named(name: str) -> None:
    params = signed()
    del params[name]
    with pytest.raises(errors.MissingParameter, match=f"`{name}`"):
        verify(params)


def test_bad_values_and_unknown_secret_id() -> None:
    with pytest.raises(errors.InvalidParameterValue, match="SignatureMethod"):
        verify({**signed(), "SignatureMethod": "HmacMD5"})
    with pytest.raises(errors.InvalidParameterValue, match="Timestamp"):
        verify({**signed(), "Timestamp": "soon"}, skew=0)
    with pytest.raises(errors.SecretIdNotFound):
        verify(signed(SecretId="AKIDnobody"))


def test_expired_and_tampered_and_wrong_key() -> None:
    with pytest.raises(errors.SignatureExpire):
        verify(signed(), skew=301)
    assert verify(signed(), skew=300) == DOC_SID
    with pytest.raises(errors.SignatureFailure):
        verify({**signed(), "SdkAppId": "1400000002"})
    with pytest.raises(errors.SignatureFailure):
        verify(signed(), secrets={DOC_SID: "another-key"})


def test_host_without_port_only_with_leeway() -> None:
    params = signed(host="127.0.0.1")
    assert verify(params, lenient=True) == DOC_SID
    with pytest.raises(errors.SignatureFailure):
        verify(params)
    with pytest.raises(errors.SignatureFailure):  # leeway never skips the key
        verify(params, lenient=True, secrets={DOC_SID: "another-key"})


# --- through HTTP, with the pinned official Python SDK ------------------------------------------


def sdk(running: Any, sign_method: str, method: str, key: str = DEMO_SECRET_KEY) -> CommonClient:
    http = HttpProfile(
        endpoint=running.url.removeprefix("http://").rstrip("/"),
        protocol="http",
        reqMethod=method,
        reqTimeout=30,
    )
    profile = ClientProfile(httpProfile=http, signMethod=sign_method)
    cred = credential.Credential(DEMO_SECRET_ID, key)
    return CommonClient("tiw", "2019-09-19", cred, "ap-guangzhou", profile)


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("sign_method", ["HmacSHA1", "HmacSHA256"])
def test_sdk_loop_with_v1_signatures(emulator: Any, sign_method: str, method: str) -> None:
    client = sdk(emulator, sign_method, method)
    created = client.call_json(
        "CreateOfflineRecord",
        {"SdkAppId": APP, "RoomId": 8000, "MixStream": {"Enabled": True, "ModelId": 1}},
    )["Response"]
    emulator.api("POST", "/api/clock/advance", json={"seconds": DAY}).raise_for_status()
    done = client.call_json("DescribeOfflineRecord", {"SdkAppId": APP, "TaskId": created["TaskId"]})
    assert done["Response"]["Status"] == "finished"
    with pytest.raises(TencentCloudSDKException) as wrong:
        sdk(emulator, sign_method, method, key="bad").call_json(
            "DescribeOfflineRecordCallback", {"SdkAppId": APP}
        )
    assert wrong.value.code == "AuthFailure.SignatureFailure"

    logged = emulator.api("GET", "/api/cloud-calls").json()["cloud_calls"]
    assert [(c["action"], c["method"], c["code"]) for c in logged] == [
        ("CreateOfflineRecord", method, None),
        ("DescribeOfflineRecord", method, None),
        ("DescribeOfflineRecordCallback", method, "AuthFailure.SignatureFailure"),
    ]
    assert logged[0]["params"]["MixStream"] == {"Enabled": True, "ModelId": 1}
    assert logged[0]["secret_id"] == "AKID****0000"


def raw_v1(running: Any, drop: str = "", skew: int = 0, **extra: str) -> dict[str, Any]:
    """A hand-built v1 POST (as the documentation describes it) with one parameter left out."""
    host = running.url.removeprefix("http://").rstrip("/")
    params = {
        "Action": "DescribeOfflineRecordCallback",
        "Version": "2019-09-19",
        "Region": "ap-guangzhou",
        "SdkAppId": str(APP),
        "Nonce": "7",
        "Timestamp": str(int(time.time()) + skew),
        "SecretId": DEMO_SECRET_ID,
        "SignatureMethod": "HmacSHA256",
        **extra,
    }
    params.pop(drop, None)
    form = sign_v1.sign_params(secret_key=DEMO_SECRET_KEY, method="POST", host=host, params=params)
    reply = requests.post(running.url, data=form, timeout=10)
    assert reply.status_code == 200 and reply.headers["Content-Type"] == "application/json"
    return dict(reply.json()["Response"])


@pytest.mark.parametrize("name", ["Action", "Version", "Nonce", "Timestamp", "SecretId"])
def test_missing_parameter_names_the_v1_parameter(emulator: Any, name: str) -> None:
    error = raw_v1(emulator, drop=name)["Error"]
    assert error["Code"] == "MissingParameter" and f"`{name}`" in error["Message"]
    assert "X-TC-" not in error["Message"]


def test_v1_errors_match_tc3_codes_and_are_logged(emulator: Any) -> None:
    assert raw_v1(emulator, skew=-400)["Error"]["Code"] == "AuthFailure.SignatureExpire"
    assert raw_v1(emulator, Version="2020-01-01")["Error"]["Code"] == "NoSuchVersion"
    assert raw_v1(emulator, Action="Nope")["Error"]["Code"] == "InvalidAction"
    assert raw_v1(emulator, SdkAppId="abc")["Error"]["Code"] == (
        "InvalidParameter.BodyParameterTypeUnmatched"
    )
    assert "Error" not in raw_v1(emulator)
    logged = emulator.api("GET", "/api/cloud-calls").json()["cloud_calls"]
    assert [c["action"] for c in logged] == [
        "DescribeOfflineRecordCallback",
        "DescribeOfflineRecordCallback",
        "Nope",
        "DescribeOfflineRecordCallback",
        "DescribeOfflineRecordCallback",
    ]


def test_strict_v1_wants_the_region(make_emulator: Any) -> None:
    strict = make_emulator(fidelity="strict")
    error = raw_v1(strict, drop="Region")["Error"]
    assert error["Code"] == "MissingParameter" and "`Region`" in error["Message"]
    assert list(raw_v1(strict)) == ["RequestId"]


def test_get_with_an_action_parameter_is_an_api_call(emulator: Any) -> None:
    reply = requests.get(emulator.url, params={"Action": "DescribeOfflineRecord"}, timeout=10)
    assert reply.status_code == 200
    assert reply.json()["Response"]["Error"]["Code"] == "MissingParameter"
    assert emulator.api("GET", "/api/cloud-calls").json()["cloud_calls"][0]["action"] == (
        "DescribeOfflineRecord"
    )


def test_bare_requests(emulator: Any) -> None:
    assert requests.get(emulator.url, timeout=10).status_code == 404  # a hint, not a call
    reply = requests.get(emulator.url, headers={"Authorization": "x"}, timeout=10)
    assert reply.json()["Response"]["Error"]["Code"] == "MissingParameter"
    error = requests.post(emulator.url, json={}, timeout=10).json()["Response"]["Error"]
    assert error["Code"] == "MissingParameter" and "`Action`" in error["Message"]
