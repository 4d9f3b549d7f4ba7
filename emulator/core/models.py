"""Wire shapes of the control API, declared once: inputs, replies, list queries and their bounds.

The views parse with these, the OpenAPI components are generated from them and the Python client
decodes into them; validation errors come out as the control API's own error classes, naming the
field. Library choice (msgspec over pydantic v2), measured on this machine (docs/benchmarks.md):
import plus first model 6-12 ms vs 78-176 ms (start-up goal < 0.5 s); parsing and validating a
TaskCreate body 0.4 µs vs 1.6 µs (stdlib json.loads alone: 3.3 µs); encoding a task with six
events 2.6 µs vs 25 µs for json.dumps. msgspec's JSON decoder also refuses NaN, Infinity and lone
surrogates while parsing, which Python's json module accepts.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType, field

from emulator.core.clock import ClockMode
from emulator.core.signing import SignMode
from emulator.core.urls import CALLBACK_URL_PATTERN

INT64_MAX = 2**63 - 1
ROOM_ID_MAX = 4_294_967_295  # the cloud API's RoomId bound (uint32)
MAX_PAGE = 1000
MAX_OFFSET = 2**31
MAX_LONGEST_RETRY_WAIT_S = 30 * 86400  # a retry policy whose waits outgrow this never finishes

# -- scalar types with their documented bounds ------------------------------------------------
Int64 = Annotated[int, Meta(ge=-(2**63), le=INT64_MAX)]
Count = Annotated[int, Meta(ge=0, le=INT64_MAX)]
Id = Annotated[int, Meta(ge=1, le=INT64_MAX, description="a row id")]
RoomId = Annotated[int, Meta(ge=1, le=ROOM_ID_MAX, description="RoomId, 1..4294967295")]
SdkAppId = Annotated[int, Meta(ge=1, le=INT64_MAX, description="SdkAppId, a positive int64")]
Seed = Annotated[int, Meta(ge=0, le=INT64_MAX, description="seed of the task's random draws")]
Progress = Annotated[int, Meta(ge=0, le=100)]
Name = Annotated[str, Meta(min_length=1, max_length=128)]
GroupId = Annotated[str, Meta(max_length=256, description="GroupId; default str(room_id)")]
CallbackUrl = Annotated[
    str,
    Meta(
        max_length=2048,
        pattern=CALLBACK_URL_PATTERN,
        description="an http:// or https:// URL; empty or null: none",
    ),
]
Limit = Annotated[int, Meta(ge=1, le=MAX_PAGE, description="page size")]
Seconds = Annotated[float, Meta(ge=0, le=10 * 365 * 86400)]  # finite by its bounds
TaskStatus = Literal["queued", "processing", "finished", "cancelled"]
Outcome = Literal["success", "failure"]
EventState = Literal["scheduled", "delivering", "delivered", "failed", "dropped", "cancelled"]
RetryName = Literal["none", "fast", "tencent"]
FreeObject = dict[str, Any]  # free-form JSON object: its ints are still checked against int64


# -- configuration ------------------------------------------------------------------------------
class RetryPolicy(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How failed callback attempts are retried, in emulated seconds (a custom policy's shape)."""

    name: Literal["custom", "none", "fast", "tencent"] = "custom"
    max_attempts: Annotated[int, Meta(ge=1, le=100)]
    interval_s: Annotated[float, Meta(ge=0, le=86400)]
    backoff: Annotated[float, Meta(ge=1, le=10)] = 1.0

    def delay_after(self, attempt: int) -> float | None:
        """Emulated seconds to wait after failed attempt number `attempt` (1-based), or None."""
        if attempt >= self.max_attempts:
            return None
        return self.interval_s * (self.backoff ** (attempt - 1))

    def longest_wait(self) -> float:
        """The wait before the last attempt, the longest one (backoff >= 1)."""
        if self.max_attempts < 2:
            return 0.0
        return self.interval_s * self.backoff ** (self.max_attempts - 2)


class Config(Struct, kw_only=True):
    """Runtime configuration (GET/PATCH /api/config); callback_key is always shown masked."""

    callback_url: CallbackUrl | None
    callback_key: Annotated[str, Meta(max_length=1024)] | None
    sdk_app_id: SdkAppId
    clock: ClockMode
    speed: Annotated[float, Meta(gt=0, le=1_000_000, description="emulated s per wall s")]
    retry: RetryName | RetryPolicy
    timeout_s: Annotated[float, Meta(gt=0, le=600, description="per attempt")]
    sign_ttl_s: Annotated[int, Meta(ge=1, le=7 * 86400, description="ExpireTime - Timestamp")]
    strict_ack: bool
    run_seed: Annotated[Seed, Meta(description="read-only: the run seed in use (--seed)")]


READ_ONLY_CONFIG = ("run_seed",)
# PATCH /api/config: every writable Config field, each optional. Derived, so bounds live above.
ConfigPatch: type[Struct] = msgspec.defstruct(
    "ConfigPatch",
    [
        (f.name, f.type | UnsetType, UNSET)
        for f in msgspec.structs.fields(Config)
        if f.name not in READ_ONLY_CONFIG
    ],
    kw_only=True,
    forbid_unknown_fields=True,
    module=__name__,
)
ConfigPatch.__doc__ = "PATCH /api/config: any writable Config fields; null clears a URL or key."


# -- tasks and their events ---------------------------------------------------------------------
class TaskCreate(Struct, kw_only=True, forbid_unknown_fields=True):
    """POST /api/tasks body; every field optional."""

    scenario: Name | None = None
    room_id: RoomId | None = None
    group_id: GroupId | None = None
    sdk_app_id: SdkAppId | None = None
    callback_url: CallbackUrl | None = None
    seed: Seed | None = None
    params: (
        Annotated[FreeObject, Meta(description="flat scenario overrides (see TaskParams)")] | None
    ) = None


class TaskDeliveries(Struct, kw_only=True):
    """How a task's callbacks fared."""

    attempts: Count
    failed_attempts: Count
    undelivered_events: Annotated[Count, Meta(description="retries ran out without an ack")]


class TaskError(Struct, kw_only=True):
    """The failure's Error object, as sent in OfflineRecordFinished."""

    Code: str
    Message: str


class Event(Struct, kw_only=True):
    """One planned callback of a task; `payload` is the exact envelope once sent."""

    seq: Count
    event_type: str
    due_at: float
    state: EventState
    attempts: Count
    sign: SignMode
    note: str | None
    payload: FreeObject


class Task(Struct, kw_only=True):
    """A recording task; `events` only on GET /api/tasks/<id>, POST and cancel."""

    task_id: str
    room_id: RoomId
    group_id: str
    sdk_app_id: SdkAppId
    scenario: str
    status: TaskStatus
    progress: Progress
    outcome: Outcome | None
    error: TaskError | None
    result: Annotated[FreeObject, Meta(description="RecordStartTime, TotalTime, VideoInfos")] | None
    created_at: Annotated[float, Meta(description="emulated Unix seconds")]
    created_at_wall: float
    finish_at: float | None
    seed: Seed
    params: FreeObject
    callback_url: str | None
    source: Literal["control", "cloudapi"]
    request_id: Annotated[str, Meta(description="RequestId of the creating cloud call")] | None
    deliveries: TaskDeliveries
    events: list[Event] | UnsetType = UNSET


class TaskCreated(Task, kw_only=True):
    """POST /api/tasks reply: the task, plus warnings (e.g. no callback URL anywhere)."""

    warnings: list[str] = field(default_factory=list)


# -- deliveries and ad-hoc events ---------------------------------------------------------------
class Delivery(Struct, kw_only=True):
    """One delivery attempt: what was sent where, and how the backend answered.

    The attempt log's columns are these fields, in this order (emulator.store.base).
    """

    id: Id
    event_id: Id | None  # None for a redelivery of an attempt whose event is gone
    task_id: str | None
    event_type: str
    attempt: Count
    url: str | None
    request_headers: dict[str, str] | None  # None only in attempts logged by release 0.1
    request_body: str
    status_code: int | None
    response_headers: dict[str, str] | None
    response_body: str | None
    error: str | None
    started_at: Annotated[float, Meta(description="wall-clock Unix seconds")]
    duration_ms: float
    ok: bool
    emulated_at: float | None
    redelivery_of: Id | None
    possible_duplicate: Annotated[
        bool,
        Meta(
            description="sent by a process that took the event over from one that died"
            " (shared PostgreSQL mode): the backend may have received it before"
        ),
    ] = False


class EventCreate(Struct, kw_only=True, forbid_unknown_fields=True):
    """POST /api/events body: a hand-written callback, sent at once."""

    event_type: Annotated[str, Meta(min_length=1, max_length=128)]
    event_data: FreeObject
    callback_url: CallbackUrl | None = None
    sign: SignMode = SignMode.VALID
    sdk_app_id: SdkAppId | None = None


# -- clock ----------------------------------------------------------------------------------------
class Clock(Struct, kw_only=True):
    """The emulated clock; `fired` only in the reply of an advance."""

    mode: ClockMode
    speed: float
    now: Annotated[float, Meta(description="emulated Unix seconds")]
    wall: float
    pending_events: Count
    fired: Count | UnsetType = UNSET


class ClockAdvance(Struct, kw_only=True, forbid_unknown_fields=True):
    """POST /api/clock/advance body."""

    seconds: Annotated[Seconds, Meta(description="0..315360000 (ten years)")]


# -- scenarios, rules, cloud calls -------------------------------------------------------------
class Scenario(Struct, kw_only=True):
    """A catalogue entry: the scenario document with every default filled in."""

    name: str
    description: str
    source: Annotated[str, Meta(description="builtin, api, or the file it was loaded from")]
    class_: FreeObject = field(name="class")
    processing: FreeObject
    outcome: FreeObject
    delivery: FreeObject


class RuleMatch(Struct, kw_only=True, forbid_unknown_fields=True):
    """Which tasks a rule applies to: every given field must equal the task's."""

    room_id: RoomId | UnsetType = UNSET
    group_id: GroupId | UnsetType = UNSET
    sdk_app_id: SdkAppId | UnsetType = UNSET


class RuleCreate(Struct, kw_only=True, forbid_unknown_fields=True):
    """POST /api/rules body."""

    match: RuleMatch
    scenario: Name


class Rule(Struct, kw_only=True):
    """A rule: tasks matching `match` (and naming no scenario) get `scenario`."""

    id: Id
    match: RuleMatch
    scenario: str


class CloudCall(Struct, kw_only=True):
    """One logged cloud API call; the SecretId is masked, keys are never logged."""

    id: Id
    at: float
    request_id: str
    action: str
    method: str
    secret_id: str | None
    params: Annotated[Any, Meta(description="typed if valid, else as received")]
    task_id: str | None
    ok: bool
    code: Annotated[str, Meta(description="error code")] | None
    message: str | None


# -- list queries and replies ----------------------------------------------------------------------
class TaskQuery(Struct, kw_only=True, forbid_unknown_fields=True):
    """GET /api/tasks query: filters, then a page of the newest first."""

    status: TaskStatus | None = None
    room_id: RoomId | None = None
    sdk_app_id: SdkAppId | None = None
    scenario: Name | None = None
    outcome: Outcome | None = None
    error_code: Annotated[str, Meta(max_length=128, description="Error.Code")] | None = None
    limit: Limit = 100
    offset: Annotated[int, Meta(ge=0, le=MAX_OFFSET)] = 0


class DeliveryQuery(Struct, kw_only=True, forbid_unknown_fields=True):
    """GET /api/deliveries query: the newest `limit` matches below `before` / above `after`."""

    task_id: Name | None = None
    ok: bool | None = None
    status_code: Annotated[int, Meta(ge=100, le=599)] | None = None
    event_type: Name | None = None
    limit: Limit = 100
    before: Annotated[Id, Meta(description="only ids below this")] | None = None
    after: Annotated[Id, Meta(description="only ids above this")] | None = None


class EventQuery(Struct, kw_only=True, forbid_unknown_fields=True):
    """GET /api/tasks/<id>/events query."""

    limit: Limit = 1000


class CloudCallQuery(Struct, kw_only=True, forbid_unknown_fields=True):
    """GET /api/cloud-calls query."""

    action: Name | None = None
    task_id: Name | None = None
    limit: Limit = 100
    before: Annotated[Id, Meta(description="only ids below this")] | None = None


class TaskList(Struct, kw_only=True):
    tasks: list[Task]
    next_offset: Annotated[int, Meta(description="offset of the next page; null: last")] | None


class DeliveryList(Struct, kw_only=True):
    deliveries: list[Delivery]
    next_before: Annotated[Id, Meta(description="`before` of the next page; null: last")] | None


class EventList(Struct, kw_only=True):
    events: list[Event]


class CloudCallList(Struct, kw_only=True):
    cloud_calls: list[CloudCall]
    next_before: Annotated[Id, Meta(description="`before` of the next page; null: last")] | None


class RuleList(Struct, kw_only=True):
    rules: list[Rule]


class ScenarioList(Struct, kw_only=True):
    scenarios: list[Scenario]


class Status(Struct, kw_only=True):
    status: str


class Empty(Struct, forbid_unknown_fields=True):
    """A body that must be empty or {} (cancel, redeliver)."""


class ErrorInfo(Struct, kw_only=True):
    code: Annotated[str, Meta(description="snake_case error code")]
    message: str
    details: FreeObject


class Error(Struct, kw_only=True):
    """Every control-API error: 4xx, the field named in details.field where one is at fault."""

    error: ErrorInfo


M = TypeVar("M")
# Every model that is an OpenAPI component (query models become parameters instead).
COMPONENTS: tuple[Any, ...] = (
    Error,
    Status,
    Config,
    ConfigPatch,
    RetryPolicy,
    TaskCreate,
    Task,
    TaskCreated,
    TaskList,
    Event,
    EventList,
    Delivery,
    DeliveryList,
    EventCreate,
    Clock,
    ClockAdvance,
    Scenario,
    ScenarioList,
    RuleCreate,
    Rule,
    RuleList,
    CloudCall,
    CloudCallList,
)
QUERIES: tuple[Any, ...] = (TaskQuery, DeliveryQuery, EventQuery, CloudCallQuery)
