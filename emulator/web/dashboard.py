"""Dashboard blueprint: the /ui/ page, its static assets and a Server-Sent Events stream.

The page is static HTML/CSS/JS (no build step) that reads the control API; the stream pushes each
delivery attempt as it happens, fed by `Engine.subscribe`. Every stream is bounded: it sends a
heartbeat comment every few seconds, ends after `stream_lifetime_s` (the browser's EventSource
reconnects by itself) and stops within `poll_s` of the server reporting the client gone (the server
keeps reading a connection while its request runs, see `emulator.web.server`), so neither a closed
tab nor a stopped server pins a worker thread or a stream slot.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, current_app, request, send_from_directory

from emulator.core.errors import EmulatorError
from emulator.core.service import Emulator
from emulator.web.wsgi_bridge import DISCONNECTED_KEY

STATIC_DIR = Path(__file__).parent / "static"


class TooManyStreams(EmulatorError):
    """Every stream slot is taken: the page falls back to polling and retries the stream later."""

    status = 503
    code = "too_many_streams"


class DeliveryFeed:
    """One client's bounded queue of delivery attempts; never blocks the engine thread."""

    def __init__(self, maxsize: int) -> None:
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=maxsize)
        self._overflowed = threading.Event()

    def put(self, delivery: dict[str, Any]) -> None:
        """The engine listener: enqueue, or mark the feed for a resync when the client lags."""
        try:
            self._queue.put_nowait(delivery)
        except queue.Full:
            self._overflowed.set()

    def get(self, timeout: float) -> dict[str, Any] | None:
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def take_overflow(self) -> bool:
        """True once after the queue overflowed; what was queued is dropped (a resync follows)."""
        if not self._overflowed.is_set():
            return False
        self._overflowed.clear()
        while self.get(timeout=0) is not None:
            pass
        return True


def sse_message(event: str, data: Any) -> str:
    """One SSE message; JSON data never contains a raw newline, so one `data:` line suffices."""
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def stream_deliveries(
    feed: DeliveryFeed,
    *,
    lifetime_s: float,
    heartbeat_s: float,
    client_gone: Callable[[], bool],
    poll_s: float = 0.25,
    retry_ms: int = 1000,
) -> Iterator[str]:
    """Yield SSE text: a hello, then deliveries, resyncs and heartbeats, until the lifetime ends."""
    start = time.monotonic()
    last_write = start
    yield f"retry: {retry_ms}\n" + sse_message("hello", {"lifetime_s": lifetime_s})
    while True:
        now = time.monotonic()
        if now - start >= lifetime_s or client_gone():
            return
        if feed.take_overflow():
            yield sse_message("resync", {"reason": "client fell behind; refetch"})
            last_write = time.monotonic()
            continue
        delivery = feed.get(timeout=min(poll_s, max(0.0, lifetime_s - (now - start))))
        if delivery is not None:
            yield sse_message("delivery", delivery)
            last_write = time.monotonic()
        elif time.monotonic() - last_write >= heartbeat_s:
            yield ": ping\n\n"  # a comment: keeps proxies open and finds closed sockets
            last_write = time.monotonic()


def create_dashboard_blueprint(
    *,
    stream_lifetime_s: float = 60.0,
    heartbeat_s: float = 5.0,
    queue_size: int = 512,
    max_streams: int = 4,
) -> Blueprint:
    """The dashboard at /ui/ with its assets at /ui/static/ and the live stream at /ui/events.

    At most `max_streams` streams are open at once (each holds one of the server's threads),
    so a dozen open tabs cannot starve the control API.
    """
    slots = threading.BoundedSemaphore(max_streams)
    bp = Blueprint(
        "dashboard",
        __name__,
        url_prefix="/ui",
        static_folder=str(STATIC_DIR),
        static_url_path="/static",
    )

    @bp.get("/")
    def index() -> Response:
        response = send_from_directory(STATIC_DIR, "index.html", max_age=0)
        response.headers["Cache-Control"] = "no-store"
        return response

    @bp.get("/events")
    def events() -> Response:
        emu: Emulator = current_app.extensions["tiw_emulator"]
        if not slots.acquire(blocking=False):
            raise TooManyStreams(
                f"all {max_streams} live streams are in use (one per open dashboard tab);"
                " the page keeps polling and retries",
                details={"max_streams": max_streams},
            )
        released = threading.Event()

        def release() -> None:
            if not released.is_set():
                released.set()
                slots.release()

        disconnected = request.environ.get(DISCONNECTED_KEY)

        def client_gone() -> bool:
            return bool(disconnected and disconnected())

        def body() -> Iterator[str]:
            # Subscribe only once the server iterates: a body that never starts leaks nothing.
            feed = DeliveryFeed(queue_size)
            unsubscribe = emu.subscribe(feed.put)
            try:
                yield from stream_deliveries(
                    feed,
                    lifetime_s=stream_lifetime_s,
                    heartbeat_s=heartbeat_s,
                    client_gone=client_gone,
                )
            finally:
                unsubscribe()

        response = Response(body(), mimetype="text/event-stream")
        response.call_on_close(release)  # the server closes every body, started or not
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Accel-Buffering"] = "no"
        return response

    return bp
