"""The HTTP server: start/stop, TLS on the plain port, body limits, chunked, keep-alive,
pipelining, HTTP/1.0, streams."""

from __future__ import annotations

import email.utils
import http.client
import json
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from flask import Flask, Response, request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from emulator.web import connection, wsgi_bridge
from emulator.web.app import create_app, get_emulator
from emulator.web.server import AppServer


def _refuses(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_start_serve_stop() -> None:
    app = create_app({"db": ":memory:"})
    server = AppServer(app).start()
    try:
        assert requests.get(server.url + "/healthz", timeout=5).json() == {"status": "ok"}
    finally:
        server.stop()
        get_emulator(app).close()
    assert _refuses(server.port)


def test_stop_is_safe_twice_and_without_start() -> None:
    app = create_app({"db": ":memory:"})
    try:
        server = AppServer(app).start()
        assert requests.get(server.url + "/healthz", timeout=5).status_code == 200
        server.stop()
        server.stop()
        assert server._thread is not None and not server._thread.is_alive()
        assert _refuses(server.port)
        never_started = AppServer(app)
        never_started.stop()
        assert _refuses(never_started.port)
    finally:
        get_emulator(app).close()


@pytest.fixture
def served() -> Iterator[AppServer]:
    app = create_app({"db": ":memory:", "clock": "manual", "max_body_bytes": 1000})
    server = AppServer(app).start()
    yield server
    server.stop()
    get_emulator(app).close()


def test_a_tls_handshake_on_the_plain_port_fails_at_once(served: AppServer) -> None:
    """A client speaking https:// to this http:// port gets an error now, not at its timeout."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    started = time.monotonic()
    with (
        socket.create_connection(("127.0.0.1", served.port), timeout=10) as raw,
        pytest.raises((ssl.SSLError, ConnectionError)),
    ):
        context.wrap_socket(raw, server_hostname="localhost")
    assert time.monotonic() - started < 2.0


def test_an_https_url_for_the_plain_port_fails_fast_in_requests(served: AppServer) -> None:
    started = time.monotonic()
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"https://127.0.0.1:{served.port}/healthz", verify=False, timeout=10)
    assert time.monotonic() - started < 2.0


def test_a_tls_client_hello_is_answered_in_plain_http_and_closed(served: AppServer) -> None:
    hello = bytes.fromhex("160301002a0100002603035f") + b"\x00" * 40  # a ClientHello's start
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as conn:
        conn.sendall(hello)
        reply = _read_until_closed(conn)
    assert reply.startswith(b"HTTP/1.1 400 ")
    assert b"plain HTTP" in reply


def test_the_next_request_after_tls_is_still_served(served: AppServer) -> None:
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as conn:
        conn.sendall(b"\x16\x03\x01\x00\x05hello")
        _read_until_closed(conn)
    assert requests.get(served.url + "/healthz", timeout=5).json() == {"status": "ok"}


def test_a_body_far_over_the_limit_is_refused_by_the_server_in_json(served: AppServer) -> None:
    """Declared too large: answered 413 at once, before the body is read."""
    head = (
        b"POST /api/tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100000000\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as conn:
        conn.sendall(head)
        reply = _read_until_closed(conn)
    status, _, body = reply.partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 413 ")
    assert json.loads(body)["error"]["code"] == "payload_too_large"


def test_a_body_just_over_the_limit_gets_the_apps_413(served: AppServer) -> None:
    r = requests.post(served.url + "/api/tasks", data=b"{" + b" " * 2000 + b"}", timeout=5)
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "payload_too_large"


def test_the_app_gets_the_body_as_read_and_in_wsgi_input_too() -> None:
    """The server hands the whole body over under BODY_KEY (the control API takes it from
    there, not through werkzeug's stream); wsgi.input has the same bytes for everyone else."""
    app = Flask(__name__)

    @app.post("/echo")
    def echo() -> Response:
        given = request.environ.get(wsgi_bridge.BODY_KEY)
        return Response(json.dumps({"given": repr(given), "stream": repr(request.get_data())}))

    server = AppServer(app).start()
    try:
        body = '{"x": "\u4e2d"}'.encode() * 3
        for sent in (body, iter([body[:5], body[5:]])):  # length-delimited, then chunked
            seen = requests.post(f"{server.url}/echo", data=sent, timeout=5).json()
            assert seen == {"given": repr(body), "stream": repr(body)}
    finally:
        server.stop()


@pytest.mark.parametrize("lane_nice", [0, 10])
def test_each_app_thread_pushes_the_apps_context_once_not_per_request(lane_nice: int) -> None:
    """Flask reuses an app context of the same app that is already pushed: each thread that
    runs the app keeps one for its life, and a request pushes only its request context."""
    import threading

    from flask import appcontext_pushed, current_app

    app = Flask(__name__)
    pushed: list[int] = []
    ran: set[int] = set()

    @app.get("/who")
    def who() -> Response:
        ran.add(threading.get_ident())
        return Response(current_app.name)

    def count(sender: Flask, **_: Any) -> None:
        pushed.append(threading.get_ident())

    appcontext_pushed.connect(count, app)
    server = AppServer(app, lane_nice=lane_nice).start()
    try:
        with requests.Session() as session:
            for _ in range(40):
                assert session.get(f"{server.url}/who", timeout=5).text == app.name
    finally:
        server.stop()
    assert ran and set(pushed) >= ran  # every thread that served has its context
    assert len(pushed) == len(set(pushed)) < 40  # once a thread, not once a request


def test_request_body_takes_the_servers_bytes_else_the_stream_and_413_over_the_limit() -> None:
    def request(given: bytes | None, limit: int | None) -> Request:
        environ = EnvironBuilder(method="POST", data=b"from the stream").get_environ()
        if given is not None:
            environ[wsgi_bridge.BODY_KEY] = given
        made = Request(environ)
        made.max_content_length = limit
        return made

    assert wsgi_bridge.request_body(request(None, 100)) == b"from the stream"
    assert wsgi_bridge.request_body(request(b"12345", 5)) == b"12345"
    assert wsgi_bridge.request_body(request(b"12345", None)) == b"12345"
    for given in (b"123456", None):  # over the limit, from the server or from the stream
        with pytest.raises(RequestEntityTooLarge):
            wsgi_bridge.request_body(request(given, 5))


def test_chunked_request_bodies_are_read(served: AppServer) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"scenario": '
        yield b'"success"}'

    r = requests.post(
        served.url + "/api/tasks",
        data=chunks(),
        headers={"Content-Type": "application/json"},
        timeout=5,
    )
    assert r.status_code == 201, r.text
    assert r.json()["scenario"] == "success"


def test_a_chunked_body_over_the_limit_is_413(served: AppServer) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(200):
            yield b" " * 1000

    r = requests.post(served.url + "/api/tasks", data=chunks(), timeout=5)
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "payload_too_large"


def test_a_malformed_request_gets_a_json_400_from_the_server(served: AppServer) -> None:
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as conn:
        conn.sendall(b"POST /api/tasks HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n")
        reply = _read_until_closed(conn)
    status, _, body = reply.partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 400 ")
    assert b"\r\nServer: tiw-emulator" in status
    assert json.loads(body)["error"]["code"] == "bad_request"


def test_keep_alive_serves_many_requests_on_one_connection(served: AppServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=5)
    try:
        for _ in range(3):
            conn.request("GET", "/healthz")
            response = conn.getresponse()
            assert response.status == 200 and json.loads(response.read()) == {"status": "ok"}
        assert conn.sock is not None  # still the first connection: never closed in between
    finally:
        conn.close()


def test_more_than_a_hundred_open_connections_do_not_stall_the_next_one(
    served: AppServer,
) -> None:
    """waitress's default limit (100) left the 101st client waiting ~30 s for a cleanup pass."""
    held = []
    try:
        for _ in range(150):
            conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=10)
            conn.request("GET", "/healthz")
            assert conn.getresponse().read()
            held.append(conn)  # kept open and idle, like a client's keep-alive pool
        started = time.monotonic()
        assert requests.get(served.url + "/healthz", timeout=10).status_code == 200
        assert time.monotonic() - started < 2.0
    finally:
        for conn in held:
            conn.close()


def _read_until_closed(conn: socket.socket) -> bytes:
    data = b""
    while chunk := conn.recv(65536):
        data += chunk
    return data


def test_an_interrupt_during_start_up_stops_cleanly(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """SIGTERM (raised as KeyboardInterrupt by `serve`) can land inside the serving task itself:
    stop() must still finish, leaving no 'Task exception was never retrieved' behind."""
    import asyncio.base_events
    import gc

    async def interrupted_listen(self: Any, *args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    app = create_app({"db": ":memory:"})
    server = AppServer(app)
    try:
        monkeypatch.setattr(asyncio.base_events.BaseEventLoop, "create_server", interrupted_listen)
        with pytest.raises(KeyboardInterrupt):
            server.serve_forever()
        server.stop()
        gc.collect()
        assert _refuses(server.port)
        assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]
    finally:
        get_emulator(app).close()


def test_expect_100_continue_is_answered_before_the_body(served: AppServer) -> None:
    """curl sends `Expect: 100-continue` for bodies over 1 KiB and waits for the interim reply."""
    url = "http://127.0.0.1:9/" + "x" * 800  # the fixture's body limit is 1,000 bytes
    body = json.dumps({"scenario": "success", "callback_url": url}).encode()
    head = (
        b"POST /api/tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Expect: 100-continue\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
    )
    with socket.create_connection(("127.0.0.1", served.port), timeout=5) as conn:
        conn.sendall(head)
        interim = conn.recv(65536)  # times out (fails) if the server waits for the body
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        conn.sendall(body)
        reply = interim[len(b"HTTP/1.1 100 Continue\r\n\r\n") :] + _read_until_closed(conn)
    assert reply.startswith(b"HTTP/1.1 201 "), reply[:200]


def test_long_headers_are_read_and_too_long_ones_refused_in_json(served: AppServer) -> None:
    """A 30 KB header line is served (aiohttp's default limit was 8 KB); past 64 KB the JSON 400
    does not echo the line (it may carry a token)."""
    ok = requests.get(served.url + "/healthz", headers={"X-Long": "y" * 30_000}, timeout=5)
    assert ok.status_code == 200
    refused = requests.get(served.url + "/healthz", headers={"X-Long": "s" * 70_000}, timeout=5)
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "bad_request"
    assert "sss" not in refused.text


INTERRUPTED_REQUEST = """
import contextlib, sys, threading
import requests
from emulator.web.app import create_app, get_emulator
from emulator.web.connection import HttpConnection
from emulator.web.server import AppServer

app = create_app({"db": ":memory:"})
server = AppServer(app)

def interrupted(self, *args):
    raise KeyboardInterrupt  # what serve's SIGTERM handler raises, here inside a request's callback

setattr(HttpConnection, sys.argv[1], interrupted)
def client():
    with contextlib.suppress(requests.RequestException):
        requests.get(server.url + "/healthz", timeout=5)
threading.Thread(target=client).start()
try:
    server.serve_forever()
except KeyboardInterrupt:
    pass
server.stop()  # the shutdown meets the interrupt again in that connection's task
get_emulator(app).close()
print("stopped")
"""


@pytest.mark.parametrize("callback", ["data_received", "on_message_complete"])
def test_an_interrupt_inside_a_request_still_stops_cleanly(callback: str) -> None:
    """SIGTERM can land while a connection's callback runs (the parser's callbacks too, whose
    errors httptools catches): it stops the server, it is not taken for a bad request, and
    stop() still finishes (in a process of its own: an interrupt raised this way would unsettle
    the test runner's)."""
    done = subprocess.run(
        [sys.executable, "-c", INTERRUPTED_REQUEST, callback],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "stopped"
    assert "Traceback" not in done.stderr, done.stderr


# -- HTTP/1.1 edges the server handles itself (tests of the httptools protocol) --


def _streaming_app() -> Flask:
    """A bare app: a stream without a length (with an empty piece inside), a 204, an echo."""
    app = Flask(__name__)

    @app.get("/stream")
    def stream() -> Response:
        return Response(iter([b"one", b"", b"three"]), mimetype="text/plain")

    @app.delete("/nothing")
    def nothing() -> tuple[str, int]:
        return "", 204

    @app.post("/echo")
    def echo() -> Response:
        return Response(request.get_data(), mimetype="application/octet-stream")

    return app


@pytest.fixture
def bare() -> Iterator[AppServer]:
    server = AppServer(_streaming_app()).start()
    yield server
    server.stop()


def _read_response(conn: socket.socket, buffered: bytearray) -> tuple[bytes, bytes]:
    """One length-delimited response off a connection: (head, body); the rest stays buffered."""
    while b"\r\n\r\n" not in buffered:
        chunk = conn.recv(65536)
        assert chunk, f"closed before a whole head: {bytes(buffered)!r}"
        buffered += chunk
    head, _, _ = bytes(buffered).partition(b"\r\n\r\n")
    del buffered[: len(head) + 4]
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(buffered) < length:
        chunk = conn.recv(65536)
        assert chunk, "closed before the whole body"
        buffered += chunk
    body = bytes(buffered[:length])
    del buffered[:length]
    return head, body


def test_pipelined_requests_are_answered_in_order(served: AppServer) -> None:
    requests_sent = (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /no/such/route HTTP/1.1\r\nHost: x\r\n\r\n"
        b"POST /api/tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b'Content-Length: 24\r\n\r\n{"scenario": "success"}\n'
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    buffered = bytearray()
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as conn:
        conn.sendall(requests_sent)  # all four before any answer
        answers = [_read_response(conn, buffered) for _ in range(4)]
    statuses = [head.split(b" ", 2)[1] for head, _ in answers]
    assert statuses == [b"200", b"404", b"201", b"200"]
    assert json.loads(answers[2][1])["scenario"] == "success"
    assert not buffered


def test_http_1_0_is_closed_after_its_answer_unless_it_asks_for_keep_alive(
    served: AppServer,
) -> None:
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as conn:
        conn.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
        reply = _read_until_closed(conn)
    assert reply.startswith(b"HTTP/1.1 200 ")
    assert b"\r\nConnection: close\r\n" in reply
    assert json.loads(reply.partition(b"\r\n\r\n")[2]) == {"status": "ok"}

    buffered = bytearray()
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as conn:
        for _ in range(2):  # the same connection twice
            conn.sendall(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            head, body = _read_response(conn, buffered)
            assert b"\r\nConnection: keep-alive" in head
            assert json.loads(body) == {"status": "ok"}


def test_a_response_without_a_length_is_sent_in_chunks(bare: AppServer) -> None:
    with socket.create_connection(("127.0.0.1", bare.port), timeout=10) as conn:
        conn.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        head, _, body = _read_until_closed(conn).partition(b"\r\n\r\n")
    assert b"\r\nTransfer-Encoding: chunked" in head
    assert b"Content-Length" not in head
    # the empty piece is skipped: an empty chunk would end the body
    assert body == b"3\r\none\r\n5\r\nthree\r\n0\r\n\r\n"
    # HTTP/1.0 has no chunks: the body runs to the close
    with socket.create_connection(("127.0.0.1", bare.port), timeout=10) as conn:
        conn.sendall(b"GET /stream HTTP/1.0\r\n\r\n")
        head, _, body = _read_until_closed(conn).partition(b"\r\n\r\n")
    assert b"Transfer-Encoding" not in head
    assert body == b"onethree"
    assert requests.get(bare.url + "/stream", timeout=5).text == "onethree"


def test_answers_carry_date_and_server_and_a_204_no_body(bare: AppServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", bare.port, timeout=5)
    try:
        conn.request("DELETE", "/nothing")
        response = conn.getresponse()
        assert response.status == 204 and response.read() == b""
        assert response.getheader("Server") == "tiw-emulator"
        assert response.getheader("Content-Length") is None
        sent = email.utils.parsedate_to_datetime(response.getheader("Date", ""))
        assert abs((sent - datetime.now(UTC)).total_seconds()) < 60
        conn.request("POST", "/echo", body=b"\x1f\x8b gzip-looking bytes, passed as sent")
        echoed = conn.getresponse()
        assert echoed.read() == b"\x1f\x8b gzip-looking bytes, passed as sent"
    finally:
        conn.close()


def test_head_gets_the_length_and_no_body(served: AppServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=5)
    try:
        conn.request("GET", "/healthz")
        got = conn.getresponse()
        body = got.read()
        conn.request("HEAD", "/healthz")
        head = conn.getresponse()
        assert head.status == 200 and head.read() == b""
        assert head.getheader("Content-Length") == str(len(body))
        conn.request("GET", "/healthz")  # the connection is still in step
        assert json.loads(conn.getresponse().read()) == {"status": "ok"}
    finally:
        conn.close()


def test_a_long_signed_query_is_served(served: AppServer) -> None:
    r = requests.get(served.url + "/healthz", params={"Signature": "s" * 30_000}, timeout=5)
    assert r.status_code == 200


def test_the_rest_of_a_refused_body_is_drained_so_the_client_reads_the_413(
    served: AppServer,
) -> None:
    """The client goes on sending after the early 413: it still reads the answer, not a reset."""
    head = b"POST /api/tasks HTTP/1.1\r\nHost: x\r\nContent-Length: 50000000\r\n\r\n"
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as conn:
        conn.sendall(head + b" " * 2_000_000)
        reply = _read_until_closed(conn)
    assert reply.startswith(b"HTTP/1.1 413 ")
    assert json.loads(reply.partition(b"\r\n\r\n")[2])["error"]["code"] == "payload_too_large"


def test_an_idle_keep_alive_connection_is_closed(
    monkeypatch: pytest.MonkeyPatch, served: AppServer
) -> None:
    monkeypatch.setattr(connection, "KEEPALIVE_S", 0.2)
    buffered = bytearray()
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as conn:
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        _read_response(conn, buffered)
        assert conn.recv(1) == b""  # closed by the server (a timeout here would raise)
