"""Shared fixtures: an emulator served over real loopback HTTP, and a recording receiver."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from emulator.core.service import Emulator
from emulator.receiver import Receiver
from emulator.web.app import create_app, get_emulator
from emulator.web.server import AppServer


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


class Running:
    """An emulator app on a free loopback port, with a requests session for its control API."""

    def __init__(self, overrides: dict[str, Any]) -> None:
        settings = {"db": ":memory:", "clock": "manual", "retry": "fast", **overrides}
        self.app = create_app(settings)
        self.emu: Emulator = get_emulator(self.app)
        self.server = AppServer(self.app).start()
        self.url = self.server.url
        self.http = requests.Session()
        self.http.trust_env = False

    def api(self, method: str, path: str, **kw: Any) -> requests.Response:
        return self.http.request(method, self.url + path, timeout=30, **kw)

    def close(self) -> None:
        self.http.close()
        self.server.stop()
        self.emu.close()


@pytest.fixture
def make_emulator() -> Iterator[Any]:
    started: list[Running] = []

    def make(**overrides: Any) -> Running:
        running = Running(overrides)
        started.append(running)
        return running

    yield make
    for running in started:
        running.close()


@pytest.fixture
def emulator(make_emulator: Any, receiver: Receiver) -> Running:
    """Manual clock, fast retries, callbacks to `receiver`, signed with a known key."""
    return make_emulator(callback_url=receiver.url, callback_key="Xz4ZgayTr7rMgWQrH")
