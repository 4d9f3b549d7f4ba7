"""A task is created as of its request's arrival, not as of when a busy server got to it."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests
from flask import Flask, request

from emulator.cloudapi.core_backend import EmulatorCloudBackend
from emulator.core.clock import EmulatedClock
from emulator.core.config import Settings
from emulator.core.service import MAX_WAITED_S, Emulator
from emulator.web.server import AppServer
from emulator.web.wsgi_bridge import RECEIVED_KEY

D100 = {"progress_steps": 0, "queue_delay_s": 0, "duration_s": 1, "duration_factor": 0.1}


class Ticks:
    mono = 100.0

    def __call__(self) -> float:
        return self.mono


@pytest.fixture
def emu_and_time() -> Iterator[tuple[Emulator, Ticks]]:
    ticks = Ticks()
    clock = EmulatedClock(mode="real", speed=1.0, start=5000.0, monotonic=ticks, wall=lambda: 9e8)
    settings = Settings.load({"db": ":memory:", "clock": "real", "speed": 1}, env={})
    emu = Emulator(settings, clock=clock).start()
    try:
        yield emu, ticks
    finally:
        emu.close()


def test_waited_s_moves_creation_and_every_due_time_back(
    emu_and_time: tuple[Emulator, Ticks],
) -> None:
    emu, ticks = emu_and_time
    ticks.mono += 60.0  # emulated 5060
    now_task = emu.create_task(scenario="success", room_id=1, params=D100)
    waited = emu.create_task(scenario="success", room_id=2, params=D100, waited_s=0.04)
    assert now_task["created_at"] == pytest.approx(5060.0)
    assert waited["created_at"] == pytest.approx(5060.0 - 0.04)
    for a, b in zip(now_task["events"], waited["events"], strict=True):
        assert b["due_at"] == pytest.approx(a["due_at"] - 0.04)
    capped = emu.create_task(scenario="success", room_id=3, params=D100, waited_s=1e6)
    assert capped["created_at"] == pytest.approx(5060.0 - MAX_WAITED_S)


def test_a_cloud_api_creation_is_made_as_of_its_arrival_too(
    emu_and_time: tuple[Emulator, Ticks],
) -> None:
    emu, ticks = emu_and_time
    ticks.mono += 60.0  # emulated 5060
    cloud = EmulatorCloudBackend(emu)
    fields = {"sdk_app_id": 1400000001, "group_id": None, "mix_stream": None, "whiteboard": None}
    now_id = cloud.create_offline_record(room_id=1, request_id="r1", **fields)
    waited_id = cloud.create_offline_record(room_id=2, request_id="r2", waited_s=0.04, **fields)
    assert emu.get_task(now_id)["created_at"] == pytest.approx(5060.0)
    assert emu.get_task(waited_id)["created_at"] == pytest.approx(5060.0 - 0.04)


def test_the_server_tells_the_app_when_the_request_arrived() -> None:
    app = Flask(__name__)
    seen: list[object] = []

    @app.post("/echo")
    def echo() -> str:
        seen.append(request.environ.get(RECEIVED_KEY))
        return "ok"

    server = AppServer(app).start()
    try:
        before = time.monotonic()
        assert requests.post(f"{server.url}/echo", data=b"x", timeout=10).text == "ok"
        after = time.monotonic()
    finally:
        server.stop()
    (received,) = seen
    assert isinstance(received, float) and before <= received <= after
