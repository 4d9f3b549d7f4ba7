"""Installing the official clients once into a cache outside the repo, and driving them.

The Node.js SDKs come from the npm registry (`node/package-lock.json`), tccli and the newest
Python SDK from PyPI, each into its own folder under `~/.cache/tiw-emulator-tests` (or
`$TIW_CLIENTS_CACHE`): tccli needs `tencentcloud-sdk-python==3.0.1009`, which would clash
with the dev venv's `tencentcloud-sdk-python-tiw==3.0.1042` (both are `tencentcloud.common`).
Where `node`/`npm` or a registry is missing the tests skip saying how to fix it; with
`CI=true` that skip is a failure.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
NODE_DIR = HERE / "node"
PYTHON_DRIVER = HERE / "python_driver.py"
TCCLI_PINS = ("tccli==3.0.1009.1", "tencentcloud-sdk-python==3.0.1009")
# The newest common package when this was written; it has no typed OfflineRecord methods.
PYTHON_LATEST_PINS = ("tencentcloud-sdk-python-common==3.1.195",)
INSTALL_TIMEOUT_S = 600
CALL_TIMEOUT_S = 60


def cache_root() -> Path:
    default = Path.home() / ".cache" / "tiw-emulator-tests"
    return Path(os.environ.get("TIW_CLIENTS_CACHE", default))


def unavailable(reason: str) -> None:
    """Skip, or fail under CI=true, where a client cannot be installed here."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: this test must run)", pytrace=False)
    pytest.skip(reason)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    # pytest-xdist workers share the cache: one installs, the others wait for it.
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def install_once(target: Path, install: Any, hint: str) -> Path:
    """Run `install(target)` unless a previous run completed it; a half-done one is redone."""
    done = target / ".complete"
    with _locked(target):
        if done.exists():
            return target
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        try:
            install(target)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
            output = getattr(exc, "stderr", None) or getattr(exc, "stdout", None) or exc
            unavailable(f"{hint}: install failed ({str(output)[-600:].strip()})")
        done.write_text("ok\n")
    return target


def run_install(cmd: list[str], cwd: Path | None = None) -> None:
    subprocess.run(
        cmd, cwd=cwd, check=True, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S
    )


def python_venv(name: str, pins: tuple[str, ...]) -> Path:
    digest = hashlib.sha256("\n".join(pins).encode()).hexdigest()[:12]
    target = cache_root() / f"{name}-{digest}"

    def install(where: Path) -> None:
        run_install([sys.executable, "-m", "venv", str(where)])
        run_install([str(where / "bin" / "python"), "-m", "pip", "install", "--quiet", *pins])

    hint = f"cannot install {' '.join(pins)} from PyPI"
    return install_once(target, install, hint) / "bin" / "python"


class LineDriver:
    """A client process speaking one JSON request / one JSON reply per line (see the drivers)."""

    def __init__(self, cmd: list[str], env: dict[str, str]) -> None:
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            self._lines.put(line)
        self._lines.put("")  # EOF

    def call(self, **request: Any) -> dict[str, Any]:
        """Send one call; return `{"ok": Response}` or `{"error": {"code", "message", ...}}`."""
        assert self._proc.stdin is not None
        self._proc.stdin.write(json.dumps(request) + "\n")
        self._proc.stdin.flush()
        try:
            line = self._lines.get(timeout=CALL_TIMEOUT_S)
        except queue.Empty:
            raise AssertionError(f"client gave no answer in {CALL_TIMEOUT_S} s") from None
        if not line:
            stderr = self._proc.stderr.read() if self._proc.stderr else ""
            raise AssertionError(f"client exited: {stderr[-2000:]}")
        return dict(json.loads(line))

    def close(self) -> None:
        if self._proc.stdin:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def client_env(**extra: str) -> dict[str, str]:
    """A clean environment: no proxies (the SDKs would send loopback calls through them)."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "SYSTEMROOT", "TMPDIR")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(extra)
    return env
