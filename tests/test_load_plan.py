"""Load mode planning in this process (no Locust): the emulator's payloads, mix, limits, target."""

from __future__ import annotations

import hashlib
import json
import random
import sys

import pytest

from emulator.core import ids, payloads
from emulator.core.errors import InvalidInput
from emulator.core.scenarios import Catalogue
from emulator.core.signing import SignMode
from emulator.core.timeline import plan_task
from emulator.load import LOCUSTFILE, plan, summary

KEY = "Xz4ZgayTr7rMgWQrH"


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return plan.builtin_catalogue()


def test_golden_vector_sign_as_in_spec_section_2() -> None:
    callback = plan.Callback(
        1, 0.0, payloads.PROGRESS_CHANGED, '{"Progress":1}', SignMode.VALID, "x"
    )
    body = json.loads(
        plan.callback_body(callback, sdk_app_id=1400000001, callback_key=KEY, wall_now=1588039809)
    )
    assert body["ExpireTime"] == 1588040109
    assert body["Sign"] == "a2dabb362a9b811c0e26953a6276a41c"


def test_a_load_task_is_the_emulators_own_plan_byte_for_byte(catalogue: Catalogue) -> None:
    """The same seeds through the factory and through plan_task give identical bodies."""
    factory = plan.TaskFactory({"transcode-failure": 1}, catalogue, rng=random.Random(42))
    task = factory.next_task(wall_now=1_800_000_000)
    again = random.Random(42)
    again.choices([0], [1])  # the factory's scenario draw
    task_id = ids.new_task_id(again)
    room_id = again.randint(10_000, 99_999_999)
    reference = plan_task(
        catalogue.get("transcode-failure"),
        rng=random.Random(again.getrandbits(32)),
        task_id=task_id,
        room_id=room_id,
        group_id=str(room_id),
        created_at=0.0,
        wall_created_at=1_800_000_000,
    )
    assert (task.task_id, task.room_id) == (task_id, room_id)
    assert [c.event_type for c in task.callbacks] == [e.event_type for e in reference.events]
    for callback, event in zip(task.callbacks, reference.events, strict=True):
        sent = plan.callback_body(
            callback, sdk_app_id=1400000007, callback_key=KEY, wall_now=1_800_000_100
        )
        expected = payloads.encode(
            payloads.envelope(
                event.event_type,
                event.event_data,
                sdk_app_id=1400000007,
                timestamp=1_800_000_100,
                callback_key=KEY,
                ttl_s=300,
            )
        )
        assert sent == expected
    finished = json.loads(sent)
    assert finished["EventData"]["Error"]["Code"] == "FailedOperation.Transcode"
    assert finished["Sign"] == hashlib.md5(f"{KEY}1800000400".encode()).hexdigest()


def test_tasks_follow_the_mix_and_keep_their_order(catalogue: Catalogue) -> None:
    factory = plan.TaskFactory(
        plan.parse_mix("success=3,bad-signature=1", catalogue), catalogue, random.Random(1)
    )
    tasks = [factory.next_task() for _ in range(400)]
    forged = [t for t in tasks if t.scenario == "bad-signature"]
    assert 60 < len(forged) < 140  # about a quarter
    assert len({t.task_id for t in tasks}) == 400
    for t in tasks:
        offsets = [c.offset_s for c in t.callbacks]
        assert offsets == sorted(offsets)
        assert t.callbacks[-1].event_type == payloads.FINISHED
        assert all(c.must_refuse == (t.scenario == "bad-signature") for c in t.callbacks)
    names = {c.name for t in forged for c in t.callbacks}
    assert names == {
        "OfflineRecordProgressChanged (forged Sign: must be refused)",
        "OfflineRecordFinished (forged Sign: must be refused)",
    }


def test_dropped_progress_is_never_sent(catalogue: Catalogue) -> None:
    factory = plan.TaskFactory({"dropped-progress": 1}, catalogue, random.Random(3))
    task = factory.next_task()
    reference = catalogue.get("dropped-progress")
    assert reference.section("delivery")["drop_progress"] > 0
    progress = [c for c in task.callbacks if c.event_type == payloads.PROGRESS_CHANGED]
    assert 0 < len(progress) < reference.section("processing")["progress_steps"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nope=1", "unknown scenario 'nope'"),
        ("success=x", "weight 'x' is not a number"),
        ("success=0", "weight must be > 0"),
        (",", "no scenario given"),
    ],
)
def test_bad_mixes_name_the_problem(catalogue: Catalogue, text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        plan.parse_mix(text, catalogue)


def test_mix_weights_add_up_and_a_bare_name_weighs_one(catalogue: Catalogue) -> None:
    assert plan.parse_mix("success=95, transcode-failure=5,success", catalogue) == {
        "success": 96.0,
        "transcode-failure": 5.0,
    }


def test_forged_scenarios_need_a_key(catalogue: Catalogue) -> None:
    mix = plan.parse_mix("success=1,expired-signature=1", catalogue)
    with pytest.raises(InvalidInput, match="expired-signature need"):
        plan.check_mix_signing(mix, catalogue, None)
    plan.check_mix_signing(mix, catalogue, KEY)


def test_durations_speeds_and_limits() -> None:
    assert plan.parse_duration("90") == 90
    assert plan.parse_duration("1h30m") == 5400
    assert plan.parse_duration("2.5s") == 2.5
    for bad in ("", "5x", "m", "0s"):
        with pytest.raises(InvalidInput, match="--run-time"):
            plan.parse_duration(bad)
    assert plan.parse_speed("max") is None
    assert plan.parse_speed("600") == 600
    with pytest.raises(InvalidInput, match="--speed"):
        plan.parse_speed("-1")
    assert plan.LIMITS.check(users=10, spawn_rate=5, run_time_s=60, tasks=None, rate=None) == []
    over = plan.LIMITS.check(users=5000, spawn_rate=5, run_time_s=7200, tasks=None, rate=9000)
    assert over == [
        "--users 5000 > 1000",
        "--run-time 7200s > 3600s",
        "--rate 9000 > 5000 callbacks/s",
    ]


def test_only_loopback_targets_go_without_allow_remote() -> None:
    assert "on this machine" in plan.check_target("http://127.0.0.1:8000/cb", allow_remote=False)
    assert "on this machine" in plan.check_target("http://[::1]:8000/cb", allow_remote=False)
    assert "on this machine" in plan.check_target("http://localhost:8000/cb", allow_remote=False)
    # 192.0.2.0/24 is TEST-NET-1: resolving a literal address sends nothing anywhere.
    with pytest.raises(InvalidInput, match="not on loopback; pass --allow-remote"):
        plan.check_target("http://192.0.2.10:8000/cb", allow_remote=False)
    line = plan.check_target("http://192.0.2.10:8000/cb", allow_remote=True)
    assert line.startswith("load goes to http://192.0.2.10:8000/cb")
    assert "ANOTHER MACHINE" in line
    with pytest.raises(InvalidInput, match="not an http"):
        plan.check_target("ftp://127.0.0.1/cb", allow_remote=False)


def test_failure_reasons_read_as_messages() -> None:
    assert summary.reason_text("CatchResponseError('HTTP 500')") == "HTTP 500"
    assert summary.reason_text('CatchResponseError("it\'s refused")') == "it's refused"
    assert summary.reason_text("connection refused") == "connection refused"


def test_the_shipped_locust_module_exists() -> None:
    assert LOCUSTFILE.is_file()
    assert "class RecordingTaskUser(FastHttpUser)" in LOCUSTFILE.read_text(encoding="utf-8")


def test_nothing_here_imported_locust_or_gevent() -> None:
    """Locust monkey-patches whoever imports it: only its own subprocesses may."""
    assert "locust" not in sys.modules
    assert "gevent" not in sys.modules
