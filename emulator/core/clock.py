"""Emulated time: a real clock scaled by a speed factor, or a manual clock moved by hand."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from enum import StrEnum


class ClockMode(StrEnum):
    REAL = "real"
    MANUAL = "manual"


class EmulatedClock:
    """Emulated seconds (unix-like) that run `speed` times faster than the wall, or stand still.

    Task timelines are in emulated seconds; envelope timestamps use `wall()`, so a backend's
    signature check against its own clock keeps working at any speed.
    """

    def __init__(
        self,
        *,
        mode: ClockMode | str = ClockMode.REAL,
        speed: float = 60.0,
        start: float | None = None,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if speed <= 0:
            raise ValueError("speed must be > 0")
        self._wall = wall
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._mode = ClockMode(mode)
        self._speed = float(speed)
        self._base_emu = float(start if start is not None else wall())
        self._base_mono = monotonic()

    # -- reading -----------------------------------------------------------------------
    def now(self) -> float:
        with self._lock:
            return self._now_locked()

    def wall(self) -> float:
        return self._wall()

    def monotonic(self) -> float:
        return self._monotonic()

    @property
    def mode(self) -> ClockMode:
        return self._mode

    @property
    def speed(self) -> float:
        return self._speed

    def deadline_for(self, emulated: float) -> float | None:
        """The monotonic instant at which `emulated` is reached, or None on a manual clock."""
        with self._lock:
            if self._mode is ClockMode.MANUAL:
                return None
            return self._base_mono + (emulated - self._base_emu) / self._speed

    def snapshot(self) -> dict[str, object]:
        with self._lock:
            return {"mode": str(self._mode), "speed": self._speed, "now": self._now_locked()}

    # -- changing ----------------------------------------------------------------------
    def set_speed(self, speed: float) -> None:
        if speed <= 0:
            raise ValueError("speed must be > 0")
        with self._lock:
            self._rebase()
            self._speed = float(speed)

    def set_mode(self, mode: ClockMode | str) -> None:
        with self._lock:
            self._rebase()
            self._mode = ClockMode(mode)

    def advance(self, seconds: float) -> float:
        """Move emulated time forward (either mode); returns the new emulated now."""
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        with self._lock:
            self._rebase()
            self._base_emu += seconds
            return self._base_emu

    def advance_to(self, emulated: float) -> None:
        """Move forward to `emulated` if it lies ahead (never backwards)."""
        with self._lock:
            self._rebase()
            self._base_emu = max(self._base_emu, emulated)

    def sync(self, anchor: Mapping[str, float], *, speed: float, mode: ClockMode | str) -> None:
        """Follow a clock set elsewhere (another process sharing the database): it read
        `anchor["emulated"]` at wall time `anchor["wall"]` (see `anchor`) and runs at `speed`
        in `mode` since."""
        if speed <= 0:
            raise ValueError("speed must be > 0")
        with self._lock:
            self._mode = ClockMode(mode)
            self._speed = float(speed)
            elapsed = self._wall() - anchor["wall"] if self._mode is ClockMode.REAL else 0.0
            self._base_emu = anchor["emulated"] + elapsed * speed
            self._base_mono = self._monotonic()

    def ago(self, seconds: float) -> float:
        """The emulated time `seconds` of real time ago: when a request that waited that long
        in the server's queue arrived. Never before the clock last changed speed or mode or
        moved (that instant's emulated time is not kept); a manual clock stands still."""
        with self._lock:
            if self._mode is ClockMode.MANUAL or seconds <= 0:
                return self._now_locked()
            then = max(self._monotonic() - seconds, self._base_mono)
            return self._base_emu + (then - self._base_mono) * self._speed

    def anchor(self) -> dict[str, float]:
        """What `sync` needs to follow this clock: the emulated time at a wall time."""
        with self._lock:
            return {"emulated": self._now_locked(), "wall": self._wall()}

    # -- internals ---------------------------------------------------------------------
    def _now_locked(self) -> float:
        if self._mode is ClockMode.MANUAL:
            return self._base_emu
        return self._base_emu + (self._monotonic() - self._base_mono) * self._speed

    def _rebase(self) -> None:
        self._base_emu = self._now_locked()
        self._base_mono = self._monotonic()
