"""How `serve` tunes its process: one CPU (`--cpu`, the default where the OS allows it), a
short GIL switch interval, and a lower priority for the thread that plans task creations.

Why: the emulator is one CPython process, so its threads (the HTTP loop, the app's request
threads, the delivery loop, the store's writer) take turns holding the GIL and together use at
most one core. Left free to run on every CPU, the OS wakes each thread wherever a core is idle, and
every hand-over of the GIL between two cores costs wake-ups and cold caches. Measured through the
peer harness (`python -m bench --only frontdoor --quick`, the same tree with and without pinning,
back to back, 2-core machine, load 2-3): ad-hoc events 1,210 -> 1,574/s at 600 -> 417 µs of
process CPU each, task creation 893 -> 1,211/s at 0.87 -> 0.70 ms per created callback, lateness
p99 of a callback due 100 ms after its trigger under full load 122 -> 90 ms, at 200 triggers/s
unchanged (2.5 / 2.2 ms); fd-style runs gave 4-6 context switches per request pinned against 7-10
(docs/benchmarks.md, "Front door, third round").

`auto` picks one CPU of those the process may use, by process id, so emulators started side by
side (shared mode on one machine) spread over the CPUs instead of all landing on the first one.
`any` leaves placement to the OS; a number names the CPU. Only `serve` pins: the pytest plugin and
`emulator.testing` run inside the caller's process, whose CPUs are the caller's business.
"""

from __future__ import annotations

import os
import sys

from emulator.core.errors import InvalidInput

AUTO, ANY = "auto", "any"
# How long a thread holding the GIL runs before a waiting one gets it (CPython's default: 5 ms).
# The delivery thread waits for the GIL after every socket call, so behind 16 busy request threads
# a due callback waited up to 5 ms per hop: a callback due 100 ms after its trigger arrived late
# by p99 117 ms under full load (the peer harness's sat100); with 1 ms, 64 ms (medians of
# interleaved runs on the shared 2-core machine, load 4), creation rate unchanged; 0.5 and 0.2 ms
# measured no better (docs/benchmarks.md, "Front door, second round"). Only `serve` sets it,
# for its own process: the pytest plugin's server runs in the caller's process.
SWITCH_INTERVAL_S = 0.001
# The server's lane thread (task creations, `web.server`) runs as a batch thread (SCHED_BATCH)
# LANE_NICE nicer than the process's other threads. They all share one CPU, so a callback that
# falls due while the lane plans a creation waits for the OS to switch that CPU to the delivery
# thread as well as for the GIL: nicer, the lane is preempted at once instead of at the end of
# its time slice; a batch thread, it does not preempt the others when a creation wakes it. Nice
# alone cut the lateness and cost throughput (more thread switches); batch alone cut the
# switches and the CPU and left the lateness as it was. Measured with the fd-style driver (its
# own session, 6,000 one-callback creations, 50 clients, interleaved rounds on the 2-core
# machine): none 1,827-2,096 tasks/s, 468-532 µs per task, lateness p99 14.5-32.0 ms; batch and
# nice +10: 1,875-2,176, 448-523 µs, 11.8-22.2 ms; nice +10 alone: 1,756-2,064, 472-560 µs,
# 10.5-17.2 ms (docs/benchmarks.md, "Front door, eighth round"). A nice value weighs a thread
# against the others of its scheduling group (with Linux's autogroup, the session `serve` runs
# in), so a CPU-bound process of the same session on `serve`'s CPU took the lane's share: one
# client creating tasks one after another beside such a process waited p50 8.6-11.7 ms a
# creation instead of 1.2-1.3. The lane therefore takes only the creations that come while
# another is in progress (a busy server); one that comes alone runs on the pool at the
# process's priority (`web.connection.Serving.dispatch`), and that client's creations took
# p50 1.2-1.3 ms again. On a busy server the lane gives way to the pool's threads too: 25
# clients creating tasks and 25 sending ad-hoc events at once got 355-539 tasks/s and
# 1,955-2,336 events/s, against 966-1,198 and 1,246-1,526 with the lane as the others (more
# requests in all, fewer of them creations).
LANE_NICE = 10


def tune(setting: str | int) -> int | None:
    """Tune this process for serving: the switch interval, then `pin`; returns the CPU."""
    if sys.getswitchinterval() > SWITCH_INTERVAL_S:
        sys.setswitchinterval(SWITCH_INTERVAL_S)
    return pin(setting)


def parse(value: str | int) -> str | int:
    """`auto`, `any`, or a CPU number (>= 0); anything else is refused naming the setting."""
    text = str(value).strip().lower()
    if text in (AUTO, ANY):
        return text
    try:
        cpu = int(text)
    except ValueError:
        raise InvalidInput("cpu", f"must be 'auto', 'any' or a CPU number, got {value!r}") from None
    if cpu < 0:
        raise InvalidInput("cpu", f"must be 'auto', 'any' or a CPU number >= 0, got {value!r}")
    return cpu


def pin(setting: str | int, *, pid: int | None = None) -> int | None:
    """Apply `setting` to this process; returns the CPU it now runs on, or None if unpinned.

    `auto` does nothing where the OS has no affinity call (macOS, Windows) or only one CPU is
    allowed; a CPU number that cannot be used is refused (InvalidInput, the serve command's
    one-line error).
    """
    choice = parse(setting)
    if choice == ANY:
        return None
    if not hasattr(os, "sched_setaffinity"):
        if choice == AUTO:
            return None
        raise InvalidInput("cpu", "this system cannot pin a process to a CPU: use 'any'")
    allowed = sorted(os.sched_getaffinity(0))
    if choice == AUTO:
        if len(allowed) < 2:
            return None
        cpu = allowed[(os.getpid() if pid is None else pid) % len(allowed)]
    else:
        cpu = int(choice)
        if cpu not in allowed:
            shown = ", ".join(str(c) for c in allowed)
            raise InvalidInput("cpu", f"CPU {cpu} is not one this process may use ({shown})")
    os.sched_setaffinity(0, {cpu})
    return cpu
