"""The `tiw-emulator` command line: serve, demo, and the QA tools."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

from emulator.core.errors import EmulatorError

Handler = Callable[[argparse.Namespace], int]


def add_settings_flags(p: argparse.ArgumentParser) -> None:
    """Flags shared by `serve` and `demo`; each also reads TIW_EMULATOR_<NAME> from the env."""
    p.add_argument("--host", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 8765; 0 picks a free one)")
    p.add_argument("--db", help="SQLite file (default ./tiw-emulator.db; ':memory:' for none)")
    p.add_argument("--callback-url", help="where callbacks go unless a task or SdkAppId says")
    p.add_argument("--callback-key", help="CallbackKey used to sign callbacks (never printed)")
    p.add_argument("--sdk-app-id", type=int, help="default SdkAppId (default 1400000001)")
    p.add_argument("--clock", choices=["real", "manual"], help="emulated clock (default real)")
    p.add_argument("--speed", type=float, help="emulated seconds per wall second (default 60)")
    p.add_argument("--retry", help="retry policy: none, fast or tencent (default tencent)")
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
    p.add_argument("--fidelity", choices=["default", "strict"], help="cloud API reply fields")


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
        raise SystemExit(
            f"error: cannot listen on {settings.host}:{settings.port}: {exc.strerror}"
        ) from None
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
        flush=True,
    )
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tiw-emulator",
        description="Local emulator of Tencent Cloud TIW after-class recording callbacks.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    serve = sub.add_parser("serve", help="run the emulator (control API, cloud API, dashboard)")
    add_settings_flags(serve)
    serve.set_defaults(handler=cmd_serve)

    from emulator.cli import demo

    demo.register(sub)
    from emulator.cli import tools as cli_tools

    cli_tools.register(sub)
    from emulator.load import runner as load_runner

    load_runner.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except EmulatorError as err:
        print(f"error: {err.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
