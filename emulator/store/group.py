"""Group commit: the task creations that arrive together share one transaction.

A creation is announced when its planning starts (`announced()`, around the whole creation) and
submitted when its rows are ready (`submit`, which returns once they are committed). The first
to submit while no commit runs leads: it waits until every announced creation has submitted (at
most `wait_s`, at most `max_size` in one batch), commits the batch through `commit`, and wakes
the others. A creation that was not announced, or that leaves without submitting (refused
before its insert), never holds a commit back beyond `wait_s`.

Why wait at all (measured with 50 keep-alive clients creating one-callback tasks over HTTP, the
SQLite store, 2-core dev machine, three interleaved rounds against the tree before): a creation
writes ~15 WAL frames (the task, its plan and event rows and their 10 indexes); committed alone
it costs 127-147 µs of CPU, in a batch of four 86-116 and of ten 77-95 µs per task (the store's
commit called directly, sequential). Committing whatever was queued when the lock came free gave
batches of 1.6 on average, since the other creators were still planning; waiting up to 1 ms for
the announced ones gives 3.1, and the process's CPU per created task went 937 -> 807 µs
(medians; 956 -> 1,107 tasks/s). Waiting 3 ms measured the same as 1 ms.
"""

from __future__ import annotations

import contextlib
import copy
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Generic, TypeVar

from emulator.core.threadname import name_os_thread

T = TypeVar("T")
# commit(items) -> for each item None (committed) or the exception that refused it
Commit = Callable[[list[T]], list[BaseException | None]]

DEFAULT_WAIT_S = 0.001
DEFAULT_MAX_SIZE = 64
DEFAULT_MAX_QUEUED = 1024  # Committer: submitters wait for room beyond this (back-pressure)
DEFAULT_FILL = 8  # Committer: a batch of this many goes at once; a smaller one waits up to wait_s


class Interrupted(Exception):
    """The commit that carried this item was interrupted (its leader's thread was stopped)."""


class _Entry(Generic[T]):
    __slots__ = ("done", "error", "item")

    def __init__(self, item: T) -> None:
        self.item = item
        self.done = False
        self.error: BaseException | None = None


class _Announcements:
    """Items announced (their making has begun) and not yet submitted, each thread counted once
    (nested announcements count once). Guarded by `cond`, which is notified when none is left:
    whoever fills a batch waits on it for the announced ones."""

    def __init__(self, cond: threading.Condition) -> None:
        self.count = 0
        self._cond = cond
        self._local = threading.local()

    @contextlib.contextmanager
    def around(self) -> Iterator[None]:
        local = self._local
        if getattr(local, "announced", None) is not None:
            yield
            return
        with self._cond:
            self.count += 1
        local.announced = True
        try:
            yield
        finally:
            if local.announced:  # left without submitting: nobody should wait for it
                with self._cond:
                    self._left()
            local.announced = None

    def submitted(self) -> None:
        """This thread's announced item is in (call holding `cond`); a retry after a refusal
        is not waited for."""
        local = self._local
        if getattr(local, "announced", None):
            local.announced = False
            self._left()

    def _left(self) -> None:
        self.count -= 1
        if self.count == 0:
            self._cond.notify()


class GroupCommit(Generic[T]):
    """Batches concurrent submissions into one `commit` call; safe to share between threads."""

    def __init__(
        self,
        commit: Commit[T],
        *,
        wait_s: float = DEFAULT_WAIT_S,
        max_size: int = DEFAULT_MAX_SIZE,
    ) -> None:
        self._commit = commit
        self._wait_s = wait_s
        self._max_size = max_size
        mutex = threading.Lock()
        self._arrived = threading.Condition(mutex)  # the leader waits for announced creations
        self._committed = threading.Condition(mutex)  # the others wait for their batch
        self._queue: list[_Entry[T]] = []
        self._announced = _Announcements(self._arrived)
        self._leading = False

    def announced(self) -> contextlib.AbstractContextManager[None]:
        """Around a creation: a submit is coming from this thread (nested calls count once)."""
        return self._announced.around()

    def submit(self, item: T) -> None:
        """Commit `item` with whatever else is ready; raises what refused it."""
        entry = _Entry(item)
        with self._arrived:
            self._announced.submitted()
            self._queue.append(entry)
            self._arrived.notify()  # a leader may be waiting for this one
        while True:
            with self._arrived:
                while self._leading and not entry.done:
                    self._committed.wait()
                if entry.done:
                    break
                batch = self._lead()
            self._run(batch)  # this entry is in it unless over max_size were queued before it
        if entry.error is not None:
            raise entry.error

    def _lead(self) -> list[_Entry[T]]:
        """Wait (bounded) for the announced creations; take the batch. Called holding the mutex."""
        self._leading = True
        deadline = time.monotonic() + self._wait_s
        while self._announced.count > 0 and len(self._queue) < self._max_size:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._arrived.wait(left)
        batch, self._queue = self._queue[: self._max_size], self._queue[self._max_size :]
        return batch

    def _run(self, batch: list[_Entry[T]]) -> None:
        errors: list[BaseException | None] = [Interrupted() for _ in batch]  # one each: raised
        # in several threads at once, a shared instance would have its traceback rewritten
        try:
            errors = _one_each(self._commit([entry.item for entry in batch]))
        finally:
            with self._committed:
                for entry, error in zip(batch, errors, strict=True):
                    entry.done, entry.error = True, error
                self._leading = False
                self._committed.notify_all()


class Committer(Generic[T]):
    """Commits what is submitted in batches on a thread of its own: the submitter does not wait.

    `submit` queues an item and returns a future that settles once the item's batch is committed
    (None) or refused (the exception, as `commit` gave it); the future's callbacks run on the
    committing thread, in the order they were added. A batch is what has queued (at most
    `max_size`) once `fill` items are there, or no announced item (`announced()`, around a
    creation's planning) is still to come, or `wait_s` after the first came, whichever is
    sooner: a lone creation is committed at once, and nobody's thread waits for a batch. At most
    `max_queued` items wait: beyond that `submit` blocks until there is room. The thread starts
    with the first submit; `close` commits what is queued and stops it.

    Why (docs/benchmarks.md, "Front door, sixth round"): a request thread that waited for its
    creation's commit, as GroupCommit has it do, cost ~400 µs of the process's CPU per created
    task under 50 concurrent clients (8 context switches a request, a GIL convoy behind each
    commit); the server holds the reply until the future settles instead, and the thread goes on
    to the next request. The wait for a fuller batch: with creations planned one at a time (the
    server's lane) committing each as it came made batches of one or two and cost ~50 µs more
    per task than waiting up to 1 ms for eight; waiting only while a creation is announced keeps
    a client that creates one task at a time from waiting at all.
    """

    def __init__(
        self,
        commit: Commit[T],
        *,
        max_size: int = DEFAULT_MAX_SIZE,
        max_queued: int = DEFAULT_MAX_QUEUED,
        fill: int = DEFAULT_FILL,
        wait_s: float = DEFAULT_WAIT_S,
        name: str = "tiw-commit",
    ) -> None:
        self._commit = commit
        self._max_size = max_size
        self._fill = min(fill, max_size)
        self._wait_s = wait_s
        self._max_queued = max_queued
        self._name = name
        mutex = threading.Lock()
        self._queued = threading.Condition(mutex)  # the committer waits for work
        self._room = threading.Condition(mutex)  # submitters wait for room
        self._queue: deque[tuple[T, Future[None]]] = deque()
        self._coming = _Announcements(self._queued)
        self._thread: threading.Thread | None = None
        self._closed = False

    def announced(self) -> contextlib.AbstractContextManager[None]:
        """Around the making of an item: the batch being filled waits for it (up to wait_s)."""
        return self._coming.around()

    def submit(self, item: T) -> Future[None]:
        """Queue `item` for the next batch; the future settles once it is committed or refused."""
        future: Future[None] = Future()
        with self._queued:
            while len(self._queue) >= self._max_queued and not self._closed:
                self._room.wait()
            if self._closed:
                raise RuntimeError("the committer is closed")
            self._queue.append((item, future))
            self._coming.submitted()  # the last to come: notifies the committer
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            elif len(self._queue) in (1, self._fill):
                self._queued.notify()  # the first of a batch, or a full one
        return future

    def close(self) -> None:
        """Commit what is queued, then stop the thread (later submits are refused)."""
        with self._queued:
            self._closed = True
            thread = self._thread
            self._queued.notify()
            self._room.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _run(self) -> None:
        name_os_thread()
        queue = self._queue
        while True:
            with self._queued:
                while not queue and not self._closed:
                    self._queued.wait()
                if not queue:
                    return
                deadline = time.monotonic() + self._wait_s
                while len(queue) < self._fill and self._coming.count > 0 and not self._closed:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._queued.wait(left)
                batch = [queue.popleft() for _ in range(min(len(queue), self._max_size))]
                self._room.notify_all()
            try:
                errors = _one_each(self._commit([item for item, _ in batch]))
            except BaseException as exc:  # commit itself failed: each item gets its own copy
                errors = _one_each([exc] * len(batch))
            for (_, future), error in zip(batch, errors, strict=True):
                if error is None:
                    future.set_result(None)
                else:
                    future.set_exception(error)


def _one_each(errors: list[BaseException | None]) -> list[BaseException | None]:
    """The commit's answers, an exception given for several items (a whole batch refused by
    one storage error) copied for each after the first: each is raised in its own thread, and
    one instance raised in several at once has its traceback rewritten under the others."""
    seen: set[int] = set()
    out: list[BaseException | None] = []
    for error in errors:
        if error is not None:
            if id(error) in seen:
                error = _twin(error)
            seen.add(id(error))
        out.append(error)
    return out


def _twin(error: BaseException) -> BaseException:
    """The same type, message and cause, with a traceback of its own (the original when it
    cannot be copied)."""
    try:
        twin = copy.copy(error)
    except Exception:
        return error
    twin.__cause__, twin.__context__ = error.__cause__, error.__context__
    return twin


__all__ = ["Committer", "GroupCommit", "Interrupted"]
