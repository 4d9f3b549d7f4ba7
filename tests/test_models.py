"""Shapes declared once: bad input anywhere is a 4xx naming the field, never a 500; lists page."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from typing import Any

import msgspec
import pytest

from emulator.core import models, parsing
from emulator.core.config import RuntimeConfig, Settings
from emulator.core.errors import EmulatorError
from emulator.receiver import Receiver, Reply

BIG = 99999999999999999999999  # past int64, as in the issue
INT64 = 2**63


def _refused(reply: Any, field: str | None, code: str | None = None) -> dict[str, Any]:
    """A 4xx in the control API's one error format, naming `field` when one is at fault."""
    assert 400 <= reply.status_code < 500, (reply.status_code, reply.text)
    error = reply.json()["error"]
    assert set(error) == {"code", "message", "details"} and error["message"], error
    if code is not None:
        assert error["code"] == code, error
    if field is not None:
        assert error["details"].get("field") == field, error
    return dict(error)


def _raw(running: Any, method: str, path: str, text: str) -> Any:
    """Send `text` as the body byte for byte (json= would refuse NaN or escape surrogates)."""
    headers = {"Content-Type": "application/json"}
    return running.api(method, path, data=text.encode(), headers=headers)


TASK_BODIES = [
    ({"room_id": BIG}, "room_id"),
    ({"room_id": INT64}, "room_id"),
    ({"room_id": -1}, "room_id"),
    ({"room_id": 0}, "room_id"),
    ({"room_id": 4294967296}, "room_id"),
    ({"seed": -1}, "seed"),
    ({"seed": INT64}, "seed"),
    ({"sdk_app_id": INT64}, "sdk_app_id"),
    ({"sdk_app_id": 0}, "sdk_app_id"),
    ({"group_id": "g" * 257}, "group_id"),
    ({"callback_url": "http://x/" + "a" * 2100}, "callback_url"),
    ({"params": {"duration_s": 1e308}}, "params.duration_s"),
    ({"params": {"participants": 200000}}, "params.participants"),
    ({"params": {"queue_delay_s": [0, 1e9]}}, "params.queue_delay_s"),
    ({"params": {"duration_s": BIG}}, "params.duration_s"),
    ({"params": {"nested": {"deep": [1, BIG]}}}, "params.nested.deep[1]"),
    ({"scenario": 7}, "scenario"),
    ({"colour": "red"}, "colour"),
]


@pytest.mark.parametrize(("body", "field"), TASK_BODIES)
def test_task_creation_refuses_out_of_range_values(
    emulator: Any, body: dict[str, Any], field: str
) -> None:
    _refused(emulator.api("POST", "/api/tasks", json=body), field)
    assert emulator.api("GET", "/api/tasks").json()["tasks"] == []


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("/api/tasks", '{"seed": NaN}'),
        ("/api/tasks", '{"params": {"duration_s": Infinity}}'),
        ("/api/tasks", '{"params": {"jitter": -Infinity}}'),
        ("/api/tasks", '{"group_id": "\\ud800"}'),
        ("/api/tasks", '{"group_id": "a\\udc00b"}'),
        ("/api/tasks", '{"params": {"x": 1e400}}'),
        ("/api/events", '{"event_type": "X", "event_data": {"RoomId": NaN}}'),
        ("/api/events", '{"event_type": "X\\ud800", "event_data": {}}'),
        ("/api/clock/advance", '{"seconds": NaN}'),
        ("/api/scenarios", '{"name": "n", "class": {"duration_s": Infinity}}'),
        ("/api/rules", '{"match": {"group_id": "\\udfff"}, "scenario": "success"}'),
    ],
)
def test_nan_infinity_and_lone_surrogates_are_refused_when_parsed(
    emulator: Any, path: str, text: str
) -> None:
    error = _refused(_raw(emulator, "POST", path, text), None)
    assert error["code"] in ("invalid_json", "invalid_field")
    assert emulator.api("GET", "/api/tasks").json()["tasks"] == []
    assert emulator.api("GET", "/api/deliveries").json()["deliveries"] == []


def test_config_patch_refuses_what_would_break_later_work(emulator: Any) -> None:
    before = emulator.api("GET", "/api/config").json()
    for body, field in [
        ({"sdk_app_id": BIG}, "sdk_app_id"),
        ({"sdk_app_id": 0}, "sdk_app_id"),
        ({"speed": 0}, "speed"),
        ({"speed": 1e7}, "speed"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"timeout_s": 601}, "timeout_s"),
        ({"sign_ttl_s": 0}, "sign_ttl_s"),
        ({"sign_ttl_s": 10**9}, "sign_ttl_s"),
        ({"retry": {"max_attempts": 3, "interval_s": 1e308}}, "retry.interval_s"),
        ({"retry": {"max_attempts": 3, "interval_s": -1}}, "retry.interval_s"),
        ({"retry": {"max_attempts": 101, "interval_s": 1}}, "retry.max_attempts"),
        ({"retry": {"max_attempts": 100, "interval_s": 86400, "backoff": 10}}, "retry"),
        ({"retry": {"max_attempts": 3}}, "retry.interval_s"),
        ({"clock": "sometimes"}, "clock"),
        ({"strict_ack": "yes"}, "strict_ack"),
        ({"run_seed": 5}, "run_seed"),
    ]:
        _refused(emulator.api("PATCH", "/api/config", json=body), field)
    _refused(_raw(emulator, "PATCH", "/api/config", '{"retry": {"interval_s": NaN}}'), None)
    after = emulator.api("GET", "/api/config")
    assert after.json() == before  # valid JSON, nothing changed
    assert emulator.api("POST", "/api/tasks", json={}).status_code == 201  # still works


def test_config_shows_the_run_seed_read_only(make_emulator: Any) -> None:
    running = make_emulator(seed=1234)
    assert running.api("GET", "/api/config").json()["run_seed"] == 1234
    error = _refused(running.api("PATCH", "/api/config", json={"run_seed": 1}), "run_seed")
    assert "read-only" in error["message"]


@pytest.mark.parametrize(
    "path",
    [
        f"/api/deliveries/{BIG}/redeliver",
        f"/api/deliveries/{INT64}/redeliver",
        "/api/deliveries/0/redeliver",
        "/api/deliveries/-1/redeliver",
    ],
)
def test_path_ids_past_int64_are_not_found(emulator: Any, path: str) -> None:
    assert emulator.api("POST", path).status_code == 404
    rule_path = path.replace("/api/deliveries/", "/api/rules/").replace("/redeliver", "")
    assert emulator.api("DELETE", rule_path).status_code == 404


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/tasks?limit=0", "limit"),
        ("/api/tasks?limit=1001", "limit"),
        ("/api/tasks?limit=-1", "limit"),
        (f"/api/tasks?limit={BIG}", "limit"),
        ("/api/tasks?offset=-1", "offset"),
        (f"/api/tasks?offset={2**31 + 1}", "offset"),
        (f"/api/tasks?room_id={BIG}", "room_id"),
        (f"/api/tasks?sdk_app_id={INT64}", "sdk_app_id"),
        ("/api/tasks?outcome=maybe", "outcome"),
        ("/api/tasks?status=done", "status"),
        ("/api/deliveries?limit=-1", "limit"),
        ("/api/deliveries?ok=maybe", "ok"),
        ("/api/deliveries?status_code=99999", "status_code"),
        (f"/api/deliveries?before={BIG}", "before"),
        ("/api/deliveries?after=0", "after"),
        ("/api/deliveries?colour=red", "colour"),
        ("/api/cloud-calls?limit=5000", "limit"),
        (f"/api/cloud-calls?before={INT64}", "before"),
    ],
)
def test_list_queries_are_bounded(emulator: Any, path: str, field: str) -> None:
    _refused(emulator.api("GET", path), field)


def test_bad_rules_events_scenarios_and_advances_name_the_field(emulator: Any) -> None:
    rule = {"match": {"room_id": BIG}, "scenario": "success"}
    _refused(emulator.api("POST", "/api/rules", json=rule), "match.room_id")
    rule = {"match": {"sdk_app_id": 1}, "scenario": "success", "extra": 1}
    _refused(emulator.api("POST", "/api/rules", json=rule), "extra", "unknown_field")
    event = {"event_type": "X", "event_data": {"RoomId": BIG}}
    _refused(emulator.api("POST", "/api/events", json=event), "event_data.RoomId")
    event = {"event_type": "X", "event_data": {}, "sdk_app_id": INT64}
    _refused(emulator.api("POST", "/api/events", json=event), "sdk_app_id")
    doc = {"name": "huge", "class": {"participants": 200000}}
    _refused(emulator.api("POST", "/api/scenarios", json=doc), "class.participants")
    doc = {"name": "long", "class": {"duration_s": 1e308}}
    _refused(emulator.api("POST", "/api/scenarios", json=doc), "class.duration_s")
    _refused(emulator.api("POST", "/api/clock/advance", json={"seconds": 1e308}), "seconds")
    _refused(emulator.api("POST", "/api/tasks/x/cancel", json={"why": 1}), "why")
    assert emulator.api("GET", "/api/rules").json()["rules"] == []


def test_every_bad_body_is_a_client_error_never_a_500(emulator: Any) -> None:
    """Odd JSON documents at every body-taking route: 4xx, the state intact."""
    bodies = ["", "null", "[]", "1", '"x"', "{", '{"a": 1}', "{}", '{"": {}}', "[" * 5000]
    routes = [
        ("PATCH", "/api/config"),
        ("POST", "/api/tasks"),
        ("POST", "/api/events"),
        ("POST", "/api/clock/advance"),
        ("POST", "/api/scenarios"),
        ("POST", "/api/rules"),
    ]
    for method, path in routes:
        for text in bodies:
            reply = _raw(emulator, method, path, text)
            assert reply.status_code < 500, (method, path, text[:20], reply.text)
    assert emulator.api("GET", "/api/rules").json()["rules"] == []


def test_task_creation_warns_when_no_callback_url_is_set(
    emulator: Any, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    assert emulator.api("POST", "/api/tasks", json={}).json()["warnings"] == []
    emulator.api("PATCH", "/api/config", json={"callback_url": None}).raise_for_status()
    with caplog.at_level(logging.WARNING, logger="tiw_emulator"):
        created = emulator.api("POST", "/api/tasks", json={}).json()
    assert created["warnings"] and "no callback URL" in created["warnings"][0]
    logged = [r.getMessage() for r in caplog.records if r.name == "tiw_emulator"]
    assert any(created["task_id"] in m and "no callback URL" in m for m in logged)
    with_url = emulator.api("POST", "/api/tasks", json={"callback_url": receiver.url}).json()
    assert with_url["warnings"] == []
    assert "warnings" not in emulator.api("GET", f"/api/tasks/{created['task_id']}").json()


# -- paging and filters --------------------------------------------------------------------------
def test_tasks_filter_and_page_newest_first(emulator: Any) -> None:
    ids = []
    for room in range(1, 6):
        sdk = 1400000001 if room % 2 else 1400000002
        body = {"room_id": room, "sdk_app_id": sdk, "scenario": "success"}
        ids.append(emulator.api("POST", "/api/tasks", json=body).json()["task_id"])
    failing = {"room_id": 9, "scenario": "transcode-failure"}
    failed = emulator.api("POST", "/api/tasks", json=failing).json()["task_id"]
    newest_first = [failed, *reversed(ids)]

    first = emulator.api("GET", "/api/tasks?limit=4").json()
    assert [t["task_id"] for t in first["tasks"]] == newest_first[:4]
    assert first["next_offset"] == 4
    rest = emulator.api("GET", "/api/tasks?limit=4&offset=4").json()
    assert [t["task_id"] for t in rest["tasks"]] == newest_first[4:]
    assert rest["next_offset"] is None

    even = emulator.api("GET", "/api/tasks?sdk_app_id=1400000002").json()["tasks"]
    assert sorted(t["room_id"] for t in even) == [2, 4]
    emulator.api("POST", "/api/clock/advance", json={"seconds": 86400}).raise_for_status()
    bad = emulator.api("GET", "/api/tasks?outcome=failure").json()["tasks"]
    assert [t["task_id"] for t in bad] == [failed]
    code = "FailedOperation.Transcode"
    assert [
        t["task_id"] for t in emulator.api("GET", f"/api/tasks?error_code={code}").json()["tasks"]
    ] == [failed]
    assert emulator.api("GET", "/api/tasks?outcome=success&room_id=9").json()["tasks"] == []


def test_deliveries_filter_and_page_by_cursor(emulator: Any, receiver: Receiver) -> None:
    data = {"TaskId": "t" * 20, "RoomId": 1, "Progress": 1}
    sent = [
        emulator.api("POST", "/api/events", json={"event_type": "A", "event_data": data}).json()
        for _ in range(5)
    ]
    receiver.respond = lambda r: Reply(status=503)
    failed = emulator.api("POST", "/api/events", json={"event_type": "B", "event_data": data})
    ids = [d["id"] for d in sent] + [failed.json()["id"]]

    page = emulator.api("GET", "/api/deliveries?limit=4").json()
    assert [d["id"] for d in page["deliveries"]] == ids[-4:]  # the newest, oldest first
    assert page["next_before"] == ids[-4]
    older = emulator.api("GET", f"/api/deliveries?limit=4&before={page['next_before']}").json()
    assert [d["id"] for d in older["deliveries"]] == ids[:2] and older["next_before"] is None
    after = emulator.api("GET", f"/api/deliveries?after={ids[3]}").json()["deliveries"]
    assert [d["id"] for d in after] == ids[4:]

    assert [
        d["id"] for d in emulator.api("GET", "/api/deliveries?ok=false").json()["deliveries"]
    ] == ids[-1:]
    assert len(emulator.api("GET", "/api/deliveries?ok=true").json()["deliveries"]) == 5
    assert [
        d["status_code"]
        for d in emulator.api("GET", "/api/deliveries?status_code=503").json()["deliveries"]
    ] == [503]
    assert len(emulator.api("GET", "/api/deliveries?event_type=A").json()["deliveries"]) == 5


def test_task_events_limit(emulator: Any) -> None:
    task = emulator.api("POST", "/api/tasks", json={"scenario": "success"}).json()
    events = emulator.api("GET", f"/api/tasks/{task['task_id']}/events?limit=2").json()["events"]
    assert [e["seq"] for e in events] == [e["seq"] for e in task["events"][:2]]


# -- the models themselves -------------------------------------------------------------------------
def test_config_patch_is_derived_from_config() -> None:
    config = {f.name for f in msgspec.structs.fields(models.Config)}
    patch = {f.name for f in msgspec.structs.fields(models.ConfigPatch)}
    runtime = set(Settings.RUNTIME_KEYS)
    assert patch == runtime == config - set(models.READ_ONLY_CONFIG)


def test_settings_go_through_the_same_bounds() -> None:
    with pytest.raises(EmulatorError) as err:
        RuntimeConfig().patched({"speed": float("nan")})
    assert err.value.details["field"] == "speed"
    with pytest.raises(EmulatorError) as err:
        RuntimeConfig().patched({"sdk_app_id": BIG})
    assert err.value.details["field"] == "sdk_app_id"
    assert RuntimeConfig().patched({"retry": "fast", "speed": 2}).stored()["speed"] == 2.0


def test_parse_errors_name_nested_fields_and_list_allowed_names() -> None:
    with pytest.raises(EmulatorError) as err:
        parsing.decode_body(b'{"match": {"colour": 1}, "scenario": "s"}', models.RuleCreate)
    assert err.value.code == "unknown_field"
    assert err.value.details == {
        "field": "match.colour",
        "allowed": ["group_id", "room_id", "sdk_app_id"],
    }
    with pytest.raises(EmulatorError) as err:
        parsing.decode_body(b'{"event_data": {}}', models.EventCreate)
    assert err.value.details["field"] == "event_type" and "required" in err.value.message
    with pytest.raises(EmulatorError) as err:
        parsing.parse_query({"status": "done"}, models.TaskQuery)
    assert "queued, processing, finished, cancelled" in err.value.message


def test_encoding_keeps_non_ascii_and_order() -> None:
    encoded = parsing.encode({"b": "录制", "a": 1})
    assert encoded.decode() == '{"b":"录制","a":1}'
    assert json.loads(encoded) == {"b": "录制", "a": 1}


def test_scenario_files_refuse_non_finite_numbers(tmp_path: Any) -> None:
    """YAML has .nan and .inf, which pass every schema bound (NaN compares false)."""
    from emulator.core.scenarios import load_file

    path = tmp_path / "odd.yaml"
    path.write_text("name: odd\nclass:\n  duration_s: .nan\n", encoding="utf-8")
    with pytest.raises(EmulatorError) as err:
        load_file(path)
    assert err.value.details["field"] == "class.duration_s" and "finite" in err.value.message
    path.write_text("name: odd\nprocessing:\n  queue_delay_s: [1, .inf]\n", encoding="utf-8")
    with pytest.raises(EmulatorError) as err:
        load_file(path)
    assert err.value.details["field"] == "processing.queue_delay_s"


def test_a_retry_object_that_borrows_a_name_is_custom(emulator: Any) -> None:
    body = {"retry": {"name": "fast", "max_attempts": 5, "interval_s": 2}}
    retry = emulator.api("PATCH", "/api/config", json=body).json()["retry"]
    assert retry == {"name": "custom", "max_attempts": 5, "interval_s": 2.0, "backoff": 1.0}
    assert emulator.api("PATCH", "/api/config", json={"retry": "fast"}).json()["retry"] == "fast"


ODD_VALUES: list[Any] = [None, True, 0, -1, 2**63, 2**64, 1.5, -1e308, "", "x" * 300, [], {}, [1]]


def test_every_field_of_every_body_and_query_with_odd_values_is_never_a_500() -> None:
    """Type confusion at each declared field (from the models themselves): 2xx or 4xx only."""
    from emulator.web.app import create_app, get_emulator

    app = create_app({"db": ":memory:", "clock": "manual"})
    client = app.test_client()
    bodies = [
        ("PATCH", "/api/config", models.ConfigPatch, {}),
        ("POST", "/api/tasks", models.TaskCreate, {}),
        ("POST", "/api/events", models.EventCreate, {"event_type": "X", "event_data": {}}),
        ("POST", "/api/clock/advance", models.ClockAdvance, {"seconds": 1}),
        ("POST", "/api/rules", models.RuleCreate, {"match": {"room_id": 1}, "scenario": "success"}),
    ]
    nested = [
        ("PATCH", "/api/config", "retry", models.RetryPolicy, {"max_attempts": 2, "interval_s": 1}),
        ("POST", "/api/rules", "match", models.RuleMatch, {}),
    ]
    queries = [
        ("/api/tasks", models.TaskQuery),
        ("/api/deliveries", models.DeliveryQuery),
        ("/api/cloud-calls", models.CloudCallQuery),
        ("/api/tasks/x/events", models.EventQuery),
    ]
    try:
        for method, path, model, base in bodies:
            for f in msgspec.structs.fields(model):
                for value in ODD_VALUES:
                    reply = client.open(path, method=method, json={**base, f.encode_name: value})
                    assert reply.status_code < 500, (path, f.encode_name, value, reply.text)
        for method, path, key, model, base in nested:
            outer = {"scenario": "success"} if key == "match" else {}
            for f in msgspec.structs.fields(model):
                for value in ODD_VALUES:
                    sent = {**outer, key: {**base, f.encode_name: value}}
                    reply = client.open(path, method=method, json=sent)
                    assert reply.status_code < 500, (path, key, f.encode_name, value, reply.text)
        for path, model in queries:
            for f in msgspec.structs.fields(model):
                for text in ["", "-1", "0", str(2**63), "1e400", "nan", "true", "%00", "x" * 300]:
                    reply = client.get(f"{path}?{f.encode_name}={text}")
                    assert reply.status_code < 500, (path, f.encode_name, text, reply.text)
        client.post("/api/clock/advance", json={"seconds": 86400})
        config = client.get("/api/config")
        assert config.status_code == 200 and json.loads(config.get_data()) is not None
    finally:
        get_emulator(app).close()


_FIRST_USE_SCRIPT = textwrap.dedent(
    """
    import sys, threading
    from typing import Optional
    import msgspec
    from emulator.core import parsing

    sys.setswitchinterval(1e-6)  # hand the GIL over as often as possible
    ROUNDS, THREADS = int(sys.argv[1]), 16
    RAW = b'{"x": 1, "inner": {"a": 2, "b": "q"}, "items": [{"a": 3}], "m": {"k": {"a": 4}}}'
    for n in range(ROUNDS):
        inner = msgspec.defstruct(f"Inner{n}", [("a", int), ("b", Optional[str], None)])
        outer = msgspec.defstruct(
            f"Outer{n}",
            [("x", int), ("inner", Optional[inner], None), ("items", list[inner], []),
             ("m", dict[str, inner], {})],
        )
        start = threading.Barrier(THREADS)

        def use(k):
            start.wait()
            if k % 3 == 0:
                parsing.decode_body(RAW, outer)
            elif k % 3 == 1:
                parsing.convert({"x": 1, "inner": {"a": 2}}, outer)
            else:  # what the OpenAPI document does
                parsing.schema_components([outer], ref_template="#/{name}")

        threads = [threading.Thread(target=use, args=(k,)) for k in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    print("ok")
    """
)


def test_a_models_first_use_from_many_threads_at_once_is_safe() -> None:
    """msgspec 0.22 filled a Struct type's field table on first use without a lock; 16 threads
    using a new type at once (decoding, converting, or building its JSON schema as the OpenAPI
    route does) crashed the process (SIGSEGV; a fresh `serve` under its first burst of requests
    did). The project asks for 0.23 and builds each decoder under its own lock; this fails if
    either safety is lost. Run in a child process, so that a crash fails the test, not the
    session."""
    done = subprocess.run(
        [sys.executable, "-c", _FIRST_USE_SCRIPT, "300"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-2000:]}"
    assert done.stdout.strip() == "ok"
