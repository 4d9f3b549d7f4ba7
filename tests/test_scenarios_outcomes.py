"""Error outcomes and per-task params: each catalogued error reaches the backend; params checked."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from emulator.core import outcomes
from emulator.receiver import Receiver

ERRORS_DOC = Path(__file__).resolve().parent.parent / "docs" / "errors.md"
FINISHED = "OfflineRecordFinished"


def run(emulator: Any, **body: Any) -> dict[str, Any]:
    r = emulator.api("POST", "/api/tasks", json=body)
    assert r.status_code == 201, r.text
    emulator.api("POST", "/api/clock/advance", json={"seconds": 30 * 86400}).raise_for_status()
    return dict(emulator.api("GET", f"/api/tasks/{r.json()['task_id']}").json())


def finished(receiver: Receiver) -> dict[str, Any]:
    (body,) = receiver.events(FINISHED)
    return dict(body["EventData"])


@pytest.mark.parametrize("entry", outcomes.ERRORS, ids=lambda e: e.key)
def test_every_error_outcome_as_a_task_param(
    emulator: Any, receiver: Receiver, entry: outcomes.ErrorOutcome
) -> None:
    task = run(emulator, scenario="success", params={"error_code": entry.key}, seed=5)
    error = finished(receiver)["Error"]
    assert error == {"Code": entry.code, "Message": entry.message}
    assert task["outcome"] == "failure" and task["error"] == error


@pytest.mark.parametrize("entry", outcomes.ERRORS, ids=lambda e: e.key)
def test_every_error_outcome_in_a_scenario(
    emulator: Any, receiver: Receiver, entry: outcomes.ErrorOutcome
) -> None:
    # YAML users write legacy numbers unquoted; both spellings are accepted.
    code: Any = int(entry.key) if entry.key in outcomes.LEGACY_KEYS else entry.key
    doc = {"name": "my-failure", "description": "x", "outcome": {"error_code": code}}
    r = emulator.api("POST", "/api/scenarios", json=doc)
    assert r.status_code == 201, r.text
    run(emulator, scenario="my-failure")
    assert finished(receiver)["Error"] == {"Code": entry.code, "Message": entry.message}


def test_param_error_code_replaces_the_scenario_message(emulator: Any, receiver: Receiver) -> None:
    run(emulator, scenario="transcode-failure", params={"error_code": "FailedOperation.Record"})
    assert finished(receiver)["Error"] == {
        "Code": "FailedOperation.Record",
        "Message": outcomes.resolve("FailedOperation.Record")[1],
    }


def test_param_error_code_and_message(emulator: Any, receiver: Receiver) -> None:
    run(emulator, params={"error_code": "FailedOperation.Transcode", "error_message": "自定义"})
    assert finished(receiver)["Error"] == {"Code": "FailedOperation.Transcode", "Message": "自定义"}


def test_unknown_but_well_formed_code_is_sent_with_a_generic_message(
    emulator: Any, receiver: Receiver
) -> None:
    run(emulator, params={"error_code": "FailedOperation.Whatever"})
    assert finished(receiver)["Error"] == {
        "Code": "FailedOperation.Whatever",
        "Message": outcomes.GENERIC_MESSAGE,
    }


def test_params_shape_the_class_and_progress(emulator: Any, receiver: Receiver) -> None:
    params = {"duration_s": 600, "participants": 3, "progress_steps": 9, "queue_delay_s": 0}
    task = run(emulator, params=params, seed=11)
    assert len(receiver.events("OfflineRecordProgressChanged")) == 9
    data = finished(receiver)
    assert sorted(v["VideoType"] for v in data["VideoInfos"]) == [0, 0, 0, 2]
    assert 0.9 * 600_000 <= data["TotalTime"] <= 600_000
    assert task["params"] == params


def test_params_turn_on_quirks(emulator: Any, receiver: Receiver) -> None:
    run(emulator, params={"progress_as_string": True, "sign": "none"}, seed=2)
    for body in receiver.events("OfflineRecordProgressChanged"):
        assert isinstance(body["EventData"]["Progress"], str)
        assert "Sign" not in body and "ExpireTime" not in body


@pytest.mark.parametrize(
    ("params", "field", "reason"),
    [
        ({"colour": "red"}, "params.colour", "unknown parameter"),
        ({"duration_s": "long"}, "params.duration_s", "[min, max]"),
        ({"duration_s": [600, 60]}, "params.duration_s", "min > max"),
        ({"participants": 0}, "params.participants", "integer >= 1"),
        ({"progress_steps": 2.5}, "params.progress_steps", "integer"),
        ({"camera": "yes"}, "params.camera", "boolean"),
        ({"error_code": "not a code"}, "params.error_code", "not an error code"),
        ({"error_code": 1999}, "params.error_code", "legacy task error"),
        ({"sign": "maybe"}, "params.sign", "is not one of"),
        ({"duplicate": 2}, "params.duplicate", "maximum"),
        ({"stall_at": 0}, "params.stall_at", "minimum"),
    ],
)
def test_bad_params_are_refused_by_name(
    emulator: Any, receiver: Receiver, params: dict[str, Any], field: str, reason: str
) -> None:
    r = emulator.api("POST", "/api/tasks", json={"params": params})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "scenario_invalid"
    assert error["details"]["field"] == field
    assert error["message"].startswith(field + ":") and reason in error["message"]
    assert emulator.api("GET", "/api/tasks").json()["tasks"] == []  # nothing half-created


def doc_table() -> list[tuple[str, str, str]]:
    rows = []
    for line in ERRORS_DOC.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) >= 3:
            rows.append(tuple(re.sub(r"^`|`$", "", c) for c in cells[:3]))
    return rows  # type: ignore[return-value]


def test_errors_doc_lists_the_catalogue() -> None:
    assert doc_table() == [(e.key, e.code, e.message) for e in outcomes.ERRORS]
