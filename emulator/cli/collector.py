"""How `serve` keeps the garbage collector's full collections short: the survivors of each one
are frozen (`gc.freeze`), so the next examines only what has become long-lived since.

Why: a full collection (generation 2) holds the GIL while it examines every container object in
the process, ~50,000 of them once the app is built (Flask, werkzeug, msgspec, Faker's name
tables). In `serve` under full load that took 18-40 ms, about every 4 s, and every callback due
meanwhile was sent that much late: with 50 clients creating tasks whose callback is due 0.1 s
later, one such pause was most of the worst 1%. With this policy the full collections after the
first took 0.2-1.3 ms, and the attempts' lateness p99 (the engine's own timing, four interleaved
rounds) went 37-52 -> 24-36 ms (docs/benchmarks.md, "Front door, seventh round").

The cost, and its bound: a frozen object is never examined for reference cycles again, so a
cycle that was alive at a freeze and becomes garbage later is not reclaimed (plain reference
counting still frees everything else). So that this cannot grow without bound, once the frozen
population has grown to GROWTH times what it was when last rebuilt, the next full collection
examines everything again (`gc.unfreeze` first), reclaims such cycles, and its survivors are the
new base. Measured over 40,000 creations the frozen population stayed at 51,000-54,000 objects
and the process's RSS matched the run without the policy.

Only `serve` installs it, for its own process: the pytest plugin's server runs in the caller's
process, whose collector is the caller's business.
"""

from __future__ import annotations

import gc
from typing import Any

__all__ = ["GROWTH", "MIN_BASE", "FreezeSurvivors", "install"]

GROWTH = 2  # the frozen population may grow to this many times its base before a rebuild
MIN_BASE = 20_000  # a small heap is not rebuilt for a few thousand objects more


class FreezeSurvivors:
    """A `gc.callbacks` entry: after each full collection, freeze what survived it."""

    def __init__(self, *, growth: float = GROWTH, min_base: int = MIN_BASE) -> None:
        self.growth = growth
        self.min_base = min_base
        self.base = 0  # the frozen population after the last collection that examined all
        self.rebuild = True  # the next full collection examines everything
        self.rebuilds = 0  # full collections that examined everything (after the first)

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        """Called by the collector (holding the GIL; collections never overlap)."""
        if phase != "stop" or info.get("generation") != 2:
            return
        gc.freeze()
        frozen = gc.get_freeze_count()
        if self.rebuild:
            self.base, self.rebuild = frozen, False
        elif frozen > self.growth * max(self.base, self.min_base):
            gc.unfreeze()  # the next full collection reclaims any cycle frozen meanwhile
            self.rebuild = True
            self.rebuilds += 1


def install() -> FreezeSurvivors:
    """Freeze the survivors of every full collection in this process (once: a second call
    returns the policy already installed)."""
    for callback in gc.callbacks:
        if isinstance(callback, FreezeSurvivors):
            return callback
    policy = FreezeSurvivors()
    gc.callbacks.append(policy)
    return policy
