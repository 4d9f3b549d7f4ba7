"""`serve --cpu`: one CPU by default where the OS allows it, any on request, bad values refused."""

from __future__ import annotations

import os
import re
import signal
from typing import Any

import pytest
from served import Served, serve_refuses

from emulator.cli import cpu
from emulator.core.errors import InvalidInput

linux_affinity = pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity"), reason="CPU affinity is a Linux call"
)


def banner_after_stop(served: Served) -> str:
    """Stop with SIGTERM; the banner's lines after the first, and the rest of stdout."""
    assert served.proc.stdout is not None
    served.proc.send_signal(signal.SIGTERM)
    out = served.proc.stdout.read()  # what the first readline buffered, then up to EOF
    assert served.proc.wait(timeout=20) == 0
    return out


def allowed_cpus(pid: int) -> set[int]:
    """The CPUs each thread of `pid` may run on (all threads must agree)."""
    found: set[frozenset[int]] = set()
    for tid in os.listdir(f"/proc/{pid}/task"):
        found.add(frozenset(os.sched_getaffinity(int(tid))))
    assert len(found) == 1, f"threads disagree: {found}"
    return set(next(iter(found)))


@linux_affinity
def test_serve_keeps_every_thread_on_one_cpu_by_default() -> None:
    mine = os.sched_getaffinity(0)
    if len(mine) < 2:
        pytest.skip("this machine lets the tests use one CPU only: nothing to pin")
    served = Served("--db", ":memory:", "--clock", "manual")
    try:
        assert served.api("GET", "/healthz").status_code == 200  # every thread is up
        pinned = allowed_cpus(served.proc.pid)
        assert len(pinned) == 1 and pinned <= mine
        out = banner_after_stop(served)
    finally:
        served.kill()
    assert re.search(rf"cpu +{next(iter(pinned))} ", out), out


@linux_affinity
def test_any_leaves_placement_to_the_os() -> None:
    served = Served("--db", ":memory:", "--cpu", "any")
    try:
        assert served.api("GET", "/healthz").status_code == 200
        assert allowed_cpus(served.proc.pid) == os.sched_getaffinity(0)
        out = banner_after_stop(served)
    finally:
        served.kill()
    assert "run seed" in out and "  cpu " not in out


@linux_affinity
def test_a_named_cpu_is_used_and_one_not_allowed_is_refused_in_one_line() -> None:
    last = max(os.sched_getaffinity(0))
    served = Served("--db", ":memory:", "--cpu", str(last))
    try:
        assert served.api("GET", "/healthz").status_code == 200
        assert allowed_cpus(served.proc.pid) == {last}
    finally:
        served.kill()
    refusal = serve_refuses("--db", ":memory:", "--cpu", str(last + 1))
    assert "is not one this process may use" in refusal


@pytest.mark.parametrize("value", ["x", "-1", "1.5", ""])
def test_values_other_than_auto_any_or_a_cpu_number_are_refused(value: str) -> None:
    with pytest.raises(InvalidInput, match="cpu"):
        cpu.parse(value)


def test_auto_spreads_processes_over_the_allowed_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    chosen: list[set[int]] = []
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: {0, 1, 2, 3})
    monkeypatch.setattr(os, "sched_setaffinity", lambda _, cpus: chosen.append(set(cpus)))
    assert [cpu.pin("auto", pid=pid) for pid in (100, 101, 102, 103, 104)] == [0, 1, 2, 3, 0]
    assert chosen == [{0}, {1}, {2}, {3}, {0}]
    assert cpu.pin("any") is None and len(chosen) == 5


def thread_priorities(pid: int) -> dict[str, tuple[int, int]]:
    """Each thread's nice value (field 19 of /proc/<pid>/task/<tid>/stat) and scheduling policy,
    by its OS name."""
    found: dict[str, tuple[int, int]] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as stat:
                raw = stat.read()
            policy = os.sched_getscheduler(int(tid))
        except OSError:  # the thread ended meanwhile
            continue
        name = raw[raw.index("(") + 1 : raw.rindex(")")]
        found[name] = (int(raw[raw.rindex(")") + 2 :].split()[16]), policy)
    return found


@linux_affinity
def test_serve_runs_its_lane_thread_as_a_nicer_batch_thread_than_the_rest() -> None:
    """The lane (task creations) gives way to the delivery thread on the shared CPU, and does
    not take the CPU from it when a creation comes in."""
    if os.getpriority(os.PRIO_PROCESS, 0) >= 19:
        pytest.skip("this test runs at the lowest priority already: nothing lower to give")
    served = Served("--db", ":memory:", "--clock", "manual")
    try:
        created = served.api("POST", "/api/tasks", json={"scenario": "success"})
        assert created.status_code == 201  # the lane's thread starts with its first request
        found = thread_priorities(served.proc.pid)
    finally:
        served.kill()
    base, normal = found["tiw-engine"]
    assert found["tiw-lane_0"] == (min(19, base + cpu.LANE_NICE), os.SCHED_BATCH), found
    assert cpu.LANE_NICE > 0 and base < found["tiw-lane_0"][0], found
    others = {name: prio for name, prio in found.items() if name != "tiw-lane_0"}
    assert set(others.values()) == {(base, normal)}, found


@linux_affinity
def test_an_app_server_leaves_its_lane_at_the_callers_priority(make_emulator: Any) -> None:
    """The pytest plugin's server runs in the caller's process: its priorities are the caller's."""
    running = make_emulator()
    assert running.api("POST", "/api/tasks", json={"scenario": "success"}).status_code == 201
    nice, policy = thread_priorities(os.getpid())["tiw-lane_0"]
    assert (nice, policy) == (os.getpriority(os.PRIO_PROCESS, 0), os.sched_getscheduler(0))
