"""The emulator's threads carry their names for the OS (top -H, py-spy, make bench's split)."""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import Any

import pytest

from emulator.core.threadname import MAX_BYTES, name_os_thread
from emulator.store.group import Committer

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/task").is_dir(), reason="thread names are read from Linux's /proc"
)


def _os_names() -> set[str]:
    names = set()
    for task in Path("/proc/self/task").iterdir():
        with contextlib.suppress(OSError):  # the thread ended meanwhile
            names.add((task / "comm").read_text().strip())
    return names


def test_a_thread_takes_its_python_name_cut_to_the_os_limit() -> None:
    seen: list[str] = []

    def run() -> None:
        name_os_thread()
        seen.append(Path(f"/proc/self/task/{threading.get_native_id()}/comm").read_text())

    thread = threading.Thread(target=run, name="tiw-a-rather-long-thread-name")
    thread.start()
    thread.join(10)
    assert seen == ["tiw-a-rather-long-thread-name"[:MAX_BYTES] + "\n"]


def test_a_serving_emulators_threads_are_named(make_emulator: Any) -> None:
    running = make_emulator()
    assert running.api("POST", "/api/tasks", json={"scenario": "success"}).status_code == 201
    assert running.api("GET", "/healthz").status_code == 200
    expected = {"tiw-engine", "tiw-store-write", "tiw-lane_0", "tiw-http_0"}
    assert expected <= _os_names()


def test_the_stores_committer_thread_is_named() -> None:
    """It starts with the first creation handed to it (under load: tests/test_held_replies.py)."""
    committer: Committer[str] = Committer(lambda items: [None] * len(items))
    try:
        assert committer.submit("x").exception(10) is None
        assert "tiw-commit" in _os_names()
    finally:
        committer.close()
