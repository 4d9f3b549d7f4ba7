"""Persistence: every SQL statement of the emulator lives in this package.

`open_store(location)` gives the store for a `--db` value; the core knows only the `Store`
interface of `emulator.store.base`.
"""

from __future__ import annotations

from emulator.store.base import StorageError, Store


def open_store(location: str) -> Store:
    """The store for a `--db` value: a SQLite file path, or `:memory:`."""
    if location.startswith(("postgresql://", "postgres://")):
        raise StorageError(
            f"{location.split('@')[-1]}: the PostgreSQL store is not available in this version"
        )
    from emulator.store.sqlite import SQLiteStore

    return SQLiteStore(location)


__all__ = ["StorageError", "Store", "open_store"]
