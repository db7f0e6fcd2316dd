"""Spec A, AT-TOOLS-001 (optional developer tooling): the dual-runner comparison, ``nbnumba compare``.

Without a C binary the "C" runner is a stand-in that runs nbnumba's parity mode in its own process.
"""

from __future__ import annotations

import json
import stat
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from speca_util import differs, in_tmp  # noqa: F401

pytestmark = pytest.mark.usefixtures("in_tmp")

ARGS = "-default_F 100 -cell 100 100 100 90 90 90 -lambda 6.2 -N 5 -detpixels 48 -distance 100 -nopgm -nonoise"


def _compare(*args):
    from cli.main import nbnumba

    return CliRunner().invoke(nbnumba, ["compare", *args])


def _stand_in(tmp_path):
    script = tmp_path / "c_stand_in"
    script.write_text(f"#!{sys.executable}\nimport sys\nfrom nbnumba.runner import run_nanobragg\n"
                      "sys.exit(run_nanobragg(sys.argv[1:], mode='parity'))\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def test_at_tools_001_dual_runner_comparison(tmp_path):
    res = _compare("--c-bin", _stand_in(tmp_path), "--outdir", "cmp", "--roi", "10", "37", "10", "37",
                   "--threshold", "0.98", "--", *ARGS.split())
    assert res.exit_code == 0, res.output
    assert "C runtime:" in res.output and "Py runtime:" in res.output
    out = tmp_path / "cmp"
    for name in ("c_stdout.txt", "c_stderr.txt", "py_stdout.txt", "py_stderr.txt", "c_float.bin", "py_float.bin",
                 "c.png", "py.png", "diff.png"):
        assert (out / name).exists(), name
    s = json.loads((out / "summary.json").read_text())
    assert s["args"] == ARGS.split() and s["roi"] == [10, 37, 10, 37]
    for key in ("runtime_c_ms", "runtime_py_ms", "correlation", "mse", "rmse", "max_abs_diff", "sum_c", "sum_py",
                "sum_ratio", "png_scale_method", "png_percentile", "c_bin"):
        assert key in s, key
    assert s["correlation"] == pytest.approx(1.0) and s["sum_ratio"] == pytest.approx(1.0)
    c = np.fromfile(out / "c_float.bin", "<f4").reshape(48, 48)
    assert s["sum_c"] == pytest.approx(float(c[10:38, 10:38].astype(float).sum()), rel=1e-9)


def test_at_tools_001_threshold_exit_code(tmp_path):
    a = np.random.default_rng(1).random((16, 16)).astype(np.float32)
    a.tofile("a.bin")
    (a[::-1] + 0).astype(np.float32).tofile("b.bin")
    res = _compare("a.bin", "b.bin", "--threshold", "0.9")
    assert res.exit_code == 3 and "FAIL" in res.output


@differs("Spec A's exit codes 1 (usage), 2 (runner failure), 4 (shape mismatch), 5 (I/O error); nbnumba follows "
         "the project's rule: every error is one line and exit 2, a failed run or mismatch exit 1, exit 3 below "
         "--threshold (as Spec A)")
def test_at_tools_001_shape_mismatch_exit_code(tmp_path):
    np.zeros((16, 16), np.float32).tofile("a.bin")
    np.zeros((8, 16), np.float32).tofile("b.bin")
    res = _compare("a.bin", "b.bin", "--fpixels", "16")
    assert "differ in shape" in res.output
    assert res.exit_code == 4
