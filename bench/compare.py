"""`python -m bench.compare REF`: this tree against another commit, interleaved in one run.

Checks out REF into a temporary git worktree and runs `python -m bench --quick --only ...` in
each tree in turn (this tree, REF, this tree, ...), each with the same interpreter and
dependencies (the other tree's code comes first on PYTHONPATH). Prints, per figure, the median of
each side and the ratio this/REF, so a regression shows as a ratio on the wrong side of 1.
Only figures both trees report are compared.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent.parent
# figure name -> (path in results.json, higher is better)
FIGURES: dict[str, tuple[tuple[str, ...], bool]] = {
    "throughput callbacks/s": (("throughput", "rate"), True),
    # CPU per delivered callback (this process, all threads): reported since the core rebuild
    "throughput CPU us/callback": (("throughput", "cpu_us_per_callback"), False),
    "lateness p50 ms": (("lateness", "p50_ms"), False),
    "lateness p99 ms": (("lateness", "p99_ms"), False),
    "50 ms backend callbacks/s": (("slow", "rate"), True),
    "start-up s": (("startup", "median_s"), False),
}


def run_tree(tree: Path, only: str, out: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(tree), "BENCH_SERVE_MODULE": "1"}
    subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", only, "--out", str(out)],
        cwd=tree,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    results: dict[str, Any] = json.loads((out / "results.json").read_text())
    return results


def pick(results: dict[str, Any], path: tuple[str, ...]) -> float | None:
    value: Any = results
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return float(value) if isinstance(value, int | float) else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__)
    parser.add_argument("ref", help="the commit to compare with, e.g. a release tag or main~5")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--only", default="throughput,lateness,slow,startup")
    args = parser.parse_args(argv)
    samples: dict[str, dict[str, list[float]]] = {"this": {}, "ref": {}}
    with tempfile.TemporaryDirectory(prefix="tiw-compare-") as tmp:
        other = Path(tmp) / "ref"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(other), args.ref],
            cwd=HERE,
            check=True,
            capture_output=True,
        )
        try:
            for rep in range(args.reps):
                for side, tree in (("this", HERE), ("ref", other)):
                    print(f"rep {rep + 1}/{args.reps}: {side}", flush=True)
                    results = run_tree(tree, args.only, Path(tmp) / f"{side}{rep}")
                    for name, (path, _) in FIGURES.items():
                        value = pick(results, path)
                        if value is not None:
                            samples[side].setdefault(name, []).append(value)
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(other)], cwd=HERE, check=False
            )
    print(f"\n| figure | this tree | {args.ref} | this ÷ ref | better | this: range | ref: range |")
    print("| --- | ---: | ---: | ---: | --- | ---: | ---: |")
    for name, (_, higher_better) in FIGURES.items():
        mine, theirs = samples["this"].get(name), samples["ref"].get(name)
        if not mine or not theirs:
            continue
        a, b = statistics.median(mine), statistics.median(theirs)
        ratio = a / b if b else float("nan")
        better = (ratio >= 1) == higher_better
        print(
            f"| {name} | {a:,.3f} | {b:,.3f} | {ratio:.2f} | {'this' if better else 'ref'}"
            f" | {spread(mine)} | {spread(theirs)} |"
        )
    print(f"\n(medians of {args.reps} rounds each, interleaved; load average {load()})")
    return 0


def spread(values: list[float]) -> str:
    """min-max of one side's rounds: a ratio inside the overlap of two ranges is noise."""
    return f"{min(values):,.3f}-{max(values):,.3f}"


def load() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
