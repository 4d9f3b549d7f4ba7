"""Scheduler and delivery engine: one asyncio thread fires due callbacks and POSTs them.

Due events sit in a heap keyed by emulated due time. On a real clock a single timer wakes the
loop at the earliest deadline; on a manual clock only `advance()` fires them. A task's
callbacks go out one after another (its own order), different tasks' concurrently; each
backend gets its own connection limit and every attempt has a timeout, so a slow or dead
backend holds back nobody else.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from emulator.core import payloads
from emulator.core.clock import ClockMode, EmulatedClock
from emulator.core.config import RuntimeConfig
from emulator.core.signing import SignMode
from emulator.delivery.sender import Sender, SendError
from emulator.store.sqlite import Store

MAX_LOGGED_RESPONSE = 65536
# JSON is UTF-8 by definition (RFC 8259); SPEC section 2 names the bare media type.
HEADERS = {"Content-Type": "application/json", "User-Agent": "tiw-emulator"}

Listener = Callable[[dict[str, Any]], None]

TIMER_LEAD_S = 0.001
SQL_DELIVERING = "UPDATE events SET state = 'delivering' WHERE id = ?"
SQL_SETTLED = "UPDATE events SET state = ?, attempts = ?, due_at = ?, payload = ? WHERE id = ?"
SQL_ATTEMPT = (
    "INSERT INTO deliveries (id, event_id, task_id, event_type, attempt, url, request_body,"
    " status_code, response_body, error, started_at, duration_ms, ok, emulated_at, redelivery_of)"
    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
DELIVERY_KEYS = (
    "id",
    "event_id",
    "task_id",
    "event_type",
    "attempt",
    "url",
    "request_body",
    "status_code",
    "response_body",
    "error",
    "started_at",
    "duration_ms",
    "ok",
    "emulated_at",
    "redelivery_of",
)


class _Wave:
    """Counts down the events one advance() fired; `done` resolves when all have settled."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.remaining = 0
        self.done: asyncio.Future[None] = loop.create_future()

    def settle(self) -> None:
        self.remaining -= 1
        if self.remaining <= 0 and not self.done.done():
            self.done.set_result(None)


@dataclass
class Outgoing:
    """A callback waiting to be sent (one row of the events table)."""

    id: int
    task_id: str | None
    seq: int
    event_type: str
    due_at: float
    data_json: str
    sign_mode: SignMode
    sdk_app_id: int
    callback_url: str | None  # fixed URL for this event, else resolved when it is sent
    attempts: int = 0
    state: str = "scheduled"


class Engine:
    def __init__(
        self,
        *,
        store: Store,
        clock: EmulatedClock,
        config: Callable[[], RuntimeConfig],
        resolve_url: Callable[[Outgoing], str | None],
        connections_per_backend: int = 64,
    ) -> None:
        self._store = store
        self._clock = clock
        self._config = config
        self._resolve_url = resolve_url
        self._per_backend = connections_per_backend
        self._heap: list[tuple[float, int]] = []
        self._pending: dict[int, Outgoing] = {}
        self._queues: dict[str, deque[tuple[Outgoing, _Wave | None]]] = {}
        self._workers: set[asyncio.Task[None]] = set()
        self._gates: dict[str, asyncio.Semaphore] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due: float | None = None
        self._epoch = 0
        self._next_delivery_id = store.max_id("deliveries")
        self._listeners: list[Listener] = []
        self._loop = asyncio.new_event_loop()
        self._session: Any = None  # aiohttp.ClientSession, opened at the first https callback
        self._sender = Sender(HEADERS)
        self._thread = threading.Thread(target=self._run, name="tiw-engine", daemon=True)
        self._ready = threading.Event()

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, pending: Iterable[Outgoing] = ()) -> None:
        self._thread.start()
        self._ready.wait()
        self._call(self._add, list(pending))

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=10)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._ready.set()
        self._loop.run_forever()
        self._loop.close()

    def _https_session(self) -> Any:
        import aiohttp  # imported lazily: only https callbacks need it, and it is slow to import

        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, limit_per_host=self._per_backend),
            trust_env=False,  # callbacks go straight to the backend, never through a proxy
            skip_auto_headers=("User-Agent",),
        )
        return self._session

    async def _shutdown(self) -> None:
        if self._timer:
            self._timer.cancel()
        workers = list(self._workers)
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        self._sender.close()
        if self._session:
            await self._session.close()
        self._loop.call_soon(self._loop.stop)

    def _call(self, fn: Callable[..., Any], *args: Any) -> None:
        self._loop.call_soon_threadsafe(fn, *args)

    def _run_sync(self, coro: Any, timeout: float | None = None) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    # -- public, thread-safe -------------------------------------------------------------
    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener(delivery)` after every attempt (on the engine thread: keep it quick)."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def schedule(self, events: Iterable[Outgoing]) -> None:
        self._call(self._add, list(events))

    def cancel_task(self, task_id: str) -> None:
        self._run_sync(self._cancel(task_id))

    def clock_changed(self) -> None:
        """Re-arm the timer after a speed or mode change: the same due time, a new deadline."""
        self._call(self._rearm, True)

    def advance(self, seconds: float) -> dict[str, Any]:
        """Move the clock and fire, in due order, everything due by then; wait for the results."""
        return dict(self._run_sync(self._advance(seconds)))

    def send_now(self, event: Outgoing, *, redelivery_of: int | None = None) -> dict[str, Any]:
        """One immediate attempt, no retry (ad-hoc events and redeliveries)."""
        return dict(self._run_sync(self._attempt(event, self._epoch, redelivery_of)))

    def reset(self) -> None:
        self._run_sync(self._reset())

    def pending_count(self) -> int:
        return len(self._pending)

    # -- loop-thread internals -------------------------------------------------------------
    def _add(self, events: list[Outgoing]) -> None:
        for event in events:
            self._pending[event.id] = event
            heapq.heappush(self._heap, (event.due_at, event.id))
        self._rearm()

    def _rearm(self, force: bool = False) -> None:
        while self._heap and not self._is_live(*self._heap[0]):
            heapq.heappop(self._heap)
        due = self._heap[0][0] if self._heap else None
        if due == self._timer_due and self._timer is not None and not force:
            return
        if self._timer:
            self._timer.cancel()
            self._timer, self._timer_due = None, None
        if due is None:
            return
        deadline = self._clock.deadline_for(due)
        if deadline is None:  # manual clock: only advance() fires events
            return
        # asyncio rounds its poll timeout up to whole milliseconds, so a timer set for the
        # deadline fires up to 1 ms late: wake up to TIMER_LEAD_S early and finish exactly.
        delay = max(0.0, deadline - self._clock.monotonic() - TIMER_LEAD_S)
        self._timer = self._loop.call_later(delay, self._on_timer, deadline)
        self._timer_due = due

    def _on_timer(self, deadline: float) -> None:
        self._timer, self._timer_due = None, None
        early = deadline - self._clock.monotonic()
        if 0 < early <= TIMER_LEAD_S:
            time.sleep(early)  # at most TIMER_LEAD_S; precise, unlike the poll timeout
        self._fire_due(self._clock.now())
        self._rearm()

    def _is_live(self, due: float, event_id: int) -> bool:
        event = self._pending.get(event_id)
        return event is not None and event.state == "scheduled" and event.due_at == due

    def _fire_due(self, now: float, wave: _Wave | None = None) -> int:
        fired = 0
        heap, pending = self._heap, self._pending
        while heap and heap[0][0] <= now + 1e-9:
            due, event_id = heapq.heappop(heap)
            event = pending.get(event_id)
            if event is not None and event.state == "scheduled" and event.due_at == due:
                self._dispatch(event, wave)
                fired += 1
        return fired

    def _dispatch(self, event: Outgoing, wave: _Wave | None) -> None:
        """Queue the event behind its task's earlier callbacks; one worker drains each queue."""
        event.state = "delivering"
        self._store.defer(SQL_DELIVERING, (event.id,))
        if wave is not None:
            wave.remaining += 1
        key = event.task_id or f"adhoc-{event.id}"
        queue = self._queues.get(key)
        if queue is not None:
            queue.append((event, wave))
            return
        queue = self._queues[key] = deque([(event, wave)])
        worker = self._loop.create_task(self._drain(key, queue, self._epoch))
        self._workers.add(worker)
        worker.add_done_callback(self._workers.discard)

    async def _drain(
        self, key: str, queue: deque[tuple[Outgoing, _Wave | None]], epoch: int
    ) -> None:
        """Send a task's queued callbacks one after another, in the order they fell due."""
        try:
            while queue:
                event, wave = queue[0]
                try:
                    if epoch == self._epoch and event.state == "delivering":
                        # A failure here must not stop the task's later callbacks.
                        with contextlib.suppress(Exception):
                            await self._deliver(event, epoch)
                finally:
                    queue.popleft()
                    if wave is not None:
                        wave.settle()
        finally:
            if self._queues.get(key) is queue:
                del self._queues[key]
            for _, wave in queue:  # cancelled (shutdown): release anyone waiting
                if wave is not None:
                    wave.settle()

    async def _deliver(self, event: Outgoing, epoch: int) -> None:
        delivery = await self._attempt(event, epoch, None)
        if epoch != self._epoch or event.state != "delivering":
            return
        if delivery["ok"]:
            event.state = "delivered"
        else:
            delay = self._config().retry.delay_after(event.attempts)
            if delay is None:
                event.state = "failed"
            else:
                # The next try counts from when this attempt was made, in emulated time.
                event.due_at = round(delivery["emulated_at"] + delay, 3)
                event.state = "scheduled"
                heapq.heappush(self._heap, (event.due_at, event.id))
                self._rearm()
        if event.state != "scheduled":
            self._pending.pop(event.id, None)
        self._store.defer(
            SQL_SETTLED,
            (event.state, event.attempts, event.due_at, delivery["request_body"], event.id),
        )

    async def _attempt(
        self, event: Outgoing, epoch: int, redelivery_of: int | None
    ) -> dict[str, Any]:
        cfg = self._config()
        url = event.callback_url or self._resolve_url(event)
        event.attempts += 1
        status: int | None = None
        response: str | None = None
        error: str | None = None
        if url is None:
            error = "no callback URL configured: set callback_url in /api/config or on the task"
        # Wait for a free connection to this backend first: the timeout covers the attempt
        # itself, never the queue in front of a busy backend (which would cause false retries).
        async with self._gate(url):
            # A manual advance jumps the clock to its target; the attempt happened at its due time.
            manual = self._clock.mode is ClockMode.MANUAL
            emulated_at = event.due_at if manual else self._clock.now()
            started_wall = self._clock.wall()
            body = payloads.envelope_bytes(
                event.event_type,
                event.data_json,
                sdk_app_id=event.sdk_app_id,
                timestamp=int(started_wall),
                callback_key=cfg.callback_key,
                ttl_s=cfg.sign_ttl_s,
                sign_mode=event.sign_mode,
            )
            started = time.perf_counter()
            if url is not None:
                status, response, error = await self._post(url, body, cfg)
            duration_ms = round((time.perf_counter() - started) * 1000, 3)
        ok = status == 200 and (not cfg.strict_ack or _acknowledged(response))
        if status == 200 and not ok:
            error = 'strict_ack: response body is not {"error_code": 0}'
        self._next_delivery_id += 1
        delivery = {
            "id": self._next_delivery_id,
            "event_id": event.id,
            "task_id": event.task_id,
            "event_type": event.event_type,
            "attempt": event.attempts,
            "url": url,
            "request_body": body.decode(),
            "status_code": status,
            "response_body": response,
            "error": error,
            "started_at": round(started_wall, 6),
            "duration_ms": duration_ms,
            "ok": ok,
            "emulated_at": round(emulated_at, 3),
            "redelivery_of": redelivery_of,
        }
        if epoch == self._epoch:
            self._store.defer(SQL_ATTEMPT, tuple([delivery[k] for k in DELIVERY_KEYS]))
            for listener in list(self._listeners):
                with contextlib.suppress(Exception):  # a broken listener must not stop deliveries
                    listener(delivery)
        return delivery

    def _gate(self, url: str | None) -> asyncio.Semaphore:
        """The connection limit of the backend `url` points at (scheme, host and port)."""
        key = url.split("/", 3)[2] if url and url.count("/") >= 2 else ""
        gate = self._gates.get(key)
        if gate is None:
            gate = self._gates[key] = asyncio.Semaphore(self._per_backend)
        return gate

    async def _post(
        self, url: str, body: bytes, cfg: RuntimeConfig
    ) -> tuple[int | None, str | None, str | None]:
        try:
            async with asyncio.timeout(cfg.timeout_s):
                if url.startswith("http://"):
                    status, raw = await self._sender.post(url, body)
                else:
                    status, raw = await self._post_https(url, body)
            return status, raw[:MAX_LOGGED_RESPONSE].decode("utf-8", errors="replace"), None
        except TimeoutError:
            return None, None, f"timeout: no response within {cfg.timeout_s:g} s"
        except SendError as exc:
            return None, None, str(exc)
        except Exception as exc:  # e.g. an invalid URL; recorded, never raised into the loop
            return None, None, f"{type(exc).__name__}: {exc}"

    async def _post_https(self, url: str, body: bytes) -> tuple[int, bytes]:
        session = self._session or self._https_session()
        async with session.post(url, data=body, headers=HEADERS, allow_redirects=False) as resp:
            return resp.status, await resp.content.read(MAX_LOGGED_RESPONSE)

    async def _advance(self, seconds: float) -> dict[str, Any]:
        target = self._clock.advance(seconds)
        if self._clock.mode is ClockMode.REAL:
            target = self._clock.now()
        fired = 0
        while True:
            wave = _Wave(self._loop)
            count = self._fire_due(target, wave)
            if not count:
                break
            fired += count
            await wave.done
        self._rearm()
        return {"fired": fired, "now": round(self._clock.now(), 3)}

    async def _cancel(self, task_id: str) -> None:
        for event in self._pending.values():
            if event.task_id == task_id and event.state in ("scheduled", "delivering"):
                event.state = "cancelled"
        self._pending = {k: e for k, e in self._pending.items() if e.state != "cancelled"}
        self._rearm()

    async def _reset(self) -> None:
        self._epoch += 1
        self._heap.clear()
        self._pending.clear()
        self._queues.clear()
        self._next_delivery_id = 0
        self._rearm()


def _acknowledged(response: str | None) -> bool:
    try:
        return bool(json.loads(response or "").get("error_code") == 0)
    except (ValueError, AttributeError):
        return False
