"""Test-suite helpers behind the pytest plugin: a served emulator, its per-test handle, matchers.

Usable without pytest too: `ServedEmulator(settings).start()`, then `.handle()` per test.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from flask import Flask, current_app, has_app_context

from emulator.client import ClockInfo, Delivery, EmulatorClient, Task
from emulator.core.config import RuntimeConfig
from emulator.core.service import Emulator
from emulator.core.signing import verify
from emulator.receiver import Received, Receiver, Reply
from emulator.web.app import create_app, get_emulator
from emulator.web.server import AppServer

DEFAULT_CALLBACK_KEY = "tiw-emulator-test-key"
ALL_DUE_S = 7 * 86400.0  # far enough for any built-in timeline, retries included


class _Absent:
    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()  # match_event(..., Error=ABSENT): the key must not be there


def _lookup(body: Mapping[str, Any], key: str) -> tuple[bool, Any, str]:
    """Envelope keys (SdkAppId, Sign, ...) first, then EventData keys (TaskId, Progress, ...)."""
    if key in body:
        return True, body[key], key
    data = body.get("EventData")
    if isinstance(data, Mapping) and key in data:
        return True, data[key], f"EventData.{key}"
    return False, None, key if key in _ENVELOPE else f"EventData.{key}"


_ENVELOPE = ("Timestamp", "SdkAppId", "ExpireTime", "Sign", "EventType", "EventData")


def match_event(body: Any, event_type: str | None = None, **fields: Any) -> tuple[bool, str]:
    """(ok, reason): does a callback body have this EventType and these field values?

    A field value may be a plain value (compared with ==), a predicate `lambda v: ...`, or
    ABSENT (the key must be missing).
    """
    if not isinstance(body, Mapping):
        return False, f"body is not a JSON object: {body!r:.80}"
    if event_type is not None and body.get("EventType") != event_type:
        return False, f"EventType is {body.get('EventType')!r}, not {event_type!r}"
    for key, expected in fields.items():
        present, actual, where = _lookup(body, key)
        if expected is ABSENT:
            if present:
                return False, f"{where} is {actual!r}, expected it absent"
            continue
        if not present:
            return False, f"{where} is missing"
        if callable(expected):
            if not expected(actual):
                name = getattr(expected, "__name__", "predicate")
                return False, f"{where} is {actual!r}, which fails {name}"
        elif actual != expected:
            return False, f"{where} is {actual!r}, not {expected!r}"
    return True, "matches"


def describe_event(body: Any) -> str:
    """One line for a callback body: its EventType and the EventData fields people look at."""
    if not isinstance(body, Mapping):
        return repr(body)[:120]
    data = body.get("EventData")
    if not isinstance(data, Mapping):
        data = {}
    shown = [f"{k}={data[k]!r}" for k in ("TaskId", "RoomId", "Progress", "Error") if k in data]
    return " ".join([str(body.get("EventType")), *shown])


def _expectation(event_type: str | None, fields: Mapping[str, Any]) -> str:
    parts = [f"{k}={v!r}" for k, v in fields.items()]
    what = event_type or "any callback"
    return what + (f" with {', '.join(parts)}" if parts else "")


def explain_mismatch(
    bodies: Iterable[Any], event_type: str | None, fields: Mapping[str, Any], wanted: int = 1
) -> str:
    """A failure message: what was expected, then every arrival and why it did not match."""
    bodies = list(bodies)
    matched = sum(match_event(b, event_type, **fields)[0] for b in bodies)
    lines = [
        f"expected {wanted} x {_expectation(event_type, fields)}; {matched} matched, "
        f"{len(bodies)} callback(s) arrived" + (":" if bodies else ".")
    ]
    for n, body in enumerate(bodies, 1):
        ok, reason = match_event(body, event_type, **fields)
        lines.append(f"  {n}. {describe_event(body)}" + ("" if ok else f"  <- {reason}"))
    return "\n".join(lines)


class _ErrorCollector(logging.Handler):
    """Collects exceptions the served app logs while handling requests (500s, cloud API bugs)."""

    def __init__(self, app: Flask, engine_thread: int | None) -> None:
        super().__init__(logging.ERROR)
        self.app = app
        self.engine_thread = engine_thread
        self.errors: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        in_app = has_app_context() and current_app.extensions is self.app.extensions
        in_engine = self.engine_thread is not None and record.thread == self.engine_thread
        if in_app or in_engine:
            text = record.getMessage()
            if record.exc_info:
                text += "\n" + logging.Formatter().formatException(record.exc_info)
            self.errors.append(text)


class ServedEmulator:
    """An emulator on a free loopback port with a recording receiver as its callback target."""

    LOGGERS = ("tiw_emulator", "emulator", "asyncio")

    def __init__(self, settings: Mapping[str, Any] | None = None, *, timeout: float = 5.0) -> None:
        self.settings = {
            "db": ":memory:",
            "clock": "manual",
            "retry": "fast",
            "callback_key": DEFAULT_CALLBACK_KEY,
            **(settings or {}),
        }
        self.timeout = timeout
        self.receiver = Receiver()
        self._deliveries: list[Delivery] = []
        self._cond = threading.Condition()

    def start(self) -> ServedEmulator:
        self.receiver.start()
        if not self.settings.get("callback_url"):
            self.settings["callback_url"] = self.receiver.url
        self.app = create_app(self.settings)
        self.emu: Emulator = get_emulator(self.app)
        self.defaults: RuntimeConfig = self.emu.config()
        self.server = AppServer(self.app).start()
        self.url = self.server.url
        self.client = EmulatorClient(self.url, token=self.settings.get("token"))
        self._unsubscribe = self.emu.subscribe(self._on_delivery)
        self._collector = _ErrorCollector(self.app, self.emu.engine.thread_ident)
        for name in self.LOGGERS:
            logging.getLogger(name).addHandler(self._collector)
        return self

    def stop(self) -> None:
        for name in self.LOGGERS:
            logging.getLogger(name).removeHandler(self._collector)
        self._unsubscribe()
        self.client.close()
        self.server.stop()
        self.emu.close()
        self.receiver.stop()

    def _on_delivery(self, delivery: dict[str, Any]) -> None:
        with self._cond:
            self._deliveries.append(Delivery.from_raw(delivery))
            self._cond.notify_all()

    def attempts(self) -> list[Delivery]:
        """Every delivery attempt recorded since the last reset."""
        with self._cond:
            return list(self._deliveries)

    def wait_attempts(self, enough: Callable[[list[Delivery]], bool], timeout: float) -> bool:
        """Block until `enough(attempts)` holds (True) or `timeout` passes (False)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not enough(list(self._deliveries)):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    @property
    def errors(self) -> list[str]:
        return list(self._collector.errors)

    def reset(self) -> None:
        """Fresh state for the next test: no tasks, rules, user scenarios, callbacks; defaults."""
        emu = self.emu
        emu.reset()
        if emu.config() != self.defaults:
            emu.update_config(self.defaults.stored())
        for sdk_app_id in emu.app_callbacks():
            emu.set_app_callback(sdk_app_id, None)
        self.receiver.clear()
        self.receiver.respond = _default_reply
        with self._cond:
            self._deliveries.clear()
        self._collector.errors.clear()

    def handle(self) -> TiwEmulator:
        return TiwEmulator(self)


def _default_reply(_: Received) -> Reply:
    return Reply()


class TiwEmulator:
    """What a test gets: the client, the core, the receiver, and waits and asserts."""

    def __init__(self, served: ServedEmulator) -> None:
        self.served = served
        self.url = served.url
        self.client: EmulatorClient = served.client
        self.emu: Emulator = served.emu
        self.receiver: Receiver = served.receiver
        self.timeout = served.timeout
        self._scenarios = 0

    # -- settings at a glance ------------------------------------------------------------------
    @property
    def callback_key(self) -> str | None:
        return self.emu.config().callback_key

    @property
    def sdk_app_id(self) -> int:
        return self.emu.config().sdk_app_id

    @property
    def callback_url(self) -> str | None:
        return self.emu.config().callback_url

    def configure(self, **patch: Any) -> None:
        """Change runtime settings for this test only (restored before the next test)."""
        self.emu.update_config(patch)

    # -- driving ---------------------------------------------------------------------------------
    def create_task(self, scenario: str | None = None, **fields: Any) -> Task:
        """POST /api/tasks; without a scenario the rules decide (see the tiw_scenario marker)."""
        return self.client.create_task(scenario, **fields)

    def advance(self, seconds: float) -> ClockInfo:
        """Move the manual clock; returns once everything due by then was delivered."""
        return self.client.advance(seconds)

    def advance_all(self, horizon_s: float = ALL_DUE_S) -> ClockInfo:
        """Move the manual clock far enough for every planned callback (and retry) to go out."""
        return self.client.advance(horizon_s)

    def use_scenario(self, name: str, **params: Any) -> str:
        """Tasks created without a scenario (control or cloud API) get `name` with `params`."""
        scenario = self.emu.catalogue.get(name)
        if params:
            self._scenarios += 1
            derived = f"{name[:52]}-test{self._scenarios}"
            self.emu.add_scenario({**scenario.with_params(params).doc, "name": derived})
            name = derived
        self.emu.add_rule({"sdk_app_id": self.sdk_app_id}, name)
        return name

    # -- what arrived ----------------------------------------------------------------------------
    def received(self, event_type: str | None = None, **fields: Any) -> list[dict[str, Any]]:
        """Callback bodies the receiver got that match."""
        return [b for b in self._bodies() if match_event(b, event_type, **fields)[0]]

    def _bodies(self) -> list[Any]:
        out: list[Any] = []
        for r in self.receiver.received:
            try:
                out.append(r.json)
            except ValueError:
                out.append(r.body.decode("utf-8", "replace"))
        return out

    def deliveries(self, event_type: str | None = None, **fields: Any) -> list[Delivery]:
        """Delivery attempts made during this test (whatever the target) whose body matches."""
        attempts = self.served.attempts()
        return [d for d in attempts if match_event(d.body, event_type, **fields)[0]]

    def wait_for(
        self,
        event_type: str | None = None,
        *,
        count: int = 1,
        timeout: float | None = None,
        **fields: Any,
    ) -> list[dict[str, Any]]:
        """Block until the receiver holds `count` matching callbacks; return them, else fail."""

        def enough(received: list[Received]) -> bool:
            bodies = []
            for r in received:
                try:
                    bodies.append(r.json)
                except ValueError:
                    continue
            return sum(match_event(b, event_type, **fields)[0] for b in bodies) >= count

        try:
            self.receiver.wait_for(enough, self.timeout if timeout is None else timeout)
        except AssertionError:
            raise AssertionError(
                f"tiw_emulator.wait_for timed out after {timeout or self.timeout}s: "
                + explain_mismatch(self._bodies(), event_type, fields, count)
                + self._clock_hint()
            ) from None
        return self.received(event_type, **fields)

    def wait_for_delivery(
        self,
        event_type: str | None = None,
        *,
        count: int = 1,
        timeout: float | None = None,
        ok: bool | None = None,
        **fields: Any,
    ) -> list[Delivery]:
        """Block until `count` matching delivery attempts were made (to any backend)."""

        def matching(attempts: list[Delivery]) -> list[Delivery]:
            found = [d for d in attempts if match_event(d.body, event_type, **fields)[0]]
            return [d for d in found if ok is None or d.ok is ok]

        limit = self.timeout if timeout is None else timeout
        if not self.served.wait_attempts(lambda a: len(matching(a)) >= count, limit):
            attempts = self.served.attempts()
            lines = [
                f"  {d.id}. {describe_event(d.body)} -> "
                + (f"HTTP {d.status_code}" if d.status_code else str(d.error))
                for d in attempts
            ]
            raise AssertionError(
                f"tiw_emulator.wait_for_delivery timed out after {limit}s: expected "
                f"{count} x {_expectation(event_type, fields)}"
                + ("" if ok is None else f" (ok={ok})")
                + f"; {len(attempts)} attempt(s) made"
                + (":\n" + "\n".join(lines) if lines else ".")
                + self._clock_hint()
            )
        return matching(self.served.attempts())

    @property
    def run_seed(self) -> int:
        """The seed this test's run started from (ini tiw_emulator_seed replays it)."""
        return self.emu.run_seed

    def _clock_hint(self) -> str:
        info = self.emu.clock_info()
        seed = f"\n(run seed {self.run_seed}: set tiw_emulator_seed = {self.run_seed} to replay)"
        if info["mode"] == "manual" and info["pending_events"]:
            return (
                f"\n(the clock is manual and {info['pending_events']} event(s) are still "
                "scheduled: advance it, e.g. tiw_emulator.advance_all())" + seed
            )
        return seed

    # -- assertions ------------------------------------------------------------------------------
    def assert_received(
        self, event_type: str | None = None, *, count: int | None = None, **fields: Any
    ) -> list[dict[str, Any]]:
        """At least one (or exactly `count`) matching callback arrived; returns the matches."""
        found = self.received(event_type, **fields)
        if (count is None and not found) or (count is not None and len(found) != count):
            raise AssertionError(
                explain_mismatch(self._bodies(), event_type, fields, count or 1)
                + self._clock_hint()
            )
        return found

    def assert_not_received(self, event_type: str | None = None, **fields: Any) -> None:
        found = self.received(event_type, **fields)
        if found:
            listed = "\n".join(f"  {describe_event(b)}" for b in found)
            raise AssertionError(
                f"expected no {_expectation(event_type, fields)}; {len(found)} arrived:\n{listed}"
            )

    def check_signature(self, body: Mapping[str, Any]) -> tuple[bool, str]:
        """(ok, reason) for a callback's Sign/ExpireTime, verified as a backend should."""
        key = self.callback_key
        if key is None:
            return False, "no callback_key is configured, so callbacks are unsigned"
        if "Sign" not in body or "ExpireTime" not in body:
            return False, f"callback has no Sign/ExpireTime: {describe_event(body)}"
        return verify(key, int(body["ExpireTime"]), str(body["Sign"]), now=time.time())

    def assert_signed(self, body: Mapping[str, Any]) -> None:
        ok, reason = self.check_signature(body)
        if not ok:
            raise AssertionError(f"bad signature on {describe_event(body)}: {reason}")

    def assert_delivered(self, task_id: str, *, status: int = 200) -> list[Delivery]:
        """Every attempt for the task was answered with `status`; the attempts otherwise."""
        attempts = [d for d in self.deliveries() if d.task_id == task_id]
        wrong = [d for d in attempts if d.status_code != status]
        if not attempts or wrong:
            lines = [
                f"  {d.id}. {describe_event(d.body)} -> "
                + (f"HTTP {d.status_code} {(d.response_body or '')[:120]}" if d.status_code else "")
                + (d.error or "")
                for d in attempts
            ]
            raise AssertionError(
                f"expected every callback of task {task_id} answered with HTTP {status}; "
                f"{len(attempts)} attempt(s), {len(wrong)} not:"
                + ("\n" + "\n".join(lines) if lines else " (none made: advance the clock?)")
            )
        return attempts

    def assert_task(self, task_id: str, **expected: Any) -> Task:
        """The task's fields (status, outcome, progress, ...) equal `expected`; say which not."""
        task = self.client.get_task(task_id)
        wrong = [
            f"{k} is {task.raw.get(k)!r}, not {v!r}"
            for k, v in expected.items()
            if task.raw.get(k) != v
        ]
        if wrong:
            raise AssertionError(f"task {task_id} ({task.scenario}): " + "; ".join(wrong))
        return task

    def check(self) -> None:
        """Raise now if the emulator's server threads logged an exception during this test."""
        errors = self.served.errors
        if errors:
            raise AssertionError(
                f"the tiw-emulator server raised {len(errors)} error(s) during this test:\n"
                + "\n".join(errors)
            )
