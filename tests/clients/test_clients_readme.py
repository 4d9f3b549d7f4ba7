"""The README's "Use it from your language" examples, run with the real clients they show."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from clients_support import CALL_TIMEOUT_S, client_env

README = Path(__file__).resolve().parents[2] / "README.md"
TASK_ID = re.compile(r"[0-9a-v]{20}")


def example(language: str) -> str:
    text = README.read_text(encoding="utf-8")
    section = re.search(r"<!-- section:clients -->(.*?)<!-- /section:clients -->", text, re.S)
    assert section, "README.md lost its <!-- section:clients --> section"
    blocks = re.findall(rf"```{language}\n(.*?)```", section.group(1), flags=re.S)
    assert len(blocks) == 1, f"expected one {language} example, found {len(blocks)}"
    return str(blocks[0])


def run(cmd: list[str], running: Any, code: str, **env: str) -> str:
    """Run an example pointed at `running`; return what it printed."""
    endpoint = running.url.removeprefix("http://").rstrip("/")
    done = subprocess.run(
        [*cmd, code.replace("127.0.0.1:8765", endpoint)],
        capture_output=True,
        text=True,
        timeout=CALL_TIMEOUT_S,
        env=client_env(**env),
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def created_tasks(running: Any) -> list[dict[str, Any]]:
    tasks = running.api("GET", "/api/tasks").json()["tasks"]
    return [t for t in tasks if t["source"] == "cloudapi" and t["room_id"] == 8000]


def test_python_example(latest_sdk_python: Path, emulator: Any) -> None:
    printed = run([str(latest_sdk_python), "-c"], emulator, example("python"))
    [task] = created_tasks(emulator)
    assert printed.strip() == task["task_id"]


def test_node_example(node_modules: Path, emulator: Any) -> None:
    printed = run(["node", "-e"], emulator, example("js"), NODE_PATH=str(node_modules))
    [task] = created_tasks(emulator)
    assert printed.strip() == task["task_id"] and TASK_ID.fullmatch(task["task_id"])


def test_tccli_example(tccli: Path, tccli_home: Path, emulator: Any) -> None:
    path = f"{tccli.parent}{os.pathsep}{os.environ.get('PATH', '')}"
    printed = run(["bash", "-c"], emulator, example("sh"), PATH=path, HOME=str(tccli_home))
    [task] = created_tasks(emulator)
    assert '"RequestId"' in printed and task["request_id"] in printed


@pytest.mark.parametrize("language", ["java", "go", "php"])
def test_other_languages_are_shown(language: str) -> None:
    assert "127.0.0.1:8765" in example(language)
