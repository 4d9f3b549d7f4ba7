"""User scenarios: the published schema, --scenarios DIR, POST/DELETE /api/scenarios, restarts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from emulator import cli
from emulator.core.errors import ScenarioInvalid
from emulator.core.scenarios import BUILTIN_DIR, SCHEMA
from emulator.receiver import Receiver
from emulator.web.app import create_app, get_emulator

KEY = "Xz4ZgayTr7rMgWQrH"
MY_SCENARIO = {
    "name": "my-record-failure",
    "description": "Fails with FailedOperation.Record right away.",
    "class": {"duration_s": 600, "participants": 2},
    "processing": {"queue_delay_s": 1, "progress_steps": 2},
    "outcome": {"result": "failure", "error_code": "FailedOperation.Record", "fail_at": 0},
}


def finish(running: Any, scenario: str) -> dict[str, Any]:
    r = running.api("POST", "/api/tasks", json={"scenario": scenario})
    assert r.status_code == 201, r.text
    running.api("POST", "/api/clock/advance", json={"seconds": 86400}).raise_for_status()
    return dict(r.json())


def test_schema_is_served_and_is_what_validates_the_builtins(emulator: Any) -> None:
    served = emulator.api("GET", "/api/scenarios/schema").json()
    assert served == json.loads(json.dumps(SCHEMA))
    validator = jsonschema.Draft202012Validator(served)
    for path in BUILTIN_DIR.glob("*.yaml"):
        assert not list(validator.iter_errors(yaml.safe_load(path.read_text()))), path
    assert list(validator.iter_errors({"name": "x", "delivery": {"sign": "sometimes"}}))


def test_scenarios_dir_adds_scenarios(
    make_emulator: Any, receiver: Receiver, tmp_path: Path
) -> None:
    (tmp_path / "my-record-failure.yaml").write_text(
        yaml.safe_dump(MY_SCENARIO, allow_unicode=True)
    )
    running = make_emulator(scenarios_dir=str(tmp_path), callback_url=receiver.url)
    listed = running.api("GET", "/api/scenarios/my-record-failure").json()
    assert listed["source"].endswith("my-record-failure.yaml")
    assert listed["description"] == MY_SCENARIO["description"]
    refused = running.api("DELETE", "/api/scenarios/my-record-failure")
    assert refused.status_code == 409 and "loaded from" in refused.json()["error"]["message"]
    assert running.api("GET", "/api/scenarios/success").json()["source"] == "builtin"
    finish(running, "my-record-failure")
    (body,) = receiver.events()  # fail_at 0: no progress at all, just the failure
    assert body["EventData"]["Error"]["Code"] == "FailedOperation.Record"


@pytest.mark.parametrize(
    ("content", "field", "reason"),
    [
        ({**MY_SCENARIO, "class": {"participants": -1}}, "class.participants", "integer >= 1"),
        ({**MY_SCENARIO, "colour": "red"}, "(top level)", "colour"),
        ({**MY_SCENARIO, "delivery": {"duplicate": 3}}, "delivery.duplicate", "maximum"),
        ({**MY_SCENARIO, "name": "other-name"}, "name", "must match the file name"),
    ],
)
def test_invalid_scenario_file_is_refused_naming_file_field_reason(
    make_emulator: Any, tmp_path: Path, content: Any, field: str, reason: str
) -> None:
    path = tmp_path / "my-record-failure.yaml"
    path.write_text(yaml.safe_dump(content))
    with pytest.raises(ScenarioInvalid) as caught:
        make_emulator(scenarios_dir=str(tmp_path))
    message = caught.value.message
    assert message.startswith(f"{path}: {field}: ") and reason in message


def test_serve_with_a_bad_scenarios_dir_exits_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "broken.yaml").write_text("name: broken\nclass: [unclosed\n")
    code = cli.main(["serve", "--db", ":memory:", "--port", "0", "--scenarios", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "broken.yaml: not valid YAML" in err and "Traceback" not in err


def test_post_scenario_then_use_then_delete(emulator: Any, receiver: Receiver) -> None:
    r = emulator.api("POST", "/api/scenarios", json=MY_SCENARIO)
    assert r.status_code == 201, r.text
    assert r.json()["source"] == "api"
    assert "my-record-failure" in [
        s["name"] for s in emulator.api("GET", "/api/scenarios").json()["scenarios"]
    ]
    finish(emulator, "my-record-failure")
    assert receiver.events()[-1]["EventData"]["Error"]["Code"] == "FailedOperation.Record"

    assert emulator.api("DELETE", "/api/scenarios/my-record-failure").status_code == 204
    assert emulator.api("GET", "/api/scenarios/my-record-failure").status_code == 404
    r = emulator.api("POST", "/api/tasks", json={"scenario": "my-record-failure"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "scenario_not_found"


def test_builtins_cannot_be_deleted_and_unknown_is_404(emulator: Any) -> None:
    r = emulator.api("DELETE", "/api/scenarios/success")
    assert r.status_code == 409 and "built-in" in r.json()["error"]["message"]
    assert emulator.api("GET", "/api/scenarios/success").status_code == 200
    assert emulator.api("DELETE", "/api/scenarios/nope").status_code == 404


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"description": "no name"}, "(top level)"),
        ({"name": "Bad Name"}, "name"),
        ({"name": "x", "class": {"duration_s": [60, 10]}}, "class.duration_s"),
        ({"name": "x", "outcome": {"error_code": "lower.case"}}, "outcome.error_code"),
        ({"name": "x", "processing": {"stall_at": 100}}, "processing.stall_at"),
        ({"name": "x", "class": {"camera": False, "whiteboard": False}}, "class"),
    ],
)
def test_post_invalid_scenario_names_the_field(emulator: Any, doc: Any, field: str) -> None:
    r = emulator.api("POST", "/api/scenarios", json=doc)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "scenario_invalid" and error["details"]["field"] == field
    assert error["message"].startswith(f"body: {field}: ")
    names = [s["name"] for s in emulator.api("GET", "/api/scenarios").json()["scenarios"]]
    assert "x" not in names


def test_posted_scenario_survives_a_restart(
    make_emulator: Any, receiver: Receiver, tmp_path: Path
) -> None:
    db = str(tmp_path / "tiw.db")
    first = create_app({"db": db, "clock": "manual"})
    with first.test_client() as client:
        assert client.post("/api/scenarios", json=MY_SCENARIO).status_code == 201
        assert (
            client.post("/api/scenarios", json={**MY_SCENARIO, "name": "gone"}).status_code == 201
        )
        assert client.delete("/api/scenarios/gone").status_code == 204
    get_emulator(first).close()

    again = make_emulator(db=db, callback_url=receiver.url, callback_key=KEY)
    r = again.api("GET", "/api/scenarios/my-record-failure")
    assert r.status_code == 200 and r.json()["source"] == "api"
    assert again.api("GET", "/api/scenarios/gone").status_code == 404
    finish(again, "my-record-failure")
    assert receiver.events()[-1]["EventData"]["Error"]["Code"] == "FailedOperation.Record"
