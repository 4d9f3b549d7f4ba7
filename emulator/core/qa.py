"""QA controls of the core: rules, user scenarios, ad-hoc events, redelivery, the cloud-call log.

A mixin of `Emulator`: these are methods of the core, using its store, clock, engine and
catalogue through the same attributes the rest of the core uses.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from emulator.core import payloads
from emulator.core.config import validate_callback_url
from emulator.core.errors import InvalidInput, InvalidState, NotFound, UnknownField
from emulator.core.scenarios import Scenario, parse_scenario
from emulator.core.signing import SignMode
from emulator.delivery.scheduler import Outgoing
from emulator.store.base import NewEvent, Row
from emulator.store.writes import Discarded

if TYPE_CHECKING:
    from emulator.core.clock import EmulatedClock
    from emulator.core.config import RuntimeConfig
    from emulator.core.scenarios import Catalogue
    from emulator.delivery.engine import Engine
    from emulator.store.base import Store

RULE_MATCH_KEYS = ("room_id", "group_id", "sdk_app_id")
RESET_DURING_SEND = "the emulator was reset while this callback was being sent"


class QAControls:
    store: Store
    clock: EmulatedClock
    engine: Engine
    catalogue: Catalogue
    config: Callable[[], RuntimeConfig]
    _storage: Callable[[Callable[[], Any]], Any]
    _rules_changed: Callable[[], None]

    # -- rules -------------------------------------------------------------------------------
    def list_rules(self) -> list[Row]:
        return self._storage(self.store.list_rules)

    def add_rule(self, match: Any, scenario: Any) -> dict[str, Any]:
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
        self.catalogue.get(scenario)  # raises scenario_not_found with the known names
        rule_id = self._storage(lambda: self.store.add_rule(match, scenario, self.clock.wall()))
        self._rules_changed()
        return {"id": rule_id, "match": dict(match), "scenario": scenario}

    def delete_rule(self, rule_id: int) -> None:
        deleted = self._storage(lambda: self.store.delete_rule(rule_id))
        self._rules_changed()
        if not deleted:
            raise NotFound(f"no rule with id {rule_id}", details={"rule_id": rule_id})

    # -- user scenarios ------------------------------------------------------------------------
    def add_scenario(self, doc: Any) -> Scenario:
        scenario = parse_scenario(doc, source="api", where="body")
        text = json.dumps(dict(doc), ensure_ascii=False)
        self._storage(lambda: self.store.save_scenario(scenario.name, text))
        self.catalogue.add(scenario)
        return scenario

    def delete_scenario(self, name: str) -> None:
        self.catalogue.remove(name)
        self._storage(lambda: self.store.delete_scenario(name))

    # -- ad-hoc events and redelivery ------------------------------------------------------------
    def send_event(
        self,
        *,
        event_type: Any,
        event_data: Any,
        callback_url: Any = None,
        sign: Any = "valid",
        sdk_app_id: Any = None,
    ) -> Row:
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
            sdk_app_id = self.config().sdk_app_id
        elif isinstance(sdk_app_id, bool) or not isinstance(sdk_app_id, int):
            raise InvalidInput("sdk_app_id", "must be an integer")
        url = validate_callback_url(callback_url)
        now = self.clock.now()
        record = NewEvent(
            seq=0,
            event_type=event_type,
            due_at=now,
            state="delivering",
            event_data=payloads.encode_data(dict(event_data)),
            sign_mode=str(mode),
            note="ad-hoc",
            sdk_app_id=sdk_app_id,
            callback_url=url,
        )
        event = Outgoing.of(record)  # id 0: the store assigns it, with the attempt, in one commit
        return self._send_now(event, None, record)

    def redeliver(self, delivery_id: int) -> Row:
        """Send a recorded delivery's payload again, with a fresh Timestamp and signature."""
        row = self._storage(lambda: self.store.get_delivery(delivery_id))
        if row is None:
            raise NotFound(
                f"no delivery with id {delivery_id}", details={"delivery_id": delivery_id}
            )
        body = json.loads(row["request_body"])
        event_row = (
            self._storage(lambda: self.store.get_event(row["event_id"]))
            if row["event_id"] is not None
            else None
        )
        event = Outgoing(
            id=row["event_id"] or 0,
            task_id=row["task_id"],
            seq=event_row["seq"] if event_row else 0,
            event_type=body["EventType"],
            due_at=self.clock.now(),
            data_json=payloads.encode_data(body["EventData"]),
            sign_mode=SignMode(event_row["sign_mode"]) if event_row else SignMode.VALID,
            sdk_app_id=body["SdkAppId"],
            callback_url=row["url"],
            attempts=int(row["attempt"]),
        )
        return self._send_now(event, delivery_id)

    def _send_now(
        self, event: Outgoing, redelivery_of: int | None, adhoc: NewEvent | None = None
    ) -> Row:
        """One attempt now; returns it as stored (committed before the reply, with its id)."""
        sent = self.engine.send_now(event, redelivery_of=redelivery_of, adhoc=adhoc)
        if sent is None:
            raise InvalidState(RESET_DURING_SEND)
        _, stored = sent
        assert stored is not None  # send_now waits for its row
        self._storage(lambda: self.store.flush(until=stored))
        try:
            return stored.result(timeout=10)
        except Discarded:
            raise InvalidState(RESET_DURING_SEND) from None

    # -- the cloud-call log ----------------------------------------------------------------------
    def log_cloud_call(self, record: Mapping[str, Any]) -> None:
        """Log one cloud API call (records hold no secrets: the SecretId is stored masked)."""
        text = json.dumps(record, ensure_ascii=False, default=str)
        at = float(record.get("at", self.clock.wall()))
        task_id = record.get("task_id")
        self._storage(
            lambda: self.store.log_cloud_call(at, str(record.get("action", "")), task_id, text)
        )

    def cloud_calls(
        self,
        *,
        action: str | None = None,
        task_id: str | None = None,
        limit: int = 100,
        before: int | None = None,
    ) -> tuple[list[Row], int | None]:
        """Logged cloud API calls: the newest `limit` (oldest first) and the next cursor."""
        return self._storage(
            lambda: self.store.list_cloud_calls(
                action=action, task_id=task_id, limit=limit, before=before
            )
        )
