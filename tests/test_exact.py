"""-exact evaluates the lattice factor with C's own formula: bit-identical float images."""

import shutil

import numpy as np
import pytest

from nbnumba import config_from_args, simulate
from nbnumba.golden import load_case

CASES = ["triclinic_misset", "mosaic", "phi_osc"]


@pytest.mark.parametrize("name", CASES)
def test_exact_is_bit_identical_to_c(name, golden_dir, tmp_path, monkeypatch):
    case = load_case(golden_dir, name)
    for inp in case.get("inputs", []):
        shutil.copy(golden_dir / "inputs" / inp, tmp_path / inp)
    monkeypatch.chdir(tmp_path)
    cfg, _ = config_from_args(list(case["args"]) + ["-exact"], mode="parity")
    ref = np.fromfile(golden_dir / name / "float.bin", dtype="<f4").reshape(case["spixels"], case["fpixels"])
    assert np.array_equal(simulate(cfg).image, ref)


def test_reduced_and_exact_lattice_factors_agree_to_rounding():
    argv = ("-default_F 100 -cell 70 80 90 75 85 95 -misset 10 20 30 -lambda 1 -Na 36 -Nb 47 -Nc 5 "
            "-detpixels 48 -pixel 0.4 -distance 100 -mode parity").split()
    cfg, _ = config_from_args(argv)
    fast = simulate(cfg).image.astype(np.float64)
    cfg.exact_math = True
    exact = simulate(cfg).image.astype(np.float64)
    rel = np.abs(fast - exact) / np.maximum(np.abs(exact), 1e-30)
    # one float32 unit at most (2**-23 relative), and almost every pixel identical
    assert rel.max() <= 2.0**-23
    assert np.mean(fast == exact) > 0.999
