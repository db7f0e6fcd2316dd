"""Inputs: a clear error instead of a NaN image, a traceback, a hang or a full memory.

Non-finite numbers in input files and in SimConfig fields, physically
impossible settings, resource bombs (huge images, HKL tables, step tables,
``/dev/zero`` as an input), and HKL files with extra columns (Spec A
AT-IO-004).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import struct
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import DEG, GOLDEN_DIR, triclinic_config
from nbnumba_cli.main import nanobragg

from nbnumba import budget
from nbnumba.errors import ConfigError, InputFileError
from nbnumba.io._text import read_text
from nbnumba.io.hkl import HKLGrid, read_fdump, read_hkl, write_fdump
from nbnumba.io.matrix import read_mosflm_matrix
from nbnumba.io.smv import read_smv
from nbnumba.io.textcols import check_numeric_columns, read_text_columns
from nbnumba.prepare import prepare
from nbnumba.validate import check_config

GOOD_MATRIX = "0.01 0 0\n0 0.0125 0\n0 0 0.0111\n"


@pytest.fixture
def small_memory(monkeypatch):
    """Pretend 1 GiB is available, whatever the machine has."""
    monkeypatch.setenv("NBNUMBA_MEMORY_LIMIT", "1G")
    assert budget.available_memory() == 1024**3


# ---------------------------------------------------------------- non-finite numbers in files

@pytest.mark.parametrize(
    ("content", "line"),
    [
        ("0 0 0 nan\n", 1),
        ("1 2 3 4\n0 0 0 inf\n", 2),
        ("1 2 3 4\n\n0 0 0 1e999\n", 3),
        ("1 2 3 4\n0 0 0 -INFINITY\n", 2),
        ("0 nan 0 1\n", 1),
    ],
)
def test_hkl_non_finite_names_file_and_line(tmp_path, content, line):
    path = tmp_path / "nf.hkl"
    path.write_text(content)
    for mode in ("spec", "parity"):
        with pytest.raises(InputFileError, match=rf"nf\.hkl, line {line}: non-finite"):
            read_hkl(path, mode=mode)


def test_fdump_non_finite_refused(tmp_path):
    F = np.zeros((2, 2, 3))
    F[0, 0, 1] = math.nan
    path = tmp_path / "Fdump.bin"
    write_fdump(path, HKLGrid(0, 0, 0, 0, -1, 0, F))
    with pytest.raises(InputFileError, match=r"Fdump\.bin: non-finite structure factor nan at h k l = 0 0 0"):
        read_fdump(path, c_whitespace_quirk=False)


@pytest.mark.parametrize(("token", "line"), [("nan", 2), ("inf", 3), ("1e400", 1), ("-Infinity", 3)])
def test_matrix_non_finite_names_line(tmp_path, token, line):
    rows = GOOD_MATRIX.splitlines()
    fields = rows[line - 1].split()
    fields[1] = token
    rows[line - 1] = " ".join(fields)
    path = tmp_path / "A.mat"
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(InputFileError, match=rf"A\.mat, line {line}: non-finite matrix element"):
        read_mosflm_matrix(path)


def test_matrix_trailer_non_finite_ignored(tmp_path):
    # only the first nine numbers are read (as C); what follows is not looked at
    path = tmp_path / "A.mat"
    path.write_text(GOOD_MATRIX + "nan inf\n")
    assert read_mosflm_matrix(path)[1, 1] == 0.0125


@pytest.mark.parametrize(("content", "line"), [("-10 0 0 1 1e-10\n-10 0 nan 1 1e-10\n", 2), ("inf 0 0 1\n", 1),
                                               ("-10 0 0 1 1e999\n", 1)])
def test_source_file_non_finite(tmp_path, content, line):
    path = tmp_path / "s.src"
    path.write_text(content)
    with pytest.raises(InputFileError, match=rf"s\.src, line {line}: non-finite"):
        check_numeric_columns(path, 5, "source file")
    with pytest.raises(InputFileError, match=rf"s\.src, line {line}: non-finite"):
        read_text_columns(path, 5)


def test_source_file_missing_columns_still_nan(tmp_path):
    path = tmp_path / "s.src"
    path.write_text("-10 0 0\n-10 0.1 0 2 1.1e-10\n")
    table = read_text_columns(path, 5)
    assert np.isnan(table[3, 0]) and np.isnan(table[4, 0])
    assert table[4, 1] == 1.1e-10


def test_stol_file_non_finite(tmp_path):
    path = tmp_path / "w.stol"
    path.write_text("0 2.57\n0.1 NaN\n")
    with pytest.raises(InputFileError, match=r"w\.stol, line 2: non-finite value 'NaN'"):
        check_numeric_columns(path, 2, "stol file")


# ---------------------------------------------------------------- SimConfig fields

@pytest.mark.parametrize("field", ["lambda0", "distance", "fluence", "Na", "phi0", "detector_rotx", "default_F"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_scalar_field_named(field, value):
    cfg = triclinic_config(**{field: value})
    with pytest.raises(ConfigError, match=rf"^{field} \(-\w+\) must be a finite number"):
        check_config(cfg)


@pytest.mark.parametrize("field", ["Xbeam", "Ybeam", "Xclose", "Yclose", "ORGX", "ORGY", "close_distance"])
def test_nan_means_unset_where_c_says_so(field):
    check_config(triclinic_config(**{field: math.nan}))
    with pytest.raises(ConfigError, match=rf"^{field} "):
        check_config(triclinic_config(**{field: math.inf}))


@pytest.mark.parametrize("field", ["beam_vector", "fdet_vector", "cell_angles", "misset", "pix0_vector"])
def test_non_finite_array_field_named(field):
    value = np.array([0.0, math.nan, 1.0])
    cfg = triclinic_config(**{field: value})
    with pytest.raises(ConfigError, match=rf"^{field} .*must be finite numbers, got 0 nan 1"):
        check_config(cfg)


def test_source_table_nan_is_unset_but_inf_refused():
    table = np.array([[math.nan, math.nan, math.nan, 1.0, math.nan], [-10.0, 0.0, 0.0, 1.0, 1.1e-10]])
    check_config(triclinic_config(source_table=table))
    table[1, 1] = math.inf
    with pytest.raises(ConfigError, match="source_table"):
        check_config(triclinic_config(source_table=table))


def test_hkl_grid_checked():
    grid = HKLGrid(0, 1, 0, 1, 0, 1, np.ones((3, 3, 3)), 8)
    check_config(triclinic_config(hkl=grid))
    bad = dataclasses.replace(grid, F=grid.F.copy())
    bad.F[1, 1, 1] = math.nan
    with pytest.raises(ConfigError, match=r"hkl \(-hkl\) holds a structure factor that is not finite"):
        check_config(triclinic_config(hkl=bad))
    with pytest.raises(ConfigError, match=r"table has shape \(2, 2, 2\), but its index ranges need \(3, 3, 3\)"):
        check_config(triclinic_config(hkl=HKLGrid(0, 1, 0, 1, 0, 1, np.ones((2, 2, 2)), 8)))


def test_prepare_checks_config_first():
    with pytest.raises(ConfigError, match="lambda0"):
        prepare(triclinic_config(lambda0=math.nan))


# ---------------------------------------------------------------- impossible values

@pytest.mark.parametrize("field", ["beam_vector", "polar_vector", "spindle_vector", "fdet_vector", "sdet_vector",
                                   "twotheta_axis"])
@pytest.mark.parametrize("mode", ["spec", "parity"])
def test_zero_axis_refused(field, mode):
    cfg = triclinic_config(mode, convention="CUSTOM", **{field: np.zeros(3)})
    with pytest.raises(ConfigError, match=rf"^{field} \(-\w+\) must not be a zero-length vector"):
        prepare(cfg)


def test_zero_odet_spec_refused():
    with pytest.raises(ConfigError, match="odet_vector"):
        prepare(triclinic_config("spec", convention="CUSTOM", odet_vector=np.zeros(3)))


def test_zero_odet_parity_rebuilt_as_c_does():
    prep = prepare(triclinic_config("parity", convention="CUSTOM", odet_vector=np.zeros(3)))
    assert "WARNING: auto-generating odet_vector" in prep.messages
    np.testing.assert_allclose(prep.detector.odet, [1.0, 0.0, 0.0], atol=1e-15)


@pytest.mark.parametrize(
    ("angles", "why"),
    [
        ((90, 90, 200), "below 180"),
        ((90, 90, 180), "below 180"),
        ((170, 170, 170), "sum to less than 360"),
        ((30, 40, 80), "smaller than the other two"),
        ((60, 60, 120), "smaller than the other two"),
        ((100, 0, 10), "smaller than the other two"),  # 0 means 90 (C): 100 = 90 + 10 is flat
    ],
)
@pytest.mark.parametrize("mode", ["spec", "parity"])
def test_impossible_cell_refused(angles, why, mode):
    cfg = triclinic_config(mode, cell_angles=tuple(a * DEG for a in angles))
    with pytest.raises(ConfigError, match=rf"^cell_angles \(-cell\) make no cell: .*{why}"):
        check_config(cfg)


@pytest.mark.parametrize("angles", [(90, 90, 90), (0, 0, 0), (75, 85, 95), (60, 60, 60), (120, 120, 110),
                                    (30, 40, 69)])
def test_possible_cell_accepted(angles):
    check_config(triclinic_config(cell_angles=tuple(a * DEG for a in angles)))


def test_cell_edges():
    with pytest.raises(ConfigError, match="edge a must be positive, got 0 A"):
        check_config(triclinic_config(cell_angstrom=(0.0, 10.0, 10.0)))
    with pytest.raises(ConfigError, match="edge c must not be negative, got -5 A"):
        check_config(triclinic_config(cell_angstrom=(10.0, 10.0, -5.0)))
    check_config(triclinic_config(cell_angstrom=(10.0, 0.0, 0.0)))  # 0: same as a, as in C


@pytest.mark.parametrize("lam", [0.0, -1e-10])
def test_source_wavelength_must_be_positive(lam):
    table = np.array([[-10.0, 0.0, 0.0, 1.0, 1e-10], [-10.0, 0.01, 0.0, 1.0, lam]])
    with pytest.raises(ConfigError, match=r"source_table \(-sourcefile\) source 2 has a wavelength of"):
        check_config(triclinic_config(source_table=table))


def test_source_at_sample_refused():
    table = np.array([[0.0, 0.0, 0.0, 1.0, 1e-10]])
    with pytest.raises(ConfigError, match="source 1 is at the sample"):
        check_config(triclinic_config(source_table=table))


def test_dispersion_reaching_zero_wavelength():
    check_config(triclinic_config(dispersion=1.5))
    with pytest.raises(ConfigError, match=r"dispersion \(-dispersion\) of 200 % reaches zero"):
        check_config(triclinic_config(dispersion=2.0))


@pytest.mark.parametrize("lam", [0.0, -1e-10])
def test_zero_or_negative_wavelength(lam):
    with pytest.raises(ConfigError, match=r"^lambda0 \(-lambda\) must be positive"):
        check_config(triclinic_config(lambda0=lam))


@pytest.mark.parametrize("field", ["fluence", "flux", "exposure", "beamsize", "detector_thick", "sample_x",
                                   "sample_y", "sample_z", "water_size", "Na", "Nb", "Nc", "detsize_f"])
@pytest.mark.parametrize("mode", ["spec", "parity"])
def test_negative_amounts_refused(field, mode):
    cfg = triclinic_config(mode, **{field: -1e-3})
    with pytest.raises(ConfigError, match=rf"^{field} \(-\w+\) must not be negative, got -0.001"):
        prepare(cfg)


def test_zero_beamsize_with_flux():
    with pytest.raises(ConfigError, match="infinite fluence"):
        check_config(triclinic_config(flux=1e12, exposure=1.0, beamsize=0.0))
    check_config(triclinic_config(flux=0.0, beamsize=0.0))


@pytest.mark.parametrize(
    ("roi", "why"),
    [((4, 2, 0, 4), "is empty"), ((0, 5, 3, 1), "is empty"), ((6, 9, 0, 4), "outside the 6 x 5"),
     ((0, 5, 5, 8), "outside the 6 x 5"), ((7, -1, -1, -1), "outside")],
)
def test_bad_roi_refused(roi, why):
    with pytest.raises(ConfigError, match=rf"^roi \(-roi\) .*{why}"):
        prepare(triclinic_config(roi=roi))


@pytest.mark.parametrize("roi", [(0, 5, 0, 4), (5, 100, 4, 100), (-1, -1, -1, -1), (2, 2, 3, 3), (-1, 0, -1, 0)])
def test_good_roi_accepted(roi):
    prep = prepare(triclinic_config(roi=roi))
    assert prep.fpixels == 6 and prep.spixels == 5


def _golden_cases():
    if not GOLDEN_DIR.is_dir():
        return []
    return sorted(p.parent.name for p in GOLDEN_DIR.glob("*/case.json"))


@pytest.mark.parametrize("case", _golden_cases())
def test_golden_cases_pass_every_check(case, tmp_path, monkeypatch):
    """Parity must keep accepting every golden case (and spec mode too)."""
    from nbnumba.cargs import config_from_args

    info = json.loads((GOLDEN_DIR / case / "case.json").read_text())
    for name in info.get("inputs", []):
        (tmp_path / name).symlink_to(GOLDEN_DIR / "inputs" / name)
    monkeypatch.chdir(tmp_path)
    for mode in ("parity", "spec"):
        cfg, _run = config_from_args(list(info["args"]), mode=mode)
        check_config(cfg)
        prep = prepare(cfg)
        assert not any("estimated to take" in m for m in prep.messages)


# ---------------------------------------------------------------- resource bombs

def test_available_memory_is_known():
    avail = budget.available_memory()
    assert avail is None or avail > 0


def test_memory_limit_env(monkeypatch):
    monkeypatch.setenv("NBNUMBA_MEMORY_LIMIT", "512M")
    assert budget.available_memory() == 512 * 1024**2
    monkeypatch.setenv("NBNUMBA_MEMORY_LIMIT", "3e9")
    assert budget.available_memory() == 3_000_000_000


def test_estimate_numbers():
    est = budget.estimate_run(1000, 2000, sources=3, phisteps=4, mosaic_domains=5, oversample=2, thicksteps=3)
    assert est.evaluations == 1000 * 2000 * 3 * 4 * 5 * 4 * 3
    assert est.seconds == pytest.approx(est.evaluations * 5e-9)
    assert est.memory_bytes >= 1000 * 2000 * budget.BYTES_PER_PIXEL
    roi = budget.estimate_run(1000, 2000, 1, 1, 1, 1, roi=(10, 19, 0, 4))
    assert roi.evaluations == 50


def test_huge_detector_refused(small_memory):
    with pytest.raises(ConfigError, match=r"100000 x 100000 pixel image .* would need 373 GiB of memory; "
                                          r"1 GiB is available"):
        prepare(triclinic_config(fpixels=100000, spixels=100000))


@pytest.mark.parametrize(("field", "count"), [("mosaic_domains", 10**9), ("phisteps", 10**9)])
def test_huge_step_tables_refused(small_memory, field, count):
    cfg = triclinic_config(mosaic_spread=0.5 * DEG, osc=1 * DEG, **{field: count})
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match=rf"{count} {'mosaic domain' if 'mosaic' in field else 'phi step'}.*"
                                          "would need .* of memory"):
        prepare(cfg)
    assert time.perf_counter() - t0 < 5


def test_long_run_warns_with_estimate():
    lines = budget.check_run(10000, 10000, sources=1, phisteps=10000, mosaic_domains=1, oversample=1)
    assert lines == ["WARNING: this run is estimated to take about 83 min (1e+12 evaluations at ~5 ns each)"]
    assert budget.check_run(64, 64, 1, 10, 1, 1) == []


def test_long_run_warning_from_prepare():
    cfg = triclinic_config(fpixels=3000, spixels=3000, phisteps=10, osc=1 * DEG, oversample=100)
    prep = prepare(cfg)
    assert any(m.startswith("WARNING: this run is estimated to take about") for m in prep.messages)


def test_hkl_spanning_2000_refused(tmp_path, small_memory):
    path = tmp_path / "big.hkl"
    path.write_text("-2000 -2000 -2000 1\n2000 2000 2000 1\n")
    with pytest.raises(InputFileError, match=r"big\.hkl: the structure-factor table for h -2000\.\.2000, "
                                             r"k -2000\.\.2000, l -2000\.\.2000 would need 478 GiB"):
        read_hkl(path)


def test_hkl_spanning_2000_refused_slow_path(tmp_path, small_memory):
    path = tmp_path / "big.hkl"
    path.write_text("-2000 -2000 -2000 1\n2000 2000 2000 1\n2000 2000 2000 2\n")  # repeated: line by line
    with pytest.raises(InputFileError, match="would need 478 GiB"):
        read_hkl(path)


def test_fdump_huge_header_refused_before_reading(tmp_path, small_memory):
    path = tmp_path / "Fdump.bin"
    path.write_bytes(b"-2000 2000 -2000 2000 -2000 2000\n\f" + bytes(64))
    with pytest.raises(InputFileError, match=r"Fdump\.bin: the structure-factor table .* would need 478 GiB"):
        read_fdump(path)


def test_smv_huge_size_refused(tmp_path, small_memory):
    head = b"{\nHEADER_BYTES=512;\nSIZE1=100000;\nSIZE2=100000;\n}\f"
    path = tmp_path / "big.img"
    path.write_bytes(head.ljust(512, b" ") + bytes(16))
    with pytest.raises(InputFileError, match=r"big\.img: a 100000 x 100000 pixel SMV image would need"):
        read_smv(path)


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
@pytest.mark.parametrize("reader", [read_hkl, read_mosflm_matrix, lambda p: read_text_columns(p, 5), read_smv,
                                    read_fdump], ids=["hkl", "matrix", "columns", "smv", "fdump"])
def test_dev_zero_stops_at_once(reader):
    t0 = time.perf_counter()
    with pytest.raises(InputFileError, match="/dev/zero"):
        reader("/dev/zero")
    assert time.perf_counter() - t0 < 2


def test_text_size_bound(tmp_path):
    path = tmp_path / "sparse.hkl"
    with open(path, "wb") as handle:
        handle.truncate(2 * 1024**3 + 1)  # sparse: costs no disk
    t0 = time.perf_counter()
    with pytest.raises(InputFileError, match=r"sparse\.hkl: hkl file too large \(2 GiB; at most 2 GiB"):
        read_hkl(path)
    assert time.perf_counter() - t0 < 2


def test_line_length_bound(tmp_path):
    path = tmp_path / "long.hkl"
    path.write_text("1 2 3 4\n" * 3 + "1" * 5000 + "\n")
    with pytest.raises(InputFileError, match=r"long\.hkl, line 4: line longer than 4096 characters"):
        read_hkl(path)
    # across read chunks, and with a small bound
    path.write_bytes(b"ab\n" * 1000 + b"x" * 40 + b"\n")
    with pytest.raises(InputFileError, match=r"line 1001: line longer than 32"):
        read_text(path, "test file", max_line=32)
    assert read_text(path, "test file", max_line=40)[1].count("\n") == 1001


def test_fdump_reads_only_what_it_needs(tmp_path):
    grid = HKLGrid(0, 1, 0, 0, 0, 0, np.arange(12.0).reshape(3, 2, 2), 2)
    path = tmp_path / "Fdump.bin"
    write_fdump(path, grid)
    with open(path, "ab") as handle:
        handle.write(b"\x01" * 200000)  # trailing bytes are not read into memory
    back = read_fdump(path)
    assert np.array_equal(back.F, grid.F)


# ---------------------------------------------------------------- command line

def _cli(args):
    return CliRunner().invoke(nanobragg, list(args))


CLI_BASE = ["-default_F", "100", "-cell", "100", "100", "100", "90", "90", "90", "-lambda", "6.2", "-N", "5",
            "-distance", "100", "-pixel", "0.4", "-nonoise", "-nopgm", "-noprogress", "-floatfile", "f.bin"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["-detpixels", "16", "-cell", "100", "100", "100", "90", "90", "200"], "cell_angles (-cell) make no cell"),
        (["-detpixels", "16", "-roi", "20", "30", "0", "5"], "roi (-roi) 20 30 0 5 lies outside the 16 x 16"),
        (["-detpixels", "16", "-fluence", "-1"], "fluence (-fluence) must not be negative"),
        (["-detpixels", "100000"], "100000 x 100000 pixel image"),
        (["-detpixels", "16", "-hkl", "/dev/zero"], "/dev/zero, line 1: line longer than 4096"),
    ],
)
def test_cli_one_line_error(tmp_path, monkeypatch, extra, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NBNUMBA_MEMORY_LIMIT", "1G")
    result = _cli(CLI_BASE + extra)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("nanoBragg: error: ") and message in lines[0], lines[0]
    assert not (tmp_path / "f.bin").exists()


# ---------------------------------------------------------------- HKL extra columns (AT-IO-004)

PLAIN = "0 0 0 10\n1 0 -1 20.5\n-2 3 1 30\n"


@pytest.mark.parametrize("extra", [[" 1.5", " 2", " 0.25"], [" 1.5 90", " 2 -45.5", " 0.25 180"]],
                         ids=["SIGF", "SIGF-PHASE"])
def test_hkl_extra_columns_spec_reads_fourth(tmp_path, extra):
    plain = tmp_path / "plain.hkl"
    plain.write_text(PLAIN)
    wide = tmp_path / "wide.hkl"
    wide.write_text("".join(line + e + "\n" for line, e in zip(PLAIN.splitlines(), extra)))
    ref = read_hkl(plain)
    got = read_hkl(wide, mode="spec")
    assert (got.h_min, got.h_max, got.k_min, got.k_max, got.l_min, got.l_max) == (-2, 1, 0, 3, -1, 1)
    assert np.array_equal(got.F, ref.F)
    assert got.F[1 + 2, 0, -1 + 1] == 20.5 and got.hkls == 3 and got.warnings == []


def test_hkl_extra_columns_spec_slow_path(tmp_path):
    # a repeated reflection sends the file through the line-by-line reader: the last one wins
    path = tmp_path / "rep.hkl"
    path.write_text("0 0 0 10 1 0\n1 1 1 5 1 0\n0 0 0 12 1 0\n")
    grid = read_hkl(path)
    assert grid.F[0, 0, 0] == 12.0 and grid.F[1, 1, 1] == 5.0 and grid.hkls == 3


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("0 0 0 1 2 3 4\n", "line 1: 7 columns; expected 'h k l F', 'h k l F SIGF' or 'h k l F SIGF PHASE'"),
        ("0 0 0 1 2\n1 1 1 1 x\n", "line 2: expected a number, got 'x'"),
        ("0 0 0 1 2\n1 1 1 1 nan\n", "line 2: non-finite value 'nan'"),
        ("0 0 0 1 2\n1 1 1\n", "line 2"),
    ],
)
def test_hkl_extra_columns_spec_errors(tmp_path, content, message):
    path = tmp_path / "w.hkl"
    path.write_text(content)
    with pytest.raises(InputFileError, match=rf"w\.hkl, {message}"):
        read_hkl(path, mode="spec")


def test_hkl_extra_columns_parity_reads_like_c(tmp_path):
    # C's fscanf("%lg%lg%lg%lg") takes the numbers four at a time across lines:
    # [0 0 0 10] [1 1 0 0] [20 1 2 0] [0 30 1 3] [0 0 40 1]
    path = tmp_path / "w.hkl"
    path.write_text("0 0 0 10 1\n1 0 0 20 1\n2 0 0 30 1\n3 0 0 40 1\n")
    with pytest.warns(UserWarning, match="span lines"):
        grid = read_hkl(path, mode="parity")
    assert (grid.h_min, grid.h_max, grid.k_min, grid.k_max, grid.l_min, grid.l_max) == (0, 20, 0, 30, 0, 40)
    assert grid.hkls == 5
    expected = np.zeros((22, 32, 42))
    expected[0, 0, 0] = 10.0
    expected[0, 30, 1] = 3.0
    expected[0, 0, 40] = 1.0
    assert np.array_equal(grid.F, expected)
    assert "line 1" in grid.warnings[0] and "four at a time" in grid.warnings[0]


def test_hkl_extra_columns_parity_fdump_like_c(tmp_path):
    # the same table C would dump: header ranges then the doubles
    path = tmp_path / "w.hkl"
    path.write_text("0 0 0 10 1\n1 0 0 20 1\n2 0 0 30 1\n3 0 0 40 1\n")
    with pytest.warns(UserWarning):
        grid = read_hkl(path, mode="parity")
    dump = tmp_path / "Fdump.bin"
    write_fdump(dump, grid)
    raw = dump.read_bytes()
    assert raw.startswith(b"0 20 0 30 0 40\n\f")
    assert struct.unpack_from("<d", raw, len(b"0 20 0 30 0 40\n\f"))[0] == 10.0


def test_hkl_four_columns_same_in_both_modes():
    src = Path(GOLDEN_DIR / "inputs" / "rand6.hkl")
    if not src.exists():
        pytest.skip("golden corpus not found")
    a = read_hkl(src, mode="spec")
    b = read_hkl(src, mode="parity")
    assert np.array_equal(a.F, b.F) and a.hkls == b.hkls


def test_hkl_extra_columns_cli_spec_renders_as_four(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "plain.hkl").write_text(PLAIN)
    (tmp_path / "wide.hkl").write_text("".join(line + " 1.5 90\n" for line in PLAIN.splitlines()))
    images = {}
    for name in ("plain", "wide"):
        args = [a for a in CLI_BASE if a != "f.bin"][:-1]
        result = _cli(args[2:] + ["-hkl", f"{name}.hkl", "-detpixels", "16", "-floatfile", f"{name}.bin",
                                  "-mode", "spec"])
        assert result.exit_code == 0, result.output
        images[name] = np.fromfile(tmp_path / f"{name}.bin", dtype="<f4")
    assert images["plain"].size == 256 and images["plain"].max() > 0
    assert np.array_equal(images["plain"], images["wide"])
