"""Property-based tests (hypothesis) of the cloud API at `/`: whatever arrives, the envelope.

Random methods, headers, query strings and bodies; calls signed correctly with TC3 or v1 and
random parameters; signed calls whose body was then cut short. Every request to `/` that is a
cloud API call (a POST, or one carrying Authorization, an X-TC-* header or an `Action`
parameter) is answered HTTP 200 with `{"Response": {"Error"?, "RequestId"}}`, as the real API
answers, never a 500, and leaves exactly one log entry with its RequestId, method and outcome.
Anything else to `/` gets the control API's 404 hint. Runs through the app's WSGI interface (the
real app and core, in memory) so that hundreds of cases stay fast; test_cloudapi_e2e.py covers
the same surface over loopback HTTP with the official SDK.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

import pytest
import reliability_log
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tc3_requests import tc3_headers

from emulator.cloudapi import sign_v1
from emulator.cloudapi.params import ACTIONS, API_VERSION
from emulator.core.service import Emulator
from emulator.web.app import create_app, get_emulator

SID = "AKIDpropertyTEST00000001"
SKEY = "propertyTestSecretKey0001"
HOST = "localhost"
EXAMPLES = 400
PROPERTIES = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
HEADER_NAMES = [
    "Authorization",
    "X-TC-Action",
    "X-TC-Version",
    "X-TC-Timestamp",
    "X-TC-Region",
    "X-TC-Language",
    "X-TC-Token",
    "Content-Type",
]
COMMON_VALUES = [*sorted(ACTIONS), API_VERSION, "ap-guangzhou", "en-US", "application/json", ""]
# Header values a client can send: printable latin-1, no CR/LF.
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=80)
json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
param_names = st.sampled_from(["SdkAppId", "RoomId", "TaskId", "GroupId", "Callback", "Whiteboard"])


@pytest.fixture(scope="module")
def app() -> Iterator[Flask]:
    app = create_app({"db": ":memory:", "clock": "manual", "secret_id": SID, "secret_key": SKEY})
    yield app
    get_emulator(app).close()


def _log_entry(emu: Emulator, request_id: str) -> dict[str, Any] | None:
    calls, _ = emu.cloud_calls(limit=20)
    found = [c for c in calls if c["request_id"] == request_id]
    assert len(found) <= 1, found
    return dict(found[0]) if found else None


def _check_envelope(app: Flask, reply: Any, method: str) -> dict[str, Any]:
    """The reply is the cloud API envelope, and the call is logged once, completely."""
    assert reply.status_code == 200, reply.data[:300]
    assert reply.headers["Content-Type"] == "application/json"
    body = json.loads(reply.data)
    assert list(body) == ["Response"], body
    response = body["Response"]
    assert isinstance(response["RequestId"], str) and response["RequestId"], body
    if "Error" in response:
        error = response["Error"]
        assert set(error) == {"Code", "Message"}, body
        assert isinstance(error["Code"], str) and error["Code"], body
        assert isinstance(error["Message"], str) and error["Message"], body
        assert error["Code"] != "InternalError", body  # a bug, not an answer
    entry = _log_entry(get_emulator(app), response["RequestId"])
    assert entry is not None, "the call was not logged"
    assert entry["method"] == method and entry["at"] is not None
    assert entry["ok"] is ("Error" not in response), entry
    if "Error" in response:
        assert entry["code"] == response["Error"]["Code"] and entry["message"], entry
    return dict(response)


@PROPERTIES
@given(
    method=st.sampled_from(["GET", "POST"]),
    headers=st.dictionaries(
        st.sampled_from(HEADER_NAMES), st.sampled_from(COMMON_VALUES) | header_text, max_size=6
    ),
    query=st.lists(
        st.tuples(
            st.sampled_from(["Action", "Version", "SdkAppId", "x"]) | st.text(max_size=8),
            st.text(max_size=20),
        ),
        max_size=4,
    ),
    body=st.binary(max_size=512) | json_values.map(lambda v: json.dumps(v).encode()),
)
def test_any_request_to_root_gets_the_envelope_or_the_hint(
    app: Flask, method: str, headers: dict[str, str], query: list[tuple[str, str]], body: bytes
) -> None:
    client: FlaskClient = app.test_client()
    query_string = urlencode(query)
    reply = client.open("/", method=method, headers=headers, query_string=query_string, data=body)
    names = {n.lower() for n in headers}
    is_call = (
        method == "POST"
        or "authorization" in names
        or any(n.startswith("x-tc-") for n in names)
        or any(k == "Action" for k, _ in query)
    )
    if is_call:
        _check_envelope(app, reply, method)
    else:
        assert reply.status_code == 404 and reply.json["error"]["code"] == "not_found"


def _tc3_call(
    client: FlaskClient, emu: Emulator, action: str, params: dict[str, Any], *, cut: int | None
) -> Any:
    body = json.dumps(params).encode()
    now = int(emu.clock.wall())
    headers = {
        **tc3_headers(action, body, secret_id=SID, secret_key=SKEY, host=HOST, timestamp=now),
        "Host": HOST,
    }
    return client.post("/", headers=headers, data=body if cut is None else body[:cut])


@PROPERTIES
@given(
    action=st.sampled_from(sorted(ACTIONS)),
    params=st.dictionaries(param_names, json_values, max_size=5),
    cut=st.none() | st.integers(0, 200),
)
def test_tc3_signed_calls_with_any_params_or_a_cut_body(
    app: Flask, action: str, params: dict[str, Any], cut: int | None
) -> None:
    reply = _tc3_call(app.test_client(), get_emulator(app), action, params, cut=cut)
    response = _check_envelope(app, reply, "POST")
    full = json.dumps(params).encode()
    if cut is not None and cut < len(full):
        assert response["Error"]["Code"].startswith("AuthFailure"), response  # body changed


@PROPERTIES
@given(
    method=st.sampled_from(["GET", "POST"]),
    action=st.sampled_from(sorted(ACTIONS)),
    params=st.dictionaries(param_names | st.text(max_size=10), st.text(max_size=30), max_size=5),
    signature_method=st.sampled_from(["HmacSHA1", "HmacSHA256"]),
)
def test_v1_signed_calls_with_any_params(
    app: Flask, method: str, action: str, params: dict[str, str], signature_method: str
) -> None:
    emu = get_emulator(app)
    common = {
        "Action": action,
        "Version": API_VERSION,
        "Region": "ap-guangzhou",
        "Timestamp": str(int(emu.clock.wall())),
        "Nonce": "4242",
        "SecretId": SID,
        "SignatureMethod": signature_method,
    }
    signed = sign_v1.sign_params(
        secret_key=SKEY, method=method, host=HOST, params={**params, **common}
    )
    encoded = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in signed.items())
    client = app.test_client()
    if method == "GET":
        reply = client.get("/", query_string=encoded, headers={"Host": HOST})
    else:
        reply = client.post(
            "/",
            data=encoded,
            headers={"Host": HOST, "Content-Type": "application/x-www-form-urlencoded"},
        )
    _check_envelope(app, reply, method)


def test_properties_are_recorded() -> None:
    reliability_log.record(
        "properties",
        "cloud API at /",
        cases=f"{EXAMPLES} random requests (method, headers, query, bytes or JSON body),"
        f" {EXAMPLES} TC3-signed calls with random params or a cut body,"
        f" {EXAMPLES} v1-signed calls (GET and POST, HmacSHA1/256)",
        observed="HTTP 200 envelope {Response: {Error?, RequestId}} for every call, never"
        " InternalError; one complete log entry per call; the 404 hint otherwise",
        seed="derandomized",
    )
