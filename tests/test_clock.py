"""Emulated time: scaled real clock, runtime speed changes, manual clock."""

from __future__ import annotations

import pytest

from emulator.core.clock import ClockMode, EmulatedClock


class FakeTime:
    def __init__(self) -> None:
        self.mono = 100.0
        self.wall = 1_700_000_000.0

    def tick(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += seconds


def make(mode: str = "real", speed: float = 60.0) -> tuple[EmulatedClock, FakeTime]:
    t = FakeTime()
    clock = EmulatedClock(
        mode=mode, speed=speed, start=5000.0, wall=lambda: t.wall, monotonic=lambda: t.mono
    )
    return clock, t


def test_real_clock_runs_speed_times_faster() -> None:
    clock, t = make(speed=60)
    t.tick(2)
    assert clock.now() == pytest.approx(5120.0)
    assert clock.wall() == pytest.approx(1_700_000_002.0)  # envelopes use the wall clock


def test_speed_change_keeps_emulated_time_continuous_and_moves_deadlines() -> None:
    clock, t = make(speed=60)
    t.tick(1)  # emulated 5060
    due = 5660.0  # 600 emulated seconds ahead
    assert clock.deadline_for(due) == pytest.approx(t.mono + 10)
    clock.set_speed(600)
    assert clock.now() == pytest.approx(5060.0)
    assert clock.deadline_for(due) == pytest.approx(t.mono + 1)  # same emulated due, sooner
    t.tick(1)
    assert clock.now() == pytest.approx(5660.0)


def test_manual_clock_stands_still_until_advanced() -> None:
    clock, t = make(mode="manual")
    t.tick(100)
    assert clock.now() == 5000.0
    assert clock.deadline_for(6000.0) is None
    assert clock.advance(30) == 5030.0
    assert clock.now() == 5030.0
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_switching_modes_keeps_the_current_emulated_time() -> None:
    clock, t = make(speed=10)
    t.tick(3)
    clock.set_mode("manual")
    assert clock.mode is ClockMode.MANUAL and clock.now() == pytest.approx(5030.0)
    t.tick(50)
    clock.set_mode(ClockMode.REAL)
    t.tick(1)
    assert clock.now() == pytest.approx(5040.0)


def test_bad_speed_is_refused() -> None:
    with pytest.raises(ValueError):
        EmulatedClock(speed=0)
    clock, _ = make()
    with pytest.raises(ValueError):
        clock.set_speed(-1)


def test_ago_is_the_emulated_time_that_much_real_time_back_but_not_before_a_change() -> None:
    clock, t = make(speed=60)
    t.tick(2)  # emulated 5120
    assert clock.ago(0.5) == pytest.approx(5090.0)
    assert clock.ago(0) == clock.ago(-1) == pytest.approx(5120.0)
    clock.set_speed(600)  # the clock changed 0 s ago: nothing before it is known
    t.tick(0.1)
    assert clock.ago(0.05) == pytest.approx(5150.0)
    assert clock.ago(5) == pytest.approx(5120.0)
    manual, t2 = make(mode="manual")
    t2.tick(3)
    assert manual.ago(1) == 5000.0  # a manual clock stood still all along
