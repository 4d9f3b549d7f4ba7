"""One emulator process for the PostgreSQL benchmarks: `python -m bench.pgworker ARGS-JSON`.

It starts an `Emulator` (store, clock, engine; no HTTP front end) on the given database with a
real clock at speed 1, plans `count` callbacks claimed by this process, due from the wall
instant `start` on at `rate` per second (0: all at once), hands them to its engine, waits until
it has sent them all, and prints one JSON line: each callback's receiver key and deadline
(time.monotonic, system-wide, so the benchmark can compare it with the receiver's arrivals).
Several workers on one PostgreSQL database are several emulator processes sharing it.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from emulator.core import payloads
from emulator.core.config import Settings
from emulator.core.service import Emulator
from emulator.delivery.scheduler import Outgoing
from emulator.store.base import NewEvent

BATCH = 2000


def plan(emu: Emulator, prefix: str, count: int, rate: float, start: float) -> dict[str, float]:
    """Insert and schedule the callbacks; their receiver keys and monotonic deadlines."""
    cfg = emu.config()
    deadlines: dict[str, float] = {}
    offset = emu.clock.now() - time.time()  # emulated minus wall (speed 1)
    for first in range(0, count, BATCH):
        rows = []
        for i in range(first, min(count, first + BATCH)):
            task_id = f"{prefix}{i:07d}"
            due = round(start + offset + (i / rate if rate else 0.0), 6)
            rows.append(
                NewEvent(
                    seq=1,
                    event_type=payloads.PROGRESS_CHANGED,
                    due_at=due,
                    state="scheduled",
                    event_data=payloads.encode_data(payloads.progress_data(task_id, 1, 50)),
                    sign_mode="valid",
                    note="",
                    sdk_app_id=cfg.sdk_app_id,
                    callback_url=None,
                    task_id=task_id,
                )
            )
            deadline = emu.clock.deadline_for(due)
            assert deadline is not None
            deadlines[f"{task_id}|{payloads.PROGRESS_CHANGED}|50"] = deadline
        emu.store.insert_events(rows)
        emu.engine.schedule(Outgoing.of(e) for e in rows)
    return deadlines


def main(argv: list[str]) -> int:
    args: dict[str, Any] = json.loads(argv[0])
    settings = {"clock": "real", "speed": 1.0, "retry": "none", "callback_url": args["recv"]}
    emu = Emulator(Settings.load({"db": args["db"], **settings}, env={})).start()
    try:
        deadlines = plan(emu, args["prefix"], args["count"], args["rate"], args["start"])
        cpu = time.process_time()
        limit = time.monotonic() + args.get("timeout", 120)
        while emu.engine.pending_count() and time.monotonic() < limit:
            time.sleep(0.02)  # polling a counter: the worker has nothing else to do
        emu.store.flush()
        cpu = time.process_time() - cpu
    finally:
        emu.close()
    print(json.dumps({"deadlines": deadlines, "cpu_s": cpu}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
