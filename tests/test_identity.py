"""Unique unless asked to repeat: TaskIds and per-task data differ across restarts, resets and test
runs by default; a given run seed reproduces everything and is always shown."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from emulator.core.config import Settings
from emulator.core.service import Emulator

pytest_plugins = ["pytester"]


def _run(db: Path, seed: int | None = None, tasks: int = 3) -> tuple[int, list[dict[str, Any]]]:
    settings: dict[str, Any] = {"db": str(db), "clock": "manual"}
    if seed is not None:
        settings["seed"] = seed
    emu = Emulator(Settings.load(settings, env={})).start()
    try:
        made = [emu.create_task(scenario="success", room_id=100 + n) for n in range(tasks)]
        for task in made:
            emu.cancel_task(task["task_id"])  # free the rooms for the next run
        return emu.run_seed, made
    finally:
        emu.close()


def _video_ids(task: dict[str, Any]) -> list[str]:
    finished = task["events"][-1]["payload"]["EventData"]
    return [v["VideoId"] for v in finished.get("VideoInfos", [])]


def test_restarts_give_new_task_ids_and_data(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    seed_a, first = _run(db)
    seed_b, second = _run(db)
    assert seed_a != seed_b
    assert not {t["task_id"] for t in first} & {t["task_id"] for t in second}
    assert _video_ids(first[0]) != _video_ids(second[0])


def test_resets_give_new_task_ids() -> None:
    emu = Emulator(Settings.load({"db": ":memory:", "clock": "manual"}, env={})).start()
    try:
        seen = set()
        for _ in range(3):
            seen.add(emu.create_task(scenario="success", room_id=5)["task_id"])
            emu.reset()
        assert len(seen) == 3
    finally:
        emu.close()


def test_a_given_seed_reproduces_a_run(tmp_path: Path) -> None:
    seed_a, first = _run(tmp_path / "a.db", seed=424242)
    seed_b, second = _run(tmp_path / "b.db", seed=424242)
    assert seed_a == seed_b == 424242
    assert [t["task_id"] for t in first] == [t["task_id"] for t in second]
    assert [_video_ids(t) for t in first] == [_video_ids(t) for t in second]


def test_the_run_seed_is_shown_in_the_config_and_at_start_up(tmp_path: Path) -> None:
    emu = Emulator(Settings.load({"db": ":memory:", "seed": 99}, env={})).start()
    try:
        assert emu.public_config()["run_seed"] == 99
    finally:
        emu.close()
    proc = subprocess.Popen(
        [sys.executable, "-m", "emulator.cli", "serve", "--port", "0", "--db", ":memory:"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(6)]
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    seeds = [
        re.search(r"run seed\s+(\d+)\s+\(replay this run with --seed \1\)", ln) for ln in lines
    ]
    assert any(seeds), lines


PLUGIN_TEST = """
def test_make_a_task(tiw_emulator, tiw_client):
    task = tiw_client.create_task(scenario="success", room_id=7)
    print("TASKID", task.task_id, "SEED", tiw_emulator.run_seed)
"""


def _task_ids(pytester: pytest.Pytester, *ini: str) -> list[str]:
    pytester.makepyfile(PLUGIN_TEST)
    if ini:
        pytester.makeini("[pytest]\n" + "\n".join(ini) + "\n")
    out = []
    for _ in range(2):
        result = pytester.runpytest("-p", "no:cacheprovider", "-s")
        result.assert_outcomes(passed=1)
        out += re.findall(r"TASKID (\S+)", result.stdout.str())
    return out


def test_plugin_sessions_get_fresh_task_ids(pytester: pytest.Pytester) -> None:
    first, second = _task_ids(pytester)
    assert first != second


def test_plugin_seed_option_replays_task_ids(pytester: pytest.Pytester) -> None:
    first, second = _task_ids(pytester, "tiw_emulator_seed = 31337")
    assert first == second
