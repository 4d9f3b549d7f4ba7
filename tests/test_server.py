"""Serving on waitress: start on a free port, stop cleanly even if the wake-up pipe is gone."""

from __future__ import annotations

import os
import socket

import pytest
import requests

from emulator.web.app import create_app, get_emulator
from emulator.web.server import AppServer


def _refuses(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_start_serve_stop() -> None:
    app = create_app({"db": ":memory:"})
    server = AppServer(app).start()
    try:
        assert requests.get(server.url + "/healthz", timeout=5).json() == {"status": "ok"}
    finally:
        server.stop()
        get_emulator(app).close()
    assert _refuses(server.port)


def test_stop_does_not_depend_on_the_wake_up_pipe() -> None:
    """A stray close of waitress's trigger fd (seen once under xdist) must not break stop()."""
    app = create_app({"db": ":memory:"})
    server = AppServer(app).start()
    try:
        os.close(server._server.trigger.trigger)  # the pipe's write end, gone under waitress
        with pytest.raises(OSError):
            server._server.trigger.pull_trigger()
        server.stop()
        assert server._thread is not None and not server._thread.is_alive()
        assert _refuses(server.port)
    finally:
        get_emulator(app).close()
