"""The one check of a callback URL, shared by the control API, the cloud API and the CLI."""

from __future__ import annotations

from urllib.parse import urlsplit


def callback_url_problem(url: str) -> str | None:
    """Why `url` cannot take callbacks, or None: an absolute http(s) URL with a host."""
    if not url.lower().startswith(("http://", "https://")):
        return "must start with http:// or https://"
    if any(ch.isspace() for ch in url):
        return "must not contain whitespace"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError for a non-numeric or out-of-range port
    except ValueError as exc:
        return str(exc)
    if not parts.hostname:
        return "has no host"
    return None
