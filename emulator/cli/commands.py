"""The `tiw-emulator` command line: serve, demo, and the QA tools."""

from __future__ import annotations

import argparse
import ipaddress
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

from emulator.cli import collector, cpu
from emulator.cli.settings import (
    SERVE_EPILOG,
    add_cpu_flag,
    add_settings_flags,
    cannot_listen,
    settings_defaults,
    settings_from_args,
)
from emulator.core.errors import EmulatorError
from emulator.core.redact import mask_url
from emulator.store.base import DatabaseBusy, StorageError

Handler = Callable[[argparse.Namespace], int]


def cmd_serve(args: argparse.Namespace) -> int:
    from emulator.web.app import create_app, get_emulator
    from emulator.web.server import AppServer

    settings = settings_from_args(args)
    pinned = cpu.tune(settings.cpu)  # before any thread starts: threads inherit the CPU
    collector.install()  # full collections examine only what became long-lived since the last
    try:
        app = create_app(settings)
    except StorageError as err:
        shown = mask_url(str(settings.db))
        if shown in str(err):
            raise
        raise StorageError(f"database {shown}: {err}") from None  # say which file
    emu = get_emulator(app)
    try:
        server = AppServer(app, host=settings.host, port=settings.port, lane_nice=cpu.LANE_NICE)
    except OSError as exc:
        emu.close()
        return cannot_listen(settings.host, settings.port, exc)
    _stop_on_sigterm()
    try:  # a SIGTERM while the banner prints is a clean stop too, not a traceback
        _banner(server, settings, emu, pinned)
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        print("tiw-emulator: shutting down", flush=True)
        server.stop()
        emu.close()
    return 0


def _banner(server: Any, settings: Any, emu: Any, pinned: int | None = None) -> None:
    """Where everything is, on stdout; a warning on stderr when bound beyond loopback."""
    cfg = emu.config()
    print(f"tiw-emulator listening on {server.url}{reach_note(settings.host)}", flush=True)
    if reach_note(settings.host):
        guard = "" if settings.token else "; set --token to require a bearer token on it"
        print(
            f"warning: bound to {settings.host}: other machines can reach the control API"
            f" and dashboard{guard} (--host 127.0.0.1 keeps them local)",
            file=sys.stderr,
            flush=True,
        )
    # The token is a secret: say how to use it rather than print it.
    token_hint = "?token=<your --token>" if settings.token else ""
    print(f"  dashboard   {server.url}/ui/{token_hint}")
    print(f"  control API {server.url}/api/  (OpenAPI: {server.url}/api/openapi.json)")
    print(f"  cloud API   {server.url}/  (Tencent Cloud SDK endpoint {server.host}:{server.port})")
    print(
        f"  database    {emu.store.location}; clock {cfg.clock} x{cfg.speed:g}; callbacks to "
        f"{mask_url(cfg.callback_url) or '(not set: PATCH /api/config callback_url)'}",
    )
    print(f"  run seed    {emu.run_seed}  (replay this run with --seed {emu.run_seed})")
    if pinned is not None:
        print(f"  cpu         {pinned}  (one CPU costs less per request; --cpu any lets it move)")
    sys.stdout.flush()


def reach_note(host: str) -> str:
    """Say so when the bind address lets other machines in (the container image does this)."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name
        loopback = host == "localhost"
    return "" if loopback else " (beyond loopback: reachable from other hosts)"


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
    add_cpu_flag(serve)
    serve.set_defaults(handler=cmd_serve)

    from emulator.cli import demo

    demo.register(sub)
    from emulator.cli import tools as cli_tools

    cli_tools.register(sub)
    from emulator.load import runner as load_runner

    load_runner.register(sub)
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
    except BrokenPipeError:
        # The reader left early (`tiw-emulator scenarios | head`): no traceback, and none at
        # exit either when Python flushes stdout (the recipe in the `signal` module's docs).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
