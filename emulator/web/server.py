"""Serving the Flask app on waitress, in the foreground or a thread, tuned for this emulator.

Why waitress (measured on the 2-core dev machine, same app, 50 keep-alive clients, candidates
interleaved, medians; docs/benchmarks.md "Front door" has the table): process CPU per request for
`GET /healthz` / `POST /api/events` / `POST /api/tasks` was 205 / 868 / 2,530 µs on tuned
waitress, 155 / 780 / 2,242 µs on a lean asyncio HTTP/1.1 prototype, 190 / 665 / 2,470 µs on
aiohttp's server with a WSGI bridge, 772 / 1,405 / 3,868 µs on werkzeug's. The leaner servers
save 50-100 µs per request, within the run-to-run spread on a shared machine and about a tenth of
what the core spends on a request that creates work, so the complete, well-kept server stays
(chunked bodies, pipelining, header limits). Worth revisiting once the core's cost per request
is well under a millisecond.

What was slow was its configuration:

- `asyncore_loop_timeout` is cast to `int` by waitress, so the old 0.2 became 0 and the serving
  loop polled without sleeping: a whole core burnt while idle. It is 1 (second) now; stop() wakes
  the loop through waitress's pipe, so stopping stays immediate.
- `POST /api/events` holds its thread until the callback is delivered, so 8 threads meant 8 events
  in flight: 160 events/s to a backend taking 50 ms; 16 now (see `DEFAULT_THREADS` for why not
  more).
- waitress accepts at most 100 connections by default and closes idle keep-alive ones only every
  30 s, so a client pool of over 100 connections stalled for 30 s (seen in the peer harness's
  paced runs); the limit is `CONNECTION_LIMIT` now, polled with poll() rather than select().
- `channel_request_lookahead=1` keeps reading a connection while its request runs, which is how
  waitress notices a client that went away (a dashboard stream's slot is freed at once).

Two behaviours waitress lacks are added by a channel subclass: a TLS ClientHello sent to this
plain-HTTP port is answered with a plain 400 and the connection closed (a TLS client fails at once
instead of waiting for its read timeout), and the server's own errors (an oversized body, a
malformed request) are JSON in the control API's error shape.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from typing import Any

from flask import Flask
from waitress.channel import HTTPChannel
from waitress.server import create_server
from waitress.task import ErrorTask

# Threads that run the app. An ad-hoc event holds one until its callback is answered and a
# dashboard stream (at most 4) holds one while open, so 8 left 4 for the API with 4 tabs open
# and 160 events/s to a backend taking 50 ms. More threads cost CPU per request under load
# (GIL contention; docs/benchmarks.md, medians over 3 interleaved rounds, µs per ad-hoc event /
# per created task: 4 threads 720 / 1,860, 8: 1,050 / 2,070, 16: 975 / 2,290, 32: 1,310 / 2,440).
# 16: 12 threads for the API with every stream open, 320 events/s to a 50 ms backend.
DEFAULT_THREADS = 16
# Open connections served at once (each is a descriptor; keep under `ulimit -n`).
CONNECTION_LIMIT = 1000
# Bodies a little over the app's limit reach the app, which answers 413 in its own surface's
# error format (control API or cloud API); the server cuts anything further over without reading it.
BODY_SLACK_BYTES = 64 * 1024
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


class JsonErrorTask(ErrorTask):
    """waitress's own error replies (bad request line, body too large) in the API's JSON shape."""

    def execute(self) -> None:
        err = self.request.error
        code = ERROR_CODES.get(err.code, "http_error")
        body = json.dumps(
            {"error": {"code": code, "message": f"{err.reason}: {err.body}", "details": {}}}
        ).encode()
        self.status = f"{err.code} {err.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class EmulatorChannel(HTTPChannel):
    """An HTTP connection that refuses TLS at once and renders server errors as JSON."""

    error_task_class = JsonErrorTask
    _first_bytes_seen = False

    def received(self, data: bytes) -> bool:
        if not self._first_bytes_seen and data:
            self._first_bytes_seen = True
            if data[0] == TLS_HANDSHAKE:
                self._refuse_tls()
                return False
        return bool(super().received(data))

    def _refuse_tls(self) -> None:
        # Runs on the serving loop (like waitress's own 100-continue): queue the reply; the loop
        # flushes it and closes the connection.
        with self.outbuf_lock:
            self.outbufs[-1].append(PLAIN_PORT_REPLY)
            self.current_outbuf_count += len(PLAIN_PORT_REPLY)
            self.total_outbufs_len += len(PLAIN_PORT_REPLY)
        self.close_when_flushed = True


class AppServer:
    """An app on waitress bound to host:port (port 0 picks a free one)."""

    def __init__(
        self, app: Flask, *, host: str = "127.0.0.1", port: int = 0, threads: int = DEFAULT_THREADS
    ) -> None:
        self.app = app
        # Under load waitress logs "Task queue depth is N" for every queued request: thousands
        # of lines that cost CPU and say nothing a benchmark does not.
        logging.getLogger("waitress.queue").setLevel(logging.ERROR)
        body_limit = app.config.get("MAX_CONTENT_LENGTH") or 1_048_576
        self._server: Any = create_server(
            app,
            host=host,
            port=port,
            threads=threads,
            ident="tiw-emulator",
            asyncore_loop_timeout=1,  # an int: waitress truncates 0.2 to 0 (a busy loop)
            channel_timeout=60,
            channel_request_lookahead=1,
            # waitress stops accepting at 100 open connections and frees idle keep-alive ones
            # only every 30 s: a client pool of 100+ connections stalled for 30 s. poll(), not
            # select(), so descriptors past 1024 work.
            connection_limit=CONNECTION_LIMIT,
            asyncore_use_poll=True,
            max_request_body_size=int(body_limit) + BODY_SLACK_BYTES,
            clear_untrusted_proxy_headers=True,
        )
        self._server.channel_class = EmulatorChannel
        self.host = host
        self.port = int(self._server.effective_port)
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def serve_forever(self) -> None:
        """Serve until stop() (or Ctrl-C in the foreground); sockets are closed by this loop."""
        server = self._server
        try:
            while not self._stopping.is_set() and server._map:
                server.asyncore.loop(
                    timeout=server.adj.asyncore_loop_timeout,
                    map=server._map,
                    use_poll=server.adj.asyncore_use_poll,
                    count=1,
                )
        finally:
            self._close_sockets()

    def start(self) -> AppServer:
        self._thread = threading.Thread(target=self.serve_forever, name="tiw-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, close open connections, and wait for the serving thread.

        The serving loop checks the stop flag after every poll (at most a second), so stopping
        never depends on waitress's wake-up pipe: pulling it only makes the stop immediate.
        """
        self._stopping.set()
        if self._thread is not None and self._thread.is_alive():
            with contextlib.suppress(OSError):
                self._server.trigger.pull_trigger()
            self._thread.join(timeout=5)
        else:
            self._close_sockets()
        self._server.task_dispatcher.shutdown(cancel_pending=True, timeout=2)

    def _close_sockets(self) -> None:
        for channel in list(self._server._map.values()):
            # One broken channel (e.g. a trigger whose fd is already gone) must not keep the
            # others, the listening socket among them, open.
            with contextlib.suppress(OSError):
                channel.close()
