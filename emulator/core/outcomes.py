"""The catalogue of task error outcomes: the Error.Code values a recording can end with."""

from __future__ import annotations

from dataclasses import dataclass

# A well-formed API 3.0 error code: dotted words, e.g. FailedOperation.Transcode.
CODE_PATTERN = r"^[A-Z][A-Za-z]*(\.[A-Za-z0-9]+)*$"
DEFAULT_FAILURE_CODE = "FailedOperation.Transcode"
GENERIC_MESSAGE = "录制失败，请稍后重试或联系技术支持"


@dataclass(frozen=True)
class ErrorOutcome:
    """One way a recording task can fail: what EventData.Error holds, and its source."""

    key: str  # what a scenario or a task's params names as error_code
    code: str  # Error.Code on the wire
    message: str  # default Error.Message (where it comes from: see docs/errors.md)
    meaning: str  # in English, for the docs
    source: str  # where the code is documented


ERRORS: tuple[ErrorOutcome, ...] = (
    ErrorOutcome(
        "FailedOperation.Transcode",
        "FailedOperation.Transcode",
        "录制对时信息获取失败",
        "transcoding failed; the seed's own failure example (time-sync info missing)",
        "DescribeOfflineRecord error list; seed callback example",
    ),
    ErrorOutcome(
        "FailedOperation.Record",
        "FailedOperation.Record",
        "录制失败，具体请参考错误描述。",
        "recording failed",
        "DescribeOfflineRecord error list; the message is the TIW error list's own description",
    ),
    ErrorOutcome(
        "FailedOperation",
        "FailedOperation",
        "操作失败",
        "generic operation failure",
        "TIW error code list",
    ),
    ErrorOutcome(
        "InternalError",
        "InternalError",
        "内部错误，请稍后重试或联系技术支持",
        "internal error on the service side",
        "TIW / common error code list",
    ),
    ErrorOutcome(
        "ResourceUnavailable.ServiceExpired",
        "ResourceUnavailable.ServiceExpired",
        "账户已欠费或服务已过期，请续费后重试",
        "the account is in arrears or the service expired while the task ran",
        "DescribeOfflineRecord error list",
    ),
    ErrorOutcome(
        "ResourceUnavailable.NotRegistered",
        "ResourceUnavailable.NotRegistered",
        "未开通互动白板服务",
        "the whiteboard service is not activated for this SdkAppId",
        "DescribeOfflineRecord error list",
    ),
    ErrorOutcome(
        "UnauthorizedOperation.SdkAppId",
        "UnauthorizedOperation.SdkAppId",
        "SdkAppId不存在或不属于当前账号",
        "the SdkAppId does not exist or belongs to another account",
        "DescribeOfflineRecord error list",
    ),
    ErrorOutcome(
        "InvalidParameter.RecordParameter",
        "InvalidParameter.RecordParameter",
        "录制参数格式错误",
        "the recording parameters were malformed",
        "CreateOfflineRecord error list",
    ),
    ErrorOutcome(
        "LimitExceeded.TaskConcurrency",
        "LimitExceeded.TaskConcurrency",
        "并发录制任务数超过限制",
        "too many concurrent recording tasks",
        "CreateOfflineRecord error list",
    ),
    # Legacy (iclass, pre-API-3.0) task errors: named by number, sent in API 3.0 form.
    ErrorOutcome(
        "-1",
        "InternalError",
        "内部错误，请稍后重试或联系技术支持",
        "legacy -1: internal error",
        "legacy offline-record task errors",
    ),
    ErrorOutcome(
        "2003",
        "FailedOperation.Record",
        "拉取房间IM消息失败，请确认课堂结束前IM群组未被解散",
        "legacy 2003: IM message download failed (the room's IM group was dismissed)",
        "legacy offline-record task errors",
    ),
    ErrorOutcome(
        "2004",
        "FailedOperation.Transcode",
        "录制对时信息获取失败",
        "legacy 2004: IM time-sync information missing",
        "legacy offline-record task errors",
    ),
    ErrorOutcome(
        "2005",
        "FailedOperation.Record",
        "录制视频上传失败",
        "legacy 2005: uploading the recorded video failed",
        "legacy offline-record task errors",
    ),
    ErrorOutcome(
        "2007",
        "FailedOperation.Record",
        "课堂时长超过限制（最长24小时）",
        "legacy 2007: the class is longer than the 24 h limit",
        "legacy offline-record task errors",
    ),
)

LEGACY_KEYS: tuple[str, ...] = tuple(e.key for e in ERRORS if not e.key[0].isalpha())
_BY_KEY = {e.key: e for e in ERRORS}


def lookup(key: str | int) -> ErrorOutcome | None:
    """The catalogue entry for an error_code (a code, or a legacy number such as 2003)."""
    return _BY_KEY.get(str(key))


def resolve(key: str | int, message: str | None = None) -> tuple[str, str]:
    """(Error.Code, Error.Message) for an error_code and an optional explicit message.

    A code outside the catalogue is sent as given, with a generic message: QA may need one the
    emulator does not know.
    """
    entry = lookup(key)
    code = entry.code if entry else str(key)
    return code, message if message is not None else (entry.message if entry else GENERIC_MESSAGE)
