"""Scheduling: which callbacks are due, when to wake up, and what one clock advance fires.

Runs on the delivery loop's thread only. Due events sit in a heap keyed by emulated due time;
on a real clock one timer wakes the loop at the earliest deadline, on a manual clock only
`advance` fires them. An advance fires in emulated due order, retries included: it hands
every event due by its target to its task's queue at once (dispatcher.py sends a task's queue
one after another), and a retry that falls due within the advance joins its task's queue at
its due place, ahead of the task's later events.
"""

from __future__ import annotations

import asyncio
import heapq
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from emulator.core.clock import ClockMode, EmulatedClock
from emulator.core.signing import SignMode
from emulator.store.base import NewEvent, Row

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
    # Taken over from a process that died (shared mode): its next attempt may be a duplicate.
    possible_duplicate: bool = False

    @classmethod
    def of(cls, event: NewEvent | Row) -> Outgoing:
        """The callback for a planned event (as inserted) or a stored events row."""
        row = vars(event) if isinstance(event, NewEvent) else event
        return cls(
            id=row["id"],
            task_id=row["task_id"],
            seq=row["seq"],
            event_type=row["event_type"],
            due_at=row["due_at"],
            data_json=row["event_data"],
            sign_mode=SignMode(row["sign_mode"]),
            sdk_app_id=row["sdk_app_id"],
            callback_url=row["callback_url"],
            attempts=row.get("attempts", 0),
            possible_duplicate=bool(row.get("possible_duplicate", False)),
        )


def task_key(event: Outgoing) -> str:
    """The queue an event goes out in: its task's, or its own for an ad-hoc event."""
    return event.task_id or f"adhoc-{event.id}"


class Wave:
    """The events one advance has in flight: it ends once every one has settled.

    `until` is the advance's target: a retry due by then is sent within the advance.
    """

    def __init__(self, until: float) -> None:
        self.until = until
        self.remaining = 0
        self.retried = 0  # retries sent within the advance (counted as fired)
        self._idle = asyncio.Event()

    def add(self) -> None:
        self.remaining += 1

    def settle(self) -> None:
        self.remaining -= 1
        if self.remaining <= 0:
            self._idle.set()

    async def wait(self) -> None:
        """Until nothing is in flight."""
        if self.remaining > 0:
            self._idle.clear()
            await self._idle.wait()


Dispatch = Callable[[Outgoing, "Wave | None"], None]


class Scheduler:
    """The heap and its timer (loop thread), plus an inbox other threads hand events to.

    A handed-over event wakes the loop only when no armed timer fires before it is due: the
    timer's own wake-up takes the inbox in. A burst of task creations thus costs one wake-up,
    or none, instead of a thread switch each; on a manual clock `advance` takes the inbox in.
    The inbox, the wake-up flag and the armed due time share one lock, so an event is never
    left in the inbox behind a timer that was moved later.
    """

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
        self._lock = threading.Lock()
        self._inbox: list[Outgoing] = []
        self._wake_pending = False

    def __len__(self) -> int:
        return len(self._pending) + len(self._inbox)

    # -- any thread ----------------------------------------------------------------------------
    def offer(self, events: list[Outgoing]) -> bool:
        """Hand events over; True when the caller must wake the loop (call `rearm` there)."""
        if not events:
            return False
        with self._lock:
            self._inbox.extend(events)
            if self._wake_pending or self._clock.mode is ClockMode.MANUAL:
                return False
            earliest = min(e.due_at for e in events)
            if self._timer_due is not None and self._timer_due <= earliest:
                return False  # that timer fires first and takes the inbox in
            self._wake_pending = True
            return True

    # -- the loop thread -------------------------------------------------------------------------
    def _take_inbox_locked(self) -> None:
        events, self._inbox = self._inbox, []
        self._wake_pending = False
        for event in events:
            self._push(event)

    def _push(self, event: Outgoing) -> None:
        event.state = "scheduled"
        self._pending[event.id] = event
        heapq.heappush(self._heap, (event.due_at, event.id))

    def add(self, events: list[Outgoing]) -> None:
        for event in events:
            self._push(event)
        self.rearm()

    def forget(self, event_id: int) -> None:
        self._pending.pop(event_id, None)

    def cancel_task(self, task_id: str) -> None:
        self._cancel(lambda event: event.task_id == task_id)

    def scheduled_ids(self) -> list[int]:
        with self._lock:
            self._take_inbox_locked()
        return [e.id for e in self._pending.values() if e.state == "scheduled"]

    def drop(self, event_ids: set[int]) -> None:
        """Forget these scheduled events (no longer this process's to send)."""
        self._cancel(lambda event: event.id in event_ids and event.state == "scheduled")

    def _cancel(self, which: Callable[[Outgoing], bool]) -> None:
        with self._lock:
            self._take_inbox_locked()
        for event in self._pending.values():
            if which(event):
                event.state = "cancelled"
        self._pending = {k: e for k, e in self._pending.items() if e.state != "cancelled"}
        self.rearm()

    def clear(self) -> None:
        with self._lock:
            self._inbox.clear()
            self._wake_pending = False
        self._heap.clear()
        self._pending.clear()
        self.rearm()

    def close(self) -> None:
        """Fire nothing more (shutting down); an advance in progress returns."""
        self._closed = True
        with self._lock:
            self._stop_locked()

    def _stop_locked(self) -> None:
        if self._timer:
            self._timer.cancel()
            self._timer, self._timer_due = None, None

    def rearm(self, force: bool = False) -> None:
        """Take the inbox in and (re)arm the timer for the earliest live event."""
        with self._lock:
            self._take_inbox_locked()
            while self._heap and not self._is_live(*self._heap[0]):
                heapq.heappop(self._heap)
            due = self._heap[0][0] if self._heap else None
            if due == self._timer_due and self._timer is not None and not force:
                return
            self._stop_locked()
            if due is None or self._closed:
                return
            deadline = self._clock.deadline_for(due)
            if deadline is None:  # manual clock: only advance() fires events
                return
            delay = max(0.0, deadline - self._clock.monotonic() - TIMER_LEAD_S)
            self._timer = self._loop.call_later(delay, self._on_timer, deadline)
            self._timer_due = due

    def _on_timer(self, deadline: float) -> None:
        with self._lock:
            self._timer, self._timer_due = None, None
            self._take_inbox_locked()
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

    async def advance(self, seconds: float) -> int:
        """Move the clock by `seconds` and fire what falls due, in due order, retries included.

        Every event due by the target goes to its task's queue at once, so each task sends its
        own in due order and no task holds back another; a retry due by the target joins its
        task's queue at its due place (the dispatcher does that). Returns, once every fired
        event has settled, how many attempts were sent.
        """
        target = self._clock.advance(seconds)
        if self._clock.mode is ClockMode.REAL:
            target = self._clock.now()
        wave, fired = Wave(target), 0
        while not self._closed:
            self.rearm()  # takes handed-over events in
            count = self.fire_due(target, wave)
            fired += count
            if not count and wave.remaining <= 0:
                break  # nothing due by the target, nothing in flight
            await wave.wait()
        self.rearm()
        return fired + wave.retried

    def fire_due(self, until: float, wave: Wave | None = None) -> int:
        """Dispatch, in due order, every live event due at or before `until`."""
        fired = 0
        heap, pending = self._heap, self._pending
        while heap and heap[0][0] <= until + 1e-9 and not self._closed:
            due, event_id = heapq.heappop(heap)
            event = pending.get(event_id)
            if event is None or event.state != "scheduled" or event.due_at != due:
                continue  # cancelled, already sent, or moved (a stale heap entry)
            event.state = "delivering"
            if wave is not None:
                wave.add()
            self._dispatch(event, wave)
            fired += 1
        return fired
