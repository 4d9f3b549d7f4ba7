"""The lean callback sender: response framing, keep-alive reuse, dropped idle connections."""

from __future__ import annotations

import asyncio
import socket

import pytest

from emulator.delivery.sender import Sender, SendError

HEADERS = {"Content-Type": "application/json", "User-Agent": "tiw-emulator"}


async def _serve(
    replies: list[bytes], seen: list[bytes], per_connection: int, accepted: list[int] | None = None
) -> asyncio.Server:
    """Answer requests with `replies` in turn; drop each connection after `per_connection`."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if accepted is not None:
            accepted.append(1)
        for _ in range(per_connection):
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            seen.append(head + await reader.readexactly(length))
            writer.write(replies.pop(0))
            await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


@pytest.mark.parametrize(
    ("reply", "body"),
    [
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 16\r\n\r\n" + b'{"error_code":0}',
            b'{"error_code":0}',
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"4\r\nabcd\r\n2\r\nef\r\n0\r\n\r\n",
            b"abcdef",
        ),
        (b"HTTP/1.0 503 Unavailable\r\n\r\nbusy", b"busy"),
    ],
)
def test_response_framings(reply: bytes, body: bytes) -> None:
    async def run() -> tuple[int, bytes, list[bytes]]:
        seen: list[bytes] = []
        server = await _serve([reply], seen, per_connection=1)
        port = server.sockets[0].getsockname()[1]
        sender = Sender(HEADERS)
        try:
            status, got = await sender.post(f"http://127.0.0.1:{port}/cb?x=1", b'{"a":1}')
        finally:
            sender.close()
            server.close()
        return status, got, seen

    status, got, seen = asyncio.run(run())
    assert got == body and status in (200, 503)
    assert seen[0].startswith(b"POST /cb?x=1 HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"Content-Length: 7\r\n" in seen[0] and seen[0].endswith(b'{"a":1}')


def test_keep_alive_reuses_a_connection_and_survives_the_backend_dropping_it() -> None:
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    accepted: list[int] = []

    async def run() -> list[int]:
        seen: list[bytes] = []
        server = await _serve([ok] * 3, seen, per_connection=2, accepted=accepted)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
        sender = Sender(HEADERS)
        try:
            # the backend closes the connection after the second answer; the third POST
            # must go out on a fresh connection, once
            statuses = [(await sender.post(url, b"{}"))[0] for _ in range(3)]
        finally:
            sender.close()
            server.close()
        assert len(seen) == 3
        return statuses

    assert asyncio.run(run()) == [200, 200, 200]
    assert len(accepted) == 2


def test_refused_connection_names_the_target() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def run() -> None:
        sender = Sender(HEADERS)
        await sender.post(f"http://127.0.0.1:{port}/", b"{}")

    with pytest.raises(SendError, match=f"Connect to 127.0.0.1:{port}"):
        asyncio.run(run())
