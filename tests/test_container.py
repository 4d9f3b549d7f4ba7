"""The container image: the Dockerfile built with buildah on a local Debian base, run on the host
network, drives one task end to end to a receiver on the host; its config is what CI needs.

No Docker engine is needed: `buildah bud --isolation chroot` builds, `buildah run` runs. Docker Hub
is not assumed reachable, so the base comes from mmdebstrap, built once and cached in
~/.cache/tiw-emulator-tests (the tarball) and in buildah's store (the imported base image).
Everything else the test builds or starts it removes, on failure too.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pytest
import yaml

from emulator.cli.commands import reach_note
from emulator.client import EmulatorClient
from emulator.core.config import ENV_PREFIX, Settings
from emulator.receiver import Receiver

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tiw-emulator-tests"
# A Debian with just what the Dockerfile asks of its base: python3 with venv, CAs, useradd.
BASE_RECIPE = (
    "--variant=essential",
    "--include=python3,python3-venv,ca-certificates,passwd",
    "--dpkgopt=path-exclude=/usr/share/doc/*",
    "--dpkgopt=path-exclude=/usr/share/man/*",
    "--dpkgopt=path-exclude=/usr/share/locale/*",
    "--format=tar",
    "bookworm",
)
# Packages may come through a TLS proxy whose CA only the host trusts: the build borrows the
# host's bundle at the same path (Debian's pip reads it there). The Dockerfile knows nothing of it.
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
VOLUME = "/var/lib/tiw-emulator"
KEY = "Xz4ZgayTr7rMgWQrH"
MB = 1_000_000
# The image may weigh this much more than its base (it adds ~50 MB: the venv with flask, faker...);
# more means the build context or a build tool leaked in.
MAX_ADDED_BYTES = 120 * MB


def readme_section() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    return readme.split("<!-- section:container -->")[1].split("<!-- /section:container -->")[0]


def test_start_up_line_says_when_the_server_is_reachable_beyond_loopback() -> None:
    assert reach_note("127.0.0.1") == reach_note("::1") == reach_note("localhost") == ""
    assert "beyond loopback" in reach_note("0.0.0.0")
    assert "beyond loopback" in reach_note("::")
    assert "beyond loopback" in reach_note("emulator.example")


def test_readme_container_section_matches_the_dockerfile() -> None:
    """The README's docker and CI snippets name real settings and the Dockerfile's facts."""
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    section = readme_section()
    assert f"VOLUME {VOLUME}" in dockerfile and f":{VOLUME} " in section
    assert "EXPOSE 8765" in dockerfile and "127.0.0.1:8765:8765" in section
    assert "--uid 10001" in dockerfile and "10001" in section
    settings = {ENV_PREFIX + f.name.upper() for f in fields(Settings)}
    named = set(re.findall(r"TIW_EMULATOR_[A-Z_]+", section)) - {"TIW_EMULATOR_"}
    assert named and named <= settings, f"unknown settings in the README: {named - settings}"
    snippets = [yaml.safe_load(block) for block in re.findall(r"```yaml\n(.*?)```", section, re.S)]
    github, gitlab = snippets
    service = github["jobs"]["test"]["services"]["tiw"]
    assert set(service["env"]) <= settings and service["ports"] == ["8765:8765"]
    assert set(gitlab["test"]["services"][0]["variables"]) <= settings


def require_tools() -> None:
    missing = [tool for tool in ("buildah", "mmdebstrap") if shutil.which(tool) is None]
    why = ""
    if missing:
        why = f"{' and '.join(missing)} not found: apt-get install -y buildah mmdebstrap"
    elif os.geteuid() != 0:
        why = "buildah --isolation chroot and mmdebstrap need root here (run as root, or in CI)"
    if why:
        if os.environ.get("CI") == "true":
            pytest.fail(f"container test cannot run under CI=true: {why}")
        pytest.skip(f"container test: {why}")


def run(*argv: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and done.returncode != 0:
        output = done.stdout[-3000:] + done.stderr[-3000:]
        raise AssertionError(f"{' '.join(argv)} exited {done.returncode}:\n{output}")
    return done


def local_base() -> str:
    """The mmdebstrap base image, built once per recipe and kept (tarball and image) as a cache."""
    recipe_id = hashlib.sha256(" ".join(BASE_RECIPE).encode()).hexdigest()[:12]
    tag = f"localhost/tiw-emulator-test-base:{recipe_id}"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / "base.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two suites at once build it once
        if run("buildah", "inspect", "--type", "image", tag, check=False).returncode == 0:
            return tag
        tarball = CACHE / f"base-{recipe_id}.tar"
        if not tarball.exists():
            partial = CACHE / f"partial-{recipe_id}.tar"
            partial.unlink(missing_ok=True)  # left by an interrupted run
            run("mmdebstrap", *BASE_RECIPE, str(partial), timeout=900)
            partial.rename(tarball)
        # `podman import` without podman: unpack the tarball into an empty container, commit it.
        ctr = run("buildah", "from", "scratch").stdout.strip()
        try:
            run("buildah", "add", "--quiet", ctr, str(tarball), "/")
            run("buildah", "commit", "--quiet", ctr, tag)
        finally:
            run("buildah", "rm", ctr, check=False)
        return tag


def image_size(ref: str) -> int:
    """Bytes, from buildah's listing ("204 MB"): the uncompressed size of all layers."""
    listing = json.loads(run("buildah", "images", "--json", ref).stdout)
    number, unit = listing[0]["size"].split()
    return int(float(number) * {"B": 1, "kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9}[unit])


@dataclass(frozen=True)
class Built:
    tag: str
    base: str


@pytest.fixture
def built() -> Iterator[Built]:
    require_tools()
    base = local_base()
    tag = f"localhost/tiw-emulator-test:{uuid.uuid4().hex[:12]}"
    build = ["buildah", "bud", "--isolation", "chroot", "--format", "docker", "--pull=never"]
    if CA_BUNDLE.exists():
        build += ["-v", f"{CA_BUNDLE}:{CA_BUNDLE}:ro"]
    try:
        run(*build, "--build-arg", f"BASE={base}", "-t", tag, str(ROOT), timeout=600)
        yield Built(tag, base)
    finally:
        run("buildah", "rmi", tag, check=False)


class Container:
    """`buildah run` of the image's entrypoint on the host network, in its own process group."""

    def __init__(self, image: str, env: dict[str, str]) -> None:
        self.image = image
        config = image_config(image)
        self.name = run("buildah", "from", "--pull=never", image).stdout.strip()
        self.lines: queue.Queue[str] = queue.Queue()
        try:
            self.proc = subprocess.Popen(
                ["buildah", "run", "--isolation", "chroot", *env_flags(env), self.name, "--"]
                + config["Entrypoint"]
                + config["Cmd"],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )
        except BaseException:
            run("buildah", "rm", self.name, check=False)
            raise
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def exec(self, *argv: str, env: dict[str, str] | None = None) -> str:
        """Run one more command in the same container (same volume, same network); its output."""
        flags = env_flags(env or {})
        return run("buildah", "run", "--isolation", "chroot", *flags, self.name, "--", *argv).stdout

    def line_with(self, text: str, timeout: float = 60) -> str:
        """The first line containing `text`. The container's stdout and stderr reach this one
        pipe through buildah, so their lines may come in either order (stderr's bind warning
        has come before stdout's start-up line)."""
        deadline = time.monotonic() + timeout
        seen: list[str] = []
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no line with {text!r} within {timeout}s: {seen}") from None
            seen.append(line)
            if text in line:
                return line

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(15)
        run("buildah", "rm", self.name, check=False)


def env_flags(env: dict[str, str]) -> list[str]:
    return [flag for key, value in env.items() for flag in ("--env", f"{key}={value}")]


def image_config(ref: str) -> dict[str, Any]:
    # The Docker config: OCI's has no HEALTHCHECK, which is why the image is built --format docker.
    config: dict[str, Any] = json.loads(run("buildah", "inspect", "--type", "image", ref).stdout)[
        "Docker"
    ]["config"]
    return config


def check_image_config(built: Built) -> None:
    config = image_config(built.tag)
    assert config["User"].split(":")[0] not in ("", "root", "0"), config["User"]
    assert "8765/tcp" in config["ExposedPorts"]
    test = config["Healthcheck"]["Test"]
    assert test[0] == "CMD" and "/healthz" in " ".join(test), test
    assert VOLUME in config["Volumes"]
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["TIW_EMULATOR_HOST"] == "0.0.0.0"
    assert env["TIW_EMULATOR_PORT"] == "8765"
    assert env["TIW_EMULATOR_DB"].startswith(VOLUME + "/")
    assert not any(name.startswith("PIP_") for name in env), "a build setting leaked: " + str(env)
    assert config["Entrypoint"] + config["Cmd"] == ["tiw-emulator", "serve"]
    size = image_size(built.tag)
    added = size - image_size(built.base)
    print(f"\nimage {built.tag}: {size / MB:.0f} MB, {added / MB:.0f} MB over its base")
    assert added < MAX_ADDED_BYTES, f"the image adds {added / MB:.0f} MB to its base"


def test_image_builds_and_serves_one_task_end_to_end(built: Built) -> None:
    """One test, not several: the build is the slow part and must happen once per run."""
    check_image_config(built)
    with Receiver() as receiver:
        container = Container(
            built.tag,
            {
                "TIW_EMULATOR_PORT": "0",  # a free one; the start-up line says which
                "TIW_EMULATOR_CALLBACK_URL": receiver.url,
                "TIW_EMULATOR_CALLBACK_KEY": KEY,
                "TIW_EMULATOR_CLOCK": "manual",
                "TIW_EMULATOR_RETRY": "fast",
            },
        )
        try:
            line = container.line_with("listening on")
            found = re.search(r"listening on http://0\.0\.0\.0:(\d+) \(beyond loopback", line)
            assert found, f"the start-up line does not say it binds beyond loopback: {line!r}"
            port = found.group(1)
            # The image's own HEALTHCHECK command, run inside the container, passes.
            health = image_config(built.tag)["Healthcheck"]["Test"][1:]
            container.exec(*health, env={"TIW_EMULATOR_PORT": port})
            assert container.exec("id", "-u").strip() != "0"

            with EmulatorClient(f"http://127.0.0.1:{port}") as client:
                task = client.create_task("success", room_id=1253)
                client.advance(24 * 3600)
                arrived = receiver.wait_for(
                    lambda rs: any(r.event_type == "OfflineRecordFinished" for r in rs)
                )
                assert client.get_task(task.task_id).status == "finished"
            finished = next(r.json for r in arrived if r.event_type == "OfflineRecordFinished")
            assert finished["EventData"]["TaskId"] == task.task_id
            assert finished["EventData"]["RoomId"] == 1253
            expected = hashlib.md5(f"{KEY}{finished['ExpireTime']}".encode()).hexdigest()
            assert finished["Sign"] == expected
            # The state went to the declared volume.
            container.exec("test", "-s", f"{VOLUME}/tiw-emulator.db")
        finally:
            container.close()
