"""The lean HTTP/1.1 transport for http:// callbacks, and the URL and failure wording both share.

aiohttp costs about twice the CPU per request on the delivery hot path (measured in
docs/benchmarks.md); a callback needs only a POST with a Content-Length body, the final status,
the response headers and at most `max_response_bytes` of the body to log. So http:// goes
through `HttpTransport`: keep-alive pools per host:port and a response parser that consumes
bytes as they arrive, never holding more than the cap, and drops the connection (rather than
draining it) once a body passes the cap. https:// goes through aiohttp (transport.py).
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

MAX_HEAD = 65536  # status line and headers of one response
MAX_LINE = 4096  # one chunk-size or trailer line
READ_SIZE = 65536  # bytes read from a connection at once

CLOSED_EARLY = "connection closed by the backend before the response was complete"


class SendError(Exception):
    """An attempt failed; the message is what the attempt log records.

    Both transports word their failures with the helpers below (the timeout's is in transport.py).
    """


class BodyTooLarge(SendError):
    """The response's body passed the cap: its status, headers and the body cut at the cap."""

    def __init__(self, status: int, body: bytes, headers: dict[str, str], cap: int) -> None:
        super().__init__(
            f"response body too large: over {cap:,} bytes (kept that much; the connection was"
            " dropped, not read to the end)"
        )
        self.status, self.body, self.headers = status, body, headers


def connect_failed(host: str, port: int, exc: OSError) -> SendError:
    return SendError(f"cannot connect to {host}:{port}: {_os_reason(exc)}")


def malformed(detail: str) -> SendError:
    return SendError(f"malformed response: {detail}")


def bad_url(detail: str) -> SendError:
    return SendError(f"bad URL: {detail}")


def _os_reason(exc: OSError) -> str:
    """The reason in the same words whoever raised `exc`: "connection refused", ..."""
    if isinstance(exc, socket.gaierror):
        return "name not resolved"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if exc.errno:
        return os.strerror(exc.errno).lower()
    # asyncio's "Multiple exceptions: [Errno 111] ..., [Errno 111] ..." (one per address)
    errnos = set(re.findall(r"\[Errno (\d+)\]", str(exc)))
    if len(errnos) == 1:
        return os.strerror(int(errnos.pop())).lower()
    return str(exc) or type(exc).__name__


# -- URLs ---------------------------------------------------------------------------------------
_LONE_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_PATH_SAFE = "/%!$&'()*+,;=:@"  # RFC 3986 pchar; quote() keeps letters, digits and -._~
_QUERY_SAFE = _PATH_SAFE + "?"
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")
_HOST_CHARS = re.compile(r"[A-Za-z0-9._-]+|[0-9A-Fa-f:.]+(%[A-Za-z0-9._-]+)?")


def _encode(part: str, safe: str) -> str:
    """Percent-encode what may not appear raw (a space, non-ASCII as UTF-8); keep %XX as is."""
    return quote(_LONE_PERCENT.sub("%25", part), safe=safe)


@dataclass(frozen=True, slots=True)
class Target:
    """Where a callback URL points: the connection to open and the request line's parts."""

    scheme: str
    host: str  # for connecting: IDNA-encoded name or bare IP address
    port: int
    authority: str  # the Host header: host, [v6] and an explicit port; never user:password
    path: str  # the request target, percent-encoded, without the fragment

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.authority}{self.path}"


@functools.lru_cache(maxsize=1024)  # a few backends, thousands of callbacks each
def parse_url(url: str) -> Target:
    """Validate and encode `url`; raises SendError("bad URL: ...") naming what is wrong."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:  # "Port out of range 0-65535", "Invalid IPv6 URL", ...
        raise bad_url(str(exc).lower()) from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise bad_url("the scheme must be http or https")
    name = parts.hostname or ""
    if not name:
        raise bad_url("no host")
    try:
        host = name if name.isascii() else name.encode("idna").decode("ascii")
    except UnicodeError:
        raise bad_url("the host name cannot be encoded (IDNA)") from None
    if not _HOST_CHARS.fullmatch(host):
        raise bad_url("the host contains characters a host name cannot have")
    shown = f"[{host}]" if ":" in host else host
    path = _encode(parts.path or "/", _PATH_SAFE)
    if parts.query:
        path += "?" + _encode(parts.query, _QUERY_SAFE)
    return Target(
        scheme=scheme,
        host=host,
        port=(443 if scheme == "https" else 80) if port is None else port,
        authority=shown if port is None else f"{shown}:{port}",
        path=path,
    )


# -- the response parser ---------------------------------------------------------------------------
_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILERS, _UNTIL_EOF, _NO_BODY = range(8)

Response = tuple[int, bytes, dict[str, str], bool]  # status, body, headers, connection reusable


class _Conn(asyncio.BufferedProtocol):
    """One keep-alive connection; parses one response at a time, as its bytes arrive.

    A BufferedProtocol: the loop reads into the transport's one buffer (`read_into`) instead
    of allocating a 256 KiB bytes object per read (asyncio's max_size), which glibc serves with
    mmap, mremap and munmap: about 9 us per read (measured in docs/benchmarks.md).
    """

    def __init__(self, cap: int, read_into: memoryview) -> None:
        self.cap = cap
        self.read_into = read_into
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[Response] | None = None
        self.closed = False
        self.got_data = False
        self.phase = _HEAD
        self.status = 0
        self.headers: dict[str, str] = {}
        self.keep = False
        self.body: bytearray | bytes = bytearray()
        self.remaining = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def expect_response(self) -> asyncio.Future[Response]:
        self.got_data = False
        self.phase = _HEAD
        self.body = b""
        self.waiter = asyncio.get_running_loop().create_future()
        return self.waiter

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.read_into

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(bytes(self.read_into[:nbytes]))

    def data_received(self, data: bytes) -> None:
        self.got_data = True
        waiter = self.waiter
        if waiter is None or waiter.done():
            self.close()  # bytes nobody asked for: the connection is out of step
            return
        try:
            if self.phase == _HEAD and not self.buf:
                end = data.find(b"\r\n\r\n")
                if end >= 0:
                    self._head(data[:end])
                    data = data[end + 4 :]
                    if self.phase == _LENGTH and len(data) == self.remaining <= self.cap:
                        self.body = data  # the usual case: a whole response in one read
                        self._finish(keep=True)
                        return
            self.buf += data
            self._feed()
        except SendError as exc:
            waiter.set_exception(exc)
            self.close()

    def eof_received(self) -> bool | None:
        return False  # close the transport; connection_lost settles the waiter

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            if self.phase == _UNTIL_EOF:  # a body delimited by the end of the connection
                self._finish(keep=False)
            else:
                waiter.set_exception(SendError(CLOSED_EARLY))

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _finish(self, keep: bool, too_large: bool = False) -> None:
        assert self.waiter is not None
        reusable = keep and self.keep and not self.buf and not self.closed
        if too_large:
            cut = BodyTooLarge(self.status, bytes(self.body), self.headers, self.cap)
            self.waiter.set_exception(cut)
        else:
            self.waiter.set_result((self.status, bytes(self.body), self.headers, reusable))
        if not reusable:
            self.close()

    def _take(self, count: int) -> bool:
        """Move up to `count` buffered body bytes into the body; False once past the cap."""
        buf, body = self.buf, self.body
        if not isinstance(body, bytearray):
            body = self.body = bytearray(body)
        take = min(count, len(buf))
        room = self.cap - len(body)
        if take > room:  # past the cap: keep what fits, drop the connection, read no more
            body += buf[:room]
            buf.clear()
            self._finish(keep=False, too_large=True)
            return False
        body += buf[:take]
        del buf[:take]
        self.remaining -= take
        return True

    def _feed(self) -> None:
        buf = self.buf
        while True:
            phase = self.phase
            if phase == _HEAD:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(buf) > MAX_HEAD:
                        raise malformed(f"headers longer than {MAX_HEAD} bytes")
                    return
                self._head(bytes(buf[:end]))  # an interim 1xx leaves the phase at _HEAD
                del buf[: end + 4]
            elif phase == _NO_BODY:
                self._finish(keep=True)
                return
            elif phase == _LENGTH:
                if not self._take(self.remaining):
                    return
                if self.remaining:
                    return
                self._finish(keep=True)
                return
            elif phase in (_CHUNK_SIZE, _TRAILERS):
                end = buf.find(b"\r\n")
                if end < 0:
                    if len(buf) > MAX_LINE:
                        raise malformed("a chunk-size or trailer line is too long")
                    return
                line = bytes(buf[:end])
                del buf[: end + 2]
                if phase == _TRAILERS:
                    if not line:
                        self._finish(keep=True)
                        return
                    continue
                size = line.split(b";", 1)[0].strip()
                if not _HEX.fullmatch(size):
                    raise malformed(f"bad chunk size {line[:40].decode('latin-1')!r}")
                self.remaining = int(size, 16)
                self.phase = _CHUNK_DATA if self.remaining else _TRAILERS
            elif phase == _CHUNK_DATA:
                if not self._take(self.remaining):
                    return
                if self.remaining:
                    return
                self.phase = _CHUNK_END
            elif phase == _CHUNK_END:
                if len(buf) < 2:
                    return
                if buf[:2] != b"\r\n":
                    raise malformed("a chunk is longer than its size")
                del buf[:2]
                self.phase = _CHUNK_SIZE
            else:  # _UNTIL_EOF
                self._take(len(buf))
                return

    def _head(self, raw: bytes) -> None:
        """Read a status line and headers; set the phase that reads the body."""
        known = _HEADS.get(raw)
        if known is not None:  # the same head as an earlier response's
            self.status, headers, self.keep, self.phase, self.remaining = known
            self.headers = dict(headers)  # each attempt records its own dict
            return
        self._parse_head(raw)
        if self.phase != _HEAD and len(raw) <= MAX_REMEMBERED_HEAD:
            if len(_HEADS) >= MAX_REMEMBERED_HEADS:
                _HEADS.clear()
            _HEADS[raw] = (self.status, dict(self.headers), self.keep, self.phase, self.remaining)

    def _parse_head(self, raw: bytes) -> None:
        lines = raw.decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        code = rest[:3]
        # rest[3:4] in " ": the code ends the line or a space follows it
        if not (version[:5] == "HTTP/" and code.isdigit() and code.isascii() and rest[3:4] in " "):
            raise malformed(f"bad status line {lines[0][:80]!r}")
        status = int(code)
        if 100 <= status < 200 and status != 101:
            return  # interim (100 Continue, 103 Early Hints): not the answer
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if not colon:
                raise malformed(f"bad header line {line[:80]!r}")
            name, value = name.strip().lower(), value.strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        self.status, self.headers = status, headers
        self.keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
        if status in (101, 204, 304):
            self.phase = _NO_BODY
        elif headers.get("transfer-encoding", "").lower().endswith("chunked"):
            self.phase = _CHUNK_SIZE
        elif "content-length" in headers:
            length = headers["content-length"]
            if not _digits(length):
                raise malformed(f"bad Content-Length {length[:40]!r}")
            self.remaining = int(length)
            self.phase = _LENGTH if self.remaining else _NO_BODY
        else:
            self.keep = False
            self.phase = _UNTIL_EOF


# Parsed heads, by their bytes: a backend's replies differ mostly by their Date header, so a
# head seen before is taken from here (0.1 us instead of 3.8 us to parse; docs/benchmarks.md).
# Only final answers are remembered (an interim 1xx leaves the phase at _HEAD), and no head
# longer than MAX_REMEMBERED_HEAD; the whole table is dropped once it holds
# MAX_REMEMBERED_HEADS.
_HEADS: dict[bytes, tuple[int, dict[str, str], bool, int, int]] = {}
MAX_REMEMBERED_HEAD = 1024
MAX_REMEMBERED_HEADS = 256


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()  # isdigit() alone takes "²"


# -- the transport -------------------------------------------------------------------------------
class HttpTransport:
    """POSTs over pooled keep-alive connections, one idle list per host:port (http:// only)."""

    def __init__(self, *, connections_per_backend: int = 64, max_response_bytes: int = 65536):
        self._max_idle = connections_per_backend
        self._cap = max_response_bytes
        # Every connection's reads land here first (one loop thread reads at a time).
        self._read_into = memoryview(bytearray(READ_SIZE))
        self._idle: dict[tuple[str, int], list[_Conn]] = {}
        self._heads: dict[str, tuple[str, int, bytes]] = {}
        self._header_source: Mapping[str, str] | None = None
        self._header_block = b""

    def _request_head(self, url: str, headers: Mapping[str, str]) -> tuple[str, int, bytes]:
        """(host, port, request line + Host + headers) for `url`, cached per URL."""
        if headers is not self._header_source:
            self._header_source = headers
            self._header_block = "".join(
                f"{name}: {value}\r\n"
                for name, value in headers.items()
                if name.lower() not in ("host", "content-length", "transfer-encoding")
            ).encode("latin-1")
            self._heads.clear()
        head = self._heads.get(url)
        if head is None:
            target = parse_url(url)
            if target.scheme != "http":
                raise bad_url("the lean transport sends http:// only")
            line = f"POST {target.path} HTTP/1.1\r\nHost: {target.authority}\r\n"
            head = (target.host, target.port, line.encode("ascii") + self._header_block)
            if len(self._heads) > 10_000:
                self._heads.clear()
            self._heads[url] = head
        return head

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str]
    ) -> tuple[int, bytes, dict[str, str]]:
        """Send one POST; raises SendError. The caller applies the timeout."""
        host, port, head = self._request_head(url, headers)
        key = (host, port)
        request = head + b"Content-Length: %d\r\n\r\n" % len(body) + body
        idle = self._idle.get(key)
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
                # The backend dropped an idle keep-alive connection before reading: retry once
                # on a fresh connection (nothing was answered, so nothing was processed).
                break
        try:
            _, conn = await asyncio.get_running_loop().create_connection(
                lambda: _Conn(self._cap, self._read_into), host, port
            )
        except OSError as exc:
            raise connect_failed(host, port, exc) from None
        return await self._exchange(conn, request, key)

    async def _exchange(
        self, conn: _Conn, request: bytes, key: tuple[str, int]
    ) -> tuple[int, bytes, dict[str, str]]:
        assert conn.transport is not None
        waiter = conn.expect_response()
        conn.transport.write(request)
        try:
            status, body, headers, reusable = await waiter
        except BaseException:
            conn.close()  # a cancelled or failed exchange leaves the connection unusable
            raise
        finally:
            conn.waiter = None
        if reusable:
            idle = self._idle.setdefault(key, [])
            if len(idle) < self._max_idle:
                idle.append(conn)
            else:
                conn.close()
        return status, body, headers

    def close_idle(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()

    async def close(self) -> None:
        self.close_idle()
