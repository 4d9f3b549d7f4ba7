"""The write-behind queue of the delivery hot path: ordered, bounded, never dropped.

Producers (the delivery engine) `put` writes; a flusher thread commits them in batches through
the store's `commit` callback while holding the store's lock, and readers flush under the same
lock before they read. A batch leaves the queue only after its commit succeeded: a refused commit
(disk full, read-only file) keeps it queued, sets `error`, and is retried with a growing pause.
When the queue is full, `put` waits for room (back-pressure) instead of growing memory.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from emulator.core.threadname import name_os_thread
from emulator.store.base import AttemptListener, NewEvent, Row

log = logging.getLogger("tiw_emulator.store")

Op = tuple[str, Any]
Commit = Callable[[list[Op]], list[tuple["Future[Any] | None", Any]]]


EARLY_FLUSH = 2_000  # queued writes that wake the flusher before its interval is up
# Queued writes are committed `interval_s` (10 ms) after the first of them. Measured and not
# taken: a steady stream every 50 ms costs the writer less CPU per callback (23-27 us against
# 37-50 us at 1,000 callbacks/s, docs/benchmarks.md), but a 50 ms batch holds the GIL five times
# as long while it is built and committed, and the delivery thread waits behind it: lateness p99
# at 1,000/s went from 0.60 to 0.89 ms (1.48x the first release; bench.compare b4a4742, 5
# rounds, quiet machine), against 0.73 vs 0.76 ms (0.96x) at 10 ms, throughput 1.09x either way.


class Discarded(Exception):
    """A queued write forgotten by a reset."""


class WriteQueue:
    def __init__(
        self,
        commit: Commit,
        *,
        lock: threading.RLock,
        max_pending: int = 50_000,
        interval_s: float = 0.01,
        max_backoff_s: float = 1.0,
        on_committed: Callable[[Any], None] | None = None,
    ) -> None:
        self._commit = commit
        self._lock = lock
        self._max = max_pending
        self._interval = interval_s
        self._max_backoff = max_backoff_s
        self._pending: deque[Op] = deque()
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self.error: str | None = None
        # Told of every attempt row once committed (the store's listeners).
        self.on_committed = on_committed
        self._thread = threading.Thread(target=self._run, name="tiw-store-writer", daemon=True)
        self._thread.start()

    def put(self, kind: str, op: Any) -> None:
        self.put_many(((kind, op),))

    def put_many(self, ops: tuple[Op, ...]) -> None:
        """Queue writes that belong together (an attempt and its event's state) at once."""
        with self._cond:
            while len(self._pending) >= self._max and not self._stopping.is_set():
                self._cond.notify_all()
                self._cond.wait(0.5)
            before = len(self._pending)
            self._pending.extend(ops)
            if before == 0 or before < EARLY_FLUSH <= len(self._pending):
                self._cond.notify_all()  # wake the flusher: from idle, or early for a big batch

    def __len__(self) -> int:
        return len(self._pending)

    def flush_locked(self) -> None:
        """Commit everything queued; the caller holds the store's lock."""
        with self._cond:
            batch = list(self._pending)
        if not batch:
            return
        try:
            done = self._commit(batch)
        except Exception as exc:
            if self.error != str(exc):
                log.error("storage error, %d writes kept queued: %s", len(batch), exc)
            self.error = str(exc)
            raise
        if self.error is not None:
            log.warning("storage recovered: %d queued writes committed", len(batch))
        self.error = None
        with self._cond:
            for _ in batch:
                self._pending.popleft()
            self._cond.notify_all()
        for future, row in done:
            if self.on_committed is not None:
                self.on_committed(row)
            if future is not None:
                future.set_result(row)

    def discard_locked(self) -> None:
        """Forget every queued write (a reset); the caller holds the store's lock."""
        with self._cond:
            batch = list(self._pending)
            self._pending.clear()
            self._cond.notify_all()
        self.error = None
        for kind, op in batch:
            if kind == "attempt" and op[1] is not None:  # (row, future or None, ad-hoc event)
                op[1].set_exception(Discarded("forgotten by a reset"))

    def stop(self) -> None:
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        name_os_thread()
        backoff = self._interval
        while not self._stopping.is_set():
            with self._cond:
                while not self._pending and not self._stopping.is_set():
                    self._cond.wait()
                # Gather a batch (or pause after an error); a big batch is committed at once.
                deadline = time.monotonic() + backoff
                while len(self._pending) < EARLY_FLUSH and not self._stopping.is_set():
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
            if self._stopping.is_set():
                return
            try:
                with self._lock:
                    self.flush_locked()
                backoff = self._interval
            except Exception:  # reported through `error`; the writes stay queued
                backoff = min(self._max_backoff, backoff * 2)


@dataclass
class SortedBatch:
    """A batch of hot-path writes grouped by kind, for one statement per kind.

    Attempts keep their order; each event keeps only its last settle (that one has the last
    word); a 'delivering' mark is kept only if no settle of its event follows it in the batch
    (kept, it would turn a retry's 'scheduled' back into 'delivering'). Committed as attempts,
    then settles, then the marks (which only touch a still-scheduled event), the final state
    is the one the batch's order gives.
    """

    attempts: list[tuple[Row, Future[Row] | None, None]] = field(default_factory=list)
    adhocs: list[tuple[Row, Future[Row] | None, NewEvent]] = field(default_factory=list)
    settles: list[tuple[Any, ...]] = field(default_factory=list)  # (state, ..., event id)
    delivering: list[int] = field(default_factory=list)


def sort_batch(batch: list[Op]) -> SortedBatch:
    sorted_ = SortedBatch()
    settled: set[int] = set()
    for kind, op in reversed(batch):
        if kind == "attempt":
            (sorted_.adhocs if op[2] is not None else sorted_.attempts).append(op)
        elif kind == "settle":
            if op[-1] not in settled:
                settled.add(op[-1])
                sorted_.settles.append(op)
        elif op not in settled:
            sorted_.delivering.append(op)
    for part in (sorted_.attempts, sorted_.adhocs, sorted_.settles, sorted_.delivering):
        part.reverse()
    return sorted_


class WriteBehind:
    """The delivery hot path both stores share: writes queued on `_writes`, committed in order
    by the store's commit callback, and listeners told of each attempt once it is committed."""

    _writes: WriteQueue
    _lock: threading.RLock
    _listeners: list[AttemptListener]

    def mark_delivering(self, event_id: int) -> None:
        self._writes.put("delivering", event_id)

    def record_attempt(self, attempt: Row, adhoc: NewEvent | None = None) -> Future[Row]:
        future: Future[Row] = Future()
        self._writes.put("attempt", (attempt, future, adhoc))
        return future

    def log_attempt(self, attempt: Row, settle: tuple[str, int, float] | None = None) -> None:
        """Queue an attempt nobody waits for (the delivery hot path), and with `settle`
        (state, attempts, due_at) its event's new state, in one go."""
        if settle is None:
            self._writes.put("attempt", (attempt, None, None))
            return
        state, attempts, due_at = settle
        row = (state, attempts, due_at, attempt["request_body"], attempt["event_id"])
        self._writes.put_many((("attempt", (attempt, None, None)), ("settle", row)))

    def subscribe(self, listener: AttemptListener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def flush(self, until: Future[Any] | None = None) -> None:
        with self._lock:
            # Group commit: a caller that waited here for another's flush may find the write it
            # needs committed by it (its future is set under this lock) and so skips a commit.
            if until is None or not until.done():
                self._writes.flush_locked()

    def queued_writes(self) -> int:
        """Hot-path writes not committed yet (bounded by max_pending)."""
        return len(self._writes)

    def _notify(self, row: Row) -> None:
        for listener in list(self._listeners):
            try:
                listener(row)
            except Exception:  # a broken listener must not stop the attempt log
                log.exception("attempt listener failed")
