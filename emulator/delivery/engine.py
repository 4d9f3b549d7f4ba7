"""The delivery engine: one asyncio thread running the scheduler and the dispatcher.

Every public method is thread-safe: it hands work to the loop's thread and, where it returns a
result, waits for it. `emulator.delivery.scheduler` decides what is due, `dispatcher` sends and
records, `transport` speaks HTTP.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterable
from concurrent.futures import Future
from typing import Any, TypeVar

from emulator.core.clock import ClockMode, EmulatedClock
from emulator.core.config import RuntimeConfig
from emulator.delivery.dispatcher import HEADERS, Dispatcher
from emulator.delivery.scheduler import Outgoing, Scheduler
from emulator.delivery.transport import Transports
from emulator.store.base import NewEvent, Row, Store

T = TypeVar("T")
STOP_GRACE_S = 3.0


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
        self._config = config
        self._loop = asyncio.new_event_loop()
        self._dispatcher = Dispatcher(
            loop=self._loop,
            store=store,
            clock=clock,
            config=config,
            resolve_url=resolve_url,
            transports=Transports(HEADERS, connections_per_backend=connections_per_backend),
            connections_per_backend=connections_per_backend,
        )
        self._scheduler = Scheduler(self._loop, clock, self._dispatcher.dispatch)
        self._dispatcher.scheduler = self._scheduler
        self._thread = threading.Thread(target=self._run, name="tiw-engine", daemon=True)
        self._ready = threading.Event()
        self._clock = clock
        # Events handed over by other threads, taken in by the loop in one go: a burst of
        # task creations wakes the loop once, and on a manual clock not at all (each wake-up
        # is a thread switch the creating request pays for).
        self._inbox: list[Outgoing] = []
        self._inbox_lock = threading.Lock()
        self._wake_pending = False

    @property
    def thread_ident(self) -> int | None:
        """The engine thread's id (the pytest plugin attributes log records by it)."""
        return self._thread.ident

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, pending: Iterable[Outgoing] = ()) -> None:
        self._thread.start()
        self._ready.wait()
        self._call(self._scheduler.add, list(pending))
        self.schedule(())  # take in whatever was handed over before the start

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self._wait(self._shutdown(), timeout=STOP_GRACE_S + 10)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._ready.set()
        self._loop.run_forever()
        self._loop.close()

    async def _shutdown(self) -> None:
        self._scheduler.close()
        await self._dispatcher.stop(STOP_GRACE_S)
        self._loop.call_soon(self._loop.stop)

    def _call(self, fn: Callable[..., Any], *args: Any) -> None:
        self._loop.call_soon_threadsafe(fn, *args)

    def _wait(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    # -- public, thread-safe -----------------------------------------------------------------
    def schedule(self, events: Iterable[Outgoing]) -> None:
        with self._inbox_lock:
            self._inbox.extend(events)
            if self._wake_pending or self._clock.mode is ClockMode.MANUAL:
                return
            self._wake_pending = True
        self._call(self._take_inbox)

    def _take_inbox(self) -> None:
        """On the loop: move handed-over events into the scheduler."""
        with self._inbox_lock:
            events, self._inbox = self._inbox, []
            self._wake_pending = False
        if events:
            self._scheduler.add(events)

    def cancel_task(self, task_id: str) -> None:
        async def cancel() -> None:
            self._take_inbox()
            self._scheduler.cancel_task(task_id)

        self._wait(cancel())

    def clock_changed(self) -> None:
        """Re-arm the timer after a speed or mode change: the same due time, a new deadline."""

        def rearm() -> None:
            self._take_inbox()
            self._scheduler.rearm(True)

        self._call(rearm)

    def advance(self, seconds: float) -> int:
        """Move the clock and fire, in due order, everything due by then; wait for the results."""
        retry = self._config().retry
        min_delay = retry.delay_after(1) if retry.max_attempts > 1 else None

        async def advance() -> int:
            self._take_inbox()
            return await self._scheduler.advance(seconds, min_delay)

        return self._wait(advance())

    def send_now(
        self,
        event: Outgoing,
        *,
        redelivery_of: int | None = None,
        adhoc: NewEvent | None = None,
    ) -> tuple[Row, Future[Row]] | None:
        """One immediate attempt, no retry (ad-hoc events and redeliveries).

        Returns the attempt and the future of its stored row (None if a reset intervened);
        `adhoc` is the event's row to store with the attempt.
        """
        epoch = self._dispatcher.epoch
        return self._wait(self._dispatcher.attempt(event, epoch, redelivery_of, adhoc))

    def reset(self) -> None:
        """Forget everything scheduled; attempts still in flight are not recorded."""

        async def reset() -> None:
            with self._inbox_lock:
                self._inbox.clear()
            self._dispatcher.reset()
            self._scheduler.clear()

        self._wait(reset())

    def pending_count(self) -> int:
        return len(self._scheduler) + len(self._inbox)
