"""The one flag table, the one c_atof/c_atoi, flag-level input checks and the SimConfig field metadata."""

from __future__ import annotations

import dataclasses
import math
import shutil
import subprocess
import warnings

import numpy as np
import pytest
from click.testing import CliRunner

from nbnumba.cargs import RunOptions, config_from_args
from nbnumba.config import FIELD_INFO, SimConfig, field_info, user_value
from nbnumba.errors import UsageError
from nbnumba.flags import BY_NAME, FLAGS, RULES, Const, Set, Vec3, help_text, parse_argv, parse_number
from nbnumba.io.cfmt import c_atof, c_atoi

XTAL = ["-default_F", "100", "-cell", "100", "100", "100", "-lambda", "6.2", "-N", "5"]
DET = ["-detpixels", "16", "-pixel", "0.4", "-distance", "100"]

# ---------------------------------------------------------------- c_atof / c_atoi

# (text, atof, atoi) as glibc's atof/atoi give them on x86-64 (checked with a compiled C program)
C_NUMBERS = [
    ("0x10", 16.0, 0),
    ("1_0", 1.0, 1),
    ("infinity", math.inf, 0),
    ("infinit", math.inf, 0),
    ("INF", math.inf, 0),
    ("-Infinity", -math.inf, 0),
    (" 1e", 1.0, 1),
    (".5.", 0.5, 0),
    ("", 0.0, 0),
    ("abc", 0.0, 0),
    ("-0x1p-2", -0.25, 0),
    ("0x1P+4", 16.0, 0),
    ("0x1.8p1", 3.0, 0),
    ("0X1p", 1.0, 0),
    ("0x1g", 1.0, 0),
    ("0x", 0.0, 0),
    ("0xp1", 0.0, 0),
    ("0x.8", 0.5, 0),
    ("0x1p99999", math.inf, 0),
    ("1e999", math.inf, 1),
    ("-1e999", -math.inf, -1),
    ("1e-999", 0.0, 1),
    ("+.e1", 0.0, 0),
    (".e5", 0.0, 0),
    ("\t-3.5e+2xyz", -350.0, -3),
    ("1.5E3", 1500.0, 1),
    ("1e+", 1.0, 1),
    ("12e3.4", 12000.0, 12),
    ("-.5e-1", -0.05, 0),
    ("1,5", 1.0, 1),
    ("+3", 3.0, 3),
    ("1e3", 1000.0, 1),
    ("2.5", 2.5, 2),
    ("1.e5", 100000.0, 1),
    ("00012", 12.0, 12),
    ("  +12", 12.0, 12),
    ("- 5", 0.0, 0),
    ("+-5", 0.0, 0),
    ("\u0663", 0.0, 0),  # an Arabic-Indic digit: not a digit for C (Python's float() would read 3)
    ("4294967297", 4294967297.0, 1),  # atoi keeps the low 32 bits of strtol's long
    ("2147483648", 2147483648.0, -2147483648),
    ("99999999999999999999", 1e20, -1),  # strtol clamps to LONG_MAX
    ("-99999999999999999999", -1e20, 0),  # ... and LONG_MIN
]


@pytest.mark.parametrize(("text", "atof", "atoi"), C_NUMBERS, ids=[repr(c[0]) for c in C_NUMBERS])
def test_c_atof_and_atoi_follow_glibc(text, atof, atoi):
    assert c_atof(text) == atof
    assert c_atoi(text) == atoi


def test_c_atof_nan():
    assert math.isnan(c_atof("nan"))
    assert math.isnan(c_atof("nan(abc)"))
    assert math.copysign(1.0, c_atof("-nan")) == -1.0


def test_one_c_atof_for_the_project():
    import nbnumba.cargs
    import nbnumba.io.smv
    import nbnumba.io.textcols

    assert nbnumba.cargs.c_atof is c_atof and nbnumba.cargs.c_atoi is c_atoi
    assert nbnumba.io.smv.c_atof is c_atof and nbnumba.io.textcols.c_atof is c_atof


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler to compare with the C library")
def test_c_atof_and_atoi_agree_with_the_c_library(tmp_path):
    """Compare with the C library itself on the table and on random tokens."""
    src = tmp_path / "atof.c"
    src.write_text(
        "#include <stdio.h>\n#include <stdlib.h>\n"
        "int main(int argc, char **argv) {\n"
        "  for (int i = 1; i < argc; i++) printf(\"%a %d\\n\", atof(argv[i]), atoi(argv[i]));\n"
        "  return 0;\n}\n"
    )
    exe = tmp_path / "atof"
    subprocess.run(["cc", "-o", str(exe), str(src)], check=True, capture_output=True)
    rng = np.random.default_rng(7)
    alphabet = list("0123456789+-.eEpPxXaAfFiInNtTyY _,")
    texts = [t for t, _, _ in C_NUMBERS if t and "\u0663" not in t]
    texts += ["".join(rng.choice(alphabet, size=rng.integers(1, 9))) for _ in range(400)]
    out = subprocess.run([str(exe), *texts], check=True, capture_output=True, text=True).stdout.splitlines()
    assert len(out) == len(texts)
    for text, line in zip(texts, out):
        hexval, atoi = line.split()
        expected = math.nan if "nan" in hexval else float.fromhex(hexval)
        got = c_atof(text)
        assert got == expected or (math.isnan(got) and math.isnan(expected)), text
        assert c_atoi(text) == int(atoi), text


# ---------------------------------------------------------------- the flag table

def test_rules_are_in_c_order_once_each():
    orders = [rule.order for rule, _ in RULES]
    assert orders == list(range(len(RULES)))
    assert len(RULES) == 124


def test_every_spelling_is_declared_once():
    spellings = [s for flag in FLAGS for s in flag.spellings]
    assert len(spellings) == len(set(spellings)) == len(BY_NAME)


def test_every_rule_matches_a_spelling_of_its_flag():
    for rule, flag in RULES:
        assert any(rule.matches(s) for s in flag.spellings), (rule.order, flag.name)


def test_actions_name_real_fields():
    cfg_fields = {f.name for f in dataclasses.fields(SimConfig)}
    run_fields = {f.name for f in dataclasses.fields(RunOptions)}
    for rule, flag in RULES:
        for action in rule.action:
            if isinstance(action, Set):
                names = action.attrs
            elif isinstance(action, Const):
                names = (action.attr,)
            elif isinstance(action, Vec3):
                names = (action.attr,)
            else:
                continue
            target = run_fields if getattr(action, "target", "cfg") == "run" else cfg_fields
            assert set(names) <= target, (flag.name, names)


def test_flags_that_set_a_field_declare_its_user_unit():
    for rule, flag in RULES:
        for action in rule.action:
            if isinstance(action, Set) and action.target == "cfg" and flag.kind == "float":
                info = FIELD_INFO[action.attrs[0]]
                if info.user_unit and flag.name not in ("-energy",):
                    assert flag.unit == info.user_unit, (flag.name, flag.unit, info.user_unit)


def test_c_matching_rules():
    rule = {flag.name: flag.rules for flag in FLAGS}
    assert rule["-N"][0].matches("-N") and not rule["-N"][0].matches("-Na")
    assert rule["-phi"][0].matches("-phi") and not rule["-phi"][0].matches("-phisteps")
    assert rule["-mosaic"][0].matches("-mosaicity") and not rule["-mosaic"][0].matches("-mosaic_dom")
    assert rule["-MW"][0].matches("-molecular_weight")
    assert rule["-stolout"][0].matches("-stolout") and not rule["-stolout"][0].matches("-stol")
    # the substring side effects C has: -twotheta inside -twotheta_axis, -misset inside -misset_seed,
    # and -width fires both the sample and the xtal rule
    assert rule["-twotheta"][0].matches("-twotheta_axis")
    assert rule["-misset"][1].matches("-misset_seed")
    assert rule["-xtal_y"][0].matches("-width") and rule["-xtal_y"][1].matches("-width")
    assert not rule["-xtal_y"][0].matches("-xtal_width")


def test_parity_substring_side_effects_and_spec_own_rules():
    cfg, _ = config_from_args([*XTAL, "-twotheta_axis", "3", "0", "0"], mode="parity", load_files=False)
    assert cfg.detector_twotheta == pytest.approx(3 * math.pi / 180) and cfg.detector_pivot == "sample"
    cfg, _ = config_from_args([*XTAL, "-twotheta_axis", "3", "0", "0"], mode="spec", load_files=False)
    assert cfg.detector_twotheta == 0.0 and cfg.detector_pivot == "beam"
    np.testing.assert_array_equal(cfg.twotheta_axis, [3.0, 0.0, 0.0])
    # -pix0_vector_mm: spec mode's own rule in mm, parity reads the -pix0_vector rule in metres
    spec, _ = config_from_args([*XTAL, "-pix0_vector_mm", "100", "2", "3"], mode="spec", load_files=False)
    parity, _ = config_from_args([*XTAL, "-pix0_vector_mm", "100", "2", "3"], mode="parity", load_files=False)
    np.testing.assert_allclose(spec.pix0_vector, [0.1, 0.002, 0.003])
    np.testing.assert_array_equal(parity.pix0_vector, [100.0, 2.0, 3.0])


def test_help_shows_units_and_every_flag():
    text = help_text()
    for flag in FLAGS:
        for spelling in flag.spellings:
            assert spelling in text
    assert "-distance V [mm]" in text
    assert "-phi V [deg]" in text
    assert "-lambda, -wave, -wavelength V [Angstrom]" in text
    assert "-pivot beam|sample" in text


# ---------------------------------------------------------------- numbers on the command line

FLOAT_FLAGS = [f.name for f in FLAGS if f.kind == "float" and f.nargs in (1, 3) and not f.allow_inf]


@pytest.mark.parametrize("mode", ["spec", "parity"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e999", "NaN", "-Infinity"])
@pytest.mark.parametrize("flag", FLOAT_FLAGS)
def test_nan_and_infinity_are_errors_naming_the_flag(flag, value, mode):
    nargs = BY_NAME[flag].nargs
    values = [value] + ["1"] * (int(nargs) - 1)
    with pytest.raises(UsageError, match=f"^{flag}: expected a finite number, got '{value}'$"):
        config_from_args([*XTAL, flag, *values], mode=mode, load_files=False)


@pytest.mark.parametrize("argv,flag", [
    (["-cell", "100", "nan", "100"], "-cell"),
    (["-cell", "100", "100", "100", "90", "90", "inf"], "-cell"),
    (["-misset", "1", "nan", "3"], "-misset"),
    (["-N", "1e999"], "-N"),
    (["-phisteps", "1e3"], "-phisteps"),
    (["-detpixels", "4294967297"], "-detpixels"),
    (["-distance", "1_0"], "-distance"),
    (["-distance", ".5."], "-distance"),
    (["-distance", "1e"], "-distance"),
    (["-detector_abs", "nan"], "-detector_abs"),
])
def test_bad_numbers_are_errors_naming_the_flag(argv, flag):
    for mode in ("spec", "parity"):
        with pytest.raises(UsageError, match=f"^{flag}: "):
            config_from_args([*XTAL, *argv], mode=mode, load_files=False)


def test_numbers_c_accepts_are_read_as_c_reads_them():
    assert parse_number("0x64") == 100.0 and parse_number("1_0") is None and parse_number("") is None
    cfg, _ = config_from_args([*XTAL, "-distance", "0x64", "-pixel", "1.5e-1"], load_files=False)
    assert cfg.distance == 0.1 and cfg.pixel_size == pytest.approx(1.5e-4)


@pytest.mark.parametrize("mode", ["spec", "parity"])
def test_detector_abs_inf_means_no_absorption(mode):
    cfg, _ = config_from_args([*XTAL, "-detector_thick", "100", "-detector_abs", "inf"], mode=mode,
                              load_files=False)
    assert cfg.detector_mu == 0.0 and cfg.detector_thick == 0.0
    cfg, _ = config_from_args([*XTAL, "-detector_abs", "500"], mode=mode, load_files=False)
    assert cfg.detector_mu == pytest.approx(1.0 / 500e-6)


COUNTS = [("-phisteps", "phisteps"), ("-mosaic_domains", "mosaic_domains"), ("-mosaic_dom", "mosaic_domains"),
          ("-oversample", "oversample"), ("-detpixels", "fpixels"), ("-detpixels_f", "fpixels"),
          ("-detpixels_x", "fpixels"), ("-detpixels_s", "spixels"), ("-detpixels_y", "spixels"),
          ("-dispsteps", "dispsteps"), ("-divsteps", "hdivsteps"), ("-hdivsteps", "hdivsteps"),
          ("-vdivsteps", "vdivsteps"), ("-thicksteps", "detector_thicksteps"),
          ("-detector_thicksteps", "detector_thicksteps")]


@pytest.mark.parametrize("value", ["0", "-3"])
@pytest.mark.parametrize("flag,attr", COUNTS)
def test_counts_below_one_spec_error_parity_warning(flag, attr, value):
    with pytest.raises(UsageError, match=f"^{flag} {value}: must be at least 1$"):
        config_from_args([*XTAL, flag, value], mode="spec", load_files=False)
    with pytest.warns(UserWarning, match=f"{flag} {value}: a count below 1 means 'not given'"):
        cfg, _ = config_from_args([*XTAL, flag, value], mode="parity", load_files=False)
    assert getattr(cfg, attr) == int(value)  # kept as C keeps it: "not given" downstream
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cfg, _ = config_from_args([*XTAL, flag, "2"], mode="parity", load_files=False)
    assert getattr(cfg, attr) == 2


def _error_line(result):
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize("argv,message", [
    (["-distance", "nan"], "nanoBragg: error: -distance: expected a finite number, got 'nan'"),
    (["-lambda", "inf"], "nanoBragg: error: -lambda: expected a finite number, got 'inf'"),
    (["-N", "1e999"], "nanoBragg: error: -N: expected an integer, got '1e999'"),
    (["-phisteps", "0"], "nanoBragg: error: -phisteps 0: must be at least 1"),
    (["-mosaic_dom", "-2"], "nanoBragg: error: -mosaic_dom -2: must be at least 1"),
])
def test_cli_bad_numbers_one_line_exit_2_nothing_written(argv, message, tmp_path, monkeypatch):
    from cli.main import nanobragg

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(nanobragg, [*XTAL, *DET, "-noprogress", *argv])
    assert result.exit_code == 2
    assert _error_line(result) == message
    assert list(tmp_path.iterdir()) == []


def test_cli_parity_zero_count_warns_and_renders(tmp_path, monkeypatch):
    from cli.main import nanobragg

    monkeypatch.chdir(tmp_path)
    args = [*XTAL, *DET, "-noprogress", "-nonoise", "-nopgm", "-mode", "parity"]
    with pytest.warns(UserWarning, match="-phisteps 0: a count below 1 means 'not given'"):
        result = CliRunner().invoke(nanobragg, [*args, "-phisteps", "0"])
    assert result.exit_code == 0, result.output
    zero = np.fromfile(tmp_path / "floatimage.bin", dtype="<f4")
    result = CliRunner().invoke(nanobragg, args)
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(np.fromfile(tmp_path / "floatimage.bin", dtype="<f4"), zero)


def test_console_script_prints_the_parity_warning_as_one_line(tmp_path):
    import sys

    code = "from nbnumba_cli.nanobragg import main; main()"
    args = [*XTAL, "-detpixels", "4", "-pixel", "0.4", "-noprogress", "-nonoise", "-nopgm", "-mode", "parity",
            "-mosaic_domains", "0"]
    proc = subprocess.run([sys.executable, "-c", code, *args], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [
        "nanoBragg: warning: -mosaic_domains 0: a count below 1 means 'not given' (C's default applies)"]


def test_parse_argv_keeps_values_typed():
    parsed = parse_argv(["-distance", "120", "-N", "7", "-pivot", "sample", "-misset", "random"])
    assert [occ.values for occ in parsed.items] == [[120.0], [7], ["sample"], ["random"]]


# ---------------------------------------------------------------- SimConfig field metadata

def test_every_field_has_metadata():
    names = [f.name for f in dataclasses.fields(SimConfig)]
    assert list(FIELD_INFO) == names
    for name, info in FIELD_INFO.items():
        assert field_info(name) is info
        if info.continuous:
            assert info.kind in ("length", "angle", "direction", "attenuation", "cells", "pixels", "magnitude",
                                 "fraction", "time"), name
        if info.size:
            default = getattr(SimConfig(), name)
            assert default is None or len(default) == info.size, name


def test_gradient_field_lists_come_from_the_metadata():
    from nbnumba import gradients

    assert gradients.ANGLE_FIELDS == {
        "phi0", "osc", "phistep", "misset", "cell_angles", "detector_rotx", "detector_roty", "detector_rotz",
        "detector_twotheta", "mosaic_spread", "hdivrange", "vdivrange", "hdivstep", "vdivstep"}
    assert gradients.DIRECTION_FIELDS == {
        "spindle_vector", "beam_vector", "polar_vector", "fdet_vector", "sdet_vector", "odet_vector", "twotheta_axis"}
    assert gradients.LENGTH_FIELDS == {
        "distance", "close_distance", "pixel_size", "Xbeam", "Ybeam", "Xclose", "Yclose", "sample_x", "sample_y",
        "sample_z", "lambda0", "beamsize", "detector_thick", "water_size", "cell_angstrom", "pix0_vector",
        "dispstep", "detector_thickstep", "detector_mu", "detsize_f", "detsize_s", "dmin", "source_distance"}
    assert gradients.NONNEGATIVE_FIELDS == {
        "mosaic_spread", "dispersion", "hdivrange", "vdivrange", "detector_thick", "water_size", "sample_x",
        "sample_y", "sample_z", "osc", "dmin", "fluence", "flux", "exposure", "beamsize", "polarization", "Na", "Nb",
        "Nc", "default_F", "fudge"}


def test_user_units():
    assert user_value("distance", 0.12) == "120 mm"
    assert user_value("phi0", math.pi / 18) == "10 deg"
    assert user_value("misset[2]", math.pi / 4) == "45 deg"
    assert user_value("lambda0", 1.5e-10) == "1.5 Angstrom"
    assert user_value("hdivrange", 2e-3) == "2 mrad"
    assert user_value("water_size", 5e-5) == "50 um"
    assert user_value("dispersion", 0.05) == "5 %"
    assert user_value("cell_angstrom[0]", 78.5) == "78.5 Angstrom"
    assert user_value("mosaic_domains", 4) == "4"
    assert user_value("xtal_shape", "round") == "round"
    assert field_info("distance").bounds_text() == "> 0 mm"
    assert field_info("polarization").bounds_text() == "0 to 1"


# ---------------------------------------------------------------- fuzzing the flag parser

_SPELLINGS = sorted(BY_NAME)
_VALUES = ["0", "1", "-1", "2.5", "1e3", "0x10", "nan", "inf", "-inf", "1e999", "1_0", "", " ", "random", "rand",
           "abc", "-", "--", "sample", "beam", "parity", "spec", "cpu", "float32", "4294967297", "\x00", "é", "-5e-3"]


@pytest.mark.parametrize("mode", ["spec", "parity"])
def test_fuzz_flag_parser_gives_a_config_or_one_clean_error(mode):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from nbnumba.errors import NbnumbaError

    token = st.one_of(st.sampled_from(_SPELLINGS), st.sampled_from(_VALUES), st.text(max_size=8))

    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.lists(token, max_size=12))
    def check(argv):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            try:
                cfg, run = config_from_args(argv, mode=mode, load_files=False)
            except NbnumbaError as exc:
                assert "\n" not in str(exc)
                return
        assert isinstance(cfg, SimConfig) and isinstance(run, RunOptions)

    check()
