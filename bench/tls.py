"""Delivery to an https:// backend beside an http:// one: the same `serve`, the same tasks.

Callbacks to http:// go through the emulator's own HTTP/1.1 sender; to https:// through aiohttp
with the system's trust store (a test CA made by trustme here, named by SSL_CERT_FILE, which
OpenSSL reads when the process builds its default context). For each scheme: a fresh `tiw-emulator
serve --clock manual` whose callbacks go to a receiver process (bench.recv, with a TLS listener for
https), `tasks` `success` tasks created over HTTP, then one clock advance that fires every
callback; the rate is callbacks / (last arrival - advance), the CPU is the server process's
(/proc) over the same span, per callback. Needs trustme (the dev extra); skipped without it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.proc import Served, expected_keys, http_session
from bench.recv import RecvProc

Progress = Callable[[str], None]


def run(workdir: Path, tasks: int, progress: Progress) -> dict[str, Any]:
    try:
        import trustme
    except ImportError:
        return {"skipped": "trustme is not installed (the dev extra: pip install -e '.[dev]')"}
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1")
    ca_pem, chain, key = (workdir / f"tls-{n}.pem" for n in ("ca", "chain", "key"))
    ca.cert_pem.write_to_path(str(ca_pem))
    issued.private_key_pem.write_to_path(str(key))
    chain.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    env = {"SSL_CERT_FILE": str(ca_pem)}  # both runs alike; only https reads it
    out: dict[str, Any] = {"tasks": tasks}
    for scheme in ("http", "https"):
        recv = RecvProc(tls=(str(chain), str(key)) if scheme == "https" else None)
        try:
            out[scheme] = _deliver(workdir, scheme, recv, tasks, env)
        finally:
            recv.close()
        got = out[scheme]
        progress(
            f"  {scheme}: {got['arrived']:,} of {got['expected']:,} callbacks at"
            f" {got['rate']:,.0f}/s, {got['cpu_us_per_callback']:,.0f} µs CPU each"
        )
    out["rate_ratio"] = out["https"]["rate"] / out["http"]["rate"]
    out["cpu_ratio"] = out["https"]["cpu_us_per_callback"] / out["http"]["cpu_us_per_callback"]
    return out


def _deliver(
    workdir: Path, scheme: str, recv: RecvProc, tasks: int, env: dict[str, str]
) -> dict[str, Any]:
    served = Served(
        workdir, f"tls-{scheme}", "--clock", "manual", "--callback-url", recv.url, env=env
    )
    http = http_session()
    try:
        for _ in range(tasks):
            http.post(served.url + "/api/tasks", json={}, timeout=30).raise_for_status()
        expected = sum(expected_keys(served.db).values())
        recv.reset()
        cpu = served.cpu_s()
        fire = time.monotonic()
        http.post(served.url + "/api/clock/advance", json={"seconds": 30 * 86400}, timeout=600)
        stats = recv.wait_count(expected, 120)
        cpu = served.cpu_s() - cpu
    finally:
        http.close()
        served.stop()
    seconds = (stats["last"] or time.monotonic()) - fire
    return {
        "expected": expected,
        "arrived": stats["count"],
        "rate": stats["count"] / seconds,
        "cpu_us_per_callback": cpu / max(stats["count"], 1) * 1e6,
    }
