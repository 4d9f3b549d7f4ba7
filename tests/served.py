"""`tiw-emulator serve` as a real process on a free loopback port, for tests."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
from typing import Any

import requests


class Served:
    """One `serve` process; its stderr goes to a file (a pipe nobody reads could fill up)."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("TIW_EMULATOR_")}
        full_env.update(env or {})
        self._stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (closed by kill)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "emulator.cli", "serve", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env=full_env,
        )
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline()  # blocks until the server says where it listens
        match = re.search(r"listening on (http://\S+)", first)
        if not match:
            self.proc.wait(timeout=20)
        assert match, f"unexpected first line {first!r}; stderr: {self.stderr()}"
        self.url = match.group(1)
        self.http = requests.Session()
        self.http.trust_env = False

    def api(self, method: str, path: str, **kw: Any) -> requests.Response:
        return self.http.request(method, self.url + path, timeout=30, **kw)

    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read()

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str]:
        """Signal the process and wait for it; its exit status and the rest of its stdout."""
        self.proc.send_signal(sig)
        out, _ = self.proc.communicate(timeout=20)
        self.http.close()
        return self.proc.returncode, out

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=20)
        self.http.close()
        self._stderr.close()


def serve_refuses(*args: str) -> str:
    """Run `serve` with `args`: it must exit 2 with one line on stderr, which is returned."""
    done = subprocess.run(
        [sys.executable, "-m", "emulator.cli", "serve", "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    return lines[0]
