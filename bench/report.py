"""Turning one benchmark run's results into the Markdown report (figures, goals, peers, ratios)."""

from __future__ import annotations

import contextlib
import os
import platform
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import frontdoor, pg, split

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
    "- https:// backend: `bench/tls.py`. For http:// then https://, a fresh `tiw-emulator serve`"
    " (manual clock) and a receiver process (a TLS listener, certificate from a trustme CA named"
    " by SSL_CERT_FILE); `success` tasks created over HTTP, then one clock advance; callbacks/s ="
    " arrivals / (last arrival - advance), CPU = the server process's (/proc) over that span."
    " http:// goes through the emulator's own sender, https:// through aiohttp.",
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
    "- list routes: `bench/lists.py` fills a database through the core (tasks by `create_task`,"
    " failed attempts through the store's attempt log), then `tiw-emulator serve` opens it and"
    " each route is requested 20 times over one keep-alive connection (wall time per request,"
    " client included).",
    "- load mode: `bench/load.py`. `locust --headless` with the shipped user class, 50 users,"
    " scenario `success` (~5 callbacks a task) at `--speed max`, to the same fast receiver;"
    " callbacks/s = arrivals at the receiver / (last - first arrival). Two workers: a master"
    " and two worker processes (with the receiver, four processes on two cores). Fixed pace:"
    " 50 users x 10 callbacks/s; the latency is Locust's own measurement (integer ms below"
    " 100 ms, the average exact), i.e. what the load machinery adds, since the receiver"
    " answers in microseconds. CPU per callback: user + system time of the Locust processes"
    " (getrusage of the waited-for children, start-up of about 1 s included) / callbacks;"
    " unlike a rate, it does not drop when"
    " other work shares the machine.",
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
    for pkg in ("aiohttp", "requests", "flask", "msgspec"):
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
    tls = r.get("https")
    if tls and "skipped" in tls:
        skipped = f"skipped: {tls['skipped']}"
        rows.append(("delivery to an https:// backend", skipped, "–", "–", "–"))
    elif tls:
        secure, plain = tls["https"], tls["http"]
        rows.append(
            (
                "delivery to an https:// backend (`serve`, manual clock), callbacks/s",
                f"{secure['rate']:,.0f} ({secure['cpu_us_per_callback']:,.0f} µs CPU each;"
                f" {secure['arrived']:,}/{secure['expected']:,}); http:// in the same run"
                f" {plain['rate']:,.0f} ({plain['cpu_us_per_callback']:,.0f} µs):"
                f" {tls['rate_ratio']:.2f}×",
                "–",
                "–",
                "–",
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
    rows += load_rows(r)
    rows += list_rows(r)
    if r.get("pg"):
        rows += pg.rows(r["pg"])
    front = r.get("frontdoor")
    if front is not None:
        rows += frontdoor.rows(front)
    if r.get("split"):
        rows += split.rows(r["split"])
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
    if r.get("split"):
        out += [split.NOTE]
    return "\n".join(out) + "\n"


def list_rows(r: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """One row per list route: p50 / p95 ms at limit=50 on the filled database."""
    lists = r.get("lists")
    if not lists:
        return []
    size = f"{lists['tasks']:,} tasks, {lists['attempts']:,} failed attempts"
    rows = []
    for path, t in lists["routes"].items():
        rows.append(
            (
                f"`GET {path}` ({size})",
                f"p50 {t['p50_ms']:.1f} ms / p95 {t['p95_ms']:.1f} ms",
                "< 50 ms",
                "–",
                _met(t["p95_ms"] < 50),
            )
        )
    return rows


def _whole_ms(value: float | None) -> str:
    """Locust's percentiles are whole ms below 100 ms: 0 means under 1 ms."""
    return "< 1" if value == 0 else _f(value, "{:.0f}")


def load_rows(r: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """Load mode (bench/load.py) beside the emulator's engine measured in the same run."""
    ld = r.get("load")
    if not ld:
        return []
    one, two, paced = ld["one"], ld["two"], ld["paced"]
    engine = (r.get("throughput") or {}).get("rate")
    versus = f"; the emulator's engine {engine:,.0f}/s in this run" if engine else ""
    lat = paced["latency_ms"]
    return [
        (
            "load mode, one Locust process flat out, callbacks/s",
            f"{_f(one['rate'])} ({one['arrived']:,}/{one['sent']:,} arrived, "
            f"{one['failed']} failed; {_f(one['cpu_ms_per_callback'], '{:.2f}')} ms CPU per"
            f" callback){versus}",
            "–",
            "–",
            "–",
        ),
        (
            "load mode, master + two workers, callbacks/s",
            f"{_f(two['rate'])} ({two['arrived']:,}/{two['sent']:,} arrived, {two['workers']}"
            f" workers; {_f(two['cpu_ms_per_callback'], '{:.2f}')} ms CPU per callback, all"
            f" three processes); {two['rate'] / one['rate']:.2f}× one process",
            "–",
            "–",
            "–",
        ),
        (
            "load mode at a fixed 500 callbacks/s: latency it measures, p50 / p95 / p99 (avg) ms",
            f"{_whole_ms(lat['p50'])} / {_whole_ms(lat['p95'])} / "
            f"{_whole_ms(lat['p99'])} ({_f(lat['avg'], '{:.2f}')}); achieved "
            f"{_f(paced['rate'])}/s",
            "–",
            "–",
            "–",
        ),
    ]
