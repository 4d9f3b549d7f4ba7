"""The `tiw-emulator` command line: serve, demo, and the QA tools."""

from __future__ import annotations

import argparse
import errno
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from emulator.core.errors import EmulatorError
from emulator.store.base import DatabaseBusy, StorageError

Handler = Callable[[argparse.Namespace], int]

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
    p.add_argument("--db", help=f"SQLite file (default {d['db']}; ':memory:' keeps nothing)")
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
)


def settings_from_args(args: argparse.Namespace) -> Any:
    from emulator.core.config import Settings

    return Settings.load({k: getattr(args, k, None) for k in SETTING_KEYS})


def cmd_serve(args: argparse.Namespace) -> int:
    from emulator.web.app import create_app, get_emulator
    from emulator.web.server import AppServer

    settings = settings_from_args(args)
    app = create_app(settings)
    emu = get_emulator(app)
    try:
        server = AppServer(app, host=settings.host, port=settings.port)
    except OSError as exc:
        emu.close()
        return cannot_listen(settings.host, settings.port, exc)
    _stop_on_sigterm()
    cfg = emu.config()
    print(f"tiw-emulator listening on {server.url}", flush=True)
    # The token is a secret: say how to use it rather than print it.
    token_hint = "?token=<your --token>" if settings.token else ""
    print(f"  dashboard   {server.url}/ui/{token_hint}")
    print(f"  control API {server.url}/api/  (OpenAPI: {server.url}/api/openapi.json)")
    print(f"  cloud API   {server.url}/  (Tencent Cloud SDK endpoint {server.host}:{server.port})")
    print(
        f"  database    {settings.db}; clock {cfg.clock} x{cfg.speed:g}; callbacks to "
        f"{cfg.callback_url or '(not set: PATCH /api/config callback_url)'}",
    )
    print(f"  run seed    {emu.run_seed}  (replay this run with --seed {emu.run_seed})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        print("tiw-emulator: shutting down", flush=True)
        server.stop()
        emu.close()
    return 0


def _stop_on_sigterm() -> None:
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def installed_version() -> str:
    """The installed distribution's version, else the source tree's (run without installing)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tiw-emulator")
    except PackageNotFoundError:
        from emulator import __version__

        return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tiw-emulator",
        description="Local emulator of Tencent Cloud TIW after-class recording callbacks.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {installed_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    serve = sub.add_parser(
        "serve",
        help="run the emulator (control API, cloud API, dashboard)",
        description="Run the emulator: control API, cloud API and dashboard on one port.",
        epilog=SERVE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_settings_flags(serve, settings_defaults())
    serve.set_defaults(handler=cmd_serve)

    from emulator.cli import demo

    demo.register(sub)
    from emulator.cli import tools as cli_tools

    cli_tools.register(sub)
    return parser


def innermost_parser(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> argparse.ArgumentParser:
    """The (sub)parser of the command given, e.g. `scenarios validate`, for its usage line."""
    while True:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        chosen = getattr(args, subs[0].dest, None) if subs else None
        if chosen is None:
            return parser
        parser = subs[0].choices[chosen]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    if extras:
        # argparse reports a subcommand's unknown flag with the top-level usage; show the
        # subcommand's own usage instead, which lists the flags it does take.
        innermost_parser(parser, args).error(f"unrecognized arguments: {' '.join(extras)}")
    handler: Handler = args.handler
    try:
        return handler(args)
    except EmulatorError as err:
        print(f"error: {err.message}", file=sys.stderr)
        return 2
    except (DatabaseBusy, StorageError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
