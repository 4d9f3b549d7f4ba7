"""Group commit of task creations (emulator/store/group.py): who waits for whom, and never for
long. Threads are coordinated with events; a wait that would be a bug is made long (30 s) so the
test fails by its join timeout instead of passing by luck."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future

import pytest

from emulator.store.group import Committer, GroupCommit, Interrupted

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


# -- Committer: the submitter does not wait --------------------------------------------------


class Gated(Recorder):
    """A Recorder whose first commit waits for `release`: what is submitted meanwhile queues."""

    def __init__(self, refuse: frozenset[str] = frozenset()) -> None:
        super().__init__(refuse)
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self, items: list[str]) -> list[BaseException | None]:
        self.started.set()
        assert self.release.wait(LONG_S)
        return super().__call__(items)


def _settled(futures: list[Future[None]]) -> list[BaseException | None]:
    return [future.exception(JOIN_S) for future in futures]


def test_what_queues_during_a_commit_is_the_next_batch_and_nobody_waited() -> None:
    commit = Gated(refuse=frozenset({"c"}))
    committer: Committer[str] = Committer(commit)
    first = committer.submit("a")
    assert commit.started.wait(JOIN_S)
    rest = [committer.submit(item) for item in "bcd"]  # returns at once: the commit is blocked
    assert not any(future.done() for future in [first, *rest])
    commit.release.set()
    errors = _settled([first, *rest])
    assert commit.batches == [["a"], ["b", "c", "d"]]
    assert [type(e) for e in errors] == [type(None), type(None), ValueError, type(None)]
    committer.close()


def test_a_commit_that_raises_fails_each_future_with_an_exception_of_its_own() -> None:
    def broken(items: list[str]) -> list[BaseException | None]:
        raise OSError("disk I/O error")

    committer: Committer[str] = Committer(broken)
    errors = _settled([committer.submit(item) for item in "xyz"])
    assert all(isinstance(e, OSError) and str(e) == "disk I/O error" for e in errors)
    assert len({id(e) for e in errors}) == 3
    committer.close()


def test_a_full_queue_makes_the_submitter_wait_for_room() -> None:
    commit = Gated()
    committer: Committer[str] = Committer(commit, max_queued=2)
    first = committer.submit("a")
    assert commit.started.wait(JOIN_S)
    queued = [committer.submit("b"), committer.submit("c")]  # the queue is full
    third: list[Future[None]] = []
    blocked = _thread(lambda: third.append(committer.submit("d")))
    blocked.join(0.2)  # a bounded look for the absence of progress
    assert blocked.is_alive() and not third
    commit.release.set()
    _joined(blocked)
    assert _settled([first, *queued, *third]) == [None] * 4
    assert sorted(item for batch in commit.batches for item in batch) == ["a", "b", "c", "d"]
    committer.close()


def test_close_commits_what_is_queued_and_then_refuses() -> None:
    commit = Gated()
    committer: Committer[str] = Committer(commit)
    futures = [committer.submit("a")]
    assert commit.started.wait(JOIN_S)
    futures += [committer.submit("b"), committer.submit("c")]
    closing = _thread(committer.close)
    commit.release.set()
    _joined(closing)
    assert all(future.done() for future in futures)
    assert _settled(futures) == [None] * 3 and commit.batches == [["a"], ["b", "c"]]
    with pytest.raises(RuntimeError, match="closed"):
        committer.submit("d")


def _announcing(committer: Committer[str]) -> tuple[threading.Thread, threading.Event]:
    """A thread that announces an item and holds the announcement until the event is set (then
    leaves without submitting): while it is announced, the committer waits to fill a batch."""
    announced, leave = threading.Event(), threading.Event()

    def hold() -> None:
        with committer.announced():
            announced.set()
            assert leave.wait(LONG_S)

    thread = _thread(hold)
    assert announced.wait(JOIN_S)
    return thread, leave


def test_a_batch_goes_once_it_is_full_and_a_short_one_once_the_wait_is_over() -> None:
    commit = Recorder()
    full: Committer[str] = Committer(commit, fill=3, wait_s=LONG_S)  # never waits LONG_S
    announcer, leave = _announcing(full)
    assert _settled([full.submit(item) for item in "abc"]) == [None] * 3
    assert commit.batches == [["a", "b", "c"]]
    leave.set()
    _joined(announcer)
    full.close()
    short: Committer[str] = Committer(commit, fill=8, wait_s=0.01)
    announcer, leave = _announcing(short)
    assert _settled([short.submit("d")]) == [None]
    assert commit.batches[-1] == ["d"]
    leave.set()
    _joined(announcer)
    short.close()


def test_a_lone_announced_item_goes_at_once_and_a_batch_waits_for_one_announced() -> None:
    commit = Recorder()
    committer: Committer[str] = Committer(commit, fill=8, wait_s=LONG_S)
    with committer.announced():
        alone = committer.submit("a")
    assert _settled([alone]) == [None]  # nothing else was coming: no wait for the batch to fill
    planning, planned = threading.Event(), threading.Event()
    later: list[Future[None]] = []

    def creator() -> None:
        with committer.announced():
            planning.set()
            assert planned.wait(LONG_S)
            later.append(committer.submit("c"))

    thread = _thread(creator)
    assert planning.wait(JOIN_S)
    first = committer.submit("b")  # the batch waits for "c", which is announced
    planned.set()
    _joined(thread)
    assert _settled([first, *later]) == [None, None]
    assert commit.batches == [["a"], ["b", "c"]]
    committer.close()
