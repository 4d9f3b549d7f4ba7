"""Settings: defaults, then TIW_EMULATOR_* environment, then an explicit mapping (CLI flags)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from emulator.core.errors import InvalidInput, UnknownField
from emulator.core.redact import mask
from emulator.core.urls import callback_url_problem

ENV_PREFIX = "TIW_EMULATOR_"
DEMO_SECRET_ID = "AKIDtiwEmulatorDEMO0000000000000000"
DEMO_SECRET_KEY = "tiwEmulatorDemoSecretKey0000000"


@dataclass(frozen=True)
class RetryPolicy:
    """How failed callback attempts are retried, in emulated seconds."""

    name: str
    max_attempts: int
    interval_s: float
    backoff: float = 1.0

    def delay_after(self, attempt: int) -> float | None:
        """Emulated seconds to wait after failed attempt number `attempt` (1-based), or None."""
        if attempt >= self.max_attempts:
            return None
        return self.interval_s * (self.backoff ** (attempt - 1))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


NAMED_RETRY_POLICIES = {
    "none": RetryPolicy("none", 1, 0.0),
    "fast": RetryPolicy("fast", 3, 1.0, 2.0),
    # The legacy service retried once a minute, up to 10 times.
    "tencent": RetryPolicy("tencent", 10, 60.0),
}


def parse_retry(value: Any) -> RetryPolicy:
    """A policy name, or {"max_attempts", "interval_s", "backoff"?} for a custom one."""
    if isinstance(value, RetryPolicy):
        return value
    if isinstance(value, str):
        if value not in NAMED_RETRY_POLICIES:
            raise InvalidInput(
                "retry",
                f"unknown policy {value!r}; use one of {sorted(NAMED_RETRY_POLICIES)}"
                " or an object {max_attempts, interval_s, backoff}",
            )
        return NAMED_RETRY_POLICIES[value]
    if isinstance(value, Mapping):
        extra = set(value) - {"name", "max_attempts", "interval_s", "backoff"}
        if extra:
            raise UnknownField(
                f"retry.{sorted(extra)[0]}", ["max_attempts", "interval_s", "backoff"]
            )
        try:
            attempts = value["max_attempts"]
            interval = value["interval_s"]
        except KeyError as missing:
            raise InvalidInput(f"retry.{missing.args[0]}", "is required") from None
        backoff = value.get("backoff", 1.0)
        if not _is_int(attempts) or not 1 <= attempts <= 100:
            raise InvalidInput("retry.max_attempts", "must be an integer from 1 to 100")
        if not _is_number(interval) or interval < 0:
            raise InvalidInput("retry.interval_s", "must be a number >= 0")
        if not _is_number(backoff) or not 1 <= backoff <= 10:
            raise InvalidInput("retry.backoff", "must be a number from 1 to 10")
        return RetryPolicy("custom", int(attempts), float(interval), float(backoff))
    raise InvalidInput("retry", "must be a policy name or an object")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


@dataclass
class RuntimeConfig:
    """The part of the configuration that `PATCH /api/config` may change while running."""

    callback_url: str | None = None
    callback_key: str | None = None
    sdk_app_id: int = 1400000001
    clock: str = "real"
    speed: float = 60.0
    retry: RetryPolicy = field(default_factory=lambda: NAMED_RETRY_POLICIES["tencent"])
    timeout_s: float = 5.0
    sign_ttl_s: int = 300
    strict_ack: bool = False

    def public(self) -> dict[str, Any]:
        out = self.stored()
        out["callback_key"] = mask(self.callback_key)
        return out

    def stored(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["retry"] = self.retry.to_dict() if self.retry.name == "custom" else self.retry.name
        return out

    def patched(self, patch: Mapping[str, Any]) -> RuntimeConfig:
        """A copy with `patch` applied; every field validated, unknown ones refused."""
        allowed = [f.name for f in fields(self)]
        values = {name: getattr(self, name) for name in allowed}
        for key, value in patch.items():
            if key not in values:
                raise UnknownField(key, allowed)
            values[key] = _validate_runtime(key, value)
        return RuntimeConfig(**values)


def validate_callback_url(value: Any, field_name: str = "callback_url") -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidInput(field_name, "must be a string URL")
    problem = callback_url_problem(value)
    if problem is not None:
        raise InvalidInput(field_name, f"{value!r} is not a callback URL: {problem}")
    return value


def _validate_runtime(key: str, value: Any) -> Any:
    if key == "callback_url":
        return validate_callback_url(value)
    if key == "callback_key":
        if value is not None and not isinstance(value, str):
            raise InvalidInput(key, "must be a string or null")
        return value or None
    if key == "sdk_app_id":
        if not _is_int(value) or value <= 0:
            raise InvalidInput(key, "must be a positive integer")
        return value
    if key == "clock":
        if value not in ("real", "manual"):
            raise InvalidInput(key, "must be 'real' or 'manual'")
        return value
    if key == "speed":
        if not _is_number(value) or not 0 < value <= 1_000_000:
            raise InvalidInput(key, "must be a number > 0 and <= 1000000")
        return float(value)
    if key == "retry":
        return parse_retry(value)
    if key == "timeout_s":
        if not _is_number(value) or not 0 < value <= 600:
            raise InvalidInput(key, "must be a number of seconds > 0 and <= 600")
        return float(value)
    if key == "sign_ttl_s":
        if not _is_int(value) or not 1 <= value <= 86400 * 7:
            raise InvalidInput(key, "must be an integer number of seconds from 1 to 604800")
        return value
    if key == "strict_ack":
        if not isinstance(value, bool):
            raise InvalidInput(key, "must be true or false")
        return value
    raise UnknownField(key, [f.name for f in fields(RuntimeConfig)])


@dataclass
class Settings:
    """Process settings: where to listen and store, plus the initial runtime configuration."""

    host: str = "127.0.0.1"
    port: int = 8765
    db: str = "tiw-emulator.db"
    scenarios_dir: str | None = None
    token: str | None = None
    secret_id: str = DEMO_SECRET_ID
    secret_key: str = DEMO_SECRET_KEY
    verify_signature: bool = True
    fidelity: str = "default"
    max_body_bytes: int = 1_048_576
    connections_per_backend: int = 64
    seed: int | None = None
    # Runtime configuration overrides; None means "keep what the database has, else default".
    callback_url: str | None = None
    callback_key: str | None = None
    sdk_app_id: int | None = None
    clock: str | None = None
    speed: float | None = None
    retry: Any = None
    timeout_s: float | None = None
    sign_ttl_s: int | None = None
    strict_ack: bool | None = None

    RUNTIME_KEYS = tuple(f.name for f in fields(RuntimeConfig))

    @classmethod
    def load(
        cls, mapping: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None
    ) -> Settings:
        env = os.environ if env is None else env
        settings = cls()
        names = {f.name: f for f in fields(cls)}
        for name in names:
            raw = env.get(ENV_PREFIX + name.upper())
            if raw is not None and raw != "":
                setattr(settings, name, _from_env(name, raw, str(names[name].type)))
        for key, value in (mapping or {}).items():
            if key not in names:
                raise UnknownField(key, list(names))
            if value is not None:
                setattr(settings, key, value)
        if settings.fidelity not in ("default", "strict"):
            raise InvalidInput("fidelity", "must be 'default' or 'strict'")
        return settings

    def runtime_overrides(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.RUNTIME_KEYS if getattr(self, k) is not None}


def _from_env(name: str, raw: str, type_name: str) -> Any:
    if "bool" in type_name:
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise InvalidInput(ENV_PREFIX + name.upper(), f"{raw!r} is not a boolean")
    if "int" in type_name and "float" not in type_name:
        try:
            return int(raw)
        except ValueError:
            raise InvalidInput(ENV_PREFIX + name.upper(), f"{raw!r} is not an integer") from None
    if "float" in type_name:
        try:
            return float(raw)
        except ValueError:
            raise InvalidInput(ENV_PREFIX + name.upper(), f"{raw!r} is not a number") from None
    return raw
