"""A tiny app backend for the demo: verifies each callback's Sign and remembers what arrived."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, jsonify, request

from emulator.core.signing import verify


def create_demo_backend(callback_key: str | None, *, now: Callable[[], float] = time.time) -> Flask:
    """POST /callback: 200 {"error_code": 0} when the signature checks out, else 403."""
    app = Flask("tiw_demo_backend")
    received: list[dict[str, Any]] = []
    lock = threading.Lock()
    app.extensions["received"] = received

    @app.post("/callback")
    def callback() -> tuple[Response, int]:
        body = request.get_json(force=True, silent=True)
        if not isinstance(body, dict):
            return jsonify(error_code=1, error_msg="body is not a JSON object"), 400
        verdict = "unsigned"
        if callback_key:
            if "Sign" not in body or "ExpireTime" not in body:
                verdict = "missing Sign/ExpireTime"
            else:
                ok, reason = verify(
                    callback_key, int(body["ExpireTime"]), str(body["Sign"]), now=now()
                )
                verdict = "ok" if ok else reason
        with lock:
            received.append({"body": body, "verdict": verdict})
        if verdict not in ("ok", "unsigned"):
            return jsonify(error_code=403, error_msg=verdict), 403
        return jsonify(error_code=0), 200

    @app.get("/received")
    def list_received() -> Response:
        with lock:
            return jsonify(received=list(received))

    return app
