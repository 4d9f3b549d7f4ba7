"""The emulator core: tasks, their timelines, configuration and the catalogue, behind one object.

Views (control API, cloud API, dashboard), the CLI and the pytest plugin all call this; none of
them holds business rules of its own. Persistence goes through the `Store` interface only.
"""

from __future__ import annotations

import contextlib
import logging
import random
import secrets
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any, cast

from emulator.core import ids, payloads
from emulator.core.clock import EmulatedClock
from emulator.core.config import RuntimeConfig, Settings, runtime_from, validate_callback_url
from emulator.core.errors import (
    InvalidInput,
    InvalidState,
    RoomBusy,
    StorageUnavailable,
    TaskNotFound,
)
from emulator.core.qa import QAControls
from emulator.core.redact import mask_url
from emulator.core.scenarios import BUILTIN_DIR, Catalogue, Scenario, load_dir, parse_scenario
from emulator.core.shared import SharedChanges, SharedMode, manual_needs_one_process, take_over
from emulator.core.timeline import Plan, plan_task
from emulator.core.views import delivery_view, event_view, task_view
from emulator.delivery.engine import Engine
from emulator.delivery.scheduler import Outgoing
from emulator.store import open_store
from emulator.store.base import (
    TASK_STATUSES,
    AttemptListener,
    DeliveryFilter,
    DuplicateTaskId,
    NewEvent,
    NewTask,
    RoomTaken,
    Row,
    SharedStore,
    StorageError,
    TaskFilter,
)

log = logging.getLogger("tiw_emulator")
# create_task's hold: takes the future of the task's commit (see there)
Hold = Callable[[Future[None]], None]
# A task is created as of its request's arrival (create_task's waited_s), up to this far back.
MAX_WAITED_S = 10.0
NO_CALLBACK_URL = (
    "no callback URL configured: this task's callbacks will fail until you set callback_url"
    " (PATCH /api/config, the task's callback_url, or SetOfflineRecordCallback)"
)


class Emulator(QAControls, SharedChanges):
    """One emulator instance: its own store, clock, engine and catalogue (no globals)."""

    def __init__(self, settings: Settings, *, clock: EmulatedClock | None = None) -> None:
        self.settings = settings
        self.store = open_store(settings.db, lease_s=settings.lease_s)
        stored = self.store.load_config()
        self._config = runtime_from(stored).patched(settings.runtime_overrides())
        self._config_lock = threading.Lock()
        peers = self._peers()
        if peers and self._config.clock == "manual":
            self.store.close()
            raise InvalidState(manual_needs_one_process(peers))
        self.clock = clock or EmulatedClock(
            mode=self._config.clock, speed=self._config.speed, start=stored.get("clock_now")
        )
        anchor = stored.get("clock_anchor")
        if peers and isinstance(anchor, dict):  # join the running processes' clock
            self.clock.sync(anchor, speed=self._config.speed, mode="real")
        self._rng_lock = threading.Lock()
        self._seed_lock = threading.Lock()
        self.run_seed = self._new_run_seed()
        self._rng = random.Random(self.run_seed)
        builtin = load_dir(BUILTIN_DIR) if BUILTIN_DIR.is_dir() else []
        extra = load_dir(Path(settings.scenarios_dir)) if settings.scenarios_dir else []
        self.catalogue = Catalogue([*builtin, *extra])
        for row in self.store.list_scenarios():
            self.catalogue.add(parse_scenario(row["doc"], source="api"))
        self.store.save_config(self._stored_config(self._config))
        self._app_callbacks = self.store.app_callbacks()
        self.engine = Engine(
            store=self.store,
            clock=self.clock,
            config=self.config,
            resolve_url=self._resolve_url,
            connections_per_backend=settings.connections_per_backend,
        )
        self._started = False
        self._warned_no_url = False
        self._shared: SharedMode | None = None
        if self.store.shared:
            self._shared = SharedMode(
                cast(SharedStore, self.store),
                clock=self.clock,
                on_notice=self.apply_change,
                on_taken=lambda rows: self.engine.schedule(Outgoing.of(r) for r in rows),
                on_lost_lease=self.engine.forget_scheduled,
            )

    def _new_run_seed(self) -> int:
        """The given --seed, else a fresh one: TaskIds never repeat across runs by default."""
        seed = self.settings.seed
        return int(seed) if seed is not None else secrets.randbits(63)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> Emulator:
        if not self._started:
            self._started = True
            if self._shared is not None:
                # What dead or stopped processes left, claimed now; the sweep takes the rest.
                pending = take_over(cast(SharedStore, self.store), self.clock)
            else:
                pending = self.store.pending_events()
            self.engine.start(Outgoing.of(r) for r in pending)
            if self._shared is not None:
                self._shared.start()
        return self

    def close(self) -> None:
        if self._shared is not None:
            self._shared.stop()
        if self._started:
            self._started = False  # a held creation committed from now on is not scheduled
            self.engine.stop()
        try:
            self.store.save_config({"clock_now": self.clock.now()})
        except StorageError as exc:
            log.error("could not save the clock on close: %s", exc)
        self.store.close()

    def health(self) -> str | None:
        """None when healthy, else what is wrong (a storage error holding writes back)."""
        return self.store.health()

    def subscribe(self, listener: AttemptListener) -> Callable[[], None]:
        """Call `listener(delivery)` after every recorded attempt (keep it quick)."""
        return self.store.subscribe(lambda row: listener(delivery_view(row)))

    # -- configuration -----------------------------------------------------------------------
    def config(self) -> RuntimeConfig:
        return self._config

    def public_config(self) -> dict[str, Any]:
        shown = self._config.public()
        shown["callback_url"] = mask_url(shown["callback_url"])
        return {**shown, "run_seed": self.run_seed}

    def update_config(self, patch: Mapping[str, Any]) -> RuntimeConfig:
        if not isinstance(patch, Mapping):
            raise InvalidInput("body", "must be a JSON object")
        with self._config_lock:
            new = self._config.patched(patch)
            if new.clock == "manual" and self._config.clock != "manual":
                peers = self._peers()
                if peers:
                    raise InvalidState(manual_needs_one_process(peers))
            anchor = self.clock.anchor()  # the clock changes speed or mode from this instant
            self._storage(lambda: self.store.save_config(self._stored_config(new, anchor)))
            self._config = new
        self.clock.sync(anchor, speed=new.speed, mode=new.clock)
        self.engine.clock_changed()
        return new

    def _resolve_url(self, event: Outgoing) -> str | None:
        """Where an event without its own URL goes: its SdkAppId's callback, else the default."""
        return self._app_callbacks.get(event.sdk_app_id) or self._config.callback_url

    @staticmethod
    def _storage(fn: Callable[[], Any]) -> Any:
        """Run a store call, turning a storage failure into the API's 503."""
        try:
            return fn()
        except StorageError as exc:
            raise StorageUnavailable(str(exc)) from None

    # -- clock ---------------------------------------------------------------------------------
    def clock_info(self) -> dict[str, Any]:
        snap = self.clock.snapshot()
        return {**snap, "wall": self.clock.wall(), "pending_events": self.engine.pending_count()}

    def advance(self, seconds: Any) -> dict[str, Any]:
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise InvalidInput("seconds", "must be a number")
        if not 0 <= seconds <= 10 * 365 * 86400:
            raise InvalidInput("seconds", "must be between 0 and 315360000 (ten years)")
        fired = self.engine.advance(float(seconds))
        # save_config commits the attempts the advance queued first, so they are in the log
        # (and the listeners told) before the reply.
        saved: dict[str, Any] = {"clock_now": self.clock.now()}
        if self.store.shared:
            saved["clock_anchor"] = self.clock.anchor()  # peers move with it
        self._storage(lambda: self.store.save_config(saved))
        return {**self.clock_info(), "fired": fired}

    # -- tasks -----------------------------------------------------------------------------
    def _draw(self, fn: Callable[[random.Random], Any]) -> Any:
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
        waited_s: float = 0.0,
        hold: Hold | None = None,
    ) -> dict[str, Any]:
        """Plan, store and schedule a task; returns its view. `waited_s`: how long the request
        waited in the server before it got here; the task is created as of its arrival, so a
        callback due 100 ms after creation is due 100 ms after the request came in, however
        busy the server was (the clock's `ago`).

        `hold`, given by a server that can hold its reply (`wsgi_bridge.HOLD_KEY`): the commit
        is not waited for. The task's rows go to the store's committer and `hold` gets the
        future of that commit; the caller must not answer before it settles, and when it
        settles with an error (a taken room, a repeated TaskId, a storage failure) must make
        the same call again without `hold`, which draws again or refuses as usual.
        """
        sdk_app_id = sdk_app_id if sdk_app_id is not None else self._config.sdk_app_id
        callback_url = validate_callback_url(callback_url)
        if hold is not None:
            with self.store.creating(later=True):  # the batch being filled waits for it
                task, plan = self._planned(
                    scenario, room_id, group_id, sdk_app_id, callback_url, seed, params, waited_s
                )
                task.source, task.request_id = source, request_id
                committed = self.store.insert_task_later(task, now=plan.created_at)
            committed.add_done_callback(lambda done: self._schedule_if_stored(done, task))
            hold(committed)
            return self._created_view(task, plan, dict(params or {}))
        with self.store.creating():  # creations arriving together share one commit
            for _ in range(100):  # a drawn room or TaskId that is taken: draw again
                task, plan = self._planned(
                    scenario, room_id, group_id, sdk_app_id, callback_url, seed, params, waited_s
                )
                task.source, task.request_id = source, request_id
                seed = task.seed  # the same data in another room, or under another TaskId
                try:
                    self._insert(task, plan.created_at)
                except RoomTaken as busy:
                    if room_id is None:
                        continue
                    raise RoomBusy(task.room_id, sdk_app_id, busy.task_id) from None
                except DuplicateTaskId:
                    continue
                break
            else:  # pragma: no cover - 100 collisions in a row
                raise InvalidState("could not find a free room or TaskId")
        self.engine.schedule(_outgoing_of(task))
        return self._created_view(task, plan, dict(params or {}))

    def _planned(
        self,
        scenario: str | None,
        room_id: int | None,
        group_id: str | None,
        sdk_app_id: int,
        callback_url: str | None,
        seed: int | None,
        params: Mapping[str, Any] | None,
        waited_s: float,
    ) -> tuple[NewTask, Plan]:
        """A task planned for its room (drawn when not given) and seed (drawn when not given)."""
        seed = seed if seed is not None else self._draw(lambda r: r.getrandbits(32))
        room: int = room_id if room_id is not None else self._draw(_random_room)
        group = group_id if group_id is not None else str(room)
        chosen = self._pick_scenario(scenario, room, group, sdk_app_id)
        task, plan = self._plan(chosen, params, room, group, sdk_app_id, seed, waited_s)
        task.callback_url = callback_url
        for event in task.events:
            event.callback_url = callback_url
        return task, plan

    def _schedule_if_stored(self, committed: Future[None], task: NewTask) -> None:
        """A held creation's commit settled (on the store's committer thread). Once the
        emulator is closing its events are not scheduled: they are stored, and the next start
        schedules them with the rest of the pending events."""
        if committed.exception() is None and self._started:
            with contextlib.suppress(RuntimeError):  # the engine's loop closed meanwhile
                self.engine.schedule(_outgoing_of(task))

    def _insert(self, task: NewTask, now: float) -> None:
        self._storage(lambda: self.store.insert_task(task, now=now))

    def _plan(
        self,
        chosen: Scenario,
        params: Mapping[str, Any] | None,
        room_id: int,
        group_id: str,
        sdk_app_id: int,
        seed: int,
        waited_s: float = 0.0,
    ) -> tuple[NewTask, Plan]:
        resolved = chosen.with_params(params)
        task_id = str(self._draw(ids.new_task_id))
        waited_s = min(max(waited_s, 0.0), MAX_WAITED_S)
        now, wall = self.clock.ago(waited_s), self.clock.wall() - waited_s
        plan = plan_task(
            resolved,
            rng=random.Random(seed),
            task_id=task_id,
            room_id=room_id,
            group_id=group_id,
            created_at=now,
            wall_created_at=wall,
        )
        events = [
            NewEvent(
                seq=e.seq,
                event_type=e.event_type,
                due_at=e.due_at,
                state="dropped" if e.dropped else "scheduled",
                event_data=payloads.encode_planned_data(e.event_data),
                sign_mode=str(e.sign_mode),
                note=e.note,
                sdk_app_id=sdk_app_id,
                callback_url=None,
            )
            for e in plan.events
        ]
        task = NewTask(
            task_id=task_id,
            room_id=room_id,
            group_id=group_id,
            sdk_app_id=sdk_app_id,
            scenario=chosen.name,
            seed=seed,
            params=payloads.encode_params(params),
            callback_url=None,
            source="control",
            request_id=None,
            created_at=plan.created_at,
            created_wall=wall,
            queued_until=plan.queued_until,
            finish_at=plan.finish_at,
            outcome=plan.outcome,
            error_code=(plan.error or {}).get("Code"),
            plan=payloads.encode_plan(plan.to_dict()),
            events=events,
        )
        return task, plan

    def _created_view(self, task: NewTask, plan: Plan, params: dict[str, Any]) -> dict[str, Any]:
        """The reply to a creation, from what was just committed (no read-back, and no parsing
        of the JSON just written: the params and each event's data are at hand)."""
        row = {**vars(task), "cancelled_at": None, "params": params}
        view = task_view(row, self.clock.now(), plan)
        view["events"] = [
            event_view({**vars(e), "attempts": 0, "payload": None}, planned.event_data)
            for e, planned in zip(task.events, plan.events, strict=True)
        ]
        url = task.callback_url or self._app_callbacks.get(task.sdk_app_id)
        view["warnings"] = [] if url or self._config.callback_url else [NO_CALLBACK_URL]
        if view["warnings"] and not self._warned_no_url:
            self._warned_no_url = True  # once, not per task: the reply carries it every time
            log.warning("task %s: %s", task.task_id, NO_CALLBACK_URL)
        return view

    def _pick_scenario(
        self, name: str | None, room_id: int, group_id: str, sdk_app_id: int
    ) -> Scenario:
        if name is not None:
            return self.catalogue.get(name)
        for rule in self._rules():
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

    # The rules, read from the store once and kept until they change: a creation without a
    # scenario consults them, and reading them cost a store round trip (lock, flush, SELECT)
    # per creation. `_rules_changed()` drops them: called after add_rule, delete_rule and reset
    # here, and the one hook for another process's change (shared mode's store notification).
    _rules_cache: list[Row] | None = None
    _rules_generation = 0
    _rules_lock = threading.Lock()

    def _rules(self) -> list[Row]:
        cached = self._rules_cache
        if cached is not None:
            return cached
        generation = self._rules_generation
        rules = self.list_rules()
        with self._rules_lock:
            if generation == self._rules_generation:  # no change while they were read
                self._rules_cache = rules
        return rules

    def _rules_changed(self) -> None:
        with self._rules_lock:
            self._rules_generation += 1
            self._rules_cache = None

    def unfinished_task(self, room_id: int, sdk_app_id: int) -> str | None:
        return self._storage(
            lambda: self.store.unfinished_task(room_id, sdk_app_id, self.clock.now())
        )

    def get_task(self, task_id: str, *, with_events: bool = True) -> dict[str, Any]:
        row = self._storage(lambda: self.store.get_task(task_id))
        if row is None:
            raise TaskNotFound(task_id)
        task = task_view(row, self.clock.now())
        if with_events:
            task["events"] = self.task_events(task_id)
        return task

    def list_tasks(
        self,
        *,
        status: str | None = None,
        room_id: int | None = None,
        sdk_app_id: int | None = None,
        scenario: str | None = None,
        outcome: str | None = None,
        error_code: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[list[dict[str, Any]], int | None]:
        """A page of tasks, newest first, and the offset of the next page (None: the last)."""
        if status is not None and status not in TASK_STATUSES:
            raise InvalidInput("status", f"must be one of {', '.join(TASK_STATUSES)}")
        if outcome is not None and outcome not in ("success", "failure"):
            raise InvalidInput("outcome", "must be 'success' or 'failure'")
        where = TaskFilter(status, room_id, sdk_app_id, scenario, outcome, error_code)
        now = self.clock.now()
        rows, next_offset = self._storage(
            lambda: self.store.list_tasks(where, now=now, limit=limit, offset=offset)
        )
        return [task_view(r, now) for r in rows], next_offset

    def cancel_task(self, task_id: str) -> dict[str, Any]:
        task = self.get_task(task_id, with_events=False)
        if task["status"] in ("finished", "cancelled"):
            raise InvalidState(
                f"task {task_id} is already {task['status']}",
                details={"task_id": task_id, "status": task["status"]},
            )
        self.engine.cancel_task(task_id)
        self._storage(lambda: self.store.cancel_task(task_id, self.clock.now()))
        return self.get_task(task_id)

    def task_events(self, task_id: str, limit: int = 1000) -> list[dict[str, Any]]:
        rows = self._storage(lambda: self.store.task_events(task_id, limit))
        return [event_view(r) for r in rows]

    # -- deliveries ------------------------------------------------------------------------
    def deliveries(
        self,
        *,
        task_id: str | None = None,
        ok: bool | None = None,
        status_code: int | None = None,
        event_type: str | None = None,
        limit: int = 100,
        before: int | None = None,
        after: int | None = None,
    ) -> tuple[list[Row], int | None]:
        """A page of the attempt log (the newest matching, oldest first) and the next cursor."""
        where = DeliveryFilter(task_id, ok, status_code, event_type)
        rows, cursor = self._storage(
            lambda: self.store.list_deliveries(where, limit=limit, before=before, after=after)
        )
        return [delivery_view(r) for r in rows], cursor

    # -- reset ---------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget tasks, deliveries, rules and user scenarios.

        TaskIds start over only under a given --seed (a reproducible run); otherwise a fresh
        run seed is drawn, so a backend never sees a TaskId twice.
        """
        self.engine.reset()
        self._storage(self.store.reset)
        self._forget_user_state()

    def _forget_user_state(self) -> None:
        self._rules_changed()
        self.catalogue.clear_user()
        with self._rng_lock:
            self.run_seed = self._new_run_seed()
            self._rng = random.Random(self.run_seed)

    # -- per-SdkAppId callback URLs (set through the cloud API) --------------------------
    def set_app_callback(self, sdk_app_id: int, url: str | None) -> None:
        url = validate_callback_url(url, "Callback")
        self._storage(lambda: self.store.set_app_callback(sdk_app_id, url))
        if url is None:
            self._app_callbacks.pop(sdk_app_id, None)
        else:
            self._app_callbacks[sdk_app_id] = url

    def app_callback(self, sdk_app_id: int) -> str | None:
        return self._app_callbacks.get(sdk_app_id)

    def app_callbacks(self) -> dict[int, str]:
        return dict(self._app_callbacks)


def _random_room(rng: random.Random) -> int:
    return rng.randint(10_000, 99_999_999)


def _outgoing_of(task: NewTask) -> list[Outgoing]:
    return [Outgoing.of(e) for e in task.events if e.state == "scheduled"]
