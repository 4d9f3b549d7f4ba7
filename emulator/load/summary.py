"""The load run's summary: built from Locust's statistics, rendered for a person.

`from_locust` reads a Locust `RequestStats` by duck typing, so this module imports no Locust
and `tiw-emulator load` can render the JSON the Locust process wrote.
"""

from __future__ import annotations

import re
from dataclasses import asdict, is_dataclass
from typing import Any

REFUSED_SUFFIX = ": must be refused)"
PERCENTILES = {"p50": 0.50, "p95": 0.95, "p99": 0.99}
_WRAPPED = re.compile(r"^\w+\((['\"])(.*)\1\)$")


def reason_text(error: str) -> str:
    """Locust stores an error as the exception's repr; keep the message a person wants."""
    match = _WRAPPED.match(error.strip())
    return match.group(2) if match else error


def _latency(entry: Any) -> dict[str, float | None]:
    if not entry.num_requests:
        return {**dict.fromkeys(PERCENTILES), "avg": None, "max": None}
    out: dict[str, float | None] = {
        k: float(entry.get_response_time_percentile(q)) for k, q in PERCENTILES.items()
    }
    out["avg"] = round(float(entry.avg_response_time), 3)
    out["max"] = round(float(entry.max_response_time), 3)
    return out


def from_locust(stats: Any, counters: Any, by_worker: dict[str, dict[str, int]]) -> dict[str, Any]:
    """Summary of a run from Locust's `environment.stats` and load mode's own counters."""
    total = stats.total
    acknowledged = refused = 0
    by_event: dict[str, dict[str, Any]] = {}
    for entry in stats.entries.values():
        ok = entry.num_requests - entry.num_failures
        if entry.name.endswith(REFUSED_SUFFIX):
            refused += ok
        else:
            acknowledged += ok
        by_event[entry.name] = {
            "sent": entry.num_requests,
            "ok": ok,
            "failed": entry.num_failures,
            "latency_ms": _latency(entry),
        }
    failures: dict[str, int] = {}
    for error in stats.errors.values():
        reason = reason_text(str(error.error))
        failures[reason] = failures.get(reason, 0) + int(error.occurrences)
    duration = max(0.0, float(total.last_request_timestamp or 0) - float(total.start_time))
    return {
        **(
            asdict(counters)
            if is_dataclass(counters) and not isinstance(counters, type)
            else dict(counters)
        ),
        "callbacks_sent": total.num_requests,
        "acknowledged": acknowledged,
        "refused_as_expected": refused,
        "failed": total.num_failures,
        "failures_by_reason": dict(sorted(failures.items(), key=lambda kv: -kv[1])),
        "latency_ms": _latency(total),
        "callbacks_per_s": round(total.num_requests / duration, 1) if duration else None,
        "duration_s": round(duration, 3),
        "by_event": by_event,
        "by_worker": by_worker,
    }


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}".removesuffix(".0")


def render(result: dict[str, Any], reports: dict[str, str] | None = None) -> str:
    """The summary `tiw-emulator load` prints at the end."""
    lat = result["latency_ms"]
    rate = result.get("callbacks_per_s")
    lines = [
        "tiw-emulator load: summary",
        f"  target            {result.get('target') or '-'}",
        f"  tasks played      {result['tasks_played']:,}"
        + (
            f" (+{result['tasks_cut_short']:,} cut short by the end of the run)"
            if result.get("tasks_cut_short")
            else ""
        ),
        f"  callbacks sent    {result['callbacks_sent']:,}"
        + (f" in {result['duration_s']:,.1f} s, {rate:,.1f}/s" if rate else ""),
        f"  acknowledged      {result['acknowledged']:,}",
    ]
    if result.get("refused_as_expected"):
        lines.append(
            f"  refused (forged or expired Sign, as a correct backend must) "
            f"{result['refused_as_expected']:,}"
        )
    lines.append(f"  failed            {result['failed']:,}")
    for reason, count in result["failures_by_reason"].items():
        lines.append(f"    {count:>8,}  {reason}")
    lines.append(
        f"  backend latency   p50 {_ms(lat['p50'])} ms, p95 {_ms(lat['p95'])} ms, "
        f"p99 {_ms(lat['p99'])} ms (avg {_ms(lat['avg'])}, max {_ms(lat['max'])})"
    )
    lines.append("  by event:")
    for name, row in sorted(result["by_event"].items()):
        lines.append(
            f"    {row['sent']:>8,} sent {row['failed']:>7,} failed  p50 "
            f"{_ms(row['latency_ms']['p50'])} ms  {name}"
        )
    if result.get("by_worker"):
        lines.append("  by worker:")
        for worker, row in sorted(result["by_worker"].items()):
            lines.append(f"    {row['callbacks']:>8,} callbacks  {worker}")
    for what, where in (reports or {}).items():
        lines.append(f"  {what:<17} {where}")
    return "\n".join(lines)
