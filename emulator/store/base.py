"""The store interface: what the core asks of persistence, with no SQL dialect leaking through.

SQLite (`emulator.store.sqlite`) implements it today; a PostgreSQL store implements the same
methods. Rows cross the interface as plain dicts whose keys are the column names below, so the
core never sees a cursor, a connection or a placeholder style.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from emulator.core.models import Delivery

Row = dict[str, Any]
AttemptListener = Callable[[Row], None]

# The columns of one delivery attempt: the fields of the Delivery model, in its order.
DELIVERY_COLUMNS: tuple[str, ...] = Delivery.__struct_fields__

TASK_STATUSES = ("queued", "processing", "finished", "cancelled")


class StorageError(Exception):
    """A write or read the database refused (disk full, read-only, connection lost)."""


class RoomTaken(Exception):
    """Another unfinished task holds the room; `task_id` names it."""

    def __init__(self, task_id: str) -> None:
        super().__init__(task_id)
        self.task_id = task_id


class DuplicateTaskId(Exception):
    """The TaskId is already stored (a collision of random ids: draw another)."""


class DatabaseBusy(Exception):
    """Another process owns this database file."""


@dataclass
class NewEvent:
    """A planned callback to insert with its task (the store assigns its id)."""

    seq: int
    event_type: str
    due_at: float
    state: str
    event_data: str
    sign_mode: str
    note: str
    sdk_app_id: int
    callback_url: str | None
    task_id: str | None = None
    id: int = 0  # set by insert_task / insert_adhoc_event


@dataclass
class NewTask:
    """A task row; `plan` is the JSON of its timeline."""

    task_id: str
    room_id: int
    group_id: str
    sdk_app_id: int
    scenario: str
    seed: int
    params: str
    callback_url: str | None
    source: str
    request_id: str | None
    created_at: float
    created_wall: float
    queued_until: float
    finish_at: float | None
    outcome: str | None
    error_code: str | None
    plan: str
    events: list[NewEvent] = field(default_factory=list)


@dataclass(frozen=True)
class TaskFilter:
    status: str | None = None
    room_id: int | None = None
    sdk_app_id: int | None = None
    scenario: str | None = None
    outcome: str | None = None
    error_code: str | None = None


@dataclass(frozen=True)
class DeliveryFilter:
    task_id: str | None = None
    ok: bool | None = None
    status_code: int | None = None
    event_type: str | None = None


class Store(Protocol):
    """Persistence for one emulator; safe to call from any thread."""

    location: str
    shared: bool  # other processes may share this database (then it is a SharedStore)
    commits_later: bool  # insert_task_later returns before the commit (a store thread commits)

    def close(self) -> None: ...
    def health(self) -> str | None:
        """None when healthy, else the storage error that is holding writes back."""
        ...

    # configuration, rules, user scenarios, per-SdkAppId callbacks
    def load_config(self) -> dict[str, Any]: ...
    def save_config(self, values: Mapping[str, Any]) -> None: ...
    def list_rules(self) -> list[Row]: ...
    def add_rule(self, match: Mapping[str, Any], scenario: str, created_at: float) -> int: ...
    def delete_rule(self, rule_id: int) -> bool: ...
    def list_scenarios(self) -> list[Row]: ...
    def save_scenario(self, name: str, doc: str) -> None: ...
    def delete_scenario(self, name: str) -> None: ...
    def app_callbacks(self) -> dict[int, str]: ...
    def set_app_callback(self, sdk_app_id: int, url: str | None) -> None: ...

    # tasks and their events
    def creating(self, later: bool = False) -> AbstractContextManager[None]:
        """Around a task's creation, from planning to `insert_task` (`insert_task_later` when
        `later`): creations that arrive together may then share one commit (a store without
        group commit does nothing)."""
        ...

    def insert_task(self, task: NewTask, *, now: float) -> None:
        """Insert atomically, refusing with RoomTaken while the room has an unfinished task."""
        ...

    def insert_task_later(self, task: NewTask, *, now: float) -> Future[None]:
        """As insert_task without waiting: the future settles with None once the task is
        committed, or with what refused it (RoomTaken, DuplicateTaskId, StorageError)."""
        ...

    def unfinished_task(self, room_id: int, sdk_app_id: int, now: float) -> str | None: ...
    def get_task(self, task_id: str) -> Row | None: ...
    def list_tasks(
        self, where: TaskFilter, *, now: float, limit: int, offset: int
    ) -> tuple[list[Row], int | None]: ...
    def cancel_task(self, task_id: str, at: float) -> None: ...
    def task_events(self, task_id: str, limit: int = 1000) -> list[Row]: ...
    def pending_events(self) -> list[Row]: ...
    def get_event(self, event_id: int) -> Row | None: ...
    def insert_events(self, events: list[NewEvent]) -> None:
        """Insert events without a task plan (ad-hoc events, benchmarks); sets their ids."""
        ...

    # the delivery hot path: write-behind, committed in order, bounded
    def mark_delivering(self, event_id: int) -> None: ...
    def record_attempt(self, attempt: Row, adhoc: NewEvent | None = None) -> Future[Row]:
        """Queue an attempt; the future gives the stored row (with its id) once committed.

        With `adhoc`, the attempt's event is inserted in the same transaction (settled by the
        attempt's outcome) and the attempt points at it: one commit per ad-hoc event.
        """
        ...

    def log_attempt(self, attempt: Row, settle: tuple[str, int, float] | None = None) -> None:
        """Queue an attempt nobody waits for (listeners still hear of it once committed) and,
        with `settle` (state, attempts, due_at), its event's new state."""
        ...

    def subscribe(self, listener: AttemptListener) -> Callable[[], None]: ...
    def flush(self, until: Future[Any] | None = None) -> None:
        """Commit every queued write now, unless the write behind `until` (a future from
        `record_attempt`) is already committed; raises StorageError if the database refuses."""
        ...

    # the attempt log and the cloud-call log
    def get_delivery(self, delivery_id: int) -> Row | None: ...
    def list_deliveries(
        self, where: DeliveryFilter, *, limit: int, before: int | None, after: int | None
    ) -> tuple[list[Row], int | None]: ...
    def log_cloud_call(self, at: float, action: str, task_id: str | None, record: str) -> None: ...
    def list_cloud_calls(
        self, *, action: str | None, task_id: str | None, limit: int, before: int | None
    ) -> tuple[list[Row], int | None]: ...

    def reset(self) -> None:
        """Forget tasks, events, deliveries, rules, user scenarios and cloud calls, atomically."""
        ...


class SharedStore(Store, Protocol):
    """A store several emulator processes share (PostgreSQL): each process has a lease it
    renews, each pending event is claimed by one process, and changes are announced."""

    process_id: int
    lease_s: float  # a process whose heartbeat is this old is dead
    beat_s: float  # how often a process renews its lease (heartbeat)

    def heartbeat(self) -> bool:
        """Renew the lease; False when peers took this process for dead (and its events)."""
        ...

    def peers(self) -> list[str]:
        """The other live processes."""
        ...

    def take_over(self, now: float) -> list[Row]:
        """Claim dead processes' pending events, unclaimed ones and those claimed under an id
        already taken for dead (rows with `possible_duplicate`); `now` is emulated time."""
        ...

    def still_mine(self, event_ids: list[int]) -> set[int]:
        """Those of `event_ids` still pending and claimed by this process."""
        ...

    def notices(self, timeout: float) -> list[Any]:
        """Changes other processes committed (`kind`, `arg`), waiting up to `timeout`."""
        ...

    def wake(self) -> None:
        """Make a `notices` call waiting in another thread return now."""
        ...


def rows_to_page(rows: Iterable[Row], limit: int) -> tuple[list[Row], bool]:
    """Split a `limit + 1` fetch into the page and whether there is more."""
    items = list(rows)
    return items[:limit], len(items) > limit
