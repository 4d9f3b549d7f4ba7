"""`tiw-emulator run`: play one scenario against your backend and say, in words, how it did."""

from __future__ import annotations

import argparse
import json
import queue
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO, Any

import yaml

from emulator.cli.verdicts import not_acknowledged_reason, one_line, status_text
from emulator.core.errors import InvalidInput

BAR_WIDTH = 30
EXIT_PASSED = 0
EXIT_FAILED = 1
# 2 is what main() returns for an EmulatorError: the run could not start.
EXIT_NO_VERDICT = 3

# Sign modes a correct backend must refuse, and what each means, for the summary.
FORGED = {
    "invalid": "a wrong Sign (not md5(CallbackKey + ExpireTime))",
    "expired": "an ExpireTime already in the past",
}

EPILOG = """\
exit status:
  0  your backend did the right thing: it acknowledged every callback, or, for scenarios
     that forge the signature (bad-signature, expired-signature, --param sign=invalid|expired),
     it refused every one of them
  1  it did not; the summary says which callbacks and why
  2  the run could not start (unknown scenario, bad flag or --param, forged scenario without
     --callback-key)
  3  --timeout passed with callbacks still to send: no verdict

A callback is acknowledged only by HTTP 200 (with --strict-ack: HTTP 200 and the body
{"error_code": 0}, as the legacy service required). 204 or any other status, a timeout or
a connection error is a failed attempt, retried by the --retry policy.
"""


def register(sub: Any) -> None:
    """Add `run` to the `tiw-emulator` parser."""
    run = sub.add_parser(
        "run",
        help="play one scenario against your backend, then report",
        description="Play one scenario against your backend with a live progress bar, then "
        "print every attempt (status, response, why it did not count) and a verdict.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("scenario", help="scenario name (see `tiw-emulator scenarios`)")
    run.add_argument("--callback-url", required=True, help="your backend's callback URL")
    run.add_argument("--callback-key", help="CallbackKey to sign with (unsigned if omitted)")
    run.add_argument(
        "--speed", type=float, default=300.0, help="emulated s per wall s (default 300)"
    )
    run.add_argument("--param", action="append", default=[], metavar="K=V", help="task override")
    run.add_argument("--room-id", type=int, help="RoomId (default: random)")
    run.add_argument("--seed", type=int, help="seed for reproducible EventData")
    run.add_argument(
        "--retry", default="fast", help="retry policy: none, fast, tencent (default fast)"
    )
    run.add_argument(
        "--strict-ack",
        action="store_true",
        help='also require the body {"error_code": 0} to acknowledge (legacy backends)',
    )
    run.add_argument("--scenarios", dest="scenarios_dir", metavar="DIR", help="extra scenarios")
    run.add_argument(
        "--timeout", type=float, default=600.0, help="give up after S wall seconds (default 600)"
    )
    run.set_defaults(handler=cmd_run)


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


def qa_emulator(**settings: Any) -> Any:
    """A private in-memory emulator for one QA command, started."""
    from emulator.core.config import Settings
    from emulator.core.service import Emulator

    # Explicit settings only: a TIW_EMULATOR_DB in the environment must not leak into a QA run.
    loaded = Settings.load({"db": ":memory:", **settings}, env={})
    return Emulator(loaded).start()


def cmd_run(args: argparse.Namespace) -> int:
    params = parse_params(args.param)
    emu = qa_emulator(
        seed=args.seed,  # None: a fresh run seed, so TaskIds never repeat across runs
        clock="real",
        speed=args.speed,
        callback_url=args.callback_url,
        callback_key=args.callback_key,
        retry=args.retry,
        strict_ack=args.strict_ack,
        scenarios_dir=args.scenarios_dir,
    )
    attempts: queue.Queue[dict[str, Any]] = queue.Queue()
    unsubscribe = emu.subscribe(attempts.put)
    try:
        sign = emu.catalogue.get(args.scenario).with_params(params).section("delivery")["sign"]
        if sign in FORGED and not args.callback_key:
            raise InvalidInput(
                "--callback-key",
                f"{args.scenario} sends {FORGED[sign]}; that needs a key to forge (without"
                " one callbacks go unsigned): pass your backend's --callback-key",
            )
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
        deliveries, _ = emu.deliveries(task_id=task["task_id"], limit=1000)
        print_table(deliveries, sys.stdout)
        verdict = judge(task, deliveries, forged=FORGED.get(sign), timed_out=timed_out)
        print("\n" + "\n".join(verdict.lines))
        if verdict.code != EXIT_PASSED:
            print(f"error: {verdict.headline}", file=sys.stderr)
        return verdict.code
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


def _progress(d: dict[str, Any]) -> str:
    return str(json.loads(d["request_body"]).get("EventData", {}).get("Progress", ""))


def _attempt_line(d: dict[str, Any]) -> str:
    reason = not_acknowledged_reason(d)
    result = f"{status_text(d)} {'acknowledged' if reason is None else 'NOT acknowledged'}"
    return (
        f"{d['event_type'].removeprefix('OfflineRecord'):<15} {_progress(d):>4}  attempt"
        f" {d['attempt']}  {result}  {reason or ''}"
    ).rstrip()


def print_table(deliveries: list[dict[str, Any]], out: IO[str]) -> None:
    """One row per attempt: status, acknowledged, the response (trimmed) and why it failed."""
    head = ("#", "event", "progress", "attempt", "status", "ack", "ms", "response", "reason")
    rows = [head]
    for n, d in enumerate(deliveries, start=1):
        rows.append(
            (
                str(n),
                d["event_type"],
                _progress(d),
                str(d["attempt"]),
                status_text(d),
                "yes" if d["ok"] else "NO",
                f"{d['duration_ms']:.1f}",
                one_line(d["response_body"]) or "-",
                not_acknowledged_reason(d) or "",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip(), file=out)


@dataclass(frozen=True)
class Verdict:
    code: int
    headline: str
    lines: list[str]


def judge(
    task: dict[str, Any],
    deliveries: list[dict[str, Any]],
    *,
    forged: str | None,
    timed_out: bool,
) -> Verdict:
    """What the backend did, in words, and whether that was right."""
    events = task["events"]
    sent = [e for e in events if e["state"] not in ("dropped", "cancelled")]
    accepted = sum(1 for e in sent if e["state"] == "delivered")
    not_acked = sum(1 for e in sent if e["state"] == "failed")
    pending = sum(1 for e in sent if e["state"] in ("scheduled", "delivering"))
    dropped = len(events) - len(sent)
    lines = [_task_line(task)]
    if dropped:
        lines.append(f"{dropped} of {len(events)} planned callbacks were dropped by the scenario.")
    reasons = _reasons(deliveries)
    unanswered = sum(1 for d in deliveries if d["status_code"] is None)

    if timed_out:
        lines.append(
            f"Timed out with {pending} callbacks still to send; {accepted} acknowledged so far."
        )
        headline = "timed out before every callback was sent: no verdict"
        return Verdict(EXIT_NO_VERDICT, headline, [*lines, f"Result: {headline}."])

    if forged is not None:
        lines.append(f"Every callback carried {forged}: a correct backend refuses them all.")
        if accepted:
            headline = f"your backend ACCEPTED {accepted} of {len(sent)} forged callbacks"
            lines.append(
                f"Your backend acknowledged {accepted} of {len(sent)} of them with HTTP 200: it"
                " must check Sign == md5(CallbackKey + str(ExpireTime)) and that ExpireTime is"
                " in the future, and refuse the callback otherwise."
            )
        elif unanswered:
            headline = f"{unanswered} attempts got no HTTP answer, so nothing shows a refusal"
            lines.append(f"No HTTP answer for {unanswered} attempts: {reasons}.")
        else:
            statuses = ", ".join(sorted({status_text(d) for d in deliveries}))
            lines.append(f"Your backend refused all {len(sent)} (HTTP {statuses}), as it should.")
            return Verdict(EXIT_PASSED, "", [*lines, "Result: PASS."])
        return Verdict(EXIT_FAILED, headline, [*lines, f"Result: FAIL: {headline}."])

    if not_acked:
        attempts = Counter(d["attempt"] for d in deliveries)
        most = max(attempts) if attempts else 0
        headline = f"your backend did not acknowledge {not_acked} of {len(sent)} callbacks"
        tries = f"even after {most} attempts each" if most > 1 else "in one attempt each"
        lines.append(
            f"Your backend acknowledged {accepted} of {len(sent)} callbacks; {not_acked} never"
            f" were, {tries}. Why: {reasons}."
        )
        lines.append(
            'Only HTTP 200 acknowledges a callback (with --strict-ack, HTTP 200 and {"error_code":'
            " 0}); anything else is retried, then given up."
        )
        return Verdict(EXIT_FAILED, headline, [*lines, f"Result: FAIL: {headline}."])
    if not sent:
        lines.append("No callback was sent, so there was nothing to acknowledge.")
    else:
        retried = sum(1 for d in deliveries if not d["ok"])
        note = f" ({retried} failed attempts first: {reasons})" if retried else ""
        lines.append(f"Your backend acknowledged all {len(sent)} callbacks with HTTP 200{note}.")
    return Verdict(EXIT_PASSED, "", [*lines, "Result: PASS."])


def _task_line(task: dict[str, Any]) -> str:
    head = f"Task {task['task_id']} ({task['scenario']}, room {task['room_id']})"
    if task["status"] == "finished":
        if task["outcome"] == "success":
            return f"{head} finished successfully."
        return f"{head} finished with the error {task['error']['Code']}."
    if task["status"] == "processing":
        return f"{head} is still processing at {task['progress']}%: this scenario stalls."
    return f"{head} is {task['status']}."


def _reasons(deliveries: list[dict[str, Any]]) -> str:
    """Distinct reasons attempts failed, most frequent first: '500: ... (3 attempts)'."""
    counts = Counter(r for d in deliveries if (r := not_acknowledged_reason(d)) is not None)
    return "; ".join(
        f"{reason} ({n} attempt{'s' if n > 1 else ''})" for reason, n in counts.most_common()
    )
