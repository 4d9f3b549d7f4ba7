"""PostgreSQL connections for the store: errors shown in one line without secrets, and the
pool's idle check.

Imported only by `emulator.store.postgres` (so only with the `postgres` extra installed).
"""

from __future__ import annotations

import re
import select
from typing import Any

import psycopg

Conn = Any  # psycopg.Connection[Row]


def check_idle(conn: Conn) -> None:
    """The pool's check before lending a connection, with no round trip: an idle connection
    with bytes waiting was told it is being closed (server restart); the pool drops it."""
    if conn.closed or conn.broken:
        raise psycopg.OperationalError("the connection is closed")
    readable, _, _ = select.select([conn.fileno()], [], [], 0)
    if readable:
        conn.close()  # closed, the pool replaces it (an open one would be lent again)
        raise psycopg.OperationalError("the server closed the connection")


def describe(exc: BaseException) -> str:
    """One line: libpq's messages span several lines."""
    text = re.sub(r"\s+", " ", str(exc)).strip() or type(exc).__name__
    return re.sub(r"password=\S+", "password=***", text)
