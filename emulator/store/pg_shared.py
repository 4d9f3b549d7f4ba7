"""Shared mode on PostgreSQL: several emulator processes on one database behave as one emulator.

- Each process has a row in `processes` and a heartbeat (the server's clock, so processes on
  different machines agree). A process whose heartbeat is older than the lease is dead.
- Each pending event is claimed by one process (`events.claimed_by`): the one that created its
  task, which therefore sends all of that task's callbacks in order. A sweep, serialised by an
  advisory lock so one process takes a given orphan, claims the events of dead processes,
  unclaimed ones (a process that stopped cleanly releases its claims) and those claimed under an
  id already removed (made by a process taken for dead before it knew). An event taken from a
  dead process that may already have been sent (due by then, or marked delivering) comes back with
  `possible_duplicate`, and its next attempt is marked so in the attempt log.
- Changes to shared state (config, rules, user scenarios, per-SdkAppId callbacks, a reset, a
  cancelled task, released claims) are announced with NOTIFY in the writing transaction, so they
  reach the other processes when, and only when, they are committed.

Imported only by `emulator.store.postgres` (so only with the `postgres` extra installed).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row

from emulator.store.base import Row
from emulator.store.pg_connection import describe
from emulator.store.writes import WriteQueue

log = logging.getLogger("tiw_emulator.store")

CHANNEL = "tiw_emulator"
SWEEP_LOCK = (7_164_033, 2)
Conn = Any  # psycopg.Connection[Row]

SQL_REGISTER = (
    "INSERT INTO processes (name, started_at, heartbeat)"
    " VALUES (%s, clock_timestamp(), clock_timestamp()) RETURNING id"
)
SQL_HEARTBEAT = "UPDATE processes SET heartbeat = clock_timestamp() WHERE id = %s"
LISTENER_NAME = "tiw-emulator listener "  # + the process id: its listening session's name
# A process is dead when its lease ran out, or at once when its listening session is gone (the
# server sees a killed process's connections close). A process beats only while it listens
# (first right after opening the session), so a beat since it registered and since the server
# (re)started means its session was open then.
DEAD = f"""(p.heartbeat < clock_timestamp() - make_interval(secs => %(lease)s)
    OR (p.heartbeat > p.started_at AND p.heartbeat > pg_postmaster_start_time()
        AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a
                        WHERE a.application_name = '{LISTENER_NAME}' || p.id)))"""
SQL_PEERS = f"SELECT name FROM processes p WHERE id <> %(me)s AND NOT {DEAD} ORDER BY id"
# The dead processes' rows go, and their pending events (plus unclaimed ones) become ours, in
# one statement: the CTEs share a snapshot, and FOR UPDATE waits for a writer still holding one.
# So do events claimed under an id whose row is already gone: a process taken for dead goes on
# until its next heartbeat tells it so, and what it creates meanwhile is claimed under its old
# id, after the sweep that removed it (nobody else would ever send those).
# A dead process may have sent any event that was due before it was found dead (its last
# heartbeat says little: a starved process beats late), and its records of them may have died
# with it: those events, and any marked delivering, may reach the backend twice.
SQL_TAKE_OVER = f"""
WITH dead AS (
    DELETE FROM processes p WHERE id <> %(me)s AND {DEAD}
    RETURNING id
), taken AS (
    SELECT ev.id, ev.claimed_by IS NOT NULL AS was_claimed
    FROM events ev LEFT JOIN dead ON dead.id = ev.claimed_by
    WHERE ev.state IN ('scheduled', 'delivering')
      AND (ev.claimed_by IS NULL OR dead.id IS NOT NULL
           OR NOT EXISTS (SELECT 1 FROM processes p WHERE p.id = ev.claimed_by))
    FOR UPDATE OF ev
)
UPDATE events e SET claimed_by = %(me)s FROM taken WHERE e.id = taken.id
RETURNING e.*, (e.state = 'delivering' OR (taken.was_claimed AND e.due_at <= %(now)s))
    AS possible_duplicate
"""
SQL_RELEASE = (
    "UPDATE events SET claimed_by = NULL"
    " WHERE claimed_by = %s AND state IN ('scheduled', 'delivering')"
)


@dataclass(frozen=True)
class Notice:
    """A change another process committed: `kind` names it ("config", "rules", "scenarios",
    "app_callbacks", "reset", "cancel" with the task id in `arg`, "claims"), or "resync" when
    notices may have been missed (the listening connection was lost)."""

    kind: str
    arg: str | None = None


def register(conn: Conn, name: str) -> int:
    return int(conn.execute(SQL_REGISTER, (name,)).fetchone()["id"])


def heartbeat(conn: Conn, me: int) -> bool:
    """Renew this process's lease; False when its row is gone (declared dead by a peer)."""
    return bool(conn.execute(SQL_HEARTBEAT, (me,)).rowcount == 1)


def peers(conn: Conn, me: int, lease_s: float) -> list[str]:
    """The names of the other live processes."""
    args = {"me": me, "lease": lease_s}
    return [r["name"] for r in conn.execute(SQL_PEERS, args).fetchall()]


def beat_s(lease_s: float) -> float:
    """How often a process renews its lease: several times within it, so that a busy moment
    never looks like a death."""
    return min(1.0, lease_s / 4)


def take_over(conn: Conn, me: int, lease_s: float, now: float) -> list[dict[str, Any]]:
    """Claim dead processes' and unclaimed pending events (in one transaction on `conn`); []
    when another process is sweeping right now (it takes them). `now` is emulated time."""
    with conn.transaction():
        locked = conn.execute("SELECT pg_try_advisory_xact_lock(%s, %s) AS ok", SWEEP_LOCK)
        if not locked.fetchone()["ok"]:
            return []
        args = {"me": me, "lease": lease_s, "now": now}
        rows = conn.execute(SQL_TAKE_OVER, args).fetchall()
    rows.sort(key=lambda r: (r["due_at"], r["id"]))
    return list(rows)


def still_mine(conn: Conn, me: int, event_ids: list[int]) -> set[int]:
    """Those of `event_ids` still pending and claimed by this process."""
    rows = conn.execute(
        "SELECT id FROM events WHERE id = ANY(%b::bigint[]) AND claimed_by = %s"
        " AND state IN ('scheduled', 'delivering')",
        (event_ids, me),
    ).fetchall()
    return {int(r["id"]) for r in rows}


def release(conn: Conn, me: int) -> None:
    """A clean stop: give back this process's pending events and leave the registry."""
    with conn.transaction():
        conn.execute(SQL_RELEASE, (me,))
        conn.execute("DELETE FROM processes WHERE id = %s", (me,))
        announce(conn, me, "claims")


def announce(conn: Conn, me: int, kind: str, arg: str | None = None) -> None:
    """NOTIFY the other processes (delivered when the surrounding transaction commits)."""
    payload = json.dumps({"from": me, "kind": kind, "arg": arg})
    conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))


class Listener:
    """A connection of its own LISTENing for notices; reconnects after a loss (and then asks for
    a resync, since notices sent meanwhile are gone). Used from one thread."""

    def __init__(self, url: str, me: int, connect_timeout: float) -> None:
        self._url = url
        self._me = me
        self._timeout = connect_timeout
        self._conn: Conn | None = None
        self._closed = threading.Event()
        self.error: str | None = None

    @property
    def listening(self) -> bool:
        return self._conn is not None

    def connect(self) -> None:
        """Open the listening session now (its name tells peers this process is alive)."""
        self._connect()

    def rejoin(self, me: int) -> None:
        """This process joined again under a new id: listen under that name."""
        self._me = me
        self._drop()

    def wait(self, timeout: float) -> list[Notice]:
        """The notices that arrive within `timeout` seconds (returns at the first ones)."""
        if self._closed.is_set():
            return []
        resync = False
        if self._conn is None:
            try:
                self._connect()
            except psycopg.Error as exc:
                self.error = f"PostgreSQL connection lost: {describe(exc)}"
                self._closed.wait(timeout)
                return []
            resync, self.error = self.error is not None, None
        got: list[Notice] = [Notice("resync")] if resync else []
        try:
            for note in self._conn.notifies(timeout=timeout, stop_after=1):  # type: ignore[union-attr]
                notice = self._parse(note.payload)
                if notice is not None:
                    got.append(notice)
        except psycopg.Error as exc:
            self.error = f"PostgreSQL connection lost: {describe(exc)}"
            self._drop()
        return got

    def close(self) -> None:
        self._closed.set()
        self._drop()

    def _connect(self) -> None:
        conn = psycopg.connect(
            self._url,
            autocommit=True,
            row_factory=dict_row,
            connect_timeout=max(1, int(self._timeout)),
            application_name=f"{LISTENER_NAME}{self._me}",
        )
        conn.execute(f"LISTEN {CHANNEL}")
        self._conn = conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _parse(self, payload: str) -> Notice | None:
        try:
            body = json.loads(payload)
            if body["from"] == self._me:
                return None
            return Notice(str(body["kind"]), body.get("arg"))
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed notice on %s: %.200r", CHANNEL, payload)
            return None


class SharedPostgres:
    """The shared-mode half of `PostgresStore` (a mixin): this process's lease, its claims, the
    takeover of dead processes' events and the notices, on the store's pool and lock."""

    process_id: int
    lease_s: float
    _listener: Listener
    _lock: threading.RLock
    _writes: WriteQueue

    def _connection(self, timeout: float | None = None) -> contextlib.AbstractContextManager[Conn]:
        raise NotImplementedError

    def heartbeat(self) -> bool:
        """Renew this process's lease. False: peers took it for dead and took its events over;
        it has joined again under a new id and must drop what it had scheduled. No beat while
        the listening session is down (peers read a beat as "listening since")."""
        if not self._listener.listening:
            return True
        with self._connection() as conn:
            if heartbeat(conn, self.process_id):
                return True
            self.process_id = register(conn, f"tiw-emulator pid {os.getpid()}")
        self._listener.rejoin(self.process_id)
        log.warning("this process was taken for dead (no heartbeat for %g s)", self.lease_s)
        return False

    def peers(self) -> list[str]:
        """The other live processes sharing the database."""
        with self._connection() as conn:
            return peers(conn, self.process_id, self.lease_s)

    def take_over(self, now: float) -> list[Row]:
        """Claim the pending events of dead processes and unclaimed ones; `now` is emulated.
        (No flush first: this process's queued writes touch only its own events.)"""
        with self._connection() as conn:
            return take_over(conn, self.process_id, self.lease_s, now)

    def still_mine(self, event_ids: list[int]) -> set[int]:
        """Those of `event_ids` still pending and claimed by this process."""
        with self._lock:
            self._writes.flush_locked()
        with self._connection() as conn:
            return still_mine(conn, self.process_id, event_ids)

    def notices(self, timeout: float) -> list[Notice]:
        """Changes other processes committed, waiting up to `timeout` for the first."""
        return self._listener.wait(timeout)

    def wake(self) -> None:
        """Make a `notices` call waiting in another thread return now."""
        with self._connection(timeout=1.0) as conn:
            announce(conn, self.process_id, "wake")
        # (the listener drops its own notices, but the wait returns at the first one)

    def _changed(self, conn: Conn, kind: str, arg: str | None = None) -> None:
        announce(conn, self.process_id, kind, arg)
