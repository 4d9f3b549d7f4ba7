"""docs/reliability.md is what the suite writes: every topic, the tools' versions and seeds."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import reliability_log
import test_faults_backend
import test_fuzz_contract
import test_properties_cloudapi
import test_properties_scenarios

README = Path(__file__).resolve().parent.parent / "README.md"


def test_reliability_doc_is_current() -> None:
    assert reliability_log.DOC.exists(), "run `make test` once: it writes docs/reliability.md"
    text = reliability_log.DOC.read_text("utf-8")
    stale = "out of date: a full `make test` rewrites it; commit the new version"
    for title, _ in reliability_log.TOPICS.values():
        assert f"## {title}" in text, stale
    assert f"schemathesis {version('schemathesis')}, hypothesis {version('hypothesis')}" in text
    assert f"seed={test_fuzz_contract.SEED}" in text, stale
    assert f"max_examples={test_fuzz_contract.MAX_EXAMPLES}" in text, stale
    for fault in test_faults_backend.FAULTS:
        if isinstance(fault, test_faults_backend.Fault):  # the xfail ones are not yet true
            assert f"| {fault.name}" in text, (fault.name, stale)
    assert f"{test_properties_cloudapi.EXAMPLES} random requests" in text, stale
    assert f"{test_properties_scenarios.EXAMPLES} random-bytes" in text, stale
    assert "docs/reliability.md" in README.read_text("utf-8")


def test_render_is_stable_and_escapes_cells() -> None:
    records = [
        {"topic": topic, "name": f"b {topic}", "observed": "ok | fine"}
        for topic in reliability_log.TOPICS
    ] + [{"topic": "contract", "name": "a first", "seed": 1, "observed": "x"}]
    once = reliability_log.render(records)
    assert once == reliability_log.render(list(reversed(records)))
    assert "| a first (seed=1) | x |" in once
    assert "ok \\| fine" in once
    assert once.index("a first") < once.index("b contract")
    assert reliability_log.complete(records)
    assert not reliability_log.complete([r for r in records if r["topic"] != "safety"])
