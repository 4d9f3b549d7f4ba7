"""pytest plugin costs: session start (cold and warm) and per-test reset, as medians; prints JSON.

Runs standalone (`python bench/plugin_startup.py [reps]`); `make bench` reads its last line.
- session_start_cold_ms: fresh interpreter, from the first `import emulator.testing` to a
  served emulator + receiver answering /healthz: what a pytest session pays on first use.
- session_start_ms: the same start with modules already imported (xdist workers after the first
  use, or suites that imported the package anyway).
- per_test_reset_ms: what the `tiw_emulator` fixture does before each test (reset, restore the
  configuration, clear receiver and delivery log, build the handle), after a test that created
  a task, had its callbacks delivered and changed the configuration.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COLD = """
import time
t0 = time.perf_counter()
from emulator.testing import ServedEmulator
served = ServedEmulator().start()
served.client.healthz()
print((time.perf_counter() - t0) * 1000)
served.stop()
"""


def cold_start_ms(reps: int) -> list[float]:
    out = []
    for _ in range(reps):
        done = subprocess.run(
            [sys.executable, "-c", COLD], capture_output=True, text=True, cwd=ROOT, check=True
        )
        out.append(float(done.stdout.strip().splitlines()[-1]))
    return out


def warm_start_ms(reps: int) -> list[float]:
    from emulator.testing import ServedEmulator

    ServedEmulator().start().stop()  # imports and first-use caches out of the way
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        served = ServedEmulator().start()
        served.client.healthz()
        out.append((time.perf_counter() - t0) * 1000)
        served.stop()
    return out


def reset_ms(reps: int) -> list[float]:
    from emulator.testing import ServedEmulator

    served = ServedEmulator().start()
    out = []
    try:
        for n in range(reps):
            handle = served.handle()
            task = handle.create_task("success", room_id=1000 + n % 5)
            handle.advance_all()
            handle.configure(speed=120.0)
            t0 = time.perf_counter()
            served.reset()
            served.handle()
            out.append((time.perf_counter() - t0) * 1000)
            assert not handle.client.list_tasks() and task.task_id
    finally:
        served.stop()
    return out


def main() -> None:
    reps = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    sys.path.insert(0, str(ROOT))
    cold = cold_start_ms(max(3, reps // 4))
    warm = warm_start_ms(reps)
    resets = reset_ms(reps * 10)
    result = {
        "session_start_cold_ms": round(statistics.median(cold), 1),
        "session_start_cold_min_ms": round(min(cold), 1),
        "session_start_ms": round(statistics.median(warm), 2),
        "per_test_reset_ms": round(statistics.median(resets), 3),
        "per_test_reset_p95_ms": round(sorted(resets)[int(len(resets) * 0.95) - 1], 3),
        "reps": {"cold": len(cold), "warm": len(warm), "reset": len(resets)},
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "goals_met": statistics.median(cold) < 500 and statistics.median(resets) < 5,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
