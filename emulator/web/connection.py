"""One client connection: HTTP/1.1 parsed by httptools on the loop, answered in order.

The parser's callbacks build each request's WSGI environ as they come; a complete request goes
to the app's thread pool and the answer the pool rendered (`wsgi_bridge.respond`) is written in
one call. One request per connection is with the app at a time: requests pipelined behind it
wait, parsed, and are answered in order. The server's own refusals (`Refused`: a body declared
far over the limit, a malformed request, a TLS ClientHello) are answered in turn too, then the
connection is half-closed and drained for a while so the client reads the answer, not a reset.
`server.py` says why this and not aiohttp's server, and lists what is tested.
"""

from __future__ import annotations

import asyncio
import io
import logging
import sys
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any
from urllib.parse import unquote_to_bytes

import httptools
from flask import Flask

from emulator.web import wsgi_bridge

# Bodies a little over the app's limit reach the app, which answers 413 in its own surface's
# error format (control API or cloud API); the server cuts anything further over.
BODY_SLACK_BYTES = 64 * 1024
# After a refusal (an early 413, a malformed request), what the client still sends is read and
# dropped for up to this long (so it sees the answer, not a reset), then the connection is closed.
LINGER_S = 1.0
MAX_HEADER_BYTES = 64 * 1024  # the request line and each header line (a long v1-signed query)
MAX_HEAD_BYTES = 4 * MAX_HEADER_BYTES  # all of a request's head
KEEPALIVE_S = 60.0  # an idle keep-alive connection is closed after this (waitress's was 60 s too)
# Requests parsed ahead of their answers on one connection (pipelining) before reading pauses.
MAX_PIPELINED = 16
log = logging.getLogger("tiw_emulator.server")
TLS_HANDSHAKE = 0x16  # the first byte of a TLS record carrying a handshake (ClientHello)
_PLAIN_PORT_TEXT = b"This port speaks plain HTTP: use http://, not https://, for this address\n"
PLAIN_PORT_REPLY = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(_PLAIN_PORT_TEXT), _PLAIN_PORT_TEXT)
)
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_METHODS = {m.encode(): m for m in ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")}
# Header name as sent -> environ key, filled as names are seen (bounded: names come from clients).
_ENVIRON_KEYS: dict[bytes, str] = {}
_ENVIRON_KEYS_MAX = 512


def _environ_key(name: bytes) -> str:
    key = name.decode("latin-1").upper().replace("-", "_")
    if key == "TRANSFER_ENCODING":
        return ""  # the body is read whole: CONTENT_LENGTH says its size
    if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        key = "HTTP_" + key
    if len(_ENVIRON_KEYS) < _ENVIRON_KEYS_MAX:
        _ENVIRON_KEYS[name] = key
    return key


Request = tuple[dict[str, Any], bool]  # the environ, and whether to keep the connection alive


def _nowhere(environ: dict[str, Any]) -> bool:
    return False


class Refused(Exception):
    """Raised from a parser callback: the request is answered with `reply` and not read on."""

    def __init__(self, reply: bytes) -> None:
        super().__init__()
        self.reply = reply


def _bad_request(reason: str) -> Refused:
    return Refused(wsgi_bridge.json_error(400, "bad_request", reason))


class Serving:
    """What every connection of one AppServer shares."""

    def __init__(
        self,
        app: Flask,
        loop: asyncio.AbstractEventLoop,
        pool: ThreadPoolExecutor,
        port: int,
        limit: int,
        lane: ThreadPoolExecutor | None = None,
        lone_on_pool: bool = False,
    ) -> None:
        self.wsgi_app = app.wsgi_app
        self.loop = loop
        self.pool = pool
        self.lane = lane or pool
        self.lane_queued = self.lane_started = 0
        # lone_on_pool: a lane request with no other in progress runs on the pool (dispatch).
        self.lone_on_pool = lone_on_pool
        # lane requests dispatched and not answered yet (with lone_on_pool; the loop's thread)
        self.lane_in_progress = 0
        self.in_lane: Callable[[dict[str, Any]], bool] = (
            app.config.get(wsgi_bridge.LANE_CONFIG) or _nowhere
        )
        self.port = str(port)
        self.limit = limit
        self.max_body = limit + BODY_SLACK_BYTES
        self.connections: set[HttpConnection] = set()
        self.streams: set[asyncio.Task[None]] = set()  # responses being streamed
        self.stopping = False
        self.all_closed = asyncio.Event()

    def dispatch(self, work: Callable[[dict[str, Any], bool, bool], None], item: Request) -> bool:
        """Run `work(environ, keep_alive, hold)` on the lane for the requests the app says never
        wait (LANE_CONFIG), else on the pool. A lane request may have its reply held only when
        another waits behind it: a client creating one task at a time is answered from the
        lane thread's own commit, without handing the commit to the store's thread and back
        (measured: 1.81-2.08 ms a creation against 2.00-2.06, docs/benchmarks.md).

        With `lone_on_pool` (`serve`, whose lane thread runs at a lower priority than the rest
        of the process), a lane request that finds no other in progress runs on the pool,
        unheld, at the process's priority: the lane's priority is for a busy server, and a
        creation that comes alone must not wait behind another process of the same session
        on the CPU. True when the request counts as a lane request in progress: its connection
        calls `lane_answered` once its reply is back on the loop."""
        environ, keep_alive = item
        if self.lane is self.pool or not self.in_lane(environ):
            self.pool.submit(work, environ, keep_alive, True)
            return False
        if self.lone_on_pool:
            self.lane_in_progress += 1
            if self.lane_in_progress == 1:
                self.pool.submit(work, environ, keep_alive, False)
                return True
        self.lane_queued += 1  # written on the loop thread only; lane_started on the lane's

        def in_lane() -> None:
            self.lane_started += 1
            work(environ, keep_alive, self.lane_queued > self.lane_started)

        self.lane.submit(in_lane)
        return self.lone_on_pool

    def lane_answered(self) -> None:
        """A lane request's reply is back on the loop (before it is written, so the client's
        next request, which can only come after it, finds it counted out)."""
        self.lane_in_progress -= 1

    def too_large(self) -> Refused:
        return Refused(
            wsgi_bridge.json_error(
                413, "payload_too_large", f"request body over the {self.limit} byte limit"
            )
        )

    def closed(self, conn: HttpConnection) -> None:
        self.connections.discard(conn)
        if self.stopping and not self.connections:
            self.all_closed.set()


class HttpConnection(asyncio.Protocol):
    """One client connection: requests parsed as they arrive, answered in order, one at a time."""

    def __init__(self, serving: Serving) -> None:
        self.serving = serving
        self.loop = serving.loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.base: dict[str, Any] = {}
        self.queue: deque[Request | bytes] = deque()
        self.busy = False  # a request is with the app, or its stream is being sent
        self.lane_request = False  # the request with the app counts as one in the lane's
        self.done = False  # no more requests on this connection (refused, closing, stopping)
        self.first = True
        self.last_active = 0.0
        self.in_head = True  # reading a request line or headers (or waiting for them)
        self.head_bytes = 0
        self.continue_owed = False
        self.reading_paused = False
        self.write_paused: asyncio.Future[None] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.stream: asyncio.Task[None] | None = None
        # the request being parsed
        self.environ: dict[str, Any] = {}
        self.url = b""
        self.body: list[bytes] = []
        self.body_size = 0
        self.declared: int | None = None
        self.keep_alive = True

    # -- asyncio.Protocol --

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.serving.connections.add(self)
        peer = transport.get_extra_info("peername")
        self.base = {
            "SCRIPT_NAME": "",
            "SERVER_NAME": "127.0.0.1",  # werkzeug takes the host from HTTP_HOST when given
            "SERVER_PORT": self.serving.port,
            "REMOTE_ADDR": peer[0] if peer else "",
            "REMOTE_PORT": str(peer[1]) if peer else "",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input_terminated": True,
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
            wsgi_bridge.DISCONNECTED_KEY: transport.is_closing,
        }
        self.last_active = self.loop.time()
        self.timer = self.loop.call_at(self.last_active + KEEPALIVE_S, self._check_idle)

    def data_received(self, data: bytes) -> None:
        if self.done:
            return  # refused or closing: dropped (lingering after a refusal)
        if self.first:
            self.first = False
            if data[0] == TLS_HANDSHAKE:
                self._refuse(PLAIN_PORT_REPLY)
                return
        self.last_active = self.loop.time()
        if self.in_head:
            self.head_bytes += len(data)
        try:
            while True:
                try:
                    self.parser.feed_data(data)
                    break
                except httptools.HttpParserUpgrade as upgrade:  # not offered: answer as HTTP/1.1
                    data = data[upgrade.args[0] :]
        except httptools.HttpParserError as exc:
            # What a callback raised comes back as the parser error's context.
            cause = exc.__context__
            if isinstance(cause, Refused):
                self._refuse(cause.reply)
            elif cause is not None and not isinstance(cause, Exception):
                raise cause from None  # an interrupt (Ctrl-C, SIGTERM): stopping, not a bad request
            elif self.done:
                pass  # bytes after a `Connection: close` request: never read
            else:
                if cause is not None and not isinstance(cause, httptools.HttpParserError):
                    log.error("could not take a request apart", exc_info=cause)
                # llhttp's reasons are fixed texts: the request's bytes are never echoed
                reason = str(exc).strip()[:200] or "malformed request"
                self._refuse(_bad_request(f"malformed request: {reason}").reply)
            return
        if self.in_head and self.head_bytes > MAX_HEAD_BYTES:
            self._refuse(_bad_request(f"request head over {MAX_HEAD_BYTES} bytes").reply)

    def eof_received(self) -> bool | None:
        return None  # the client is gone: close (a stream sees it through DISCONNECTED_KEY)

    def connection_lost(self, exc: Exception | None) -> None:
        self.done = True
        if self.timer is not None:
            self.timer.cancel()
        if self.write_paused is not None and not self.write_paused.done():
            self.write_paused.set_result(None)
        self.serving.closed(self)

    def pause_writing(self) -> None:
        self.write_paused = self.loop.create_future()

    def resume_writing(self) -> None:
        if self.write_paused is not None and not self.write_paused.done():
            self.write_paused.set_result(None)
        self.write_paused = None
        if not self.busy:
            self._next()

    # -- httptools callbacks --

    def on_message_begin(self) -> None:
        self.environ = self.base.copy()
        self.url = b""
        self.body = []
        self.body_size = 0
        self.declared = None

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > MAX_HEADER_BYTES:
            raise _bad_request(f"request line over {MAX_HEADER_BYTES} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) + len(value) > MAX_HEADER_BYTES:  # never echoed: it may carry a token
            raise _bad_request(f"header line over {MAX_HEADER_BYTES} bytes")
        key = _ENVIRON_KEYS.get(name) or _environ_key(name)
        environ = self.environ
        if key == "CONTENT_LENGTH":
            self.declared = int(value)  # the parser has checked its digits
        elif key in environ:
            environ[key] = f"{environ[key]},{value.decode('latin-1')}"
        elif key:
            environ[key] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.in_head = False
        self.head_bytes = 0
        parser = self.parser
        environ = self.environ
        # when the bytes ending the head were read (loop.time() is time.monotonic())
        environ[wsgi_bridge.RECEIVED_KEY] = self.last_active
        method = parser.get_method()
        environ["REQUEST_METHOD"] = _METHODS.get(method) or method.decode("latin-1")
        version = parser.get_http_version()
        environ["SERVER_PROTOCOL"] = "HTTP/" + version
        self.keep_alive = parser.should_keep_alive()
        url = self.url
        if url[:1] != b"/":  # absolute form (a proxy's), or `*`
            parsed = httptools.parse_url(url)
            url = (parsed.path or b"/") + (b"?" + parsed.query if parsed.query else b"")
        path, _, query = url.partition(b"?")
        environ["PATH_INFO"] = (unquote_to_bytes(path) if b"%" in path else path).decode("latin-1")
        environ["QUERY_STRING"] = query.decode("latin-1")
        if self.declared is not None and self.declared > self.serving.max_body:
            raise self.serving.too_large()
        if version != "1.0" and environ.get("HTTP_EXPECT", "").lower() == "100-continue":
            # curl and others wait (curl: 1 s) for this before sending a body over 1 KiB;
            # owed until the answers before it are out.
            if self.busy or self.queue:
                self.continue_owed = True
            elif self.transport is not None:
                self.transport.write(CONTINUE)

    def on_body(self, body: bytes) -> None:
        self.body_size += len(body)
        if self.body_size > self.serving.max_body:  # chunked: read up to the limit
            raise self.serving.too_large()
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.in_head = True
        self.continue_owed = False
        environ = self.environ
        body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
        environ["CONTENT_LENGTH"] = str(len(body))
        environ["wsgi.input"] = io.BytesIO(body)
        environ[wsgi_bridge.BODY_KEY] = body
        self.queue.append((environ, self.keep_alive))
        if not self.keep_alive:
            self.done = True  # whatever follows a `Connection: close` request is not read
        if not self.busy:
            self._next()
        elif len(self.queue) >= MAX_PIPELINED and self.transport is not None:
            self.transport.pause_reading()
            self.reading_paused = True

    # -- answering --

    def _next(self) -> None:
        """Start the next queued request (the previous answer is out)."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if not self.queue:
            if self.serving.stopping:
                transport.close()
            elif self.continue_owed:
                self.continue_owed = False
                transport.write(CONTINUE)
            return
        if self.write_paused is not None:
            return  # the client is not reading its answers: resume_writing comes back here
        if self.reading_paused and len(self.queue) <= MAX_PIPELINED // 2:
            self.reading_paused = False
            transport.resume_reading()
        item = self.queue.popleft()
        if isinstance(item, bytes):
            self._write_refusal(item)
            return
        self.busy = True
        self.lane_request = self.serving.dispatch(self._work, item)

    def _work(self, environ: dict[str, Any], keep_alive: bool, hold: bool = True) -> None:
        """In a pool thread: the app's answer, rendered, handed back to the loop; held until
        the future the app gave (wsgi_bridge.HOLD_KEY) settles, and run again if it failed."""
        held = wsgi_bridge.Held() if hold else None
        pristine = environ.copy() if hold else environ
        environ[wsgi_bridge.HOLD_KEY] = held
        reply = wsgi_bridge.respond(self.serving.wsgi_app, environ, keep_alive)
        if held is None or held.future is None:
            self._hand_back(reply)
        else:
            held.future.add_done_callback(
                lambda done: self._settled(done, reply, pristine, keep_alive)
            )

    def _settled(
        self,
        done: Future[None],
        reply: wsgi_bridge.Reply,
        environ: dict[str, Any],
        keep_alive: bool,
    ) -> None:
        """What a held reply waited for has settled (in the thread that settled it)."""
        if not done.cancelled() and done.exception() is None:
            self._hand_back(reply)
            return
        environ["wsgi.input"] = io.BytesIO(environ[wsgi_bridge.BODY_KEY])
        try:
            self.serving.pool.submit(self._work, environ, keep_alive, False)
        except RuntimeError:  # the pool has shut down: the server is stopping
            refusal = wsgi_bridge.json_error(503, "server_stopping", "the server is stopping")
            self._hand_back(wsgi_bridge.Reply(refusal, True))

    def _hand_back(self, reply: wsgi_bridge.Reply) -> None:
        try:
            self.loop.call_soon_threadsafe(self._replied, reply)
        except RuntimeError:  # the loop has closed: the server stopped meanwhile
            if reply.closer is not None:
                reply.closer()

    def _replied(self, reply: wsgi_bridge.Reply) -> None:
        transport = self.transport
        if self.lane_request:
            self.lane_request = False
            self.serving.lane_answered()
        if transport is None or transport.is_closing():
            if reply.closer is not None:
                self.serving.pool.submit(reply.closer)
            return
        transport.write(reply.data)
        if reply.chunks is not None:
            self.stream = self.loop.create_task(self._send_stream(reply))
            self.serving.streams.add(self.stream)
            self.stream.add_done_callback(self.serving.streams.discard)
            return
        self._answered(reply.close)

    def _answered(self, close: bool) -> None:
        self.busy = False
        self.last_active = self.loop.time()
        if close and self.transport is not None:
            self.transport.close()
        elif self.queue or self.continue_owed or self.serving.stopping:
            self._next()

    async def _send_stream(self, reply: wsgi_bridge.Reply) -> None:
        """The rest of a response without a length, pulled chunk by chunk on the pool."""
        transport = self.transport
        assert transport is not None and reply.chunks is not None
        pool = self.serving.pool
        pending: Future[bytes | None] | None = None
        try:
            while not transport.is_closing():
                if self.write_paused is not None:
                    await self.write_paused  # the client reads slower than the app writes
                    continue
                pending = pool.submit(wsgi_bridge.next_chunk, reply.chunks)
                chunk = await asyncio.wrap_future(pending)
                if chunk is None:
                    if not transport.is_closing():
                        transport.write(reply.end())
                        self._answered(reply.close)
                    break
                if chunk and not transport.is_closing():
                    transport.write(reply.frame(chunk))
        finally:
            self.stream = None
            # Close the app's iterator in a pool thread, after any next() still running there
            # (a stream waits up to its poll interval): closing a running generator is an error.
            closer = reply.closer
            if closer is not None:
                if pending is not None and not pending.done():
                    pending.add_done_callback(lambda _: closer())
                else:
                    pool.submit(closer)

    # -- refusing and closing --

    def _refuse(self, reply: bytes) -> None:
        """Answer (after any answers still owed) and read nothing more from this client."""
        self.done = True
        self.queue.append(reply)
        if not self.busy:
            self._next()

    def _write_refusal(self, reply: bytes) -> None:
        transport = self.transport
        assert transport is not None
        transport.write(reply)
        # Half-close: the client sees the answer and the end; what it still sends is read and
        # dropped (data_received) until it closes too or LINGER_S passes, so it gets no reset.
        if transport.can_write_eof():
            transport.write_eof()
        if self.reading_paused:
            self.reading_paused = False
            transport.resume_reading()
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.loop.call_later(LINGER_S, transport.close)

    def _check_idle(self) -> None:
        """Close a connection idle for KEEPALIVE_S; one timer per connection, moved lazily."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        due = self.last_active + KEEPALIVE_S
        now = self.loop.time()
        if self.busy:
            due = now + KEEPALIVE_S
        elif due <= now:
            transport.close()
            return
        self.timer = self.loop.call_at(due, self._check_idle)

    def shut(self) -> None:
        """Stopping: close now if idle or streaming, else once the answer in hand is out."""
        self.done = True
        self.queue.clear()
        transport = self.transport
        if transport is not None and (not self.busy or self.stream is not None):
            transport.close()
