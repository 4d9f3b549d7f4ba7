"""The delivery engine: one asyncio thread running the scheduler and the dispatcher.

Every public method is thread-safe: it hands work to the loop's thread and, where it returns a
result, waits for it. `emulator.delivery.scheduler` decides what is due, `dispatcher` sends and
records, `transport` speaks HTTP.
"""

from __future__ import annotations

import asyncio
import selectors
import threading
from collections.abc import Callable, Coroutine, Iterable
from concurrent.futures import Future
from typing import Any, TypeVar

from emulator.core.clock import EmulatedClock
from emulator.core.config import RuntimeConfig
from emulator.core.threadname import name_os_thread
from emulator.delivery.dispatcher import HEADERS, Dispatcher
from emulator.delivery.scheduler import Outgoing, Scheduler
from emulator.delivery.transport import Transports
from emulator.store.base import NewEvent, Row, Store

T = TypeVar("T")
STOP_GRACE_S = 3.0
STOPPED = "the delivery engine has stopped"
Sent = tuple[Row, Future[Row] | None] | None


class SparePollSelector(selectors.DefaultSelector):
    """The loop's selector, skipping a zero-timeout poll that comes right after a poll.

    asyncio polls with timeout 0 before every batch of ready callbacks, and every poll lets go
    of the GIL: with request threads waiting for it, taking it back costs a thread switch and
    can wait up to the interpreter's switch interval. A callback's attempt made two such polls (its
    task's first step, its wake-up after the response), each right after the poll that brought
    the reason for it. Skipping every zero-timeout poll that directly follows a poll defers no
    I/O by more than one batch of callbacks, and timers are checked after either.
    """

    _polled = False

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if self._polled and timeout is not None and timeout <= 0:
            self._polled = False
            return []
        self._polled = True
        return super().select(timeout)


def new_loop() -> asyncio.AbstractEventLoop:
    """The event loop the engine runs (tests run the transports on it too)."""
    return asyncio.SelectorEventLoop(SparePollSelector())


class Handoff:
    """An ad-hoc attempt on its way to the loop, and the thread waiting for its result.

    A lock the waiter blocks on until the loop releases it: one futex wake, where a
    concurrent.futures.Future takes a condition variable and its callbacks on both sides.
    """

    __slots__ = ("_error", "_finished", "_result", "args")

    def __init__(
        self, event: Outgoing, epoch: int, redelivery_of: int | None, adhoc: NewEvent | None
    ) -> None:
        self.args = (event, epoch, redelivery_of, adhoc)
        self._result: Sent = None
        self._error: BaseException | None = None
        self._finished = threading.Lock()
        self._finished.acquire()

    def done(self, result: Sent) -> None:
        self._result = result
        self._finished.release()

    def fail(self, error: BaseException) -> None:
        self._error = error
        self._finished.release()

    def wait(self) -> Sent:
        self._finished.acquire()
        if self._error is not None:
            raise self._error
        return self._result


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
        self._loop = new_loop()
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
        # Ad-hoc attempts handed over by other threads; one wake-up takes every waiting one in.
        self._inbox_lock = threading.Lock()
        self._inbox: list[Handoff] = []
        self._wake_pending = False
        self._closed = False

    @property
    def thread_ident(self) -> int | None:
        """The engine thread's id (the pytest plugin attributes log records by it)."""
        return self._thread.ident

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, pending: Iterable[Outgoing] = ()) -> None:
        self._thread.start()
        self._ready.wait()
        self._call(self._scheduler.add, list(pending))

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self._wait(self._shutdown(), timeout=STOP_GRACE_S + 10)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        name_os_thread()
        asyncio.set_event_loop(self._loop)
        self._ready.set()
        self._loop.run_forever()
        self._loop.close()

    async def _shutdown(self) -> None:
        with self._inbox_lock:
            self._closed = True
            left, self._inbox = self._inbox, []
        for handoff in left:
            handoff.fail(RuntimeError(STOPPED))
        self._scheduler.close()
        await self._dispatcher.stop(STOP_GRACE_S)
        self._loop.call_soon(self._loop.stop)

    def _call(self, fn: Callable[..., Any], *args: Any) -> None:
        self._loop.call_soon_threadsafe(fn, *args)

    def _wait(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    # -- public, thread-safe -----------------------------------------------------------------
    def schedule(self, events: Iterable[Outgoing]) -> None:
        if self._scheduler.offer(list(events)):
            self._call(self._scheduler.rearm)

    def cancel_task(self, task_id: str) -> None:
        async def cancel() -> None:
            self._scheduler.cancel_task(task_id)

        self._wait(cancel())

    def clock_changed(self) -> None:
        """Re-arm the timer after a speed or mode change: the same due time, a new deadline."""

        self._call(self._scheduler.rearm, True)

    def advance(self, seconds: float) -> int:
        """Move the clock and fire, in due order, everything due by then; wait for the results."""
        return self._wait(self._scheduler.advance(seconds))

    def send_now(
        self,
        event: Outgoing,
        *,
        redelivery_of: int | None = None,
        adhoc: NewEvent | None = None,
    ) -> Sent:
        """One immediate attempt, no retry (ad-hoc events and redeliveries).

        Returns the attempt and the future of its stored row (None if a reset intervened);
        `adhoc` is the event's row to store with the attempt.
        """
        # Not run_coroutine_threadsafe: its chained futures and a self-pipe write per call
        # cost the loop more than the attempt's own work when requests trickle in one by one
        # (docs/benchmarks.md, "The engine when callbacks trickle in"). Waiting attempts share
        # one wake-up, and the loop hands the result straight to the waiting thread.
        handoff = Handoff(event, self._dispatcher.epoch, redelivery_of, adhoc)
        with self._inbox_lock:
            if self._closed:
                raise RuntimeError(STOPPED)
            self._inbox.append(handoff)
            wake, self._wake_pending = not self._wake_pending, True
        if wake:
            self._loop.call_soon_threadsafe(self._take_inbox)
        return handoff.wait()

    def _take_inbox(self) -> None:
        with self._inbox_lock:
            handoffs, self._inbox, self._wake_pending = self._inbox, [], False
        for handoff in handoffs:
            self._dispatcher.track(self._loop.create_task(self._send(handoff)))

    async def _send(self, handoff: Handoff) -> None:
        try:
            result = await self._dispatcher.attempt(*handoff.args)
        except asyncio.CancelledError:  # a stop ran out of grace
            handoff.fail(RuntimeError(STOPPED))
            raise
        except Exception as exc:  # the caller's to report
            handoff.fail(exc)
            return
        finally:
            self._dispatcher.untrack()
        handoff.done(result)

    def reset(self) -> None:
        """Forget everything scheduled; attempts still in flight are not recorded."""

        async def reset() -> None:
            self._dispatcher.reset()
            self._scheduler.clear()

        self._wait(reset())

    def scheduled_ids(self) -> list[int]:
        """The ids of the events waiting for their due time."""

        async def ids() -> list[int]:
            return self._scheduler.scheduled_ids()

        return self._wait(ids())

    def drop(self, event_ids: set[int]) -> None:
        """Forget these scheduled events (shared mode: no longer this process's to send)."""
        self._call(self._scheduler.drop, event_ids)

    def forget_scheduled(self) -> None:
        """Drop every scheduled callback but let attempts in flight finish and be recorded
        (shared mode: peers took this process's events over while it was unresponsive)."""
        self._call(self._scheduler.clear)

    def pending_count(self) -> int:
        return len(self._scheduler)
