"""docs/scenarios.md cannot drift: examples, field table and schema are regenerated and compared.

To refresh the doc after changing a scenario: TIW_UPDATE_DOCS=1 pytest tests/test_scenarios_docs.py
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from spec_facts import SPEC_SCENARIOS

from emulator.core.scenarios import BUILTIN_DIR, DEFAULTS, PARAMS, SCHEMA, load_dir
from emulator.core.signing import sign
from emulator.receiver import Receiver

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "scenarios.md"
README = ROOT / "README.md"
KEY = "Xz4ZgayTr7rMgWQrH"
ROOM, SEED = 1253, 1
VOLATILE_DATA = ("TaskId", "RecordStartTime")  # follow the clock / the task, not the scenario
REGION = re.compile(r"(<!-- generated:(\w+) -->\n)(.*?)(<!-- /generated:\2 -->)", re.S)


# -- generation ----------------------------------------------------------------------------
def received(emulator: Any, receiver: Receiver, name: str) -> list[dict[str, Any]]:
    emulator.api("POST", "/api/reset").raise_for_status()
    receiver.clear()
    task = {"scenario": name, "room_id": ROOM, "seed": SEED}
    assert emulator.api("POST", "/api/tasks", json=task).status_code == 201
    emulator.api("POST", "/api/clock/advance", json={"seconds": 30 * 86400}).raise_for_status()
    return list(receiver.events())


def show(body: dict[str, Any]) -> str:
    """One body per line, except that a Finished event lists its VideoInfos one per line."""
    data = dict(body["EventData"])
    videos = data.pop("VideoInfos", None)
    if not videos:
        return json.dumps(body, ensure_ascii=False)
    head = json.dumps({k: v for k, v in body.items() if k != "EventData"}, ensure_ascii=False)
    inner = json.dumps(data, ensure_ascii=False)[:-1]
    rows = ",\n   ".join(json.dumps(v, ensure_ascii=False) for v in videos)
    return f'{head[:-1]},\n "EventData": {inner}, "VideoInfos": [\n   {rows}]}}}}'


def catalogue_region(emulator: Any, receiver: Receiver) -> str:
    parts = []
    catalogue = {s.name: s for s in load_dir(BUILTIN_DIR)}
    assert set(catalogue) == set(SPEC_SCENARIOS), (
        "a new built-in must be added to tests/spec_facts.py to be documented"
    )
    for scenario in (catalogue[n] for n in SPEC_SCENARIOS):
        bodies = received(emulator, receiver, scenario.name)
        examples = "\n".join(show(b) for b in bodies)
        parts.append(
            f"### `{scenario.name}`\n\n{scenario.description}\n\n```json\n{examples}\n```\n"
        )
    return "\n".join(parts)


def fields_region() -> str:
    rows = ["| field | default | what it does |", "|---|---|---|"]
    for section, props in ((s, SCHEMA["properties"][s]["properties"]) for s in DEFAULTS):
        for field, spec in props.items():
            default = DEFAULTS[section].get(field, "")
            shown = json.dumps(default, ensure_ascii=False) if field in DEFAULTS[section] else "-"
            rows.append(f"| `{section}.{field}` | `{shown}` | {spec.get('description', '')} |")
    assert {r.split("`")[1].split(".")[1] for r in rows[2:]} == set(PARAMS)
    return "\n".join(rows) + "\n"


def schema_region() -> str:
    return f"```json\n{json.dumps(SCHEMA, ensure_ascii=False, indent=2)}\n```\n"


# -- comparison ----------------------------------------------------------------------------
def regions(text: str) -> dict[str, str]:
    return {m.group(2): m.group(3) for m in REGION.finditer(text)}


def normalised_catalogue(region: str) -> list[tuple[str, str, list[Any]]]:
    """(name, description, bodies without the clock- and task-dependent values) per scenario."""
    out = []
    for chunk in region.split("### ")[1:]:
        name = chunk.split("`")[1]
        description = chunk.split("\n\n")[1].strip()
        block = chunk.split("```json\n", 1)[1].split("```", 1)[0]
        out.append((name, description, [_stable(b) for b in _json_values(block)]))
    return out


def _json_values(text: str) -> list[Any]:
    decoder, values, i = json.JSONDecoder(), [], 0
    while i < len(text):
        if text[i].isspace():
            i += 1
            continue
        value, i = decoder.raw_decode(text, i)
        values.append(value)
    return values


def _stable(body: dict[str, Any]) -> dict[str, Any]:
    body = dict(body)
    stamp = body.pop("Timestamp")
    if "ExpireTime" in body:
        body["ExpireTime"] = ("Timestamp +", body["ExpireTime"] - stamp)
        body["Sign"] = ("verifies", body["Sign"] == sign(KEY, stamp + body["ExpireTime"][1]))
    body["EventData"] = {k: v for k, v in body["EventData"].items() if k not in VOLATILE_DATA}
    return body


def test_scenarios_doc_is_up_to_date(emulator: Any, receiver: Receiver) -> None:
    text = DOC.read_text(encoding="utf-8")
    fresh = {
        "catalogue": catalogue_region(emulator, receiver),
        "fields": fields_region(),
        "schema": schema_region(),
    }
    if os.environ.get("TIW_UPDATE_DOCS"):
        text = REGION.sub(lambda m: m.group(1) + fresh[m.group(2)] + m.group(4), text)
        DOC.write_text(text, encoding="utf-8")
    found = regions(text)
    assert set(found) == set(fresh), "docs/scenarios.md lost a generated region"
    assert found["fields"] == fresh["fields"]
    assert json.loads(found["schema"].strip().removeprefix("```json").removesuffix("```")) == SCHEMA
    documented = normalised_catalogue(found["catalogue"])
    assert [d[0] for d in documented] == list(SPEC_SCENARIOS)
    for doc, now in zip(documented, normalised_catalogue(fresh["catalogue"]), strict=True):
        assert doc == now, f"docs/scenarios.md example for {doc[0]} is stale"


def test_every_example_shows_its_scenario(emulator: Any) -> None:
    examples = {n: b for n, _, b in normalised_catalogue(regions(DOC.read_text())["catalogue"])}
    assert examples["transcode-failure-bare"][-1]["EventData"] == {
        "Error": {"Code": "FailedOperation.Transcode", "Message": "录制对时信息获取失败"}
    }
    assert examples["bad-signature"][0]["Sign"] == ("verifies", False)
    assert examples["expired-signature"][0]["ExpireTime"][1] < 0
    assert all(e["EventType"] != "OfflineRecordFinished" for e in examples["stalled"])


@pytest.mark.parametrize("path", [README, DOC])
def test_scenario_tables_name_the_whole_catalogue(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    if path == README:
        text = text.split("<!-- section:scenarios -->")[1].split("<!-- /section:scenarios -->")[0]
    names = re.findall(r"^\| \[?`([a-z-]+)`", text, re.M)
    assert sorted(set(names)) == sorted(s.name for s in load_dir(BUILTIN_DIR))
