"""The Python client against a real emulator over loopback: every control route, typed replies."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emulator.client import (
    ClockInfo,
    Delivery,
    EmulatorAPIError,
    EmulatorClient,
    Event,
    Rule,
    ScenarioInfo,
    Task,
)
from emulator.core import models
from emulator.receiver import Receiver, Reply

KEY = "Xz4ZgayTr7rMgWQrH"


@pytest.fixture
def client(emulator: Any) -> Iterator[EmulatorClient]:
    with EmulatorClient(emulator.url) as c:
        yield c


def test_health_and_config(client: EmulatorClient, receiver: Receiver) -> None:
    assert client.healthz() == {"status": "ok"}
    config = client.get_config()
    assert config.callback_url == receiver.url and config.clock == "manual"
    assert config.callback_key != KEY and config.raw["callback_key"] == config.callback_key
    patched = client.update_config(speed=600, sign_ttl_s=60)
    assert patched.speed == 600.0 and patched.sign_ttl_s == 60
    assert client.get_config().speed == 600.0


def test_task_lifecycle(client: EmulatorClient, receiver: Receiver) -> None:
    task = client.create_task("success", room_id=4242, seed=7, params={"progress_steps": 2})
    assert isinstance(task, Task) and task.status == "queued" and task.room_id == 4242
    assert task.group_id == "4242" and task.params == {"progress_steps": 2}
    assert task.events and all(isinstance(e, Event) for e in task.events)
    assert task.raw["task_id"] == task.task_id

    info = client.advance(24 * 3600)
    assert isinstance(info, ClockInfo) and info.fired == len(task.events)
    done = client.get_task(task.task_id)
    assert done.status == "finished" and done.outcome == "success" and done.progress == 100
    assert done.result is not None and done.result["VideoInfos"]
    assert [e.state for e in client.task_events(task.task_id)] == ["delivered"] * len(task.events)

    listed = client.list_tasks(room_id=4242)
    assert [t.task_id for t in listed] == [task.task_id]
    assert client.list_tasks(status="queued") == []

    deliveries = client.deliveries(task_id=task.task_id)
    assert len(deliveries) == len(task.events) and all(isinstance(d, Delivery) for d in deliveries)
    assert deliveries[-1].ok and deliveries[-1].status_code == 200
    assert deliveries[-1].body["EventType"] == "OfflineRecordFinished"
    assert len(receiver.received) == len(task.events)


def test_cancel_and_errors_carry_the_server_message(client: EmulatorClient) -> None:
    task = client.create_task(room_id=77)
    with pytest.raises(EmulatorAPIError) as busy:
        client.create_task(room_id=77)
    assert busy.value.status == 409 and busy.value.code == "room_busy"
    assert busy.value.details["task_id"] == task.task_id
    assert "already has an unfinished task" in str(busy.value)

    cancelled = client.cancel_task(task.task_id)
    assert cancelled.status == "cancelled"
    with pytest.raises(EmulatorAPIError) as again:
        client.cancel_task(task.task_id)
    assert again.value.code == "invalid_state"

    with pytest.raises(EmulatorAPIError) as missing:
        client.get_task("nosuchtask")
    assert missing.value.status == 404 and missing.value.code == "task_not_found"

    with pytest.raises(EmulatorAPIError) as bad:
        client.create_task(params={"no_such_param": 1})
    assert bad.value.code == "scenario_invalid" and "no_such_param" in bad.value.message


def test_send_event_and_redeliver(client: EmulatorClient, receiver: Receiver) -> None:
    data = {"TaskId": "t" * 20, "RoomId": 1, "Progress": 12}
    sent = client.send_event("OfflineRecordProgressChanged", data, sign="invalid")
    assert sent.ok and sent.body["EventData"] == data
    again = client.redeliver(sent.id)
    assert again.redelivery_of == sent.id and again.body["EventData"] == data
    assert len(receiver.events("OfflineRecordProgressChanged")) == 2

    receiver.respond = lambda r: Reply(status=500)
    failed = client.send_event("OfflineRecordProgressChanged", data)
    assert not failed.ok and failed.status_code == 500


def test_clock(client: EmulatorClient) -> None:
    before = client.clock()
    assert before.mode == "manual" and before.pending_events == 0
    after = client.advance(90)
    assert after.now == pytest.approx(before.now + 90, abs=0.01) and after.fired == 0


def test_scenarios_and_rules(client: EmulatorClient) -> None:
    names = [s.name for s in client.scenarios()]
    assert "success" in names and "transcode-failure" in names
    one = client.get_scenario("transcode-failure")
    assert isinstance(one, ScenarioInfo) and one.raw["outcome"]["result"] == "failure"
    assert "properties" in client.scenario_schema()

    added = client.add_scenario({"name": "my-fail", "outcome": {"result": "failure"}})
    assert added.name == "my-fail" and added.source == "api"
    rule = client.add_rule({"room_id": 5}, "my-fail")
    assert isinstance(rule, Rule) and client.rules() == [rule]
    assert client.create_task(room_id=5).scenario == "my-fail"
    client.delete_rule(rule.id)
    assert client.rules() == []
    client.delete_scenario("my-fail")
    with pytest.raises(EmulatorAPIError) as gone:
        client.get_scenario("my-fail")
    assert gone.value.code == "scenario_not_found"

    with pytest.raises(EmulatorAPIError) as invalid:
        client.add_rule({"colour": "red"}, "success")
    assert invalid.value.code == "unknown_field"


def test_reset(client: EmulatorClient) -> None:
    client.create_task()
    client.reset()
    assert client.list_tasks() == [] and client.deliveries() == []


def test_token_is_sent(make_emulator: Any) -> None:
    running = make_emulator(token="s3cret")
    with pytest.raises(EmulatorAPIError) as denied:
        EmulatorClient(running.url).get_config()
    assert denied.value.status == 401 and denied.value.code == "unauthorized"
    assert EmulatorClient(running.url, token="s3cret").get_config().clock == "manual"


def test_non_json_error_is_still_an_api_error(client: EmulatorClient) -> None:
    with pytest.raises(EmulatorAPIError) as err:
        client.request("GET", "/no/such/route")
    assert err.value.status == 404 and err.value.code


def test_replies_are_the_servers_models(client: EmulatorClient, emulator: Any) -> None:
    task = client.create_task(room_id=31, seed=3)
    assert isinstance(task, models.Task) and isinstance(task.events[0], models.Event)
    assert isinstance(task.deliveries, models.TaskDeliveries)
    assert isinstance(client.get_config(), models.Config)
    assert client.get_config().run_seed == emulator.emu.run_seed
    rule = client.add_rule({"room_id": 31}, "success")
    assert isinstance(rule, models.Rule) and rule.match == models.RuleMatch(room_id=31)
    assert client.last_warnings == []


def test_list_filters_and_pages(client: EmulatorClient, receiver: Receiver) -> None:
    made = [client.create_task(room_id=r, sdk_app_id=1400000000 + r % 2) for r in (1, 2, 3)]
    first = client.list_tasks(limit=2)
    assert [t.task_id for t in first] == [made[2].task_id, made[1].task_id] and first.next == 2
    rest = client.list_tasks(limit=2, offset=first.next)
    assert [t.task_id for t in rest] == [made[0].task_id] and rest.next is None
    assert [t.room_id for t in client.list_tasks(sdk_app_id=1400000000)] == [2]
    client.create_task("transcode-failure", room_id=9)
    client.advance(86400)
    assert [t.room_id for t in client.list_tasks(outcome="failure")] == [9]
    assert [t.room_id for t in client.list_tasks(error_code="FailedOperation.Transcode")] == [9]

    receiver.respond = lambda r: Reply(status=500)
    client.send_event("OfflineRecordProgressChanged", {"Progress": 1})
    failed = client.deliveries(ok=False)
    assert [d.status_code for d in failed] == [500] and failed.next is None
    newest = client.deliveries(limit=3)
    older = client.deliveries(limit=3, before=newest.next)
    assert older[-1].id < newest[0].id == newest.next
    assert client.deliveries(after=newest[0].id) == newest[1:]
    assert client.deliveries(status_code=500, event_type="OfflineRecordProgressChanged") == failed
    assert len(client.task_events(made[0].task_id, limit=1)) == 1

    with pytest.raises(EmulatorAPIError) as bad:
        client.list_tasks(limit=5000)
    assert bad.value.code == "invalid_field" and bad.value.details["field"] == "limit"


def test_cloud_calls(make_emulator: Any) -> None:
    running = make_emulator(verify_signature=False)
    headers = {"X-TC-Version": "2019-09-19", "X-TC-Action": "CreateOfflineRecord"}
    for room in (1, 2):
        body = {"SdkAppId": 1400000001, "RoomId": room}
        running.api("POST", "/", json=body, headers=headers).raise_for_status()
    with EmulatorClient(running.url) as c:
        calls = c.cloud_calls(action="CreateOfflineRecord", limit=1)
        assert len(calls) == 1 and isinstance(calls[0], models.CloudCall) and calls.next
        older = c.cloud_calls(before=calls.next)
        assert [x.params["RoomId"] for x in older] == [1] and older.next is None
        assert c.cloud_calls(task_id=calls[0].task_id) == calls


def test_create_task_reports_warnings(make_emulator: Any) -> None:
    running = make_emulator()  # no callback URL anywhere
    with EmulatorClient(running.url) as c:
        c.create_task()
        assert c.last_warnings and "no callback URL" in c.last_warnings[0]


def test_readme_client_example_runs(
    emulator: Any, receiver: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("<!-- section:control -->")[1].split("<!-- /section:control -->")[0]
    code = section.split("```python\n")[1].split("```")[0]
    receiver.respond = lambda r: Reply(status=500)
    with EmulatorClient(emulator.url) as c:
        for n in range(3):
            c.send_event("OfflineRecordProgressChanged", {"Progress": n})
    exec(compile(code.replace("http://127.0.0.1:8765", emulator.url), "README.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 3 and all(line.endswith(" None 500") for line in printed)
