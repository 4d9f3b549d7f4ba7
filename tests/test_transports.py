"""The transports: one behaviour, checked against both (the lean http:// sender and https://
on aiohttp) over real loopback servers; https with a CA made for the test by trustme."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import struct
import subprocess
import sys
import textwrap
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from emulator.delivery.engine import new_loop
from emulator.delivery.sender import CLOSED_EARLY
from emulator.delivery.transport import AttemptResult, Deadlines, Transports

HEADERS = {"Content-Type": "application/json", "User-Agent": "tiw-emulator"}
SENT_HEADERS = {"host", "content-type", "user-agent", "content-length"}
BODY = b'{"EventType":"OfflineRecordProgressChanged"}'

Reply = Callable[[asyncio.StreamWriter], Awaitable[bool]]  # False: close the connection


@dataclass(frozen=True)
class Side:
    """One transport under test: its scheme and the TLS contexts of server and client."""

    scheme: str
    server_ssl: ssl.SSLContext | None = None
    client_ssl: ssl.SSLContext | None = None


class EngineLoopPolicy(asyncio.DefaultEventLoopPolicy):
    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        return new_loop()


@pytest.fixture(autouse=True)
def engine_loop() -> Iterator[None]:
    """Every scenario runs on the loop the delivery engine runs (its selector spares polls)."""
    asyncio.set_event_loop_policy(EngineLoopPolicy())
    yield
    asyncio.set_event_loop_policy(None)


@pytest.fixture(scope="module")
def tls() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


@pytest.fixture(params=["http", "https"])
def side(request: pytest.FixtureRequest, tls: tuple[ssl.SSLContext, ssl.SSLContext]) -> Side:
    return Side("http") if request.param == "http" else Side("https", *tls)


def answer(raw: bytes, keep: bool = True) -> Reply:
    async def reply(writer: asyncio.StreamWriter) -> bool:
        writer.write(raw)
        await writer.drain()
        return keep

    return reply


def response(status: str, body: bytes = b"", extra: str = "") -> bytes:
    return f"HTTP/1.1 {status}\r\n{extra}Content-Length: {len(body)}\r\n\r\n".encode() + body


OK = response("200 OK", b'{"error_code":0}')


class Backend:
    """A scripted HTTP/1.1 server on 127.0.0.1: reads each request, then plays the next reply."""

    def __init__(self, side: Side, replies: list[Reply], per_connection: int = 100) -> None:
        self.side = side
        self.replies = replies
        self.per_connection = per_connection
        self.requests: list[bytes] = []
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> Backend:
        self.server = await asyncio.start_server(
            self._handle, "127.0.0.1", 0, ssl=self.side.server_ssl
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    def url(self, path: str = "/cb") -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"{self.side.scheme}://127.0.0.1:{port}{path}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            for _ in range(self.per_connection):
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                self.requests.append(head + await reader.readexactly(length))
                if not await self.replies.pop(0)(writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        writer.close()


async def post_all(
    side: Side,
    backend: Backend,
    count: int,
    path: str = "/cb",
    *,
    timeout_s: float = 5.0,
    max_response_bytes: int = 65536,
) -> list[AttemptResult]:
    """`count` POSTs one after another through one Transports (so keep-alive can reuse)."""
    transports = Transports(
        HEADERS, max_response_bytes=max_response_bytes, ssl_context=side.client_ssl
    )
    try:
        return [
            await transports.post(backend.url(path), BODY, timeout_s=timeout_s)
            for _ in range(count)
        ]
    finally:
        await transports.close()


def run_one(side: Side, *replies: Reply, timeout_s: float = 5.0) -> AttemptResult:
    async def scenario() -> AttemptResult:
        async with Backend(side, list(replies)) as backend:
            return (await post_all(side, backend, 1, timeout_s=timeout_s))[0]

    return asyncio.run(scenario())


# -- answers ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "body"),
    [("200 OK", b'{"error_code":0}'), ("204 No Content", b""), ("404 Not Found", b"no"),
     ("500 Internal Server Error", b"\xff oops")],
)  # fmt: skip
def test_final_status_body_and_headers(side: Side, status: str, body: bytes) -> None:
    raw = (
        response(status, body, "X-Test: a\r\nX-Test: b\r\n")
        if body
        else f"HTTP/1.1 {status}\r\nX-Test: a\r\nX-Test: b\r\n\r\n".encode()
    )
    got = run_one(side, answer(raw))
    assert got.status_code == int(status[:3])
    assert got.response_body == body.decode("utf-8", errors="replace")
    assert got.response_headers is not None and got.response_headers["x-test"] == "a, b"
    assert got.error is None


def test_the_same_response_head_twice_gives_each_attempt_its_own_headers(side: Side) -> None:
    """The lean sender remembers parsed heads: a repeated head still yields the right body
    framing and a headers dict of the attempt's own; a changed Content-Length is read anew."""
    same = response("200 OK", b"ok", "X-Seen: 1\r\n")
    longer = response("200 OK", b"okay", "X-Seen: 1\r\n")

    async def scenario() -> list[AttemptResult]:
        replies = [answer(same), answer(same), answer(longer)]
        async with Backend(side, replies) as backend:
            return await post_all(side, backend, 3)

    first, second, third = asyncio.run(scenario())
    assert [r.response_body for r in (first, second, third)] == ["ok", "ok", "okay"]
    assert first.response_headers == second.response_headers
    assert first.response_headers is not second.response_headers
    assert third.response_headers is not None and third.response_headers["content-length"] == "4"


def test_both_transports_send_the_same_request(side: Side) -> None:
    async def scenario() -> bytes:
        async with Backend(side, [answer(OK)]) as backend:
            await post_all(side, backend, 1)
            return backend.requests[0]

    request = asyncio.run(scenario())
    head, _, body = request.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    assert lines[0] == "POST /cb HTTP/1.1"
    assert set(headers) == SENT_HEADERS, "no Accept, Accept-Encoding or other extra headers"
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"] == "tiw-emulator"
    assert headers["host"].startswith("127.0.0.1:")
    assert body == BODY and headers["content-length"] == str(len(BODY))


def test_proxy_settings_in_the_environment_are_ignored(
    side: Side, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert run_one(side, answer(OK)).status_code == 200


@pytest.mark.parametrize("interim", ["100 Continue", "103 Early Hints"])
def test_interim_replies_are_not_the_answer(side: Side, interim: str) -> None:
    raw = f"HTTP/1.1 {interim}\r\nLink: </style.css>; rel=preload\r\n\r\n".encode() + OK
    got = run_one(side, answer(raw))
    assert (got.status_code, got.response_body) == (200, '{"error_code":0}')


@pytest.mark.parametrize(
    ("raw", "body"),
    [
        (response("200 OK", b"length-delimited"), "length-delimited"),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"4;ext=1\r\nabcd\r\n2\r\nef\r\n0\r\nX-Trailer: t\r\n\r\n",
            "abcdef",
        ),
        (b"HTTP/1.0 503 Unavailable\r\n\r\ndelimited by the close", "delimited by the close"),
    ],
    ids=["length", "chunked", "until-close"],
)
def test_body_framings(side: Side, raw: bytes, body: str) -> None:
    got = run_one(side, answer(raw, keep=b"HTTP/1.0" not in raw))
    assert got.response_body == body and got.error is None


def test_redirects_are_recorded_not_followed(side: Side) -> None:
    async def scenario() -> tuple[AttemptResult, int]:
        moved = response("302 Found", b"", "Location: /elsewhere\r\n")
        async with Backend(side, [answer(moved), answer(OK)]) as backend:
            got = (await post_all(side, backend, 1))[0]
            return got, len(backend.requests)

    got, requests = asyncio.run(scenario())
    assert got.status_code == 302 and got.response_headers
    assert got.response_headers["location"] == "/elsewhere"
    assert requests == 1


def test_path_and_query_are_percent_encoded(side: Side) -> None:
    async def scenario() -> bytes:
        async with Backend(side, [answer(OK)]) as backend:
            path = "/cb path/é/日本?q=a b&ok=%41%2F&bad=ü%"
            assert (await post_all(side, backend, 1, path))[0].status_code == 200
            return backend.requests[0]

    line = asyncio.run(scenario()).split(b"\r\n", 1)[0]
    expected = "/cb%20path/%C3%A9/%E6%97%A5%E6%9C%AC?q=a%20b&ok=%41%2F&bad=%C3%BC%25"
    assert line == f"POST {expected} HTTP/1.1".encode()


# -- the response cap ------------------------------------------------------------------------------
@pytest.mark.parametrize("framing", ["chunked", "length"])
def test_a_body_past_the_cap_is_cut_and_its_connection_dropped(side: Side, framing: str) -> None:
    dropped = asyncio.Event()

    async def endless(writer: asyncio.StreamWriter) -> bool:
        size = 100 << 20
        head = f"Transfer-Encoding: chunked\r\n\r\n{size:x}\r\n"
        if framing == "length":
            head = f"Content-Length: {size}\r\n\r\n"
        writer.write(f"HTTP/1.1 200 OK\r\n{head}".encode())
        block = b"x" * 65536
        try:
            for _ in range(size // len(block)):
                writer.write(block)
                await writer.drain()
        except ConnectionError:
            dropped.set()
        return False

    async def scenario() -> tuple[list[AttemptResult], int]:
        async with Backend(side, [endless, answer(OK)]) as backend:
            results = await post_all(side, backend, 2, max_response_bytes=1000)
            await asyncio.wait_for(dropped.wait(), 10)
            return results, backend.connections

    (capped, after), connections = asyncio.run(scenario())
    assert (capped.status_code, capped.response_body) == (200, "x" * 1000)
    assert capped.error is not None and "response body too large" in capped.error
    assert after.status_code == 200 and connections == 2


RSS_PROBE = textwrap.dedent(
    """
    import asyncio, json, resource, ssl, sys
    from emulator.delivery.transport import Transports

    SIZE = 100 << 20

    async def main(scheme):
        server_ssl = client_ssl = None
        if scheme == "https":
            import trustme
            ca = trustme.CA()
            server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ca.issue_cert("127.0.0.1").configure_cert(server_ssl)
            client_ssl = ssl.create_default_context()
            ca.configure_trust(client_ssl)
        sent = connections = 0
        finished = asyncio.Event()

        async def handle(reader, writer):
            nonlocal sent, connections
            connections += 1
            await reader.readuntil(b"\\r\\n\\r\\n")
            await reader.readexactly(2)
            if connections == 1:  # the warm-up
                writer.write(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok")
                await writer.drain()
                writer.close()
                return
            writer.write(b"HTTP/1.1 200 OK\\r\\nTransfer-Encoding: chunked\\r\\n\\r\\n")
            writer.write(b"%x\\r\\n" % SIZE)
            block = b"x" * (1 << 20)
            try:
                for _ in range(SIZE // len(block)):
                    writer.write(block)
                    await writer.drain()
                    sent += len(block)
                writer.write(b"\\r\\n0\\r\\n\\r\\n")
            except ConnectionError:
                pass
            finally:
                finished.set()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ssl)
        url = f"{scheme}://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
        transports = Transports({}, ssl_context=client_ssl)
        warm = await transports.post(url, b"{}", timeout_s=30)  # imports, TLS, pools
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        got = await transports.post(url, b"{}", timeout_s=30)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        await asyncio.wait_for(finished.wait(), 20)  # the backend saw the connection go
        await transports.close()
        server.close()
        print(json.dumps({"warm": warm.status_code, "status": got.status_code,
                          "body": len(got.response_body or ""), "error": got.error,
                          "growth_mib": (after - before) / 1024, "sent_mib": sent / 2**20}))

    asyncio.run(main(sys.argv[1]))
    """
)


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_one_100_mb_chunk_is_never_buffered(scheme: str) -> None:
    probe = subprocess.run(
        [sys.executable, "-c", RSS_PROBE, scheme],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert probe.returncode == 0, probe.stderr
    got = json.loads(probe.stdout)
    assert (got["warm"], got["status"], got["body"]) == (200, 200, 65536)
    assert "response body too large" in got["error"]
    assert got["growth_mib"] < 100, got
    assert got["sent_mib"] < 50, f"the connection was drained rather than dropped: {got}"


# -- failures --------------------------------------------------------------------------------------
async def close_without_answer(writer: asyncio.StreamWriter) -> bool:
    return False


async def never_answer(writer: asyncio.StreamWriter) -> bool:
    await asyncio.Event().wait()
    return False


def reset_after(raw: bytes) -> Reply:
    async def reply(writer: asyncio.StreamWriter) -> bool:
        writer.write(raw)
        await writer.drain()
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # SO_LINGER 0: the close is a reset (RST), not a FIN
        return False

    return reply


async def dribble(writer: asyncio.StreamWriter) -> bool:
    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    while True:  # an endless body, one byte at a time: no attempt can wait for its end
        writer.write(b"1\r\nx\r\n")
        await writer.drain()
        await asyncio.sleep(0.02)


TIMEOUT = "timeout: no response within 0.3 s"


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (close_without_answer, CLOSED_EARLY),
        (reset_after(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial"), CLOSED_EARLY),
        (
            reset_after(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\npart"),
            CLOSED_EARLY,
        ),
        (answer(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\npart", keep=False), CLOSED_EARLY),
        (never_answer, TIMEOUT),
        (dribble, TIMEOUT),
    ],
    ids=["closed", "reset-length", "reset-chunked", "closed-mid-body", "no-answer", "endless"],
)
def test_failures_are_worded_alike(side: Side, reply: Reply, error: str) -> None:
    got = run_one(side, reply, timeout_s=0.3)
    assert got == AttemptResult(None, None, None, error)


def test_a_refused_connection_names_the_backend(side: Side) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

        async def scenario() -> AttemptResult:
            transports = Transports(HEADERS, ssl_context=side.client_ssl)
            try:
                url = f"{side.scheme}://127.0.0.1:{port}/cb"
                return await transports.post(url, BODY, timeout_s=5)
            finally:
                await transports.close()

        got = asyncio.run(scenario())
    assert got.error == f"cannot connect to 127.0.0.1:{port}: connection refused"


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTX/1.1 200 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nabcde\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcdefgh\r\n0\r\n\r\n",
    ],
    ids=["status-line", "content-length", "chunk-size", "chunk-end"],
)
def test_a_malformed_response_is_named(side: Side, raw: bytes) -> None:
    got = run_one(side, answer(raw, keep=False))
    assert got.status_code is None and got.error and got.error.startswith("malformed response: ")


BAD_HOST = "the host contains characters a host name cannot have"


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("ftp://127.0.0.1/cb", "bad URL: the scheme must be http or https"),
        ("{scheme}:///cb", "bad URL: no host"),
        ("{scheme}://127.0.0.1:99999/cb", "bad URL: port out of range 0-65535"),
        ("{scheme}://exa mple.com/cb", f"bad URL: {BAD_HOST}"),
    ],
)  # fmt: skip
def test_bad_urls_are_named_without_a_connection(side: Side, url: str, error: str) -> None:
    async def scenario() -> AttemptResult:
        transports = Transports(HEADERS, ssl_context=side.client_ssl)
        try:
            return await transports.post(url.format(scheme=side.scheme), BODY, timeout_s=5)
        finally:
            await transports.close()

    assert asyncio.run(scenario()) == AttemptResult(None, None, None, error)


def test_an_untrusted_certificate_is_a_tls_error(tls: tuple[ssl.SSLContext, ...]) -> None:
    side = Side("https", tls[0], None)  # the system's CAs do not know the test CA
    got = run_one(side, answer(OK))
    assert got.error and got.error.startswith("TLS error from 127.0.0.1:")
    assert "certificate verify failed" in got.error


# -- connections -----------------------------------------------------------------------------------
def test_keep_alive_reuse_and_recovery_after_the_backend_closes(side: Side) -> None:
    async def scenario() -> tuple[list[AttemptResult], int, int]:
        async with Backend(side, [answer(OK)] * 5, per_connection=2) as backend:
            results = await post_all(side, backend, 5)
            return results, backend.connections, len(backend.requests)

    # the backend closes every connection after its second answer: five POSTs, three connections,
    # each POST sent once
    results, connections, requests = asyncio.run(scenario())
    assert [r.status_code for r in results] == [200] * 5
    assert (connections, requests) == (3, 5)


def test_a_cancelled_attempt_raises_and_leaves_no_connection_behind(side: Side) -> None:
    async def scenario() -> tuple[AttemptResult, int]:
        async with Backend(side, [never_answer, answer(OK)]) as backend:
            transports = Transports(HEADERS, ssl_context=side.client_ssl)
            try:
                attempt = asyncio.ensure_future(transports.post(backend.url(), BODY, timeout_s=30))
                while not backend.requests:  # the backend holds the request unanswered
                    await asyncio.sleep(0.005)
                attempt.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await attempt
                after = await transports.post(backend.url(), BODY, timeout_s=5)
            finally:
                await transports.close()
            return after, backend.connections

    after, connections = asyncio.run(scenario())
    assert after.status_code == 200 and connections == 2


def test_deadlines_time_out_each_attempt_by_its_own_timeout_and_spare_finished_ones() -> None:
    """One FIFO per timeout value: a later attempt with a shorter timeout still ends first; a
    finished attempt is never cancelled; a timed-out task is left with no pending cancellation
    (its next attempt runs normally), and a cancellation from outside still propagates."""
    ended: list[str] = []

    async def attempt(deadlines: Deadlines, name: str, timeout_s: float, work_s: float) -> str:
        watch = deadlines.start(timeout_s)
        try:
            await asyncio.sleep(work_s)
        except asyncio.CancelledError:
            if not watch.expired():
                raise
            ended.append(name)
            return "timeout"
        finally:
            watch.live = False
        ended.append(name)
        return "done"

    async def scenario() -> tuple[list[str], list[str], str, int]:
        deadlines = Deadlines()
        try:
            results = await asyncio.gather(
                attempt(deadlines, "long", 0.4, 30),
                attempt(deadlines, "quick", 0.4, 0),
                attempt(deadlines, "short", 0.1, 30),
            )

            async def twice() -> tuple[str, int]:
                await attempt(deadlines, "first", 0.05, 30)
                second = await attempt(deadlines, "second", 5, 0)
                return second, asyncio.current_task().cancelling()  # type: ignore[union-attr]

            second, cancelling = await asyncio.create_task(twice())
            outside = asyncio.create_task(attempt(deadlines, "outside", 5, 30))
            await asyncio.sleep(0.01)
            outside.cancel()
            with pytest.raises(asyncio.CancelledError):
                await outside
        finally:
            deadlines.close()
        return results, list(ended), second, cancelling

    results, order, second, cancelling = asyncio.run(scenario())
    assert results == ["timeout", "done", "timeout"]
    assert order == ["quick", "short", "long", "first", "second"]
    assert (second, cancelling) == ("done", 0)
