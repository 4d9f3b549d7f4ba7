"""QA commands of `tiw-emulator`: run, scenarios [validate], sign, verify and send."""

from __future__ import annotations

import argparse
import json
import queue
import random
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

import yaml

from emulator.core import payloads
from emulator.core.errors import InvalidInput, ScenarioInvalid
from emulator.core.signing import SignMode, sign, verify

BAR_WIDTH = 30
SHORT_EVENTS = {"progress": payloads.PROGRESS_CHANGED, "finished": payloads.FINISHED}


def register(sub: Any) -> None:
    """Add the QA subcommands to the `tiw-emulator` parser."""
    run = sub.add_parser("run", help="play one scenario against your backend, then report")
    run.add_argument("scenario", help="scenario name (see `tiw-emulator scenarios`)")
    run.add_argument("--callback-url", required=True, help="your backend's callback URL")
    run.add_argument("--callback-key", help="CallbackKey to sign with (unsigned if omitted)")
    run.add_argument(
        "--speed", type=float, default=300.0, help="emulated s per wall s (default 300)"
    )
    run.add_argument("--param", action="append", default=[], metavar="K=V", help="task override")
    run.add_argument("--room-id", type=int, help="RoomId (default: random)")
    run.add_argument("--seed", type=int, help="seed for reproducible EventData")
    run.add_argument("--retry", default="fast", help="retry policy: none, fast, tencent")
    run.add_argument("--scenarios", dest="scenarios_dir", metavar="DIR", help="extra scenarios")
    run.add_argument("--timeout", type=float, default=600.0, help="give up after S wall seconds")
    run.set_defaults(handler=cmd_run)

    scenarios = sub.add_parser("scenarios", help="list the scenario catalogue, or validate files")
    scenarios.add_argument("--scenarios", dest="scenarios_dir", metavar="DIR", help="also list DIR")
    scenarios.set_defaults(handler=cmd_scenarios)
    nested = scenarios.add_subparsers(dest="scenarios_command", metavar="validate")
    validate = nested.add_parser("validate", help="check scenario files offline")
    validate.add_argument("files", nargs="+", metavar="FILE")
    validate.set_defaults(handler=cmd_validate)

    signer = sub.add_parser("sign", help="print the callback Sign for a key and ExpireTime")
    signer.add_argument("--key", required=True, help="CallbackKey")
    signer.add_argument("--expire", required=True, type=int, help="ExpireTime (Unix seconds)")
    signer.set_defaults(handler=cmd_sign)

    verifier = sub.add_parser("verify", help="check a callback body's Sign and ExpireTime")
    verifier.add_argument("--key", required=True, help="CallbackKey")
    verifier.add_argument("--body", required=True, metavar="FILE", help="callback JSON, - = stdin")
    verifier.add_argument("--now", type=float, help="check expiry at this time (default: now)")
    verifier.set_defaults(handler=cmd_verify)

    send = sub.add_parser("send", help="post one event to a backend and print its response")
    send.add_argument("event", help="OfflineRecordProgressChanged / OfflineRecordFinished")
    send.add_argument("--callback-url", required=True, help="where to post")
    send.add_argument("--data", help="EventData as JSON (default: a realistic example)")
    send.add_argument("--key", help="CallbackKey to sign with")
    send.add_argument("--sign", choices=[m.value for m in SignMode], default="valid")
    send.add_argument("--sdk-app-id", type=int, help="SdkAppId (default 1400000001)")
    send.set_defaults(handler=cmd_send)


# -- run ---------------------------------------------------------------------------------------
def parse_params(items: Iterable[str]) -> dict[str, Any]:
    """`k=v` pairs; values read as YAML scalars, so 600, true and [10, 20] keep their types."""
    params: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise InvalidInput("--param", f"{item!r} is not K=V, e.g. duration_s=600")
        try:
            params[key] = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            params[key] = raw
    return params


def _emulator(**settings: Any) -> Any:
    from emulator.core.config import Settings
    from emulator.core.service import Emulator

    # Explicit settings only: a TIW_EMULATOR_DB in the environment must not leak into a QA run.
    loaded = Settings.load({"db": ":memory:", **settings}, env={})
    return Emulator(loaded).start()


def cmd_run(args: argparse.Namespace) -> int:
    params = parse_params(args.param)
    emu = _emulator(
        # A fresh seed per run, so TaskIds and rooms do not repeat across runs against one backend.
        seed=args.seed if args.seed is not None else random.getrandbits(32),
        clock="real",
        speed=args.speed,
        callback_url=args.callback_url,
        callback_key=args.callback_key,
        retry=args.retry,
        scenarios_dir=args.scenarios_dir,
    )
    attempts: queue.Queue[dict[str, Any]] = queue.Queue()
    unsubscribe = emu.subscribe(attempts.put)
    try:
        task = emu.create_task(
            scenario=args.scenario, room_id=args.room_id, seed=args.seed, params=params
        )
        print(
            f"tiw-emulator run: {task['scenario']} task {task['task_id']} room {task['room_id']}"
            f" -> {args.callback_url} (x{args.speed:g})",
            file=sys.stderr,
        )
        timed_out = _follow(emu, task["task_id"], attempts, args.timeout)
        task = emu.get_task(task["task_id"])
        print_table(emu.deliveries(task_id=task["task_id"], limit=1000)[0], sys.stdout)
        return _summarise(task, timed_out)
    finally:
        unsubscribe()
        emu.close()


def _follow(emu: Any, task_id: str, attempts: queue.Queue[dict[str, Any]], timeout: float) -> bool:
    """Draw the live bar and one line per attempt until nothing is pending; True on timeout."""
    started = time.monotonic()
    wake = threading.Event()
    live = sys.stderr.isatty()  # redraw the bar in place only on a terminal, not in a log
    while True:
        task = emu.get_task(task_id)
        while not attempts.empty():
            d = attempts.get()
            if live:
                _erase_bar()
            print(f"  {time.monotonic() - started:7.2f}s  {_attempt_line(d)}", file=sys.stderr)
        pending = any(e["state"] in ("scheduled", "delivering") for e in task["events"])
        if live or not pending:
            _draw_bar(task)
        if not pending:
            sys.stderr.write("\n")
            return False
        if time.monotonic() - started > timeout:
            sys.stderr.write(f"\ntimed out after {timeout:g} s with events still pending\n")
            return True
        wake.wait(0.05)


def _draw_bar(task: dict[str, Any]) -> None:
    done = round(BAR_WIDTH * task["progress"] / 100)
    bar = "#" * done + "-" * (BAR_WIDTH - done)
    sent = sum(1 for e in task["events"] if e["state"] == "delivered")
    sys.stderr.write(
        f"\r[{bar}] {task['progress']:3d}% {task['status']:<10} {sent}/{len(task['events'])}"
        " callbacks delivered"
    )
    sys.stderr.flush()


def _erase_bar() -> None:
    sys.stderr.write("\r" + " " * (BAR_WIDTH + 50) + "\r")


def _attempt_line(d: dict[str, Any]) -> str:
    progress = json.loads(d["request_body"]).get("EventData", {}).get("Progress", "")
    result = f"{d['status_code']} {'ok' if d['ok'] else 'refused'}" if d["status_code"] else "-"
    return (
        f"{d['event_type'].removeprefix('OfflineRecord'):<15} {progress!s:>4}  attempt"
        f" {d['attempt']}  {result}  {d['error'] or ''}"
    ).rstrip()


def print_table(deliveries: list[dict[str, Any]], out: IO[str]) -> None:
    head = ("#", "event", "progress", "attempt", "status", "ok", "ms", "error")
    rows = [head]
    for n, d in enumerate(deliveries, start=1):
        data = json.loads(d["request_body"]).get("EventData", {})
        rows.append(
            (
                str(n),
                d["event_type"],
                str(data.get("Progress", "")),
                str(d["attempt"]),
                str(d["status_code"] or "-"),
                "yes" if d["ok"] else "NO",
                f"{d['duration_ms']:.1f}",
                (d["error"] or "")[:60],
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip(), file=out)


def _summarise(task: dict[str, Any], timed_out: bool) -> int:
    events = task["events"]
    failed = [e for e in events if e["state"] == "failed"]
    dropped = sum(1 for e in events if e["state"] == "dropped")
    outcome = task["outcome"] or "-"
    if task["error"]:
        outcome += f" {task['error']['Code']}"
    note = " (stalled: this scenario never finishes)" if task["status"] == "processing" else ""
    print(
        f"\ntask {task['task_id']}: {task['status']} {outcome}{note}; {len(events)} callbacks"
        f" planned, {sum(1 for e in events if e['state'] == 'delivered')} acknowledged,"
        f" {len(failed)} not acknowledged, {dropped} dropped by the scenario"
    )
    if failed or timed_out:
        print("error: the backend did not acknowledge every callback", file=sys.stderr)
        return 1
    return 0


# -- scenarios -------------------------------------------------------------------------------
def cmd_scenarios(args: argparse.Namespace) -> int:
    from emulator.core.scenarios import BUILTIN_DIR, load_dir

    found = {s.name: s for s in load_dir(BUILTIN_DIR)}
    if args.scenarios_dir:
        found.update({s.name: s for s in load_dir(Path(args.scenarios_dir))})
    width = max(len(n) for n in found)
    for name in sorted(found):
        print(f"{name:<{width}}  {found[name].description}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from emulator.core.scenarios import load_file

    status = 0
    for file in args.files:
        try:
            scenario = load_file(Path(file))
        except ScenarioInvalid as err:
            print(f"invalid: {err.message}", file=sys.stderr)
            status = 1
        else:
            print(f"ok: {file}: scenario {scenario.name!r}")
    return status


# -- sign / verify / send --------------------------------------------------------------------
def cmd_sign(args: argparse.Namespace) -> int:
    print(sign(args.key, args.expire))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    try:
        text = sys.stdin.read() if args.body == "-" else Path(args.body).read_text("utf-8")
    except OSError as exc:
        print(f"error: cannot read {args.body}: {exc.strerror}", file=sys.stderr)
        return 1
    ok, reason = verify_body(text, args.key, now=time.time() if args.now is None else args.now)
    print(f"{'ok' if ok else 'invalid'}: {reason}", file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


def verify_body(text: str, key: str, *, now: float) -> tuple[bool, str]:
    """Check a callback body as a backend should: (ok, reason)."""
    try:
        body = json.loads(text)
    except ValueError as exc:
        return False, f"body is not JSON: {exc}"
    if not isinstance(body, dict):
        return False, "body is not a JSON object"
    if "Sign" not in body or "ExpireTime" not in body:
        return False, "no Sign/ExpireTime in the body (sent without a callback key)"
    expire, signature = body["ExpireTime"], body["Sign"]
    if isinstance(expire, bool) or not isinstance(expire, int) or not isinstance(signature, str):
        return False, "ExpireTime must be an integer and Sign a string"
    ok, reason = verify(key, expire, signature, now=now)
    return ok, reason if not ok else f"Sign matches and ExpireTime {expire} is in the future"


def cmd_send(args: argparse.Namespace) -> int:
    event_type = SHORT_EVENTS.get(args.event.lower(), args.event)
    emu = _emulator(clock="manual", callback_key=args.key, sdk_app_id=args.sdk_app_id)
    try:
        data = _parse_data(args.data) if args.data else example_data(emu, event_type)
        delivery = emu.send_event(
            event_type=event_type,
            event_data=data,
            callback_url=args.callback_url,
            sign=args.sign,
        )
    finally:
        emu.close()
    print(f"POST {delivery['url']}\n{delivery['request_body']}\n")
    if delivery["status_code"] is None:
        print(f"no response: {delivery['error']}")
    else:
        print(f"HTTP {delivery['status_code']} ({delivery['duration_ms']:.1f} ms)")
        print(delivery["response_body"] or "")
    if not delivery["ok"]:
        print(f"error: not acknowledged: {delivery['error'] or 'non-200 status'}", file=sys.stderr)
        return 1
    return 0


def _parse_data(raw: str) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise InvalidInput("--data", f"not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidInput("--data", "must be a JSON object")
    return data


def example_data(emu: Any, event_type: str) -> dict[str, Any]:
    """Realistic EventData for `event_type`, taken from a freshly planned `success` task."""
    task = emu.create_task(scenario="success")
    for event in task["events"]:
        if event["event_type"] == event_type:
            return dict(event["payload"]["EventData"])
    raise InvalidInput("event", f"no example for {event_type!r}; pass --data")
