"""One emulator process for the PostgreSQL benchmarks: `python -m bench.pgworker ARGS-JSON`.

It starts an `Emulator` (store, clock, engine; no HTTP front end) on the given database with a
real clock at speed 1, plans `count` callbacks claimed by this process, due from the wall
instant `start` on at `rate` per second (0: all at once) after a warm-up of WARM_UP due a
second before, hands them to its engine, waits until
it has sent them all, and prints one JSON line: each callback's receiver key and deadline
(time.monotonic, system-wide, so the benchmark can compare it with the receiver's arrivals),
its CPU time while sending, and whether it was ready before the first one fell due.
Several workers on one PostgreSQL database are several emulator processes sharing it.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from bench.inproc import paced_events
from emulator.core.config import Settings
from emulator.core.service import Emulator
from emulator.delivery.scheduler import Outgoing

BATCH = 2000
WARM_UP = 100  # callbacks due a second before the measured ones


def plan(emu: Emulator, prefix: str, count: int, rate: float, start: float) -> dict[str, float]:
    """Insert and schedule the callbacks, due from wall time `start` on (in batches, so the
    engine starts on the first while the rest are inserted), after WARM_UP ones due a second
    before (the first callbacks of a process open its connection and warm its code, as
    bench.inproc.lateness does); receiver keys -> deadlines of the measured ones."""
    offset = emu.clock.now() - time.time()  # the clock runs at speed 1
    warm, _ = paced_events(emu, f"{prefix}warm", WARM_UP, 1000.0, start - 1.0 + offset)
    emu.store.insert_events(warm)
    emu.engine.schedule(Outgoing.of(e) for e in warm)
    rows, deadlines = paced_events(emu, prefix, count, rate, start + offset)
    for at in range(0, count, BATCH):
        batch = rows[at : at + BATCH]
        emu.store.insert_events(batch)
        emu.engine.schedule(Outgoing.of(e) for e in batch)
    return deadlines


def main(argv: list[str]) -> int:
    args: dict[str, Any] = json.loads(argv[0])
    settings = {"clock": "real", "speed": 1.0, "retry": "none", "callback_url": args["recv"]}
    emu = Emulator(Settings.load({"db": args["db"], **settings}, env={})).start()
    try:
        deadlines = plan(emu, args["prefix"], args["count"], args["rate"], args["start"])
        ready = time.time() < args["start"]  # else the first callbacks start late
        cpu = time.process_time()
        limit = time.monotonic() + args.get("timeout", 120)
        while emu.engine.pending_count() and time.monotonic() < limit:
            time.sleep(0.02)  # polling a counter: the worker has nothing else to do
        emu.store.flush()
        cpu = time.process_time() - cpu
    finally:
        emu.close()
    print(json.dumps({"deadlines": deadlines, "cpu_s": cpu, "ready": ready}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
