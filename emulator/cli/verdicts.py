"""How the CLI words an attempt's outcome (the rule and its reasons live in emulator.core.ack)."""

from __future__ import annotations

from typing import Any

from emulator.core.ack import reason_not_acknowledged

BODY_WIDTH = 40


def not_acknowledged_reason(delivery: dict[str, Any]) -> str | None:
    """None for an acknowledged attempt, else the reason it did not count."""
    if delivery["ok"]:
        return None
    return delivery["error"] or reason_not_acknowledged(delivery["status_code"], None)


def one_line(text: str | None, width: int = BODY_WIDTH) -> str:
    """A response body trimmed to one short line for a table: '' when there is none."""
    if not text:
        return ""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def status_text(delivery: dict[str, Any]) -> str:
    """`200`, `403`, or `-` when no HTTP response came back."""
    status = delivery["status_code"]
    return "-" if status is None else str(status)
