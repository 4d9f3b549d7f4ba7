"""Settings flags shared by `serve` and `demo`, and what to say when the port is taken."""

from __future__ import annotations

import argparse
import errno
import sys
from collections.abc import Mapping
from typing import Any

EXIT_CANNOT_LISTEN = 3
SERVE_EPILOG = """\
Every flag can also come from the environment as TIW_EMULATOR_<NAME>, e.g.
TIW_EMULATOR_CALLBACK_URL; a flag wins. Runtime settings (--callback-url, --callback-key,
--sdk-app-id, --clock, --speed, --retry) start from the values saved in --db, else the
defaults shown; a flag given here overrides both.

exit status: 0 after Ctrl-C or SIGTERM; 2 for a bad setting; 3 when the port cannot be
bound (in use: pick another with --port N, or --port 0 for any free one).
"""


def settings_defaults() -> dict[str, Any]:
    """What `serve` uses when no flag, environment variable or saved value says otherwise."""
    from emulator.core.config import RuntimeConfig, Settings

    settings, runtime = Settings(), RuntimeConfig()
    return {
        "host": settings.host,
        "port": settings.port,
        "db": settings.db,
        "callback_url": "none (a task or its SdkAppId may set one)",
        "callback_key": "none: callbacks unsigned",
        "sdk_app_id": runtime.sdk_app_id,
        "clock": runtime.clock,
        "speed": f"{runtime.speed:g}",
        "retry": runtime.retry.name,
        "fidelity": settings.fidelity,
    }


def add_settings_flags(p: argparse.ArgumentParser, defaults: Mapping[str, Any]) -> None:
    """Flags shared by `serve` and `demo`; each also reads TIW_EMULATOR_<NAME> from the env.

    `defaults` are the values the command really uses, shown in --help (see settings_defaults).
    """
    d = dict(defaults)
    p.add_argument("--host", help=f"address to bind (default {d['host']})")
    p.add_argument("--port", type=int, help=f"port (default {d['port']}; 0 picks a free one)")
    p.add_argument(
        "--db",
        help=f"SQLite file (default {d['db']}; ':memory:' keeps nothing), or a"
        " postgresql://user:password@host/dbname URL (extra 'postgres')",
    )
    p.add_argument("--callback-url", help=f"where callbacks go (default {d['callback_url']})")
    p.add_argument(
        "--callback-key",
        help=f"CallbackKey that signs callbacks, never printed (default {d['callback_key']})",
    )
    p.add_argument("--sdk-app-id", type=int, help=f"default SdkAppId (default {d['sdk_app_id']})")
    p.add_argument(
        "--clock", choices=["real", "manual"], help=f"emulated clock (default {d['clock']})"
    )
    p.add_argument(
        "--speed", type=float, help=f"emulated seconds per wall second (default {d['speed']})"
    )
    p.add_argument("--retry", help=f"retry policy: none, fast or tencent (default {d['retry']})")
    p.add_argument("--scenarios", dest="scenarios_dir", metavar="DIR", help="extra scenario files")
    p.add_argument("--token", help="require 'Authorization: Bearer TOKEN' on the control API")
    p.add_argument("--secret-id", help="cloud API SecretId (default: the demo pair)")
    p.add_argument("--secret-key", help="cloud API SecretKey (default: the demo pair)")
    p.add_argument(
        "--no-verify-signature",
        dest="verify_signature",
        action="store_const",
        const=False,
        help="accept cloud API calls without checking TC3 signatures",
    )
    p.add_argument(
        "--fidelity",
        choices=["default", "strict"],
        help=f"cloud API reply fields (default {d['fidelity']})",
    )
    p.add_argument(
        "--seed",
        type=int,
        help="run seed: replays a run exactly (default: a fresh one, so TaskIds never repeat)",
    )
    p.add_argument(
        "--lease",
        dest="lease_s",
        type=float,
        metavar="SECONDS",
        help="PostgreSQL shared mode: a process silent this long is taken for dead and its"
        " pending callbacks are taken over (default 5)",
    )


def add_cpu_flag(p: argparse.ArgumentParser) -> None:
    """`serve` only: the CPU the process keeps to (see emulator.cli.cpu for why and how)."""
    p.add_argument(
        "--cpu",
        metavar="auto|any|N",
        help="run on one CPU, which costs less per request for a one-process Python server:"
        " auto picks one of those allowed (default), any lets the OS move it, N names one",
    )


def cannot_listen(host: str, port: int, exc: OSError) -> int:
    """Say why the port cannot be bound and what to do; returns the exit status (3)."""
    reason = exc.strerror or str(exc)
    if exc.errno == errno.EADDRINUSE:
        hint = (
            f"another program (perhaps another tiw-emulator) holds port {port}: stop it, or pick"
            " another port with --port N (--port 0 takes any free one)"
        )
    elif exc.errno == errno.EACCES:
        hint = "ports below 1024 need privileges: use --port 8765 or any port above 1023"
    else:
        hint = "check --host (default 127.0.0.1) and --port"
    print(f"error: cannot listen on {host}:{port}: {reason}\n  {hint}", file=sys.stderr)
    return EXIT_CANNOT_LISTEN


SETTING_KEYS = (
    "host",
    "port",
    "db",
    "callback_url",
    "callback_key",
    "sdk_app_id",
    "clock",
    "speed",
    "retry",
    "scenarios_dir",
    "token",
    "secret_id",
    "secret_key",
    "verify_signature",
    "fidelity",
    "seed",
    "lease_s",
    "cpu",
)


def settings_from_args(args: argparse.Namespace) -> Any:
    from emulator.core.config import Settings

    return Settings.load({k: getattr(args, k, None) for k in SETTING_KEYS})
