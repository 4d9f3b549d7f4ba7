"""`tiw-emulator load`: the load mode's Locust user class, run headless in one Locust process.

Locust runs in a subprocess (it monkey-patches the process that imports it); this side checks
the arguments and the target, shows a live progress line from the lines the locustfile prints,
keeps Locust's own log in the report folder, and prints the summary the locustfile wrote.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

from emulator.load import LOCUSTFILE

PROGRESS_PREFIX = "TIW-PROGRESS "  # the same as coordination.PROGRESS_PREFIX (no Locust here)
EXIT_BACKEND_FAILED, EXIT_ERROR = 1, 2
KEY_ENV = "TIW_LOAD_CALLBACK_KEY"  # read by the locustfile's --callback-key too


def register(sub: Any) -> None:
    """Add `load` to the `tiw-emulator` parser."""
    p = sub.add_parser(
        "load",
        help="play many recording tasks' callbacks at your backend with Locust (extra 'load')",
        description="Capacity rehearsal: N simulated users each play recording tasks' signed "
        "callbacks at your backend; exit 1 if the backend failed any callback.",
    )
    p.add_argument("--callback-url", help="your backend's callback URL")
    p.add_argument(
        "--callback-key",
        help=f"CallbackKey to sign with (or env {KEY_ENV}; unsigned if neither is set)",
    )
    p.add_argument("--sdk-app-id", type=int, default=1400000001, help="SdkAppId (1400000001)")
    p.add_argument("--users", type=int, help="simulated users, each playing one task at a time")
    p.add_argument("--spawn-rate", type=float, help="users started per second")
    stop = p.add_mutually_exclusive_group()
    stop.add_argument("--run-time", help="stop after this long, e.g. 90s, 5m, 1h")
    stop.add_argument("--tasks", type=int, help="stop after this many tasks in all")
    p.add_argument("--mix", help="scenario=weight,... (default success=95,transcode-failure=5)")
    p.add_argument("--speed", default="60", help="emulated s per wall s of each task, or max")
    p.add_argument("--rate", type=float, help="fixed pace: callbacks/s in all (instead of --speed)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per request (10)")
    p.add_argument("--report-dir", default="tiw-load-report", help="CSV/HTML reports go here")
    p.add_argument("--allow-remote", action="store_true", help="allow a non-loopback target")
    p.add_argument("--no-limits", action="store_true", help="lift the documented limits")
    p.add_argument(
        "--locustfile", action="store_true", help="print the Locust user module's path and exit"
    )
    p.set_defaults(handler=cmd_load)


def _usage_error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_ERROR


def locust_command(args: argparse.Namespace, run_time_s: float | None, report: Path) -> list[str]:
    """The headless Locust command line for these arguments (the key travels in the env)."""
    from emulator.load import plan

    cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless"]
    cmd += ["--host", args.callback_url, "-u", str(args.users), "-r", f"{args.spawn_rate:g}"]
    if run_time_s is not None:
        cmd += ["-t", f"{max(1, round(run_time_s))}s"]
    cmd += ["--mix", args.mix or plan.DEFAULT_MIX, "--sdk-app-id", str(args.sdk_app_id)]
    cmd += ["--speed", str(args.speed), "--timeout", f"{args.timeout:g}"]
    if args.tasks is not None:
        cmd += ["--tasks", str(args.tasks)]
    if args.rate:
        cmd += ["--user-rate", f"{args.rate / args.users:g}"]
    if args.allow_remote:
        cmd.append("--allow-remote")
    cmd += ["--csv", str(report / "load"), "--html", str(report / "report.html")]
    cmd += ["--summary-file", str(report / "summary.json"), "--tiw-progress", "--only-summary"]
    return cmd


def validate(args: argparse.Namespace) -> tuple[float | None, str]:
    """Check everything before any load is sent: (run time in s, where the load goes)."""
    from emulator.core.errors import InvalidInput
    from emulator.load import plan

    if not args.callback_url:
        raise InvalidInput("--callback-url", "required: where your backend takes callbacks")
    for flag, value in (("--users", args.users), ("--spawn-rate", args.spawn_rate)):
        if value is None or value <= 0:
            raise InvalidInput(flag, "required, > 0")
    if args.run_time is None and args.tasks is None:
        raise InvalidInput("--run-time", "give --run-time T or --tasks K, so the run ends")
    if args.tasks is not None and args.tasks <= 0:
        raise InvalidInput("--tasks", "must be > 0")
    for flag, value in (("--rate", args.rate), ("--timeout", args.timeout)):
        if value is not None and value <= 0:
            raise InvalidInput(flag, "must be > 0")
    run_time = plan.parse_duration(args.run_time) if args.run_time else None
    catalogue = plan.builtin_catalogue()
    mix = plan.parse_mix(args.mix or plan.DEFAULT_MIX, catalogue)
    plan.check_mix_signing(mix, catalogue, args.callback_key)
    plan.parse_speed(args.speed)
    if not args.no_limits:
        over = plan.LIMITS.check(
            users=args.users,
            spawn_rate=args.spawn_rate,
            run_time_s=run_time,
            tasks=args.tasks,
            rate=args.rate,
        )
        if over:
            raise InvalidInput(
                "limits", f"{'; '.join(over)} (see README 'Load mode'; --no-limits lifts them)"
            )
        if run_time is None:
            run_time = plan.LIMITS.run_time_s  # --tasks K still ends within the time limit
    return run_time, plan.check_target(args.callback_url, allow_remote=args.allow_remote)


def cmd_load(args: argparse.Namespace) -> int:
    from emulator.core.errors import EmulatorError
    from emulator.load import summary

    if args.locustfile:
        print(LOCUSTFILE)
        return 0
    # A key from the environment stays off every command line (ps shows those).
    args.callback_key = args.callback_key or os.environ.get(KEY_ENV) or None
    if importlib.util.find_spec("locust") is None:
        return _usage_error("load mode needs Locust: pip install 'tiw-emulator[load]'")
    try:
        run_time, where = validate(args)
    except EmulatorError as err:
        return _usage_error(err.message)
    report = Path(args.report_dir)
    report.mkdir(parents=True, exist_ok=True)
    for stale in ("summary.json",):
        (report / stale).unlink(missing_ok=True)
    print(f"tiw-emulator load: {where}", flush=True)
    bound = f"{args.tasks:,} tasks" if args.tasks else f"{run_time:g} s"
    print(
        f"  {args.users} users (+{args.spawn_rate:g}/s), until {bound}; "
        f"mix {args.mix or 'success=95,transcode-failure=5'}; "
        + (f"{args.rate:g} callbacks/s" if args.rate else f"speed {args.speed}"),
        flush=True,
    )
    env = {**os.environ, KEY_ENV: args.callback_key or ""}
    log_path = report / "locust.log"
    with log_path.open("w", encoding="utf-8") as log:
        code = _run(locust_command(args, run_time, report), env, log, args.tasks)
    summary_path = report / "summary.json"
    if not summary_path.exists():
        print(f"error: Locust ended (exit {code}) without a summary; see {log_path}:")
        print("".join(log_path.read_text(encoding="utf-8").splitlines(True)[-15:]), end="")
        return EXIT_ERROR
    result = json.loads(summary_path.read_text(encoding="utf-8"))
    reports = {
        "CSV reports": str(report / "load_stats.csv") + " (and load_failures.csv, ...)",
        "HTML report": str(report / "report.html"),
        "Locust log": str(log_path),
    }
    print(summary.render(result, reports), flush=True)
    if result["failed"]:
        return EXIT_BACKEND_FAILED
    return 0 if code in (0, EXIT_BACKEND_FAILED) else EXIT_ERROR


def _run(cmd: list[str], env: dict[str, str], log: IO[str], tasks: int | None) -> int:
    """Run Locust, turning its progress lines into one live line; the rest goes to the log."""
    live = sys.stdout.isatty()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, bufsize=1
    )
    assert proc.stdout is not None
    last_print = 0.0
    try:
        for line in proc.stdout:
            if not line.startswith(PROGRESS_PREFIX):
                log.write(line)
                continue
            text = progress_text(json.loads(line[len(PROGRESS_PREFIX) :]), tasks)
            if live:
                sys.stdout.write("\r" + text.ljust(100)[:100])
                sys.stdout.flush()
            elif time.monotonic() - last_print >= 5:
                print(text, flush=True)
                last_print = time.monotonic()
    except KeyboardInterrupt:
        # Locust got the same Ctrl-C: let it stop its users and write its reports.
        with contextlib.suppress(KeyboardInterrupt):
            proc.wait(60)
    code = proc.wait()
    if live:
        sys.stdout.write("\n")
    return code


def progress_text(p: dict[str, Any], tasks: int | None) -> str:
    done = f"{p['tasks_played']:,}" + (f"/{tasks:,}" if tasks else "")
    return (
        f"  {p['elapsed_s']:7.1f}s  users {p['users']:,}  tasks {done}  callbacks "
        f"{p['callbacks']:,} ({p['rps']:,.0f}/s)  failed {p['failed']:,}"
    )
