"""Image comparison, C-against-nbnumba runs and the ``nbnumba compare`` command."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from nbnumba.compare import (
    compare_files,
    compare_images,
    header_differences,
    input_files,
    load_image,
    run_against_c,
    run_golden,
)
from nbnumba.errors import ConfigError, InputFileError
from nbnumba.io.floatimage import write_float_image
from nbnumba.io.smv import read_smv, write_smv

GOLDEN = Path(__file__).resolve().parents[1].parent / "shared" / "golden"
C_BIN = os.environ.get("NB_C_BIN")
needs_c = pytest.mark.skipif(not C_BIN, reason="set NB_C_BIN to a C nanoBragg executable to compare against it")
needs_golden = pytest.mark.skipif(not GOLDEN.is_dir(), reason=f"no golden corpus at {GOLDEN}")
SMALL = "-cell 100 100 100 90 90 90 -default_F 100 -N 5 -detpixels 32 -nopgm -nonoise".split()


def _image(seed=0, shape=(40, 50)):
    rng = np.random.default_rng(seed)
    return (rng.random(shape) * 100 + 1).astype(np.float32)


def _cli(*args, env=None):
    from cli.main import nbnumba

    return CliRunner(env=env).invoke(nbnumba, ["compare", *args])


def test_compare_images_statistics():
    a = _image()
    st = compare_images(a, a.copy())
    assert st.ok and st.max_abs == 0 and st.max_rel == 0 and st.frac_within == 1.0 and st.n_differ == 0
    assert st.correlation == pytest.approx(1.0)
    b = a.astype(np.float64)
    b[3, 4] *= 1 + 1e-4  # one pixel of 2000 off by 1e-4: within the tolerance
    st = compare_images(b, a)
    assert st.ok and st.worst == (3, 4) and st.n_differ == 1
    assert st.max_rel == pytest.approx(1e-4, rel=1e-3)
    assert st.frac_within == pytest.approx(1 - 1 / 2000)
    b[5, 6] *= 1.01  # beyond 1e-3
    assert not compare_images(b, a).ok
    c = a.astype(np.float64) * (1 + 2e-6)  # every pixel off by 2e-6
    assert not compare_images(c, a).ok
    with pytest.raises(ConfigError, match="shape"):
        compare_images(a, a[:10])


def test_zero_pixels():
    z = np.zeros((4, 4))
    assert compare_images(z, z).ok
    w = z.copy()
    w[0, 0] = 1e-3
    assert not compare_images(w, z).ok


def test_load_float_images(tmp_path):
    a = _image(shape=(40, 50))
    p = tmp_path / "a.bin"
    write_float_image(p, a)
    img, hdr = load_image(p, fpixels=50, spixels=40)
    assert hdr is None and np.array_equal(img, a)
    assert np.array_equal(load_image(p, fpixels=50)[0], a)
    with pytest.raises(InputFileError, match="not a square image"):
        load_image(p)
    with pytest.raises(InputFileError, match="expected"):
        load_image(p, fpixels=30, spixels=30)
    sq = tmp_path / "sq.bin"
    write_float_image(sq, _image(shape=(8, 8)))
    assert load_image(sq)[0].shape == (8, 8)


def test_compare_smv_files(tmp_path):
    data = (_image() * 10).astype(np.uint16)
    write_smv(tmp_path / "a.img", data, {"distance": 100.0, "wavelength": 1.0, "phi": 0.0})
    write_smv(tmp_path / "b.img", data, {"distance": 100.0, "wavelength": 1.0, "phi": 1.0})
    res = compare_files(tmp_path / "a.img", tmp_path / "a.img")
    assert res.kind == "smv" and res.ok and not res.header_diffs
    res = compare_files(tmp_path / "a.img", tmp_path / "b.img")
    assert not res.ok and res.image.ok
    assert any(d.startswith("PHI:") for d in res.header_diffs)
    ha, hb = read_smv(tmp_path / "a.img")[0], read_smv(tmp_path / "b.img")[0]
    assert header_differences(ha, ha) == []
    assert any(d.startswith("PHI:") for d in header_differences(hb, ha))


def test_cli_two_files(tmp_path):
    a = _image()
    write_float_image(tmp_path / "a.bin", a)
    write_float_image(tmp_path / "b.bin", a * 1.1)
    res = _cli(str(tmp_path / "a.bin"), str(tmp_path / "a.bin"), "--fpixels", "50", "--spixels", "40")
    assert res.exit_code == 0, res.output
    assert "max abs diff:   0" in res.output and "100.0000%" in res.output and "MATCH" in res.output
    res = _cli(str(tmp_path / "a.bin"), str(tmp_path / "b.bin"), "--fpixels", "50", "--spixels", "40")
    assert res.exit_code == 1 and "MISMATCH" in res.output and "correlation" in res.output
    res = _cli(str(tmp_path / "a.bin"), str(tmp_path / "missing.bin"), "--fpixels", "50", "--spixels", "40")
    assert res.exit_code == 2 and "missing.bin" in res.output


def test_cli_needs_a_c_binary(monkeypatch):
    monkeypatch.delenv("NB_C_BIN", raising=False)
    res = _cli("--", *SMALL)
    assert res.exit_code == 2
    assert res.output.strip() == "nbnumba compare: error: no C nanoBragg binary: give --c-bin PATH or set NB_C_BIN"
    res = _cli("--c-bin", "/nonexistent/nanoBragg", "--", *SMALL)
    assert res.exit_code == 2 and "not an executable" in res.output


def test_input_files():
    argv = ["-hkl", "data/P1.hkl", "-cell", "100", "100", "100", "-mat", "A.mat", "-sourcefile", "s.txt",
            "-mask", "m.img"]
    assert input_files(argv) == [(1, "data/P1.hkl"), (7, "A.mat"), (9, "s.txt"), (11, "m.img")]


@needs_c
def test_against_c_small_run(tmp_path):
    res = run_against_c(SMALL, C_BIN)
    assert res.ok, "\n".join(res.lines)
    assert res.float_stats.frac_within == 1.0 or res.float_stats.ok


@needs_c
@needs_golden
def test_against_c_with_input_files(tmp_path, monkeypatch):
    sub = tmp_path / "in"
    sub.mkdir()
    (sub / "tiny3.hkl").write_bytes((GOLDEN / "inputs" / "tiny3.hkl").read_bytes())
    monkeypatch.chdir(tmp_path)
    argv = ["-hkl", "in/tiny3.hkl", "-cell", "100", "100", "100", "90", "90", "90", "-N", "3",
            "-detpixels", "32", "-seed", "5", "-nopgm", "-floatfile", "f.bin", "-intfile", "i.img"]
    res = run_against_c(argv, C_BIN, workdir=tmp_path / "work")
    assert res.ok, "\n".join(res.lines)
    assert (tmp_path / "work" / "c" / "in" / "tiny3.hkl").exists()
    assert (tmp_path / "work" / "nbnumba" / "f.bin").exists()
    assert any(line.startswith("SMV noiseimage.img") for line in res.lines)


@needs_c
def test_against_c_with_phi_carryover(monkeypatch):
    # C's phi = 0 carry-over depends on its thread count; the comparison runs C on one thread
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    argv = ["-default_F", "100", "-cell", "70", "80", "90", "75", "85", "95", "-lambda", "1", "-N", "5",
            "-detpixels", "64", "-phi", "0", "-osc", "1", "-phisteps", "4", "-nonoise", "-nopgm"]
    res = run_against_c(argv, C_BIN)
    assert res.ok, "\n".join(res.lines)


@needs_c
def test_cli_against_c():
    res = _cli("--c-bin", C_BIN, "--", *SMALL)
    assert res.exit_code == 0, res.output
    assert "verdict: MATCH" in res.output
    res = _cli("--c-bin", C_BIN, "--", *SMALL, "-floatfile", "/tmp/x.bin")
    assert res.exit_code == 2 and "absolute path" in res.output


@needs_golden
def test_golden_cases(capsys):
    assert run_golden(["phi_osc"], golden_dir=GOLDEN)
    out = capsys.readouterr().out
    assert "PASS phi_osc" in out and "1/1 cases passed" in out
    with pytest.raises(ConfigError, match="unknown golden case 'nope'"):
        run_golden(["nope"], golden_dir=GOLDEN)


@needs_golden
def test_cli_golden():
    res = _cli("--golden", "--golden-dir", str(GOLDEN), "phi_osc", "roi")
    assert res.exit_code == 0, res.output
    assert "PASS roi" in res.output
