"""Facts the tests take from SPEC.md and the seed document, written down once, not from the code."""

from __future__ import annotations

# SPEC section 5, in its order.
SPEC_SCENARIOS = (
    "success",
    "success-mixed-stream",
    "success-large-class",
    "transcode-failure",
    "transcode-failure-bare",
    "record-failure",
    "stalled",
    "slow",
    "duplicate-callbacks",
    "out-of-order",
    "dropped-progress",
    "progress-as-string",
    "bad-signature",
    "expired-signature",
)

# SPEC section 2: every VideoInfo field and its JSON type.
VIDEO_INFO_TYPES: dict[str, type] = {
    "VideoPlayTime": int,
    "VideoSize": int,
    "VideoFormat": str,
    "VideoDuration": int,
    "VideoUrl": str,
    "VideoId": str,
    "VideoType": int,
    "UserId": str,
    "Width": int,
    "Height": int,
}

# SPEC section 2 / the seed: OfflineRecordFinished EventData of a failure that keeps the
# documented fields, in the seed's key order with Error last.
FAILED_FINISHED_KEYS = (
    "TaskId",
    "RoomId",
    "GroupId",
    "Progress",
    "RecordStartTime",
    "TotalTime",
    "VideoInfos",
    "Error",
)
