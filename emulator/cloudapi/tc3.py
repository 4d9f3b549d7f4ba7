"""TC3-HMAC-SHA256 request signing and verification, byte-compatible with the Tencent Cloud SDKs."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from emulator.cloudapi import errors
from emulator.cloudapi.hosts import EXACT, SigningLeeway

ALGORITHM = "TC3-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
_REQUIRED_SIGNED_HEADERS = ("content-type", "host")
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")


@dataclass(frozen=True)
class ParsedAuthorization:
    """The pieces of an `Authorization: TC3-HMAC-SHA256 ...` header value."""

    secret_id: str
    date: str
    service: str
    terminator: str
    signed_headers: tuple[str, ...]
    signature: str


def utc_date(timestamp: int) -> str:
    """The `YYYY-MM-DD` UTC date of a Unix timestamp, as used in the credential scope."""
    return datetime.fromtimestamp(timestamp, tz=UTC).strftime("%Y-%m-%d")


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def _header_bytes(value: str) -> bytes:
    # WSGI hands header values over as latin-1-decoded text; this recovers the bytes sent.
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode("utf-8")


def canonical_request(
    *,
    method: str,
    path: str,
    query: bytes,
    signed_headers: tuple[str, ...],
    header_values: Mapping[str, str],
    payload_hash: str,
) -> bytes:
    """The canonical request, built as bytes so the raw query string survives untouched."""
    lines = b"".join(
        name.encode("ascii") + b":" + _header_bytes(header_values.get(name, "")) + b"\n"
        for name in signed_headers
    )
    return b"\n".join(
        [
            method.upper().encode("ascii"),
            path.encode("utf-8"),
            query,
            lines,
            ";".join(signed_headers).encode("ascii"),
            payload_hash.encode("ascii"),
        ]
    )


def compute_signature(
    *, secret_key: str, date: str, service: str, timestamp: str, canonical: bytes
) -> str:
    """Hex signature over a canonical request (key derivation: TC3+key → date → service)."""
    scope = f"{date}/{service}/tc3_request"
    string_to_sign = "\n".join([ALGORITHM, timestamp, scope, hashlib.sha256(canonical).hexdigest()])
    k_date = _hmac(("TC3" + secret_key).encode("utf-8"), date)
    k_signing = _hmac(_hmac(k_date, service), "tc3_request")
    return hmac.new(k_signing, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def sign_request(
    *,
    secret_id: str,
    secret_key: str,
    method: str,
    host: str,
    content_type: str,
    query: str,
    body: bytes,
    timestamp: int,
    service: str = "tiw",
    unsigned_payload: bool = False,
) -> str:
    """Return the `Authorization` header value the official SDK would send for this request."""
    payload = UNSIGNED_PAYLOAD.encode("ascii") if unsigned_payload else body
    canonical = canonical_request(
        method=method,
        path="/",
        query=query.encode("utf-8"),
        signed_headers=_REQUIRED_SIGNED_HEADERS,
        header_values={"content-type": content_type, "host": host},
        payload_hash=hashlib.sha256(payload).hexdigest(),
    )
    date = utc_date(timestamp)
    signature = compute_signature(
        secret_key=secret_key,
        date=date,
        service=service,
        timestamp=str(timestamp),
        canonical=canonical,
    )
    return (
        f"{ALGORITHM} Credential={secret_id}/{date}/{service}/tc3_request, "
        f"SignedHeaders={';'.join(_REQUIRED_SIGNED_HEADERS)}, Signature={signature}"
    )


def parse_authorization(value: str | None) -> ParsedAuthorization:
    """Split an Authorization header; anything malformed is AuthFailure.InvalidAuthorization."""
    if not value or not value.strip():
        raise errors.invalid_authorization("the `Authorization` header is missing")
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise errors.invalid_authorization(f"algorithm must be `{ALGORITHM}`, got `{algorithm}`")
    fields: dict[str, str] = {}
    for part in rest.split(","):
        key, sep, val = part.strip().partition("=")
        if not sep:
            raise errors.invalid_authorization(f"cannot parse `{part.strip()}`")
        fields[key.strip()] = val.strip()
    for key in ("Credential", "SignedHeaders", "Signature"):
        if not fields.get(key):
            raise errors.invalid_authorization(f"`{key}` is missing")
    # SecretIds never contain "/", but split from the right so the scope parts stay exact.
    credential = fields["Credential"].rsplit("/", 3)
    if len(credential) != 4 or not credential[0]:
        raise errors.invalid_authorization(
            "`Credential` must be `<SecretId>/<YYYY-MM-DD>/<service>/tc3_request`"
        )
    signed = tuple(h.strip().lower() for h in fields["SignedHeaders"].split(";"))
    missing = [h for h in _REQUIRED_SIGNED_HEADERS if h not in signed]
    if missing:
        raise errors.invalid_authorization(
            f"`SignedHeaders` must include content-type and host (missing {', '.join(missing)})"
        )
    if not _HEX64.fullmatch(fields["Signature"]):
        raise errors.invalid_authorization("`Signature` must be 64 hexadecimal characters")
    secret_id, date, service, terminator = credential
    return ParsedAuthorization(
        secret_id=secret_id,
        date=date,
        service=service,
        terminator=terminator,
        signed_headers=signed,
        signature=fields["Signature"].lower(),
    )


def verify_request(
    *,
    method: str,
    query_string: bytes,
    headers: Mapping[str, str],
    body: bytes,
    secrets: Mapping[str, str],
    now: float,
    max_skew_s: int = 300,
    service: str = "tiw",
    path: str = "/",
    leeway: SigningLeeway = EXACT,
) -> str:
    """Check a request's TC3 signature over the raw bytes received; return its SecretId.

    `leeway` (see `hosts`) may also accept the credential scope's service as the client
    derived it and the host signed without its port; the signature is always checked.

    Raises, in this order of checks: AuthFailure.InvalidAuthorization (missing/malformed
    header), AuthFailure.SecretIdNotFound, MissingParameter/InvalidParameterValue for
    X-TC-Timestamp, AuthFailure.SignatureExpire (|now - timestamp| > max_skew_s), and
    AuthFailure.SignatureFailure (scope date, service or signature mismatch).
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    auth = parse_authorization(lowered.get("authorization"))
    secret_key = secrets.get(auth.secret_id)
    if secret_key is None:
        raise errors.secret_id_not_found(auth.secret_id)

    raw_ts = lowered.get("x-tc-timestamp", "").strip()
    if not raw_ts:
        raise errors.missing_parameter("X-TC-Timestamp")
    if not _TIMESTAMP.fullmatch(raw_ts):
        raise errors.invalid_value("X-TC-Timestamp", raw_ts, "must be integer Unix seconds")
    timestamp = int(raw_ts)
    if abs(now - timestamp) > max_skew_s:
        raise errors.signature_expire(timestamp, int(now), max_skew_s)

    if auth.date != utc_date(timestamp):
        raise errors.signature_failure(
            f"credential date {auth.date} is not the UTC date of X-TC-Timestamp {timestamp}"
        )
    if auth.terminator != "tc3_request" or not leeway.accepts_service(auth.service, service):
        raise errors.signature_failure(f"credential scope must end with `/{service}/tc3_request`")

    unsigned = lowered.get("x-tc-content-sha256", "").strip().upper() == UNSIGNED_PAYLOAD
    payload = UNSIGNED_PAYLOAD.encode("ascii") if unsigned else body
    payload_hash = hashlib.sha256(payload).hexdigest()
    for values in _header_candidates(auth.signed_headers, lowered, leeway):
        canonical = canonical_request(
            method=method,
            path=path,
            query=query_string,
            signed_headers=auth.signed_headers,
            header_values=values,
            payload_hash=payload_hash,
        )
        expected = compute_signature(
            secret_key=secret_key,
            date=auth.date,
            service=auth.service,
            timestamp=raw_ts,
            canonical=canonical,
        )
        if hmac.compare_digest(expected, auth.signature):
            return auth.secret_id
    raise errors.signature_failure()


def _header_candidates(
    signed: tuple[str, ...], lowered: Mapping[str, str], leeway: SigningLeeway
) -> list[dict[str, str]]:
    """The signed header values a client may have used, most likely first."""
    # `parse_authorization` made sure `host` is among the signed headers.
    verbatim = {name: lowered.get(name, "").strip() for name in signed}
    candidates: list[dict[str, str]] = []
    for host in leeway.signed_hosts(verbatim["host"]):
        values = {**verbatim, "host": host}
        # The SDKs sign header values verbatim, Tencent's written spec lowercases them:
        # accept either, so hand-written clients following the docs verify too.
        for variant in (values, {name: value.lower() for name, value in values.items()}):
            if variant not in candidates:
                candidates.append(variant)
    return candidates
