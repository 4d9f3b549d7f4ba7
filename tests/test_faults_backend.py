"""Backend faults over loopback: each misbehaviour is one failed attempt with its reason per try.

A real TCP server on 127.0.0.1 misbehaves in one way per case (refused, timeout, 500, 404, reset
mid-response, endless body, a 100 MB chunk, a slow trickle, a redirect). The emulator runs with
the `fast` policy (3 tries) and a 1 s request timeout; a second task's backend is healthy. After
one advance of the manual clock: the faulty task's event is `failed` after 3 attempts, each
recorded with the fault's reason, the task's delivery summary says so, the healthy task was
delivered, and the Python heap of the process stayed bounded while the backend sent its worst.
"""

from __future__ import annotations

import contextlib
import re
import socket
import struct
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import reliability_log

from emulator.receiver import Receiver

TIMEOUT_S = 1.0
TRIES = 3  # the `fast` policy
HEAP_LIMIT = 24 << 20  # the sender reads at most 1 MiB of a response; 24 MiB is generous
Behave = Callable[[socket.socket, threading.Event], None]


def _reply(status: str, *headers: str, body: bytes = b"") -> Behave:
    head = "".join(f"{h}\r\n" for h in headers)
    raw = (
        f"HTTP/1.1 {status}\r\n{head}Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body

    def behave(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(raw)

    return behave


def _hang(conn: socket.socket, stop: threading.Event) -> None:
    stop.wait(30)


def _reset_mid_response(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n{"error_co')
    # SO_LINGER with a zero timeout: close() sends a TCP RST instead of a FIN.
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _stream(head: bytes, total: int) -> Behave:
    """Send `head`, then up to `total` bytes of body, until the client goes away."""

    def behave(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(head)
        block = b"x" * 65536
        sent = 0
        with contextlib.suppress(OSError):
            while sent < total and not stop.is_set():
                conn.sendall(block)
                sent += len(block)

    return behave


def _trickle(conn: socket.socket, stop: threading.Event) -> None:
    """A backend that answers, one byte every 0.2 s: never done within the timeout."""
    with contextlib.suppress(OSError):
        for byte in b'HTTP/1.1 200 OK\r\nContent-Length: 16\r\n\r\n{"error_code":0}':
            if stop.wait(0.2):
                return
            conn.sendall(bytes([byte]))


@dataclass(frozen=True)
class Fault:
    name: str
    behave: Behave | None  # None: nothing listens (connection refused)
    status: int | None  # the recorded status code of each attempt
    reason: str  # a word the recorded error (or response) must contain


FAULTS: list[Any] = [
    Fault("connection refused", None, None, "connect"),
    Fault("no answer (timeout)", _hang, None, "timeout"),
    Fault("HTTP 500", _reply("500 Internal Server Error", body=b"boom"), 500, "boom"),
    Fault("HTTP 404", _reply("404 Not Found", body=b"no such route"), 404, "no such route"),
    Fault("reset mid-response", _reset_mid_response, None, ""),
    Fault("endless body", _stream(b"HTTP/1.1 200 OK\r\n\r\n", 256 << 20), 200, "too large"),
    Fault(
        "100 MB chunk",
        _stream(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6400000\r\n", 100 << 20),
        200,
        "too large",
    ),
    Fault("slow answer (a byte every 0.2 s)", _trickle, None, "timeout"),
    Fault(
        "redirect (302, not followed)",
        _reply("302 Found", "Location: http://127.0.0.1:9/elsewhere"),
        302,
        "",
    ),
]


class FaultyBackend:
    """A loopback HTTP 'server' that reads each request, then misbehaves as told."""

    def __init__(self, behave: Behave) -> None:
        self._behave = behave
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}/callback"
        self.requests = 0
        self._threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._serve, daemon=True)
        self._accept.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._handle, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(10)
            data = b""
            with contextlib.suppress(OSError):
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                while len(body) < length:
                    body += conn.recv(65536)
                self.requests += 1
                self._behave(conn, self._stop)

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        self._accept.join(timeout=5)
        for thread in self._threads:
            thread.join(timeout=5)


@contextlib.contextmanager
def backend_for(fault: Fault) -> Iterator[tuple[str, FaultyBackend | None]]:
    if fault.behave is None:
        probe = socket.create_server(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()  # nothing listens there now
        yield f"http://127.0.0.1:{port}/callback", None
        return
    backend = FaultyBackend(fault.behave)
    try:
        yield backend.url, backend
    finally:
        backend.close()


@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: f.name if isinstance(f, Fault) else None)
def test_backend_fault_is_a_failed_attempt_retried_and_reported(
    fault: Fault, make_emulator: Any, receiver: Receiver
) -> None:
    emu = make_emulator(callback_url=receiver.url, retry="fast", timeout_s=TIMEOUT_S)
    with backend_for(fault) as (url, backend):
        bad = emu.api(
            "POST",
            "/api/tasks",
            json={"scenario": "success", "params": {"progress_steps": 0}, "callback_url": url},
        ).json()
        good = emu.api("POST", "/api/tasks", json={"scenario": "success"}).json()
        tracemalloc.start()
        try:
            advanced = emu.api("POST", "/api/clock/advance", json={"seconds": 86400})
            _, heap_peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert advanced.status_code == 200, advanced.text

    attempts = emu.api("GET", "/api/deliveries", params={"task_id": bad["task_id"]}).json()
    records = attempts["deliveries"]
    assert sorted(r["attempt"] for r in records) == list(range(1, TRIES + 1)), records
    for record in records:
        assert record["ok"] is False and record["status_code"] == fault.status, record
        said = f"{record['error'] or ''} {record['response_body'] or ''}".lower()
        assert fault.reason in said, record
        if fault.status is None:
            assert record["error"], record  # never a silent failure
    if backend is not None:
        assert backend.requests == TRIES

    task = emu.api("GET", f"/api/tasks/{bad['task_id']}").json()
    assert [e["state"] for e in task["events"]] == ["failed"]
    assert task["deliveries"] == {
        "attempts": TRIES,
        "failed_attempts": TRIES,
        "undelivered_events": 1,
    }
    healthy = emu.api("GET", f"/api/tasks/{good['task_id']}").json()
    assert {e["state"] for e in healthy["events"]} == {"delivered"}
    assert healthy["deliveries"]["failed_attempts"] == 0
    assert heap_peak < HEAP_LIMIT, f"heap peaked at {heap_peak >> 20} MiB"
    reason = re.sub(r"\b\d{4,5}\b", "PORT", str(records[0]["error"]))  # a fresh port each run
    reliability_log.record(
        "backend",
        fault.name,
        observed=f"{TRIES} failed attempts, each recorded"
        f" ({'status ' + str(fault.status) if fault.status else repr(reason)});"
        " event failed, other task delivered",
        heap_peak_under=f"{HEAP_LIMIT >> 20} MiB",
    )
