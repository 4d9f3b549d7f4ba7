"""A recording HTTP receiver on loopback: the app backend stand-in for tests and benchmarks.

It runs its own asyncio loop in a thread, speaks just enough HTTP/1.1 (Content-Length bodies,
keep-alive) to be far faster than the emulator's sender, and lets a test wait for what arrives
instead of sleeping.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    received_at: float = field(default_factory=time.monotonic)

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def event_type(self) -> str | None:
        try:
            return self.json.get("EventType")
        except (ValueError, AttributeError):
            return None


@dataclass
class Reply:
    status: int = 200
    body: bytes = b'{"error_code":0}'
    delay_s: float = 0.0  # answer late, like a slow backend
    hang: bool = False  # never answer, like a stuck backend


Responder = Callable[[Received], Reply]
REASONS = {
    200: "OK",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


class Receiver:
    """Records every request; `respond` decides each reply (default 200 {"error_code":0})."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, keep: bool = True) -> None:
        self.host = host
        self._want_port = port
        self.port = 0
        self.keep = keep  # False: only count (benchmarks), keep nothing
        self.count = 0
        self.respond: Responder = lambda r: Reply()
        self._received: list[Received] = []
        self._cond = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.AbstractServer | None = None
        self._thread = threading.Thread(target=self._run, name="tiw-receiver", daemon=True)
        self._started = threading.Event()
        self._hung: list[asyncio.StreamWriter] = []
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/callback"

    def start(self) -> Receiver:
        self._thread.start()
        self._started.wait(5)
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(5)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)

    async def _shutdown(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        for writer in self._hung:
            writer.close()
        await self._server.wait_closed()

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- inspection --------------------------------------------------------------------------
    @property
    def received(self) -> list[Received]:
        with self._cond:
            return list(self._received)

    def events(self, event_type: str | None = None) -> list[dict[str, Any]]:
        """Parsed JSON bodies, optionally of one EventType."""
        return [r.json for r in self.received if event_type is None or r.event_type == event_type]

    def clear(self) -> None:
        with self._cond:
            self._received.clear()
            self.count = 0

    def wait_for(
        self, predicate: Callable[[list[Received]], bool], timeout: float = 10.0
    ) -> list[Received]:
        """Block until predicate(received) holds; AssertionError listing what arrived if not."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self._received):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    got = [r.body[:200].decode("utf-8", "replace") for r in self._received]
                    raise AssertionError(
                        f"receiver: condition not met within {timeout}s; "
                        f"{len(got)} request(s) arrived: {got}"
                    )
                self._cond.wait(remaining)
            return list(self._received)

    def wait_for_count(self, n: int, timeout: float = 10.0) -> list[Received]:
        return self.wait_for(lambda rs: len(rs) >= n, timeout)

    # -- serving ---------------------------------------------------------------------------
    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, self.host, self._want_port, backlog=1024)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._started.set()
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        me = asyncio.current_task()
        assert me is not None
        self._handlers.add(me)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = ([*lines[0].split(" ", 2), "", ""])[:3]
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
                request = Received(method, path, headers, body)
                with self._cond:
                    self.count += 1
                    if self.keep:
                        self._received.append(request)
                    self._cond.notify_all()
                reply = self.respond(request)
                if reply.hang:
                    self._hung.append(writer)
                    return
                if reply.delay_s:
                    await asyncio.sleep(reply.delay_s)
                reason = REASONS.get(reply.status, "Status")
                writer.write(
                    f"HTTP/1.1 {reply.status} {reason}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(reply.body)}\r\n\r\n".encode()
                    + reply.body
                )
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            self._handlers.discard(me)
            if writer not in self._hung:
                writer.close()
