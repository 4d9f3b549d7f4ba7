"""Persistence: every SQL statement of the emulator lives in this package.

`open_store(location)` gives the store for a `--db` value (a SQLite file, or PostgreSQL for a
`postgresql://` URL); the core knows only the `Store` interface of `emulator.store.base`.
"""

from __future__ import annotations

from emulator.store.base import StorageError, Store


def open_store(location: str, *, lease_s: float = 5.0) -> Store:
    """The store for a `--db` value: a SQLite file path, `:memory:`, or a PostgreSQL URL
    (shared by the processes given it; one whose heartbeat is `lease_s` old is dead)."""
    if location.startswith(("postgresql://", "postgres://")):
        # Imported here: SQLite, the default, needs no PostgreSQL driver installed.
        try:
            from emulator.store.postgres import PostgresStore
        except ModuleNotFoundError as exc:
            if (exc.name or "").split(".")[0] not in ("psycopg", "psycopg_pool"):
                raise
            raise StorageError(
                "the PostgreSQL store needs the 'postgres' extra:"
                " pip install 'tiw-emulator[postgres]'"
            ) from None

        return PostgresStore(location, lease_s=lease_s)
    from emulator.store.sqlite import SQLiteStore

    return SQLiteStore(location)


__all__ = ["StorageError", "Store", "open_store"]
