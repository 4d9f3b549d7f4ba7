"""Turning one benchmark run's results into the Markdown report (figures, goals, peers, ratios)."""

from __future__ import annotations

import contextlib
import os
import platform
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import frontdoor

# From /work/shared/reference/peer-bench.md (same machine kind, medians of 3).
PEERS = {
    "throughput": "WireMock 2,861 (tuned 4,483); Mockoon 1,003",
    "lateness": "WireMock 100 ms delay p99 18.6 (tuned 2.05); Mockoon 17.7",
    "slow": "WireMock default 192; pool 50: 400 (offered); Mockoon 400 (offered)",
    "rss": "WireMock 1,217 (tuned 641); Mockoon 597",
    "startup": "WireMock 0.86; Mockoon 0.49",
}


NOTES = [
    "What each figure includes:",
    "- throughput / 50 ms backend: the emulator core in the benchmark process (store, clock,"
    " engine; no HTTP front end), manual clock. Tasks (`success`, ~5 callbacks each) are created"
    " first and not timed; the clock starts at one `advance()` that fires every callback, and"
    " stops at the last arrival at the receiver. Included: heap, per-task ordering, signing,"
    " envelope, HTTP POST and response, attempt records and listeners; the SQLite write-behind"
    " runs concurrently (flusher thread), so its CPU is included but its last commit may land"
    " after the clock stops. The naive loop is `requests.post` (no Session) of a real envelope to"
    " the same receiver, measured before and after the emulator (the mean is used).",
    "- lateness: real clock at speed 1; callbacks due every 1 ms are put straight into the"
    " engine (rows in the events table, then `engine.schedule`), after 200 warm-up ones;"
    " lateness = arrival at the receiver (time.monotonic, system-wide) - the deadline the"
    " clock gives for the due time.",
    "- concurrent tasks: `tiw-emulator serve` subprocess, manual clock; tasks created one by one"
    " over HTTP (POST /api/tasks, keep-alive `requests.Session`; this is the creation rate),"
    " then one POST /api/clock/advance of 30 days. Every planned non-dropped event in the"
    " database must arrive exactly once (TaskId|EventType|Progress multiset). Peak RSS is the"
    " server's VmHWM at the end.",
    "- start-up: Popen of `tiw-emulator serve` (fresh database file) to the first 200 from"
    " /healthz, polled every 5 ms.",
    "- 2-hour class: `tiw-emulator serve --clock real --speed 1000000`; POST /api/tasks with"
    " params duration_s 7200 until its OfflineRecordFinished arrives.",
    "- pytest plugin: `bench/plugin_startup.py` (its own docstring says what it times).",
]


def environment() -> list[str]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = []
    for pkg in ("aiohttp", "requests", "flask", "waitress"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions.append(f"{pkg} {metadata.version(pkg)}")
    return [
        f"- date: {time.strftime('%Y-%m-%d %H:%M %Z')}",
        f"- machine: {os.cpu_count()} CPU ({cpu}), kernel {platform.release()}",
        f"- Python {platform.python_version()} ({platform.python_implementation()}); "
        + ", ".join(versions),
        "- everything on 127.0.0.1; receivers are `bench.recv` subprocesses (asyncio, one each)",
    ]


def _f(value: Any, fmt: str = "{:,.0f}") -> str:
    return "–" if value is None else fmt.format(value)


def _met(ok: bool | None) -> str:
    return "–" if ok is None else ("yes" if ok else "**no**")


def render(r: dict[str, Any]) -> str:
    rows: list[tuple[str, str, str, str, str]] = []
    naive = r.get("naive")
    tp = r.get("throughput")
    if tp and naive:
        base = (naive["rate"] + naive.get("rate_again", naive["rate"])) / 2
        ratio = tp["rate"] / base
        rows.append(
            (
                "delivery throughput, callbacks/s",
                f"{tp['rate']:,.0f} ({tp['arrived']:,}/{tp['expected']:,} arrived); "
                f"naive `requests.post` loop {base:,.0f}; **{ratio:.1f}×**",
                "≥ 5,000 and ≥ 3×",
                PEERS["throughput"],
                _met(tp["rate"] >= 5000 and ratio >= 3 and tp["arrived"] == tp["expected"]),
            )
        )
    lat = r.get("lateness")
    if lat:
        rows.append(
            (
                "lateness at 1,000 events/s, p50 / p99 (max) ms",
                f"{_f(lat['p50_ms'], '{:.2f}')} / {_f(lat['p99_ms'], '{:.2f}')} "
                f"({_f(lat['max_ms'], '{:.1f}')}); {lat['arrived']:,}/{lat['scheduled']:,}",
                "p99 ≤ 2 ms",
                PEERS["lateness"],
                _met(lat["p99_ms"] is not None and lat["p99_ms"] <= 2.0),
            )
        )
    slow = r.get("slow")
    if slow:
        rows.append(
            (
                "delivery to a 50 ms backend, callbacks/s",
                f"{slow['rate']:,.0f} ({slow['arrived']:,}/{slow['expected']:,}); "
                f"{slow['rate'] / 192:.1f}× WireMock default",
                "≥ 400",
                PEERS["slow"],
                _met(slow["rate"] >= 400),
            )
        )
    many = r.get("many")
    if many:
        rows.append(
            (
                f"{many['tasks']:,} concurrent tasks: lost / extra callbacks",
                f"{many['lost']} / {many['duplicated_or_unexpected']} "
                f"({many['arrived']:,} of {many['expected']:,} at {many['deliver_rate']:,.0f}/s)",
                "0 lost",
                "–",
                _met(many["lost"] == 0 and many["duplicated_or_unexpected"] == 0),
            )
        )
        rows.append(
            (
                "peak RSS of the emulator process (VmHWM), MiB",
                f"{many['peak_rss_mib']:,.0f} (idle {many['idle_rss_mib']:,.0f})",
                "< 300",
                PEERS["rss"],
                _met(many["peak_rss_mib"] < 300),
            )
        )
        rows.append(
            (
                "control API task creation (POST /api/tasks, keep-alive), tasks/s",
                f"{_f(many['create_rate_first_1000'])} (first 1,000); "
                f"{many['create_rate']:,.0f} (all {many['tasks']:,})",
                "–",
                "–",
                "–",
            )
        )
    st = r.get("startup")
    if st:
        rows.append(
            (
                "start-up to first healthy /healthz, s",
                f"{st['median_s']:.3f} (median of {st['reps']}; {st['min_s']:.3f}–"
                f"{st['max_s']:.3f}); {0.86 / st['median_s']:.1f}× faster than WireMock",
                "< 0.5",
                PEERS["startup"],
                _met(st["median_s"] < 0.5),
            )
        )
    plugin = r.get("plugin")
    if plugin is not None and "error" not in plugin:
        cold = plugin.get("session_start_cold_ms")
        warm = plugin.get("session_start_ms")
        reset = plugin.get("per_test_reset_ms")
        rows.append(
            (
                "pytest plugin: session start (cold / warm) / per-test reset, ms",
                f"{_f(cold, '{:.0f}')} / {_f(warm, '{:.1f}')} / {_f(reset, '{:.2f}')} "
                f"(reset p95 {_f(plugin.get('per_test_reset_p95_ms'), '{:.2f}')})",
                "< 500 / – / < 5",
                "pytest-httpserver start 1.04 ms (no emulator); WireMock ~900",
                _met(cold is not None and reset is not None and cold < 500 and reset < 5),
            )
        )
    elif plugin is not None:
        rows.append(
            ("pytest plugin start / reset", f"failed: {plugin['error'][:120]}", "", "", "–")
        )
    elif "plugin" in r:
        rows.append(("pytest plugin start / reset", "bench/plugin_startup.py absent", "", "", "–"))
    lc = r.get("longclass")
    if lc:
        rows.append(
            (
                "2-hour class at full speed: create → Finished, s",
                f"{_f(lc['median_s'], '{:.3f}')} (median of {lc['finished']}/{lc['reps']}; "
                f"{_f(lc['emulated_s'], '{:,.0f}')} emulated s at ×1,000,000)",
                "< 1",
                "–",
                _met(lc["median_s"] is not None and lc["median_s"] < 1),
            )
        )
    front = r.get("frontdoor")
    if front is not None:
        rows += frontdoor.rows(front)
    out = ["# tiw-emulator benchmark report", ""]
    if r.get("quick"):
        out += ["**Quick run (`--quick`): smaller counts, not the committed figures.**", ""]
    out += environment()
    out += [f"- whole run: {r.get('total_s', 0):.0f} s", ""]
    out += ["| benchmark | measured | goal | peers (peer-bench.md) | goal met |"]
    out += ["| --- | --- | --- | --- | --- |"]
    out += [f"| {' | '.join(row)} |" for row in rows]
    if many:
        out += ["", f"Event states after the {many['tasks']:,}-task run: {many['states']}"]
    out += ["", *NOTES]
    if front is not None:
        out += [frontdoor.NOTE]
    return "\n".join(out) + "\n"
