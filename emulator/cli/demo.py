"""`tiw-emulator demo`: the emulator plus a demo backend, playing scenarios with a live timeline."""

from __future__ import annotations

import argparse
import json
import queue
import threading
import time
from typing import Any

from emulator.core.config import DEMO_SECRET_ID, DEMO_SECRET_KEY, Settings

DEMO_SCENARIOS = ("success", "transcode-failure", "duplicate-callbacks", "bad-signature")
DEMO_KEY = "tiwDemoCallbackKey"


def register(sub: Any) -> None:
    from emulator.cli.commands import add_settings_flags

    p = sub.add_parser("demo", help="start the emulator and a demo backend, and play scenarios")
    add_settings_flags(p)
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
    if delivery["status_code"] is not None:
        verdict = "OK" if delivery["ok"] else "refused"
        text = f"{delivery['status_code']} {verdict}"
        if not delivery["ok"] and delivery["response_body"]:
            text += f" {delivery['response_body'][:60]!r}"
    else:
        text = f"failed: {delivery['error']}"
    return f"{text} ({delivery['duration_ms']:.1f} ms, attempt {delivery['attempt']})"


def cloud_credentials(settings: Settings) -> str:
    """The SecretId/SecretKey line: the public demo pair in full, a user's pair masked."""
    from emulator.cloudapi.views import mask_secret
    from emulator.core.signing import mask

    if not settings.verify_signature:
        return "(signatures not checked: any SecretId/SecretKey)"
    sid, key = settings.secret_id, settings.secret_key
    if (sid, key) == (DEMO_SECRET_ID, DEMO_SECRET_KEY):
        return f"SecretId {sid}  SecretKey {key}  (public demo pair)"
    return f"SecretId {mask_secret(sid)}  SecretKey {mask(key)}  (as configured)"


def run_demo(args: argparse.Namespace) -> int:
    from emulator.cli.commands import settings_from_args
    from emulator.cli.demo_backend import create_demo_backend
    from emulator.web.app import create_app, get_emulator
    from emulator.web.server import AppServer

    base: Settings = settings_from_args(args)
    key = base.callback_key or DEMO_KEY
    backend_app = create_demo_backend(key)
    backend = AppServer(backend_app, host="127.0.0.1", port=0).start()
    base.callback_url = base.callback_url or f"{backend.url}/callback"
    base.callback_key = key
    base.db = args.db or ":memory:"
    base.speed = base.speed or 600.0
    base.retry = base.retry or "fast"
    app = create_app(base)
    emu = get_emulator(app)
    try:
        server = AppServer(app, host=base.host, port=base.port).start()
    except OSError as exc:
        emu.close()
        backend.stop()
        raise SystemExit(
            f"error: cannot listen on {base.host}:{base.port}: {exc.strerror}"
        ) from None

    lines: queue.Queue[dict[str, Any]] = queue.Queue()
    unsubscribe = emu.subscribe(lines.put)
    started = time.monotonic()
    names = [n for n in DEMO_SCENARIOS if n in emu.catalogue.names()]
    print(
        f"tiw-emulator demo: emulator {server.url}, demo backend {backend.url}/callback", flush=True
    )
    print(
        f"  clock real x{emu.config().speed:g} (one emulated hour = "
        f"{3600 / emu.config().speed:.1f} s); playing: {', '.join(names)}\n",
        flush=True,
    )
    tasks = {}
    for room, name in enumerate(names, start=1001):
        task = emu.create_task(
            scenario=name,
            room_id=room,
            params={"duration_s": int(args.class_minutes * 60), "queue_delay_s": 5},
        )
        tasks[task["task_id"]] = name
        print(f"  created {name:<20} task {task['task_id']} room {room}", flush=True)
    print(f"\n  {'time':>7}  {'scenario':<20} {'task':<20}  {'event':<15} {'progress':>8}  result")

    def done() -> bool:
        for task_id in tasks:
            task = emu.get_task(task_id)
            if task["status"] not in ("finished", "cancelled"):
                return False
            if any(e["state"] in ("scheduled", "delivering") for e in task["events"]):
                return False
        return True

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            d = lines.get(timeout=0.2)
        except queue.Empty:
            if done():
                break
            continue
        data = json.loads(d["request_body"]).get("EventData", {})
        progress = data.get("Progress", "")
        print(
            f"  {time.monotonic() - started:6.2f}s  {tasks.get(d['task_id'] or '', 'ad-hoc'):<20} "
            f"{d['task_id'] or '-':<20}  {_short(d['event_type']):<15} {progress!s:>8}  "
            f"{_describe(d)}",
            flush=True,
        )
    unsubscribe()
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
    print(
        f"\n  dashboard  {server.url}/ui/{'?token=<your --token>' if base.token else ''}\n"
        f"  tasks      {server.url}/api/tasks\n"
        f"  deliveries {server.url}/api/deliveries\n  received   {backend.url}/received",
        flush=True,
    )
    print(f"  cloud API  {server.url}/  {cloud_credentials(base)}", flush=True)
    try:
        if not args.exit:
            print("\n  Ctrl-C to stop.", flush=True)
            threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        backend.stop()
        emu.close()
    return 0
