"""What acknowledges a callback, and why an attempt did not count, in words a developer can act on.

The rule (SPEC section 2): only HTTP 200 acknowledges; with `strict_ack` only HTTP 200 whose body
is the legacy `{"error_code": 0}`. Anything else, a timeout or a connection error, is a failed
attempt that the retry policy tries again. The engine records the reason with the attempt, so the
API, the dashboard and the CLI all show the same words.
"""

from __future__ import annotations

import json

NOT_ACKNOWLEDGED = 'strict_ack: response body is not {"error_code": 0}'


def acknowledged(status: int | None, body: str | None, *, strict: bool) -> bool:
    if status != 200:
        return False
    if not strict:
        return True
    try:
        return bool(json.loads(body or "").get("error_code") == 0)
    except (ValueError, AttributeError):
        return False


def reason_not_acknowledged(status: int | None, error: str | None) -> str:
    """Why an attempt with this status (None: no HTTP response) did not count."""
    if status is None:
        return error or "no response"
    if status == 200:
        return NOT_ACKNOWLEDGED
    if 200 < status < 300:
        return f"{status} is not an acknowledgement: only HTTP 200 counts"
    if 300 <= status < 400:
        return f"{status} redirect: not followed; only HTTP 200 counts"
    if status in (401, 403):
        return f"{status}: the backend refused the callback"
    if 400 <= status < 500:
        return f"{status}: the backend rejected the request"
    return f"{status}: the backend failed (server error)"
