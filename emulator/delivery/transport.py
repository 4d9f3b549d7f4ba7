"""Transports: one `post` for every callback URL, whichever scheme, with one way to fail.

http:// goes through the lean keep-alive sender, https:// through aiohttp (imported lazily).
Every failure becomes `AttemptResult.error`, worded the same whichever transport failed.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from emulator.delivery.sender import Sender, SendError


@dataclass(frozen=True)
class AttemptResult:
    status_code: int | None
    response_body: str | None
    response_headers: dict[str, str] | None
    error: str | None


class Transport(Protocol):
    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str]
    ) -> tuple[int, bytes, dict[str, str]]: ...

    async def close(self) -> None: ...


class Transports:
    def __init__(
        self,
        headers: Mapping[str, str],
        *,
        connections_per_backend: int = 64,
        max_response_bytes: int = 65536,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._headers = dict(headers)
        self._per_backend = connections_per_backend
        self._max = max_response_bytes
        self._ssl = ssl_context
        self._sender = Sender(self._headers)
        self._session: Any = None

    async def post(self, url: str, body: bytes, *, timeout_s: float) -> AttemptResult:
        try:
            async with asyncio.timeout(timeout_s):
                if url.startswith("http://"):
                    status, raw = await self._sender.post(url, body)
                    headers: dict[str, str] | None = None
                else:
                    status, raw, headers = await self._post_https(url, body)
            text = raw[: self._max].decode("utf-8", errors="replace")
            return AttemptResult(status, text, headers, None)
        except TimeoutError:
            return AttemptResult(None, None, None, f"timeout: no response within {timeout_s:g} s")
        except SendError as exc:
            return AttemptResult(None, None, None, str(exc))
        except Exception as exc:  # e.g. an invalid URL; recorded, never raised into the loop
            return AttemptResult(None, None, None, f"{type(exc).__name__}: {exc}")

    async def _post_https(self, url: str, body: bytes) -> tuple[int, bytes, dict[str, str]]:
        if self._session is None:
            import aiohttp  # only https callbacks need it, and it is slow to import

            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=0, limit_per_host=self._per_backend, ssl=self._ssl or True
                ),
                trust_env=False,  # callbacks go straight to the backend, never through a proxy
                skip_auto_headers=("User-Agent",),
            )
        async with self._session.post(
            url, data=body, headers=self._headers, allow_redirects=False
        ) as resp:
            return resp.status, await resp.content.read(self._max), dict(resp.headers)

    async def close(self) -> None:
        self._sender.close()
        if self._session is not None:
            await self._session.close()
