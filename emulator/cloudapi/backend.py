"""The contract between the cloud API blueprint and the emulator core, plus its settings."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol


class CloudBackend(Protocol):
    """What the core provides; raise `CloudApiError` subclasses for business errors."""

    def create_offline_record(
        self,
        *,
        sdk_app_id: int,
        room_id: int,
        group_id: str | None,
        mix_stream: dict[str, Any] | None,
        whiteboard: dict[str, Any] | None,
        request_id: str,
        waited_s: float = 0.0,
        hold: Callable[[Future[None]], None] | None = None,
    ) -> str:
        """Create a task and return its TaskId; `request_id` is this call's RequestId.

        `waited_s`: how long the call waited in the server before it got here; the task is
        created as of the call's arrival (as `POST /api/tasks` does). `hold`: the server holds
        the reply until the future given to it settles (`Emulator.create_task`'s `hold`): the
        task is not committed yet when this returns, and a refusal comes through the future. A
        backend may ignore it and create the task before returning; it is passed only when the
        server offers it.

        Raises LimitExceeded.TaskConcurrency (`errors.task_concurrency`) when the room and
        SdkAppId already have an unfinished task. `group_id` is None when absent or empty.
        """
        ...

    def describe_offline_record(self, *, sdk_app_id: int, task_id: str) -> dict[str, Any]:
        """Task state: TaskId, Status (queued/processing/finished), Progress, RoomId, GroupId,
        and once finished RecordStartTime, TotalTime, VideoInfos, Error {Code, Message}.

        Raises InvalidParameter.TaskNotFound (`errors.task_not_found`).
        """
        ...

    def set_offline_record_callback(self, *, sdk_app_id: int, callback: str) -> None:
        """Set the callback URL for the SdkAppId; "" deletes it."""
        ...

    def describe_offline_record_callback(self, *, sdk_app_id: int) -> dict[str, Any]:
        """`{"Callback": str}`: the SdkAppId's callback URL, or "" when none is set."""
        ...

    def log_cloud_call(self, record: dict[str, Any]) -> None:
        """Store one call record (see `views.CallRecord` for the keys)."""
        ...

    def new_request_id(self) -> str:
        """A fresh RequestId (uuid4 text on the real service)."""
        ...


@dataclass
class CloudApiSettings:
    """Read per request through `settings_provider`, so config changes apply at once."""

    secrets: dict[str, str]
    verify_signature: bool = True
    # "strict": only documented response fields (RequestId) and X-TC-Region required;
    # "default" (anything but "strict") also returns TaskId, task status, callback settings.
    fidelity: str = "default"
    max_skew_s: int = 300
    now: Callable[[], float] = field(default_factory=lambda: time.time)
    # Larger bodies get RequestSizeLimitExceeded (HTTP 200, as the real API would answer).
    max_body_bytes: int = 1024 * 1024
