"""Group commit of task creations (emulator/store/group.py): who waits for whom, and never for
long. Threads are coordinated with events; a wait that would be a bug is made long (30 s) so the
test fails by its join timeout instead of passing by luck."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from emulator.store.group import GroupCommit, Interrupted

LONG_S = 30.0
JOIN_S = 10.0


class Recorder:
    """A commit callback that records its batches and refuses the items it is told to."""

    def __init__(self, refuse: frozenset[str] = frozenset()) -> None:
        self.batches: list[list[str]] = []
        self.refuse = refuse

    def __call__(self, items: list[str]) -> list[BaseException | None]:
        self.batches.append(list(items))
        return [ValueError(item) if item in self.refuse else None for item in items]


def _thread(target: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def _joined(*threads: threading.Thread) -> None:
    for thread in threads:
        thread.join(JOIN_S)
        assert not thread.is_alive(), "a submit is still waiting"


def test_announced_creations_share_one_commit() -> None:
    commits = Recorder()
    group: GroupCommit[str] = GroupCommit(commits, wait_s=LONG_S)
    a_announced, b_announced, go_a = threading.Event(), threading.Event(), threading.Event()

    def a() -> None:
        with group.announced():
            a_announced.set()
            go_a.wait(JOIN_S)
            group.submit("a")

    def b() -> None:
        with group.announced():
            b_announced.set()
            group.submit("b")  # leads, or follows a: either way it waits for the other

    first = _thread(a)
    assert a_announced.wait(JOIN_S)
    second = _thread(b)
    assert b_announced.wait(JOIN_S)
    go_a.set()
    _joined(first, second)
    assert [sorted(batch) for batch in commits.batches] == [["a", "b"]]


def _planning(group: GroupCommit[str]) -> tuple[threading.Thread, threading.Event]:
    """A creation announced and still planning, until the event returned is set (then it leaves
    without submitting, as one refused before its insert does)."""
    announced, leave = threading.Event(), threading.Event()

    def plan() -> None:
        with group.announced():
            announced.set()
            leave.wait(JOIN_S)

    thread = _thread(plan)
    assert announced.wait(JOIN_S)
    return thread, leave


def test_a_creation_that_leaves_without_submitting_is_not_waited_for() -> None:
    commits = Recorder()
    group: GroupCommit[str] = GroupCommit(commits, wait_s=LONG_S)
    gone, leave = _planning(group)
    submitter = _thread(lambda: group.submit("b"))
    leave.set()
    _joined(gone, submitter)
    assert commits.batches == [["b"]]


def test_the_wait_for_announced_creations_is_bounded() -> None:
    commits = Recorder()
    group: GroupCommit[str] = GroupCommit(commits, wait_s=0.05)
    planner, leave = _planning(group)
    submitter = _thread(lambda: group.submit("b"))
    _joined(submitter)  # committed while the planner still plans
    assert commits.batches == [["b"]]
    leave.set()
    _joined(planner)


def test_a_refusal_fails_only_its_own_creation() -> None:
    group: GroupCommit[str] = GroupCommit(Recorder(refuse=frozenset({"bad"})))
    group.submit("good")
    with pytest.raises(ValueError, match="bad"):
        group.submit("bad")
    group.submit("good again")


def test_batches_are_capped_and_every_submit_returns() -> None:
    commits = Recorder()
    group: GroupCommit[str] = GroupCommit(commits, wait_s=LONG_S, max_size=2)
    start = threading.Barrier(5)

    def creator(name: str) -> Callable[[], None]:
        def run() -> None:
            with group.announced():
                start.wait(JOIN_S)
                group.submit(name)

        return run

    threads = [_thread(creator(f"t{n}")) for n in range(5)]
    _joined(*threads)
    assert all(1 <= len(batch) <= 2 for batch in commits.batches)
    assert sorted(item for batch in commits.batches for item in batch) == [
        f"t{n}" for n in range(5)
    ]


def test_a_commit_that_raises_releases_the_others() -> None:
    started, release = threading.Event(), threading.Event()
    calls: list[list[str]] = []

    def commit(items: list[str]) -> list[BaseException | None]:
        calls.append(items)
        if len(calls) == 1:
            started.set()
            release.wait(JOIN_S)
            raise RuntimeError("the leader was stopped")
        return [None] * len(items)

    group: GroupCommit[str] = GroupCommit(commit)
    errors: dict[str, BaseException] = {}

    def submit(name: str) -> None:
        try:
            group.submit(name)
        except BaseException as exc:
            errors[name] = exc

    leader = _thread(lambda: submit("leader"))
    assert started.wait(JOIN_S)
    follower = _thread(lambda: submit("follower"))  # queued behind the running commit
    release.set()
    _joined(leader, follower)
    assert isinstance(errors.pop("leader"), RuntimeError)
    assert errors == {}  # the follower was in the next batch, which committed
    assert calls[1] == ["follower"]
    assert not isinstance(errors.get("follower"), Interrupted)


def _submitted_in_one_batch(group: GroupCommit[str], names: str) -> dict[str, BaseException]:
    """Each name submitted from its own thread, all in one batch; what each submit raised."""
    errors: dict[str, BaseException] = {}
    announced = {name: threading.Event() for name in names}

    def creator(name: str) -> Callable[[], None]:
        def run() -> None:
            with group.announced():
                announced[name].set()
                try:
                    group.submit(name)
                except BaseException as exc:
                    errors[name] = exc

        return run

    with group.announced():  # held until every creator is in: they share one batch
        threads = [_thread(creator(name)) for name in names]
        assert all(event.wait(JOIN_S) for event in announced.values())
    _joined(*threads)
    return errors


def test_a_batch_refused_by_one_error_raises_it_in_each_creation_as_its_own() -> None:
    """A storage error refuses the whole batch: each creation raises that error (same type,
    message and cause), but as its own instance, since each is raised in its own thread."""
    cause = OSError("disk full")
    refusal = RuntimeError("database or disk is full")
    refusal.__cause__ = cause

    def commit(items: list[str]) -> list[BaseException | None]:
        return [refusal] * len(items)

    errors = _submitted_in_one_batch(GroupCommit(commit, wait_s=LONG_S), "abc")
    assert sorted(errors) == ["a", "b", "c"]
    assert len({id(exc) for exc in errors.values()}) == 3
    assert refusal in errors.values()
    for exc in errors.values():
        assert type(exc) is RuntimeError and str(exc) == "database or disk is full"
        assert exc.__cause__ is cause


def test_an_interrupted_commit_fails_every_creation_in_it() -> None:
    def commit(items: list[str]) -> list[BaseException | None]:
        raise RuntimeError("the leader was stopped")

    errors = _submitted_in_one_batch(GroupCommit(commit, wait_s=LONG_S), "ab")
    kinds = sorted(type(exc).__name__ for exc in errors.values())
    assert kinds == ["Interrupted", "RuntimeError"]
