"""Callback payloads: EventData builders, the signed envelope, and its exact bytes on the wire."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from emulator.core.signing import SignMode, signature_fields

PROGRESS_CHANGED = "OfflineRecordProgressChanged"
FINISHED = "OfflineRecordFinished"
EVENT_TYPES = (PROGRESS_CHANGED, FINISHED)


def progress_data(
    task_id: str, room_id: int, progress: int, *, as_string: bool = False
) -> dict[str, Any]:
    """EventData of OfflineRecordProgressChanged (the seed's documented keys, in its order)."""
    return {
        "TaskId": task_id,
        "RoomId": room_id,
        "Progress": str(progress) if as_string else progress,
    }


def finished_data(
    *,
    task_id: str,
    room_id: int,
    group_id: str,
    record_start_time: int,
    total_time_ms: int,
    video_infos: Sequence[dict[str, Any]],
    error: dict[str, str] | None = None,
    bare_error: bool = False,
) -> dict[str, Any]:
    """EventData of OfflineRecordFinished; `bare_error` reproduces the seed's Error-only shape."""
    if error is not None and bare_error:
        return {"Error": {"Code": error["Code"], "Message": error["Message"]}}
    data: dict[str, Any] = {
        "TaskId": task_id,
        "RoomId": room_id,
        "GroupId": group_id,
        "Progress": 100,
        "RecordStartTime": record_start_time,
        "TotalTime": total_time_ms,
        "VideoInfos": [dict(v) for v in video_infos],
    }
    if error is not None:
        data["Error"] = {"Code": error["Code"], "Message": error["Message"]}
    return data


def envelope(
    event_type: str,
    event_data: dict[str, Any],
    *,
    sdk_app_id: int,
    timestamp: int,
    callback_key: str | None,
    ttl_s: int,
    sign_mode: SignMode = SignMode.VALID,
) -> dict[str, Any]:
    """The whole callback body: Timestamp, SdkAppId, [ExpireTime, Sign], EventType, EventData."""
    body: dict[str, Any] = {"Timestamp": timestamp, "SdkAppId": sdk_app_id}
    body.update(signature_fields(callback_key, timestamp=timestamp, ttl_s=ttl_s, mode=sign_mode))
    body["EventType"] = event_type
    body["EventData"] = event_data
    return body


def encode(body: dict[str, Any]) -> bytes:
    """UTF-8 JSON as sent: real UTF-8 for Chinese messages, no insignificant spaces."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def encode_data(event_data: dict[str, Any]) -> str:
    """EventData as its JSON text, encoded once at planning time and reused for every attempt."""
    return json.dumps(event_data, ensure_ascii=False, separators=(",", ":"))


_encode = msgspec.json.Encoder().encode


def encode_planned_data(event_data: dict[str, Any]) -> str:
    """`encode_data` for EventData the planner built (str, int, bool, None, lists and dicts only).

    For those types msgspec writes the bytes json.dumps(ensure_ascii=False, separators=(",", ":"))
    writes, every code point escaped alike (tests/test_wire_format.py checks them all), at about
    a twentieth of the CPU (1.5 against 28 µs for a Finished with four videos). Floats would
    differ (1e16 against 1e+16), so hand-written EventData (ad-hoc events) keeps `encode_data`.
    """
    return _encode(event_data).decode()


def encode_params(params: Mapping[str, Any] | None) -> str:
    """A task's params as stored (compact JSON; read back with json.loads)."""
    return _encode(params or {}).decode()


def encode_plan(plan: dict[str, Any]) -> str:
    """A task's stored plan as JSON text (read back with json.loads; not sent anywhere)."""
    return _encode(plan).decode()


def envelope_bytes(
    event_type: str,
    data_json: str,
    *,
    sdk_app_id: int,
    timestamp: int,
    callback_key: str | None,
    ttl_s: int,
    sign_mode: SignMode = SignMode.VALID,
) -> bytes:
    """Same bytes as encode(envelope(...)), built without re-serialising EventData."""
    head = envelope(
        event_type,
        {},
        sdk_app_id=sdk_app_id,
        timestamp=timestamp,
        callback_key=callback_key,
        ttl_s=ttl_s,
        sign_mode=sign_mode,
    )
    del head["EventData"]
    # Only str and int here: msgspec writes json.dumps' bytes (see encode_planned_data) at
    # about a twentieth of the CPU (0.6 against 10 us on a loaded machine, once per attempt).
    prefix = _encode(head)[:-1].decode()
    return f'{prefix},"EventData":{data_json}}}'.encode()
