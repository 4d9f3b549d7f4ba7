"""The Flask app factory: one Emulator per app, its blueprints, auth and error rendering."""

from __future__ import annotations

import hmac
import html
import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from emulator.cloudapi import CloudApiSettings, create_cloudapi_blueprint
from emulator.cloudapi.core_backend import EmulatorCloudBackend
from emulator.core.config import Settings
from emulator.core.errors import EmulatorError, PayloadTooLarge, Unauthorized
from emulator.core.service import Emulator
from emulator.web import wsgi_bridge
from emulator.web.control import create_control_blueprint
from emulator.web.dashboard import create_dashboard_blueprint
from emulator.web.openapi import create_openapi_blueprint

log = logging.getLogger("tiw_emulator")


def create_app(config: Settings | Mapping[str, Any] | None = None, *, start: bool = True) -> Flask:
    """Build an app; `config` is Settings or a mapping layered over TIW_EMULATOR_* env vars."""
    settings = config if isinstance(config, Settings) else Settings.load(config)
    emu = Emulator(settings)
    if start:
        emu.start()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["tiw_emulator"] = emu
    app.config[wsgi_bridge.LANE_CONFIG] = lambda environ: (
        emu.store.commits_later and _creates(environ)
    )

    def cloud_settings() -> CloudApiSettings:
        return CloudApiSettings(
            secrets={settings.secret_id: settings.secret_key},
            verify_signature=settings.verify_signature,
            fidelity=settings.fidelity,
            now=emu.clock.wall,
            max_body_bytes=settings.max_body_bytes,
        )

    app.register_blueprint(create_control_blueprint())
    app.register_blueprint(create_openapi_blueprint())
    app.register_blueprint(create_cloudapi_blueprint(EmulatorCloudBackend(emu), cloud_settings))
    app.register_blueprint(create_dashboard_blueprint())
    _install_auth(app, settings)
    _install_error_handlers(app)
    return app


def _creates(environ: dict[str, Any]) -> bool:
    """A task creation whose reply the server can hold: the control API's, or the cloud API's
    TC3-signed CreateOfflineRecord (a v1-signed call names its action in its body or query)."""
    if environ["REQUEST_METHOD"] != "POST":
        return False
    path = environ["PATH_INFO"]
    if path == "/api/tasks":
        return True
    return path == "/" and environ.get("HTTP_X_TC_ACTION") == "CreateOfflineRecord"


def get_emulator(app: Flask) -> Emulator:
    emu: Emulator = app.extensions["tiw_emulator"]
    return emu


def _install_auth(app: Flask, settings: Settings) -> None:
    @app.before_request
    def require_token() -> Response | None:
        if not settings.token or request.path == "/healthz" or request.path == "/":
            return None  # the cloud API at / has its own TC3 signature
        if request.path.startswith("/ui/static/"):
            return None  # the dashboard's own HTML/CSS/JS: no data in it
        given = request.headers.get("Authorization", "")
        dashboard = request.path == "/ui" or request.path.startswith("/ui/")
        if dashboard and "token" in request.args:
            given = f"Bearer {request.args['token']}"  # a page link or EventSource: no headers
        if hmac.compare_digest(given.encode(), f"Bearer {settings.token}".encode()):
            return None
        if not dashboard:
            return _render(
                Unauthorized("missing or wrong token: send 'Authorization: Bearer <token>'")
            )
        # A browser cannot send a header for a typed address or a link: point at ?token=.
        err = Unauthorized(
            "missing or wrong token: open /ui/?token=<token> (the emulator's --token);"
            " the page passes it on to its API calls"
        )
        if request.accept_mimetypes.best_match(["application/json", "text/html"]) == "text/html":
            return _token_page(err)
        return _render(err)


def _token_page(err: Unauthorized) -> Response:
    """The dashboard's 401 for a browser: how to open it with the token, which it never shows."""
    link = html.escape(f"{request.host_url}ui/?token=<your token>")
    page = (
        '<!doctype html><html lang="en"><meta charset="utf-8">'
        "<title>tiw-emulator: token needed</title>"
        "<h1>This dashboard needs the emulator's token</h1>"
        "<p>The emulator was started with <code>--token</code> (or <code>TIW_EMULATOR_TOKEN"
        "</code>). A browser cannot send an <code>Authorization</code> header for an address"
        " you type, so put the token in the address instead:</p>"
        f"<pre>{link}</pre><p>The page then passes it on to its API calls and its stream.</p>"
    )
    return Response(page, status=err.status, mimetype="text/html")


def _render(err: EmulatorError) -> Response:
    response = jsonify(err.to_dict())
    response.status_code = err.status
    return response


def _install_error_handlers(app: Flask) -> None:
    @app.errorhandler(EmulatorError)
    def emulator_error(err: EmulatorError) -> Response:
        return _render(err)

    @app.errorhandler(HTTPException)
    def http_error(err: HTTPException) -> Response:
        if err.code == 413:
            return _render(
                PayloadTooLarge(
                    f"request body over the {app.config['MAX_CONTENT_LENGTH']} byte limit"
                )
            )
        code = (err.name or "error").lower().replace(" ", "_")
        response = jsonify(error={"code": code, "message": err.description, "details": {}})
        response.status_code = err.code or 500
        # A 405 must say what is allowed (RFC 9110): keep werkzeug's Allow header.
        for name, value in err.get_headers():
            if name.lower() == "allow":
                response.headers[name] = value
        return response

    @app.errorhandler(Exception)
    def unexpected(err: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.path)
        response = jsonify(
            error={
                "code": "internal_error",
                "message": f"internal error ({type(err).__name__}): a bug, see the server log",
                "details": {},
            }
        )
        response.status_code = 500
        return response
