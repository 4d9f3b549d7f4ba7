"""tiw-emulator: a local stand-in for Tencent Cloud TIW after-class recording (OfflineRecord)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask

__all__ = ["create_app"]
__version__ = "0.1.0"


def create_app(config: Any = None) -> Flask:
    """Build a Flask app with its own emulator state (see emulator.web.app.create_app)."""
    from emulator.web.app import create_app as _create_app

    return _create_app(config)
