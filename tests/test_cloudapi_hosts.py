"""What a TC3 signature may differ in at a non-Tencent host (default fidelity) and nowhere else."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import requests

from emulator.cloudapi import errors, tc3
from emulator.cloudapi.hosts import SigningLeeway, host_name, is_tencent_host, without_port
from emulator.core.config import DEMO_SECRET_ID, DEMO_SECRET_KEY

APP = 1400000001


@pytest.mark.parametrize(
    ("host", "name", "bare", "tencent"),
    [
        ("127.0.0.1:8765", "127.0.0.1", "127.0.0.1", False),
        ("localhost", "localhost", "localhost", False),
        ("[::1]:8765", "::1", "[::1]", False),
        ("http://127.0.0.1:8765", "127.0.0.1", "http://127.0.0.1", False),
        ("tiw.tencentcloudapi.com", "tiw.tencentcloudapi.com", "tiw.tencentcloudapi.com", True),
        ("TIW.tencentcloudapi.com:443", "tiw.tencentcloudapi.com", "TIW.tencentcloudapi.com", True),
        ("tencentcloudapi.com.evil.test", "tencentcloudapi.com.evil.test", None, False),
        ("emulator.internal:80", "emulator.internal", "emulator.internal", False),
    ],
)
def test_host_names(host: str, name: str, bare: str | None, tencent: bool) -> None:
    assert host_name(host) == name
    assert without_port(host) == (bare if bare is not None else host)
    assert is_tencent_host(host) is tencent


def test_leeway_only_in_default_fidelity_away_from_tencent() -> None:
    assert SigningLeeway.for_request("127.0.0.1:8765", "default").lenient
    assert SigningLeeway.for_request("localhost:8765", "default").lenient
    assert not SigningLeeway.for_request("127.0.0.1:8765", "strict").lenient
    assert not SigningLeeway.for_request("tiw.tencentcloudapi.com:8765", "default").lenient
    lenient = SigningLeeway(lenient=True)
    assert lenient.signed_hosts("127.0.0.1:8765") == ("127.0.0.1:8765", "127.0.0.1")
    assert lenient.accepts_service("127") and not lenient.accepts_service("")
    assert SigningLeeway(lenient=False).signed_hosts("127.0.0.1:8765") == ("127.0.0.1:8765",)
    assert not SigningLeeway(lenient=False).accepts_service("127")


def node_style(host: str, *, key: str = DEMO_SECRET_KEY, skew: int = 0) -> dict[str, str]:
    """Headers as the Node.js (and Java/Go/PHP) SDKs send them for endpoint `host`: the
    scope's service is the endpoint's first label and the signed host has no port."""
    ts = int(time.time()) + skew
    auth = tc3.sign_request(
        secret_id=DEMO_SECRET_ID,
        secret_key=key,
        method="POST",
        host=without_port(host),
        content_type="application/json",
        query="",
        body=BODY,
        timestamp=ts,
        service=host.split(".")[0],
    )
    return {
        "Host": host,
        "Content-Type": "application/json",
        "X-TC-Action": "DescribeOfflineRecordCallback",
        "X-TC-Version": "2019-09-19",
        "X-TC-Timestamp": str(ts),
        "X-TC-Region": "ap-guangzhou",
        "Authorization": auth,
    }


BODY = json.dumps({"SdkAppId": APP}).encode()


def post(running: Any, headers: dict[str, str]) -> dict[str, Any]:
    reply = requests.post(running.url, data=BODY, headers=headers, timeout=10)
    assert reply.status_code == 200
    return dict(reply.json()["Response"])


def test_default_accepts_what_sdks_sign_at_an_ip(make_emulator: Any) -> None:
    running = make_emulator()
    host = running.url.removeprefix("http://").rstrip("/")
    assert "Error" not in post(running, node_style(host))
    # Everything else is as strict as ever.
    assert post(running, node_style(host, key="bad"))["Error"]["Code"] == (
        "AuthFailure.SignatureFailure"
    )
    assert post(running, node_style(host, skew=-301))["Error"]["Code"] == (
        "AuthFailure.SignatureExpire"
    )
    tampered = node_style(host)
    tampered["Content-Type"] = "application/json; charset=utf-8"
    assert post(running, tampered)["Error"]["Code"] == "AuthFailure.SignatureFailure"


def test_localhost_and_other_names_get_the_leeway_too(make_emulator: Any) -> None:
    running = make_emulator()
    port = running.url.rstrip("/").rsplit(":", 1)[1]
    for name in ("localhost", "emulator.internal"):
        assert "Error" not in post(running, node_style(f"{name}:{port}"))


def test_strict_and_tencent_hosts_check_exactly(make_emulator: Any) -> None:
    strict = make_emulator(fidelity="strict")
    host = strict.url.removeprefix("http://").rstrip("/")
    error = post(strict, node_style(host))["Error"]
    assert (
        error["Code"] == "AuthFailure.SignatureFailure" and "/tiw/tc3_request" in error["Message"]
    )

    default = make_emulator()
    port = default.url.rstrip("/").rsplit(":", 1)[1]
    # At Tencent's name the SDKs sign `tiw` and no port is involved: a port-less signature
    # for a Host with a port is refused there.
    tencent = node_style(f"tiw.tencentcloudapi.com:{port}")
    assert post(default, tencent)["Error"]["Code"] == "AuthFailure.SignatureFailure"
    with pytest.raises(errors.SignatureFailure):
        tc3.verify_request(
            method="POST",
            query_string=b"",
            headers=tencent,
            body=BODY,
            secrets={DEMO_SECRET_ID: DEMO_SECRET_KEY},
            now=time.time(),
            leeway=SigningLeeway.for_request(tencent["Host"], "default"),
        )
