"""The operating system's name for a thread, from its Python name.

CPython 3.11 names its threads for Python only: `top -H`, `ps -L`, py-spy and
/proc/<pid>/task/<tid>/comm show every thread of `serve` under the process's own name. Each of
the emulator's threads calls `name_os_thread()` as it starts, so the engine, the store's writer
and committer, the HTTP loop's pool and lane each show under their own name (15 bytes at most,
Linux's limit), and `make bench` can tell their CPU apart. Elsewhere than Linux, it does nothing.
"""

from __future__ import annotations

import contextlib
import threading

MAX_BYTES = 15  # TASK_COMM_LEN - 1


def name_os_thread(name: str | None = None) -> None:
    """Name the calling thread for the OS (its Python name when `name` is None); never fails."""
    given = name if name is not None else threading.current_thread().name
    encoded = given.encode("ascii", "replace")[:MAX_BYTES]
    path = f"/proc/self/task/{threading.get_native_id()}/comm"
    with contextlib.suppress(OSError), open(path, "wb") as comm:
        comm.write(encoded)
