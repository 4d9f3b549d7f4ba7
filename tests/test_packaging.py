"""Packaging: the sdist and wheel are complete, and the installed tool works from any folder.

The `wheel`-marked test builds both archives offline (`python -m build --no-isolation`), installs
the wheel into a fresh virtual environment in a temporary folder outside the repository, and
drives it from another folder the way a new user would: `--version`, the scenario catalogue,
`serve` plus one task whose callback reaches a receiver, and the README's pytest example in a
separate project. The fresh venv gets no network and no copy of this checkout: only the wheel,
plus the already-installed distributions the wheel declares it needs (and pytest), linked in.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
import venv
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from packaging.requirements import Requirement
from spec_facts import SPEC_SCENARIOS
from test_readme_pytest_example import pytest_section_code

import emulator
from emulator.core.scenarios import BUILTIN_DIR
from emulator.receiver import Receiver

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_every_package_under_emulator_is_listed_in_pyproject() -> None:
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    on_disk = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "emulator").rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    missing = on_disk - listed
    assert not missing, f"add {sorted(missing)} to [tool.setuptools] packages in pyproject.toml"
    assert "emulator.builtin_scenarios" in listed and "emulator.web.static" in listed


def test_license_is_an_spdx_string_with_the_file_shipped() -> None:
    project = PYPROJECT["project"]
    assert project["license"] == "MIT"
    assert project["license-files"] == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text(encoding="utf-8").startswith("MIT License")
    assert not any(c.startswith("License ::") for c in project.get("classifiers", []))


def test_builtin_scenarios_load_through_the_package() -> None:
    found = importlib.resources.files("emulator.builtin_scenarios")
    names = sorted(
        p.name.removesuffix(".yaml") for p in found.iterdir() if p.name.endswith(".yaml")
    )
    assert names == sorted(SPEC_SCENARIOS)
    # The editable install maps the package onto the top-level folder, the editable source.
    assert (ROOT / "scenarios").resolve() == BUILTIN_DIR


def test_version_comes_from_one_place() -> None:
    assert importlib.metadata.version("tiw-emulator") == emulator.__version__


# -- the built, installed tool ---------------------------------------------------------------
def run(cmd: list[str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=user_env(), check=False
    )
    assert done.returncode == 0, f"{cmd} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


def user_env() -> dict[str, str]:
    """The environment of a user's shell: nothing pointing back into this checkout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "TIW_EMULATOR_"))}
    env.pop("PYTEST_ADDOPTS", None)
    env.pop("PYTEST_XDIST_WORKER", None)
    return env


def dependency_closure(roots: list[str]) -> list[importlib.metadata.Distribution]:
    """The installed distributions `roots` need, following their (marker-true) requirements."""
    seen: dict[str, importlib.metadata.Distribution] = {}
    todo = list(roots)
    while todo:
        req = Requirement(todo.pop())
        key = re.sub(r"[-_.]+", "-", req.name).lower()
        if key in seen or (req.marker and not req.marker.evaluate({"extra": ""})):
            continue
        seen[key] = importlib.metadata.distribution(req.name)
        todo.extend(seen[key].requires or [])
    return list(seen.values())


def link_dependencies(target: Path, dists: list[importlib.metadata.Distribution]) -> None:
    """Symlink each distribution's top-level files and its metadata into `target`."""
    target.mkdir()
    for dist in dists:
        for file in dist.files or []:
            top = file.parts[0]
            if top == ".." or top == "__pycache__" or (target / top).exists():
                continue
            source = Path(str(dist.locate_file(top)))
            if source.exists():
                (target / top).symlink_to(source)


def clean_checkout(target: Path) -> Path:
    """The files git would check out (tracked, or new and not ignored): no build leftovers."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    if shutil.which("git") is None:
        pytest.skip("needs git to list the checkout's files: apt-get install -y git")
    source = clean_checkout(tmp_path_factory.mktemp("checkout"))
    out = tmp_path_factory.mktemp("dist")
    # Default `python -m build`: the sdist first, then the wheel built from that sdist, so a
    # file missing from the sdist is missing from the wheel too and the run below shows it.
    done = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    log = done.stdout + done.stderr
    assert "Warning" not in log and "deprecated" not in log.lower(), log
    [sdist] = out.glob("*.tar.gz")
    [wheel] = out.glob("*.whl")
    yield {"sdist": sdist, "wheel": wheel}


@pytest.mark.wheel
def test_sdist_and_wheel_carry_scenarios_assets_and_license(built: dict[str, Path]) -> None:
    yamls = {f"{name}.yaml" for name in SPEC_SCENARIOS}
    assets = {p.name for p in (ROOT / "emulator" / "web" / "static").iterdir()}
    with tarfile.open(built["sdist"]) as sdist:
        inside = {Path(*Path(n).parts[1:]).as_posix() for n in sdist.getnames()}
    assert {f"scenarios/{y}" for y in yamls} <= inside
    assert {f"emulator/web/static/{a}" for a in assets} <= inside
    assert "LICENSE" in inside
    with zipfile.ZipFile(built["wheel"]) as wheel:
        names = set(wheel.namelist())
        metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = wheel.read(metadata).decode()
    assert {f"emulator/builtin_scenarios/{y}" for y in yamls} <= names
    assert {f"emulator/web/static/{a}" for a in assets} <= names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "License-Expression: MIT" in meta and f"Version: {emulator.__version__}" in meta
    assert not any(n.startswith(("tests/", "scenarios/", "bench/")) for n in names)


@pytest.fixture(scope="module")
def installed(built: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv outside the repository holding the wheel; returns its bin/ folder."""
    home = tmp_path_factory.mktemp("user")
    env_dir = home / "venv"
    venv.create(env_dir, with_pip=False, clear=True)
    python = env_dir / "bin" / "python"
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps"]
    run([*install, "--no-index", "--quiet", str(built["wheel"])], cwd=home)
    # The runtime dependencies the wheel declares (and pytest for the README example), linked
    # from this environment: offline, and a dependency the wheel forgot to declare is missing.
    wheel_requires = importlib.metadata.requires("tiw-emulator") or []
    runtime = [r for r in wheel_requires if "extra ==" not in r]
    deps = home / "deps"
    link_dependencies(deps, dependency_closure([*runtime, "pytest"]))
    purelib = run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], cwd=home
    ).stdout.strip()
    Path(purelib, "tiw_test_deps.pth").write_text(f"{deps}\n", encoding="utf-8")
    return env_dir / "bin"


@pytest.mark.wheel
def test_installed_tool_works_from_another_folder(
    installed: Path, tmp_path: Path, receiver: Receiver
) -> None:
    where = run(
        [str(installed / "python"), "-c", "import emulator; print(emulator.__file__)"],
        cwd=tmp_path,
    )
    assert Path(where.stdout.strip()).is_relative_to(installed.parent)  # the wheel, not the repo

    version = run([str(installed / "tiw-emulator"), "--version"], cwd=tmp_path)
    assert version.stdout.strip() == f"tiw-emulator {emulator.__version__}"

    listed = run([str(installed / "tiw-emulator"), "scenarios"], cwd=tmp_path)
    assert [line.split()[0] for line in listed.stdout.splitlines()] == sorted(SPEC_SCENARIOS)

    serve = subprocess.Popen(
        [
            str(installed / "tiw-emulator"),
            *("serve", "--port", "0", "--db", ":memory:", "--clock", "manual"),
            *("--callback-url", receiver.url, "--callback-key", "wheel-key"),
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=user_env(),
    )
    try:
        assert serve.stdout is not None
        first = serve.stdout.readline()
        match = re.search(r"listening on (http://\S+)", first)
        assert match, f"serve said {first!r}; stderr: {serve.stderr and serve.stderr.read()}"
        url = match.group(1)
        task = requests.post(f"{url}/api/tasks", json={"scenario": "success"}, timeout=10)
        assert task.status_code == 201, task.text
        advanced = requests.post(f"{url}/api/clock/advance", json={"seconds": 86400}, timeout=30)
        assert advanced.status_code == 200, advanced.text
        finished = [r.json for r in receiver.received if r.event_type == "OfflineRecordFinished"]
        assert [f["EventData"]["TaskId"] for f in finished] == [task.json()["task_id"]]
    finally:
        serve.terminate()
        serve.wait(timeout=10)


@pytest.mark.wheel
def test_readme_pytest_example_passes_in_a_separate_project(
    installed: Path, tmp_path: Path
) -> None:
    project = tmp_path / "my-app"
    project.mkdir()
    (project / "test_recording.py").write_text(pytest_section_code(), encoding="utf-8")
    result = subprocess.run(
        [str(installed / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
        env=user_env(),
        check=False,
    )
    tests = len(re.findall(r"^def test_", pytest_section_code(), flags=re.MULTILINE))
    assert tests, "the README example defines no tests"
    assert result.returncode == 0 and f"{tests} passed" in result.stdout, (
        result.stdout + result.stderr
    )
