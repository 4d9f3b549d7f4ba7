"""QA commands of `tiw-emulator`: scenarios [validate], sign, verify and send (run: run.py)."""

from __future__ import annotations

import argparse
import difflib
import json
import sys
import time
from pathlib import Path
from typing import Any

from emulator.cli.run import qa_emulator
from emulator.cli.verdicts import not_acknowledged_reason
from emulator.core import payloads
from emulator.core.errors import InvalidInput, ScenarioInvalid
from emulator.core.signing import SignMode, sign, verify

SHORT_EVENTS = {"progress": payloads.PROGRESS_CHANGED, "finished": payloads.FINISHED}


def register(sub: Any) -> None:
    """Add the QA subcommands to the `tiw-emulator` parser."""
    from emulator.cli import run

    run.register(sub)

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

    send = sub.add_parser(
        "send",
        help="post one event to a backend and print its response",
        description="Post one callback to a backend and print the request and its response.",
        epilog="EVENT is an EventType or its shortcut: "
        + "; ".join(f"{short} = {full}" for short, full in SHORT_EVENTS.items())
        + ". Without --data the EventData is a realistic example from the success scenario."
        " Exit status 0 when the backend acknowledged (HTTP 200), else 1.",
    )
    send.add_argument(
        "event",
        metavar="EVENT",
        help=f"{' or '.join(SHORT_EVENTS.values())}, or the shortcut {' / '.join(SHORT_EVENTS)}",
    )
    send.add_argument("--callback-url", required=True, help="where to post")
    send.add_argument("--data", help="EventData as JSON (default: a realistic example)")
    send.add_argument("--key", help="CallbackKey to sign with (unsigned if omitted)")
    send.add_argument(
        "--sign",
        choices=[m.value for m in SignMode],
        default="valid",
        help="valid, a wrong Sign (invalid), a past ExpireTime (expired) or none (default valid)",
    )
    send.add_argument("--sdk-app-id", type=int, help="SdkAppId (default 1400000001)")
    send.set_defaults(handler=cmd_send)


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


def event_type_named(name: str) -> str:
    """The EventType for `name`: a documented EventType or a shortcut, in any letter case."""
    known = {**{e.lower(): e for e in payloads.EVENT_TYPES}, **SHORT_EVENTS}
    found = known.get(name.lower())
    if found is None:
        close = difflib.get_close_matches(name.lower(), list(known), n=1, cutoff=0.6)
        hint = f"did you mean {known[close[0]]}? " if close else ""
        raise InvalidInput(
            "EVENT",
            f"unknown event {name!r}; {hint}use {' or '.join(payloads.EVENT_TYPES)}, or the"
            f" shortcuts {' / '.join(SHORT_EVENTS)} (any other EventType: POST /api/events)",
        )
    return found


def cmd_send(args: argparse.Namespace) -> int:
    event_type = event_type_named(args.event)
    data = _parse_data(args.data) if args.data else None
    emu = qa_emulator(clock="manual", callback_key=args.key, sdk_app_id=args.sdk_app_id)
    try:
        delivery = emu.send_event(
            event_type=event_type,
            event_data=data if data is not None else example_data(emu, event_type),
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
    reason = not_acknowledged_reason(delivery)
    if reason is not None:
        print(f"error: not acknowledged: {reason}", file=sys.stderr)
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
    raise InvalidInput("EVENT", f"the success scenario sends no {event_type}; pass --data")
