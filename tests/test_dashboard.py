"""Dashboard at the HTTP level: page and assets, token handling, and the SSE delivery stream."""

from __future__ import annotations

import inspect
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from emulator.receiver import Receiver
from emulator.web.app import create_app, get_emulator
from emulator.web.dashboard import (
    STATIC_DIR,
    DeliveryFeed,
    create_dashboard_blueprint,
    stream_deliveries,
)

KEY = "Xz4ZgayTr7rMgWQrH"


@pytest.fixture
def client() -> Iterator[Any]:
    app = create_app({"db": ":memory:", "clock": "manual", "callback_key": KEY})
    yield app.test_client()
    get_emulator(app).close()


@pytest.fixture
def token_client() -> Iterator[Any]:
    app = create_app({"db": ":memory:", "clock": "manual", "token": "t0ken"})
    yield app.test_client()
    get_emulator(app).close()


# -- page and assets -------------------------------------------------------------------------


def test_page_and_assets_are_served_locally(client: Any) -> None:
    page = client.get("/ui/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assets = re.findall(r'<(?:link|script)[^>]*(?:src|href)="([^"]+)"', html)
    assert sorted(assets) == ["static/app.css", "static/app.js", "static/favicon.svg"]
    # app.js imports its modules by relative path: every one is served, none is remote.
    modules = set(re.findall(r'from "\./([a-z]+\.js)"', client.get("/ui/static/app.js").text))
    assert {"lib.js", "log.js", "tasks.js", "actions.js"} <= modules
    for asset, mimetype in (
        ("app.js", "text/javascript"),
        ("app.css", "text/css"),
        ("favicon.svg", "image/svg+xml"),
        *((m, "text/javascript") for m in sorted(modules)),
    ):
        response = client.get(f"/ui/static/{asset}")
        assert response.status_code == 200 and response.mimetype == mimetype, asset
        assert "https://" not in response.text and "http://cdn" not in response.text
    assert client.get("/ui").status_code == 308  # /ui redirects to /ui/


def test_scripts_never_write_server_data_as_html() -> None:
    scripts = sorted(STATIC_DIR.glob("*.js"))
    assert len(scripts) >= 5
    for script in scripts:
        text = script.read_text()
        assert "innerHTML" not in text and "insertAdjacentHTML" not in text, script.name
        assert "document.write" not in text and "outerHTML" not in text, script.name


def test_secrets_never_reach_the_page(client: Any) -> None:
    assert KEY not in client.get("/ui/").get_data(as_text=True)
    shown = client.get("/api/config").get_json()["callback_key"]
    assert KEY not in shown and "*" in shown  # what the dashboard displays


# -- token -----------------------------------------------------------------------------------------


def test_token_protects_page_and_stream_and_query_token_is_accepted(token_client: Any) -> None:
    assert token_client.get("/ui/").status_code == 401
    assert token_client.get("/ui/?token=wrong").status_code == 401
    assert token_client.get("/ui/?token=t0ken").status_code == 200
    assert token_client.get("/ui/", headers={"Authorization": "Bearer t0ken"}).status_code == 200
    assert token_client.get("/ui/events").status_code == 401
    stream = token_client.get("/ui/events?token=t0ken", buffered=False)
    assert stream.status_code == 200 and stream.mimetype == "text/event-stream"
    assert next(iter(stream.response)).startswith(b"retry:")
    stream.close()
    assert token_client.get("/ui/static/app.js").status_code == 200  # code only, no data


def test_query_token_is_only_for_the_dashboard(token_client: Any) -> None:
    assert token_client.get("/api/tasks?token=t0ken").status_code == 401
    authorised = token_client.get("/api/tasks", headers={"Authorization": "Bearer t0ken"})
    assert authorised.status_code == 200


def test_streams_are_capped_so_tabs_cannot_starve_the_api(client: Any) -> None:
    client.application.register_blueprint(
        create_dashboard_blueprint(max_streams=1), name="one_ui", url_prefix="/one"
    )
    first = client.get("/one/events", buffered=False)
    assert first.status_code == 200
    refused = client.get("/one/events")
    assert refused.status_code == 503
    assert refused.get_json()["error"]["code"] == "too_many_streams"
    first.close()  # a closed stream frees its slot
    again = client.get("/one/events", buffered=False)
    assert again.status_code == 200
    again.close()


# -- the stream, as a generator ----------------------------------------------------------------


def _collect(feed: DeliveryFeed, **kw: Any) -> list[str]:
    kw.setdefault("lifetime_s", 0.2)
    kw.setdefault("heartbeat_s", 60.0)
    kw.setdefault("client_gone", lambda: False)
    return list(stream_deliveries(feed, poll_s=0.01, **kw))


def test_stream_ends_after_its_lifetime() -> None:
    messages = _collect(DeliveryFeed(4))
    assert messages[0].startswith("retry: 1000\nevent: hello\n")
    assert all(m.endswith("\n\n") for m in messages)


def test_stream_ends_when_the_client_is_gone() -> None:
    messages = _collect(DeliveryFeed(4), lifetime_s=3600, client_gone=lambda: True)
    assert len(messages) == 1  # the hello, then nothing: the loop saw the client leave


def test_stream_sends_heartbeat_comments() -> None:
    messages = _collect(DeliveryFeed(4), lifetime_s=0.1, heartbeat_s=0.0)
    assert ": ping\n\n" in messages


def test_stream_sends_queued_deliveries_as_json() -> None:
    feed = DeliveryFeed(4)
    feed.put({"id": 1, "task_id": "t", "error": "ClientConnectorError: 连接被拒绝\nline two"})
    messages = _collect(feed)
    assert messages[1].startswith("event: delivery\ndata: ")
    data_lines = [line for line in messages[1].splitlines() if line.startswith("data: ")]
    assert len(data_lines) == 1  # a newline inside the data cannot split the message
    assert json.loads(data_lines[0][6:])["error"].endswith("连接被拒绝\nline two")


def test_a_full_feed_never_blocks_and_asks_the_client_to_resync() -> None:
    feed = DeliveryFeed(2)
    for n in range(5):
        feed.put({"id": n})  # the engine thread: must return at once even when full
    messages = _collect(feed)
    assert messages[1].startswith("event: resync\n")
    assert not any(m.startswith("event: delivery") for m in messages)  # stale ones dropped


# -- the stream over real HTTP (the served app) ------------------------------------------------


def _events(response: requests.Response) -> Iterator[tuple[str, Any]]:
    """(event, data) pairs from an SSE response; comments and retry lines skipped."""
    event, data = "message", ""
    for line in response.iter_lines(decode_unicode=True):
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            data = line[6:]
        elif line == "" and data:
            yield event, json.loads(data)
            event, data = "message", ""


def _watch_unsubscribe(emu: Any) -> threading.Event:
    """Set when a stream's engine listener is removed (the stream ended and cleaned up)."""
    done = threading.Event()
    subscribe = emu.subscribe

    def tracking(listener: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        unsubscribe = subscribe(listener)

        def wrapped() -> None:
            unsubscribe()
            done.set()

        return wrapped

    emu.subscribe = tracking
    return done


def test_stream_pushes_every_delivery_attempt(emulator: Any, receiver: Receiver) -> None:
    with emulator.http.get(emulator.url + "/ui/events", stream=True, timeout=30) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        events = _events(response)
        assert next(events)[0] == "hello"
        task = emulator.api("POST", "/api/tasks", json={"scenario": "success"}).json()
        emulator.api("POST", "/api/clock/advance", json={"seconds": 86400})
        pushed = [next(events) for _ in task["events"]]
    assert {name for name, _ in pushed} == {"delivery"}
    logged = emulator.api("GET", f"/api/deliveries?task_id={task['task_id']}").json()
    assert [d for _, d in pushed] == logged["deliveries"]
    assert len(receiver.received) == len(pushed)


def test_stream_ends_and_unsubscribes_when_the_server_stops(make_emulator: Any) -> None:
    running = make_emulator()
    unsubscribed = _watch_unsubscribe(running.emu)
    response = running.http.get(running.url + "/ui/events", stream=True, timeout=30)
    events = _events(response)
    assert next(events)[0] == "hello"
    running.server.stop()
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        list(events)  # the server closed the connection mid-stream: the body ends
    assert unsubscribed.wait(10)
    response.close()


def test_stream_notices_a_closed_client_and_unsubscribes(make_emulator: Any) -> None:
    running = make_emulator()
    running.app.register_blueprint(
        create_dashboard_blueprint(heartbeat_s=0.05), name="fast_ui", url_prefix="/fast"
    )
    unsubscribed = _watch_unsubscribe(running.emu)
    response = running.http.get(running.url + "/fast/events", stream=True, timeout=30)
    assert next(_events(response))[0] == "hello"
    response.close()  # like a closed tab: heartbeats then fail and the worker thread is freed
    assert unsubscribed.wait(10)


def test_a_closed_clients_stream_slot_is_free_at_once(make_emulator: Any) -> None:
    """With the default heartbeat (seconds away), the slot is back well before the next one."""
    running = make_emulator()
    running.app.register_blueprint(
        create_dashboard_blueprint(max_streams=1), name="one_slot_ui", url_prefix="/one"
    )
    response = running.http.get(running.url + "/one/events", stream=True, timeout=30)
    # Keep the reader: a discarded one closes the response (and the connection) when collected,
    # and the server, which sees a client leave at once, would free the slot there and then.
    events = _events(response)
    assert next(events)[0] == "hello"
    assert running.api("GET", "/one/events").status_code == 503  # the only slot is taken
    response.close()  # the tab goes away
    closed_at = time.monotonic()
    deadline = closed_at + 5
    while True:
        with running.http.get(running.url + "/one/events", stream=True, timeout=30) as again:
            if again.status_code == 200:
                break
        assert time.monotonic() < deadline, "the stream slot was not freed"
        time.sleep(0.05)  # polling the server for the slot: no event to wait on from here
    assert time.monotonic() - closed_at < 1.5


def test_stream_has_a_bounded_lifetime(make_emulator: Any) -> None:
    running = make_emulator()
    running.app.register_blueprint(
        create_dashboard_blueprint(stream_lifetime_s=0.2), name="short_ui", url_prefix="/short"
    )
    with running.http.get(running.url + "/short/events", stream=True, timeout=30) as response:
        assert [name for name, _ in _events(response)] == ["hello"]  # then the body ends


def test_readme_states_the_stream_defaults() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("<!-- section:dashboard -->")[1].split("<!-- /section:dashboard -->")[0]
    defaults = inspect.signature(create_dashboard_blueprint).parameters
    assert f"every {defaults['heartbeat_s'].default:g} s" in " ".join(section.split())
    assert f"after {defaults['stream_lifetime_s'].default:g} s" in " ".join(section.split())
    assert f"At most {defaults['max_streams'].default} streams" in " ".join(section.split())
