"""The pytest plugin: fixtures, reset between tests, marker, ini options, waits, asserts, xdist."""

from __future__ import annotations

import importlib.util
import json
from typing import Any

import pytest

from emulator.client import EmulatorAPIError
from emulator.testing import ABSENT, TiwEmulator, explain_mismatch, match_event

pytest_plugins = ["pytester"]

PROGRESS = "OfflineRecordProgressChanged"
FINISHED = "OfflineRecordFinished"


def test_fixtures_serve_a_fresh_emulator_per_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        def test_first(tiw_emulator, tiw_receiver, tiw_client):
            task = tiw_emulator.create_task("success", room_id=5)
            tiw_emulator.advance_all()
            tiw_emulator.assert_received("OfflineRecordFinished", TaskId=task.task_id)
            assert tiw_receiver.received
            tiw_emulator.configure(speed=5.0, callback_key="changed")
            tiw_client.add_rule({"room_id": 9}, "transcode-failure")

        def test_second_starts_clean(tiw_emulator, tiw_receiver, tiw_client):
            assert tiw_client.list_tasks() == [] and tiw_client.rules() == []
            assert tiw_receiver.received == [] and tiw_emulator.deliveries() == []
            config = tiw_client.get_config()
            assert config.speed == 60.0 and config.clock == "manual"
            assert tiw_emulator.callback_key == "tiw-emulator-test-key"
            assert config.callback_url == tiw_receiver.url
            # the room is free again, and TaskIds start over
            tiw_emulator.create_task("success", room_id=5)
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_marker_picks_the_scenario_with_params(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.tiw_scenario("transcode-failure")
        def test_named(tiw_emulator):
            task = tiw_emulator.create_task()
            assert task.scenario == "transcode-failure"
            tiw_emulator.advance_all()
            tiw_emulator.assert_received(
                "OfflineRecordFinished", Error={"Code": "FailedOperation.Transcode",
                                                "Message": "录制对时信息获取失败"})

        @pytest.mark.tiw_scenario("success", duplicate=1.0)
        def test_with_params(tiw_emulator):
            task = tiw_emulator.create_task()
            assert task.scenario.startswith("success-test")
            tiw_emulator.advance_all()
            tiw_emulator.assert_received("OfflineRecordFinished", count=2)

        def test_explicit_scenario_wins(tiw_emulator):
            tiw_emulator.use_scenario("transcode-failure")
            assert tiw_emulator.create_task("success").scenario == "success"
            assert tiw_emulator.create_task().scenario == "transcode-failure"

        @pytest.mark.tiw_scenario("no-such-scenario")
        def test_unknown(tiw_emulator):
            pass
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(["*no scenario named 'no-such-scenario'; known:*"])


def test_wait_for_returns_the_matches(tiw_emulator: TiwEmulator) -> None:
    task = tiw_emulator.create_task("success", seed=3)
    tiw_emulator.advance_all()
    finished = tiw_emulator.wait_for(FINISHED, TaskId=task.task_id)
    assert len(finished) == 1 and finished[0]["EventData"]["Progress"] == 100
    progress = tiw_emulator.wait_for(PROGRESS, count=2)
    assert len(progress) >= 2
    attempts = tiw_emulator.wait_for_delivery(FINISHED, ok=True)
    assert attempts[0].task_id == task.task_id and attempts[0].status_code == 200
    tiw_emulator.assert_signed(finished[0])
    tiw_emulator.assert_delivered(task.task_id)
    tiw_emulator.assert_task(task.task_id, status="finished", outcome="success")


def test_wait_for_failure_lists_what_arrived(tiw_emulator: TiwEmulator) -> None:
    tiw_emulator.client.send_event(PROGRESS, {"TaskId": "a" * 20, "RoomId": 7, "Progress": 46})
    tiw_emulator.create_task("success")
    with pytest.raises(AssertionError) as failed:
        tiw_emulator.wait_for(FINISHED, timeout=0.05)
    message = str(failed.value)
    assert "expected 1 x OfflineRecordFinished; 0 matched, 1 callback(s) arrived" in message
    assert f"1. {PROGRESS} TaskId='{'a' * 20}' RoomId=7 Progress=46" in message
    assert "<- EventType is 'OfflineRecordProgressChanged'" in message
    assert "the clock is manual" in message and "advance_all()" in message

    with pytest.raises(AssertionError) as no_delivery:
        tiw_emulator.wait_for_delivery(FINISHED, timeout=0.05)
    assert "1 attempt(s) made" in str(no_delivery.value) and "HTTP 200" in str(no_delivery.value)


def test_assertion_messages_explain_themselves(tiw_emulator: TiwEmulator) -> None:
    task = tiw_emulator.create_task("success", room_id=1253)
    tiw_emulator.advance_all()
    with pytest.raises(AssertionError) as wrong:
        tiw_emulator.assert_received(FINISHED, RoomId=1254)
    assert "EventData.RoomId is 1253, not 1254" in str(wrong.value)
    with pytest.raises(AssertionError) as absent:
        tiw_emulator.assert_received(FINISHED, VideoInfos=ABSENT)
    assert "EventData.VideoInfos is [" in str(absent.value) and "expected it absent" in str(
        absent.value
    )
    with pytest.raises(AssertionError) as present:
        tiw_emulator.assert_not_received(FINISHED)
    assert "expected no OfflineRecordFinished; 1 arrived" in str(present.value)
    with pytest.raises(AssertionError) as task_state:
        tiw_emulator.assert_task(task.task_id, outcome="failure")
    assert "outcome is 'success', not 'failure'" in str(task_state.value)
    with pytest.raises(AssertionError) as status:
        tiw_emulator.assert_delivered(task.task_id, status=403)
    assert "0 not" not in str(status.value) and "-> HTTP 200" in str(status.value)


def test_bad_signature_is_reported(tiw_emulator: TiwEmulator) -> None:
    tiw_emulator.client.send_event(PROGRESS, {"TaskId": "b" * 20, "Progress": 1}, sign="invalid")
    tiw_emulator.client.send_event(PROGRESS, {"TaskId": "c" * 20, "Progress": 1}, sign="expired")
    bad, expired = tiw_emulator.received()
    assert tiw_emulator.check_signature(bad) == (False, "Sign does not match md5(key + ExpireTime)")
    ok, reason = tiw_emulator.check_signature(expired)
    assert not ok and "in the past" in reason
    with pytest.raises(AssertionError, match="bad signature on OfflineRecordProgressChanged"):
        tiw_emulator.assert_signed(bad)


def test_match_event_is_a_reasoned_matcher() -> None:
    body = {"EventType": FINISHED, "SdkAppId": 1, "EventData": {"TaskId": "x", "Progress": "46"}}
    assert match_event(body, FINISHED, SdkAppId=1, TaskId="x") == (True, "matches")
    assert match_event(body, Progress=lambda p: int(p) > 40) == (True, "matches")
    ok, reason = match_event(body, Progress=str.isalpha)
    assert not ok and reason == "EventData.Progress is '46', which fails isalpha"
    assert match_event(body, Error=ABSENT)[0]
    assert match_event(body, Error={"Code": "x"}) == (False, "EventData.Error is missing")
    assert match_event("not json") == (False, "body is not a JSON object: 'not json'")
    assert "0 callback(s) arrived." in explain_mismatch([], FINISHED, {})


def test_server_errors_fail_the_test_at_teardown(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        from emulator.client import EmulatorAPIError

        def test_hits_a_bug(tiw_emulator, monkeypatch):
            def broken():
                raise RuntimeError("boom in the clock")
            monkeypatch.setattr(tiw_emulator.emu, "clock_info", broken)
            with pytest.raises(EmulatorAPIError) as err:
                tiw_emulator.client.clock()
            assert err.value.status == 500

        def test_next_one_is_clean(tiw_emulator):
            tiw_emulator.check()
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        ["*the tiw-emulator server raised 1 error(s) during this test:*", "*boom in the clock*"]
    )


def test_check_raises_in_the_test(tiw_emulator: TiwEmulator, monkeypatch: Any) -> None:
    def broken() -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(tiw_emulator.emu, "list_rules", broken)
    with pytest.raises(EmulatorAPIError):
        tiw_emulator.client.rules()
    with pytest.raises(AssertionError, match="raised 1 error"):
        tiw_emulator.check()
    tiw_emulator.served._collector.errors.clear()  # this test expected it: keep teardown quiet


def test_ini_options_and_settings_override(pytester: pytest.Pytester) -> None:
    pytester.makeini(
        """
        [pytest]
        tiw_emulator_callback_key =
        tiw_emulator_clock = real
        tiw_emulator_speed = 500
        tiw_emulator_retry = none
        tiw_emulator_sdk_app_id = 1400000099
        """
    )
    pytester.makeconftest(
        """
        import pytest

        @pytest.fixture(scope="session")
        def tiw_emulator_settings(tiw_emulator_settings):
            return {**tiw_emulator_settings, "timeout_s": 2.5}
        """
    )
    pytester.makepyfile(
        """
        def test_settings(tiw_emulator, tiw_client):
            config = tiw_client.get_config()
            assert config.clock == "real" and config.speed == 500.0 and config.retry == "none"
            assert config.sdk_app_id == 1400000099 and config.timeout_s == 2.5
            assert config.callback_key is None
            tiw_emulator.client.send_event("OfflineRecordProgressChanged", {"Progress": 3})
            body = tiw_emulator.wait_for("OfflineRecordProgressChanged", Progress=3)[0]
            assert "Sign" not in body and body["SdkAppId"] == 1400000099
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_real_clock_wait_for_returns_when_the_event_arrives(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ntiw_emulator_clock = real\ntiw_emulator_speed = 100000\n")
    pytester.makepyfile(
        """
        def test_real(tiw_emulator):
            task = tiw_emulator.create_task("success")
            tiw_emulator.wait_for("OfflineRecordFinished", TaskId=task.task_id, timeout=30)
            tiw_emulator.assert_task(task.task_id, status="finished")
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_plugin_is_inert_until_its_fixtures_are_used(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import sys, threading

        def test_plain():
            assert "emulator.pytest_plugin" in sys.modules
            assert "emulator.web.app" not in sys.modules and "flask" not in sys.modules
            assert not [t for t in threading.enumerate() if t.name.startswith("tiw-")]
        """
    )
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)


@pytest.mark.skipif(importlib.util.find_spec("xdist") is None, reason="needs pytest-xdist")
def test_each_xdist_worker_has_its_own_emulator(pytester: pytest.Pytester) -> None:
    out = pytester.path / "urls"
    out.mkdir()
    pytester.makepyfile(
        f"""
        import os, pathlib, pytest

        @pytest.mark.parametrize("n", range(6))
        def test_isolated(tiw_emulator, n):
            assert tiw_emulator.client.list_tasks() == []
            task = tiw_emulator.create_task("success", room_id=1)
            tiw_emulator.advance_all()
            tiw_emulator.assert_received("OfflineRecordFinished", count=1, TaskId=task.task_id)
            worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
            pathlib.Path({str(out)!r}, f"{{worker}}-{{n}}").write_text(tiw_emulator.url)
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2")
    result.assert_outcomes(passed=6)
    by_worker: dict[str, set[str]] = {}
    for path in out.iterdir():
        by_worker.setdefault(path.name.split("-")[0], set()).add(path.read_text())
    assert len(by_worker) == 2, by_worker
    urls = [next(iter(u)) for u in by_worker.values()]
    assert all(len(u) == 1 for u in by_worker.values()) and len(set(urls)) == 2
    assert json.dumps(sorted(by_worker))  # the workers are named, e.g. gw0 and gw1
