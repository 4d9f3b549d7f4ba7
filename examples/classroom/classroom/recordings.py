"""Recordings and how callbacks move them: idempotent, order-tolerant, Finished is final."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from typing import Any

FINAL = ("ready", "failed")


@dataclass
class Video:
    url: str
    video_id: str
    type: int  # 0 camera, 1 screen, 2 whiteboard, 3 mixed stream, 4 audio
    user_id: str
    play_time_ms: int
    duration_ms: int
    size_bytes: int
    format: str

    @classmethod
    def from_info(cls, info: dict[str, Any]) -> Video:
        return cls(
            url=info["VideoUrl"],
            video_id=str(info["VideoId"]),
            type=int(info["VideoType"]),
            user_id=info.get("UserId", ""),
            play_time_ms=int(info.get("VideoPlayTime", 0)),
            duration_ms=int(info.get("VideoDuration", 0)),
            size_bytes=int(info.get("VideoSize", 0)),
            format=info.get("VideoFormat", "mp4"),
        )


@dataclass
class Recording:
    task_id: str
    room_id: int
    started_at: float
    status: str = "queued"  # queued, processing, stalled, ready, failed
    progress: int = 0
    last_progress_at: float = 0.0
    videos: list[Video] = field(default_factory=list)
    total_time_ms: int | None = None
    error_code: str | None = None
    error_message: str | None = None
    ignored_events: int = 0  # duplicates, stale progress, events after Finished

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Recordings:
    """In-memory recordings keyed by TaskId (a real app would use its database)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_task: dict[str, Recording] = {}

    def clear(self) -> None:
        with self._lock:
            self._by_task.clear()

    def add(self, task_id: str, room_id: int, now: float) -> Recording:
        with self._lock:
            recording = Recording(task_id, room_id, started_at=now, last_progress_at=now)
            self._by_task[task_id] = recording
            return recording

    def get(self, task_id: str) -> Recording | None:
        with self._lock:
            return self._by_task.get(task_id)

    def latest_for_room(self, room_id: int) -> Recording | None:
        with self._lock:
            mine = [r for r in self._by_task.values() if r.room_id == room_id]
        return max(mine, key=lambda r: r.started_at) if mine else None

    def unfinished(self) -> list[Recording]:
        with self._lock:
            return [r for r in self._by_task.values() if r.status not in FINAL]

    def apply(self, event_type: str, data: dict[str, Any], now: float) -> str:
        """Apply one callback's EventData; returns what happened (for the log)."""
        with self._lock:
            recording = self._by_task.get(str(data.get("TaskId", "")))
            if recording is None:
                return "unknown task"
            if recording.status in FINAL:
                recording.ignored_events += 1
                return f"ignored: already {recording.status}"
            if event_type == "OfflineRecordProgressChanged":
                return _progress(recording, data, now)
            if event_type == "OfflineRecordFinished":
                return _finished(recording, data, now)
            recording.ignored_events += 1
            return f"ignored: unknown EventType {event_type!r}"

    def mark_stalled(self, task_id: str, progress: int | None) -> None:
        with self._lock:
            recording = self._by_task[task_id]
            if recording.status not in FINAL:
                recording.status = "stalled"
                if progress is not None:
                    recording.progress = max(recording.progress, progress)


def _progress(recording: Recording, data: dict[str, Any], now: float) -> str:
    try:
        progress = int(data["Progress"])  # documented as String, sent as a number: take both
    except (KeyError, TypeError, ValueError):
        recording.ignored_events += 1
        return "ignored: no usable Progress"
    if progress <= recording.progress:
        recording.ignored_events += 1  # a duplicate or a late, older event
        return "ignored: not newer"
    recording.progress = progress
    recording.status = "processing"
    recording.last_progress_at = now
    return f"progress {progress}"


def _finished(recording: Recording, data: dict[str, Any], now: float) -> str:
    recording.last_progress_at = now
    error = data.get("Error")
    if error:
        recording.status = "failed"
        recording.error_code = error.get("Code")
        recording.error_message = error.get("Message")
        return f"failed: {recording.error_code}"
    recording.status = "ready"
    recording.progress = 100
    recording.total_time_ms = data.get("TotalTime")
    recording.videos = [Video.from_info(v) for v in data.get("VideoInfos") or []]
    return f"ready: {len(recording.videos)} video(s)"
