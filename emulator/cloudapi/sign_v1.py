"""The older API 3.0 signature (v1): `HmacSHA1`/`HmacSHA256` over the sorted request parameters.

As Tencent's API 3.0 documentation describes it, and as tccli and the SDKs' `signMethod`
option send it: every parameter (common ones such as `Action`, `Nonce`, `SecretId`,
`Timestamp` and the action's own) travels in the query string (GET) or a form body (POST);
the string to sign is `GET`/`POST` + host + path + `?` + the parameters sorted by name and
joined as `name=value` with their raw (not URL-encoded) values; the signature is the base64
HMAC of that string under the SecretKey, itself sent as the `Signature` parameter.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from typing import Any

from emulator.cloudapi import errors
from emulator.cloudapi.hosts import EXACT, SigningLeeway

# `SignatureMethod` absent means HmacSHA1, as the documentation says.
DEFAULT_METHOD = "HmacSHA1"
DIGESTS: dict[str, Callable[..., Any]] = {"HmacSHA1": hashlib.sha1, "HmacSHA256": hashlib.sha256}
# Common parameters of this signature; everything else belongs to the action.
COMMON_PARAMS = frozenset(
    {
        "Action",
        "Version",
        "Region",
        "Timestamp",
        "Nonce",
        "SecretId",
        "Signature",
        "SignatureMethod",
        "Token",
        "Language",
        "RequestClient",
    }
)
_TIMESTAMP = re.compile(r"[0-9]{1,12}")


def string_to_sign(*, method: str, host: str, path: str, params: Mapping[str, str]) -> str:
    """`POSTtiw.tencentcloudapi.com/?Action=...&Nonce=...`: every parameter but `Signature`."""
    query = "&".join(f"{name}={params[name]}" for name in sorted(params) if name != "Signature")
    return f"{method.upper()}{host}{path}?{query}"


def signature(secret_key: str, text: str, method: str = DEFAULT_METHOD) -> str:
    """Base64 HMAC of `text` under `secret_key` with `method` (HmacSHA1 or HmacSHA256)."""
    digest = hmac.new(secret_key.encode("utf-8"), text.encode("utf-8"), DIGESTS[method]).digest()
    return base64.b64encode(digest).decode("ascii")


def sign_params(
    *,
    secret_key: str,
    method: str,
    host: str,
    params: Mapping[str, str],
    path: str = "/",
) -> dict[str, str]:
    """`params` plus the `Signature` a client would add (its `SignatureMethod` is used)."""
    signature_method = params.get("SignatureMethod", DEFAULT_METHOD)
    text = string_to_sign(method=method, host=host, path=path, params=params)
    return {**params, "Signature": signature(secret_key, text, signature_method)}


def verify_params(
    *,
    method: str,
    host: str,
    path: str,
    params: Mapping[str, str],
    secrets: Mapping[str, str],
    now: float,
    max_skew_s: int = 300,
    leeway: SigningLeeway = EXACT,
) -> str:
    """Check a v1-signed request's parameters; return its SecretId.

    Raises, in this order: MissingParameter (naming `SecretId`, `Signature`, `Timestamp` or
    `Nonce`), InvalidParameterValue (`SignatureMethod`, `Timestamp`),
    AuthFailure.SecretIdNotFound, AuthFailure.SignatureExpire (|now - Timestamp| >
    max_skew_s) and AuthFailure.SignatureFailure. `leeway` may accept the host signed
    without its port; the signature itself is always checked.
    """
    for name in ("SecretId", "Signature", "Timestamp", "Nonce"):
        if not params.get(name, "").strip():
            raise errors.missing_parameter(name)
    signature_method = params.get("SignatureMethod", DEFAULT_METHOD)
    if signature_method not in DIGESTS:
        raise errors.invalid_value(
            "SignatureMethod", signature_method, "must be HmacSHA1 or HmacSHA256"
        )
    raw_ts = params["Timestamp"].strip()
    if not _TIMESTAMP.fullmatch(raw_ts):
        raise errors.invalid_value("Timestamp", raw_ts, "must be integer Unix seconds")
    secret_key = secrets.get(params["SecretId"])
    if secret_key is None:
        raise errors.secret_id_not_found(params["SecretId"])
    if abs(now - int(raw_ts)) > max_skew_s:
        raise errors.signature_expire(int(raw_ts), int(now), max_skew_s)

    given = params["Signature"].strip().encode("utf-8")
    for signed_host in leeway.signed_hosts(host):
        text = string_to_sign(method=method, host=signed_host, path=path, params=params)
        expected = signature(secret_key, text, signature_method).encode("ascii")
        if hmac.compare_digest(expected, given):
            return params["SecretId"]
    raise errors.signature_failure()
