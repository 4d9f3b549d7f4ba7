"""The README's pytest example is run with pytester, so it cannot go stale."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

README = Path(__file__).resolve().parents[1] / "README.md"


def pytest_section_code() -> str:
    text = README.read_text(encoding="utf-8")
    section = re.search(
        r"<!-- section:pytest -->(.*?)<!-- /section:pytest -->", text, flags=re.DOTALL
    )
    assert section, "README.md has no <!-- section:pytest --> ... <!-- /section:pytest -->"
    blocks = re.findall(r"```python\n(.*?)```", section.group(1), flags=re.DOTALL)
    assert len(blocks) == 1, f"expected one python block in the pytest section, got {len(blocks)}"
    return str(blocks[0])


def test_readme_pytest_example_passes(pytester: pytest.Pytester) -> None:
    code = pytest_section_code()
    tests = re.findall(r"^def (test_\w+)", code, flags=re.MULTILINE)
    assert tests, "the README example defines no tests"
    pytester.makepyfile(test_readme_example=code)
    result = pytester.runpytest("-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=len(tests))
