"""Build a :class:`~nbnumba.config.SimConfig` from a nanoBragg command line.

The C program reads its arguments with substring tests (``strstr``): every
token is compared with every option pattern, in a fixed order, and each
pattern found inside the token takes effect.  A few tokens therefore do more
than their name says (``-twotheta_axis`` also sets ``-twotheta``;
``-misset_seed N`` also reads the next three tokens as misset angles;
``-pix0_vector_mm`` is read by the ``-pix0_vector`` rule, in metres).

The rules below are that pattern list, as data.  In parity mode every rule
whose pattern occurs in a flag token fires, in C's order, exactly as C does.
In spec mode a flag fires only the rules that belong to it.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field

import numpy as np

from .config import SimConfig
from .errors import InputFileError
from .flags import Parsed, parse_argv

RTD = 180.0 * (1.0 / math.pi)


def c_atof(text) -> float:
    """C ``atof``: the longest numeric prefix, 0 when there is none."""
    if text is None:
        return 0.0
    s = str(text).lstrip()
    best = 0.0
    for end in range(len(s), 0, -1):
        try:
            best = float(s[:end])
            return best
        except ValueError:
            continue
    return 0.0


def c_atoi(text) -> int:
    """C ``atoi``: leading integer, 0 when there is none."""
    if text is None:
        return 0
    s = str(text).lstrip()
    j = 0
    if j < len(s) and s[j] in "+-":
        j += 1
    while j < len(s) and s[j].isdigit():
        j += 1
    try:
        return int(s[:j])
    except ValueError:
        return 0


@dataclass
class RunOptions:
    """Everything on the command line that is not physics."""

    mode: str = "spec"
    backend: str = "cpu"
    dtype: str = "float64"
    nthreads: int | None = None
    floatfile: str = "floatimage.bin"
    intfile: str = "intimage.img"
    pgmfile: str = "image.pgm"
    noisefile: str = "noiseimage.img"
    write_pgm: bool = True
    calculate_noise: bool = True
    intfile_scale: float = 0.0
    pgm_scale: float = 0.0
    adc_offset: float = 40.0
    seed: int = 0
    dumpfile: str = "Fdump.bin"
    hklfile: str | None = None
    matfile: str | None = None
    sourcefile: str | None = None
    maskfile: str | None = None
    imgfile: str | None = None
    stolfile: str | None = None
    progress: bool = True
    printout: bool = False
    printout_pixel: tuple = (-1, -1)
    notes: list = field(default_factory=list)


class _State:
    """C's variables while the arguments are read (SI units, as C converts)."""

    def __init__(self, cfg: SimConfig, run: RunOptions):
        self.cfg = cfg
        self.run = run
        self.user_cell = False
        self.cell = [0.0, 0.0, 0.0]
        self.angles = [0.0, 0.0, 0.0]
        self.misset_flag = 0.0  # C's misset[0]: -1 random, 1 given
        self.misset = [0.0, 0.0, 0.0]


# A rule: (patterns, exact_length, min_following, owners, action, stop)
#   patterns: substrings, any of which must occur in the token
#   exact_length: if not None, the token length must equal it (C's strlen tests);
#                 a negative value -n means "length greater than n"
#   min_following: C's (argc > i + n) guard
#   owners: canonical flags this rule belongs to (spec mode)
#   action(st, argv, i): the effect
#   stop: C's `continue` after the rule
def _set(attr, conv):
    def act(st, argv, i):
        setattr(st.cfg, attr, conv(argv[i + 1]))
    return act


def _run(attr, conv):
    def act(st, argv, i):
        setattr(st.run, attr, conv(argv[i + 1]))
    return act


def _vec3(attr, convention=True):
    def act(st, argv, i):
        if convention:
            st.cfg.convention = "CUSTOM"
        setattr(st.cfg, attr, np.array([c_atof(argv[i + 1]), c_atof(argv[i + 2]), c_atof(argv[i + 3])]))
    return act


def _pivot(which):
    def act(st, argv, i):
        st.cfg.detector_pivot = which
    return act


def _force_pivot(which):
    def act(st, argv, i):
        st.cfg.detector_pivot = which
        st.cfg.pivot_forced = which
    return act


def _and(*acts):
    def act(st, argv, i):
        for a in acts:
            a(st, argv, i)
    return act


def _const(obj, attr, value):
    def act(st, argv, i):
        setattr(getattr(st, obj), attr, value)
    return act


def _act_cell(st, argv, i):
    st.user_cell = True
    vals = [st.cell, st.cell, st.cell, st.angles, st.angles, st.angles]
    idx = [0, 1, 2, 0, 1, 2]
    for k in range(6):
        if len(argv) <= i + 1 + k or argv[i + 1 + k].startswith("-"):
            return
        v = c_atof(argv[i + 1 + k])
        vals[k][idx[k]] = v if k < 3 else v / RTD


def _act_misset_random(st, argv, i):
    if "rand" in argv[i + 1]:
        st.misset_flag = -1.0
        return True
    return False


def _act_misset(st, argv, i):
    st.misset_flag = 1.0
    st.misset = [c_atof(argv[i + 1]) / RTD, c_atof(argv[i + 2]) / RTD, c_atof(argv[i + 3]) / RTD]


def _act_sizes(axes):
    def act(st, argv, i):
        v = c_atof(argv[i + 1]) / 1000
        for ax in axes:
            setattr(st.cfg, "sample_" + ax, v)
    return act


def _act_pix0(st, argv, i):
    st.cfg.convention = "CUSTOM"
    st.cfg.pix0_vector = np.array([c_atof(argv[i + 1]), c_atof(argv[i + 2]), c_atof(argv[i + 3])])


def _act_pix0_mm(st, argv, i):
    # spec mode only: the same vector given in mm
    st.cfg.convention = "CUSTOM"
    st.cfg.pix0_vector = np.array([c_atof(argv[i + k]) / 1000.0 for k in (1, 2, 3)])


def _act_detector_abs(st, argv, i):
    text = argv[i + 1] if len(argv) > i + 1 else ""
    if "inf" in text or c_atof(text) == 0.0:
        st.cfg.detector_thick = 0.0
        st.cfg.detector_mu = 0.0
    else:
        st.cfg.detector_mu = 1.0 / (c_atof(text) * 1e-6)


def _act_pivot(st, argv, i):
    text = argv[i + 1]
    if "sample" in text:
        st.cfg.detector_pivot = "sample"
        st.cfg.pivot_explicit = "sample"
    if "beam" in text:
        st.cfg.detector_pivot = "beam"
        st.cfg.pivot_explicit = "beam"


def _act_conv(name, pivot):
    def act(st, argv, i):
        st.cfg.convention = name
        st.cfg.detector_pivot = pivot
    return act


def _act_roi(st, argv, i):
    st.cfg.roi = tuple(c_atoi(argv[i + k]) for k in (1, 2, 3, 4))


def _act_both(attrs, conv):
    def act(st, argv, i):
        v = conv(argv[i + 1])
        for a in attrs:
            setattr(st.cfg, a, v)
    return act


def _act_printout_pixel(st, argv, i):
    st.run.printout_pixel = (c_atoi(argv[i + 1]), c_atoi(argv[i + 2]))


_deg = lambda t: c_atof(t) / RTD  # noqa: E731
_mm = lambda t: c_atof(t) / 1000.0  # noqa: E731

RULES = [
    (("-Na",), None, 1, ("-Na",), _set("Na", c_atoi), True),
    (("-Nb",), None, 1, ("-Nb",), _set("Nb", c_atoi), True),
    (("-Nc",), None, 1, ("-Nc",), _set("Nc", c_atoi), True),
    ("=-N", None, 1, ("-N",), _act_both(("Na", "Nb", "Nc"), c_atoi), True),
    (("-cell",), None, 1, ("-cell",), _act_cell, False),
    (("-misset",), None, 1, ("-misset",), "misset_random", False),
    (("-misset",), None, 3, ("-misset",), _act_misset, False),
    (("-samplesize", "-sample_size"), None, 1, ("-xtalsize",), _act_sizes("xyz"), False),
    (("-sample_thick", "-sample_x"), None, 1, ("-xtal_x",), _act_sizes("x"), False),
    (("-sample_width", "-sample_y", "-width"), None, 1, ("-xtal_y",), _act_sizes("y"), False),
    (("-sample_heigh", "-sample_z", "-heigh"), None, 1, ("-xtal_z",), _act_sizes("z"), False),
    (("-xtalsize", "-xtal_size"), None, 1, ("-xtalsize",), _act_sizes("xyz"), False),
    (("-xtal_thick", "-xtal_x"), None, 1, ("-xtal_x",), _act_sizes("x"), False),
    (("-xtal_width", "-xtal_y", "-width"), None, 1, ("-xtal_y",), _act_sizes("y"), False),
    (("-xtal_heigh", "-xtal_z", "-heigh"), None, 1, ("-xtal_z",), _act_sizes("z"), False),
    (("-density", "-sample_den"), None, 1, ("-density",), None, False),
    ("=-MW|-molec", None, 1, ("-MW",), None, False),
    (("-Xbeam",), None, 1, ("-Xbeam",), _and(_set("Xbeam", _mm), _force_pivot("beam")), False),
    (("-Ybeam",), None, 1, ("-Ybeam",), _and(_set("Ybeam", _mm), _force_pivot("beam")), False),
    (("-Xclose",), None, 1, ("-Xclose",), _and(_set("Xclose", _mm), _force_pivot("sample")), False),
    (("-Yclose",), None, 1, ("-Yclose",), _and(_set("Yclose", _mm), _force_pivot("sample")), False),
    (("-ORGX",), None, 1, ("-ORGX",), _and(_set("ORGX", c_atof), _force_pivot("sample")), False),
    (("-ORGY",), None, 1, ("-ORGY",), _and(_set("ORGY", c_atof), _force_pivot("sample")), False),
    (("-pivot",), None, 1, ("-pivot",), _act_pivot, False),
    (("-mosflm",), None, 0, ("-mosflm",), _act_conv("MOSFLM", "beam"), False),
    (("-xds",), None, 0, ("-xds",), _act_conv("XDS", "sample"), False),
    (("-adxv",), None, 0, ("-adxv",), _act_conv("ADXV", "beam"), False),
    (("-denzo",), None, 0, ("-denzo",), _act_conv("DENZO", "beam"), False),
    (("-dials",), None, 0, ("-dials",), _act_conv("DIALS", "beam"), False),
    (("-fdet_vector",), None, 3, ("-fdet_vector",), _vec3("fdet_vector"), False),
    (("-sdet_vector",), None, 3, ("-sdet_vector",), _vec3("sdet_vector"), False),
    (("-odet_vector",), None, 3, ("-odet_vector",), _vec3("odet_vector"), False),
    (("-beam_vector",), None, 3, ("-beam_vector",), _vec3("beam_vector"), False),
    (("-polar_vector",), None, 3, ("-polar_vector",), _vec3("polar_vector"), False),
    (("-spindle_axis",), None, 3, ("-spindle_axis",), _vec3("spindle_vector"), False),
    (("-twotheta_axis",), None, 3, ("-twotheta_axis",), _vec3("twotheta_axis"), False),
    (("-pix0_vector",), None, 3, ("-pix0_vector",), _act_pix0, False),
    (("-pix0_vector_mm",), None, 3, ("-pix0_vector_mm",), "spec_only_pix0_mm", False),
    (("-distance",), None, 1, ("-distance",), _and(_set("distance", _mm), _pivot("beam")), False),
    (("-close_distance",), None, 1, ("-close_distance",), _and(_set("close_distance", _mm), _force_pivot("sample")), False),
    (("-detector_abs",), None, 0, ("-detector_abs",), _act_detector_abs, False),
    (("-detector_thick",), 15, 0, ("-detector_thick",), _set("detector_thick", lambda t: c_atof(t) * 1e-6), False),
    (("-detector_thicksteps",), None, 0, ("-detector_thicksteps",), _set("detector_thicksteps", c_atoi), False),
    (("-thicksteps",), None, 0, ("-detector_thicksteps",), _set("detector_thicksteps", c_atoi), False),
    (("-twotheta",), None, 1, ("-twotheta",), _and(_set("detector_twotheta", _deg), _pivot("sample")), False),
    (("-detector_rotx",), None, 1, ("-detector_rotx",), _set("detector_rotx", _deg), False),
    (("-detector_roty",), None, 1, ("-detector_roty",), _set("detector_roty", _deg), False),
    (("-detector_rotz",), None, 1, ("-detector_rotz",), _set("detector_rotz", _deg), False),
    (("-detsize",), 8, 1, ("-detsize",), _act_both(("detsize_f", "detsize_s"), _mm), False),
    (("-detsize_f",), None, 1, ("-detsize_f",), _set("detsize_f", _mm), False),
    (("-detsize_s",), None, 1, ("-detsize_s",), _set("detsize_s", _mm), False),
    (("-detpixels",), 10, 1, ("-detpixels",), _act_both(("fpixels", "spixels"), c_atoi), False),
    (("-detpixels_f", "-detpixels_x"), None, 1, ("-detpixels_x",), _set("fpixels", c_atoi), False),
    (("-detpixels_s", "-detpixels_y"), None, 1, ("-detpixels_y",), _set("spixels", c_atoi), False),
    (("-curved_det",), None, 1, ("-curved_det",), _const("cfg", "curved_detector", True), False),
    (("-pixel",), None, 1, ("-pixel",), _set("pixel_size", _mm), False),
    (("-point_pixel",), None, 0, ("-point_pixel",), _const("cfg", "point_pixel", True), False),
    (("-polar",), 6, 1, ("-polar",), _and(_set("polarization", c_atof), _const("cfg", "nopolar", False)), False),
    (("-nopolar",), None, 0, ("-nopolar",), _const("cfg", "nopolar", True), False),
    (("-oversample_thick",), None, 0, ("-oversample_thick",), _const("cfg", "oversample_thick", True), True),
    (("-oversample_polar",), None, 0, ("-oversample_polar",), _const("cfg", "oversample_polar", True), True),
    (("-oversample_omega",), None, 0, ("-oversample_omega",), _const("cfg", "oversample_omega", True), True),
    (("-oversample",), None, 1, ("-oversample",), _set("oversample", c_atoi), False),
    (("-roi",), None, 4, ("-roi",), _act_roi, False),
    (("-lambda", "-wave"), None, 1, ("-lambda",), _set("lambda0", lambda t: c_atof(t) / 1.0e10), False),
    (("-energy",), None, 1, ("-energy",), _set("lambda0", lambda t: (12398.42 / c_atof(t)) / 1.0e10), False),
    (("-fluence",), None, 1, ("-fluence",), _set("fluence", c_atof), False),
    (("-flux",), None, 1, ("-flux",), _set("flux", c_atof), False),
    (("-exposure",), None, 1, ("-exposure",), _set("exposure", c_atof), False),
    (("-beamsize",), None, 1, ("-beamsize",), _set("beamsize", _mm), False),
    ("mosaic", None, 1, ("-mosaic",), _set("mosaic_spread", _deg), False),
    (("-mosaic_dom",), None, 1, ("-mosaic_domains",), _set("mosaic_domains", c_atoi), False),
    (("-dispersion",), None, 1, ("-dispersion",), _set("dispersion", lambda t: c_atof(t) / 100.0), False),
    (("-dispsteps",), None, 1, ("-dispsteps",), _set("dispsteps", c_atoi), False),
    (("-divergence",), None, 1, ("-divergence",), _act_both(("hdivrange", "vdivrange"), _mm), False),
    (("-hdivrange",), None, 1, ("-hdivrange",), _set("hdivrange", _mm), False),
    (("-vdivrange",), None, 1, ("-vdivrange",), _set("vdivrange", _mm), False),
    (("-hdivstep",), 9, 1, ("-hdivstep",), _set("hdivstep", _mm), False),
    (("-hdivsteps",), None, 1, ("-hdivsteps",), _set("hdivsteps", c_atoi), False),
    (("-vdivstep",), 9, 1, ("-vdivstep",), _set("vdivstep", _mm), False),
    (("-vdivsteps",), None, 1, ("-vdivsteps",), _set("vdivsteps", c_atoi), False),
    (("-divsteps",), None, 1, ("-divsteps",), _act_both(("hdivsteps", "vdivsteps"), c_atoi), False),
    (("-round_div",), None, 0, ("-round_div",), _const("cfg", "round_div", True), False),
    (("-square_div",), None, 0, ("-square_div",), _const("cfg", "round_div", False), False),
    (("-adc",), None, 1, ("-adc",), _run("adc_offset", c_atof), False),
    (("-phi",), 4, 1, ("-phi",), _set("phi0", _deg), False),
    (("-osc",), None, 1, ("-osc",), _set("osc", _deg), False),
    (("-phistep",), 8, 1, ("-phistep",), _set("phistep", _deg), False),
    (("-phisteps",), None, 1, ("-phisteps",), _set("phisteps", c_atoi), False),
    (("-dmin",), None, 1, ("-dmin",), _set("dmin", lambda t: c_atof(t) * 1e-10), False),
    (("-mat",), None, 1, ("-mat",), _run("matfile", str), False),
    (("-hkl",), None, 1, ("-hkl",), _run("hklfile", str), False),
    (("-default_F",), None, 1, ("-default_F",), _set("default_F", c_atof), False),
    (("-dump",), None, 1, ("-dump",), _run("dumpfile", str), False),
    (("-img",), None, 1, ("-img",), _run("imgfile", str), False),
    (("-stolout",), -7, 1, ("-stolout",), None, False),
    # C scales the file's first column by a flag-specific factor, but nothing read reaches the image
    (("-stol",), 5, 1, ("-stol",), _run("stolfile", str), False),
    (("-4stol",), 6, 1, ("-4stol",), _run("stolfile", str), False),
    (("-Q",), 2, 1, ("-Q",), _run("stolfile", str), False),
    (("-sourcefile",), None, 1, ("-sourcefile",), _run("sourcefile", str), False),
    (("-floatfile", "-floatimage"), None, 1, ("-floatfile",), _run("floatfile", str), False),
    (("-intfile", "-intimage"), None, 1, ("-intfile",), _run("intfile", str), False),
    (("-pgmfile", "-pgmimage"), None, 1, ("-pgmfile",), _and(_run("pgmfile", str), _const("run", "write_pgm", True)), False),
    (("-noisefile", "-noiseimage"), None, 1, ("-noisefile",), _and(_run("noisefile", str), _const("run", "calculate_noise", True)), False),
    (("-nonoise",), None, 0, ("-nonoise",), _const("run", "calculate_noise", False), False),
    (("-nopgm",), None, 0, ("-nopgm",), _const("run", "write_pgm", False), False),
    (("-scale",), None, 1, ("-scale",), _run("intfile_scale", c_atof), False),
    (("-pgmscale",), None, 1, ("-pgmscale",), _and(_run("pgm_scale", c_atof), _const("run", "write_pgm", True)), False),
    (("-coherent",), None, 0, ("-coherent",), None, False),
    (("-printout",), None, 0, ("-printout", "-printout_pixel"), _const("run", "printout", True), False),
    (("-noprogress",), None, 0, ("-noprogress",), _const("run", "progress", False), False),
    (("-progress",), None, 0, ("-progress",), _const("run", "progress", True), False),
    (("-interpolate",), None, 0, ("-interpolate",), _const("cfg", "interpolate", 1), False),
    (("-nointerpolate",), None, 0, ("-nointerpolate",), _const("cfg", "interpolate", 0), False),
    (("-round_xtal",), None, 0, ("-round_xtal",), _const("cfg", "xtal_shape", "round"), False),
    (("-square_xtal",), None, 0, ("-square_xtal",), _const("cfg", "xtal_shape", "square"), False),
    (("-gauss_xtal",), None, 0, ("-gauss_xtal",), _const("cfg", "xtal_shape", "gauss"), False),
    (("-binary_spots", "-tophat_spots"), None, 0, ("-tophat_spots",), _const("cfg", "xtal_shape", "tophat"), False),
    (("-fudge",), None, 1, ("-fudge",), _set("fudge", c_atof), False),
    (("-printout_pixel",), None, 2, ("-printout_pixel",), _act_printout_pixel, False),
    (("-seed",), None, 1, ("-seed",), _run("seed", lambda t: -c_atoi(t)), False),
    (("-mosaic_seed",), None, 1, ("-mosaic_seed",), _set("mosaic_seed", lambda t: -c_atoi(t)), False),
    (("-misset_seed",), None, 1, ("-misset_seed",), _set("misset_seed", lambda t: -c_atoi(t)), False),
    (("-water",), None, 1, ("-water",), _set("water_size", lambda t: c_atof(t) / 1e6), False),
]


def _matches(patterns, exact_len, token) -> bool:
    if patterns == "=-N":
        return token == "-N"
    if patterns == "=-MW|-molec":
        return token == "-MW" or "-molec" in token
    if patterns == "mosaic":
        return ("-mosaic" in token and len(token) == 7) or "-mosaici" in token or "-mosaic_spr" in token
    if not any(p in token for p in patterns):
        return False
    if exact_len is None:
        return True
    if exact_len < 0:
        return len(token) > -exact_len
    return len(token) == exact_len


def interpret(parsed: Parsed, mode: str, base: SimConfig | None = None):
    """Apply the C argument rules to a parsed command line (no file I/O).

    ``base`` holds values read from ``-mask``/``-img`` headers, which C
    reads before the other flags.  Returns ``(SimConfig, RunOptions, state)``.
    """
    cfg = base if base is not None else SimConfig(mode=mode)
    run = RunOptions(mode=mode)
    # both seeds default to minus the clock, as in C
    run.seed = -int(time.time())
    cfg.misset_seed = run.seed
    st = _State(cfg, run)
    argv = parsed.argv
    argc = len(argv)
    parity = mode == "parity"
    for occ in parsed.items:
        i = occ.position
        token = argv[i]
        for patterns, exact_len, need, owners, action, stop in RULES:
            if parity:
                if not _matches(patterns, exact_len, token):
                    continue
            elif occ.flag.name not in owners:
                continue
            # C's "enough arguments follow" guard; in spec mode the parser has
            # already checked the values, and switches need no argument after them
            if parity and need and not argc > i + need:
                continue
            if action is None:
                continue
            if action == "misset_random":
                if _act_misset_random(st, argv, i):
                    break
                continue
            if action == "spec_only_pix0_mm":
                if not parity:
                    _act_pix0_mm(st, argv, i)
                continue
            action(st, argv, i)
            if stop:
                break
    if st.user_cell:
        cfg.cell_angstrom = tuple(st.cell)
        cfg.cell_angles = tuple(st.angles)
    if st.misset_flag == -1.0:
        cfg.misset_random = True
    elif st.misset_flag > 0.0:
        cfg.misset = tuple(st.misset)
    if parsed.has("-exact"):
        cfg.exact_math = True
    for name in ("-backend", "-dtype", "-nthreads"):
        vals = parsed.last(name)
        if vals is not None:
            setattr(run, name[1:], vals[0])
    return cfg, run, st


def mode_of(parsed: Parsed) -> str:
    vals = parsed.last("-mode")
    return vals[0] if vals else "spec"


def apply_header(cfg: SimConfig, path: str, is_mask: bool) -> np.ndarray:
    """Initialise geometry from an SMV header as C does; return the pixels."""
    from .io.smv import read_smv, smv_value

    header_text, _hdr, data = read_smv(path)
    spixels, fpixels = data.shape
    cfg.fpixels, cfg.spixels = fpixels, spixels
    v = smv_value(header_text, "PIXEL_SIZE")
    if not math.isnan(v):
        cfg.pixel_size = v / 1000.0
    cfg.detsize_f = cfg.pixel_size * fpixels
    cfg.detsize_s = cfg.pixel_size * spixels
    for key, attr, conv in (
        ("DISTANCE", "distance", lambda x: x / 1000.0),
        ("CLOSE_DISTANCE", "close_distance", lambda x: x / 1000.0),
        ("WAVELENGTH", "lambda0", lambda x: x / 1e10),
        ("BEAM_CENTER_X", "Xbeam", lambda x: x / 1000.0),
        ("BEAM_CENTER_Y", "Ybeam",
         (lambda x: cfg.detsize_s - x / 1000.0) if is_mask else (lambda x: x / 1000.0)),
        ("ORGX", "ORGX", float),
        ("ORGY", "ORGY", float),
        ("PHI", "phi0", lambda x: x / RTD),
        ("OSC_RANGE", "osc", lambda x: x / RTD),
    ):
        v = smv_value(header_text, key)
        if not math.isnan(v):
            setattr(cfg, attr, conv(v))
    # C reads TWOTHETA into a variable it never uses: no effect
    return data


def config_from_args(argv: list, mode: str | None = None, load_files: bool = True):
    """Parse a nanoBragg command line into ``(SimConfig, RunOptions)``.

    Parameters
    ----------
    argv : list of str
        Arguments, without the program name.
    mode : {'spec', 'parity'}, optional
        Overrides any ``-mode`` flag.
    load_files : bool
        Read the input files it names (HKL, matrix, sources, mask, header).

    Raises
    ------
    UsageError, InputFileError, ConfigError
    """
    parsed = parse_argv(argv)
    mode = mode or mode_of(parsed)
    # C reads -mask and -img headers before any other flag
    cfg0 = SimConfig(mode=mode)
    mask = None
    maskfile = imgfile = None
    for occ in parsed.items:
        tok = argv[occ.position]
        if mode == "parity":
            if "-img" in tok and len(argv) > occ.position + 1:
                imgfile = argv[occ.position + 1]
            if "-mask" in tok and len(argv) > occ.position + 1:
                maskfile = argv[occ.position + 1]
        else:
            if occ.flag.name == "-img":
                imgfile = occ.values[0]
            if occ.flag.name == "-mask":
                maskfile = occ.values[0]
    if load_files:
        if maskfile is not None:
            mask = apply_header(cfg0, maskfile, is_mask=True)
        if imgfile is not None:
            apply_header(cfg0, imgfile, is_mask=False)
    cfg, run, st = interpret(parsed, mode, base=cfg0)
    if mask is not None:
        cfg.mask = np.ascontiguousarray(mask.reshape(-1).astype(np.uint16))
    run.maskfile, run.imgfile = maskfile, imgfile
    if load_files:
        load_inputs(cfg, run)
    return cfg, run


def load_inputs(cfg: SimConfig, run: RunOptions) -> None:
    """Read the HKL (or Fdump), matrix and source files a run names."""
    from .io.hkl import read_fdump, read_hkl

    if run.matfile is not None:
        from .io.matrix import read_mosflm_matrix

        if not os.path.exists(run.matfile):
            raise InputFileError(f"{run.matfile}: no such matrix file")
        cfg.a_matrix = read_mosflm_matrix(run.matfile)
    if run.hklfile is not None:
        cfg.hkl = read_hkl(run.hklfile, default_F=cfg.default_F)
    elif os.path.exists(run.dumpfile):
        run.notes.append(f"reading Fs from {run.dumpfile}")
        cfg.hkl = read_fdump(run.dumpfile)
    if cfg.hkl is None and cfg.default_F == 0.0:
        raise InputFileError(
            "no structure factors: give -hkl FILE or -default_F F (no "
            f"{run.dumpfile} cache in the working directory either)"
        )
    if run.stolfile is not None:
        from .io.textcols import check_numeric_columns

        # C reads it and requires data, but nothing it reads reaches the image
        check_numeric_columns(run.stolfile, 2, "sin(theta)/lambda vs F file")
    if run.sourcefile is not None:
        from .io.textcols import check_numeric_columns, read_text_columns

        check_numeric_columns(run.sourcefile, 5, "source file (X Y Z weight lambda)")
        table = read_text_columns(run.sourcefile, 5)
        if table.shape[1] == 0:
            raise InputFileError(f"{run.sourcefile}: no sources in the file")
        cfg.source_table = np.ascontiguousarray(table.T)
