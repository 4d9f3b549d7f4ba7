"""Calling the WSGI app (Flask) from the HTTP/1.1 server: environ in, response bytes out.

The server (`server.py`) parses requests on an event loop and builds each environ as the parser's
callbacks arrive; the app runs on a thread pool, because Flask views block (an ad-hoc event waits
for its delivery). A response with a Content-Length is rendered whole, head and body, in the app's
thread, so the loop writes it in one call; one without (the dashboard's event stream) is pulled
chunk by chunk from the app's iterator on the pool and written as it comes (chunked transfer
coding), so a stream never blocks the loop.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from email.utils import formatdate
from functools import lru_cache
from http import HTTPStatus
from typing import Any

from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wrappers import Request

log = logging.getLogger("tiw_emulator.server")

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
# environ key: a callable that is True once the client has gone (the dashboard's stream polls it).
DISCONNECTED_KEY = "tiw_emulator.client_disconnected"
# environ key: time.monotonic() when the server had read the request's head (the control API
# creates a task as of then, not as of when a busy server got round to it).
RECEIVED_KEY = "tiw_emulator.received"
# environ key: the request's whole body as the server read it (bytes), so the app can take it as
# is instead of through werkzeug's stream wrappers (~17 µs a request); wsgi.input has it too.
BODY_KEY = "tiw_emulator.body"
# environ key: set by the server, a callable the app may give a concurrent.futures.Future: the
# reply is then held until the future settles, and when it settles with an exception the request
# is run again without this key (the app then does the work the slow way, and answers from that).
# The control API and the cloud API give it the commit of a task creation (Emulator.create_task's
# `hold`).
HOLD_KEY = "tiw_emulator.hold"
# app.config key: a callable (environ) -> bool, True for the requests that never wait on I/O in
# the app (a task creation whose commit the server holds): the server runs them one at a time on
# a thread of their own (server.py says why). It sees the request's head only, not its body.
LANE_CONFIG = "TIW_EMULATOR_LANE"
SERVER_NAME = "tiw-emulator"  # the Server header: no version, nothing about Python
# Hop-by-hop headers are the server's to write (PEP 3333 forbids them to apps); the body's
# length is measured here, not taken from the app.
_SERVER_WRITES = frozenset({"content-length", "connection", "transfer-encoding", "keep-alive"})
_END_OF_CHUNKS = b"0\r\n\r\n"


@lru_cache(maxsize=2)
def _http_date(second: int) -> str:
    return formatdate(second, usegmt=True)


def http_date() -> str:
    """The Date header's value, formatted once a second."""
    return _http_date(int(time.time()))


def waited_s(environ: dict[str, Any]) -> float:
    """How long a request waited in the server before the app got it, from RECEIVED_KEY (0 when
    the server does not say: the Flask test client, another WSGI server)."""
    received = environ.get(RECEIVED_KEY)
    return max(0.0, time.monotonic() - received) if isinstance(received, float) else 0.0


class Held:
    """HOLD_KEY's callable: takes the one future a reply waits for."""

    __slots__ = ("future",)

    def __init__(self) -> None:
        self.future: Future[None] | None = None

    def __call__(self, future: Future[None]) -> None:
        if self.future is not None:
            raise RuntimeError("a reply can wait for one future only")
        self.future = future


def hold_of(environ: dict[str, Any]) -> Callable[[Future[None]], None] | None:
    """The server's HOLD_KEY callable, or None (the Flask test client, another WSGI server, or
    the run again after a held reply's future failed)."""
    hold = environ.get(HOLD_KEY)
    return hold if callable(hold) else None


def request_body(request: Request) -> bytes:
    """The request's whole body: as the server read it when it says (BODY_KEY), else through
    werkzeug's stream (the Flask test client, another WSGI server); werkzeug's 413 over the
    request's limit either way."""
    body = request.environ.get(BODY_KEY)
    if not isinstance(body, bytes):
        return request.get_data(cache=True)
    limit = request.max_content_length
    if limit is not None and len(body) > limit:
        raise RequestEntityTooLarge()
    return body


def _status_line(code: int) -> str:
    try:
        return f"{code} {HTTPStatus(code).phrase}"
    except ValueError:
        return f"{code} Unknown"


def json_error(status: int, code: str, message: str) -> bytes:
    """A whole response, closing the connection, in the control API's error shape: what the
    server refuses before the app runs."""
    body = json.dumps({"error": {"code": code, "message": message, "details": {}}}).encode()
    head = (
        f"HTTP/1.1 {_status_line(status)}\r\nServer: {SERVER_NAME}\r\nDate: {http_date()}\r\n"
        "Content-Type: application/json; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


class AppResult:
    """What the app answered: status, headers, and either the whole body or its iterator."""

    def __init__(self) -> None:
        self.status = "500 Internal Server Error"
        self.headers: list[tuple[str, str]] = []
        self.body = b""
        self.chunks: Iterator[bytes] | None = None
        self.closer: Callable[[], None] | None = None

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], None]:
        self.status, self.headers = status, headers
        return self._write

    def _write(self, data: bytes) -> None:  # the legacy write() callable: rare, kept simple
        self.body += data

    def has_length(self) -> bool:
        return any(name.lower() == "content-length" for name, _ in self.headers)


def _no_body(status: str) -> bool:
    return status[:1] == "1" or status[:3] in ("204", "304")


def call_app(app: WsgiApp, environ: dict[str, Any]) -> AppResult:
    """Run the app (in a pool thread); a sized body is joined here, a stream is left to pull."""
    result = AppResult()
    try:
        iterable = app(environ, result.start_response)
    except Exception:
        log.exception("the WSGI app raised")
        return AppResult()
    close = getattr(iterable, "close", None)
    if result.has_length() or environ["REQUEST_METHOD"] == "HEAD" or _no_body(result.status):
        try:
            result.body += b"".join(iterable)
        finally:
            if close is not None:
                close()
        return result
    result.chunks = iter(iterable)
    # start_response may come with the first chunk (a generator app): pull it here.
    result.body += next(result.chunks, b"")
    result.closer = close
    return result


class Reply:
    """A rendered answer: bytes to write now, and for a stream the iterator that follows."""

    __slots__ = ("chunked", "chunks", "close", "closer", "data")

    def __init__(self, data: bytes, close: bool) -> None:
        self.data = data
        self.close = close  # close the connection once written
        self.chunks: Iterator[bytes] | None = None
        self.closer: Callable[[], None] | None = None
        self.chunked = False  # frame each chunk (HTTP/1.1); else the stream ends at close

    def frame(self, chunk: bytes) -> bytes:
        return b"%x\r\n%b\r\n" % (len(chunk), chunk) if self.chunked else chunk

    def end(self) -> bytes:
        return _END_OF_CHUNKS if self.chunked else b""


def respond(app: WsgiApp, environ: dict[str, Any], keep_alive: bool) -> Reply:
    """Run the app and render its answer (in a pool thread): head and body in one piece."""
    try:
        return _render(call_app(app, environ), environ, keep_alive)
    except Exception:  # a header the app should not have sent (not Latin-1, say)
        log.exception("could not render the app's response")
        return _render(AppResult(), environ, False)


def _render(result: AppResult, environ: dict[str, Any], keep_alive: bool) -> Reply:
    http10 = environ["SERVER_PROTOCOL"] == "HTTP/1.0"
    streaming = result.chunks is not None
    close = not keep_alive or (streaming and http10)  # HTTP/1.0 has no chunks: EOF ends it
    lines = ["HTTP/1.1 ", result.status, "\r\nServer: ", SERVER_NAME, "\r\nDate: ", http_date()]
    declared = None
    for name, value in result.headers:
        if name.lower() in _SERVER_WRITES:
            if name.lower() == "content-length":
                declared = value
            continue
        lines += ("\r\n", name, ": ", value)
    body = result.body
    if _no_body(result.status):
        body = b""  # never a body, nor a length
    elif streaming:
        if not http10:
            lines.append("\r\nTransfer-Encoding: chunked")
    elif environ["REQUEST_METHOD"] == "HEAD":
        body = b""
        if declared is not None:
            lines += ("\r\nContent-Length: ", declared)  # what a GET would have sent
    else:
        lines += ("\r\nContent-Length: ", str(len(body)))
    if close:
        lines.append("\r\nConnection: close")
    elif http10:
        lines.append("\r\nConnection: keep-alive")
    lines.append("\r\n\r\n")
    head = "".join(lines).encode("latin-1")
    reply = Reply(head, close)
    if streaming:
        reply.chunks, reply.closer, reply.chunked = result.chunks, result.closer, not http10
        if body:
            reply.data += reply.frame(body)
    else:
        reply.data += body
    return reply


def next_chunk(chunks: Iterator[bytes]) -> bytes | None:
    """The stream's next piece (in a pool thread: the app may wait for it), None at its end."""
    return next(chunks, None)
