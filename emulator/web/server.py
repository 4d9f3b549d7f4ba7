"""Serving the Flask app over HTTP/1.1 (an asyncio protocol on httptools), in the foreground or a
thread.

Why this server and not aiohttp's (measured on the 2-core dev machine, interleaved with the tree
before it; docs/benchmarks.md, "A lean HTTP server on httptools", has the tables): importing
aiohttp for its server cost ~120 ms of start-up (its client half builds two TLS contexts at
import), which made start-up 1.41x the first release's; without it `import emulator.web.server`
takes 124-172 ms against 240-383 ms and start-up is 0.92-1.06x the first release's (0.70-0.72x
the aiohttp tree's). Per request with 50 keep-alive clients (medians of interleaved rounds, five
sets at load 1.5-8), the loop thread costs 37-60 µs against 77-100 for `GET /healthz`, 50-60
against 107-157 per ad-hoc event and 60-80 against 137-180 per created task; the whole process
110-163 against 150-197, 380-473 against 453-617 and 777-927 against 847-1,037 µs.

The app runs on a thread pool (`wsgi_bridge`): an ad-hoc event holds its thread until its
callback is answered and a dashboard stream (at most 4) holds one while open, so 16 threads.
The requests the app names as never waiting (`wsgi_bridge.LANE_CONFIG`: task creations over the
control API and TC3-signed `CreateOfflineRecord` calls, whose replies the server holds until
their commit settles when another request waits behind them, `connection.Serving.dispatch`) run
one at a time on a lane thread of their own instead: spread over 16 threads that work only
queued them for the GIL, and the threads that wait for I/O (the delivery engine, the store's
committer, this loop) queued behind them. Measured with 50 clients creating tasks whose
callback is due 0.1 s later (three interleaved rounds; docs/benchmarks.md, "Front door, sixth
round"): the delivery thread's attempts ended p50 5.4-6.6 and p99 18-25 ms after their due
time, against 11-15 and 61-81 ms on the pool; 1,453-1,708 against 1,362-1,568 tasks/s.
`serve` runs the lane at a lower priority (`lane_nice`, `cli/cpu.py`) and sends a lane request
that comes while no other is in progress to the pool, at the process's priority.
Each connection (`connection.py`) is parsed on the loop by httptools (MagicStack's binding of
llhttp, Node's parser, also uvicorn's), which builds the environ from the parser's callbacks and
writes what the app's thread rendered, one write per sized response. This module binds, serves
in the foreground or a thread, and stops. What the server does (tests/test_server.py):

- a body declared far over the app's limit is answered 413 in the API's JSON shape at once,
  unread (what follows is read and dropped for up to LINGER_S, so the client sees the 413 rather
  than a reset); a body a little over it reaches the app, which answers 413 in its own surface's
  format (control API or cloud API); a chunked body is read up to the limit and then refused;
- a TLS ClientHello on this plain-HTTP port gets a plain `400` and the connection is closed, so an
  https:// client fails at once instead of waiting for its read timeout;
- a malformed request, or a request line or header line over 64 KiB, gets the JSON `400`;
- `Expect: 100-continue` is answered before the body is read (curl waits 1 s for it otherwise);
- request bodies are passed on as sent (no automatic gunzip); keep-alive (an idle connection is
  closed after KEEPALIVE_S), pipelining (answers in order), HTTP/1.0 (closed after the answer
  unless it asks for keep-alive), HEAD; any number of open connections (epoll), and nothing runs
  while idle;
- a response without a Content-Length (the dashboard's stream) is sent chunked, pulled chunk by
  chunk on the pool, and the stream sees its client leave (`wsgi_bridge.DISCONNECTED_KEY`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from flask import Flask

from emulator.core.threadname import name_os_thread
from emulator.web.connection import HttpConnection, Serving

# Threads that run the app: an ad-hoc event holds one until its callback is answered, an open
# dashboard stream (at most 4) holds one; 16 leaves 12 for the API with every stream open.
DEFAULT_THREADS = 16
STOP_GRACE_S = 2.0  # answers in progress when stop() comes get this long


def _quiet_interrupts(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """The loop's error report, minus the interrupt (Ctrl-C, serve's SIGTERM) that stopped it."""
    if isinstance(context.get("exception"), KeyboardInterrupt):
        return
    loop.default_exception_handler(context)


def _worker_thread(app: Flask) -> None:
    """A thread that runs the app, as it starts: named for the OS (top -H and make bench tell
    them apart), with the app's context pushed for the thread's life. Flask then pushes only a
    request context per request (it reuses an app context of the same app that is already
    there) instead of building, pushing and popping an app context each time: 7-10 µs less of
    a created task's 280-330 µs on the lane thread (in-process, two runs of twelve interleaved
    rounds of 1,000 creations, medians; through HTTP inside the machine's spread:
    docs/benchmarks.md, "Front door, ninth round"). So `flask.g` lasts as long as the thread;
    the app keeps nothing there and has no app-context teardown."""
    name_os_thread()
    app.app_context().push()


def _lane_thread(app: Flask, nice: int) -> None:
    """The lane thread, as it starts: a worker (`_worker_thread`) and, when `nice` > 0,
    scheduled as a batch thread (SCHED_BATCH: it does not preempt the others when it wakes)
    that much nicer than the thread that started it (the others preempt it sooner). Linux only:
    there a thread id is a task the scheduling calls take; elsewhere the lane keeps the
    process's priority."""
    _worker_thread(app)
    if nice > 0 and sys.platform.startswith("linux"):
        me = threading.get_native_id()
        with contextlib.suppress(OSError):
            os.sched_setscheduler(me, os.SCHED_BATCH, os.sched_param(0))
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, me, os.getpriority(os.PRIO_PROCESS, me) + nice)


class AppServer:
    """An app bound to host:port (port 0 picks a free one); the socket is bound at once.

    `lane_nice` > 0 makes the lane thread a batch thread that much nicer than the others
    (`serve` passes `cli.cpu.LANE_NICE`, which says why), and a lane request that comes while
    no other is in progress then runs on the pool instead, at the process's priority; 0, the
    default, leaves the lane as the caller's threads are and takes every lane request there.
    """

    def __init__(
        self,
        app: Flask,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        threads: int = DEFAULT_THREADS,
        lane_nice: int = 0,
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
        self._pool = ThreadPoolExecutor(
            threads, thread_name_prefix="tiw-http", initializer=_worker_thread, initargs=(app,)
        )
        self._lane = ThreadPoolExecutor(
            1, thread_name_prefix="tiw-lane", initializer=_lane_thread, initargs=(app, lane_nice)
        )
        self._loop = asyncio.new_event_loop()
        self._loop.set_exception_handler(_quiet_interrupts)
        limit = int(app.config.get("MAX_CONTENT_LENGTH") or 1_048_576)
        self._serving = Serving(
            app, self._loop, self._pool, self.port, limit, self._lane, lone_on_pool=lane_nice > 0
        )
        if lane_nice > 0:
            self._lane.submit(int)  # the lane thread starts now, at its priority
        self._thread: threading.Thread | None = None
        self._stopped = asyncio.Event()
        self._listener: asyncio.Server | None = None
        self._main: asyncio.Task[None] | None = None
        self._stop_lock = threading.Lock()

    @property
    def lane_waiting(self) -> int:
        """Requests queued for the lane thread and not yet started there."""
        return self._serving.lane_queued - self._serving.lane_started

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def _serve(self) -> None:
        serving = self._serving
        self._listener = await self._loop.create_server(
            lambda: HttpConnection(serving), sock=self._sock, backlog=1024
        )
        try:
            await self._stopped.wait()
        finally:
            await self._close()

    async def _close(self) -> None:
        """Stop accepting; give answers in progress STOP_GRACE_S, then close every connection."""
        serving = self._serving
        if self._listener is not None:
            self._listener.close()
        serving.stopping = True
        for conn in list(serving.connections):
            conn.shut()
        if serving.connections:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(serving.all_closed.wait(), STOP_GRACE_S)
        for conn in list(serving.connections):
            if conn.transport is not None:
                conn.transport.abort()
        # A stream whose client is gone ends at its next chunk (up to the app's poll interval):
        # not waited for. Its iterator is closed once the next() in hand returns.
        streams = list(serving.streams)
        for task in streams:
            task.cancel()
        if streams:
            await asyncio.gather(*streams, return_exceptions=True)

    def serve_forever(self) -> None:
        """Serve until stop() (or Ctrl-C in the foreground); sockets are closed on the way out."""
        asyncio.set_event_loop(self._loop)
        self._main = self._loop.create_task(self._serve())
        try:
            self._loop.run_until_complete(self._main)
        finally:
            if self._main.done():
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
                # serving task finish (close connections, stop listening) on this thread. The
                # interrupt may come again while it does: the stop goes on regardless.
                self._stopped.set()
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
                with contextlib.suppress(Exception, KeyboardInterrupt):
                    self._loop.run_until_complete(self._close())
            self._sock.close()
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._lane.shutdown(wait=False, cancel_futures=True)
            if not self._loop.is_running():
                self._loop.close()
