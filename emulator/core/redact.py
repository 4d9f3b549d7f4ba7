"""How secrets and credentials are shown anywhere (API, logs, dashboard, CLI): the one place."""

from __future__ import annotations


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
