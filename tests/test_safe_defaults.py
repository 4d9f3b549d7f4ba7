"""Safe defaults: loopback bind, the token on every guarded route, secrets masked, body limits.

The masking test runs a full session over real loopback HTTP (control API, cloud API with both
signature versions, dashboard and its stream, deliveries to a backend whose URL carries a
password, errors) and searches every reply and every log line for the secrets.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import reliability_log
import requests
from tc3_requests import tc3_headers

from emulator.core import redact
from emulator.core.config import Settings
from emulator.receiver import Receiver
from emulator.web.openapi import openapi_document

TOKEN = "tok-SafeDefaults-0123456789"
CALLBACK_KEY = "cbk-Secret-Key-9876543210"
SECRET_ID = "AKIDsafeDefaults0000001"
SECRET_KEY = "sk-Tencent-Secret-1357924680"
PASSWORD = "pw-In-The-Url-24680"
SECRETS = (TOKEN, CALLBACK_KEY, SECRET_KEY, PASSWORD)


def test_default_bind_is_loopback_and_other_binds_are_warned_about(tmp_path: Path) -> None:
    assert Settings.load({}, env={}).host == "127.0.0.1"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIW_EMULATOR_")}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "emulator.cli",
            "serve",
            "--db",
            ":memory:",
            "--port",
            "0",
            "--host",
            "0.0.0.0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    try:
        assert server.stdout is not None
        first = server.stdout.readline()  # the banner's first line, once it listens
    finally:
        server.terminate()  # at any point of the banner: a clean stop
        _, err = server.communicate(timeout=30)
    assert "Traceback" not in err, err
    assert "0.0.0.0" in first and "beyond loopback" in first, first
    warning = [line for line in err.splitlines() if line.startswith("warning:")]
    if warning:  # printed right after the first line, unless the SIGTERM came first
        assert "--token" in warning[0], err
    # Deterministically: the warning comes with the banner.
    from emulator.cli import commands

    class Server:
        url, host, port = "http://0.0.0.0:1", "0.0.0.0", 1

    class Emu:
        run_seed = 1
        store = types.SimpleNamespace(location=":memory:")

        def config(self) -> Any:
            return types.SimpleNamespace(clock="real", speed=1.0, callback_url=None)

    with (
        contextlib.redirect_stderr(io.StringIO()) as said,
        contextlib.redirect_stdout(io.StringIO()),
    ):
        commands._banner(Server(), Settings.load({"host": "0.0.0.0"}, env={}), Emu())
    assert said.getvalue().startswith("warning: bound to 0.0.0.0") and "--token" in said.getvalue()
    reliability_log.record(
        "safety",
        "bind address",
        observed="default 127.0.0.1; --host 0.0.0.0 says 'beyond loopback' and warns on stderr",
    )


def _guarded_requests() -> list[tuple[str, str]]:
    """Every operation in the OpenAPI document except /healthz and the cloud API, plus the UI."""
    document = openapi_document()
    out = []
    for path, item in document["paths"].items():
        if path in ("/healthz", "/"):
            continue
        for method in item:
            concrete = path.replace("{task_id}", "t" * 20).replace("{name}", "success")
            out.append(
                (method.upper(), concrete.replace("{delivery_id}", "1").replace("{rule_id}", "1"))
            )
    return [*out, ("GET", "/ui/"), ("GET", "/ui/events")]


def test_token_guards_every_control_route_and_the_dashboard(make_emulator: Any) -> None:
    running = make_emulator(token=TOKEN)
    guarded = _guarded_requests()
    assert len(guarded) >= 20
    for method, path in guarded:
        for given in (None, "Bearer wrong", f"Bearer {TOKEN}x", TOKEN):
            headers = {"Authorization": given} if given else {}
            reply = running.api(method, path, headers=headers, json={}, stream=True)
            try:
                assert reply.status_code == 401, (method, path, given, reply.status_code)
                assert TOKEN not in reply.text
            finally:
                reply.close()
        ok = running.api(
            method, path, headers={"Authorization": f"Bearer {TOKEN}"}, json={}, stream=True
        )
        ok.close()
        assert ok.status_code != 401, (method, path)
    # The token in the address works for the dashboard (a browser cannot send headers), only.
    page = running.api("GET", f"/ui/?token={TOKEN}")
    assert page.status_code == 200
    assert running.api("GET", f"/api/tasks?token={TOKEN}").status_code == 401
    assert running.api("GET", "/healthz").status_code == 200  # probes need no token
    reliability_log.record(
        "safety",
        "token on every control route, the dashboard and its stream",
        routes=len(guarded),
        observed="401 without, with a wrong or unprefixed token; only /healthz and / are open",
    )


def test_masks_never_reveal_a_secrets_length() -> None:
    for secret in ("abcdefgh", "abcdefgh" * 8, "x" * 200):
        assert redact.mask(secret) == f"{secret[:2]}****"
    assert redact.mask("short") == "****"
    masked = redact.mask_url(f"http://alice:{PASSWORD}@127.0.0.1:9/cb?x=1")
    assert masked == "http://alice:****@127.0.0.1:9/cb?x=1"
    assert redact.mask_url("http://127.0.0.1:9/cb") == "http://127.0.0.1:9/cb"
    assert redact.mask_url(None) is None


def _tc3(running: Any, action: str, params: dict[str, Any]) -> requests.Response:
    body = json.dumps(params).encode()
    now = int(running.emu.clock.wall())
    host = running.url.removeprefix("http://")
    headers = tc3_headers(
        action, body, secret_id=SECRET_ID, secret_key=SECRET_KEY, host=host, timestamp=now
    )
    return running.api("POST", "/", data=body, headers=headers)


def test_secrets_never_appear_in_replies_logs_or_the_dashboard(
    make_emulator: Any, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = receiver.url.replace("http://", f"http://alice:{PASSWORD}@")
    running = make_emulator(
        token=TOKEN,
        callback_key=CALLBACK_KEY,
        callback_url=url,
        secret_id=SECRET_ID,
        secret_key=SECRET_KEY,
    )
    auth = {"Authorization": f"Bearer {TOKEN}"}
    replies: list[requests.Response] = []
    fed: list[dict[str, Any]] = []  # what the dashboard's live stream is fed
    unsubscribe = running.emu.subscribe(fed.append)

    def call(method: str, path: str, **kw: Any) -> requests.Response:
        reply = running.api(method, path, headers={**auth, **kw.pop("headers", {})}, **kw)
        replies.append(reply)
        return reply

    call("GET", "/api/config")
    call("PATCH", "/api/config", json={"callback_url": url, "callback_key": CALLBACK_KEY})
    call("PATCH", "/api/config", json={"callback_url": f"ftp://bob:{PASSWORD}@x/"})  # refused
    task = call("POST", "/api/tasks", json={"scenario": "success", "callback_url": url}).json()
    call("POST", "/api/tasks", json={"scenario": "nope", "callback_url": url})  # refused
    call("POST", "/api/events", json={"event_type": "X", "callback_url": url})
    call("POST", "/api/clock/advance", json={"seconds": 86400})
    for path in (
        "/api/tasks",
        f"/api/tasks/{task['task_id']}",
        "/api/deliveries",
        f"/api/tasks/{task['task_id']}/events",
        "/api/cloud-calls",
        "/api/rules",
        "/ui/",
        "/api/openapi.json",
    ):
        call("GET", path)
    stream = call("GET", "/ui/events", stream=True)
    stream.close()
    replies.append(
        _tc3(running, "SetOfflineRecordCallback", {"SdkAppId": 1400000001, "Callback": url})
    )
    replies.append(_tc3(running, "DescribeOfflineRecordCallback", {"SdkAppId": 1400000001}))
    replies.append(
        _tc3(
            running,
            "SetOfflineRecordCallback",
            {"SdkAppId": 1400000001, "Callback": f"ftp://bob:{PASSWORD}@x"},
        )
    )
    call("GET", "/api/cloud-calls")
    call("GET", "/api/deliveries")
    assert receiver.received, "the backend got no callback: the run did not exercise delivery"
    unsubscribe()
    assert fed, "no attempt reached the dashboard feed"

    leaks = []
    for reply in replies:
        text = "" if reply.request.path_url == "/ui/events" else reply.text
        for secret in SECRETS:
            if secret in text or secret in json.dumps(dict(reply.headers)):
                leaks.append((reply.request.method, reply.request.path_url, secret, text[:300]))
    for delivery in fed:
        for secret in SECRETS:
            if secret in json.dumps(delivery):
                leaks.append(("dashboard feed", delivery["url"], secret, ""))
    for record in caplog.records:
        line = record.getMessage() + (record.exc_text or "")
        for secret in SECRETS:
            if secret in line:
                leaks.append(("log", record.name, secret, line[:300]))
    assert not leaks, leaks
    reliability_log.record(
        "safety",
        "secrets in a full run",
        replies=len(replies),
        observed="no CallbackKey, SecretKey, token or URL password in any reply, log line or"
        " attempt fed to the dashboard stream",
    )


def test_request_bodies_are_size_limited(make_emulator: Any) -> None:
    running = make_emulator(max_body_bytes=4096)
    big = b'{"scenario": "' + b"x" * 8192 + b'"}'
    for path in ("/api/tasks", "/api/scenarios", "/api/events"):
        reply = running.api("POST", path, data=big, headers={"Content-Type": "application/json"})
        assert reply.status_code == 413 and reply.json()["error"]["code"] == "payload_too_large"
    cloud = running.api("POST", "/", data=big, headers={"X-TC-Action": "CreateOfflineRecord"})
    assert cloud.status_code == 200
    assert cloud.json()["Response"]["Error"]["Code"] == "RequestSizeLimitExceeded"
    reliability_log.record(
        "safety",
        "request body over the limit",
        observed="413 payload_too_large on the control API; RequestSizeLimitExceeded in the"
        " cloud API envelope",
    )
