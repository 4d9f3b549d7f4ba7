"""Session fixtures for the official clients: pinned, installed once, driven as subprocesses."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from clients_support import (
    NODE_DIR,
    PYTHON_DRIVER,
    PYTHON_LATEST_PINS,
    TCCLI_PINS,
    LineDriver,
    cache_root,
    client_env,
    install_once,
    python_venv,
    run_install,
    unavailable,
)


@pytest.fixture(scope="session")
def node_modules() -> Path:
    """`node_modules` holding the npm packages pinned by `node/package-lock.json`."""
    if not (shutil.which("node") and shutil.which("npm")):
        unavailable("node/npm not found: install them with `apt-get install -y nodejs npm`")
    lock = (NODE_DIR / "package-lock.json").read_bytes()
    target = cache_root() / f"node-{hashlib.sha256(lock).hexdigest()[:12]}"

    def install(where: Path) -> None:
        for name in ("package.json", "package-lock.json"):
            shutil.copy(NODE_DIR / name, where / name)
        run_install(["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts"], cwd=where)

    hint = "cannot install the pinned npm packages (is the npm registry reachable?)"
    return install_once(target, install, hint) / "node_modules"


@pytest.fixture(scope="session")
def tccli() -> Path:
    """The `tccli` command of a venv holding tccli 3.0.1009.1 and its matching SDK."""
    return python_venv("tccli", TCCLI_PINS).with_name("tccli")


@pytest.fixture(scope="session")
def tccli_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A HOME for tccli, which rewrites ~/.tccli/default.configure on every run: kept out of the
    real home, one per xdist worker (its first run builds the file, slowly; later runs reuse it,
    and a worker's tests run one at a time)."""
    return tmp_path_factory.mktemp("tccli-home")


@pytest.fixture(scope="session")
def latest_sdk_python() -> Path:
    """The interpreter of a venv holding the newest Python SDK common package."""
    return python_venv("python-sdk", PYTHON_LATEST_PINS)


@pytest.fixture(scope="session")
def node_driver(node_modules: Path) -> Iterator[LineDriver]:
    driver = LineDriver(
        ["node", str(NODE_DIR / "driver.js")], client_env(NODE_PATH=str(node_modules))
    )
    yield driver
    driver.close()


@pytest.fixture(scope="session")
def python_latest_driver(latest_sdk_python: Path) -> Iterator[LineDriver]:
    driver = LineDriver([str(latest_sdk_python), str(PYTHON_DRIVER)], client_env())
    yield driver
    driver.close()
