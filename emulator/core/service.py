"""The emulator core: tasks, their timelines, configuration and the catalogue, behind one object.

Views (control API, cloud API, dashboard), the CLI and the pytest plugin all call this; none of
them holds business rules of its own.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from emulator.core import ids, payloads
from emulator.core.clock import EmulatedClock
from emulator.core.config import RuntimeConfig, Settings, validate_callback_url
from emulator.core.errors import InvalidInput, InvalidState, RoomBusy, TaskNotFound
from emulator.core.scenarios import BUILTIN_DIR, Catalogue, Scenario, load_dir, parse_scenario
from emulator.core.signing import SignMode
from emulator.core.timeline import Plan, plan_task
from emulator.delivery.engine import Engine, Outgoing
from emulator.store.sqlite import Row, Store

TASK_STATUSES = ("queued", "processing", "finished", "cancelled")
# A task row with how its callbacks fared, so a list shows a backend refusing them at a glance.
TASK_SELECT = (
    "SELECT t.*,"
    " (SELECT COUNT(*) FROM deliveries d WHERE d.task_id = t.task_id) AS attempts,"
    " (SELECT COUNT(*) FROM deliveries d WHERE d.task_id = t.task_id AND NOT d.ok)"
    " AS failed_attempts,"
    " (SELECT COUNT(*) FROM events e WHERE e.task_id = t.task_id AND e.state = 'failed')"
    " AS undelivered_events"
    " FROM tasks t"
)


class Emulator:
    """One emulator instance: its own store, clock, engine and catalogue (no globals)."""

    def __init__(self, settings: Settings, *, clock: EmulatedClock | None = None) -> None:
        self.settings = settings
        self.store = Store(settings.db)
        stored = self.store.load_config()
        runtime = RuntimeConfig()
        saved = {k: v for k, v in stored.items() if k in Settings.RUNTIME_KEYS}
        runtime = runtime.patched(saved).patched(settings.runtime_overrides())
        self._config = runtime
        self._config_lock = threading.Lock()
        self.clock = clock or EmulatedClock(
            mode=runtime.clock, speed=runtime.speed, start=stored.get("clock_now")
        )
        self._rng_lock = threading.Lock()
        self._rng = random.Random(settings.seed)
        self._create_lock = threading.Lock()
        builtin = load_dir(BUILTIN_DIR) if BUILTIN_DIR.is_dir() else []
        extra = load_dir(Path(settings.scenarios_dir)) if settings.scenarios_dir else []
        self.catalogue = Catalogue([*builtin, *extra])
        for row in self.store.query("SELECT doc FROM scenarios"):
            self.catalogue.add(parse_scenario(json.loads(row["doc"]), source="api"))
        self.store.save_config(self._config.stored())
        self._app_callbacks: dict[int, str] = {
            r["sdk_app_id"]: r["url"] for r in self.store.query("SELECT * FROM app_callbacks")
        }
        self.engine = Engine(
            store=self.store,
            clock=self.clock,
            config=self.config,
            resolve_url=self._resolve_url,
            connections_per_backend=settings.connections_per_backend,
        )
        self._started = False

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> Emulator:
        if not self._started:
            self._started = True
            self.store.start_flusher()
            self.engine.start(self._load_pending())
        return self

    def close(self) -> None:
        if self._started:
            self.engine.stop()
            self._started = False
        self.store.save_config({"clock_now": self.clock.now()})
        self.store.close()

    def _load_pending(self) -> list[Outgoing]:
        rows = self.store.query(
            "SELECT * FROM events WHERE state IN ('scheduled', 'delivering') ORDER BY due_at, id"
        )
        return [_outgoing(r) for r in rows]

    # -- configuration -----------------------------------------------------------------------
    def config(self) -> RuntimeConfig:
        return self._config

    def update_config(self, patch: Mapping[str, Any]) -> RuntimeConfig:
        if not isinstance(patch, Mapping):
            raise InvalidInput("body", "must be a JSON object")
        with self._config_lock:
            new = self._config.patched(patch)
            self._config = new
            self.store.save_config(new.stored())
        if new.clock != str(self.clock.mode):
            self.clock.set_mode(new.clock)
        if new.speed != self.clock.speed:
            self.clock.set_speed(new.speed)
        self.engine.clock_changed()
        return new

    def _resolve_url(self, event: Outgoing) -> str | None:
        """Where an event without its own URL goes: its SdkAppId's callback, else the default."""
        return self._app_callbacks.get(event.sdk_app_id) or self._config.callback_url

    # -- clock ---------------------------------------------------------------------------------
    def clock_info(self) -> dict[str, Any]:
        snap = self.clock.snapshot()
        return {**snap, "wall": self.clock.wall(), "pending_events": self.engine.pending_count()}

    def advance(self, seconds: Any) -> dict[str, Any]:
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise InvalidInput("seconds", "must be a number")
        if not 0 <= seconds <= 10 * 365 * 86400:
            raise InvalidInput("seconds", "must be between 0 and 315360000 (ten years)")
        result = self.engine.advance(float(seconds))
        self.store.save_config({"clock_now": self.clock.now()})
        return {**self.clock_info(), "fired": result["fired"]}

    # -- tasks -----------------------------------------------------------------------------
    def _draw(self, fn: Any) -> Any:
        with self._rng_lock:
            return fn(self._rng)

    def create_task(
        self,
        *,
        scenario: str | None = None,
        room_id: int | None = None,
        group_id: str | None = None,
        sdk_app_id: int | None = None,
        callback_url: str | None = None,
        seed: int | None = None,
        params: Mapping[str, Any] | None = None,
        source: str = "control",
        request_id: str | None = None,
    ) -> dict[str, Any]:
        sdk_app_id = sdk_app_id if sdk_app_id is not None else self._config.sdk_app_id
        callback_url = validate_callback_url(callback_url)
        seed = seed if seed is not None else self._draw(lambda r: r.getrandbits(32))
        with self._create_lock:
            if room_id is None:
                room_id = self._free_room(sdk_app_id)
            group_id = group_id if group_id is not None else str(room_id)
            chosen = self._pick_scenario(scenario, room_id, group_id, sdk_app_id)
            resolved = chosen.with_params(params)
            busy = self.unfinished_task(room_id, sdk_app_id)
            if busy is not None:
                raise RoomBusy(room_id, sdk_app_id, busy)
            task_id = self._new_task_id()
            now = self.clock.now()
            plan = plan_task(
                resolved,
                rng=random.Random(seed),
                task_id=task_id,
                room_id=room_id,
                group_id=group_id,
                created_at=now,
                wall_created_at=self.clock.wall(),
            )
            self._insert_task(
                task_id,
                room_id,
                group_id,
                sdk_app_id,
                chosen.name,
                seed,
                dict(params or {}),
                callback_url,
                source,
                plan,
                request_id,
            )
        return self.get_task(task_id)

    def _pick_scenario(
        self, name: str | None, room_id: int, group_id: str, sdk_app_id: int
    ) -> Scenario:
        if name is not None:
            return self.catalogue.get(name)
        for rule in self.list_rules():
            match = rule["match"]
            if all(
                match.get(k) is None or match[k] == v
                for k, v in (
                    ("room_id", room_id),
                    ("group_id", group_id),
                    ("sdk_app_id", sdk_app_id),
                )
            ):
                return self.catalogue.get(rule["scenario"])
        return self.catalogue.get("success")

    def _free_room(self, sdk_app_id: int) -> int:
        while True:
            room = self._draw(lambda r: r.randint(10_000, 99_999_999))
            if self.unfinished_task(room, sdk_app_id) is None:
                return int(room)

    def _new_task_id(self) -> str:
        while True:
            task_id = self._draw(ids.new_task_id)
            if self.store.query_one("SELECT 1 FROM tasks WHERE task_id = ?", (task_id,)) is None:
                return str(task_id)

    def unfinished_task(self, room_id: int, sdk_app_id: int) -> str | None:
        row = self.store.query_one(
            "SELECT task_id FROM tasks WHERE room_id = ? AND sdk_app_id = ?"
            " AND cancelled_at IS NULL AND (finish_at IS NULL OR finish_at > ?) LIMIT 1",
            (room_id, sdk_app_id, self.clock.now()),
        )
        return row["task_id"] if row else None

    def _insert_task(
        self,
        task_id: str,
        room_id: int,
        group_id: str,
        sdk_app_id: int,
        scenario: str,
        seed: int,
        params: dict[str, Any],
        callback_url: str | None,
        source: str,
        plan: Plan,
        request_id: str | None = None,
    ) -> None:
        first_id = self.store.max_id("events") + 1
        statements: list[tuple[str, tuple[Any, ...]]] = [
            (
                "INSERT INTO tasks (task_id, room_id, group_id, sdk_app_id, scenario, seed, params,"
                " callback_url, source, request_id, created_at, created_wall, finish_at, plan)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    task_id,
                    room_id,
                    group_id,
                    sdk_app_id,
                    scenario,
                    seed,
                    json.dumps(params),
                    callback_url,
                    source,
                    request_id,
                    plan.created_at,
                    self.clock.wall(),
                    plan.finish_at,
                    json.dumps(plan.to_dict(), ensure_ascii=False),
                ),
            )
        ]
        outgoing = []
        for offset, event in enumerate(plan.events):
            data_json = payloads.encode_data(event.event_data)
            state = "dropped" if event.dropped else "scheduled"
            statements.append(
                (
                    "INSERT INTO events (id, task_id, seq, event_type, due_at, state, event_data,"
                    " sign_mode, note, sdk_app_id, callback_url) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        first_id + offset,
                        task_id,
                        event.seq,
                        event.event_type,
                        event.due_at,
                        state,
                        data_json,
                        str(event.sign_mode),
                        event.note,
                        sdk_app_id,
                        callback_url,
                    ),
                )
            )
            if not event.dropped:
                outgoing.append(
                    Outgoing(
                        id=first_id + offset,
                        task_id=task_id,
                        seq=event.seq,
                        event_type=event.event_type,
                        due_at=event.due_at,
                        data_json=data_json,
                        sign_mode=event.sign_mode,
                        sdk_app_id=sdk_app_id,
                        callback_url=callback_url,
                    )
                )
        self.store.transaction(statements)
        self.engine.schedule(outgoing)

    def get_task(self, task_id: str, *, with_events: bool = True) -> dict[str, Any]:
        row = self.store.query_one(TASK_SELECT + " WHERE t.task_id = ?", (task_id,))
        if row is None:
            raise TaskNotFound(task_id)
        task = self._task_view(row, self.clock.now())
        if with_events:
            task["events"] = self.task_events(task_id)
        return task

    def _task_view(self, row: Row, now: float) -> dict[str, Any]:
        plan = Plan.from_dict(json.loads(row["plan"]))
        if row["cancelled_at"] is not None:
            status, progress = "cancelled", plan.status_at(row["cancelled_at"])[1]
        else:
            status, progress = plan.status_at(now)
        finished = status == "finished"
        return {
            "task_id": row["task_id"],
            "room_id": row["room_id"],
            "group_id": row["group_id"],
            "sdk_app_id": row["sdk_app_id"],
            "scenario": row["scenario"],
            "status": status,
            "progress": progress,
            "outcome": plan.outcome if finished else None,
            "error": plan.error if finished else None,
            "result": plan.result if finished and plan.outcome == "success" else None,
            "created_at": row["created_at"],
            "created_at_wall": row["created_wall"],
            "finish_at": plan.finish_at,
            "seed": row["seed"],
            "params": json.loads(row["params"]),
            "callback_url": row["callback_url"],
            "source": row["source"],
            "request_id": row["request_id"],  # the cloud API call that created it, if any
            "deliveries": {
                "attempts": row["attempts"],
                "failed_attempts": row["failed_attempts"],
                "undelivered_events": row["undelivered_events"],
            },
        }

    def list_tasks(
        self,
        *,
        status: str | None = None,
        room_id: int | None = None,
        scenario: str | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        if status is not None and status not in TASK_STATUSES:
            raise InvalidInput("status", f"must be one of {', '.join(TASK_STATUSES)}")
        sql, args = TASK_SELECT + " WHERE 1=1", list[Any]()
        if room_id is not None:
            sql, args = sql + " AND t.room_id = ?", [*args, room_id]
        if scenario is not None:
            sql, args = sql + " AND t.scenario = ?", [*args, scenario]
        now = self.clock.now()
        views = [
            self._task_view(r, now) for r in self.store.query(sql + " ORDER BY t.rowid DESC", args)
        ]
        return [v for v in views if status is None or v["status"] == status][:limit]

    def cancel_task(self, task_id: str) -> dict[str, Any]:
        task = self.get_task(task_id, with_events=False)
        if task["status"] in ("finished", "cancelled"):
            raise InvalidState(
                f"task {task_id} is already {task['status']}",
                details={"task_id": task_id, "status": task["status"]},
            )
        self.engine.cancel_task(task_id)
        self.store.transaction(
            [
                (
                    "UPDATE tasks SET cancelled_at = ? WHERE task_id = ?",
                    (self.clock.now(), task_id),
                ),
                (
                    "UPDATE events SET state = 'cancelled' WHERE task_id = ? AND state IN"
                    " ('scheduled', 'delivering')",
                    (task_id,),
                ),
            ]
        )
        return self.get_task(task_id)

    def task_events(self, task_id: str) -> list[dict[str, Any]]:
        rows = self.store.query("SELECT * FROM events WHERE task_id = ? ORDER BY seq", (task_id,))
        return [self._event_view(r) for r in rows]

    def _event_view(self, row: Row) -> dict[str, Any]:
        if row["payload"]:
            payload = json.loads(row["payload"])
        else:  # not sent yet: the envelope as it will go out, before Timestamp and Sign are set
            payload = {
                "Timestamp": None,
                "SdkAppId": row["sdk_app_id"],
                "EventType": row["event_type"],
                "EventData": json.loads(row["event_data"]),
            }
        return {
            "seq": row["seq"],
            "event_type": row["event_type"],
            "due_at": row["due_at"],
            "state": row["state"],
            "attempts": row["attempts"],
            "sign": row["sign_mode"],
            "note": row["note"],
            "payload": payload,
        }

    # -- deliveries ------------------------------------------------------------------------
    def deliveries(self, *, task_id: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        sql, args = "SELECT * FROM deliveries", list[Any]()
        if task_id is not None:
            sql, args = sql + " WHERE task_id = ?", [task_id]
        rows = self.store.query(sql + " ORDER BY id DESC LIMIT ?", [*args, limit])
        return [_delivery_view(r) for r in reversed(rows)]

    # -- reset ---------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget tasks, deliveries, rules and user scenarios; TaskIds start over."""
        self.engine.reset()
        self.store.reset()
        self.catalogue.clear_user()
        with self._rng_lock:
            self._rng = random.Random(self.settings.seed)

    # -- rules ---------------------------------------------------------------------------------
    def list_rules(self) -> list[dict[str, Any]]:
        rows = self.store.query("SELECT * FROM rules ORDER BY id")
        return [
            {"id": r["id"], "match": json.loads(r["match"]), "scenario": r["scenario"]}
            for r in rows
        ]

    # -- per-SdkAppId callback URLs (set through the cloud API) --------------------------
    def set_app_callback(self, sdk_app_id: int, url: str | None) -> None:
        url = validate_callback_url(url, "Callback")
        if url is None:
            self.store.execute("DELETE FROM app_callbacks WHERE sdk_app_id = ?", (sdk_app_id,))
            self._app_callbacks.pop(sdk_app_id, None)
        else:
            self.store.execute(
                "INSERT OR REPLACE INTO app_callbacks (sdk_app_id, url) VALUES (?, ?)",
                (sdk_app_id, url),
            )
            self._app_callbacks[sdk_app_id] = url

    def app_callback(self, sdk_app_id: int) -> str | None:
        return self._app_callbacks.get(sdk_app_id)


def _outgoing(row: Row) -> Outgoing:
    return Outgoing(
        id=row["id"],
        task_id=row["task_id"],
        seq=row["seq"],
        event_type=row["event_type"],
        due_at=row["due_at"],
        data_json=row["event_data"],
        sign_mode=SignMode(row["sign_mode"]),
        sdk_app_id=row["sdk_app_id"],
        callback_url=row["callback_url"],
        attempts=row["attempts"],
    )


def _delivery_view(row: Row) -> dict[str, Any]:
    view = dict(row)
    view["ok"] = bool(view["ok"])
    return view
