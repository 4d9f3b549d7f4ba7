"""A benchmark receiver in its own process, and the handle the benchmarks use to drive it.

`python -m bench.recv [--delay S] [--record]` serves a minimal asyncio.Protocol HTTP/1.1
receiver (the "raw asyncio" receiver of reference/http-baselines.md, so the receiver is not
what limits the figures) on a free loopback port (printed on stdout), answers callbacks
200 {"error_code":0} (after `--delay` seconds, like a slow backend), and keeps counters.
`--cert PEM --key PEM` adds a TLS listener for the callbacks (its port printed on the next line;
/stats and /reset stay on the plain one). `--record` also keeps, per callback, a key
(TaskId|EventType|Progress) and its arrival time (time.monotonic, which is system-wide, so the
benchmark process can compare it with its own deadlines). GET /stats returns the counters (and
the records with ?rows=1); GET /reset clears them.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import ssl
import subprocess
import sys
import time
from typing import Any

from emulator.receiver import Received, Reply


def record_key(body: bytes) -> str:
    """TaskId|EventType|Progress of a callback body (what makes an event unique in a plan)."""
    try:
        doc = json.loads(body)
        data = doc.get("EventData") or {}
        return f"{data.get('TaskId')}|{doc.get('EventType')}|{data.get('Progress')}"
    except (ValueError, AttributeError):
        return "?"


class Counters:
    """What the receiver process has seen since the last reset."""

    def __init__(self, delay_s: float, record: bool) -> None:
        self.delay_s = delay_s
        self.record = record
        self.reset()

    def reset(self) -> None:
        self.count = 0
        self.first: float | None = None
        self.last: float | None = None
        self.rows: list[tuple[str, float]] = []

    def respond(self, req: Received) -> Reply:
        if req.method == "GET":
            if req.path.startswith("/reset"):
                self.reset()
                return Reply(body=b"{}")
            stats: dict[str, Any] = {"count": self.count, "first": self.first, "last": self.last}
            if "rows=1" in req.path:
                stats["rows"] = self.rows
            return Reply(body=json.dumps(stats).encode())
        self.count += 1
        if self.first is None:
            self.first = req.received_at
        self.last = req.received_at
        if self.record:
            self.rows.append((record_key(req.body), req.received_at))
        return Reply(delay_s=self.delay_s)


class _Proto(asyncio.Protocol):
    """Minimal HTTP/1.1 keep-alive server side: Content-Length bodies, replies in order."""

    def __init__(self, counters: Counters) -> None:
        self.counters = counters
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                if line[:15].lower() == "content-length:":
                    length = int(line[15:].strip())
            if len(self.buf) < end + 4 + length:
                return
            body = bytes(self.buf[end + 4 : end + 4 + length])
            del self.buf[: end + 4 + length]
            method, path = [*head.split(" ", 2), "", ""][:2]
            reply = self.counters.respond(Received(method, path, {}, body, time.monotonic()))
            out = (
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d"
                b"\r\n\r\n" % len(reply.body) + reply.body
            )
            assert self.transport is not None
            if reply.delay_s:
                asyncio.get_running_loop().call_later(reply.delay_s, self._write, out)
            else:
                self.transport.write(out)

    def _write(self, out: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(out)


async def _serve(counters: Counters, tls: ssl.SSLContext | None = None) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Proto(counters), "127.0.0.1", 0, backlog=4096)
    print(server.sockets[0].getsockname()[1], flush=True)
    secure = None
    if tls is not None:
        secure = await loop.create_server(
            lambda: _Proto(counters), "127.0.0.1", 0, backlog=4096, ssl=tls
        )
        print(secure.sockets[0].getsockname()[1], flush=True)
    await loop.run_in_executor(None, sys.stdin.read)  # run until the benchmark closes stdin
    server.close()
    if secure is not None:
        secure.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.recv")
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--record", action="store_true")
    parser.add_argument("--cert", help="PEM certificate chain for a TLS listener")
    parser.add_argument("--key", help="PEM private key of --cert")
    args = parser.parse_args(argv)
    tls = None
    if args.cert:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(args.cert, args.key)
    asyncio.run(_serve(Counters(args.delay, args.record), tls))
    return 0


class RecvProc:
    """A receiver subprocess: `.url` for callbacks, `.stats()`, `.reset()`, `.wait_count(n)`."""

    def __init__(
        self, *, delay_s: float = 0.0, record: bool = False, tls: tuple[str, str] | None = None
    ) -> None:
        """`tls`: (certificate chain, key) PEM files; `.url` is then the https:// listener's."""
        cmd = [sys.executable, "-m", "bench.recv", "--delay", str(delay_s)]
        if record:
            cmd.append("--record")
        if tls is not None:
            cmd += ["--cert", tls[0], "--key", tls[1]]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())
        self.url = f"http://127.0.0.1:{self.port}/callback"
        if tls is not None:
            self.url = f"https://127.0.0.1:{int(self.proc.stdout.readline())}/callback"
        self._conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def _get(self, path: str) -> dict[str, Any]:
        self._conn.request("GET", path)
        result: dict[str, Any] = json.loads(self._conn.getresponse().read())
        return result

    def stats(self, rows: bool = False) -> dict[str, Any]:
        return self._get("/stats?rows=1" if rows else "/stats")

    def reset(self) -> None:
        self._get("/reset")

    def wait_count(self, n: int, timeout: float, poll_s: float = 0.02) -> dict[str, Any]:
        """Poll until at least n callbacks arrived (or the timeout passed); the last stats."""
        deadline = time.monotonic() + timeout
        while True:
            stats = self.stats()
            if stats["count"] >= n or time.monotonic() > deadline:
                return stats
            time.sleep(poll_s)

    def wait_quiet(self, quiet_s: float = 0.5, timeout: float = 60.0) -> dict[str, Any]:
        """Poll until the count stops moving for quiet_s (to catch late duplicates)."""
        deadline = time.monotonic() + timeout
        stats = self.stats()
        while time.monotonic() < deadline:
            time.sleep(quiet_s)
            again = self.stats()
            if again["count"] == stats["count"]:
                return again
            stats = again
        return stats

    def close(self) -> None:
        self._conn.close()
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


if __name__ == "__main__":
    sys.exit(main())
