"""Identifier generators (TaskId, VOD VideoId, RequestId) driven by an explicit random.Random."""

from __future__ import annotations

import random
import uuid

__all__ = ["TASK_ID_ALPHABET", "new_request_id", "new_task_id", "new_video_id"]

TASK_ID_ALPHABET = "0123456789abcdefghijklmnopqrstuv"
TASK_ID_LENGTH = 20
VIDEO_ID_PREFIX = "528589"
VIDEO_ID_LENGTH = 19


def new_task_id(rng: random.Random) -> str:
    """Return a 20-char TaskId over ``[0-9a-v]``, e.g. ``00e1jv8ve0jcqk7da9lb``."""
    bits = rng.getrandbits(5 * TASK_ID_LENGTH)
    chars = [TASK_ID_ALPHABET[(bits >> (5 * i)) & 31] for i in range(TASK_ID_LENGTH)]
    return "".join(chars)


def new_video_id(rng: random.Random) -> str:
    """Return a 19-digit VOD FileId-like string, e.g. ``5285890792776509100``."""
    tail_len = VIDEO_ID_LENGTH - len(VIDEO_ID_PREFIX)
    return VIDEO_ID_PREFIX + str(rng.randrange(10**tail_len)).zfill(tail_len)


def new_request_id(rng: random.Random) -> str:
    """Return a uuid4-formatted RequestId drawn from ``rng``."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))
