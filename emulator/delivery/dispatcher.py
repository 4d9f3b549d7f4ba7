"""Dispatch: send each due callback in its task's order, through its backend's gate, and record it.

A task's callbacks go out one after another, different tasks' concurrently. Each backend
(scheme, host and port) has its own connection limit, and the attempt's timeout starts only once
a connection is free, so a queue in front of a busy backend never causes a false retry. Every
attempt is recorded in the store; a failed one is rescheduled by the retry policy, in emulated
time, counting from when the attempt was made.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future

from emulator.core import payloads
from emulator.core.ack import acknowledged, reason_not_acknowledged
from emulator.core.clock import ClockMode, EmulatedClock
from emulator.core.config import RuntimeConfig
from emulator.delivery.scheduler import Outgoing, Scheduler, Wave, task_key
from emulator.delivery.transport import AttemptResult, Transports
from emulator.store.base import NewEvent, Row, Store

# JSON is UTF-8 by definition (RFC 8259); SPEC section 2 names the bare media type.
HEADERS = {"Content-Type": "application/json", "User-Agent": "tiw-emulator"}
NO_URL = "no callback URL configured: set callback_url in /api/config or on the task"

Queue = deque[tuple[Outgoing, Wave | None]]


class Dispatcher:
    def __init__(
        self,
        *,
        loop: asyncio.AbstractEventLoop,
        store: Store,
        clock: EmulatedClock,
        config: Callable[[], RuntimeConfig],
        resolve_url: Callable[[Outgoing], str | None],
        transports: Transports,
        connections_per_backend: int,
    ) -> None:
        self._loop = loop
        self._store = store
        self._clock = clock
        self._config = config
        self._resolve_url = resolve_url
        self._transports = transports
        self._per_backend = connections_per_backend
        self._queues: dict[str, Queue] = {}
        self._workers: set[asyncio.Task[None]] = set()
        self._gates: dict[str, Gate] = {}
        self.scheduler: Scheduler | None = None
        self.epoch = 0
        self.stopping = False

    # -- queues ------------------------------------------------------------------------------
    def dispatch(self, event: Outgoing, wave: Wave | None) -> None:
        """Queue the event behind its task's earlier callbacks; one worker drains each queue."""
        key = task_key(event)
        queue = self._queues.get(key)
        if queue is not None:
            queue.append((event, wave))
            return
        queue = self._queues[key] = deque([(event, wave)])
        self.track(self._loop.create_task(self._drain(key, queue, self.epoch)))

    def track(self, worker: asyncio.Task[None]) -> None:
        """Count the task among the attempts a stop waits for (and cancels after its grace);
        it calls `untrack` as it ends. Not add_done_callback: that schedules one more loop
        iteration (a poll and a GIL hand-over) after every callback's task."""
        self._workers.add(worker)

    def untrack(self) -> None:
        """The running task has ended its work (called in its `finally`)."""
        self._workers.discard(asyncio.current_task(self._loop))

    async def _drain(self, key: str, queue: Queue, epoch: int) -> None:
        """Send a task's queued callbacks one after another, in the order they fell due."""
        try:
            while queue and not self.stopping:
                event, wave = queue[0]
                try:
                    if epoch == self.epoch and event.state == "delivering":
                        await self._deliver(event, epoch, queue, wave)
                finally:
                    queue.popleft()
                    if wave is not None:
                        wave.settle()
        finally:
            self.untrack()
            if self._queues.get(key) is queue:
                del self._queues[key]
            for event, wave in queue:  # stopped: not attempted, so still scheduled in the store
                event.state = "scheduled"
                if wave is not None:
                    wave.settle()

    async def _deliver(self, event: Outgoing, epoch: int, queue: Queue, wave: Wave | None) -> None:
        recorded = await self.attempt(event, epoch, None, wait=False)
        if recorded is None:
            return
        attempt, _ = recorded
        if event.state != "delivering":  # cancelled while in flight: logged, not settled
            self._store.log_attempt(attempt)
            return
        scheduler = self.scheduler
        assert scheduler is not None
        requeue = False
        if attempt["ok"]:
            event.state = "delivered"
        else:
            delay = self._config().retry.delay_after(event.attempts)
            if delay is None:
                event.state = "failed"
            else:
                event.due_at = round(attempt["emulated_at"] + delay, 3)
                event.state = "scheduled"
                # Due within this advance: it goes out next in its task's due order, from here.
                requeue = wave is not None and event.due_at <= wave.until + 1e-9
                if not requeue:
                    scheduler.add([event])
        if event.state != "scheduled":
            scheduler.forget(event.id)
        self._store.log_attempt(attempt, (event.state, event.attempts, event.due_at))
        if requeue:
            assert wave is not None
            _insert_by_due(queue, event, wave)

    # -- one attempt ---------------------------------------------------------------------------
    async def attempt(
        self,
        event: Outgoing,
        epoch: int,
        redelivery_of: int | None,
        adhoc: NewEvent | None = None,
        *,
        wait: bool = True,
    ) -> tuple[Row, Future[Row] | None] | None:
        """Send once and record it (with `adhoc`, the event's row too, in one commit); None
        when a reset made the attempt moot. With `wait`, the future of the stored row."""
        cfg = self._config()
        url = event.callback_url or self._resolve_url(event)
        event.attempts += 1
        # Wait for a free connection to this backend first: the timeout covers the attempt
        # itself, never the queue in front of a busy backend (which would cause false retries).
        async with self._gate(url):
            # A manual advance jumps the clock; the attempt happened at the event's due time.
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
            if event.task_id is not None and epoch == self.epoch:
                self._store.mark_delivering(event.id)
            started = time.perf_counter()
            if url is None:
                result = AttemptResult(None, None, None, NO_URL)
            else:
                result = await self._transports.post(url, body, timeout_s=cfg.timeout_s)
            duration_ms = round((time.perf_counter() - started) * 1000, 3)
        ok = result.error is None and acknowledged(
            result.status_code, result.response_body, strict=cfg.strict_ack
        )
        error = None if ok else result.error or reason_not_acknowledged(result.status_code, None)
        if epoch != self.epoch:
            return None
        attempt: Row = {
            "event_id": event.id or None,
            "task_id": event.task_id,
            "event_type": event.event_type,
            "attempt": event.attempts,
            "url": url,
            "request_headers": request_headers(url, len(body)),
            "request_body": body.decode(),
            "status_code": result.status_code,
            "response_headers": result.response_headers,
            "response_body": result.response_body,
            "error": error,
            "started_at": round(started_wall, 6),
            "duration_ms": duration_ms,
            "ok": ok,
            "emulated_at": round(emulated_at, 3),
            "redelivery_of": redelivery_of,
            "possible_duplicate": event.possible_duplicate,
        }
        event.possible_duplicate = False
        if not wait:  # the hot path: the caller logs it with its event's new state
            return attempt, None
        return attempt, self._store.record_attempt(attempt, adhoc)

    def _gate(self, url: str | None) -> Gate:
        """The connection limit of the backend `url` points at (scheme, host and port)."""
        key = url.split("/", 3)[2] if url and url.count("/") >= 2 else ""
        gate = self._gates.get(key)
        if gate is None:
            gate = self._gates[key] = Gate(self._per_backend)
        return gate

    # -- lifecycle -------------------------------------------------------------------------------
    def reset(self) -> None:
        self.epoch += 1
        self._queues.clear()

    async def stop(self, grace_s: float) -> None:
        """Let attempts in flight finish (up to `grace_s`), start no new one, then cancel."""
        self.stopping = True
        workers = list(self._workers)
        if workers:
            await asyncio.wait(workers, timeout=grace_s)
        for task in workers:
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*workers, return_exceptions=True)
        await self._transports.close()


class Gate:
    """A backend's connection limit: a first-come, first-served semaphore that hands a freed
    slot straight to the next waiter. asyncio.Semaphore rescans its waiters on acquire and
    release (a tenth of the engine's profile with 2,000 tasks behind 64 connections)."""

    __slots__ = ("_free", "_waiters")

    def __init__(self, slots: int) -> None:
        self._free = slots
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def __aenter__(self) -> None:
        if self._free > 0:  # a free slot means nobody is waiting: slots go to waiters first
            self._free -= 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release()  # handed a slot just as the cancellation came: pass it on
            else:
                with contextlib.suppress(ValueError):  # a release may have dropped it already
                    self._waiters.remove(waiter)
            raise

    async def __aexit__(self, *exc: object) -> None:
        self._release()

    def _release(self) -> None:
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1


def _insert_by_due(queue: Queue, event: Outgoing, wave: Wave) -> None:
    """Queue a retry at its due place behind the attempt in flight (queue[0]), in (due, id)
    order as the scheduler's heap would fire it; it stays the scheduler's pending event."""
    event.state = "delivering"
    wave.add()
    wave.retried += 1
    place = (event.due_at, event.id)
    at = 1
    while at < len(queue) and (queue[at][0].due_at, queue[at][0].id) <= place:
        at += 1
    queue.insert(at, (event, wave))


def request_headers(url: str | None, length: int) -> dict[str, str]:
    """The headers an attempt sends, as the attempt log shows them (a new dict each time)."""
    return {**_url_headers(url), "Content-Length": str(length)}


@functools.lru_cache(maxsize=1024)  # a few backends, thousands of attempts each
def _url_headers(url: str | None) -> dict[str, str]:
    """Host and the fixed headers for `url`; callers copy it, never change it."""
    host = url.split("/", 3)[2] if url and url.count("/") >= 2 else ""
    host = host.rpartition("@")[2]  # user:password@ is never sent in Host
    return {"Host": host, **HEADERS}
