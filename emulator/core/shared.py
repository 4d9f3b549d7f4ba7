"""Shared mode: keep this process in step with the others sharing a PostgreSQL database.

One thread per process waits for the notices other processes commit (a changed config, rules,
user scenarios or callback URLs, a reset, a cancelled task) and hands each to the core at once;
between notices it renews this process's lease (its heartbeat) and sweeps for pending events
that dead processes claimed, or that a process stopping cleanly gave back, and schedules them
here (`SharedMode`). `SharedChanges`, a mixin of the core, applies the notices and keeps the
clock's anchor with the config. The store (`SharedStore`) holds the SQL; this module only
paces it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from emulator.core.clock import EmulatedClock
from emulator.core.config import RuntimeConfig, runtime_from
from emulator.core.scenarios import parse_scenario
from emulator.core.threadname import name_os_thread
from emulator.store.base import Row, SharedStore, StorageError

if TYPE_CHECKING:
    from emulator.core.scenarios import Catalogue
    from emulator.delivery.engine import Engine
    from emulator.store.base import Store

log = logging.getLogger("tiw_emulator")

SWEEP_S = 1.0  # how often to look for orphaned events (also at once when told of released ones)


def take_over(store: SharedStore, clock: EmulatedClock) -> list[Row]:
    """Claim what dead or stopped processes left pending."""
    return store.take_over(clock.now())


class SharedMode:
    """The thread that keeps this process in step: notices, heartbeat, sweep."""

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
        name_os_thread()
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


class SharedChanges:
    """Shared mode in the core (a mixin of `Emulator`): the clock's anchor saved with the
    config, the peers' count for the manual clock, and the changes other processes commit."""

    store: Store
    clock: EmulatedClock
    engine: Engine
    catalogue: Catalogue
    _config: RuntimeConfig
    _config_lock: threading.Lock
    _app_callbacks: dict[int, str]
    _storage: Callable[[Callable[[], Any]], Any]
    _rules_changed: Callable[[], None]
    _forget_user_state: Callable[[], None]

    def _stored_config(
        self, config: RuntimeConfig, anchor: dict[str, float] | None = None
    ) -> dict[str, Any]:
        """The config as saved; shared mode adds the clock's anchor, which peers follow."""
        stored = config.stored()
        if self.store.shared:
            stored["clock_anchor"] = anchor or self.clock.anchor()
        return stored

    def _peers(self) -> list[str]:
        """The other live processes sharing the database (shared mode), else none."""
        if not self.store.shared:
            return []
        return list(self._storage(cast(SharedStore, self.store).peers))

    # -- changes other processes made ---------------------------------------------------------
    def apply_change(self, notice: Any) -> None:
        """Take in a change another process sharing the database committed."""
        kind = notice.kind
        if kind in ("config", "resync"):
            self._reload_config()
        if kind in ("scenarios", "resync"):
            self.catalogue.clear_user()
            for row in self.store.list_scenarios():
                self.catalogue.add(parse_scenario(row["doc"], source="api"))
        if kind in ("app_callbacks", "resync"):
            self._app_callbacks = self.store.app_callbacks()
        if kind in ("rules", "resync"):
            self._rules_changed()
        if kind == "cancel" and notice.arg:
            self.engine.cancel_task(str(notice.arg))
        if kind == "reset":
            self.engine.reset()
            self._forget_user_state()
        if kind == "resync":  # a reset or cancellation may have been missed: ask the database
            scheduled = self.engine.scheduled_ids()
            if scheduled:
                mine = cast(SharedStore, self.store).still_mine(scheduled)
                self.engine.drop(set(scheduled) - mine)

    def _reload_config(self) -> None:
        stored = self.store.load_config()
        with self._config_lock:
            self._config = runtime_from(stored)
        anchor = stored.get("clock_anchor")
        if isinstance(anchor, dict):
            self.clock.sync(
                anchor,
                speed=self._config.speed,
                mode=self._config.clock,
            )
        self.engine.clock_changed()


def manual_needs_one_process(peers: list[str]) -> str:
    return (
        f"the manual clock needs the database to itself, and {len(peers)} other emulator"
        f" process(es) share it ({', '.join(peers)}): use the real clock (--clock real, or"
        ' PATCH /api/config {"clock": "real"}) or stop the others'
    )
