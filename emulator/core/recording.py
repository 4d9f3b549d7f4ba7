"""Pure generation of a finished after-class recording: TotalTime and VideoInfos.

Everything here is deterministic given its inputs (spec, room id and the state of ``rng``):
no globals, no wall clock, no I/O.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import math
import random
import re
import string
import threading
from dataclasses import dataclass
from typing import Any

from emulator.core.ids import new_video_id

__all__ = [
    "VIDEO_INFO_KEYS",
    "ClassSpec",
    "Recording",
    "bitrate_range_kbps",
    "generate_recording",
    "user_ids",
]

VIDEO_INFO_KEYS: tuple[str, ...] = (
    "VideoPlayTime",
    "VideoSize",
    "VideoFormat",
    "VideoDuration",
    "VideoUrl",
    "VideoId",
    "VideoType",
    "UserId",
    "Width",
    "Height",
)

CAMERA, SCREEN, WHITEBOARD, MIXED, AUDIO = 0, 1, 2, 3, 4

# Plausible bitrate ranges in kbit/s at the reference resolution (whiteboard/mixed scale with area).
_BITRATE_KBPS: dict[int, tuple[float, float]] = {
    CAMERA: (300.0, 800.0),
    SCREEN: (200.0, 1000.0),
    WHITEBOARD: (12.0, 40.0),  # a mostly static board; the seed example is ~16 kbit/s
    MIXED: (600.0, 1500.0),
    AUDIO: (48.0, 64.0),
}
_REFERENCE_PIXELS = 1280 * 960
_VOD_REGIONS = ("cq", "gzp", "tj", "bj", "sh", "gz", "cd")
_SCREEN_RESOLUTIONS = ((1280, 720), (1920, 1080))
_TOKEN_ALPHABET = string.ascii_letters + string.digits
_NON_ID_CHARS = re.compile(r"[^a-z0-9_]")
_TOKEN = re.compile(r"\{\{\s*(\w+)\s*\}\}")  # Faker's template token, e.g. {{last_name}}
_FAKER_SPECIALS = frozenset("#%$!@?{}")


class _FakerNames:
    """Faker en_US's `last_name()` and `user_name()`, drawn from Faker's own tables, exactly.

    The same draws from the same `random.Random` as a Faker reseeded with that seed would make
    (tests/test_recording.py compares them over thousands of seeds), without Faker's cost per
    call: its weighted choice copies a 700-1,000-entry weight table and accumulates it on every
    call, and its template and slug handling run several regex passes. That was ~300 us of a
    created task's ~1 ms; this is ~10 us: the weights are accumulated once, a weighted draw is
    `Random.choices`' own bisection without its checks, and each user-name format is split into
    its name tokens once, its # and ? passes run only for the formats that have them.
    """

    def __init__(self) -> None:
        from faker.providers.internet.en_US import Provider as Internet
        from faker.providers.person.en_US import Provider as Person

        self.tables: dict[str, tuple[tuple[str, ...], list[float], float, int]] = {}
        for name, table in (("last_name", Person.last_names), ("first_name", Person.first_names)):
            keys = tuple(table)
            cum = list(itertools.accumulate(table.values()))
            self.tables[name] = (keys, cum, cum[-1] + 0.0, len(keys) - 1)
        self.formats = tuple(Internet.user_name_formats)
        # each format as its pieces (literal text, or a table name to draw from), and whether
        # it has a # (a digit drawn) or a ? (a letter drawn)
        self.parsed = tuple((tuple(_TOKEN.split(f)), "#" in f, "?" in f) for f in self.formats)
        names = [k for keys, *_ in self.tables.values() for k in keys]
        # The shortcuts below hold for ASCII names without Faker's placeholder characters (true
        # of en_US): bothify then only sees the format's own # and ?, and Faker's slug and
        # ASCII steps only drop characters that _NON_ID_CHARS drops anyway.
        self.exact = all(n.isascii() and not _FAKER_SPECIALS & set(n) for n in names) and all(
            set(_TOKEN.findall(f)) <= set(self.tables) for f in self.formats
        )

    def draw(self, name: str, rnd: random.Random) -> str:
        """What Faker's weighted element draws: `rnd.choices(keys, cum_weights=cum)[0]`."""
        keys, cum, total, hi = self.tables[name]
        return keys[bisect.bisect(cum, rnd.random() * total, 0, hi)]

    def user_name(self, rnd: random.Random) -> str:
        pieces, digits, letters = rnd.choice(self.parsed)
        # _TOKEN.split puts the token names at the odd places; drawn left to right, as sub does
        text = "".join(self.draw(piece, rnd) if n % 2 else piece for n, piece in enumerate(pieces))
        if digits:  # numerify
            text = "".join(str(rnd.randint(0, 9)) if c == "#" else c for c in text)
        if letters:  # lexify
            text = "".join(rnd.choice(string.ascii_letters) if c == "?" else c for c in text)
        return text


@functools.cache
def _names() -> _FakerNames:
    return _FakerNames()  # on the first task: imports Faker's en_US tables only (~0.1 s)


@dataclass(frozen=True)
class ClassSpec:
    """What happened in the class, i.e. which streams the recording contains."""

    duration_s: float
    participants: int = 2
    camera: bool = True
    screen_share: bool = False
    mixed_stream: bool = False
    audio_only: bool = False
    whiteboard: bool = True
    mix_model_id: int = 1
    audio_participants: int = 0  # with camera: the last N students joined by audio only
    width: int = 1280
    height: int = 960


@dataclass(frozen=True)
class Recording:
    """A finished recording: ``TotalTime`` (ms) and the ``VideoInfos`` list."""

    total_time_ms: int
    video_infos: list[dict[str, Any]]


def bitrate_range_kbps(
    video_type: int, width: int = 1280, height: int = 960
) -> tuple[float, float]:
    """Return the (low, high) kbit/s range used for ``video_type`` (whiteboard/mixed at W x H)."""
    low, high = _BITRATE_KBPS[video_type]
    if video_type in (WHITEBOARD, MIXED):
        scale = min(4.0, max(0.25, width * height / _REFERENCE_PIXELS))
        low, high = low * scale, high * scale
    return low, high


def user_ids(participants: int, rng: random.Random) -> list[str]:
    """Return ``participants`` unique ASCII user ids: a teacher first, then students.

    Names are Faker en_US's, drawn by a Faker reseeded with one draw from ``rng``.
    """
    seed = rng.getrandbits(32)
    names = _names()
    if not names.exact:  # pragma: no cover - a Faker whose en_US tables break the shortcuts
        return faker_user_ids(participants, seed)
    rnd = random.Random(seed)  # the state a Faker's seed_instance(seed) gives its Random
    ids: list[str] = []
    seen: set[str] = set()
    for index in range(participants):
        if index == 0:
            base = "teacher_" + (_NON_ID_CHARS.sub("", names.draw("last_name", rnd).lower()) or "t")
        else:
            base = "student_" + (_NON_ID_CHARS.sub("", names.user_name(rnd).lower()) or "s")
        ids.append(_unique(base, seen))
    return ids


def faker_user_ids(participants: int, seed: int) -> list[str]:
    """`user_ids` through Faker itself (the reference the fast draws are tested against)."""
    fake = getattr(_FAKERS, "fake", None)
    if fake is None:
        from faker import Faker

        fake = _FAKERS.fake = Faker("en_US")
    fake.seed_instance(seed)
    ids: list[str] = []
    seen: set[str] = set()
    for index in range(participants):
        if index == 0:
            base = "teacher_" + (_NON_ID_CHARS.sub("", fake.last_name().lower()) or "t")
        else:
            base = "student_" + (_NON_ID_CHARS.sub("", fake.user_name().lower()) or "s")
        ids.append(_unique(base, seen))
    return ids


_FAKERS = threading.local()  # one Faker per thread for faker_user_ids (3.5 ms to build)


def _unique(base: str, seen: set[str]) -> str:
    candidate, n = base, 1
    while candidate in seen:
        n += 1
        candidate = f"{base}{n}"
    seen.add(candidate)
    return candidate


def _validate(spec: ClassSpec, room_id: int) -> None:
    duration = spec.duration_s
    if isinstance(duration, bool) or not isinstance(duration, int | float):
        raise ValueError(f"duration_s must be a number of seconds, got {duration!r}")
    if not math.isfinite(duration) or duration <= 0:
        raise ValueError(f"duration_s must be a finite number > 0, got {duration!r}")
    for name in ("participants", "mix_model_id", "width", "height"):
        value = getattr(spec, name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be an int, got {value!r}")
    if spec.participants < 1:
        raise ValueError(f"participants must be >= 1, got {spec.participants}")
    if spec.width < 2 or spec.height < 2:
        raise ValueError(f"width and height must be >= 2, got {spec.width}x{spec.height}")
    if spec.mix_model_id < 0:
        raise ValueError(f"mix_model_id must be >= 0, got {spec.mix_model_id}")
    if isinstance(room_id, bool) or not isinstance(room_id, int) or room_id < 0:
        raise ValueError(f"room_id must be a non-negative int, got {room_id!r}")
    sources = (spec.camera, spec.audio_only, spec.screen_share, spec.mixed_stream, spec.whiteboard)
    if not any(sources):
        raise ValueError(
            "spec records nothing: enable at least one of camera, audio_only, "
            "screen_share, mixed_stream, whiteboard"
        )


def _span(total: int, start_frac: float, end_frac: float) -> tuple[int, int]:
    """Turn fractions of ``total`` into (play_time, duration) with play + duration <= total."""
    start = min(int(total * start_frac), total - 1)
    end = min(total, max(start + 1, int(total * end_frac)))
    return start, end - start


def _size(duration_ms: int, kbps: tuple[float, float], rng: random.Random) -> int:
    low, high = kbps
    size = round(duration_ms * rng.uniform(low, high) / 8)
    # Keep the implied bitrate (size * 8 / duration) inside [low, high] despite rounding.
    return max(math.ceil(duration_ms * low / 8), min(math.floor(duration_ms * high / 8), size))


def _token(rng: random.Random, length: int) -> str:
    """`"".join(rng.choice(_TOKEN_ALPHABET) for _ in range(length))`, the same draws, faster.

    `Random.choice` takes `getrandbits(6)` until it is below 62 (`Random._randbelow`); doing that
    here saves two Python calls per character (12 characters per video, ~4 videos per task).
    """
    getrandbits, alphabet, size = rng.getrandbits, _TOKEN_ALPHABET, len(_TOKEN_ALPHABET)
    bits = size.bit_length()
    out = []
    for _ in range(length):
        r = getrandbits(bits)
        while r >= size:
            r = getrandbits(bits)
        out.append(alphabet[r])
    return "".join(out)


def generate_recording(spec: ClassSpec, *, room_id: int, rng: random.Random) -> Recording:
    """Generate the result of a successful recording of the class described by ``spec``."""
    _validate(spec, room_id)
    users = user_ids(spec.participants, rng)  # drawn first so ids don't depend on other flags
    total = max(1, int(spec.duration_s * 1000 * rng.uniform(0.90, 1.0)))
    vod_app_id = str(1250000000 + rng.randrange(10_000_000))
    bucket = f"{rng.getrandbits(32):08x}vod{rng.choice(_VOD_REGIONS)}{vod_app_id}"
    base_url = f"http://{vod_app_id}.vod2.myqcloud.com/{bucket}/"
    used_ids: set[str] = set()
    used_names: set[str] = set()
    infos: list[dict[str, Any]] = []

    def add(
        vtype: int, user: str, span: tuple[int, int], width: int, height: int, name: str = ""
    ) -> None:
        play, duration = span
        fmt = "mp3" if vtype == AUDIO else "mp4"
        size = _size(duration, bitrate_range_kbps(vtype, width, height), rng)
        while not name or name in used_names:
            name = _token(rng, 12)
        used_names.add(name)
        video_id = new_video_id(rng)
        while video_id in used_ids:
            video_id = new_video_id(rng)
        used_ids.add(video_id)
        infos.append(
            {
                "VideoPlayTime": play,
                "VideoSize": size,
                "VideoFormat": fmt,
                "VideoDuration": duration,
                "VideoUrl": f"{base_url}{name}.{fmt}",
                "VideoId": video_id,
                "VideoType": vtype,
                "UserId": user,
                "Width": width,
                "Height": height,
            }
        )

    if spec.whiteboard:
        add(WHITEBOARD, "", (0, total), spec.width, spec.height, name="video")
    if spec.mixed_stream:
        mix_user = f"tic_mixstream_{room_id}_{spec.mix_model_id}"
        add(MIXED, mix_user, (0, total), spec.width, spec.height)
    if spec.camera or spec.audio_only:
        first_audio = len(users) - min(spec.audio_participants, len(users) - 1)
        for index, user in enumerate(users):
            audio = spec.audio_only or index >= first_audio
            vtype, width, height = (AUDIO, 0, 0) if audio else (CAMERA, 640, 480)
            if index == 0:  # the teacher opens the class and stays to the end
                span = _span(total, rng.uniform(0.0, 0.02), rng.uniform(0.98, 1.0))
            else:  # students join later; about a quarter leave early
                start = rng.uniform(0.0, 0.2)
                end = rng.uniform(0.95, 1.0) if rng.random() < 0.75 else rng.uniform(0.5, 0.95)
                span = _span(total, start, end)
            add(vtype, user, span, width, height)
    if spec.screen_share:
        start = rng.uniform(0.05, 0.4)
        width, height = rng.choice(_SCREEN_RESOLUTIONS)
        add(SCREEN, users[0], _span(total, start, start + rng.uniform(0.2, 0.5)), width, height)
    return Recording(total_time_ms=total, video_infos=infos)
