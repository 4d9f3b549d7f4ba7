"""The transports behind one protocol: what an attempt sends and what it records, either scheme.

`Transports` is what the engine holds. It picks the lean sender (http://, sender.py) or aiohttp
(https://, imported at the first https callback: it is slow to import), applies the attempt's
timeout and turns every failure into `AttemptResult.error`, worded the same whichever transport
failed. Both send the same request: the URL's path and query percent-encoded, the same headers,
no proxy, no redirect followed (a 3xx is the recorded answer). A response body is read up to
`max_response_bytes` and no further: a longer one is a failed attempt ("response body too
large"), recorded with its status and the body cut at the cap, and its connection is dropped
rather than drained (a backend streaming forever or sending one 100 MB chunk costs nothing).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections import deque
from collections.abc import Mapping
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from emulator.delivery.sender import (
    CLOSED_EARLY,
    BodyTooLarge,
    HttpTransport,
    SendError,
    bad_url,
    connect_failed,
    malformed,
    parse_url,
)

if TYPE_CHECKING:
    import aiohttp


class AttemptResult(NamedTuple):
    """What one POST came to: the final answer, or why there was none.

    A NamedTuple: built once per attempt on the hot path (a frozen dataclass costs 4x).
    """

    status_code: int | None  # final status (interim 1xx replies skipped), None on error
    response_body: str | None  # UTF-8 decoded with errors="replace", at most max_response_bytes
    response_headers: dict[str, str] | None  # names in lower case
    error: str | None  # e.g. "timeout: no response within 5 s"


class Transport(Protocol):
    """Sends one POST for one URL scheme; raises SendError (or TimeoutError) on failure."""

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str]
    ) -> tuple[int, bytes, dict[str, str]]: ...

    async def close(self) -> None: ...


class Transports:
    """One transport per scheme, shared by every attempt of an engine (on its event loop)."""

    def __init__(
        self,
        headers: Mapping[str, str],
        *,
        connections_per_backend: int = 64,
        max_response_bytes: int = 65536,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._headers = dict(headers)
        self._cap = max_response_bytes
        self._deadlines = Deadlines()
        self._http = HttpTransport(
            connections_per_backend=connections_per_backend, max_response_bytes=max_response_bytes
        )
        self._https = HttpsTransport(
            connections_per_backend=connections_per_backend,
            max_response_bytes=max_response_bytes,
            ssl_context=ssl_context,
        )

    def _pick(self, url: str) -> Transport:
        if url.startswith("http://"):
            return self._http
        scheme = url[:8].lower()
        if scheme.startswith("http://"):
            return self._http
        if scheme == "https://":
            return self._https
        raise bad_url("the scheme must be http or https")

    async def post(self, url: str, body: bytes, *, timeout_s: float) -> AttemptResult:
        """POST `body` to `url` within `timeout_s`; never raises but CancelledError."""
        watch = self._deadlines.start(timeout_s)
        try:
            transport = self._pick(url)
            status, raw, headers = await transport.post(url, body, self._headers)
        except asyncio.CancelledError:
            if watch.expired():
                return _failed(f"timeout: no response within {timeout_s:g} s")
            raise  # cancelled from outside (a stop): not ours to swallow
        except TimeoutError:
            return _failed(f"timeout: no response within {timeout_s:g} s")
        except BodyTooLarge as exc:  # a failed attempt, with what came: status, headers, the cut
            cut = exc.body[: self._cap].decode("utf-8", errors="replace")
            return AttemptResult(exc.status, cut, exc.headers, str(exc))
        except SendError as exc:
            return _failed(str(exc))
        except Exception as exc:  # unforeseen: still recorded, never raised into the loop
            return _failed(f"{type(exc).__name__}: {exc}")
        finally:
            watch.live = False
        watch.expired()  # answered just as the deadline passed: the answer counts
        text = raw[: self._cap].decode("utf-8", errors="replace")
        return AttemptResult(status, text, headers, None)

    async def close(self) -> None:
        self._deadlines.close()
        await self._http.close()
        await self._https.close()


# The loop runs a timer once its time is within the clock's resolution (asyncio does the same).
_RESOLUTION = time.get_clock_info("monotonic").resolution


class Watch:
    """One attempt's deadline: its task is cancelled when the deadline passes while `live`."""

    __slots__ = ("cancelling", "deadline", "fired", "live", "task")

    def __init__(self, deadline: float, task: asyncio.Task[Any]) -> None:
        self.deadline = deadline
        self.task = task
        self.cancelling = task.cancelling()
        self.live = True
        self.fired = False

    def expired(self) -> bool:
        """Whether the deadline cancelled the task; takes that cancellation back (as
        asyncio.timeout does), so a cancellation from outside still counts."""
        if not self.fired:
            return False
        self.fired = False
        return self.task.uncancel() <= self.cancelling


class Deadlines:
    """Attempt timeouts with one timer per timeout value instead of one per attempt.

    `asyncio.timeout` pushes a timer onto the loop's heap for every attempt and cancels it
    after: about 4.4 us per attempt, some 5% of the engine's CPU per callback (measured in
    docs/benchmarks.md). Attempts with the same timeout reach their deadlines in the order they
    started, so their deadlines wait in one FIFO, and one timer, armed at the oldest live
    deadline, cancels the task of each attempt that outlived its deadline (`Watch.expired`
    then tells the attempt it was the timeout). Finished attempts leave the FIFO as it is walked.
    """

    def __init__(self) -> None:
        self._fifos: dict[float, deque[Watch]] = {}
        self._timers: dict[float, asyncio.TimerHandle] = {}

    def start(self, timeout_s: float) -> Watch:
        """Watch the current task's attempt for `timeout_s` from now."""
        loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        assert task is not None
        watch = Watch(loop.time() + timeout_s, task)
        fifo = self._fifos.get(timeout_s)
        if fifo is None:
            fifo = self._fifos[timeout_s] = deque()
        while fifo and not fifo[0].live:
            fifo.popleft()
        fifo.append(watch)
        if timeout_s not in self._timers:
            self._timers[timeout_s] = loop.call_at(watch.deadline, self._due, loop, timeout_s)
        return watch

    def _due(self, loop: asyncio.AbstractEventLoop, timeout_s: float) -> None:
        del self._timers[timeout_s]
        fifo = self._fifos[timeout_s]
        now = loop.time() + _RESOLUTION
        while fifo:
            head = fifo[0]
            if head.live and head.deadline > now:
                self._timers[timeout_s] = loop.call_at(head.deadline, self._due, loop, timeout_s)
                return
            fifo.popleft()
            if head.live:
                head.live = False
                head.fired = True
                head.task.cancel()
        del self._fifos[timeout_s]  # a timeout no longer in use leaves nothing behind

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._fifos.clear()


def _failed(error: str) -> AttemptResult:
    return AttemptResult(None, None, None, error)


class HttpsTransport:
    """https:// on aiohttp, with the lean sender's behaviour and failure wording."""

    def __init__(
        self,
        *,
        connections_per_backend: int = 64,
        max_response_bytes: int = 65536,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._per_backend = connections_per_backend
        self._cap = max_response_bytes
        self._ssl = ssl_context
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        import aiohttp  # only https callbacks need it

        trace = aiohttp.TraceConfig()
        trace.on_connection_reuseconn.append(_note_reuse)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=0, limit_per_host=self._per_backend, ssl=self._ssl or True
            ),
            trust_env=False,  # callbacks go straight to the backend, never through a proxy
            auto_decompress=False,  # the cap counts the bytes on the wire, as over http://
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            timeout=aiohttp.ClientTimeout(total=None),  # Transports applies the attempt's
            trace_configs=[trace],
        )
        return self._session

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str]
    ) -> tuple[int, bytes, dict[str, str]]:
        import aiohttp
        import yarl

        target = parse_url(url)
        if target.scheme != "https":
            raise bad_url("the aiohttp transport sends https:// only")
        session = self._session or self._open()
        encoded = yarl.URL(target.url, encoded=True)  # already percent-encoded: keep it so
        for _ in range(2):
            request = SimpleNamespace(reused=False, answered=False)
            try:
                async with session.post(
                    encoded,
                    data=body,
                    headers=headers,
                    allow_redirects=False,
                    trace_request_ctx=request,
                ) as resp:
                    request.answered = True
                    raw, complete = await _read_capped(resp.content, self._cap)
                    if not complete:
                        resp.close()  # drops the connection: the rest is never read
                        raise BodyTooLarge(resp.status, raw, _joined(resp.headers), self._cap)
                    return resp.status, raw, _joined(resp.headers)
            except aiohttp.ServerDisconnectedError:
                if request.reused and not request.answered:
                    # The backend dropped an idle keep-alive connection before reading: retry
                    # once on a fresh connection, as the lean sender does.
                    continue
                raise SendError(CLOSED_EARLY) from None
            except aiohttp.ClientError as exc:
                raise _describe(exc, target.host, target.port) from None
        raise SendError(CLOSED_EARLY)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def _note_reuse(session: Any, trace_ctx: Any, params: Any) -> None:
    trace_ctx.trace_request_ctx.reused = True


async def _read_capped(content: aiohttp.StreamReader, cap: int) -> tuple[bytes, bool]:
    """At most `cap` bytes of the body, and whether that was all of it."""
    body = bytearray()
    while len(body) <= cap:
        chunk = await content.read(cap + 1 - len(body))
        if not chunk:
            return bytes(body), True
        body += chunk
    return bytes(body[:cap]), False


def _joined(headers: Mapping[str, str]) -> dict[str, str]:
    """Names in lower case, repeated fields joined with ", ", as the lean parser does."""
    merged: dict[str, str] = {}
    for name, value in headers.items():
        key = name.lower()
        merged[key] = f"{merged[key]}, {value}" if key in merged else value
    return merged


def _describe(exc: aiohttp.ClientError, host: str, port: int) -> SendError:
    """aiohttp's failure in the lean sender's words."""
    import aiohttp

    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return SendError(f"TLS error from {host}:{port}: {exc.certificate_error}")
    if isinstance(exc, aiohttp.ClientConnectorSSLError | aiohttp.ClientSSLError):
        return SendError(f"TLS error from {host}:{port}: {exc}")
    if isinstance(exc, aiohttp.ClientConnectorDNSError):  # its os_error has no errno to go by
        return connect_failed(host, port, socket.gaierror(socket.EAI_NONAME, str(exc.os_error)))
    if isinstance(exc, aiohttp.ClientConnectorError):
        return connect_failed(host, port, exc.os_error)
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ClientOSError):
        return SendError(CLOSED_EARLY)
    if isinstance(exc, aiohttp.ClientResponseError):
        detail = str(exc.message).split("\n", 1)[0].rstrip(": ")  # its next lines quote bytes
        return malformed(detail[:1].lower() + detail[1:] or type(exc).__name__)
    if isinstance(exc, aiohttp.InvalidURL):
        return bad_url(str(exc))
    return SendError(f"{type(exc).__name__}: {exc}")
