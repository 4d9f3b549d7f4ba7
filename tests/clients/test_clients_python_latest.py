"""The newest Python SDK (no typed OfflineRecord methods any more) through `CommonClient.call_json`.

Runs in its own cached venv (`tencentcloud-sdk-python-common` would replace the dev venv's
3.0.1042); the pinned `tencentcloud-sdk-python-tiw==3.0.1042` is covered by test_cloudapi_e2e.
"""

from __future__ import annotations

from typing import Any

import pytest
from clients_support import LineDriver

from emulator.core.config import DEMO_SECRET_ID, DEMO_SECRET_KEY
from emulator.receiver import Receiver

APP = 1400000001
DAY = 86400


def call(driver: LineDriver, running: Any, action: str, **params: Any) -> dict[str, Any]:
    endpoint = running.url.removeprefix("http://").rstrip("/")
    return driver.call(
        endpoint=endpoint,
        secretId=DEMO_SECRET_ID,
        secretKey=DEMO_SECRET_KEY,
        action=action,
        params=params,
    )


def ok(driver: LineDriver, running: Any, action: str, **params: Any) -> dict[str, Any]:
    reply = call(driver, running, action, **params)
    assert "ok" in reply, reply
    return dict(reply["ok"])


def test_full_loop_through_call_json(
    python_latest_driver: LineDriver, emulator: Any, receiver: Receiver
) -> None:
    driver = python_latest_driver
    callback = receiver.url.removesuffix("/callback") + "/py"
    ok(driver, emulator, "SetOfflineRecordCallback", SdkAppId=APP, Callback=callback)
    created = ok(driver, emulator, "CreateOfflineRecord", SdkAppId=APP, RoomId=8000)
    task_id = created["TaskId"]
    emulator.api("POST", "/api/clock/advance", json={"seconds": DAY}).raise_for_status()
    assert [r.json["EventData"]["TaskId"] for r in receiver.received if r.path == "/py"][-1] == (
        task_id
    )
    done = ok(driver, emulator, "DescribeOfflineRecord", SdkAppId=APP, TaskId=task_id)
    assert (done["Status"], done["Progress"]) == ("finished", 100)


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"SdkAppId": APP, "TaskId": "00e1jv8ve0jcqk7da9lb"}, "InvalidParameter.TaskNotFound"),
        ({"SdkAppId": str(APP), "TaskId": "x"}, "InvalidParameter.BodyParameterTypeUnmatched"),
    ],
)
def test_errors_raise_with_their_codes(
    python_latest_driver: LineDriver, emulator: Any, params: dict[str, Any], code: str
) -> None:
    reply = call(python_latest_driver, emulator, "DescribeOfflineRecord", **params)
    assert reply["error"]["code"] == code and reply["error"]["requestId"]
