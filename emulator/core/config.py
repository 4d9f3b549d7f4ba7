"""Settings: defaults, then TIW_EMULATOR_* environment, then an explicit mapping (CLI flags)."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import msgspec
from msgspec import UNSET

from emulator.core import parsing
from emulator.core.errors import InvalidInput, UnknownField
from emulator.core.models import (
    MAX_LONGEST_RETRY_WAIT_S,
    READ_ONLY_CONFIG,
    ConfigPatch,
    RetryName,
    RetryPolicy,
)
from emulator.core.redact import mask, mask_url
from emulator.core.urls import callback_url_problem

ENV_PREFIX = "TIW_EMULATOR_"
DEMO_SECRET_ID = "AKIDtiwEmulatorDEMO0000000000000000"
DEMO_SECRET_KEY = "tiwEmulatorDemoSecretKey0000000"

log = logging.getLogger("tiw_emulator")


NAMED_RETRY_POLICIES = {
    "none": RetryPolicy(name="none", max_attempts=1, interval_s=0.0),
    "fast": RetryPolicy(name="fast", max_attempts=3, interval_s=1.0, backoff=2.0),
    # The legacy service retried once a minute, up to 10 times.
    "tencent": RetryPolicy(name="tencent", max_attempts=10, interval_s=60.0),
}


class RetryConfig(msgspec.Struct):
    """Only `retry`, so a policy given alone is checked by the same declaration as in Config."""

    retry: RetryName | RetryPolicy


def parse_retry(value: Any) -> RetryPolicy:
    """A policy name, or {"max_attempts", "interval_s", "backoff"?} for a custom one."""
    if isinstance(value, RetryPolicy) and NAMED_RETRY_POLICIES.get(value.name) == value:
        return value  # a named policy itself; an object that only borrows a name is custom
    if not isinstance(value, RetryPolicy):
        value = parsing.convert({"retry": value}, RetryConfig).retry
    if isinstance(value, str):
        return NAMED_RETRY_POLICIES[value]
    policy = msgspec.structs.replace(value, name="custom")
    if policy.longest_wait() > MAX_LONGEST_RETRY_WAIT_S:
        raise InvalidInput(
            "retry",
            f"the last retry would wait {policy.longest_wait():.3g} s; interval_s *"
            f" backoff^(max_attempts-2) must stay within {MAX_LONGEST_RETRY_WAIT_S} s (30 days)",
        )
    return policy


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
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        retry = self.retry
        out["retry"] = msgspec.structs.asdict(retry) if retry.name == "custom" else retry.name
        return out

    def patched(self, patch: Mapping[str, Any] | msgspec.Struct) -> RuntimeConfig:
        """A copy with `patch` applied: types and bounds from models.Config, unknown refused."""
        if not isinstance(patch, msgspec.Struct):
            for name in READ_ONLY_CONFIG:
                if name in patch:
                    raise read_only(name)
            patch = parsing.convert(dict(patch), ConfigPatch)
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        for name, value in msgspec.structs.asdict(patch).items():
            if value is not UNSET:
                values[name] = _checked(name, value)
        return RuntimeConfig(**values)


def read_only(name: str) -> InvalidInput:
    return InvalidInput(name, "is read-only (set it with --seed at start-up)")


def validate_callback_url(value: Any, field_name: str = "callback_url") -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidInput(field_name, "must be a string URL")
    problem = callback_url_problem(value)
    if problem is not None:
        raise InvalidInput(field_name, f"{mask_url(value)!r} is not a callback URL: {problem}")
    return value


def _checked(name: str, value: Any) -> Any:
    """What the type declarations cannot say: URL syntax, policy names, "" for none."""
    if name == "callback_url":
        return validate_callback_url(value)
    if name == "callback_key":
        return value or None
    if name == "retry":
        return parse_retry(value)
    if name == "clock":
        return str(value)
    return value


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
    lease_s: float = 5.0  # PostgreSQL shared mode: a process silent this long is dead
    cpu: str = "auto"  # serve only: the CPU to run on (emulator.cli.cpu)
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
        if not 0.5 <= float(settings.lease_s) <= 3600:
            raise InvalidInput("lease_s", "must be between 0.5 and 3600 seconds")
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


def runtime_from(stored: Mapping[str, Any]) -> RuntimeConfig:
    """The runtime config saved in the database (values an older release saved and this one
    refuses are skipped, with a warning)."""
    runtime = RuntimeConfig()
    for key, value in stored.items():
        if key not in Settings.RUNTIME_KEYS:
            continue
        try:
            runtime = runtime.patched({key: value})
        except InvalidInput as bad:
            log.warning("ignoring stored %s: %s", key, bad.message)
    return runtime
