"""The classroom app served on loopback, wired to the tiw-emulator pytest plugin's emulator."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import pytest
import requests
from classroom import create_app

from emulator.core.config import DEMO_SECRET_ID, DEMO_SECRET_KEY
from emulator.testing import ServedEmulator, TiwEmulator
from emulator.web.server import AppServer


class FakeClock:
    """The app's clock: wall time plus an offset a test can move (stall detection)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


class ClassroomUnderTest:
    def __init__(self, server: AppServer, clock: FakeClock) -> None:
        self.server = server
        self.app = server.app
        self.url = server.url
        self.clock = clock
        self.http = requests.Session()
        self.http.trust_env = False

    def post(self, path: str, **kw: Any) -> requests.Response:
        return self.http.post(self.url + path, timeout=30, **kw)

    def get(self, path: str) -> requests.Response:
        return self.http.get(self.url + path, timeout=30)

    def start_recording(self, room_id: int) -> dict[str, Any]:
        reply = self.post(f"/classes/{room_id}/recording")
        assert reply.status_code == 201, reply.text
        recording: dict[str, Any] = reply.json()
        return recording

    def recording(self, task_id: str) -> dict[str, Any]:
        reply = self.get(f"/recordings/{task_id}")
        assert reply.status_code == 200, reply.text
        recording: dict[str, Any] = reply.json()
        return recording


@pytest.fixture(scope="session")
def classroom_server(tiw_emulator_server: ServedEmulator) -> Iterator[AppServer]:
    endpoint = urlparse(tiw_emulator_server.url).netloc  # host:port, no scheme, for the SDK
    app = create_app(
        {
            "TIW_ENDPOINT": endpoint,
            "TIW_PROTOCOL": "http",
            "TIW_SECRET_ID": DEMO_SECRET_ID,
            "TIW_SECRET_KEY": DEMO_SECRET_KEY,
            "TIW_SDK_APP_ID": tiw_emulator_server.emu.config().sdk_app_id,
            "TIW_CALLBACK_KEY": tiw_emulator_server.emu.config().callback_key,
            "CLOCK": FakeClock(),
        }
    )
    server = AppServer(app).start()
    yield server
    server.stop()


@pytest.fixture
def classroom(classroom_server: AppServer, tiw_emulator: TiwEmulator) -> ClassroomUnderTest:
    """A fresh classroom whose recordings' callbacks come to it (set through the SDK)."""
    state = classroom_server.app.extensions["classroom"]
    state.recordings.clear()
    clock = classroom_server.app.config["CLOCK"]
    clock.offset = 0.0
    state.recorder.set_callback(classroom_server.url + "/tiw/callback")
    return ClassroomUnderTest(classroom_server, clock)
