"""Talking to Tencent TIW: the official SDK for starting recordings, and callback verification."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from tencentcloud.common import credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.tiw.v20190919 import models, tiw_client

__all__ = ["TencentCloudSDKException", "TiwRecorder", "check_callback_signature"]


class TiwRecorder:
    """Starts and inspects after-class recordings for one SdkAppId."""

    def __init__(
        self,
        *,
        endpoint: str,
        secret_id: str,
        secret_key: str,
        sdk_app_id: int,
        region: str = "ap-guangzhou",
        protocol: str = "https",
    ) -> None:
        # endpoint is host[:port] without a scheme; "tiw.tencentcloudapi.com" in production.
        profile = HttpProfile(endpoint=endpoint, protocol=protocol, reqTimeout=10)
        self.sdk_app_id = sdk_app_id
        self.client = tiw_client.TiwClient(
            credential.Credential(secret_id, secret_key),
            region,
            ClientProfile(httpProfile=profile),
        )

    def start(self, room_id: int, *, mixed_stream: bool = False) -> str:
        """CreateOfflineRecord; returns the TaskId that the callbacks will carry."""
        params: dict[str, Any] = {"SdkAppId": self.sdk_app_id, "RoomId": room_id}
        if mixed_stream:
            params["MixStream"] = {"Enabled": True, "ModelId": 1}
        # The typed CreateOfflineRecordResponse keeps only RequestId; call_json returns
        # the whole Response, TaskId included.
        reply = self.client.call_json("CreateOfflineRecord", params)
        return str(reply["Response"]["TaskId"])

    def describe(self, task_id: str) -> dict[str, Any]:
        """DescribeOfflineRecord: status, progress and (when finished) the result."""
        reply = self.client.call_json(
            "DescribeOfflineRecord", {"SdkAppId": self.sdk_app_id, "TaskId": task_id}
        )
        response: dict[str, Any] = reply["Response"]
        return response

    def set_callback(self, url: str) -> None:
        """SetOfflineRecordCallback: where Tencent posts this SdkAppId's recording events."""
        request = models.SetOfflineRecordCallbackRequest()
        request.SdkAppId = self.sdk_app_id
        request.Callback = url
        self.client.SetOfflineRecordCallback(request)


def check_callback_signature(
    body: dict[str, Any], *, key: str, sdk_app_id: int, now: float
) -> str | None:
    """Why a callback must be rejected, or None: Sign = md5(key + ExpireTime), not expired."""
    expire, sign = body.get("ExpireTime"), body.get("Sign")
    if isinstance(expire, bool) or not isinstance(expire, int) or not isinstance(sign, str):
        return "missing or malformed ExpireTime/Sign"
    expected = hashlib.md5((key + str(expire)).encode()).hexdigest()
    if not hmac.compare_digest(expected, sign.lower()):
        return "Sign does not match"
    if expire < now:
        return "ExpireTime has passed"
    if body.get("SdkAppId") != sdk_app_id:
        return f"SdkAppId {body.get('SdkAppId')!r} is not ours"
    return None
