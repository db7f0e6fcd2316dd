"""-printout_pixel output and the strict column-file checks."""

import numpy as np
import pytest
from click.testing import CliRunner
from nbnumba_cli.main import nanobragg

BASE = ["-default_F", "100", "-cell", "70", "80", "90", "75", "85", "95", "-lambda", "1", "-N", "5",
        "-detpixels", "32", "-pixel", "0.5", "-nonoise", "-nopgm", "-noprogress", "-mode", "parity"]


def test_printout_pixel_reports_the_rendered_value(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(nanobragg, BASE + ["-printout_pixel", "20", "12"])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("  20   12 : stol ="))
    assert lines[head + 2].startswith("hkl= -0.070032 1.978256 1.767150  hkl0= 0 2 2")
    pixel = float(lines[head + 8].split()[1])
    image = np.fromfile(tmp_path / "floatimage.bin", dtype="<f4").reshape(32, 32)
    assert pixel == float(f"{image[12, 20]:.10g}")


def test_malformed_source_file_is_rejected(tmp_path, monkeypatch):
    (tmp_path / "bad.src").write_text("0 0 -10 1 1e-10\nabc 1 2\n")
    _reject(tmp_path, monkeypatch, ["-sourcefile", "bad.src"], "bad.src, line 2: 'abc' is not a number")


def test_source_file_with_too_many_columns_is_rejected(tmp_path, monkeypatch):
    (tmp_path / "six.src").write_text("0 0 -10 1 1e-10 7\n")
    _reject(tmp_path, monkeypatch, ["-sourcefile", "six.src"], "six.src, line 1: 6 columns")


def test_missing_stol_file_is_an_error(tmp_path, monkeypatch):
    _reject(tmp_path, monkeypatch, ["-stol", "nothere.stol"], "nothere.stol")


def _reject(tmp_path, monkeypatch, extra, text):
    """The run stops with one error line, exit 2, and writes no file."""
    before = set(tmp_path.iterdir())
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(nanobragg, BASE + extra)
    assert res.exit_code == 2, res.output
    assert text in res.output
    assert "Traceback" not in res.output
    assert set(tmp_path.iterdir()) == before


@pytest.mark.parametrize("extra, text", [
    (["-distance", "0"], "-distance: must be a positive number, got '0'"),
    (["-lambda", "-1"], "-lambda: must be a positive number"),
    (["-energy", "0"], "-energy: must be a positive number"),
    (["-pixel", "0"], "-pixel: must be a positive number"),
    (["-beam_vector", "0", "1", "0"], "the beam runs parallel to the detector plane"),
])
def test_impossible_geometry_is_one_line_and_no_files(tmp_path, monkeypatch, extra, text):
    _reject(tmp_path, monkeypatch, extra, text)


def test_cuda_backend_without_gpu_is_one_line(tmp_path, monkeypatch):
    from nbnumba import engine

    monkeypatch.setattr(engine, "cuda_usable", lambda: False)
    _reject(tmp_path, monkeypatch, ["-backend", "cuda"], "-backend cuda: no usable CUDA GPU or driver found")


def test_auto_backend_without_gpu_uses_cpu_and_says_so(tmp_path, monkeypatch):
    from nbnumba import engine

    monkeypatch.setattr(engine, "cuda_usable", lambda: False)
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(nanobragg, BASE + ["-backend", "auto"])
    assert res.exit_code == 0, res.output
    assert "backend: cpu (chosen by -backend auto)" in res.output
    assert (tmp_path / "floatimage.bin").stat().st_size == 32 * 32 * 4
