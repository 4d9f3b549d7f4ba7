"""End to end: the classroom app starts recordings through the Tencent SDK and handles callbacks.

The emulator comes from the tiw-emulator pytest plugin (`tiw_emulator`, manual clock);
`@pytest.mark.tiw_scenario` picks what TIW does with the recordings this test starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import ClassroomUnderTest

    from emulator.testing import TiwEmulator

FINISHED = "OfflineRecordFinished"
PROGRESS = "OfflineRecordProgressChanged"


def test_successful_recording_stores_the_videos(
    classroom: ClassroomUnderTest, tiw_emulator: TiwEmulator
) -> None:
    started = classroom.start_recording(1253)
    task_id = started["task_id"]
    assert started["status"] == "queued"
    task = tiw_emulator.assert_task(task_id, room_id=1253, status="queued", source="cloudapi")

    tiw_emulator.advance_all()

    tiw_emulator.assert_delivered(task_id, status=200)  # every callback acknowledged
    recording = classroom.recording(task_id)
    assert recording["status"] == "ready" and recording["progress"] == 100
    expected = tiw_emulator.assert_task(task_id, status="finished").result
    assert expected is not None and task.scenario == "success"
    assert [v["url"] for v in recording["videos"]] == [
        v["VideoUrl"] for v in expected["VideoInfos"]
    ]
    assert recording["total_time_ms"] == expected["TotalTime"]
    assert classroom.get("/classes/1253/recording").json()["task_id"] == task_id


def test_a_second_recording_of_a_busy_room_is_refused(
    classroom: ClassroomUnderTest, tiw_emulator: TiwEmulator
) -> None:
    classroom.start_recording(42)
    busy = classroom.post("/classes/42/recording")
    assert busy.status_code == 409 and busy.json()["error"] == "LimitExceeded.TaskConcurrency"
    assert len(tiw_emulator.client.list_tasks(room_id=42)) == 1


@pytest.mark.tiw_scenario("transcode-failure")
def test_transcode_failure_is_marked_failed(
    classroom: ClassroomUnderTest, tiw_emulator: TiwEmulator
) -> None:
    task_id = classroom.start_recording(7)["task_id"]
    tiw_emulator.advance_all()
    tiw_emulator.assert_delivered(task_id)
    recording = classroom.recording(task_id)
    assert recording["status"] == "failed" and recording["videos"] == []
    assert recording["error_code"] == "FailedOperation.Transcode"
    assert recording["error_message"] == "录制对时信息获取失败"


@pytest.mark.tiw_scenario("duplicate-callbacks", duplicate=1.0)
def test_duplicate_callbacks_change_nothing(
    classroom: ClassroomUnderTest, tiw_emulator: TiwEmulator
) -> None:
    task_id = classroom.start_recording(8)["task_id"]
    tiw_emulator.advance_all()
    attempts = tiw_emulator.assert_delivered(task_id)
    finished = [a for a in attempts if a.event_type == FINISHED]
    assert len(finished) == 2  # Finished arrived twice
    recording = classroom.recording(task_id)
    videos = finished[0].body["EventData"]["VideoInfos"]
    assert recording["status"] == "ready" and len(recording["videos"]) == len(videos)
    assert recording["ignored_events"] == len(attempts) // 2  # every second copy ignored


@pytest.mark.tiw_scenario("out-of-order", out_of_order="after_finished")
def test_progress_after_finished_does_not_reopen_the_recording(
    classroom: ClassroomUnderTest, tiw_emulator: TiwEmulator
) -> None:
    task_id = classroom.start_recording(9)["task_id"]
    tiw_emulator.advance_all()
    kinds = [a.event_type for a in tiw_emulator.assert_delivered(task_id)]
    assert kinds[-1] == PROGRESS and FINISHED in kinds  # a progress event came after Finished
    recording = classroom.recording(task_id)
    assert recording["status"] == "ready" and recording["progress"] == 100
    assert recording["ignored_events"] == 1


@pytest.mark.tiw_scenario("out-of-order")
def test_older_progress_never_moves_progress_back(
    classroom: ClassroomUnderTest, tiw_emulator: TiwEmulator
) -> None:
    task_id = classroom.start_recording(10)["task_id"]
    progress_seen = []
    for event in tiw_emulator.client.task_events(task_id):
        tiw_emulator.advance(max(0.0, event.due_at - tiw_emulator.client.clock().now) + 0.001)
        progress_seen.append(classroom.recording(task_id)["progress"])
    tiw_emulator.advance_all()
    assert progress_seen == sorted(progress_seen)  # never backwards, though the wire was
    sent = [a.body["EventData"]["Progress"] for a in tiw_emulator.deliveries(PROGRESS)]
    assert sent != sorted(sent)
    assert classroom.recording(task_id)["status"] == "ready"


@pytest.mark.parametrize("scenario", ["bad-signature", "expired-signature"])
def test_forged_or_expired_callbacks_are_rejected(
    classroom: ClassroomUnderTest, tiw_emulator: TiwEmulator, scenario: str
) -> None:
    tiw_emulator.use_scenario(scenario)
    task_id = classroom.start_recording(11)["task_id"]
    tiw_emulator.advance_all()
    attempts = tiw_emulator.assert_delivered(task_id, status=403)
    assert len(attempts) > len(tiw_emulator.client.task_events(task_id))  # and were retried
    recording = classroom.recording(task_id)
    assert recording["status"] == "queued" and recording["progress"] == 0


def test_unsigned_and_foreign_callbacks_are_rejected(
    classroom: ClassroomUnderTest, tiw_emulator: TiwEmulator
) -> None:
    task_id = classroom.start_recording(12)["task_id"]
    data = {"TaskId": task_id, "RoomId": 12, "Progress": 50}
    url = classroom.url + "/tiw/callback"
    unsigned = tiw_emulator.client.send_event(PROGRESS, data, callback_url=url, sign="none")
    foreign = tiw_emulator.client.send_event(PROGRESS, data, callback_url=url, sdk_app_id=1)
    assert unsigned.status_code == 403 and "ExpireTime/Sign" in (unsigned.response_body or "")
    assert foreign.status_code == 403 and "is not ours" in (foreign.response_body or "")
    valid = tiw_emulator.client.send_event(PROGRESS, data, callback_url=url)
    assert valid.status_code == 200
    assert classroom.recording(task_id)["progress"] == 50


@pytest.mark.tiw_scenario("stalled")
def test_a_stalled_recording_is_noticed(
    classroom: ClassroomUnderTest, tiw_emulator: TiwEmulator
) -> None:
    task_id = classroom.start_recording(13)["task_id"]
    tiw_emulator.advance_all()
    tiw_emulator.assert_not_received(FINISHED)
    recording = classroom.recording(task_id)
    assert recording["status"] == "processing" and recording["progress"] == 46

    assert classroom.post("/admin/check-stalled").json()["changed"] == []  # not yet
    classroom.clock.offset = 3600  # an hour without news
    changed = classroom.post("/admin/check-stalled").json()["changed"]
    assert [(r["task_id"], r["status"], r["progress"]) for r in changed] == [
        (task_id, "stalled", 46)
    ]


def test_a_lost_finished_callback_is_recovered_through_describe(
    classroom: ClassroomUnderTest, tiw_emulator: TiwEmulator
) -> None:
    # Point TIW's callbacks somewhere else: the app hears nothing about this recording.
    classroom.app.extensions["classroom"].recorder.set_callback(tiw_emulator.receiver.url)
    task_id = classroom.start_recording(14)["task_id"]
    tiw_emulator.advance_all()
    tiw_emulator.wait_for(FINISHED, TaskId=task_id)  # it went to the receiver instead
    assert classroom.recording(task_id)["status"] == "queued"

    classroom.clock.offset = 3600
    changed = classroom.post("/admin/check-stalled").json()["changed"]
    assert [(r["task_id"], r["status"]) for r in changed] == [(task_id, "ready")]
    assert classroom.recording(task_id)["videos"]
