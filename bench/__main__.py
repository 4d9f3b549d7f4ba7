"""`python -m bench` (`make bench`): every SPEC 8 benchmark in one run, on 127.0.0.1 only.

Prints progress as it goes, then the report, which is also written to .bench/report.md.
`--only a,b` runs a subset (names: throughput, lateness, slow, https, many, startup, longclass,
plugin, load, lists, frontdoor, split, pg); `--quick` uses smaller counts for a fast check.
`frontdoor` runs the shared peer harness (the emulator beside WireMock): see bench/frontdoor.py;
`split` divides a created task's CPU between the server's threads: see bench/split.py.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import frontdoor, inproc, lists, load, pg, proc, split, tls
from bench.recv import RecvProc
from bench.report import render

NAMES = (
    "throughput",
    "lateness",
    "slow",
    "https",
    "many",
    "startup",
    "longclass",
    "plugin",
    "load",
    "lists",
    "frontdoor",
    "split",
    "pg",
)


def progress(message: str) -> None:
    print(message, flush=True)


def run(only: set[str], quick: bool, workdir: Path) -> dict[str, Any]:
    results: dict[str, Any] = {}
    scale = 0.2 if quick else 1.0
    fast = RecvProc()
    recorder = RecvProc(record=True)
    slow = RecvProc(delay_s=0.05)
    try:
        if "throughput" in only:
            progress("[1] delivery throughput: naive requests.post loop (same receiver)")
            results["naive"] = inproc.naive_requests(fast, int(3000 * scale))
            progress(f"  naive: {results['naive']['rate']:,.0f}/s")
            progress("[1] delivery throughput: the emulator")
            results["throughput"] = inproc.delivery_throughput(
                workdir, fast, int(4000 * scale), progress
            )
            progress(f"  emulator: {results['throughput']['rate']:,.0f}/s")
            progress("[1] naive loop again (interleaved)")
            again = inproc.naive_requests(fast, int(3000 * scale))
            results["naive"]["rate_again"] = again["rate"]
            progress(f"  naive: {again['rate']:,.0f}/s")
        if "lateness" in only:
            progress("[2] lateness at 1,000 events/s (real clock)")
            results["lateness"] = inproc.lateness(
                workdir, recorder, int(5000 * scale), 1000.0, progress
            )
            lat = results["lateness"]
            progress(f"  p50 {lat['p50_ms']:.2f} ms, p99 {lat['p99_ms']:.2f} ms")
        if "slow" in only:
            progress("[3] delivery to a backend taking 50 ms per response")
            results["slow"] = inproc.slow_backend(workdir, slow, int(800 * scale), progress)
            progress(f"  {results['slow']['rate']:,.0f}/s")
        if "https" in only:
            progress("[3b] delivery to an https:// backend beside an http:// one (serve)")
            results["https"] = tls.run(workdir, int(2000 * scale), progress)
        if "many" in only:
            progress("[4+6] 10,000 concurrent tasks via the control API, then every callback")
            results["many"] = proc.many_tasks(workdir, recorder, int(10000 * scale), progress)
            many = results["many"]
            progress(
                f"  lost {many['lost']}, extra {many['duplicated_or_unexpected']}, "
                f"peak RSS {many['peak_rss_mib']:.0f} MiB, create {many['create_rate']:,.0f}/s"
            )
        if "startup" in only:
            progress("[5] start-up to first healthy response")
            results["startup"] = proc.startup(workdir, 3 if quick else 7, progress)
        if "longclass" in only:
            progress("[8] a 2-hour class at full speed")
            results["longclass"] = proc.long_class(workdir, recorder, 3, progress)
        if "plugin" in only:
            progress("[7] pytest plugin session start and per-test reset")
            results["plugin"] = proc.plugin_startup(progress)
        if "load" in only:
            progress("[9] load mode (Locust) against the same fast receiver")
            if "throughput" not in results:
                progress("  the emulator's engine, for comparison in this run")
                results["throughput"] = inproc.delivery_throughput(
                    workdir, fast, int(4000 * scale), progress
                )
            results["load"] = load.run(fast, scale, progress)
        if "lists" in only:
            progress("[10] list routes at limit=50 over HTTP, on a filled database")
            results["lists"] = lists.list_latency(
                workdir, int(20000 * scale), int(100000 * scale), progress
            )
        if "frontdoor" in only:
            progress("[11] front door over HTTP, beside WireMock (the peer harness)")
            results["frontdoor"] = frontdoor.run(workdir, progress, n=int(3000 * scale))
        if "split" in only:
            progress("[11b] a created task's CPU by thread: control plane and delivery")
            results["split"] = split.run(workdir, fast, int(4000 * scale), progress)
        if "pg" in only:
            progress("[12] PostgreSQL store beside SQLite: one process, two sharing a database")
            results["pg"] = pg.run(workdir, recorder, scale, progress)
    finally:
        for recv in (fast, recorder, slow):
            recv.close()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--only", default=",".join(NAMES))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=".bench")
    args = parser.parse_args(argv)
    only = {n.strip() for n in args.only.split(",") if n.strip()}
    unknown = only - set(NAMES)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tiw-bench-") as tmp:
        results = run(only, args.quick, Path(tmp))
    results["total_s"] = time.monotonic() - started
    results["quick"] = args.quick
    out = Path(args.out)
    out.mkdir(exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    report = render(results)
    (out / "report.md").write_text(report)
    print()
    print(report)
    print(f"(written to {out / 'report.md'} and {out / 'results.json'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
