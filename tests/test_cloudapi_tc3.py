"""TC3-HMAC-SHA256: Tencent's published vector and requests captured from the official SDK."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from tencentcloud.common import credential
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.tiw.v20190919 import models, tiw_client

from emulator.cloudapi import errors, tc3

SID = "AKIDstubEXAMPLE"
SKEY = "stubSecretKeyEXAMPLE"

# Tencent's published TC3 example (CVM DescribeInstances, 2019-02-25).
DOC_SID = "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE"
DOC_SKEY = "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE"
DOC_TS = 1551113065
DOC_BODY = (
    b'{"Limit": 1, "Filters": [{"Values": ["\\u672a\\u547d\\u540d"], "Name": "instance-name"}]}'
)
DOC_SIGNATURE = "72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168"


@dataclass
class Captured:
    """One raw request as the SDK put it on the wire."""

    method: str
    path: str
    query: bytes
    headers: dict[str, str]
    body: bytes


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def capture() -> Iterator[tuple[str, list[Captured]]]:
    """A stdlib HTTP server on a free loopback port recording every request it gets."""
    seen: list[Captured] = []

    class Recorder(BaseHTTPRequestHandler):
        def _record(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            path, _, query = self.path.partition("?")
            headers = {k: v for k, v in self.headers.items()}
            seen.append(Captured(self.command, path, query.encode("latin-1"), headers, body))
            reply = b'{"Response": {"RequestId": "r-1"}}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        do_GET = _record
        do_POST = _record

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def sdk_client(
    endpoint: str,
    method: str = "POST",
    *,
    token: str | None = None,
    unsigned_payload: bool = False,
) -> tiw_client.TiwClient:
    profile = ClientProfile(
        httpProfile=HttpProfile(endpoint=endpoint, protocol="http", reqMethod=method, reqTimeout=5)
    )
    profile.unsignedPayload = unsigned_payload
    cred = credential.Credential(SID, SKEY, token)
    return tiw_client.TiwClient(cred, "ap-guangzhou", profile)


def create_request() -> models.CreateOfflineRecordRequest:
    req = models.CreateOfflineRecordRequest()
    req.from_json_string(
        '{"SdkAppId": 1400000001, "RoomId": 8000, "GroupId": "8000", '
        '"MixStream": {"Enabled": true, "ModelId": 1}, '
        '"Whiteboard": {"Width": 1280, "Height": 960, "InitParam": "{\\"ratio\\": \\"4:3\\"}"}}'
    )
    return req


def verify(req: Captured, *, secrets: dict[str, str] | None = None, skew: float = 0) -> str:
    return tc3.verify_request(
        method=req.method,
        query_string=req.query,
        headers=req.headers,
        body=req.body,
        secrets=secrets if secrets is not None else {SID: SKEY},
        now=int(req.headers["X-TC-Timestamp"]) + skew,
        path=req.path,
    )


# --- Tencent's published example ------------------------------------------------------------


def doc_headers(authorization: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json; charset=utf-8",
        "Host": "cvm.tencentcloudapi.com",
        "X-TC-Timestamp": str(DOC_TS),
        "Authorization": authorization,
    }


def test_sign_request_reproduces_the_published_example() -> None:
    auth = tc3.sign_request(
        secret_id=DOC_SID,
        secret_key=DOC_SKEY,
        method="POST",
        host="cvm.tencentcloudapi.com",
        content_type="application/json; charset=utf-8",
        query="",
        body=DOC_BODY,
        timestamp=DOC_TS,
        service="cvm",
    )
    assert auth == (
        f"TC3-HMAC-SHA256 Credential={DOC_SID}/2019-02-25/cvm/tc3_request, "
        f"SignedHeaders=content-type;host, Signature={DOC_SIGNATURE}"
    )


def test_verify_request_accepts_the_published_example() -> None:
    auth = (
        f"TC3-HMAC-SHA256 Credential={DOC_SID}/2019-02-25/cvm/tc3_request, "
        f"SignedHeaders=content-type;host, Signature={DOC_SIGNATURE}"
    )
    secret_id = tc3.verify_request(
        method="POST",
        query_string=b"",
        headers=doc_headers(auth),
        body=DOC_BODY,
        secrets={DOC_SID: DOC_SKEY},
        now=DOC_TS + 10,
        service="cvm",
    )
    assert secret_id == DOC_SID


# --- requests produced by the official SDK -----------------------------------------------------


def test_sdk_post_request_verifies(capture: tuple[str, list[Captured]]) -> None:
    endpoint, seen = capture
    sdk_client(endpoint).CreateOfflineRecord(create_request())
    (req,) = seen
    assert req.method == "POST" and req.headers["X-TC-Action"] == "CreateOfflineRecord"
    assert verify(req) == SID


def test_sign_request_matches_the_sdk_byte_for_byte(capture: tuple[str, list[Captured]]) -> None:
    endpoint, seen = capture
    sdk_client(endpoint).CreateOfflineRecord(create_request())
    (req,) = seen
    ours = tc3.sign_request(
        secret_id=SID,
        secret_key=SKEY,
        method="POST",
        host=req.headers["Host"],
        content_type=req.headers["Content-Type"],
        query="",
        body=req.body,
        timestamp=int(req.headers["X-TC-Timestamp"]),
    )
    assert ours == req.headers["Authorization"]


def test_sdk_get_request_verifies_over_the_raw_query(capture: tuple[str, list[Captured]]) -> None:
    endpoint, seen = capture
    sdk_client(endpoint, "GET").CreateOfflineRecord(create_request())
    (req,) = seen
    assert req.method == "GET" and req.body == b""
    assert b"MixStream.Enabled=True" in req.query
    assert req.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert verify(req) == SID
    tampered = Captured(**{**req.__dict__, "query": req.query.replace(b"8000", b"8001", 1)})
    with pytest.raises(errors.SignatureFailure):
        verify(tampered)


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_wrong_key_is_signature_failure(capture: tuple[str, list[Captured]], method: str) -> None:
    endpoint, seen = capture
    sdk_client(endpoint, method).CreateOfflineRecord(create_request())
    with pytest.raises(errors.CloudApiError) as info:
        verify(seen[0], secrets={SID: SKEY + "x"})
    assert info.value.code == "AuthFailure.SignatureFailure"


def test_tampered_body_is_signature_failure(capture: tuple[str, list[Captured]]) -> None:
    endpoint, seen = capture
    sdk_client(endpoint).CreateOfflineRecord(create_request())
    req = seen[0]
    with pytest.raises(errors.SignatureFailure):
        verify(Captured(**{**req.__dict__, "body": req.body.replace(b"8000", b"8001")}))


def test_unknown_secret_id(capture: tuple[str, list[Captured]]) -> None:
    endpoint, seen = capture
    sdk_client(endpoint).CreateOfflineRecord(create_request())
    with pytest.raises(errors.SecretIdNotFound, match=SID):
        verify(seen[0], secrets={"AKIDother": SKEY})


@pytest.mark.parametrize("skew", [301, -301, 10_000])
def test_timestamp_outside_the_window_is_expired(
    capture: tuple[str, list[Captured]], skew: int
) -> None:
    endpoint, seen = capture
    sdk_client(endpoint).CreateOfflineRecord(create_request())
    with pytest.raises(errors.SignatureExpire):
        verify(seen[0], skew=skew)
    assert verify(seen[0], skew=299) == SID


def test_unsigned_payload_and_token(capture: tuple[str, list[Captured]]) -> None:
    endpoint, seen = capture
    sdk_client(endpoint, token="tmp-token", unsigned_payload=True).CreateOfflineRecord(
        create_request()
    )
    req = seen[0]
    assert req.headers["X-TC-Content-SHA256"] == "UNSIGNED-PAYLOAD"
    assert req.headers["X-TC-Token"] == "tmp-token"
    assert verify(req) == SID
    # The body is outside the signature in this mode, by design of the protocol.
    assert verify(Captured(**{**req.__dict__, "body": b"{}"})) == SID


def signed_headers(**overrides: Any) -> dict[str, str]:
    ts = overrides.pop("timestamp", 1795506933)
    auth = tc3.sign_request(
        secret_id=SID,
        secret_key=SKEY,
        method="POST",
        host=overrides.pop("sign_host", "127.0.0.1:1"),
        content_type="application/json",
        query="",
        body=b"{}",
        timestamp=overrides.pop("sign_timestamp", ts),
        service=overrides.pop("service", "tiw"),
    )
    headers = {
        "Content-Type": "application/json",
        "Host": "127.0.0.1:1",
        "X-TC-Timestamp": str(ts),
        "Authorization": auth,
    }
    headers.update(overrides)
    return headers


def check(headers: dict[str, str], now: float = 1795506933) -> str:
    return tc3.verify_request(
        method="POST",
        query_string=b"",
        headers=headers,
        body=b"{}",
        secrets={SID: SKEY},
        now=now,
    )


def test_hand_built_request_verifies() -> None:
    assert check(signed_headers()) == SID


def test_header_values_lowercased_as_in_tencent_docs_also_verify() -> None:
    assert check(signed_headers(Host="LOCALHOST:1", sign_host="localhost:1")) == SID


def test_scope_date_must_be_the_utc_date_of_the_timestamp() -> None:
    # Signed at a timestamp on the previous UTC day, then sent with a later one.
    headers = signed_headers(sign_timestamp=1795506933 - 86400)
    with pytest.raises(errors.SignatureFailure, match="credential date"):
        check(headers)


def test_scope_service_must_be_tiw() -> None:
    with pytest.raises(errors.SignatureFailure, match="/tiw/tc3_request"):
        check(signed_headers(service="cvm"))


@pytest.mark.parametrize(
    "authorization",
    [
        "",
        "Bearer abc",
        "TC3-HMAC-SHA256 Credential=AKIDstubEXAMPLE/2026-11-24/tiw/tc3_request",
        "TC3-HMAC-SHA256 Credential=AKIDstubEXAMPLE, SignedHeaders=content-type;host, "
        "Signature=" + "0" * 64,
        "TC3-HMAC-SHA256 Credential=AKIDstubEXAMPLE/2026-11-24/tiw/tc3_request, "
        "SignedHeaders=host, Signature=" + "0" * 64,
        "TC3-HMAC-SHA256 Credential=AKIDstubEXAMPLE/2026-11-24/tiw/tc3_request, "
        "SignedHeaders=content-type;host, Signature=xyz",
        "TC3-HMAC-SHA256 garbage",
    ],
)
def test_malformed_authorization(authorization: str) -> None:
    with pytest.raises(errors.InvalidAuthorization):
        check(signed_headers(Authorization=authorization))


def test_missing_authorization_header() -> None:
    headers = signed_headers()
    del headers["Authorization"]
    with pytest.raises(errors.InvalidAuthorization, match="missing"):
        check(headers)


def test_missing_or_bad_timestamp() -> None:
    headers = signed_headers()
    del headers["X-TC-Timestamp"]
    with pytest.raises(errors.MissingParameter, match="X-TC-Timestamp"):
        check(headers)
    with pytest.raises(errors.InvalidParameterValue, match="X-TC-Timestamp"):
        check(signed_headers(**{"X-TC-Timestamp": "soon"}))


def test_wrong_signature_is_failure_not_crash() -> None:
    headers = signed_headers()
    headers["Authorization"] = headers["Authorization"][:-64] + "f" * 64
    with pytest.raises(errors.SignatureFailure):
        check(headers)


def test_header_lookup_is_case_insensitive() -> None:
    headers = {k.lower(): v for k, v in signed_headers().items()}
    assert check(headers) == SID


def test_canonical_request_shape() -> None:
    canonical = tc3.canonical_request(
        method="POST",
        path="/",
        query=b"",
        signed_headers=("content-type", "host"),
        header_values={"content-type": "application/json", "host": "127.0.0.1:18765"},
        payload_hash=hashlib.sha256(b"").hexdigest(),
    )
    assert canonical == (
        b"POST\n/\n\ncontent-type:application/json\nhost:127.0.0.1:18765\n\n"
        b"content-type;host\n" + hashlib.sha256(b"").hexdigest().encode()
    )
