"""Load mode inside a Locust process: options, the --tasks quota, counters, progress, summary.

Imported only by the locustfile, i.e. only in a Locust process (it imports gevent and Locust,
which monkey-patch the process); the emulator itself never imports it. In distributed mode the
master hands out the --tasks quota one task at a time (custom messages `tiw_claim` /
`tiw_grant` / `tiw_done`) and adds up the workers' counters, which ride along with Locust's own
stats reports, so the master's summary covers every worker. When a run stops, the master asks
its workers (`tiw_stop`) to finish the callbacks in flight and report at once, and waits for
their `tiw_stopped` before it quits, so a timed run's totals are exact too.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import gevent
from gevent.event import AsyncResult, Event
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner
from locust.stats import PERCENTILES_TO_REPORT, StatsCSV

from emulator.load import plan, summary

PROGRESS_PREFIX = "TIW-PROGRESS "
CLAIM_TIMEOUT_S = 30.0  # a worker that hears nothing from its master for this long stops


def add_options(parser: Any) -> None:
    """Load mode's Locust options (shown in the web UI; sent by the master to its workers)."""
    # On the parser itself: only its add_argument knows is_secret and include_in_web_ui.
    group = parser
    group.add_argument("--mix", default=plan.DEFAULT_MIX, help="scenario=weight,...")
    group.add_argument(
        "--callback-key",
        default="",
        env_var="TIW_LOAD_CALLBACK_KEY",
        is_secret=True,
        help="CallbackKey to sign with (or env TIW_LOAD_CALLBACK_KEY; unsigned if empty)",
    )
    group.add_argument("--sdk-app-id", default=str(plan.DEFAULT_SDK_APP_ID), help="SdkAppId")
    group.add_argument(
        "--speed", default="60", help="emulated s per wall s of each task's timeline, or max"
    )
    group.add_argument(
        "--user-rate",
        default="",
        help="callbacks/s per user at a fixed pace instead of the timeline (empty: timeline)",
    )
    group.add_argument("--tasks", default="", help="stop after this many tasks in all")
    group.add_argument("--timeout", default="10", help="seconds per callback request")
    group.add_argument(
        "--allow-remote", action="store_true", default=False, help="allow non-loopback --host"
    )
    group.add_argument(
        "--summary-file", default="", include_in_web_ui=False, help="write a JSON summary here"
    )
    group.add_argument(
        "--tiw-progress",
        action="store_true",
        default=False,
        include_in_web_ui=False,
        help="print machine-readable progress lines (used by `tiw-emulator load`)",
    )


@dataclass
class Counters:
    """What the users of one process (or, on the master, of all workers) did."""

    tasks_started: int = 0
    tasks_played: int = 0  # every callback of the task was sent
    tasks_cut_short: int = 0  # the run ended in the middle of the task
    callbacks: int = 0

    def add(self, other: dict[str, int]) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + int(other.get(f.name, 0)))

    def minus(self, other: Counters) -> dict[str, int]:
        return {f.name: getattr(self, f.name) - getattr(other, f.name) for f in fields(self)}


class Coordinator:
    """One per Locust process; created by the locustfile's `init` listener."""

    def __init__(self, environment: Environment) -> None:
        self.env = environment
        self.stopping = Event()
        self.counters = Counters()
        self._reported = Counters()  # worker: what the master already has
        self.by_worker: dict[str, dict[str, int]] = {}
        self._granted = 0
        self._done_for_quota = 0
        self._claims: dict[int, AsyncResult] = {}
        self._claim_ids = itertools.count(1)
        self.in_flight = 0  # callbacks sent and not yet answered, in this process
        self._workers_stopped: set[str] = set()
        self.started_at = time.time()
        runner = environment.runner
        if isinstance(runner, MasterRunner):
            runner.register_message("tiw_claim", self._on_claim)
            runner.register_message("tiw_done", self._on_done)
            runner.register_message("tiw_stopped", self._on_worker_stopped)
        elif isinstance(runner, WorkerRunner):
            runner.register_message("tiw_grant", self._on_grant)
            runner.register_message("tiw_stop", self._on_stop_request, concurrent=True)
        events = environment.events
        events.test_start.add_listener(self._on_test_start)
        events.test_stopping.add_listener(self._on_test_stopping)
        events.report_to_master.add_listener(self._on_report_to_master)
        events.worker_report.add_listener(self._on_worker_report)
        events.quitting.add_listener(self._on_quitting)
        if getattr(environment.parsed_options, "tiw_progress", False) and not self.is_worker:
            gevent.spawn(self._print_progress)

    # -- options --------------------------------------------------------------------------
    @property
    def is_worker(self) -> bool:
        return isinstance(self.env.runner, WorkerRunner)

    def option(self, name: str) -> Any:
        return getattr(self.env.parsed_options, name, None)

    @property
    def quota(self) -> int | None:
        raw = str(self.option("tasks") or "").strip()
        return int(raw) if raw else None

    # -- the --tasks quota ------------------------------------------------------------------
    def claim(self) -> bool:
        """May this user start one more task? Local or master: count; worker: ask the master."""
        if self.stopping.is_set():
            return False
        runner = self.env.runner
        if isinstance(runner, WorkerRunner):
            claim_id = next(self._claim_ids)
            result: AsyncResult = AsyncResult()
            self._claims[claim_id] = result
            runner.send_message("tiw_claim", {"id": claim_id})
            gevent.wait([result, self.stopping], count=1, timeout=CLAIM_TIMEOUT_S)
            self._claims.pop(claim_id, None)
            return bool(result.ready() and result.get() and not self.stopping.is_set())
        return self._grant()

    def _grant(self) -> bool:
        quota = self.quota
        if quota is not None and self._granted >= quota:
            return False
        self._granted += 1
        return True

    def _on_claim(self, environment: Environment, msg: Any) -> None:
        ok = self._grant()
        runner = environment.runner
        assert runner is not None
        runner.send_message("tiw_grant", {"id": msg.data["id"], "ok": ok}, client_id=msg.node_id)

    def _on_grant(self, environment: Environment, msg: Any) -> None:
        result = self._claims.get(msg.data["id"])
        if result is not None:
            result.set(bool(msg.data["ok"]))

    def task_started(self) -> None:
        self.counters.tasks_started += 1

    def callback_sent(self) -> None:
        self.counters.callbacks += 1

    def task_ended(self, *, complete: bool) -> None:
        if complete:
            self.counters.tasks_played += 1
        else:
            self.counters.tasks_cut_short += 1
        if isinstance(self.env.runner, WorkerRunner):
            self.env.runner.send_message("tiw_done", {})
        else:
            self._quota_progress()

    def _on_done(self, environment: Environment, msg: Any) -> None:
        self._quota_progress()

    def _quota_progress(self) -> None:
        self._done_for_quota += 1
        if self.quota is not None and self._done_for_quota == self.quota:
            gevent.spawn(self._finish)  # once: later reports of the same run change nothing

    def _finish(self) -> None:
        """Every task of the quota is done: quit (stopping collects the workers' last reports)."""
        runner = self.env.runner
        if runner is not None:
            runner.quit()

    # -- stopping -------------------------------------------------------------------------
    def _grace_s(self) -> float:
        """How long a callback in flight may take to be answered (its timeout) and reported."""
        return float(self.option("timeout") or 10) + 2.0

    def _on_test_stopping(self, **_: Any) -> None:
        self.stopping.set()
        runner = self.env.runner
        if not isinstance(runner, MasterRunner) or not runner.worker_count:
            return
        # Held here, the master sends its workers nothing else until they have reported.
        expected = {client.id for client in runner.clients.all}
        self._workers_stopped.clear()
        runner.send_message("tiw_stop")
        deadline = time.monotonic() + self._grace_s()
        while not expected <= self._workers_stopped and time.monotonic() < deadline:
            gevent.sleep(0.05)

    def _on_stop_request(self, environment: Environment, msg: Any) -> None:
        """Worker: stop sending, let the callbacks in flight finish, then report them now."""
        self.stopping.set()
        deadline = time.monotonic() + self._grace_s()
        while self.in_flight and time.monotonic() < deadline:
            gevent.sleep(0.02)
        runner = environment.runner
        assert isinstance(runner, WorkerRunner)
        data: dict[str, Any] = {}
        environment.events.report_to_master.fire(client_id=runner.client_id, data=data)
        runner.send_message("stats", data)
        runner.send_message("tiw_stopped", {})

    def _on_worker_stopped(self, environment: Environment, msg: Any) -> None:
        self._workers_stopped.add(msg.node_id)

    # -- events ---------------------------------------------------------------------------
    def _on_test_start(self, **_: Any) -> None:
        self.stopping.clear()
        self.counters = Counters()
        self._reported = Counters()
        self.by_worker = {}
        self._granted = self._done_for_quota = 0
        self.started_at = time.time()

    def _on_report_to_master(self, client_id: str, data: dict[str, Any]) -> None:
        snapshot = Counters(**asdict(self.counters))
        data["tiw"] = snapshot.minus(self._reported)
        self._reported = snapshot

    def _on_worker_report(self, client_id: str, data: dict[str, Any]) -> None:
        delta = data.get("tiw")
        if not delta:
            return
        self.counters.add(delta)
        mine = self.by_worker.setdefault(client_id, {"tasks_played": 0, "callbacks": 0})
        mine["tasks_played"] += int(delta.get("tasks_played", 0))
        mine["callbacks"] += int(delta.get("callbacks", 0))

    def _on_quitting(self, environment: Environment, **_: Any) -> None:
        if self.is_worker:
            return
        result = summary.from_locust(environment.stats, self.counters, self.by_worker)
        result["target"] = environment.host
        prefix = str(self.option("csv_prefix") or "")
        if prefix:
            write_final_csv(environment, prefix)
        path = str(self.option("summary_file") or "")
        if path:
            Path(path).write_text(json.dumps(result, indent=2), encoding="utf-8")
        # Exit code 1 when the backend failed any callback (Locust's own rule, made explicit).
        if result["failed"]:
            environment.process_exit_code = 1

    def _print_progress(self) -> None:
        last_count, last_at = 0, time.monotonic()
        while True:
            gevent.sleep(1.0)
            total = self.env.stats.total
            now = time.monotonic()
            # Callbacks/s over the last second (Locust's current_rps lags by seconds).
            rps = max(0, total.num_requests - last_count) / max(now - last_at, 1e-3)
            last_count, last_at = total.num_requests, now
            line = {
                "elapsed_s": round(time.time() - self.started_at, 1),
                "users": self.env.runner.user_count if self.env.runner else 0,
                "tasks_played": self.counters.tasks_played,
                "callbacks": total.num_requests,
                "failed": total.num_failures,
                "rps": round(rps, 1),
            }
            sys.stderr.write(PROGRESS_PREFIX + json.dumps(line) + "\n")
            sys.stderr.flush()


def write_final_csv(environment: Environment, prefix: str) -> None:
    """Rewrite Locust's CSV files with the final figures.

    Locust's CSV writer refreshes them once a second and stops when the run ends, so without
    this a short run leaves them empty and a long one a second stale. Each file is replaced
    (written aside, then renamed), so the writer's still-open handle cannot overwrite it.
    """
    writer = StatsCSV(environment, PERCENTILES_TO_REPORT)
    for suffix, write in (
        ("_stats.csv", writer.requests_csv),
        ("_failures.csv", writer.failures_csv),
        ("_exceptions.csv", writer.exceptions_csv),
    ):
        aside = f"{prefix}{suffix}.final"
        with open(aside, "w", newline="", encoding="utf-8") as f:
            write(csv.writer(f))
        os.replace(aside, f"{prefix}{suffix}")
