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


def test_relative_difference_floor():
    """A reference pixel near zero no longer reports a relative difference of 1e29 (issue 11)."""
    b = np.full((4, 5), 1000.0)
    b[1, 2] = 1e-30
    a = b.copy()
    a[1, 2] = 1e-3  # far below anything that matters next to a maximum of 1000
    st = compare_images(a, b)
    assert st.max_rel == pytest.approx(1e-3 / (1e-6 * 1000.0))  # 1.0, not 1e27
    assert st.worst == (1, 2)
    a[1, 2] = 0.5  # 5e-4 of the maximum: a real difference, still reported as large
    assert compare_images(a, b).max_rel == pytest.approx(0.5 / 1e-3)


def test_compare_images_roi_and_sums():
    a = _image(shape=(20, 30))
    b = a.astype(np.float64).copy()
    b[0, 0] *= 2  # outside the ROI below
    st = compare_images(a, b, roi=(5, 14, 2, 9))  # x 5..14 (fast), y 2..9 (slow), inclusive
    assert st.shape == (8, 10) and st.ok and st.max_abs == 0 and st.roi == (5, 14, 2, 9)
    assert st.sum_a == pytest.approx(float(a[2:10, 5:15].astype(np.float64).sum()), rel=1e-12)
    assert st.sum_ratio == pytest.approx(1.0)
    full = compare_images(a, b)
    assert not full.ok and full.mse == pytest.approx((b[0, 0] / 2) ** 2 / a.size, rel=1e-6)
    assert full.rmse == pytest.approx(full.mse ** 0.5)
    with pytest.raises(ConfigError, match="does not fit"):
        compare_images(a, b, roi=(0, 30, 0, 5))


def test_previews_are_scaled_pngs(tmp_path):
    from PIL import Image

    from nbnumba.compare import write_previews

    a = np.zeros((10, 12))
    a[3, 4] = 100.0
    a[5, 6] = 25.0
    b = a.copy()
    b[5, 6] = 16.0
    info = write_previews({"ours": a, "ref": b}, tmp_path, scale="sqrt", percentile=100.0)
    assert info["png_scale_method"] == "sqrt" and info["png_white_level"] == 100.0
    ours = np.asarray(Image.open(tmp_path / "ours.png"))
    assert ours.shape == (10, 12) and ours[3, 4] == 255 and ours[5, 6] == round(255 * 0.5)
    assert Image.open(tmp_path / "ours.png").text["png_scale_method"] == "sqrt"
    diff = np.asarray(Image.open(tmp_path / "diff.png"))
    assert diff.shape == (10, 12, 3) and diff[5, 6, 0] == 255 and diff[5, 6, 2] == 0 and diff[3, 4].sum() == 0
    lin = write_previews({"ours": a, "ref": b}, tmp_path, scale="linear", percentile=100.0)
    assert lin["png_scale_method"] == "linear"
    assert np.asarray(Image.open(tmp_path / "ours.png"))[5, 6] == round(255 * 0.25)
    with pytest.raises(ConfigError, match="PNG scaling"):
        write_previews({"ours": a, "ref": b}, tmp_path, scale="gamma")


def test_cli_two_files_outdir_roi_threshold(tmp_path):
    import json

    from PIL import Image

    a = _image(shape=(40, 50))
    b = a.astype(np.float64)
    b[30:, :] *= 3.0  # rows 30.. differ strongly
    write_float_image(tmp_path / "a.bin", a)
    write_float_image(tmp_path / "b.bin", b.astype(np.float32))
    size = ["--fpixels", "50", "--spixels", "40"]
    out = tmp_path / "cmp"
    res = _cli(str(tmp_path / "a.bin"), str(tmp_path / "b.bin"), *size, "--roi", "0", "49", "0", "19",
               "--outdir", str(out), "--threshold", "0.99")
    assert res.exit_code == 0, res.output
    assert "ROI x 0-49, y 0-19" in res.output and "PASS" in res.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["roi"] == [0, 49, 0, 19] and summary["correlation"] == pytest.approx(1.0)
    assert summary["max_abs_diff"] == 0 and summary["sum_ratio"] == pytest.approx(1.0)
    assert summary["png_scale_method"] == "sqrt" and summary["png_percentile"] == 99.5
    for name in ("a.png", "b.png"):
        assert Image.open(out / name).size == (50, 20)  # the ROI only
    assert Image.open(out / "diff.png").mode == "RGB"
    res = _cli(str(tmp_path / "a.bin"), str(tmp_path / "b.bin"), *size, "--threshold", "0.999999")
    assert res.exit_code == 3 and "FAIL" in res.output
    res = _cli(str(tmp_path / "a.bin"), str(tmp_path / "b.bin"), *size, "--roi", "0", "60", "0", "5")
    assert res.exit_code == 2 and "does not fit" in res.output


def _fake_c(tmp_path):
    """A stand-in for the C binary: nbnumba's parity mode in its own process."""
    import stat
    import sys

    script = tmp_path / "fake_nanoBragg"
    script.write_text(f"#!{sys.executable}\nimport sys\nfrom nbnumba.runner import run_nanobragg\n"
                      "sys.exit(run_nanobragg(sys.argv[1:], mode='parity'))\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def test_against_c_runs_in_folders_without_chdir(tmp_path, monkeypatch):
    import json

    fake = _fake_c(tmp_path)

    def no_chdir(path):
        raise AssertionError(f"os.chdir({path!r}) called")

    monkeypatch.setattr(os, "chdir", no_chdir)
    res = run_against_c(SMALL, fake, workdir=tmp_path / "work", roi=(4, 27, 4, 27))
    assert res.ok, "\n".join(res.lines)
    assert res.float_stats.roi == (4, 27, 4, 27) and res.float_stats.shape == (24, 24)
    assert (tmp_path / "work" / "nbnumba" / "floatimage.bin").exists()
    assert (tmp_path / "work" / "c" / "floatimage.bin").exists()
    monkeypatch.undo()
    res = _cli("--c-bin", fake, "--outdir", str(tmp_path / "cmp"), "--threshold", "0.98", "--png-scale", "log",
               "--", *SMALL)
    assert res.exit_code == 0, res.output
    assert "C runtime:" in res.output and "Py runtime:" in res.output
    for name in ("c_stdout.txt", "c_stderr.txt", "py_stdout.txt", "py_stderr.txt", "c_float.bin", "py_float.bin",
                 "c.png", "py.png", "diff.png", "summary.json"):
        assert (tmp_path / "cmp" / name).exists(), name
    summary = json.loads((tmp_path / "cmp" / "summary.json").read_text())
    for key in ("args", "c_bin", "runtime_c_ms", "runtime_py_ms", "correlation", "mse", "rmse", "max_abs_diff",
                "sum_c", "sum_py", "sum_ratio", "png_scale_method", "png_percentile"):
        assert key in summary, key
    assert summary["correlation"] == pytest.approx(1.0) and summary["png_scale_method"] == "log"
    assert "max_I" in (tmp_path / "cmp" / "py_stdout.txt").read_text()
    assert (tmp_path / "cmp" / "c_float.bin").read_bytes() == (tmp_path / "cmp" / "py_float.bin").read_bytes()


def test_against_c_reports_a_failing_run(tmp_path):
    fake = _fake_c(tmp_path)
    res = _cli("--c-bin", fake, "--outdir", str(tmp_path / "cmp"), "--", *SMALL, "-detpixels", "-5")
    assert res.exit_code == 1 and "a run failed" in res.output
    assert "error" in (tmp_path / "cmp" / "py_stderr.txt").read_text()
