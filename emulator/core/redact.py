"""How secrets and credentials are shown anywhere (API, logs, dashboard, CLI): the one place."""

from __future__ import annotations

import re
from typing import overload

_PASSWORD_PARAM = re.compile(r"(password=)[^&\s#]*")


def mask(secret: str | None) -> str | None:
    """A secret (CallbackKey, SecretKey, token) as shown: its first two characters, never its
    length (`Xz****`); a short one shows nothing of itself."""
    if not secret:
        return secret
    return f"{secret[:2]}****" if len(secret) >= 8 else "****"


def short_id(secret_id: str) -> str:
    """A SecretId (an identifier, not the secret) shortened so pairs can be told apart:
    `AKID****0001`."""
    if len(secret_id) <= 8:
        return "****"
    return f"{secret_id[:4]}****{secret_id[-4:]}"


@overload
def mask_url(url: str) -> str: ...
@overload
def mask_url(url: None) -> None: ...
def mask_url(url: str | None) -> str | None:
    """A URL as shown: a password in it masked, in the user part (`http://user:****@host/...`)
    or as a `password=` parameter (a PostgreSQL URL's `?password=****`); the rest as is."""
    if not url:
        return url
    url = _PASSWORD_PARAM.sub(r"\1****", url)
    if "@" not in url:
        return url
    scheme, sep, rest = url.partition("://")
    if not sep:  # no scheme (a malformed URL in an error message): still mask its userinfo
        scheme, rest = "", url
    authority, slash, tail = _split_authority(rest)
    userinfo, at, host = authority.rpartition("@")
    if not at:
        return url
    user, colon, _ = userinfo.partition(":")
    return f"{scheme}{sep}{user}{':****' if colon else ''}@{host}{slash}{tail}"


def _split_authority(rest: str) -> tuple[str, str, str]:
    """(authority, the delimiter after it, the remainder): the authority ends at / ? or #."""
    for i, ch in enumerate(rest):
        if ch in "/?#":
            return rest[:i], ch, rest[i + 1 :]
    return rest, "", ""
