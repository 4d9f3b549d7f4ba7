"""A lean asyncio HTTP/1.1 POST client with keep-alive connection pools, for plain-http callbacks.

aiohttp costs about twice the CPU per request on the delivery hot path (measured in
docs/benchmarks.md); callbacks need only POST with a Content-Length body, a status, and a
response body to log. HTTPS URLs still go through aiohttp (see engine.py).
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

MAX_RESPONSE = 1 << 20  # bodies beyond this are not read; the connection is dropped instead


class SendError(Exception):
    """The request could not be completed (connect failure, reset, malformed response)."""


class _Conn(asyncio.Protocol):
    """One keep-alive connection; parses one response at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes, bool]] | None = None
        self.closed = False
        self.got_data = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.got_data = True
        self.buf += data
        if self.waiter is not None and not self.waiter.done():
            try:
                parsed = _parse(self.buf, eof=False)
            except SendError as exc:
                self.waiter.set_exception(exc)
                return
            if parsed is not None:
                self.waiter.set_result(parsed)

    def eof_received(self) -> bool | None:
        return False  # close the transport; connection_lost settles the waiter

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            try:
                parsed = _parse(self.buf, eof=True)
            except SendError as err:
                waiter.set_exception(err)
                return
            if parsed is not None:
                waiter.set_result(parsed)
            else:
                waiter.set_exception(SendError("server closed the connection without a response"))

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


def _parse(buf: bytearray, *, eof: bool) -> tuple[int, bytes, bool] | None:
    """(status, body, keep_alive) once `buf` holds a whole response, else None."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        if len(buf) > 65536:
            raise SendError("response header too large")
        return None
    head = bytes(buf[:end]).decode("latin-1").split("\r\n")
    parts = head[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise SendError(f"malformed status line {head[0][:80]!r}")
    status = int(parts[1])
    headers = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    keep = parts[0] == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
    start = end + 4
    if status in (204, 304) or 100 <= status < 200:
        del buf[:start]
        return status, b"", keep
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return _chunked(buf, start, status, keep)
    length = headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise SendError(f"bad Content-Length {length[:40]!r}")
        size = int(length)
        if size > MAX_RESPONSE:
            raise SendError(f"response body of {size} bytes is too large")
        if len(buf) - start < size:
            return None
        body = bytes(buf[start : start + size])
        del buf[: start + size]
        return status, body, keep
    if not eof:  # body delimited by the end of the connection
        if len(buf) - start > MAX_RESPONSE:
            raise SendError("response body too large")
        return None
    return status, bytes(buf[start:]), False


def _chunked(buf: bytearray, pos: int, status: int, keep: bool) -> tuple[int, bytes, bool] | None:
    body = bytearray()
    while True:
        line_end = buf.find(b"\r\n", pos)
        if line_end < 0:
            return None
        size_text = bytes(buf[pos:line_end]).split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise SendError("malformed chunked body") from None
        if size == 0:
            rest = bytes(buf[line_end + 2 :])
            if not rest.startswith(b"\r\n") and b"\r\n\r\n" not in rest:
                return None  # trailers not complete yet
            del buf[:]
            return status, bytes(body), keep
        if len(buf) < line_end + 2 + size + 2:
            return None
        body += buf[line_end + 2 : line_end + 2 + size]
        if len(body) > MAX_RESPONSE:
            raise SendError("response body too large")
        pos = line_end + 2 + size + 2


class Sender:
    """POSTs over pooled keep-alive connections, one idle list per host:port."""

    def __init__(self, headers: dict[str, str]) -> None:
        self._headers = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self._idle: dict[tuple[str, int], list[_Conn]] = {}
        self._targets: dict[str, tuple[str, int, bytes]] = {}

    def _target(self, url: str) -> tuple[str, int, bytes]:
        target = self._targets.get(url)
        if target is None:
            parts = urlsplit(url)
            host = parts.hostname or ""
            port = parts.port or 80
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            netloc = parts.netloc.rsplit("@", 1)[-1]
            head = f"POST {path} HTTP/1.1\r\nHost: {netloc}\r\n{self._headers}"
            target = (host, port, head.encode("latin-1"))
            if len(self._targets) > 10_000:
                self._targets.clear()
            self._targets[url] = target
        return target

    async def post(self, url: str, body: bytes) -> tuple[int, bytes]:
        """Send one POST; raises SendError or OSError. The caller applies the timeout."""
        host, port, head = self._target(url)
        key = (host, port)
        request = head + b"Content-Length: %d\r\n\r\n" % len(body) + body
        idle = self._idle.setdefault(key, [])
        while idle:
            conn = idle.pop()
            if conn.closed or conn.buf:
                conn.close()
                continue
            try:
                return await self._exchange(conn, request, key)
            except SendError:
                if conn.got_data:
                    raise
                # The server dropped an idle keep-alive connection before reading: retry once
                # on a fresh connection (nothing was answered, so nothing was processed).
                break
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_connection(_Conn, host, port)
        except OSError as exc:
            reason = exc.strerror or str(exc) or type(exc).__name__
            raise SendError(f"cannot Connect to {host}:{port}: {reason}") from None
        return await self._exchange(conn, request, key)

    async def _exchange(
        self, conn: _Conn, request: bytes, key: tuple[str, int]
    ) -> tuple[int, bytes]:
        assert conn.transport is not None
        conn.got_data = False
        waiter = conn.waiter = asyncio.get_running_loop().create_future()
        conn.transport.write(request)
        try:
            status, body, keep = await waiter
        except BaseException:
            conn.close()  # a cancelled or failed exchange leaves the connection unusable
            raise
        finally:
            conn.waiter = None
        if keep and not conn.closed and not conn.buf:
            self._idle.setdefault(key, []).append(conn)
        else:
            conn.close()
        return status, body

    def close(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()
