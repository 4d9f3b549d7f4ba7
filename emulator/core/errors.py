"""Control-API error classes, each carrying its wire code and HTTP status."""

from __future__ import annotations

from typing import Any


class EmulatorError(Exception):
    """Base error: rendered as {"error": {"code", "message", "details"}} with `status`."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}

    def to_dict(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class InvalidInput(EmulatorError):
    code = "invalid_field"

    def __init__(self, field: str, message: str, **details: Any) -> None:
        super().__init__(f"{field}: {message}", details={"field": field, **details})


class UnknownField(EmulatorError):
    code = "unknown_field"

    def __init__(self, field: str, allowed: list[str]) -> None:
        super().__init__(
            f"unknown field {field!r}; allowed: {', '.join(sorted(allowed))}",
            details={"field": field, "allowed": sorted(allowed)},
        )


class InvalidJson(EmulatorError):
    code = "invalid_json"


class NotFound(EmulatorError):
    status = 404
    code = "not_found"


class TaskNotFound(NotFound):
    code = "task_not_found"

    def __init__(self, task_id: str) -> None:
        super().__init__(f"no task with id {task_id!r}", details={"task_id": task_id})


class ScenarioNotFound(NotFound):
    code = "scenario_not_found"

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(
            f"no scenario named {name!r}; known: {', '.join(sorted(known))}",
            details={"scenario": name, "known": sorted(known)},
        )


class RoomBusy(EmulatorError):
    status = 409
    code = "room_busy"

    def __init__(self, room_id: int, sdk_app_id: int, task_id: str) -> None:
        super().__init__(
            f"room {room_id} of SdkAppId {sdk_app_id} already has an unfinished task {task_id}",
            details={"room_id": room_id, "sdk_app_id": sdk_app_id, "task_id": task_id},
        )


class InvalidState(EmulatorError):
    status = 409
    code = "invalid_state"


class ScenarioInvalid(EmulatorError):
    code = "scenario_invalid"


class Unauthorized(EmulatorError):
    status = 401
    code = "unauthorized"


class PayloadTooLarge(EmulatorError):
    status = 413
    code = "payload_too_large"


class StorageUnavailable(EmulatorError):
    """The database refused a read or write (disk full, read-only, connection lost)."""

    status = 503
    code = "storage_unavailable"

    def __init__(self, reason: str) -> None:
        super().__init__(
            f"storage error: {reason}; nothing acknowledged was lost, retry when it is fixed",
            details={"storage_error": reason},
        )
