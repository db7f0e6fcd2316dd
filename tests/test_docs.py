"""Every Python snippet of README.md and docs/ runs as written (blocks marked ``no-test`` excepted)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python([^\n]*)\n(.*?)^```", re.S | re.M)


def _blocks(path: Path) -> list[str]:
    return [code for info, code in BLOCK.findall(path.read_text()) if "no-test" not in info]


def test_the_docs_have_snippets():
    assert sum(len(_blocks(p)) for p in DOCS) >= 5


@pytest.mark.parametrize("path", [p for p in DOCS if _blocks(p)], ids=lambda p: p.name)
def test_snippets_run(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # snippets that write files write them here
    namespace: dict = {"__name__": "__docs__"}
    for number, code in enumerate(_blocks(path), 1):
        try:
            exec(compile(code, f"{path.name} block {number}", "exec"), namespace)
        except Exception as exc:  # noqa: BLE001 - report which snippet failed
            pytest.fail(f"{path.name}, Python block {number}: {type(exc).__name__}: {exc}")
