"""Shared mode: keep this process in step with the others sharing a PostgreSQL database.

One thread per process waits for the notices other processes commit (a changed config, rules,
user scenarios or callback URLs, a reset, a cancelled task) and hands each to the core at once;
between notices it renews this process's lease (its heartbeat) and sweeps for pending events
that dead processes claimed, or that a process stopping cleanly gave back, and schedules them
here. The store (`SharedStore`) holds the SQL; this module only paces it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from emulator.core.clock import EmulatedClock
from emulator.store.base import Row, SharedStore, StorageError

log = logging.getLogger("tiw_emulator")

SWEEP_S = 1.0  # how often to look for orphaned events (also at once when told of released ones)


def take_over(store: SharedStore, clock: EmulatedClock) -> list[Row]:
    """Claim what dead or stopped processes left pending."""
    return store.take_over(clock.now())


class SharedMode:
    def __init__(
        self,
        store: SharedStore,
        *,
        clock: EmulatedClock,
        on_notice: Callable[[Any], None],
        on_taken: Callable[[list[Row]], None],
        on_lost_lease: Callable[[], None],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._clock = clock
        self._on_notice = on_notice
        self._on_taken = on_taken
        self._on_lost_lease = on_lost_lease
        self._monotonic = monotonic
        self._beat_s = store.beat_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tiw-shared", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self._stop.set()
        with contextlib.suppress(StorageError):
            self._store.wake()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        next_beat = next_sweep = self._monotonic()
        while not self._stop.is_set():
            wait = max(0.0, min(next_beat, next_sweep) - self._monotonic())
            try:
                notices = self._store.notices(wait)
            except Exception:  # the listener reports its own losses through health()
                log.exception("waiting for notices failed")
                notices = []
                self._stop.wait(wait or SWEEP_S)
            if self._stop.is_set():
                return
            sweep = False
            for notice in notices:
                sweep = sweep or notice.kind in ("claims", "resync")
                try:
                    self._on_notice(notice)
                except Exception:
                    log.exception("applying a change from another process failed: %s", notice)
            now = self._monotonic()
            if now >= next_beat:
                next_beat = now + self._beat_s
                sweep = self._beat() or sweep
            if sweep or now >= next_sweep:
                next_sweep = now + SWEEP_S
                self._sweep()

    def _beat(self) -> bool:
        """Renew the lease; True when it had run out (sweep at once for what is left)."""
        try:
            if self._store.heartbeat():
                return False
        except StorageError:
            return False  # health() reports the lost connection; retried at the next beat
        self._on_lost_lease()
        return True

    def _sweep(self) -> None:
        try:
            rows = take_over(self._store, self._clock)
        except StorageError:
            return
        if rows:
            log.info("took over %d pending events", len(rows))
            self._on_taken(rows)
