"""What load mode sends: recording tasks planned and signed by the emulator's own code.

Nothing here imports Locust (or gevent), so the emulator, the CLI and the test process can use
it; the Locust user class in `emulator.load.locustfile` is a thin driver around it.
"""

from __future__ import annotations

import ipaddress
import random
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from emulator.core import ids, payloads
from emulator.core.errors import InvalidInput
from emulator.core.scenarios import BUILTIN_DIR, Catalogue, Scenario, load_dir
from emulator.core.signing import SignMode
from emulator.core.timeline import plan_task

DEFAULT_MIX = "success=95,transcode-failure=5"
DEFAULT_SDK_APP_ID = 1400000001
SIGN_TTL_S = 300  # ExpireTime = Timestamp + 300, as the emulator's default sign_ttl_s
# Scenarios whose callbacks a correct backend must refuse: a refusal counts as success.
MUST_REFUSE = {SignMode.INVALID: "forged Sign", SignMode.EXPIRED: "expired ExpireTime"}


@dataclass(frozen=True)
class Limits:
    """What `tiw-emulator load` accepts without `--no-limits` (documented in the README)."""

    users: int = 1000
    spawn_rate: float = 100.0  # users started per second
    run_time_s: float = 3600.0
    tasks: int = 100_000
    rate: float = 5000.0  # callbacks per second, with --rate

    def check(
        self,
        *,
        users: int,
        spawn_rate: float,
        run_time_s: float | None,
        tasks: int | None,
        rate: float | None,
    ) -> list[str]:
        """Every value above its limit, as `--flag: value > limit` lines (empty: all fine)."""
        over = []
        if users > self.users:
            over.append(f"--users {users} > {self.users}")
        if spawn_rate > self.spawn_rate:
            over.append(f"--spawn-rate {spawn_rate:g} > {self.spawn_rate:g} per second")
        if run_time_s is not None and run_time_s > self.run_time_s:
            over.append(f"--run-time {run_time_s:g}s > {self.run_time_s:g}s")
        if tasks is not None and tasks > self.tasks:
            over.append(f"--tasks {tasks} > {self.tasks}")
        if rate is not None and rate > self.rate:
            over.append(f"--rate {rate:g} > {self.rate:g} callbacks/s")
        return over


LIMITS = Limits()


def parse_mix(text: str, catalogue: Catalogue) -> dict[str, float]:
    """`success=95,transcode-failure=5` -> weights by scenario name; a bare name weighs 1."""
    mix: dict[str, float] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, sep, raw = item.partition("=")
        name = name.strip()
        try:
            weight = float(raw) if sep else 1.0
        except ValueError:
            raise InvalidInput("--mix", f"{item!r}: weight {raw!r} is not a number") from None
        if weight <= 0:
            raise InvalidInput("--mix", f"{item!r}: weight must be > 0")
        if name not in catalogue.names():
            raise InvalidInput(
                "--mix", f"unknown scenario {name!r}; known: {', '.join(catalogue.names())}"
            )
        mix[name] = mix.get(name, 0.0) + weight
    if not mix:
        raise InvalidInput("--mix", "no scenario given, e.g. success=95,transcode-failure=5")
    return mix


def parse_duration(text: str) -> float:
    """`90`, `90s`, `5m`, `1h30m` -> seconds (Locust's --run-time syntax)."""
    value, total, unit_seen = "", 0.0, False
    for ch in text.strip().lower():
        if ch.isdigit() or ch == ".":
            value += ch
        elif ch in "hms" and value:
            total += float(value) * {"h": 3600, "m": 60, "s": 1}[ch]
            value, unit_seen = "", True
        else:
            raise InvalidInput("--run-time", f"{text!r} is not a duration such as 90s, 5m or 1h")
    if value:
        total += float(value)
    elif not unit_seen:
        raise InvalidInput("--run-time", f"{text!r} is not a duration such as 90s, 5m or 1h")
    if total <= 0:
        raise InvalidInput("--run-time", "must be > 0")
    return total


def parse_speed(text: str) -> float | None:
    """Emulated seconds per wall second; `max` (None) sends each task's callbacks back to back."""
    if text.strip().lower() == "max":
        return None
    try:
        speed = float(text)
    except ValueError:
        raise InvalidInput("--speed", f"{text!r} is not a number or 'max'") from None
    if speed <= 0:
        raise InvalidInput("--speed", "must be > 0 (or 'max')")
    return speed


def builtin_catalogue() -> Catalogue:
    return Catalogue(load_dir(BUILTIN_DIR))


def check_mix_signing(mix: Mapping[str, float], catalogue: Catalogue, key: str | None) -> None:
    """A forged or expired signature means nothing without a key: refuse such a mix unsigned."""
    if key:
        return
    unsigned = [n for n in mix if sign_mode(catalogue.get(n)) in MUST_REFUSE]
    if unsigned:
        raise InvalidInput(
            "--mix",
            f"{', '.join(unsigned)} need(s) --callback-key: unsigned callbacks carry no Sign",
        )


def sign_mode(scenario: Scenario) -> SignMode:
    return SignMode(scenario.section("delivery")["sign"])


@dataclass(frozen=True)
class Callback:
    """One callback of a load task, ready to be signed and sent when its time comes."""

    seq: int
    offset_s: float  # emulated seconds after the task was created
    event_type: str
    data_json: str
    sign_mode: SignMode
    name: str  # the request name in Locust's statistics

    @property
    def must_refuse(self) -> bool:
        return self.sign_mode in MUST_REFUSE


@dataclass(frozen=True)
class LoadTask:
    task_id: str
    scenario: str
    room_id: int
    callbacks: list[Callback]


def request_name(event_type: str, mode: SignMode) -> str:
    """Per-event names, so Locust shows each event type (and each must-refuse kind) apart."""
    refuse = MUST_REFUSE.get(mode)
    return f"{event_type} ({refuse}: must be refused)" if refuse else event_type


class TaskFactory:
    """Plans one recording task at a time from a weighted scenario mix, with the emulator's code."""

    def __init__(
        self, mix: Mapping[str, float], catalogue: Catalogue, rng: random.Random | None = None
    ) -> None:
        self._scenarios = [catalogue.get(name) for name in mix]
        self._weights = list(mix.values())
        self._rng = rng or random.Random()

    def next_task(self, *, wall_now: float | None = None) -> LoadTask:
        scenario = self._rng.choices(self._scenarios, self._weights)[0]
        task_id = ids.new_task_id(self._rng)
        room_id = self._rng.randint(10_000, 99_999_999)
        plan = plan_task(
            scenario,
            rng=random.Random(self._rng.getrandbits(32)),
            task_id=task_id,
            room_id=room_id,
            group_id=str(room_id),
            created_at=0.0,
            wall_created_at=time.time() if wall_now is None else wall_now,
        )
        callbacks = [
            Callback(
                seq=event.seq,
                offset_s=event.due_at,
                event_type=event.event_type,
                data_json=payloads.encode_data(event.event_data),
                sign_mode=event.sign_mode,
                name=request_name(event.event_type, event.sign_mode),
            )
            for event in plan.events
            if not event.dropped
        ]
        return LoadTask(task_id, scenario.name, room_id, callbacks)


def callback_body(
    callback: Callback,
    *,
    sdk_app_id: int,
    callback_key: str | None,
    wall_now: float | None = None,
    ttl_s: int = SIGN_TTL_S,
) -> bytes:
    """The exact bytes the emulator would send for this callback at `wall_now` (SPEC section 2)."""
    return payloads.envelope_bytes(
        callback.event_type,
        callback.data_json,
        sdk_app_id=sdk_app_id,
        timestamp=int(time.time() if wall_now is None else wall_now),
        callback_key=callback_key,
        ttl_s=ttl_s,
        sign_mode=callback.sign_mode,
    )


def target_addresses(url: str) -> tuple[str, list[str]]:
    """(host, the addresses it resolves to) of a callback URL; errors name what is wrong."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput("--callback-url", f"{url!r} is not an http(s):// URL")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(parts.hostname, port, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        raise InvalidInput(
            "--callback-url", f"cannot resolve {parts.hostname!r}: {exc.strerror or exc}"
        ) from None
    return parts.hostname, sorted({str(info[4][0]) for info in infos})


def is_loopback(addresses: list[str]) -> bool:
    """True when every address is on this machine's loopback (127.0.0.0/8, ::1)."""
    return bool(addresses) and all(
        ipaddress.ip_address(a.split("%", 1)[0]).is_loopback for a in addresses
    )


def check_target(url: str, *, allow_remote: bool) -> str:
    """Refuse a non-loopback target unless allowed; returns the line saying where load goes."""
    host, addresses = target_addresses(url)
    where = f"{url} ({host} -> {', '.join(addresses)})"
    if is_loopback(addresses):
        return f"load goes to {where}, on this machine"
    if not allow_remote:
        raise InvalidInput(
            "--callback-url",
            f"{where} is not on loopback; pass --allow-remote to send load to another machine",
        )
    return f"load goes to {where}: ANOTHER MACHINE (--allow-remote)"
