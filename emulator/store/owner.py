"""One owner per SQLite file: an exclusive lock on `<db>.lock`, held while the store is open."""

from __future__ import annotations

import contextlib
import fcntl
import os

from emulator.store.base import DatabaseBusy


class OwnerLock:
    """Held for the life of the store; a second process on the same file is refused at once."""

    def __init__(self, db_path: str) -> None:
        self.path = f"{db_path}.lock"
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise DatabaseBusy(
                f"database {db_path} is in use by another tiw-emulator process (pid {owner}):"
                " stop that one, or give this one another --db"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
                os.close(self._fd)
            self._fd = None
