"""Callback signatures: Sign = md5(CallbackKey + str(ExpireTime))."""

from __future__ import annotations

import hashlib
import hmac
from enum import StrEnum


class SignMode(StrEnum):
    """How an outgoing callback is signed."""

    VALID = "valid"
    INVALID = "invalid"  # a Sign that does not match the key
    EXPIRED = "expired"  # a correct Sign over an ExpireTime already in the past
    NONE = "none"  # no ExpireTime/Sign at all, as when no key is configured


def sign(callback_key: str, expire_time: int) -> str:
    """The Sign Tencent puts in a callback envelope (lowercase hex md5)."""
    return hashlib.md5((callback_key + str(expire_time)).encode("utf-8")).hexdigest()


def verify(callback_key: str, expire_time: int, signature: str, *, now: float) -> tuple[bool, str]:
    """Check a received Sign/ExpireTime pair as an app backend should; returns (ok, reason)."""
    if not hmac.compare_digest(sign(callback_key, expire_time), signature.lower()):
        return False, "Sign does not match md5(key + ExpireTime)"
    if now > expire_time:
        return False, f"ExpireTime {expire_time} is in the past (now {int(now)})"
    return True, "ok"


def signature_fields(
    callback_key: str | None, *, timestamp: int, ttl_s: int, mode: SignMode
) -> dict[str, int | str]:
    """ExpireTime and Sign for an envelope, following the sign mode; {} when unsigned."""
    if not callback_key or mode is SignMode.NONE:
        return {}
    if mode is SignMode.EXPIRED:
        expire = timestamp - max(ttl_s, 60)
        return {"ExpireTime": expire, "Sign": sign(callback_key, expire)}
    expire = timestamp + ttl_s
    good = sign(callback_key, expire)
    if mode is SignMode.INVALID:
        # Same shape as a real Sign, but computed with the wrong key.
        return {"ExpireTime": expire, "Sign": sign(callback_key + "-wrong", expire)}
    return {"ExpireTime": expire, "Sign": good}
