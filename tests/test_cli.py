"""The `nanoBragg` and `nbnumba run` commands (click), run in an empty temporary folder."""

from __future__ import annotations

import math

import numpy as np
import pytest
from click.testing import CliRunner
from nbnumba_cli.main import nanobragg, nbnumba

from nbnumba.cargs import config_from_args
from nbnumba.flags import FLAGS
from nbnumba.io.smv import read_smv

DEG = math.pi / 180.0
XTAL = ["-default_F", "100", "-cell", "100", "100", "100", "-lambda", "6.2", "-N", "5"]
DET = ["-detpixels", "16", "-pixel", "0.4", "-distance", "100"]
QUIET = ["-noprogress"]
DEFAULT_OUTPUTS = {"floatimage.bin", "intimage.img", "image.pgm", "noiseimage.img"}


@pytest.fixture(autouse=True)
def _cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def invoke(args, command=nanobragg):
    if command is nbnumba:
        args = ["run", *args]
    return CliRunner().invoke(command, list(args))


def files(path):
    return {p.name for p in path.iterdir()}


def error_line(result):
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return lines[0]


COMMANDS = pytest.mark.parametrize("command", [nanobragg, nbnumba], ids=["nanoBragg", "nbnumba-run"])


# ---------------------------------------------------------------- help

@COMMANDS
def test_help_lists_every_flag(command):
    result = invoke(["-h"], command)
    assert result.exit_code == 0, result.output
    for flag in FLAGS:
        for spelling in (flag.name,) + flag.aliases:
            assert spelling in result.stdout, spelling
    for required in ("-hkl", "-mat", "-cell", "-pixel", "-detpixels", "-distance", "-lambda", "-energy", "-floatfile",
                     "-intfile", "-noisefile", "-pgmfile", "-scale", "-adc", "-mosflm", "-xds", "-roi"):
        assert required in result.stdout


def test_no_arguments_prints_usage_and_fails():
    result = invoke([])
    assert result.exit_code != 0
    assert "usage" in result.stdout.lower()


# ---------------------------------------------------------------- usage errors

@COMMANDS
def test_unknown_flag_suggests_the_right_one(command, _cwd):
    result = invoke([*XTAL, "-distnce", "100"], command)
    assert result.exit_code != 0
    line = error_line(result)
    assert "-distnce" in line and "-distance" in line
    assert files(_cwd) == set()


def test_bad_value_names_flag_and_value(_cwd):
    result = invoke([*XTAL, "-distance", "abc"])
    assert result.exit_code != 0
    line = error_line(result)
    assert "-distance" in line and "abc" in line
    assert files(_cwd) == set()


def test_bad_integer_value():
    result = invoke([*XTAL, "-detpixels", "1.5"])
    assert result.exit_code != 0
    line = error_line(result)
    assert "-detpixels" in line and "1.5" in line


def test_missing_value(_cwd):
    result = invoke([*XTAL, "-distance"])
    assert result.exit_code != 0
    line = error_line(result)
    assert "-distance" in line and "value" in line
    result = invoke([*XTAL, "-beam_vector", "1", "0"])
    assert result.exit_code != 0
    assert "-beam_vector" in error_line(result)
    assert files(_cwd) == set()


def test_bad_choice():
    result = invoke([*XTAL, *DET, "-pivot", "corner"])
    assert result.exit_code != 0
    line = error_line(result)
    assert "-pivot" in line and "corner" in line


def test_no_structure_factors_fails_with_usage_hint(_cwd):
    result = invoke(["-cell", "100", "100", "100", *DET])
    assert result.exit_code != 0
    line = error_line(result)
    assert "-hkl" in line and "-default_F" in line
    assert files(_cwd) == set()


# ---------------------------------------------------------------- input files

def test_missing_hkl_file(_cwd):
    result = invoke(["-hkl", "missing.hkl", "-cell", "100", "100", "100", *DET])
    assert result.exit_code != 0
    assert "missing.hkl" in error_line(result)
    assert files(_cwd) == set()


def test_missing_matrix_file(_cwd):
    result = invoke(["-mat", "missing.mat", "-default_F", "1", *DET])
    assert result.exit_code != 0
    assert "missing.mat" in error_line(result)
    assert files(_cwd) == set()


def test_malformed_hkl_names_file_and_line(_cwd):
    (_cwd / "bad.hkl").write_text("0 0 0 10\n1 0 0 12\n1 1 0 abc\n")
    result = invoke(["-hkl", "bad.hkl", "-cell", "100", "100", "100", *DET])
    assert result.exit_code != 0
    line = error_line(result)
    assert "bad.hkl" in line and "line 3" in line
    assert files(_cwd) == {"bad.hkl"}


# ---------------------------------------------------------------- outputs

def test_unwritable_output_fails_before_rendering(_cwd):
    result = invoke([*XTAL, *DET, *QUIET, "-floatfile", "no_such_folder/float.bin"])
    assert result.exit_code != 0
    assert "no_such_folder" in error_line(result)
    assert files(_cwd) == set()
    assert "max_I" not in result.stdout  # nothing was rendered


@COMMANDS
def test_render_writes_c_default_outputs(command, _cwd):
    result = invoke([*XTAL, *DET, *QUIET, "-seed", "5"], command)
    assert result.exit_code == 0, result.output
    assert files(_cwd) == DEFAULT_OUTPUTS
    n = 16 * 16
    img = np.fromfile(_cwd / "floatimage.bin", dtype="<f4")
    assert img.size == n and img.max() > 0
    for name in ("intimage.img", "noiseimage.img"):
        data = (_cwd / name).read_bytes()
        assert len(data) == 512 + 2 * n
        header, _, pixels = read_smv(str(_cwd / name))
        assert pixels.shape == (16, 16)
        assert "SIZE1=16;" in header and "PIXEL_SIZE=0.4" in header
    ints = read_smv(str(_cwd / "intimage.img"))[2].astype(np.int64)
    # autoscale: the brightest pixel maps to 55000 counts above the ADC offset of 40
    assert ints.max() == 55040
    pgm = (_cwd / "image.pgm").read_bytes()
    assert pgm.startswith(b"P5\n16 16\n# pixels scaled by ")
    assert pgm.endswith(b"255\n" + pgm[-n:]) and len(pgm.split(b"\n255\n", 1)[1]) == n
    assert "max_I" in result.stdout


def test_nonoise_and_nopgm_suppress_outputs(_cwd):
    result = invoke([*XTAL, *DET, *QUIET, "-nonoise", "-nopgm"])
    assert result.exit_code == 0, result.output
    assert files(_cwd) == {"floatimage.bin", "intimage.img"}


def test_noise_is_reproducible_with_a_seed(_cwd):
    def noise(seed):
        assert invoke([*XTAL, *DET, *QUIET, "-nopgm", "-seed", str(seed)]).exit_code == 0
        return (_cwd / "noiseimage.img").read_bytes()

    a, b, c = noise(11), noise(11), noise(12)
    assert a == b
    assert a != c


def test_roi_leaves_outside_pixels_zero(_cwd):
    result = invoke([*XTAL, *DET, *QUIET, "-nonoise", "-nopgm", "-roi", "2", "9", "4", "11"])
    assert result.exit_code == 0, result.output
    img = np.fromfile(_cwd / "floatimage.bin", dtype="<f4").reshape(16, 16)
    inside = np.zeros_like(img, dtype=bool)
    inside[4:12, 2:10] = True
    assert np.all(img[~inside] == 0) and np.all(img[inside] > 0)


# ---------------------------------------------------------------- argument forms

def test_negative_numbers_are_values(_cwd):
    cfg, _ = config_from_args([*XTAL, "-beam_vector", "-1", "0", "0", "-Xbeam", "-5", "-misset", "-10", "20", "-30",
                               "-phi", "-3"])
    np.testing.assert_array_equal(cfg.beam_vector, [-1.0, 0.0, 0.0])
    assert cfg.convention == "CUSTOM"
    assert cfg.Xbeam == pytest.approx(-5e-3)
    np.testing.assert_allclose(cfg.misset, [-10 * DEG, 20 * DEG, -30 * DEG])
    assert cfg.phi0 == pytest.approx(-3 * DEG)
    result = invoke([*XTAL, *DET, *QUIET, "-nonoise", "-nopgm", "-Xbeam", "-1", "-Ybeam", "-1.5",
                     "-misset", "-10", "20", "-30"])
    assert result.exit_code == 0, result.output


def test_misset_random(_cwd):
    result = invoke([*XTAL, *DET, *QUIET, "-nonoise", "-nopgm", "-misset", "random", "-misset_seed", "3"])
    assert result.exit_code == 0, result.output
    assert "random orientation misset angles" in result.stdout
    cfg, _ = config_from_args([*XTAL, "-misset", "random", "-misset_seed", "3"])
    assert cfg.misset_random and cfg.misset is None and cfg.misset_seed == -3
    # same seed, same orientation; another seed, another one
    img1 = np.fromfile(_cwd / "floatimage.bin", dtype="<f4")
    invoke([*XTAL, *DET, *QUIET, "-nonoise", "-nopgm", "-misset", "random", "-misset_seed", "3"])
    np.testing.assert_array_equal(np.fromfile(_cwd / "floatimage.bin", dtype="<f4"), img1)
    invoke([*XTAL, *DET, *QUIET, "-nonoise", "-nopgm", "-misset", "random", "-misset_seed", "4"])
    assert not np.array_equal(np.fromfile(_cwd / "floatimage.bin", dtype="<f4"), img1)


SYNONYMS = [
    (["-lambda", "1.5"], ["-wave", "1.5"], "lambda0"),
    (["-lambda", "1.5"], ["-wavelength", "1.5"], "lambda0"),
    (["-detpixels_x", "12"], ["-detpixels_f", "12"], "fpixels"),
    (["-detpixels_y", "10"], ["-detpixels_s", "10"], "spixels"),
    (["-detector_thicksteps", "3"], ["-thicksteps", "3"], "detector_thicksteps"),
    (["-mosaic", "0.3"], ["-mosaic_spread", "0.3"], "mosaic_spread"),
    (["-mosaic_domains", "4"], ["-mosaic_dom", "4"], "mosaic_domains"),
    (["-xtalsize", "0.01"], ["-samplesize", "0.01"], "sample_x"),
    (["-tophat_spots"], ["-binary_spots"], "xtal_shape"),
]


@pytest.mark.parametrize("mode", ["spec", "parity"])
@pytest.mark.parametrize("first,second,attr", SYNONYMS, ids=[s[1][0] for s in SYNONYMS])
def test_synonyms_set_the_same_field(first, second, attr, mode):
    a, _ = config_from_args([*XTAL, *first], mode=mode)
    b, _ = config_from_args([*XTAL, *second], mode=mode)
    base, _ = config_from_args(list(XTAL), mode=mode)
    assert getattr(a, attr) == getattr(b, attr)
    assert getattr(a, attr) != getattr(base, attr)


@pytest.mark.parametrize("flag,default_name", [("-floatimage", "floatimage.bin"), ("-floatfile", "floatimage.bin"),
                                               ("-intimage", "intimage.img"), ("-intfile", "intimage.img"),
                                               ("-noiseimage", "noiseimage.img"), ("-pgmimage", "image.pgm")])
def test_output_file_synonyms(flag, default_name, _cwd):
    result = invoke([*XTAL, *DET, *QUIET, flag, "renamed.out"])
    assert result.exit_code == 0, result.output
    written = files(_cwd)
    assert "renamed.out" in written and default_name not in written
    assert len(written) == 4


def test_energy_and_lambda_agree():
    a, _ = config_from_args([*XTAL, "-energy", "12398.42"])
    assert a.lambda0 == pytest.approx(1.0e-10, rel=1e-12)


def test_mode_flag_and_mode_argument():
    cfg, run = config_from_args([*XTAL, "-mode", "parity"])
    assert cfg.mode == "parity" and run.mode == "parity"
    cfg, _ = config_from_args([*XTAL])
    assert cfg.mode == "spec"
    cfg, _ = config_from_args([*XTAL, "-mode", "parity"], mode="spec")
    assert cfg.mode == "spec"
