"""Why a callback attempt was or was not acknowledged, in words a backend developer can act on.

The rule (SPEC section 2): an attempt is acknowledged only by HTTP 200, and with `strict_ack`
only by HTTP 200 whose body is the legacy `{"error_code": 0}`. Anything else, a timeout or a
connection error, is a failed attempt that the retry policy tries again.
"""

from __future__ import annotations

from typing import Any

BODY_WIDTH = 40


def not_acknowledged_reason(delivery: dict[str, Any]) -> str | None:
    """None for an acknowledged attempt, else the reason it did not count."""
    if delivery["ok"]:
        return None
    status = delivery["status_code"]
    if status is None:
        return str(delivery["error"] or "no response")
    if status == 200:
        # Only strict_ack turns a 200 away; the engine says so in its own words.
        return str(delivery["error"] or 'strict_ack: the body is not {"error_code": 0}')
    if 200 < status < 300:
        return f"{status} is not an acknowledgement: only HTTP 200 counts"
    if 300 <= status < 400:
        return f"{status} redirect: not followed; only HTTP 200 counts"
    if status in (401, 403):
        return f"{status}: the backend refused the callback"
    if 400 <= status < 500:
        return f"{status}: the backend rejected the request"
    return f"{status}: the backend failed (server error)"


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
