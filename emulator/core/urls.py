"""The one check of a callback URL, shared by the control API, the cloud API and the CLI."""

from __future__ import annotations

from urllib.parse import urlsplit

_HEX = "[0-9A-Fa-f]{1,4}"
_IPV6 = "|".join(
    [
        f"({_HEX}:){{7}}{_HEX}",
        f"({_HEX}:){{1,7}}:",
        f"({_HEX}:){{1,6}}:{_HEX}",
        *[f"({_HEX}:){{1,{6 - k}}}(:{_HEX}){{1,{k + 1}}}" for k in range(1, 6)],
        f":((:{_HEX}){{1,7}}|:)",
    ]
)
_PORT = "(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4})"
# The same rule as callback_url_problem, as a JSON Schema pattern, so the OpenAPI document
# says which strings the server takes (the empty string means "no callback URL"). No newline
# anywhere: `$` would match before a trailing one. tests/test_properties_inputs.py checks
# that every string it matches passes callback_url_problem.
CALLBACK_URL_RULE = (
    "must be an http:// or https:// URL with a host (port 0-65535, no whitespace), or empty"
)
CALLBACK_URL_PATTERN = (
    r"^(?![^\n]*\n)([Hh][Tt][Tt][Pp][Ss]?://([^\s/?#@\[\]]+@)?"
    rf"([A-Za-z0-9._~%!$&'()*+,;=-]+|\[({_IPV6})\])(:{_PORT})?([/?#][^\s]*)?)?$"
)


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
