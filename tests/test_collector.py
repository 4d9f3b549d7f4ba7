"""`serve` freezes the survivors of each full garbage collection (emulator/cli/collector.py), and
rebuilds once the frozen population has doubled, so a frozen cycle that died is reclaimed.

Each check runs in a fresh interpreter: the policy changes the collector of the whole process,
and the test process's collector is pytest's business.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import textwrap
from typing import Any

from pgserver import free_port

from emulator.cli import collector


def run_python(code: str, *args: str, timeout: float = 60) -> dict[str, Any]:
    """Run `code` in a fresh interpreter; it prints one JSON object as its last line."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_a_full_collection_freezes_its_survivors_and_the_next_examines_only_newer_ones() -> None:
    result = run_python(
        """
        import gc, json
        from emulator.cli import collector
        policy = collector.install()
        assert collector.install() is policy  # installed once
        gc.collect()
        first = gc.get_freeze_count()
        kept = [[i] for i in range(5000)]  # long-lived, made after the first collection
        gc.collect()
        print(json.dumps({
            "first": first, "second": gc.get_freeze_count(),
            "left_in_generation_2": len(gc.get_objects(generation=2)),
            "base": policy.base, "rebuilds": policy.rebuilds,
        }))
        """
    )
    assert int(result["first"]) > 1000  # the interpreter's own objects, at least
    assert int(result["second"]) >= int(result["first"]) + 5000
    assert result["left_in_generation_2"] == 0  # nothing left for the next one to examine
    # the base is counted inside the callback, while the collector's own info dict still lives
    assert abs(int(result["base"]) - int(result["first"])) <= 2 and result["rebuilds"] == 0


def test_only_the_end_of_a_full_collection_freezes() -> None:
    result = run_python(
        """
        import gc, json
        from emulator.cli.collector import FreezeSurvivors
        policy = FreezeSurvivors()
        policy("start", {"generation": 2})
        policy("stop", {"generation": 0})
        policy("stop", {"generation": 1})
        print(json.dumps({"frozen": gc.get_freeze_count(), "rebuild": policy.rebuild}))
        """
    )
    assert result == {"frozen": 0, "rebuild": True}


def test_a_frozen_cycle_that_dies_is_reclaimed_once_the_frozen_population_has_doubled() -> None:
    result = run_python(
        """
        import gc, json, weakref
        from emulator.cli import collector
        class Node:
            pass
        policy = collector.FreezeSurvivors(growth=2, min_base=0)
        gc.callbacks.append(policy)
        node = Node()
        node.me = node  # a reference cycle, alive at the first freeze
        gone = weakref.ref(node)
        gc.collect()
        base = policy.base
        del node
        gc.collect()
        kept_while_frozen = gone() is not None
        grown = [[i] for i in range(2 * base + 1000)]  # the frozen population doubles
        gc.collect()  # freezes them, sees the growth, unfreezes
        rebuild_due = policy.rebuild
        gc.collect()  # examines everything: the dead cycle is reclaimed
        print(json.dumps({
            "kept_while_frozen": kept_while_frozen, "rebuild_due": rebuild_due,
            "reclaimed": gone() is None, "rebuilds": policy.rebuilds,
            "rebased": policy.base > 2 * base,
        }))
        """
    )
    assert result == {
        "kept_while_frozen": True,  # the cost of freezing, which the rebuild bounds
        "rebuild_due": True,
        "reclaimed": True,
        "rebuilds": 1,
        "rebased": True,
    }


def test_serve_installs_the_policy_in_its_own_process() -> None:
    """A real `serve` in a child process: once /healthz answers, its collector has the policy."""
    port = free_port()
    result = run_python(
        """
        import gc, json, os, signal, sys, threading, time, urllib.request
        from emulator.cli import main
        from emulator.cli.collector import FreezeSurvivors
        port = sys.argv[1]
        found = {}
        def look():
            for _ in range(400):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
                    break
                except OSError:
                    time.sleep(0.05)
            found["installed"] = sum(isinstance(c, FreezeSurvivors) for c in gc.callbacks)
            os.kill(os.getpid(), signal.SIGTERM)
        threading.Thread(target=look, daemon=True).start()
        code = main(["serve", "--db", ":memory:", "--clock", "manual", "--cpu", "any",
                     "--port", port])
        print(json.dumps({"code": code, **found}))
        """,
        str(port),
    )
    assert result == {"code": 0, "installed": 1}


def test_the_pytest_process_is_left_alone() -> None:
    """The plugin's server runs in the caller's process: importing the app does not install it."""
    import emulator.testing  # noqa: F401  (what the plugin imports)

    assert not any(isinstance(c, collector.FreezeSurvivors) for c in gc.callbacks)
