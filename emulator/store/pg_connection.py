"""PostgreSQL connections for the store: URLs and errors shown without secrets, the pool's
idle check, and the owner lock that keeps one emulator process per database.

Imported only by `emulator.store.postgres` (so only with the `postgres` extra installed).
"""

from __future__ import annotations

import re
import select
from typing import Any

import psycopg
from psycopg import errors as pg_errors

from emulator.store.base import DatabaseBusy

Conn = Any  # psycopg.Connection[Row]

# The owner lock: (class, object) keys of a session advisory lock, one per database.
OWNER_LOCK = (7_164_033, 1)


def take_ownership(conn: Conn, location: str, wait_s: float = 2.0) -> None:
    """The owner lock on `conn`, waiting up to `wait_s` for it: the server frees a killed
    process's lock only once it has seen that connection close. DatabaseBusy names the holder."""
    conn.execute(f"SET lock_timeout = {int(wait_s * 1000)}")
    try:
        conn.execute("SELECT pg_advisory_lock(%s, %s)", OWNER_LOCK)
        return
    except pg_errors.LockNotAvailable:
        pass
    finally:
        conn.execute("SET lock_timeout = 0")
    holder = conn.execute(
        "SELECT a.application_name AS name FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
        " WHERE l.locktype = 'advisory' AND l.classid = %s AND l.objid = %s AND l.granted",
        OWNER_LOCK,
    ).fetchone()
    owner = holder["name"] if holder else "another tiw-emulator process"
    raise DatabaseBusy(
        f"database {location} is in use by {owner}: stop that one, or give this one"
        " another --db (several processes on one PostgreSQL database are not supported yet)"
    )


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
