"""What `pip install .` (not -e) puts in the wheel: every module of the checkout.

An editable install reads the checkout and hides a package missing from setup.cfg; a user's
`pip install nbnumba` then fails at the first import (nbnumba.stages was missing this way).
"""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
INSTALLED_AS = {"cli": "nbnumba_cli"}


def _modules_in_checkout() -> set[str]:
    found = set()
    for top in ("nbnumba", "cli"):
        for path in (ROOT / top).rglob("*.py"):
            if "__pycache__" in path.parts:
                continue
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            parts[0] = INSTALLED_AS.get(parts[0], parts[0])
            found.add(".".join(parts))
    return found


def test_setup_cfg_lists_every_package():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    listed = set(config["options"]["packages"].split())
    packages = {m.removesuffix(".__init__") for m in _modules_in_checkout() if m.endswith("__init__")}
    assert packages == listed


@pytest.mark.slow
def test_wheel_holds_every_module(tmp_path):
    """Build the wheel as pip does and list it: each .py of nbnumba/ and cli/ is inside.

    The build runs on a copy of the sources (setuptools writes build/ and *.egg-info beside them).
    """
    src = tmp_path / "src"
    for name in ("nbnumba", "cli"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    out = tmp_path / "wheel"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    (wheel,) = out.glob("nbnumba-*.whl")
    with zipfile.ZipFile(wheel) as z:
        inside = {n.removesuffix(".py").replace("/", ".") for n in z.namelist() if n.endswith(".py")}
        scripts = [n for n in z.namelist() if n.endswith(".data/scripts/nanoBragg")]
        assert len(scripts) == 1, z.namelist()
        first_line = z.read(scripts[0]).split(b"\n", 1)[0]
        (entry_points,) = [n for n in z.namelist() if n.endswith(".dist-info/entry_points.txt")]
        console = z.read(entry_points).decode()
    assert _modules_in_checkout() <= inside
    assert "nbnumba_cli._server" in inside and "nbnumba.stages.detector" in inside
    # nanoBragg is the plain script (pip points "#!python" at the environment's interpreter), not a
    # generated entry-point wrapper, which would import re before anything else (12 ms a run)
    assert first_line == b"#!python"
    assert "nbnumba = nbnumba_cli.main:main" in console and "nanoBragg" not in console
