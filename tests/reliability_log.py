"""What the hardening tests tried and saw, recorded as they run and written to docs/reliability.md.

Each test calls `record(topic, ...)` with facts (counts, seeds, what was injected, what was
observed). Records go to one JSON-lines file per process in a folder the pytest controller
creates (xdist workers inherit it through TIW_RELIABILITY_DIR). When a run has recorded every
topic in TOPICS, the controller renders the records into docs/reliability.md (records are
made after a test's assertions, so only what held is written); a partial run (one test file, a
-k filter) leaves the document alone. tests/test_reliability_doc.py checks
that the committed document is the one the suite writes (topics, versions, seeds).
"""

from __future__ import annotations

import json
import os
from importlib.metadata import version
from pathlib import Path
from typing import Any

ENV = "TIW_RELIABILITY_DIR"
DOC = Path(__file__).resolve().parent.parent / "docs" / "reliability.md"

# topic -> (section title, what the section is about); the document follows this order.
TOPICS: dict[str, tuple[str, str]] = {
    "contract": (
        "Contract fuzzing (schemathesis)",
        "Every operation of the served /api/openapi.json over real loopback HTTP, with every"
        " schemathesis check; exclusions are listed with their reasons in"
        " tests/fuzz/schemathesis.toml.",
    ),
    "properties": (
        "Property-based inputs (hypothesis)",
        "Cloud API requests, scenario files and payload building.",
    ),
    "backend": (
        "Backend faults",
        "A real loopback backend misbehaving in one way per test; retry policy `fast`.",
    ),
    "emulator": (
        "Emulator faults",
        "The emulator's own storage, port and files going wrong.",
    ),
    "stress": (
        "Concurrency stress",
        "tests/test_stress.py: control API traffic from several threads at once, with resets.",
    ),
    "safety": (
        "Safe defaults",
        "Bind address, token, secret masking, body limits.",
    ),
}


def record(topic: str, name: str, **facts: Any) -> None:
    """Note one thing tried (`name`) and its facts; a no-op outside a pytest run of the suite."""
    if topic not in TOPICS:
        raise ValueError(f"unknown reliability topic {topic!r}")
    folder = os.environ.get(ENV)
    if not folder:
        return
    line = json.dumps({"topic": topic, "name": name, **facts}, sort_keys=True, default=str)
    with open(Path(folder) / f"{os.getpid()}.jsonl", "a", encoding="utf-8") as out:
        out.write(line + "\n")


def read_records(folder: Path) -> list[dict[str, Any]]:
    records = []
    for path in sorted(folder.glob("*.jsonl")):
        records.extend(json.loads(line) for line in path.read_text("utf-8").splitlines())
    return records


def complete(records: list[dict[str, Any]]) -> bool:
    return {r["topic"] for r in records} >= set(TOPICS)


def render(records: list[dict[str, Any]]) -> str:
    """The document: a header with tool versions, then one table per topic, sorted by name."""
    lines = [
        "# Reliability report",
        "",
        "Written by the test suite (`make test`; tests/reliability_log.py) from what the",
        "hardening tests tried and observed; tests/test_reliability_doc.py fails when it is out of",
        "date. Counts are per run with the fixed seeds below, so the file changes only when the",
        "tests or the tools change.",
        "",
        f"- schemathesis {version('schemathesis')}, hypothesis {version('hypothesis')}",
        "",
    ]
    for topic, (title, about) in TOPICS.items():
        rows = sorted((r for r in records if r["topic"] == topic), key=lambda r: r["name"])
        lines += [f"## {title}", "", about, ""]
        lines += ["| tried | observed |", "| --- | --- |"]
        seen = set()
        for row in rows:
            facts = {k: v for k, v in row.items() if k not in ("topic", "name", "observed")}
            tried = row["name"] + (
                " (" + ", ".join(f"{k}={v}" for k, v in sorted(facts.items())) + ")"
                if facts
                else ""
            )
            entry = (tried, str(row.get("observed", "")))
            if entry in seen:
                continue
            seen.add(entry)
            lines.append(f"| {_cell(entry[0])} | {_cell(entry[1])} |")
        lines.append("")
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
