"""Held replies: a task created over HTTP is answered once its commit settles, and the request
thread does not wait for it (wsgi_bridge.HOLD_KEY, Emulator.create_task's `hold`)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask, request
from polling import wait_until
from tc3_requests import tc3_headers

from emulator.core.config import DEMO_SECRET_ID, DEMO_SECRET_KEY
from emulator.store.base import StorageError
from emulator.store.postgres import PostgresStore
from emulator.web import wsgi_bridge
from emulator.web.server import AppServer

JOIN_S = 10.0


class HoldingApp:
    """A Flask app whose POST /hold gives the server a future the test settles, and says how
    it was called each time (with or without the hold, and with what body)."""

    def __init__(self) -> None:
        self.app = Flask(__name__)
        self.calls: list[tuple[bool, bytes]] = []
        self.future: Future[None] = Future()
        self.ran = threading.Event()
        self.app.add_url_rule("/hold", view_func=self.view, methods=["POST"])

    def view(self) -> tuple[str, int]:
        hold = wsgi_bridge.hold_of(request.environ)
        body = wsgi_bridge.request_body(request)
        self.calls.append((hold is not None, body))
        if hold is None:
            return f"again:{body.decode()}", 200
        hold(self.future)
        self.ran.set()
        return f"first:{body.decode()}", 201


@pytest.fixture
def holding() -> Iterator[tuple[HoldingApp, AppServer]]:
    app = HoldingApp()
    server = AppServer(app.app).start()
    yield app, server
    server.stop()


def _posted(
    holding: tuple[HoldingApp, AppServer],
) -> tuple[HoldingApp, threading.Thread, list[requests.Response]]:
    """POST /hold from a thread of its own, once the app has run (its reply held or not)."""
    app, server = holding
    got: list[requests.Response] = []
    url = server.url + "/hold"
    thread = threading.Thread(
        target=lambda: got.append(requests.post(url, data=b"payload", timeout=30)), daemon=True
    )
    thread.start()
    assert app.ran.wait(JOIN_S)
    return app, thread, got


def test_the_reply_waits_for_the_future_the_app_gave(
    holding: tuple[HoldingApp, AppServer],
) -> None:
    app, thread, got = _posted(holding)
    thread.join(0.2)  # a bounded look for the absence of a reply
    assert thread.is_alive() and not got, "answered before the future settled"
    app.future.set_result(None)
    thread.join(JOIN_S)
    assert got and got[0].status_code == 201 and got[0].text == "first:payload"
    assert app.calls == [(True, b"payload")]


def test_a_failed_future_runs_the_request_again_without_the_hold(
    holding: tuple[HoldingApp, AppServer],
) -> None:
    app, thread, got = _posted(holding)
    app.future.set_exception(StorageError("database or disk is full"))
    thread.join(JOIN_S)
    assert got and got[0].status_code == 200 and got[0].text == "again:payload"
    assert app.calls == [(True, b"payload"), (False, b"payload")]
    # the connection is still good for the next request
    app.future = Future()
    app.future.set_result(None)
    assert requests.post(holding[1].url + "/hold", data=b"x", timeout=30).status_code == 201


def test_an_app_can_hold_its_reply_for_one_future_only() -> None:
    held = wsgi_bridge.Held()
    held(Future())
    with pytest.raises(RuntimeError, match="one future"):
        held(Future())


# -- the control API's creations -------------------------------------------------------------


def _create_all(running: Any, bodies: list[dict[str, Any]]) -> list[requests.Response]:
    """POST /api/tasks with every body at once, each on its own connection."""
    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(
            pool.map(
                lambda body: requests.post(running.url + "/api/tasks", json=body, timeout=30),
                bodies,
            )
        )


def test_a_created_task_is_stored_and_scheduled_when_its_201_arrives(make_emulator: Any) -> None:
    running = make_emulator(clock="real", speed=1e-6)  # nothing comes due during the test
    replies = _create_all(running, [{"scenario": "success"} for _ in range(24)])
    assert [r.status_code for r in replies] == [201] * 24
    for reply in replies:
        task = reply.json()
        stored = running.api("GET", f"/api/tasks/{task['task_id']}")
        assert stored.status_code == 200 and stored.json()["events"] == task["events"]
    assert running.emu.engine.pending_count() == sum(len(r.json()["events"]) for r in replies)


def test_concurrent_creations_in_one_room_give_one_201_and_409_for_the_rest(
    make_emulator: Any,
) -> None:
    running = make_emulator()
    replies = _create_all(running, [{"scenario": "success", "room_id": 4242} for _ in range(8)])
    codes = sorted(r.status_code for r in replies)
    assert codes == [201] + [409] * 7, [r.text for r in replies]
    winner = next(r.json() for r in replies if r.status_code == 201)
    for refused in (r for r in replies if r.status_code == 409):
        error = refused.json()["error"]
        assert error["code"] == "room_busy" and winner["task_id"] in error["message"]
    listed = running.api("GET", "/api/tasks", params={"room_id": 4242}).json()["tasks"]
    assert [t["task_id"] for t in listed] == [winner["task_id"]]


def test_a_repeated_task_id_is_drawn_again_over_http(make_emulator: Any, tmp_path: Path) -> None:
    """The same run seed on the same file draws the same TaskIds: the commit refuses the
    repeat, the request runs again and the task gets the next TaskId."""
    db = str(tmp_path / "same.db")
    first = make_emulator(db=db, seed=7)
    before = first.api("POST", "/api/tasks", json={"scenario": "success"}).json()["task_id"]
    first.close()
    again = make_emulator(db=db, seed=7)
    reply = again.api("POST", "/api/tasks", json={"scenario": "success"})
    assert reply.status_code == 201 and reply.json()["task_id"] != before
    tasks = again.api("GET", "/api/tasks").json()["tasks"]
    assert sorted(t["task_id"] for t in tasks) == sorted([before, reply.json()["task_id"]])


# -- the lane: requests that never wait run one at a time on a thread of their own ------------


def test_the_requests_the_app_names_run_on_the_lane_and_the_rest_on_the_pool() -> None:
    app = Flask(__name__)
    app.config[wsgi_bridge.LANE_CONFIG] = lambda environ: (
        environ["REQUEST_METHOD"] == "POST" and environ["PATH_INFO"] == "/q"
    )
    app.add_url_rule("/q", "q", lambda: threading.current_thread().name, methods=["GET", "POST"])
    server = AppServer(app).start()
    try:
        with ThreadPoolExecutor(8) as pool:
            posts = list(
                pool.map(lambda _: requests.post(server.url + "/q", timeout=30), range(16))
            )
        got = requests.get(server.url + "/q", timeout=30)
    finally:
        server.stop()
    assert {r.text for r in posts} == {"tiw-lane_0"}  # one thread: one at a time
    assert got.text.startswith("tiw-http")


def test_creations_go_on_the_lane_only_when_the_store_commits_later(
    make_emulator: Any,
) -> None:
    running = make_emulator()
    in_lane = running.app.config[wsgi_bridge.LANE_CONFIG]

    def environ(method: str, path: str, **headers: str) -> dict[str, str]:
        return {"REQUEST_METHOD": method, "PATH_INFO": path, **headers}

    assert running.emu.store.commits_later
    assert in_lane(environ("POST", "/api/tasks"))
    assert in_lane(environ("POST", "/", HTTP_X_TC_ACTION="CreateOfflineRecord"))
    assert not in_lane(environ("POST", "/", HTTP_X_TC_ACTION="DescribeOfflineRecord"))
    assert not in_lane(environ("POST", "/api/events")) and not in_lane(environ("GET", "/api/tasks"))
    assert PostgresStore.commits_later is False  # a creation there waits for the server


def test_concurrent_cloud_creations_in_one_room_log_each_call_once(make_emulator: Any) -> None:
    """CreateOfflineRecord is held like POST /api/tasks: the refused calls run again and answer
    LimitExceeded.TaskConcurrency, and the cloud-call log has one record per call."""
    running = make_emulator()
    body = json.dumps({"SdkAppId": 1400000001, "RoomId": 4343}).encode()

    def call(_: int) -> dict[str, Any]:
        headers = tc3_headers(
            "CreateOfflineRecord",
            body,
            secret_id=DEMO_SECRET_ID,
            secret_key=DEMO_SECRET_KEY,
            host=running.url.removeprefix("http://"),
            timestamp=int(running.emu.clock.wall()),
        )
        reply = requests.post(running.url + "/", data=body, headers=headers, timeout=30)
        return dict(reply.json()["Response"])

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(call, range(8)))
    created = [a["TaskId"] for a in answers if "TaskId" in a]
    refused = [a["Error"]["Code"] for a in answers if "Error" in a]
    assert len(created) == 1 and refused == ["LimitExceeded.TaskConcurrency"] * 7, answers
    logged = running.api("GET", "/api/cloud-calls").json()["cloud_calls"]
    assert sorted(c["request_id"] for c in logged) == sorted(a["RequestId"] for a in answers)
    assert [c["task_id"] for c in logged if c["ok"]] == created


class LaneApp:
    """A Flask app whose POST /q the server runs on its lane: each request's body, thread and
    whether it was offered the hold are recorded; a request with body `a` waits for `release`
    (after setting `first_ran`), and an offered hold is given a settled future."""

    def __init__(self) -> None:
        self.app = Flask(__name__)
        self.app.config[wsgi_bridge.LANE_CONFIG] = lambda environ: environ["PATH_INFO"] == "/q"
        self.release, self.first_ran = threading.Event(), threading.Event()
        self.seen: list[tuple[bytes, str, bool]] = []
        self.app.add_url_rule("/q", "q", self.view, methods=["POST"])

    def view(self) -> str:
        body = wsgi_bridge.request_body(request)
        hold = wsgi_bridge.hold_of(request.environ)
        thread = threading.current_thread().name.split("_")[0]
        self.seen.append((body, thread, hold is not None))
        if body == b"a":
            self.first_ran.set()
            assert self.release.wait(JOIN_S)
        if hold is not None:
            settled: Future[None] = Future()
            settled.set_result(None)
            hold(settled)
        return "ok"


def test_a_lane_request_is_held_only_when_another_waits_behind_it() -> None:
    """A client creating one task at a time gets its answer from the lane thread's own commit;
    under load the commit goes to the store's thread and the lane goes on."""
    lane = LaneApp()
    server = AppServer(lane.app).start()
    try:
        url = server.url + "/q"
        with ThreadPoolExecutor(3) as pool:
            first = pool.submit(requests.post, url, data=b"a", timeout=30)
            assert lane.first_ran.wait(JOIN_S)
            rest = [pool.submit(requests.post, url, data=body, timeout=30) for body in (b"b", b"c")]
            wait_until(
                lambda: server.lane_waiting == 2, "two requests waiting for the lane", JOIN_S
            )
            lane.release.set()
            assert all(f.result().status_code == 200 for f in [first, *rest])
    finally:
        server.stop()
    # a: nothing behind it when it started; then b or c with the other behind it, then the last
    assert [held for _, _, held in lane.seen] == [False, True, False], lane.seen


def test_with_a_nicer_lane_only_a_request_behind_another_goes_there() -> None:
    """`serve`'s lane runs at a lower priority (cli/cpu.py): only a request that comes while
    another is in progress goes there; one that comes alone runs on the pool, unheld."""
    lane = LaneApp()
    server = AppServer(lane.app, lane_nice=1).start()
    try:
        url = server.url + "/q"
        assert requests.post(url, data=b"alone", timeout=30).status_code == 200
        with ThreadPoolExecutor(3) as pool:
            first = pool.submit(requests.post, url, data=b"a", timeout=30)
            assert lane.first_ran.wait(JOIN_S)
            rest = [pool.submit(requests.post, url, data=body, timeout=30) for body in (b"b", b"c")]
            assert all(f.result().status_code == 200 for f in rest)  # not behind a's thread
            lane.release.set()
            assert first.result().status_code == 200
        assert requests.post(url, data=b"alone again", timeout=30).status_code == 200
    finally:
        server.stop()
    where = {body: (thread, held) for body, thread, held in lane.seen}
    assert where[b"alone"] == where[b"a"] == where[b"alone again"] == ("tiw-http", False), lane.seen
    assert where[b"b"][0] == where[b"c"][0] == "tiw-lane", lane.seen
