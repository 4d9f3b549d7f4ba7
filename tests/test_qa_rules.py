"""Rules: a room, group or SdkAppId matched to a scenario decides what tasks without one do."""

from __future__ import annotations

from typing import Any

import pytest

from emulator.receiver import Receiver


def add_rule(emulator: Any, match: dict[str, Any], scenario: str) -> dict[str, Any]:
    r = emulator.api("POST", "/api/rules", json={"match": match, "scenario": scenario})
    assert r.status_code == 201, r.text
    return dict(r.json())


def outcome_on_wire(emulator: Any, receiver: Receiver, **task: Any) -> tuple[str, Any]:
    """Create a task (no scenario unless given), run it; (scenario, Error or None) it produced."""
    receiver.clear()
    r = emulator.api("POST", "/api/tasks", json=task)
    assert r.status_code == 201, r.text
    emulator.api("POST", "/api/clock/advance", json={"seconds": 30 * 86400}).raise_for_status()
    (finished,) = receiver.events("OfflineRecordFinished")
    return r.json()["scenario"], finished["EventData"].get("Error")


def test_room_rule_makes_that_rooms_tasks_fail(emulator: Any, receiver: Receiver) -> None:
    add_rule(emulator, {"room_id": 1253}, "transcode-failure")
    scenario, error = outcome_on_wire(emulator, receiver, room_id=1253)
    assert scenario == "transcode-failure" and error["Code"] == "FailedOperation.Transcode"
    scenario, error = outcome_on_wire(emulator, receiver, room_id=1254)
    assert scenario == "success" and error is None


def test_group_rule(emulator: Any, receiver: Receiver) -> None:
    add_rule(emulator, {"group_id": "class-7"}, "record-failure")
    _, error = outcome_on_wire(emulator, receiver, room_id=7, group_id="class-7")
    assert error["Code"] == "FailedOperation.Record"
    _, error = outcome_on_wire(emulator, receiver, room_id=7)  # group "7"
    assert error is None


def test_sdk_app_id_rule(emulator: Any, receiver: Receiver) -> None:
    add_rule(emulator, {"sdk_app_id": 1400000002}, "transcode-failure-bare")
    _, error = outcome_on_wire(emulator, receiver, sdk_app_id=1400000002)
    assert receiver.events()[-1]["EventData"] == {"Error": error}
    assert receiver.events()[-1]["SdkAppId"] == 1400000002
    _, error = outcome_on_wire(emulator, receiver, sdk_app_id=1400000001)
    assert error is None


def test_every_match_key_must_hold_and_first_rule_wins(emulator: Any, receiver: Receiver) -> None:
    add_rule(emulator, {"room_id": 5, "sdk_app_id": 1400000009}, "record-failure")
    add_rule(emulator, {"room_id": 5}, "transcode-failure")
    add_rule(emulator, {"room_id": 5}, "success")
    assert outcome_on_wire(emulator, receiver, room_id=5)[0] == "transcode-failure"
    scenario, _ = outcome_on_wire(emulator, receiver, room_id=5, sdk_app_id=1400000009)
    assert scenario == "record-failure"


def test_an_explicit_scenario_beats_the_rules(emulator: Any, receiver: Receiver) -> None:
    add_rule(emulator, {"room_id": 11}, "transcode-failure")
    assert outcome_on_wire(emulator, receiver, room_id=11, scenario="success") == ("success", None)


def test_rules_listed_and_deleted(emulator: Any, receiver: Receiver) -> None:
    rule = add_rule(emulator, {"room_id": 12}, "record-failure")
    assert emulator.api("GET", "/api/rules").json()["rules"] == [rule]
    assert emulator.api("DELETE", f"/api/rules/{rule['id']}").status_code == 204
    assert emulator.api("GET", "/api/rules").json()["rules"] == []
    assert outcome_on_wire(emulator, receiver, room_id=12) == ("success", None)
    assert emulator.api("DELETE", f"/api/rules/{rule['id']}").status_code == 404


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"match": {"colour": "red"}, "scenario": "success"}, 400, "match.colour"),
        ({"match": {"room_id": "12"}, "scenario": "success"}, 400, "match.room_id"),
        ({"match": {"group_id": 12}, "scenario": "success"}, 400, "match.group_id"),
        ({"match": {}, "scenario": "success"}, 400, "match"),
        ({"match": {"room_id": 1}, "scenario": "nope"}, 404, None),
    ],
)
def test_bad_rules_are_refused(emulator: Any, body: Any, status: int, field: str | None) -> None:
    r = emulator.api("POST", "/api/rules", json=body)
    assert r.status_code == status, r.text
    if field:
        assert r.json()["error"]["details"]["field"] == field
    assert emulator.api("GET", "/api/rules").json()["rules"] == []


def test_rules_are_read_once_and_reread_after_every_change(
    emulator: Any, receiver: Receiver
) -> None:
    """The core keeps the rules between creations; adding, deleting and reset drop them."""
    assert outcome_on_wire(emulator, receiver, room_id=21)[0] == "success"  # no rules, kept
    rule = add_rule(emulator, {"room_id": 21}, "record-failure")
    assert outcome_on_wire(emulator, receiver, room_id=21)[0] == "record-failure"
    emulator.api("DELETE", f"/api/rules/{rule['id']}").raise_for_status()
    assert outcome_on_wire(emulator, receiver, room_id=21)[0] == "success"
    add_rule(emulator, {"room_id": 21}, "record-failure")
    assert outcome_on_wire(emulator, receiver, room_id=21)[0] == "record-failure"
    emulator.api("POST", "/api/reset").raise_for_status()
    emulator.api("PATCH", "/api/config", json={"callback_url": receiver.url}).raise_for_status()
    assert outcome_on_wire(emulator, receiver, room_id=21)[0] == "success"


def test_rules_read_while_they_change_are_not_kept(tmp_path: Any) -> None:
    from emulator.core.config import Settings
    from emulator.core.service import Emulator

    emu = Emulator(Settings.load({"db": str(tmp_path / "rules.db"), "clock": "manual"}))
    try:
        reads = []
        read = emu.list_rules

        def list_rules_racing_a_change() -> Any:
            rules = read()
            reads.append(rules)
            if len(reads) == 1:
                emu.add_rule({"room_id": 7}, "record-failure")  # lands during the first read
            return rules

        emu.list_rules = list_rules_racing_a_change  # type: ignore[method-assign]
        assert emu._rules() == []  # what was read, but not kept: it changed meanwhile
        assert [r["scenario"] for r in emu._rules()] == ["record-failure"]
        assert len(reads) == 2
        emu._rules()
        assert len(reads) == 2  # kept now
    finally:
        emu.close()
