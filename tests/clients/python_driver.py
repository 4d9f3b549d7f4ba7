"""Drives the emulator through the newest official Python SDK, run in its own venv (not dev).

One JSON call per stdin line (`endpoint`, `secretId`, `secretKey`, `action`, `params`, optional
`region`, `signMethod`, `reqMethod`); one JSON reply per stdout line: `{"ok": Response}` or
`{"error": {"code", "message", "requestId"}}`. Uses `CommonClient.call_json`: the newest
releases have no typed OfflineRecord methods.
"""

import json
import sys

from tencentcloud.common import credential
from tencentcloud.common.common_client import CommonClient
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile


def run(call: dict) -> dict:
    http = HttpProfile(
        endpoint=call["endpoint"], protocol="http", reqMethod=call.get("reqMethod", "POST")
    )
    profile = ClientProfile(httpProfile=http, signMethod=call.get("signMethod", "TC3-HMAC-SHA256"))
    cred = credential.Credential(call["secretId"], call["secretKey"])
    client = CommonClient("tiw", "2019-09-19", cred, call.get("region", "ap-guangzhou"), profile)
    return client.call_json(call["action"], call["params"])["Response"]


for line in sys.stdin:
    call = json.loads(line)
    try:
        reply = {"ok": run(call)}
    except TencentCloudSDKException as exc:
        reply = {"error": {"code": exc.code, "message": exc.message, "requestId": exc.requestId}}
    print(json.dumps(reply, ensure_ascii=False), flush=True)
