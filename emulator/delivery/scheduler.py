"""Scheduling: which callbacks are due, when to wake up, and what one clock advance fires.

Runs on the delivery loop's thread only. Due events sit in a heap keyed by emulated due time;
on a real clock one timer wakes the loop at the earliest deadline, on a manual clock only
`advance` fires them. An advance fires in emulated due order, retries included: it works in
windows no longer than the retry policy's shortest delay, so no retry can fall due inside a
window whose later events were already sent.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Callable
from dataclasses import dataclass

from emulator.core.clock import ClockMode, EmulatedClock
from emulator.core.signing import SignMode

# asyncio rounds its poll timeout up to whole milliseconds, so a timer set for the deadline
# fires up to 1 ms late: wake up to TIMER_LEAD_S early and finish the wait precisely.
TIMER_LEAD_S = 0.001


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


class Wave:
    """Counts down the events one advance window fired; `done` resolves when all have settled."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.remaining = 0
        self.done: asyncio.Future[None] = loop.create_future()

    def add(self) -> None:
        self.remaining += 1

    def settle(self) -> None:
        self.remaining -= 1
        if self.remaining <= 0 and not self.done.done():
            self.done.set_result(None)


Dispatch = Callable[[Outgoing, "Wave | None"], None]


class Scheduler:
    def __init__(
        self, loop: asyncio.AbstractEventLoop, clock: EmulatedClock, dispatch: Dispatch
    ) -> None:
        self._loop = loop
        self._clock = clock
        self._dispatch = dispatch
        self._heap: list[tuple[float, int]] = []
        self._pending: dict[int, Outgoing] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due: float | None = None
        self._closed = False

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, events: list[Outgoing]) -> None:
        for event in events:
            event.state = "scheduled"
            self._pending[event.id] = event
            heapq.heappush(self._heap, (event.due_at, event.id))
        self.rearm()

    def forget(self, event_id: int) -> None:
        self._pending.pop(event_id, None)

    def cancel_task(self, task_id: str) -> None:
        for event in self._pending.values():
            if event.task_id == task_id:
                event.state = "cancelled"
        self._pending = {k: e for k, e in self._pending.items() if e.state != "cancelled"}
        self.rearm()

    def clear(self) -> None:
        self._heap.clear()
        self._pending.clear()
        self.rearm()

    def close(self) -> None:
        """Fire nothing more (shutting down); an advance in progress returns."""
        self._closed = True
        self.stop()

    def stop(self) -> None:
        if self._timer:
            self._timer.cancel()
            self._timer, self._timer_due = None, None

    def rearm(self, force: bool = False) -> None:
        while self._heap and not self._is_live(*self._heap[0]):
            heapq.heappop(self._heap)
        due = self._heap[0][0] if self._heap else None
        if due == self._timer_due and self._timer is not None and not force:
            return
        self.stop()
        if due is None or self._closed:
            return
        deadline = self._clock.deadline_for(due)
        if deadline is None:  # manual clock: only advance() fires events
            return
        delay = max(0.0, deadline - self._clock.monotonic() - TIMER_LEAD_S)
        self._timer = self._loop.call_later(delay, self._on_timer, deadline)
        self._timer_due = due

    def _on_timer(self, deadline: float) -> None:
        self._timer, self._timer_due = None, None
        early = deadline - self._clock.monotonic()
        if 0 < early <= TIMER_LEAD_S:
            time.sleep(early)  # at most TIMER_LEAD_S; precise, unlike the poll timeout
        self.fire_due(self._clock.now())
        self.rearm()

    def _is_live(self, due: float, event_id: int) -> bool:
        event = self._pending.get(event_id)
        return event is not None and event.state == "scheduled" and event.due_at == due

    def next_due(self) -> float | None:
        self.rearm()
        return self._heap[0][0] if self._heap else None

    def fire_due(self, until: float, wave: Wave | None = None) -> int:
        """Dispatch, in due order, every live event due at or before `until`."""
        fired = 0
        heap = self._heap
        while heap and heap[0][0] <= until + 1e-9 and not self._closed:
            due, event_id = heapq.heappop(heap)
            if self._is_live(due, event_id):
                event = self._pending[event_id]
                event.state = "delivering"
                if wave is not None:
                    wave.add()
                self._dispatch(event, wave)
                fired += 1
        return fired

    async def advance(self, seconds: float, min_retry_delay: float | None) -> int:
        """Move the clock by `seconds` and fire what falls due, window by window, in due order.

        Returns once every fired event has settled (sent, failed, or rescheduled as a retry).
        """
        target = self._clock.advance(seconds)
        if self._clock.mode is ClockMode.REAL:
            target = self._clock.now()
        fired = 0
        while True:
            first = self.next_due()
            if first is None or first > target + 1e-9:
                break
            until = target
            if min_retry_delay is not None:
                # A retry lands at least min_retry_delay after its attempt: nothing fired
                # in this window can be overtaken by a retry born inside it.
                until = min(target, first + min_retry_delay - 1e-6) if min_retry_delay else first
            wave = Wave(self._loop)
            count = self.fire_due(until, wave)
            if count:
                fired += count
                await wave.done
        self.rearm()
        return fired
