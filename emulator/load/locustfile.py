"""The Locust user class of load mode: each user plays recording tasks' callbacks at a backend.

Run it with `locust -f "$(tiw-emulator load --locustfile)" --host CALLBACK_URL ...` (web UI,
`--headless`, or `--master` / `--worker --master-host HOST`), or through `tiw-emulator load`.
Payloads and signatures come from the emulator's own code (`emulator.load.plan`). Only a Locust
process imports this module: Locust and gevent monkey-patch the process that imports them.
"""

from __future__ import annotations

import functools
import logging
import random
import socket
import time
from typing import Any

import gevent
from locust import FastHttpUser, constant, events, task
from locust.env import Environment
from locust.exception import StopUser
from locust.runners import WorkerRunner

from emulator import __version__
from emulator.core.errors import EmulatorError
from emulator.load import coordination, plan
from emulator.load.coordination import Coordinator

logger = logging.getLogger("tiw-emulator.load")
_state: dict[str, Any] = {}  # this process's Coordinator and scenario catalogue


@events.init_command_line_parser.add_listener
def _add_options(parser: Any, **_: Any) -> None:
    coordination.add_options(parser)


@events.init.add_listener
def _on_init(environment: Environment, **_: Any) -> None:
    _state["coordinator"] = Coordinator(environment)
    _state["catalogue"] = plan.builtin_catalogue()
    if isinstance(environment.runner, WorkerRunner):
        return  # a worker gets the host and options from its master when the test starts
    opts: Any = environment.parsed_options
    if opts is None:
        return
    # Let a callback in flight finish when the run stops, so nothing sent goes uncounted.
    try:
        timeout = float(opts.timeout)
    except ValueError:
        raise SystemExit(f"tiw-emulator load: --timeout {opts.timeout!r} is not a number") from None
    environment.stop_timeout = max(environment.stop_timeout or 0.0, timeout + 1.0)
    if opts.headless:
        if not environment.host:
            raise SystemExit("tiw-emulator load: --host must be the backend's callback URL")
        # Fail before any user starts, with the same messages `tiw-emulator load` gives.
        try:
            print(_check_target(environment), flush=True)
            _settings(environment)
        except (ValueError, EmulatorError) as err:
            raise SystemExit(f"tiw-emulator load: {err}") from None


@events.test_start.add_listener
def _on_test_start(environment: Environment, **_: Any) -> None:
    """In the web UI the host can change per run: say where each run's load goes."""
    opts = environment.parsed_options
    if isinstance(environment.runner, WorkerRunner) or opts is None or opts.headless:
        return  # a headless run said it at start-up
    try:
        logger.info("tiw-emulator %s", _check_target(environment))
    except (ValueError, EmulatorError) as err:
        logger.error("tiw-emulator load: %s (no user will send)", err)


def _check_target(environment: Environment) -> str:
    allow = bool(getattr(environment.parsed_options, "allow_remote", False))
    verdict = _target_verdict(str(environment.host), allow)
    if isinstance(verdict, EmulatorError):
        raise verdict
    return verdict


@functools.lru_cache(maxsize=16)
def _target_verdict(host: str, allow_remote: bool) -> str | EmulatorError:
    """Resolved once per host, not once per user."""
    try:
        return plan.check_target(host, allow_remote=allow_remote)
    except EmulatorError as err:
        return err


def _settings(environment: Environment) -> dict[str, Any]:
    """The load options, parsed: they arrive as text (command line, web UI or the master)."""
    opts: Any = environment.parsed_options
    catalogue = _state["catalogue"]
    mix = plan.parse_mix(str(opts.mix), catalogue)
    key = str(opts.callback_key or "") or None
    plan.check_mix_signing(mix, catalogue, key)
    user_rate = str(opts.user_rate or "").strip()
    return {
        "mix": mix,
        "callback_key": key,
        "sdk_app_id": int(opts.sdk_app_id),
        "speed": plan.parse_speed(str(opts.speed)),
        "user_rate": float(user_rate) if user_rate else None,
    }


class RecordingTaskUser(FastHttpUser):
    """One simulated user: plays one recording task (its progress callbacks, then its result),
    then the next, until the run ends."""

    wait_time = constant(0)
    insecure = False  # an https:// backend's certificate is verified (Locust's default is not to)

    def __init__(self, environment: Environment) -> None:
        timeout = float(getattr(environment.parsed_options, "timeout", 10) or 10)
        self.network_timeout = self.connection_timeout = timeout
        super().__init__(environment)
        self.coordinator: Coordinator = _state["coordinator"]
        self.settings = _settings(environment)
        self.factory = plan.TaskFactory(self.settings["mix"], _state["catalogue"])
        runner = environment.runner
        node = runner.client_id if isinstance(runner, WorkerRunner) else socket.gethostname()
        self.headers = {
            "Content-Type": "application/json",
            "User-Agent": f"tiw-emulator-load/{__version__} ({node})",
        }
        rate = self.settings["user_rate"]
        # Users of a fixed pace start at random phases, so they do not send in bursts.
        self.next_send = time.monotonic() + (random.random() / rate if rate else 0.0)

    def on_start(self) -> None:
        try:
            _check_target(self.environment)
        except (ValueError, EmulatorError) as err:
            logger.error("tiw-emulator load: %s", err)
            raise StopUser() from None

    @task
    def play_recording_task(self) -> None:
        coordinator = self.coordinator
        if not coordinator.claim():
            raise StopUser()
        coordinator.task_started()
        load_task = self.factory.next_task()
        started = time.monotonic()
        for callback in load_task.callbacks:
            if not self._wait_until(self._due(callback, started)):
                coordinator.task_ended(complete=False)
                raise StopUser()
            self._send(callback)
        coordinator.task_ended(complete=True)

    def _due(self, callback: plan.Callback, started: float) -> float:
        rate, speed = self.settings["user_rate"], self.settings["speed"]
        if rate:
            due = max(self.next_send, time.monotonic())
            self.next_send = due + 1.0 / rate
            return due
        return started + callback.offset_s / speed if speed else 0.0

    def _wait_until(self, due: float) -> bool:
        """Sleep until `due` (monotonic); False as soon as the run is stopping."""
        delay = due - time.monotonic()
        if delay > 0:
            self.coordinator.stopping.wait(delay)
        else:
            gevent.sleep(0)  # let other users run even when sending flat out
        return not self.coordinator.stopping.is_set()

    def _send(self, callback: plan.Callback) -> None:
        body = plan.callback_body(
            callback,
            sdk_app_id=self.settings["sdk_app_id"],
            callback_key=self.settings["callback_key"],
        )
        self.coordinator.in_flight += 1
        try:
            self._post(callback, body)
        finally:
            self.coordinator.in_flight -= 1

    def _post(self, callback: plan.Callback, body: bytes) -> None:
        with self.client.post(
            str(self.host),
            data=body,  # type: ignore[arg-type]  # geventhttpclient sends bytes as they are
            headers=self.headers,
            name=callback.name,
            catch_response=True,
            allow_redirects=False,  # as the emulator: a redirect is an answer, not an ack
        ) as response:
            self.coordinator.callback_sent()
            reason = _failure(response, must_refuse=callback.must_refuse)
            if reason is None:
                response.success()
            else:
                response.failure(reason)


def _failure(response: Any, *, must_refuse: bool) -> str | None:
    """Why this answer is a failure, or None: 200 acknowledges; a forged one must get a 4xx."""
    error = getattr(response, "error", None)
    status = int(response.status_code or 0)
    if status == 0 or (error is not None and not status):
        return _error_reason(error)
    if must_refuse:
        if 400 <= status < 500:
            return None
        if status == 200:
            return "accepted a callback a correct backend must refuse (HTTP 200)"
        return f"HTTP {status}"
    return None if status == 200 else f"HTTP {status}"


def _error_reason(error: Any) -> str:
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, (TimeoutError, socket.timeout, gevent.Timeout)):
        return "timeout"
    text = str(error) or type(error).__name__
    if "timed out" in text.lower():
        return "timeout"
    return f"{type(error).__name__}: {text}"
