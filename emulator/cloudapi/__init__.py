"""TIW API 3.0 emulation: TC3 signatures, OfflineRecord parameters, and the `/` blueprint."""

from __future__ import annotations

from emulator.cloudapi.backend import CloudApiSettings, CloudBackend
from emulator.cloudapi.errors import CloudApiError
from emulator.cloudapi.params import ACTIONS, API_VERSION
from emulator.cloudapi.views import create_cloudapi_blueprint

__all__ = [
    "ACTIONS",
    "API_VERSION",
    "CloudApiError",
    "CloudApiSettings",
    "CloudBackend",
    "create_cloudapi_blueprint",
]
