"""Shared fixtures: an emulator served over real loopback HTTP, a recording receiver, and the
databases a store runs on (a SQLite file, or a fresh database on a throwaway PostgreSQL server).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from pgserver import INSTALL_HINT, PgServer, find_bindir

from emulator.core.service import Emulator
from emulator.receiver import Receiver
from emulator.web.app import create_app, get_emulator
from emulator.web.server import AppServer


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


class Running:
    """An emulator app on a free loopback port, with a requests session for its control API."""

    def __init__(self, overrides: dict[str, Any]) -> None:
        settings = {"db": ":memory:", "clock": "manual", "retry": "fast", **overrides}
        self.app = create_app(settings)
        self.emu: Emulator = get_emulator(self.app)
        self.server = AppServer(self.app).start()
        self.url = self.server.url
        self.http = requests.Session()
        self.http.trust_env = False

    def api(self, method: str, path: str, **kw: Any) -> requests.Response:
        return self.http.request(method, self.url + path, timeout=30, **kw)

    def close(self) -> None:
        self.http.close()
        self.server.stop()
        self.emu.close()


@pytest.fixture
def make_emulator() -> Iterator[Any]:
    started: list[Running] = []

    def make(**overrides: Any) -> Running:
        running = Running(overrides)
        started.append(running)
        return running

    yield make
    for running in started:
        running.close()


@pytest.fixture
def emulator(make_emulator: Any, receiver: Receiver) -> Running:
    """Manual clock, fast retries, callbacks to `receiver`, signed with a known key."""
    return make_emulator(callback_url=receiver.url, callback_key="Xz4ZgayTr7rMgWQrH")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A PostgreSQL server for this test session (each xdist worker has its own)."""
    bindir = find_bindir()
    missing = INSTALL_HINT if bindir is None else None
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError:
        missing = "psycopg is not installed: pip install -e '.[dev,postgres]'"
    if missing or bindir is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true: {missing}")
        pytest.skip(str(missing))
    server = PgServer(bindir)
    yield server
    server.remove()


@pytest.fixture
def pg_url(pg_server: PgServer) -> str:
    """The URL of a new, empty PostgreSQL database."""
    return pg_server.database()


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A `--db` value for each store: a SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "store.db")
    return str(request.getfixturevalue("pg_url"))


# -- the reliability report (tests/reliability_log.py) ------------------------------------------
def pytest_configure(config: pytest.Config) -> None:
    """The controller makes the records folder; xdist workers inherit it with the environment."""
    import os
    import tempfile

    import reliability_log

    if not hasattr(config, "workerinput") and reliability_log.ENV not in os.environ:
        folder = tempfile.mkdtemp(prefix="tiw-reliability-")
        os.environ[reliability_log.ENV] = folder
        config.stash[_RECORDS] = folder


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A run of every hardening test rewrites docs/reliability.md from what they recorded."""
    import shutil
    from pathlib import Path

    import reliability_log

    folder = session.config.stash.get(_RECORDS, None)
    if folder is None:
        return
    try:
        records = reliability_log.read_records(Path(folder))
        if reliability_log.complete(records):
            text = reliability_log.render(records)
            if not reliability_log.DOC.exists() or reliability_log.DOC.read_text("utf-8") != text:
                reliability_log.DOC.write_text(text, encoding="utf-8")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


_RECORDS = pytest.StashKey[str]()
