"""Serving the Flask app on aiohttp's HTTP/1.1 server, in the foreground or a thread.

Why aiohttp's server (measured on the 2-core dev machine; docs/benchmarks.md "Front door, second
round" has the tables): the app's views are the same, but waitress's serving loop builds a new
poll set from every open connection on every wake-up, and a request that creates work wakes it
about twice, so with the harness's 50 keep-alive clients its loop thread cost 200-440 µs per ad-hoc
event or created task (70 µs per `GET /healthz`, where completions batch). aiohttp's loop is
epoll-based: the same drivers, interleaved, gave 730-780 against 820-840 µs of process CPU per
ad-hoc event and 1,130-1,420 against 1,740-2,440 µs per created task (+ its callback), 1.2-1.3x
the event rate and 1.7x the creation rate. aiohttp is already a dependency (the https transport).

The app still runs on a thread pool (`wsgi_bridge`): an ad-hoc event holds its thread until its
callback is answered and a dashboard stream (at most 4) holds one while open, so 16 threads.
What the server does before the app runs, kept from the waitress days (tests/test_server.py):

- a body declared far over the app's limit is answered 413 in the API's JSON shape at once,
  unread; a body a little over it reaches the app, which answers 413 in its own surface's format
  (control API or cloud API); a chunked body is read up to the limit and then refused the same way;
- a TLS ClientHello on this plain-HTTP port gets a plain `400` and the connection is closed, so an
  https:// client fails at once instead of waiting for its read timeout;
- a malformed request gets the JSON `400` (aiohttp's own is text);
- `Expect: 100-continue` is answered before the body is read (curl waits 1 s for it otherwise);
- request bodies are passed on as sent (no automatic gunzip), keep-alive, pipelining, any number
  of open connections (epoll), and nothing runs while idle;
- the dashboard's stream sees its client leave (`wsgi_bridge.DISCONNECTED_KEY`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiohttp import HttpVersion11, web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from flask import Flask

from emulator.web import wsgi_bridge

# Threads that run the app: an ad-hoc event holds one until its callback is answered, an open
# dashboard stream (at most 4) holds one; 16 leaves 12 for the API with every stream open.
DEFAULT_THREADS = 16
# Bodies a little over the app's limit reach the app, which answers 413 in its own surface's
# error format (control API or cloud API); the server cuts anything further over.
BODY_SLACK_BYTES = 64 * 1024
READ_CHUNK = 64 * 1024
# After an early 413, the rest of a body being sent is read and dropped for up to this long
# (so the client sees the 413, not a reset), then the connection is closed.
LINGER_S = 1.0
STOP_GRACE_S = 2.0
MAX_HEADER_BYTES = 64 * 1024  # the request line and each header line
KEEPALIVE_S = 60.0  # an idle keep-alive connection is closed after this (waitress's was 60 s too)
# How long a thread holding the GIL runs before a waiting one gets it (CPython's default: 5 ms).
# The delivery thread waits for the GIL after every socket call, so behind 16 busy request threads
# a due callback waited up to 5 ms per hop: a callback due 100 ms after its trigger arrived late
# by p99 117 ms under full load (the peer harness's sat100); with 1 ms, 64 ms (medians of
# interleaved runs on the shared 2-core machine, load 4), creation rate unchanged; 0.5 and 0.2 ms
# measured no better (docs/benchmarks.md, "Front door, second round"). Set when serving starts,
# for the whole process (only ever lowered).
SWITCH_INTERVAL_S = 0.001
log = logging.getLogger("tiw_emulator.server")
TLS_HANDSHAKE = 0x16  # the first byte of a TLS record carrying a handshake (ClientHello)
_PLAIN_PORT_TEXT = b"This port speaks plain HTTP: use http://, not https://, for this address\n"
PLAIN_PORT_REPLY = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(_PLAIN_PORT_TEXT), _PLAIN_PORT_TEXT)
)
ERROR_CODES = {
    400: "bad_request",
    408: "request_timeout",
    411: "length_required",
    413: "payload_too_large",
    431: "request_header_fields_too_large",
}


class EmulatorHandler(RequestHandler):
    """One connection: refuses TLS at once and renders parse errors in the API's JSON shape."""

    _first_bytes_seen = False

    def data_received(self, data: bytes) -> None:
        if not self._first_bytes_seen and data:
            self._first_bytes_seen = True
            if data[0] == TLS_HANDSHAKE and self.transport is not None:
                self.transport.write(PLAIN_PORT_REPLY)
                self.force_close()
                self.transport.close()
                return
        super().data_received(data)

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500:
            log.error("error serving %s %s", request.method, request.path, exc_info=exc)
            return super().handle_error(request, status, exc, message)
        reason = (message or (str(exc) if exc else "")).strip() or "malformed request"
        # aiohttp quotes the offending bytes (e.g. a header line too long): never echo them.
        reason = reason.split(": b'", 1)[0].split(': b"', 1)[0][:200]
        return wsgi_bridge.json_error(status, ERROR_CODES.get(status, "http_error"), reason)


def _expects_continue(request: BaseRequest) -> bool:
    return request.headers.get("Expect", "").lower() == "100-continue"


def _quiet_interrupts(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """The loop's error report, minus the interrupt (Ctrl-C, serve's SIGTERM) that stopped it."""
    if isinstance(context.get("exception"), KeyboardInterrupt):
        return
    loop.default_exception_handler(context)


class EmulatorServer(web.Server):
    def __call__(self) -> RequestHandler:
        return EmulatorHandler(self, loop=self._loop, **self._kwargs)


class AppServer:
    """An app bound to host:port (port 0 picks a free one); the socket is bound at once."""

    def __init__(
        self, app: Flask, *, host: str = "127.0.0.1", port: int = 0, threads: int = DEFAULT_THREADS
    ) -> None:
        self.app = app
        self.host = host
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._sock.bind((host, port))
            self._sock.listen(1024)
        except OSError:
            self._sock.close()
            raise
        self._sock.setblocking(False)
        self.port = int(self._sock.getsockname()[1])
        self._limit = int(app.config.get("MAX_CONTENT_LENGTH") or 1_048_576)
        self._max_body = self._limit + BODY_SLACK_BYTES
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="tiw-http")
        self._loop = asyncio.new_event_loop()
        self._loop.set_exception_handler(_quiet_interrupts)
        self._thread: threading.Thread | None = None
        self._stopped = asyncio.Event()
        self._runner: web.ServerRunner | None = None
        self._main: asyncio.Task[None] | None = None
        self._stop_lock = threading.Lock()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def _too_large(self) -> web.Response:
        return wsgi_bridge.json_error(
            413, "payload_too_large", f"request body over the {self._limit} byte limit"
        )

    async def _handle(self, request: BaseRequest) -> web.StreamResponse:
        received = time.monotonic()
        length = request.content_length
        if length is not None and length > self._max_body:
            return self._too_large()
        if request.version >= HttpVersion11 and _expects_continue(request):
            # curl and others wait (curl: 1 s) for this before sending a body over 1 KiB.
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0  # the reply proper has not started
        if length is not None:
            body = await request.content.readexactly(length) if length else b""
        else:  # chunked (or no body): read up to the limit
            buf = bytearray()
            while chunk := await request.content.read(READ_CHUNK):
                buf += chunk
                if len(buf) > self._max_body:
                    return self._too_large()
            body = bytes(buf)
        environ = wsgi_bridge.build_environ(request, body, self.port)
        transport = request.transport
        environ[wsgi_bridge.DISCONNECTED_KEY] = lambda: transport is None or transport.is_closing()
        environ[wsgi_bridge.RECEIVED_KEY] = received
        result = await self._loop.run_in_executor(
            self._pool, wsgi_bridge.call_app, self.app.wsgi_app, environ
        )
        return await wsgi_bridge.send_result(request, result, self._pool)

    async def _serve(self) -> None:
        server = EmulatorServer(
            self._handle,
            access_log=None,
            lingering_time=LINGER_S,
            keepalive_timeout=KEEPALIVE_S,
            max_line_size=MAX_HEADER_BYTES,  # aiohttp's 8,190 would refuse a long v1-signed query
            max_field_size=MAX_HEADER_BYTES,
            auto_decompress=False,  # the app sees the body as sent, Content-Encoding and all
            handler_cancellation=False,
        )
        self._runner = web.ServerRunner(server, shutdown_timeout=STOP_GRACE_S)
        await self._runner.setup()
        await web.SockSite(self._runner, self._sock).start()
        try:
            await self._stopped.wait()
        finally:
            await self._runner.cleanup()

    def serve_forever(self) -> None:
        """Serve until stop() (or Ctrl-C in the foreground); sockets are closed on the way out."""
        if sys.getswitchinterval() > SWITCH_INTERVAL_S:
            sys.setswitchinterval(SWITCH_INTERVAL_S)
        asyncio.set_event_loop(self._loop)
        self._main = self._loop.create_task(self._serve())
        try:
            self._loop.run_until_complete(self._main)
        finally:
            self._sock.close()

    def start(self) -> AppServer:
        self._thread = threading.Thread(target=self.serve_forever, name="tiw-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, close open connections, and wait for the serving thread."""
        with self._stop_lock:
            if self._loop.is_closed():
                return
            if self._thread is not None and self._thread.is_alive():
                self._loop.call_soon_threadsafe(self._stopped.set)
                self._thread.join(timeout=STOP_GRACE_S + 5)
            elif self._main is not None and not self._main.done():
                # serve_forever was interrupted (Ctrl-C or SIGTERM in the foreground): let the
                # serving task finish (close connections, stop the site) on this thread.
                self._stopped.set()
                # The interrupt may also sit in a connection's task, re-raised when the shutdown
                # awaits it: the stop goes on regardless (the process is on its way out).
                for _ in range(3):
                    with contextlib.suppress(Exception, KeyboardInterrupt):
                        self._loop.run_until_complete(self._main)
                    if self._main.done():
                        break
                if self._main.done() and not self._main.cancelled():
                    self._main.exception()  # taken: asyncio would log it as never retrieved
            elif self._main is not None:
                # The interrupt landed inside the serving task itself (e.g. during start-up):
                # take its exception (else asyncio logs it as never retrieved) and clean up.
                if not self._main.cancelled():
                    self._main.exception()
                if self._runner is not None:
                    with contextlib.suppress(Exception, KeyboardInterrupt):
                        self._loop.run_until_complete(self._runner.cleanup())
            self._sock.close()
            self._pool.shutdown(wait=False, cancel_futures=True)
            if not self._loop.is_running():
                self._loop.close()


# Clients that send garbage or go away mid-request are routine for an emulator: aiohttp's own
# tracebacks for them are noise (a 5xx is logged above, on this module's logger).
logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
