"""The cloud API's view of the core: OfflineRecord actions mapped onto Emulator tasks."""

from __future__ import annotations

import uuid
from typing import Any

from emulator.cloudapi import errors as cloud_errors
from emulator.core.errors import RoomBusy, TaskNotFound
from emulator.core.service import Emulator, Hold


class EmulatorCloudBackend:
    """Implements emulator.cloudapi.backend.CloudBackend on top of an Emulator."""

    def __init__(self, emu: Emulator) -> None:
        self._emu = emu

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
        hold: Hold | None = None,
    ) -> str:
        params: dict[str, Any] = {}
        if mix_stream and mix_stream.get("Enabled"):
            params["mixed_stream"] = True
        try:
            task = self._emu.create_task(
                room_id=room_id,
                group_id=group_id,
                sdk_app_id=sdk_app_id,
                params=params or None,
                source="cloudapi",
                request_id=request_id,
                waited_s=waited_s,
                hold=hold,
            )
        except RoomBusy as busy:
            raise cloud_errors.task_concurrency(room_id, busy.details["task_id"]) from None
        return str(task["task_id"])

    def describe_offline_record(self, *, sdk_app_id: int, task_id: str) -> dict[str, Any]:
        try:
            task = self._emu.get_task(task_id, with_events=False)
        except TaskNotFound:
            raise cloud_errors.task_not_found(task_id) from None
        if task["sdk_app_id"] != sdk_app_id:  # tasks belong to their SdkAppId
            raise cloud_errors.task_not_found(task_id)
        status = "finished" if task["status"] == "cancelled" else task["status"]
        out: dict[str, Any] = {
            "TaskId": task["task_id"],
            "Status": status,
            "Progress": task["progress"],
            "RoomId": task["room_id"],
            "GroupId": task["group_id"],
        }
        if task["status"] == "finished":
            if task["result"]:
                out.update(task["result"])
            if task["error"]:
                out["Error"] = task["error"]
        return out

    def set_offline_record_callback(self, *, sdk_app_id: int, callback: str) -> None:
        self._emu.set_app_callback(sdk_app_id, callback or None)

    def describe_offline_record_callback(self, *, sdk_app_id: int) -> dict[str, Any]:
        return {"Callback": self._emu.app_callback(sdk_app_id) or ""}

    def log_cloud_call(self, record: dict[str, Any]) -> None:
        self._emu.log_cloud_call(record)

    def new_request_id(self) -> str:
        return str(uuid.uuid4())
