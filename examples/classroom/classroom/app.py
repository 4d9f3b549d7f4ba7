"""The classroom backend's HTTP API: start class recordings, take TIW callbacks, read results."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from flask import Flask, Response, jsonify, request

from classroom.recordings import Recordings
from classroom.tiw import TencentCloudSDKException, TiwRecorder, check_callback_signature

log = logging.getLogger("classroom")

DEFAULTS: dict[str, Any] = {
    "TIW_ENDPOINT": "tiw.tencentcloudapi.com",
    "TIW_PROTOCOL": "https",
    "TIW_REGION": "ap-guangzhou",
    "TIW_SECRET_ID": "",
    "TIW_SECRET_KEY": "",
    "TIW_SDK_APP_ID": 1400000001,
    "TIW_CALLBACK_KEY": "",
    "STALL_AFTER_S": 1800,  # no progress for this long: ask TIW, then mark stalled
    "CLOCK": time.time,
}


class Classroom:
    """The app's state and behaviour, shared by the views."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = config
        self.recordings = Recordings()
        self.recorder = TiwRecorder(
            endpoint=config["TIW_ENDPOINT"],
            protocol=config["TIW_PROTOCOL"],
            region=config["TIW_REGION"],
            secret_id=config["TIW_SECRET_ID"],
            secret_key=config["TIW_SECRET_KEY"],
            sdk_app_id=int(config["TIW_SDK_APP_ID"]),
        )

    def now(self) -> float:
        clock: Callable[[], float] = self.config["CLOCK"]
        return clock()

    def check_stalled(self) -> list[dict[str, Any]]:
        """Recordings silent too long: recover a lost Finished through Describe, else stalled."""
        now, changed = self.now(), []
        for recording in self.recordings.unfinished():
            if now - recording.last_progress_at < self.config["STALL_AFTER_S"]:
                continue
            status = self.recorder.describe(recording.task_id)
            if status.get("Status") == "finished":
                self.recordings.apply("OfflineRecordFinished", status, now)
            else:
                self.recordings.mark_stalled(recording.task_id, status.get("Progress"))
            changed.append(self.recordings.get(recording.task_id))
        return [r.to_dict() for r in changed if r is not None]


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(DEFAULTS)
    app.config.from_prefixed_env("CLASSROOM")
    app.config.update(config or {})
    classroom = Classroom(app.config)
    app.extensions["classroom"] = classroom

    @app.post("/classes/<int:room_id>/recording")
    def start_recording(room_id: int) -> tuple[Response, int]:
        try:
            task_id = classroom.recorder.start(room_id)
        except TencentCloudSDKException as err:
            busy = err.get_code() == "LimitExceeded.TaskConcurrency"
            log.warning("CreateOfflineRecord failed: %s", err)
            return jsonify(error=err.get_code(), message=err.get_message()), 409 if busy else 502
        recording = classroom.recordings.add(task_id, room_id, classroom.now())
        return jsonify(recording.to_dict()), 201

    @app.get("/classes/<int:room_id>/recording")
    def room_recording(room_id: int) -> tuple[Response, int]:
        recording = classroom.recordings.latest_for_room(room_id)
        if recording is None:
            return jsonify(error="no recording for this class"), 404
        return jsonify(recording.to_dict()), 200

    @app.get("/recordings/<task_id>")
    def get_recording(task_id: str) -> tuple[Response, int]:
        recording = classroom.recordings.get(task_id)
        if recording is None:
            return jsonify(error="no such recording"), 404
        return jsonify(recording.to_dict()), 200

    @app.post("/tiw/callback")
    def tiw_callback() -> tuple[Response, int]:
        body = request.get_json(force=True, silent=True)
        if not isinstance(body, dict) or not isinstance(body.get("EventData"), dict):
            return jsonify(error_code=400, error="not a TIW callback"), 400
        key = app.config["TIW_CALLBACK_KEY"]
        if key:
            problem = check_callback_signature(
                body, key=key, sdk_app_id=classroom.recorder.sdk_app_id, now=time.time()
            )
            if problem:
                log.warning("rejected TIW callback: %s", problem)
                return jsonify(error_code=403, error=problem), 403
        outcome = classroom.recordings.apply(
            str(body.get("EventType")), body["EventData"], classroom.now()
        )
        log.info("TIW %s %s: %s", body.get("EventType"), body["EventData"].get("TaskId"), outcome)
        return jsonify(error_code=0), 200  # acknowledged, also when ignored: no retries wanted

    @app.post("/admin/check-stalled")
    def check_stalled() -> Response:
        return jsonify(changed=classroom.check_stalled())

    return app
