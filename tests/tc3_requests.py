"""Headers of a TC3-HMAC-SHA256 signed JSON POST, as the official SDKs send them (test helper)."""

from __future__ import annotations

from emulator.cloudapi import tc3
from emulator.cloudapi.params import API_VERSION


def tc3_headers(
    action: str,
    body: bytes,
    *,
    secret_id: str,
    secret_key: str,
    host: str,
    timestamp: int,
    region: str = "ap-guangzhou",
) -> dict[str, str]:
    authorization = tc3.sign_request(
        secret_id=secret_id,
        secret_key=secret_key,
        method="POST",
        host=host,
        content_type="application/json",
        query="",
        body=body,
        timestamp=timestamp,
    )
    return {
        "Authorization": authorization,
        "Content-Type": "application/json",
        "X-TC-Action": action,
        "X-TC-Version": API_VERSION,
        "X-TC-Timestamp": str(timestamp),
        "X-TC-Region": region,
    }
