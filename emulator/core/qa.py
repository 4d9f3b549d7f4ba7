"""QA controls in the core: rules, user scenarios, ad-hoc events and redelivery."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from emulator.core import payloads
from emulator.core.config import validate_callback_url
from emulator.core.errors import InvalidInput, NotFound, UnknownField
from emulator.core.scenarios import Scenario, parse_scenario
from emulator.core.service import Emulator
from emulator.core.signing import SignMode
from emulator.delivery.engine import Outgoing

RULE_MATCH_KEYS = ("room_id", "group_id", "sdk_app_id")


def add_rule(emu: Emulator, match: Any, scenario: Any) -> dict[str, Any]:
    if not isinstance(match, Mapping) or not match:
        raise InvalidInput("match", f"must be an object with at least one of {RULE_MATCH_KEYS}")
    for key, value in match.items():
        if key not in RULE_MATCH_KEYS:
            raise UnknownField(f"match.{key}", list(RULE_MATCH_KEYS))
        wants_str = key == "group_id"
        if (wants_str and not isinstance(value, str)) or (
            not wants_str and (isinstance(value, bool) or not isinstance(value, int))
        ):
            raise InvalidInput(
                f"match.{key}", "must be a string" if wants_str else "must be an integer"
            )
    if not isinstance(scenario, str):
        raise InvalidInput("scenario", "must be a scenario name")
    emu.catalogue.get(scenario)  # raises scenario_not_found with the known names
    rule_id = emu.store.execute(
        "INSERT INTO rules (match, scenario, created_at) VALUES (?, ?, ?)",
        (json.dumps(dict(match)), scenario, emu.clock.wall()),
    )
    return {"id": rule_id, "match": dict(match), "scenario": scenario}


def delete_rule(emu: Emulator, rule_id: int) -> None:
    if emu.store.query_one("SELECT 1 FROM rules WHERE id = ?", (rule_id,)) is None:
        raise NotFound(f"no rule with id {rule_id}", details={"rule_id": rule_id})
    emu.store.execute("DELETE FROM rules WHERE id = ?", (rule_id,))


def add_scenario(emu: Emulator, doc: Any) -> Scenario:
    scenario = parse_scenario(doc, source="api", where="body")
    emu.store.execute(
        "INSERT OR REPLACE INTO scenarios (name, doc) VALUES (?, ?)",
        (scenario.name, json.dumps(dict(doc), ensure_ascii=False)),
    )
    emu.catalogue.add(scenario)
    return scenario


def delete_scenario(emu: Emulator, name: str) -> None:
    emu.catalogue.remove(name)
    emu.store.execute("DELETE FROM scenarios WHERE name = ?", (name,))


def send_event(
    emu: Emulator,
    *,
    event_type: Any,
    event_data: Any,
    callback_url: Any = None,
    sign: Any = "valid",
    sdk_app_id: Any = None,
) -> dict[str, Any]:
    """Post a hand-written event at once (one attempt) and return the recorded delivery."""
    if not isinstance(event_type, str) or not event_type:
        raise InvalidInput(
            "event_type", f"must be a string, e.g. {' or '.join(payloads.EVENT_TYPES)}"
        )
    if not isinstance(event_data, Mapping):
        raise InvalidInput("event_data", "must be a JSON object")
    try:
        mode = SignMode(sign)
    except ValueError:
        raise InvalidInput("sign", f"must be one of {[m.value for m in SignMode]}") from None
    if sdk_app_id is None:
        sdk_app_id = emu.config().sdk_app_id
    elif isinstance(sdk_app_id, bool) or not isinstance(sdk_app_id, int):
        raise InvalidInput("sdk_app_id", "must be an integer")
    url = validate_callback_url(callback_url)
    data_json = payloads.encode_data(dict(event_data))
    event_id = emu.store.execute(
        "INSERT INTO events (task_id, seq, event_type, due_at, state, event_data, sign_mode, note,"
        " sdk_app_id, callback_url) VALUES (NULL, 0, ?, ?, 'delivering', ?, ?, 'ad-hoc', ?, ?)",
        (event_type, emu.clock.now(), data_json, str(mode), sdk_app_id, url),
    )
    event = Outgoing(
        id=event_id,
        task_id=None,
        seq=0,
        event_type=event_type,
        due_at=emu.clock.now(),
        data_json=data_json,
        sign_mode=mode,
        sdk_app_id=sdk_app_id,
        callback_url=url,
    )
    delivery = emu.engine.send_now(event)
    emu.store.execute(
        "UPDATE events SET state = ?, attempts = 1, payload = ? WHERE id = ?",
        ("delivered" if delivery["ok"] else "failed", delivery["request_body"], event_id),
    )
    return delivery


def redeliver(emu: Emulator, delivery_id: int) -> dict[str, Any]:
    """Send a recorded delivery's payload again, with a fresh Timestamp and signature."""
    row = emu.store.query_one("SELECT * FROM deliveries WHERE id = ?", (delivery_id,))
    if row is None:
        raise NotFound(f"no delivery with id {delivery_id}", details={"delivery_id": delivery_id})
    body = json.loads(row["request_body"])
    event_row = emu.store.query_one("SELECT * FROM events WHERE id = ?", (row["event_id"],))
    mode = SignMode(event_row["sign_mode"]) if event_row else SignMode.VALID
    event = Outgoing(
        id=row["event_id"] or 0,
        task_id=row["task_id"],
        seq=event_row["seq"] if event_row else 0,
        event_type=body["EventType"],
        due_at=emu.clock.now(),
        data_json=payloads.encode_data(body["EventData"]),
        sign_mode=mode,
        sdk_app_id=body["SdkAppId"],
        callback_url=row["url"],
    )
    event.attempts = int(row["attempt"])
    return emu.engine.send_now(event, redelivery_of=delivery_id)
