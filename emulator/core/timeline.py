"""Planning a task: from a scenario and a seed to its processing milestones and callbacks."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from emulator.core import payloads
from emulator.core.recording import ClassSpec, generate_recording
from emulator.core.scenarios import Scenario
from emulator.core.signing import SignMode


@dataclass(frozen=True)
class PlannedEvent:
    seq: int
    due_at: float  # emulated seconds
    event_type: str
    event_data: dict[str, Any]
    sign_mode: SignMode
    dropped: bool = False  # planned but deliberately never sent (a scenario quirk)
    note: str = ""


@dataclass(frozen=True)
class Plan:
    """What happens to a task, in emulated time, independent of whether callbacks arrive."""

    created_at: float
    queued_until: float
    milestones: list[tuple[float, int]]  # (emulated time, progress) while processing
    finish_at: float | None  # None: the task never finishes (stalled)
    outcome: str | None  # "success" / "failure" once finished
    error: dict[str, str] | None
    result: dict[str, Any]  # RecordStartTime, TotalTime, VideoInfos (what describe returns)
    events: list[PlannedEvent] = field(default_factory=list)

    def status_at(self, now: float) -> tuple[str, int]:
        """(status, progress) as the service would report them at emulated time `now`."""
        if self.finish_at is not None and now >= self.finish_at:
            return "finished", 100
        if now < self.queued_until:
            return "queued", 0
        progress = 0
        for at, value in self.milestones:
            if at <= now:
                progress = value
        return "processing", progress

    def to_dict(self) -> dict[str, Any]:
        return {
            "created_at": self.created_at,
            "queued_until": self.queued_until,
            "milestones": [list(m) for m in self.milestones],
            "finish_at": self.finish_at,
            "outcome": self.outcome,
            "error": self.error,
            "result": self.result,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Plan:
        return cls(
            created_at=d["created_at"],
            queued_until=d["queued_until"],
            milestones=[(float(a), int(b)) for a, b in d["milestones"]],
            finish_at=d["finish_at"],
            outcome=d["outcome"],
            error=d["error"],
            result=d["result"],
        )


Raw = list[tuple[float, str, dict[str, Any], str]]  # (due_at, event_type, event_data, note)


def _pick(rng: random.Random, value: Any, *, integer: bool = False) -> Any:
    if isinstance(value, list):
        lo, hi = value
        return rng.randint(int(lo), int(hi)) if integer else rng.uniform(lo, hi)
    return int(value) if integer else float(value)


def _progress_values(rng: random.Random, steps: int, jitter: float) -> list[int]:
    spacing = 99 / (steps + 1)
    values: list[int] = []
    for i in range(1, steps + 1):
        raw = spacing * i + rng.uniform(-jitter, jitter) * spacing / 2
        value = max(1, min(99, round(raw)))
        if values and value <= values[-1]:
            value = values[-1] + 1
        if value <= 99:
            values.append(value)
    return values


def _stop_at(values: list[int], last: int) -> list[int]:
    """Progress values up to `last`, which is reported itself (the value a failure or stall shows).

    Values just below it are skipped so the backend does not see e.g. 59 then 60.
    """
    if last <= 0:
        return []
    return [v for v in values if v < last - 2] + [last]


def plan_task(
    scenario: Scenario,
    *,
    rng: random.Random,
    task_id: str,
    room_id: int,
    group_id: str,
    created_at: float,
    wall_created_at: float,
) -> Plan:
    """Plan a task deterministically from `rng` (seeded per task) and the scenario."""
    cls, proc = scenario.section("class"), scenario.section("processing")
    outcome, quirks = scenario.section("outcome"), scenario.section("delivery")

    duration_s = max(1, round(_pick(rng, cls["duration_s"])))
    spec = ClassSpec(
        duration_s=duration_s,
        participants=_pick(rng, cls["participants"], integer=True),
        camera=cls["camera"],
        screen_share=cls["screen_share"],
        mixed_stream=cls["mixed_stream"],
        audio_only=cls["audio_only"],
        whiteboard=cls["whiteboard"],
        mix_model_id=cls["mix_model_id"],
        audio_participants=cls["audio_participants"],
    )
    recording = generate_recording(spec, room_id=room_id, rng=rng)
    # The class ended a little before the recording was requested.
    ended_gap_s = rng.randint(30, 300)
    record_start_time = int(wall_created_at) - ended_gap_s - duration_s

    queued_until = created_at + round(_pick(rng, proc["queue_delay_s"]), 3)
    processing_s = duration_s * proc["duration_factor"]
    values = _progress_values(rng, proc["progress_steps"], proc["jitter"])
    failed = outcome["result"] == "failure"
    if failed:
        values = _stop_at(values, outcome["fail_at"])
    stall_at = proc["stall_at"]
    if stall_at is not None:
        values = _stop_at(values, stall_at)
    milestones = [(round(queued_until + processing_s * v / 100, 3), v) for v in values]

    finish_at: float | None
    if stall_at is not None:
        finish_at = None
    elif failed:
        finish_at = round(
            queued_until + processing_s * min(1.0, (outcome["fail_at"] + 10) / 100), 3
        )
    else:
        finish_at = round(queued_until + processing_s, 3)
    if finish_at is not None and milestones and milestones[-1][0] >= finish_at:
        finish_at = round(milestones[-1][0] + 1, 3)

    error = {"Code": outcome["error_code"], "Message": outcome["error_message"]} if failed else None
    result = {
        "RecordStartTime": record_start_time,
        "TotalTime": 0 if failed else recording.total_time_ms,
        "VideoInfos": [] if failed else recording.video_infos,
    }
    sign_mode = SignMode(quirks["sign"])
    raw: Raw = [
        (
            at,
            payloads.PROGRESS_CHANGED,
            payloads.progress_data(task_id, room_id, v, as_string=quirks["progress_as_string"]),
            "",
        )
        for at, v in milestones
    ]
    if finish_at is not None:
        data = payloads.finished_data(
            task_id=task_id,
            room_id=room_id,
            group_id=group_id,
            record_start_time=record_start_time,
            total_time_ms=result["TotalTime"],
            video_infos=result["VideoInfos"],
            error=error,
            bare_error=failed and outcome["bare"],
        )
        raw.append((finish_at, payloads.FINISHED, data, ""))

    raw = _apply_quirks(raw, quirks, rng)
    raw.sort(key=lambda item: item[0])
    events = [
        PlannedEvent(
            seq=i + 1,
            due_at=at,
            event_type=et,
            event_data=data,
            sign_mode=sign_mode,
            dropped=note == "dropped",
            note=note,
        )
        for i, (at, et, data, note) in enumerate(raw)
    ]
    return Plan(
        created_at=created_at,
        queued_until=queued_until,
        milestones=milestones,
        finish_at=finish_at,
        outcome=("failure" if failed else "success") if finish_at is not None else None,
        error=error,
        result=result,
        events=events,
    )


def _chosen(rng: random.Random, count: int, probability: float) -> set[int]:
    """Indices picked with `probability` each; at least one when probability > 0."""
    if probability <= 0 or count == 0:
        return set()
    picked = {i for i in range(count) if rng.random() < probability}
    return picked or {rng.randrange(count)}


def _apply_quirks(raw: Raw, quirks: dict[str, Any], rng: random.Random) -> Raw:
    progress_idx = [i for i, item in enumerate(raw) if item[1] == payloads.PROGRESS_CHANGED]
    out = list(raw)
    # dropped-progress: never sent, but kept in the timeline so the dashboard can show it.
    dropped = _chosen(rng, len(progress_idx), quirks["drop_progress"])
    if len(dropped) == len(progress_idx) > 1:
        dropped.discard(rng.choice(sorted(dropped)))  # "some" are dropped: one still arrives
    for k in dropped:
        at, et, data, _ = out[progress_idx[k]]
        out[progress_idx[k]] = (at, et, data, "dropped")
    mode = quirks["out_of_order"]
    sendable = [i for i in progress_idx if out[i][3] != "dropped"]
    if mode == "swap" and len(sendable) >= 2:
        # The earlier (lower) progress goes out at the later one's time, and vice versa.
        k = rng.randrange(len(sendable) - 1)
        a, b = sendable[k], sendable[k + 1]
        out[a], out[b] = (
            (out[b][0], *out[a][1:3], "out of order: after a later progress"),
            (out[a][0], *out[b][1:3], out[b][3]),
        )
    elif mode == "after_finished" and sendable and out[-1][1] == payloads.FINISHED:
        i = sendable[-1]
        out[i] = (out[-1][0] + 1.0, *out[i][1:3], "out of order: after Finished")
    live = [i for i, item in enumerate(out) if item[3] != "dropped"]
    duplicates = []
    for k in _chosen(rng, len(live), quirks["duplicate"]):
        at, et, data, _ = out[live[k]]
        later = [x[0] for x in out if x[0] > at]
        gap = min(1.0, (min(later) - at) / 2) if later else 1.0
        duplicates.append((round(at + gap, 3), et, data, "duplicate"))
    return out + duplicates
