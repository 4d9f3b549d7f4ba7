"""Tests for emulator.core.ids and emulator.core.recording (pure, deterministic generation)."""

from __future__ import annotations

import json
import random
import re
import string
import uuid
from typing import Any

import pytest
from spec_facts import VIDEO_INFO_TYPES

from emulator.core.ids import TASK_ID_ALPHABET, new_request_id, new_task_id, new_video_id
from emulator.core.recording import (
    VIDEO_INFO_KEYS,
    ClassSpec,
    Recording,
    _token,
    bitrate_range_kbps,
    faker_user_ids,
    generate_recording,
    user_ids,
)

URL_RE = re.compile(
    r"^http://(\d{10})\.vod2\.myqcloud\.com/[0-9a-f]{8}vod[a-z]+\1/[\w.-]+\.(mp4|mp3)$"
)
FULL = ClassSpec(duration_s=3600, participants=5, screen_share=True, mixed_stream=True)
SPECS = [
    ClassSpec(duration_s=156.75),
    ClassSpec(duration_s=45 * 60, participants=1),
    FULL,
    ClassSpec(duration_s=7200, participants=16, mixed_stream=True, mix_model_id=2),
    ClassSpec(duration_s=900, participants=3, audio_only=True, screen_share=True),
    ClassSpec(duration_s=600, camera=False, whiteboard=False, mixed_stream=True),
    ClassSpec(duration_s=1800, width=1920, height=1080, mixed_stream=True),
]


def gen(spec: ClassSpec, seed: int = 1, room_id: int = 900822) -> Recording:
    return generate_recording(spec, room_id=room_id, rng=random.Random(seed))


def dump(rec: Recording) -> str:
    return json.dumps({"TotalTime": rec.total_time_ms, "VideoInfos": rec.video_infos})


def all_recordings() -> list[tuple[ClassSpec, Recording]]:
    return [(spec, gen(spec, seed)) for spec in SPECS for seed in range(8)]


def by_type(rec: Recording, video_type: int) -> list[dict[str, Any]]:
    return [v for v in rec.video_infos if v["VideoType"] == video_type]


# --- ids --------------------------------------------------------------------------------------


def test_task_id_alphabet_length_and_uniqueness() -> None:
    rng = random.Random(42)
    ids = [new_task_id(rng) for _ in range(1000)]
    assert TASK_ID_ALPHABET == "0123456789abcdefghijklmnopqrstuv"
    for task_id in ids:
        assert re.fullmatch(r"[0-9a-v]{20}", task_id), task_id
    assert len(set(ids)) == 1000
    # every character of the alphabet shows up somewhere, in both early and late positions
    assert set("".join(ids)) == set(TASK_ID_ALPHABET)
    assert {t[0] for t in ids} == set(TASK_ID_ALPHABET)
    assert {t[-1] for t in ids} == set(TASK_ID_ALPHABET)


def test_task_id_deterministic() -> None:
    assert new_task_id(random.Random(7)) == new_task_id(random.Random(7))
    assert new_task_id(random.Random(7)) != new_task_id(random.Random(8))


def test_video_id_shape() -> None:
    rng = random.Random(3)
    ids = [new_video_id(rng) for _ in range(1000)]
    for video_id in ids:
        assert isinstance(video_id, str)
        assert re.fullmatch(r"[1-9]\d{18}", video_id), video_id
    assert len(set(ids)) == 1000


def test_request_id_is_uuid4() -> None:
    rng = random.Random(5)
    ids = [new_request_id(rng) for _ in range(200)]
    for request_id in ids:
        parsed = uuid.UUID(request_id)
        assert str(parsed) == request_id
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
    assert len(set(ids)) == 200
    assert new_request_id(random.Random(9)) == new_request_id(random.Random(9))


# --- user ids ---------------------------------------------------------------------------------


def test_user_ids_deterministic_unique_ascii() -> None:
    first = user_ids(40, random.Random(11))
    assert first == user_ids(40, random.Random(11))
    assert first != user_ids(40, random.Random(12))
    assert len(first) == 40
    assert len(set(first)) == 40
    assert first[0].startswith("teacher_")
    assert all(u.startswith("student_") for u in first[1:])
    for user in first:
        assert re.fullmatch(r"[a-z0-9_]+", user), user
        assert len(user) > len("student_") - 1


def test_user_ids_advance_rng_once() -> None:
    rng = random.Random(1)
    user_ids(3, rng)
    reference = random.Random(1)
    reference.getrandbits(32)
    assert rng.random() == reference.random()


def test_user_ids_are_fakers_draws_exactly() -> None:
    """The fast draws (Faker's tables, cached weights) give what a reseeded Faker gives."""
    for seed in range(3000):
        participants = 1 + seed % 12
        rng = random.Random(seed)
        fast = user_ids(participants, rng)
        assert fast == faker_user_ids(participants, random.Random(seed).getrandbits(32)), seed


def test_video_name_tokens_are_random_choice_draws_exactly() -> None:
    alphabet = string.ascii_letters + string.digits
    for seed in range(2000):
        fast, reference = random.Random(seed), random.Random(seed)
        expected = "".join(reference.choice(alphabet) for _ in range(12))
        assert _token(fast, 12) == expected
        assert fast.random() == reference.random()  # the same state after


# --- recording --------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", SPECS)
def test_same_seed_same_recording(spec: ClassSpec) -> None:
    assert dump(gen(spec, 123)) == dump(gen(spec, 123))


@pytest.mark.parametrize("spec", SPECS)
def test_different_seed_different_recording(spec: ClassSpec) -> None:
    assert dump(gen(spec, 1)) != dump(gen(spec, 2))


def test_room_id_only_changes_mixed_user_id() -> None:
    a = gen(FULL, 4, room_id=1)
    b = gen(FULL, 4, room_id=2)
    assert dump(a) != dump(b)
    assert [v["UserId"] for v in by_type(a, 3)] == ["tic_mixstream_1_1"]
    assert [v["UserId"] for v in by_type(b, 3)] == ["tic_mixstream_2_1"]


def test_keys_and_types_exact() -> None:
    for _, rec in all_recordings():
        assert type(rec.total_time_ms) is int
        for info in rec.video_infos:
            assert tuple(info) == VIDEO_INFO_KEYS
            for key, expected in VIDEO_INFO_TYPES.items():
                assert type(info[key]) is expected, (key, info[key])


def test_total_time_close_to_class_duration() -> None:
    for spec, rec in all_recordings():
        class_ms = spec.duration_s * 1000
        assert 0.9 * class_ms - 1 <= rec.total_time_ms <= class_ms


def test_every_video_inside_total_time() -> None:
    for _, rec in all_recordings():
        assert rec.video_infos
        for info in rec.video_infos:
            assert info["VideoPlayTime"] >= 0
            assert info["VideoDuration"] > 0
            assert info["VideoPlayTime"] + info["VideoDuration"] <= rec.total_time_ms


def test_video_ids_and_urls_unique_and_well_formed() -> None:
    for _, rec in all_recordings():
        ids = [v["VideoId"] for v in rec.video_infos]
        urls = [v["VideoUrl"] for v in rec.video_infos]
        assert len(set(ids)) == len(ids)
        assert len(set(urls)) == len(urls)
        app_ids = set()
        for info in rec.video_infos:
            assert re.fullmatch(r"[1-9]\d{18}", info["VideoId"])
            match = URL_RE.match(info["VideoUrl"])
            assert match, info["VideoUrl"]
            assert match.group(1).startswith("125")
            assert match.group(2) == info["VideoFormat"]
            app_ids.add(match.group(1))
        assert len(app_ids) == 1


def test_implied_bitrate_plausible() -> None:
    fixed = {0: (300, 800), 1: (200, 1000), 3: (600, 1500), 4: (48, 64)}
    checked = set()
    for spec, rec in all_recordings():
        for info in rec.video_infos:
            vtype = info["VideoType"]
            kbps = info["VideoSize"] * 8 / info["VideoDuration"]
            low, high = bitrate_range_kbps(vtype, info["Width"], info["Height"])
            assert low <= kbps <= high, (vtype, kbps)
            at_reference = (spec.width, spec.height) == (1280, 960)
            if vtype == 2 and at_reference:
                assert 12 <= kbps <= 40, kbps
            elif vtype in fixed and (vtype != 3 or at_reference):
                assert fixed[vtype][0] <= kbps <= fixed[vtype][1], (vtype, kbps)
            checked.add(vtype)
    assert checked == {0, 1, 2, 3, 4}


def test_seed_example_whiteboard_bitrate_is_in_range() -> None:
    low, high = bitrate_range_kbps(2)
    assert low <= 318384 * 8 / 156750 <= high


def test_larger_canvas_means_larger_whiteboard_files() -> None:
    small = ClassSpec(duration_s=3600, width=640, height=480)
    large = ClassSpec(duration_s=3600, width=1920, height=1440)
    small_sizes = [by_type(gen(small, s), 2)[0]["VideoSize"] for s in range(10)]
    large_sizes = [by_type(gen(large, s), 2)[0]["VideoSize"] for s in range(10)]
    assert max(small_sizes) < min(large_sizes)


def test_whiteboard_video() -> None:
    rec = gen(ClassSpec(duration_s=156.75, width=1600, height=1200))
    (board,) = by_type(rec, 2)
    assert board["UserId"] == ""
    assert board["VideoPlayTime"] == 0
    assert board["VideoDuration"] == rec.total_time_ms
    assert board["VideoFormat"] == "mp4"
    assert (board["Width"], board["Height"]) == (1600, 1200)
    assert board["VideoUrl"].endswith("/video.mp4")  # like the seed example


def test_full_class_layout() -> None:
    rec = gen(FULL, 6, room_id=4294967295)
    cameras = by_type(rec, 0)
    (mixed,) = by_type(rec, 3)
    (screen,) = by_type(rec, 1)
    assert len(by_type(rec, 2)) == 1
    assert len(cameras) == 5
    assert not by_type(rec, 4)
    teacher = cameras[0]["UserId"]
    assert teacher.startswith("teacher_")
    assert all(c["UserId"].startswith("student_") for c in cameras[1:])
    assert all((c["Width"], c["Height"], c["VideoFormat"]) == (640, 480, "mp4") for c in cameras)
    assert cameras[0]["VideoPlayTime"] <= 0.02 * rec.total_time_ms
    assert mixed["UserId"] == "tic_mixstream_4294967295_1"
    assert (mixed["VideoPlayTime"], mixed["VideoDuration"]) == (0, rec.total_time_ms)
    assert (mixed["Width"], mixed["Height"]) == (1280, 960)
    assert screen["UserId"] == teacher
    assert (screen["Width"], screen["Height"]) in {(1280, 720), (1920, 1080)}
    assert screen["VideoPlayTime"] > 0
    assert screen["VideoDuration"] < rec.total_time_ms


def test_students_staggered() -> None:
    spec = ClassSpec(duration_s=3600, participants=12)
    late_join = early_leave = 0
    for seed in range(10):
        rec = gen(spec, seed)
        for cam in by_type(rec, 0)[1:]:
            late_join += cam["VideoPlayTime"] > 0
            early_leave += cam["VideoPlayTime"] + cam["VideoDuration"] < 0.9 * rec.total_time_ms
    assert late_join > 100
    assert 0 < early_leave < 110


def test_mix_model_id_in_user_id() -> None:
    spec = ClassSpec(duration_s=60, mixed_stream=True, mix_model_id=2)
    (mixed,) = by_type(gen(spec, room_id=1253), 3)
    assert mixed["UserId"] == "tic_mixstream_1253_2"
    assert re.fullmatch(r"tic_mixstream_\d+_\d+", mixed["UserId"])


def test_audio_only() -> None:
    spec = ClassSpec(duration_s=1200, participants=3, audio_only=True)
    rec = gen(spec)
    audios = by_type(rec, 4)
    assert len(audios) == 3
    assert not by_type(rec, 0)
    for audio in audios:
        assert audio["VideoFormat"] == "mp3"
        assert audio["VideoUrl"].endswith(".mp3")
        assert (audio["Width"], audio["Height"]) == (0, 0)


def test_flags_select_sources() -> None:
    rec = gen(ClassSpec(duration_s=300, camera=False))
    assert [v["VideoType"] for v in rec.video_infos] == [2]
    rec = gen(ClassSpec(duration_s=300, participants=3, whiteboard=False))
    assert sorted(v["VideoType"] for v in rec.video_infos) == [0, 0, 0]


def test_user_ids_stable_across_flags() -> None:
    plain = gen(ClassSpec(duration_s=600, participants=4), 9)
    audio = gen(ClassSpec(duration_s=600, participants=4, audio_only=True), 9)
    assert [v["UserId"] for v in by_type(plain, 0)] == [v["UserId"] for v in by_type(audio, 4)]


def test_tiny_duration_still_consistent() -> None:
    spec = ClassSpec(duration_s=0.001, participants=3, screen_share=True, mixed_stream=True)
    rec = gen(spec)
    assert rec.total_time_ms == 1
    for info in rec.video_infos:
        assert info["VideoDuration"] >= 1
        assert info["VideoPlayTime"] + info["VideoDuration"] <= 1
        assert info["VideoSize"] >= 1


@pytest.mark.parametrize(
    ("spec", "room_id", "message"),
    [
        (ClassSpec(duration_s=0), 1, "duration_s"),
        (ClassSpec(duration_s=-5), 1, "duration_s"),
        (ClassSpec(duration_s=float("nan")), 1, "duration_s"),
        (ClassSpec(duration_s=float("inf")), 1, "duration_s"),
        (ClassSpec(duration_s=60, participants=0), 1, "participants"),
        (ClassSpec(duration_s=60, participants=True), 1, "participants"),
        (ClassSpec(duration_s=60, width=1), 1, "width"),
        (ClassSpec(duration_s=60, camera=False, whiteboard=False), 1, "at least one"),
        (ClassSpec(duration_s=60), -1, "room_id"),
    ],
)
def test_bad_specs_raise(spec: ClassSpec, room_id: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        generate_recording(spec, room_id=room_id, rng=random.Random(0))
