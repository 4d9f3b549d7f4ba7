"""`tiw-emulator demo`: the emulator plus a demo backend, playing scenarios with a live timeline."""

from __future__ import annotations

import argparse
import json
import queue
import sys
import threading
import time
from typing import Any

from emulator.cli.verdicts import not_acknowledged_reason, one_line
from emulator.core.config import DEMO_SECRET_ID, DEMO_SECRET_KEY, Settings

DEMO_SCENARIOS = ("success", "transcode-failure", "duplicate-callbacks", "bad-signature")
DEMO_KEY = "tiwDemoCallbackKey"
# Where the demo differs from `serve`: a lively clock, quick retries, nothing kept. Used both to
# fill in what the user left out and to say so in --help, so the two cannot disagree.
DEMO_DEFAULTS: dict[str, Any] = {"db": ":memory:", "speed": 600.0, "retry": "fast"}
MANUAL_STEP_S = 60.0  # with --clock manual the demo moves the clock itself, a minute at a time
WALL_LIMIT_S = 120.0


def register(sub: Any) -> None:
    from emulator.cli.settings import SERVE_EPILOG, add_settings_flags, settings_defaults

    p = sub.add_parser(
        "demo",
        help="start the emulator and a demo backend, and play scenarios",
        description="Start the emulator and a demo backend that checks every Sign, play "
        f"{', '.join(DEMO_SCENARIOS)}, print each callback as it arrives, and leave the "
        "dashboard up. With --clock manual the demo advances the clock itself.",
        epilog=SERVE_EPILOG.replace(
            "start from the values saved in --db, else the\ndefaults shown",
            "take the defaults shown (the demo keeps nothing\nunless --db names a file)",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_settings_flags(
        p,
        {
            **settings_defaults(),
            **DEMO_DEFAULTS,
            "speed": f"{DEMO_DEFAULTS['speed']:g}",
            "callback_url": "the demo backend's /callback",
            "callback_key": DEMO_KEY,
        },
    )
    p.add_argument("--exit", action="store_true", help="stop once the scenarios have played")
    p.add_argument(
        "--class-minutes",
        type=float,
        default=15.0,
        help="length of each demo class in emulated minutes (default 15)",
    )
    p.set_defaults(handler=run_demo)


def _short(event_type: str) -> str:
    return event_type.removeprefix("OfflineRecord")


def _describe(delivery: dict[str, Any]) -> str:
    reason = not_acknowledged_reason(delivery)
    if delivery["status_code"] is not None:
        text = f"{delivery['status_code']} {'OK' if reason is None else 'refused'}"
        if reason is not None and delivery["response_body"]:
            text += f" {one_line(delivery['response_body'], 60)!r}"
    else:
        text = f"failed: {reason}"
    return f"{text} ({delivery['duration_ms']:.1f} ms, attempt {delivery['attempt']})"


def _emulated(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"+{minutes // 60:d}:{minutes % 60:02d}:{secs:02d}"


def cloud_credentials(settings: Settings) -> str:
    """The SecretId/SecretKey line: the public demo pair in full, a user's pair masked."""
    from emulator.core.redact import mask, short_id

    if not settings.verify_signature:
        return "(signatures not checked: any SecretId/SecretKey)"
    sid, key = settings.secret_id, settings.secret_key
    if (sid, key) == (DEMO_SECRET_ID, DEMO_SECRET_KEY):
        return f"SecretId {sid}  SecretKey {key}  (public demo pair)"
    return f"SecretId {short_id(sid)}  SecretKey {mask(key)}  (as configured)"


def run_demo(args: argparse.Namespace) -> int:
    from emulator.cli.demo_backend import create_demo_backend
    from emulator.cli.settings import cannot_listen, settings_from_args
    from emulator.web.app import create_app, get_emulator
    from emulator.web.server import AppServer

    base: Settings = settings_from_args(args)
    key = base.callback_key or DEMO_KEY
    backend_app = create_demo_backend(key)
    backend = AppServer(backend_app, host="127.0.0.1", port=0).start()
    base.callback_url = base.callback_url or f"{backend.url}/callback"
    base.callback_key = key
    base.db = args.db or DEMO_DEFAULTS["db"]
    base.speed = base.speed or DEMO_DEFAULTS["speed"]
    base.retry = base.retry or DEMO_DEFAULTS["retry"]
    app = create_app(base)
    emu = get_emulator(app)
    try:
        server = AppServer(app, host=base.host, port=base.port).start()
    except OSError as exc:
        emu.close()
        backend.stop()
        return cannot_listen(base.host, base.port, exc)
    try:
        return _play(args, base, emu, server.url, backend.url)
    except KeyboardInterrupt:
        return 0
    finally:
        server.stop()
        backend.stop()
        emu.close()


def _play(args: argparse.Namespace, base: Settings, emu: Any, url: str, backend_url: str) -> int:
    """Create the demo tasks, print each attempt as it happens, then the summary and the URLs."""
    names = [n for n in DEMO_SCENARIOS if n in emu.catalogue.names()]
    if not names:
        print(
            f"error: none of the demo scenarios ({', '.join(DEMO_SCENARIOS)}) is in the"
            f" catalogue: {', '.join(emu.catalogue.names()) or 'empty'}",
            file=sys.stderr,
        )
        return 1
    config = emu.config()
    manual = config.clock == "manual"
    print(f"tiw-emulator demo: emulator {url}, demo backend {backend_url}/callback", flush=True)
    if manual:
        clock = (
            f"clock manual: the demo advances it {MANUAL_STEP_S:g} emulated seconds at a time;"
            " afterwards POST /api/clock/advance or the dashboard moves it"
        )
    else:
        clock = f"clock real x{config.speed:g} (one emulated hour = {3600 / config.speed:.1f} s)"
    print(f"  {clock}; playing: {', '.join(names)}\n", flush=True)

    lines: queue.Queue[dict[str, Any]] = queue.Queue()
    unsubscribe = emu.subscribe(lines.put)
    started, start_emulated = time.monotonic(), emu.clock.now()
    tasks = {}
    for room, name in enumerate(names, start=1001):
        task = emu.create_task(
            scenario=name,
            room_id=room,
            params={"duration_s": int(args.class_minutes * 60), "queue_delay_s": 5},
        )
        tasks[task["task_id"]] = name
        print(f"  created {name:<20} task {task['task_id']} room {room}", flush=True)
    print(
        f"\n  {'wall':>7}  {'emulated':>9}  {'scenario':<20} {'task':<20}  {'event':<15}"
        f" {'progress':>8}  result"
    )

    def done() -> bool:
        for task_id in tasks:
            task = emu.get_task(task_id)
            if task["status"] not in ("finished", "cancelled"):
                return False
            if any(e["state"] in ("scheduled", "delivering") for e in task["events"]):
                return False
        return True

    deadline = time.monotonic() + WALL_LIMIT_S
    try:
        while time.monotonic() < deadline:
            try:
                d = lines.get(timeout=0.2 if not manual else 0)
            except queue.Empty:
                if done():
                    break
                if manual:  # nothing fires on a manual clock unless someone moves it: we do
                    emu.advance(MANUAL_STEP_S)
                continue
            data = json.loads(d["request_body"]).get("EventData", {})
            progress = data.get("Progress", "")
            print(
                f"  {time.monotonic() - started:6.2f}s  "
                f"{_emulated(d['emulated_at'] - start_emulated):>9}  "
                f"{tasks.get(d['task_id'] or '', 'ad-hoc'):<20} "
                f"{d['task_id'] or '-':<20}  {_short(d['event_type']):<15} {progress!s:>8}  "
                f"{_describe(d)}",
                flush=True,
            )
        else:
            print(f"\n  stopped waiting after {WALL_LIMIT_S:g} s", flush=True)
    finally:
        unsubscribe()
    _summary(emu, tasks)
    print(
        f"\n  dashboard  {url}/ui/{'?token=<your --token>' if base.token else ''}\n"
        f"  tasks      {url}/api/tasks\n"
        f"  deliveries {url}/api/deliveries\n  received   {backend_url}/received",
        flush=True,
    )
    print(f"  cloud API  {url}/  {cloud_credentials(base)}", flush=True)
    if not args.exit:
        print("\n  Ctrl-C to stop.", flush=True)
        threading.Event().wait()
    return 0


def _summary(emu: Any, tasks: dict[str, str]) -> None:
    print("\n  summary:")
    for task_id, name in tasks.items():
        task = emu.get_task(task_id)
        sent, _ = emu.deliveries(task_id=task_id, limit=1000)
        ok = sum(1 for d in sent if d["ok"])
        err = f" {task['error']['Code']}" if task["error"] else ""
        print(
            f"    {name:<20} {task['status']:<9} {task['outcome'] or '-':<8}{err:<27} "
            f"{ok}/{len(sent)} attempts acknowledged"
        )
