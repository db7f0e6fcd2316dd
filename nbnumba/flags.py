"""The nanoBragg command-line vocabulary: every flag, declared once.

Each :class:`Flag` of :data:`FLAGS` holds everything about one flag: its
spellings, how many values it takes, their kind and unit, its help line and
the C program's argument rules that it owns (:class:`Rule`: the substrings C
looks for with ``strstr``, C's length test, how many tokens must follow, and
the action).  Everything else is derived from this table: the parser
(:func:`parse_argv`), ``nanoBragg -h`` (:func:`help_text`) and the rule list
that :mod:`nbnumba.cargs` applies (:data:`RULES`, in C's order).

The C program compares every token with every pattern, in a fixed order, and
each pattern found inside the token takes effect, so a few tokens do more
than their name says (``-twotheta_axis`` also sets ``-twotheta``;
``-misset_seed N`` also reads the next three tokens as misset angles).  In
parity mode every rule whose pattern occurs in a flag token fires, in C's
order (:attr:`Rule.order`); in spec mode a flag fires only its own rules.
"""

from __future__ import annotations

import difflib
import math
import re
import warnings
from dataclasses import dataclass, field
from typing import Callable

from .errors import UsageError
from .io.cfmt import c_atof, c_atoi, c_strtod_prefix

RTD = 180.0 * (1.0 / math.pi)


# ---------------------------------------------------------------- conversions (C's, on the raw token)

def _deg(t: str) -> float:
    return c_atof(t) / RTD


def _mm(t: str) -> float:
    return c_atof(t) / 1000.0


def _um(t: str) -> float:
    return c_atof(t) * 1e-6


def _per_million(t: str) -> float:
    return c_atof(t) / 1e6


def _angstrom(t: str) -> float:
    return c_atof(t) / 1.0e10


def _dmin(t: str) -> float:
    return c_atof(t) * 1e-10


def _energy(t: str) -> float:
    return (12398.42 / c_atof(t)) / 1.0e10


def _percent(t: str) -> float:
    return c_atof(t) / 100.0


def _neg_int(t: str) -> int:
    return -c_atoi(t)


def _text(t: str) -> str:
    return str(t)


# ---------------------------------------------------------------- actions

@dataclass(frozen=True)
class Set:
    """Set attributes of the config (``target='cfg'``) or run options to ``conv(next token)``."""

    attrs: tuple
    conv: Callable
    target: str = "cfg"

    def __call__(self, st, argv, i):
        value = self.conv(argv[i + 1])
        obj = getattr(st, self.target)
        for attr in self.attrs:
            setattr(obj, attr, value)


@dataclass(frozen=True)
class Const:
    """Set one attribute of the config or run options to a constant."""

    target: str
    attr: str
    value: object

    def __call__(self, st, argv, i):
        setattr(getattr(st, self.target), self.attr, self.value)


@dataclass(frozen=True)
class Vec3:
    """Set a vector from the next three tokens (and select the CUSTOM convention)."""

    attr: str
    scale: float = 1.0

    def __call__(self, st, argv, i):
        import numpy as np

        st.cfg.convention = "CUSTOM"
        setattr(st.cfg, self.attr, np.array([c_atof(argv[i + k]) / self.scale for k in (1, 2, 3)]))


@dataclass(frozen=True)
class Call:
    """A rule action written as a function ``fn(st, argv, i)``; a true result stops the token."""

    fn: Callable

    def __call__(self, st, argv, i):
        return self.fn(st, argv, i)


def _cfg(attr, conv):
    return Set((attr,), conv)


def _run(attr, conv=_text):
    return Set((attr,), conv, "run")


def _pivot(which):
    return Const("cfg", "detector_pivot", which)


def _force_pivot(which):
    """C's pivot setting, also recorded as the pivot this flag forces (Spec A, spec mode)."""
    return (_pivot(which), Const("cfg", "pivot_forced", which))


def _cell(st, argv, i):
    st.user_cell = True
    vals = [st.cell, st.cell, st.cell, st.angles, st.angles, st.angles]
    idx = [0, 1, 2, 0, 1, 2]
    for k in range(6):
        if len(argv) <= i + 1 + k or argv[i + 1 + k].startswith("-"):
            return None
        v = c_atof(argv[i + 1 + k])
        vals[k][idx[k]] = v if k < 3 else v / RTD
    return None


def _misset_random(st, argv, i):
    if "rand" in argv[i + 1]:
        st.misset_flag = -1.0
        return True
    return False


def _misset(st, argv, i):
    st.misset_flag = 1.0
    st.misset = [c_atof(argv[i + k]) / RTD for k in (1, 2, 3)]


def _sizes(axes):
    return Set(tuple("sample_" + ax for ax in axes), _mm)


def _detector_abs(st, argv, i):
    text = argv[i + 1] if len(argv) > i + 1 else ""
    if "inf" in text or c_atof(text) == 0.0:
        st.cfg.detector_thick = 0.0
        st.cfg.detector_mu = 0.0
    else:
        st.cfg.detector_mu = 1.0 / (c_atof(text) * 1e-6)


def _pivot_choice(st, argv, i):
    text = argv[i + 1]
    if "sample" in text:
        st.cfg.detector_pivot = "sample"
        st.cfg.pivot_explicit = "sample"
    if "beam" in text:
        st.cfg.detector_pivot = "beam"
        st.cfg.pivot_explicit = "beam"


def _convention(name, pivot):
    return (Const("cfg", "convention", name), _pivot(pivot))


def _roi(st, argv, i):
    st.cfg.roi = tuple(c_atoi(argv[i + k]) for k in (1, 2, 3, 4))


def _printout_pixel(st, argv, i):
    st.run.printout_pixel = (c_atoi(argv[i + 1]), c_atoi(argv[i + 2]))


# ---------------------------------------------------------------- declarations

@dataclass(frozen=True)
class Rule:
    """One of the C program's argument tests.

    Attributes
    ----------
    order : int
        Position in C's list; in parity mode the rules matching a token
        fire in this order.
    patterns : tuple of str
        Substrings, any of which in a token matches (C's ``strstr``).
    action : tuple of callables
        Each called as ``action(state, argv, i)``; a true result, or
        ``stop``, ends the token (C's ``continue``).
    need : int
        C's guard: the rule fires only when more than ``need`` tokens
        follow the flag token (parity mode).
    length : int or None
        C's ``strlen`` test: the token must have this length.
    longer_than : int or None
        The token must be longer than this.
    exact : tuple of str
        Tokens that match as a whole (C's ``strcmp``), besides ``patterns``.
    stop : bool
        C's ``continue`` after the rule.
    spec_only : bool
        The rule does not exist in C: it fires in spec mode only.
    unlike : tuple of str
        nbnumba's own flags that contain one of ``patterns`` but are not
        this rule (``-hkl_column`` is not ``-hkl``), in both modes.
    """

    order: int
    patterns: tuple
    action: tuple = ()
    need: int = 1
    length: int | None = None
    longer_than: int | None = None
    exact: tuple = ()
    stop: bool = False
    spec_only: bool = False
    unlike: tuple = ()

    def matches(self, token: str) -> bool:
        """Whether C's test for this rule is true for ``token``."""
        if token in self.exact:
            return True
        if token in self.unlike:
            return False
        if not any(p in token for p in self.patterns):
            return False
        if self.length is not None and len(token) != self.length:
            return False
        return self.longer_than is None or len(token) > self.longer_than


def _r(order, patterns, *action, need=1, **kw) -> Rule:
    if isinstance(patterns, str):
        patterns = (patterns,)
    flat = []
    for a in action:
        flat.extend(a if isinstance(a, tuple) else (a,))
    return Rule(order, tuple(patterns), tuple(flat), need, **kw)


@dataclass(frozen=True)
class Flag:
    """One command-line flag.

    Attributes
    ----------
    name : str
        Canonical spelling, with its leading dash.
    nargs : int or str
        Number of values: an int, ``"misset"`` (``random`` or three numbers)
        or ``"cell"`` (one to six numbers).
    kind : str
        ``float``, ``int``, ``str``, ``choice`` or ``none`` (a switch).
    help : str
        One line for ``-h``, with units and default.
    aliases : tuple of str
        Other spellings the C program accepts.
    choices : tuple of str
        Allowed values for ``choice`` flags.
    group : str
        Heading in ``-h``.
    unit : str
        Unit of the values as the user gives them (``mm``, ``deg``, ...).
    rules : tuple of Rule
        The C argument rules this flag owns.
    positive : bool
        The value must be greater than zero (both modes).
    count : bool
        A count whose zero or negative value C reads as "not given": an
        error in spec mode, a warning in parity mode.
    allow_inf : bool
        An infinite value is meaningful (``-detector_abs inf``).
    """

    name: str
    nargs: object
    kind: str
    help: str
    aliases: tuple = ()
    choices: tuple = ()
    group: str = ""
    unit: str = ""
    rules: tuple = ()
    positive: bool = False
    count: bool = False
    allow_inf: bool = False

    @property
    def spellings(self) -> tuple:
        """The canonical name and every alias."""
        return (self.name,) + self.aliases

    @property
    def fields(self) -> tuple:
        """The :class:`~nbnumba.config.SimConfig` fields that this flag's own rules set from its values."""
        out = []
        for rule in self.rules:
            for action in rule.action:
                if isinstance(action, Set) and action.target == "cfg":
                    out.extend(a for a in action.attrs if a not in out)
                elif isinstance(action, Vec3) and action.attr not in out:
                    out.append(action.attr)
        return tuple(out)


def _f(name, nargs, kind, help, *aliases, rules=(), choices=(), group="", unit="", positive=False,
       count=False, allow_inf=False) -> Flag:
    if isinstance(rules, Rule):
        rules = (rules,)
    return Flag(name, nargs, kind, help, tuple(aliases), tuple(choices), group, unit, tuple(rules),
                positive, count, allow_inf)


G_XTAL, G_BEAM, G_DET, G_SAMP, G_OUT, G_RUN = (
    "Crystal", "Beam and source", "Detector", "Sampling", "Output files", "Run")

FLAGS: list[Flag] = [
    # ---- crystal
    _f("-cell", "cell", "float", "unit cell a b c (Angstrom) alpha beta gamma (deg); missing lengths copy a, angles default 90",
       rules=_r(4, "-cell", Call(_cell)), group=G_XTAL, unit="Angstrom, deg"),
    _f("-mat", 1, "str", "MOSFLM-style A matrix file (reciprocal vectors scaled by lambda)", "-matrix",
       rules=_r(90, "-mat", _run("matfile")), group=G_XTAL),
    _f("-hkl", 1, "str", "structure factors: text file of h k l F (P1, no symmetry applied), or an MTZ or "
       "mmCIF structure-factor file (expanded to P1 with its space group)",
       rules=_r(91, "-hkl", _run("hklfile"), unlike=("-hkl_column",)), group=G_XTAL),
    _f("-hkl_column", 1, "str", "amplitude column of an MTZ/mmCIF -hkl file (default: the first amplitude "
       "column, observed before calculated)", group=G_XTAL),
    _f("-pdb", 1, "str", "PDB or mmCIF model: structure factors computed to the resolution the detector "
       "reaches; its cell and space group unless -cell or -mat is given", group=G_XTAL),
    _f("-default_F", 1, "float", "structure factor of every reflection not in -hkl (default 0)",
       rules=_r(92, "-default_F", _cfg("default_F", c_atof)), group=G_XTAL, unit="electrons"),
    _f("-misset", "misset", "str", "crystal rotations about x, y, z (deg), or 'random'",
       rules=(_r(5, "-misset", Call(_misset_random)), _r(6, "-misset", Call(_misset), need=3)),
       group=G_XTAL, unit="deg"),
    _f("-misset_seed", 1, "int", "seed for -misset random (default: the noise seed)",
       rules=_r(122, "-misset_seed", _cfg("misset_seed", _neg_int)), group=G_XTAL),
    _f("-N", 1, "int", "unit cells along a, b and c (default 1)",
       rules=_r(3, (), Set(("Na", "Nb", "Nc"), c_atoi), exact=("-N",), stop=True), group=G_XTAL, unit="cells"),
    _f("-Na", 1, "int", "unit cells along a", rules=_r(0, "-Na", _cfg("Na", c_atoi), stop=True), group=G_XTAL,
       unit="cells"),
    _f("-Nb", 1, "int", "unit cells along b", rules=_r(1, "-Nb", _cfg("Nb", c_atoi), stop=True), group=G_XTAL,
       unit="cells"),
    _f("-Nc", 1, "int", "unit cells along c", rules=_r(2, "-Nc", _cfg("Nc", c_atoi), stop=True), group=G_XTAL,
       unit="cells"),
    _f("-xtalsize", 1, "float", "crystal size along all axes (mm); alternative to -N",
       "-xtal_size", "-samplesize", "-sample_size",
       rules=(_r(7, ("-samplesize", "-sample_size"), _sizes("xyz")), _r(11, ("-xtalsize", "-xtal_size"), _sizes("xyz"))),
       group=G_XTAL, unit="mm"),
    _f("-xtal_x", 1, "float", "crystal size along a (mm)", "-xtal_thick", "-sample_x", "-sample_thick",
       rules=(_r(8, ("-sample_thick", "-sample_x"), _sizes("x")), _r(12, ("-xtal_thick", "-xtal_x"), _sizes("x"))),
       group=G_XTAL, unit="mm"),
    _f("-xtal_y", 1, "float", "crystal size along b (mm)", "-xtal_width", "-sample_y", "-sample_width", "-width",
       rules=(_r(9, ("-sample_width", "-sample_y", "-width"), _sizes("y")),
              _r(13, ("-xtal_width", "-xtal_y", "-width"), _sizes("y"))),
       group=G_XTAL, unit="mm"),
    _f("-xtal_z", 1, "float", "crystal size along c (mm)", "-xtal_height", "-sample_z", "-sample_height", "-height",
       rules=(_r(10, ("-sample_heigh", "-sample_z", "-heigh"), _sizes("z")),
              _r(14, ("-xtal_heigh", "-xtal_z", "-heigh"), _sizes("z"))),
       group=G_XTAL, unit="mm"),
    _f("-square_xtal", 0, "none", "parallelepiped crystal: sincg lattice factor (default)",
       rules=_r(115, "-square_xtal", Const("cfg", "xtal_shape", "square"), need=0), group=G_XTAL),
    _f("-round_xtal", 0, "none", "ellipsoidal crystal (sinc3 lattice factor)",
       rules=_r(114, "-round_xtal", Const("cfg", "xtal_shape", "round"), need=0), group=G_XTAL),
    _f("-gauss_xtal", 0, "none", "Gaussian spots, no inter-Bragg maxima",
       rules=_r(116, "-gauss_xtal", Const("cfg", "xtal_shape", "gauss"), need=0), group=G_XTAL),
    _f("-tophat_spots", 0, "none", "flat-top spots clipped at the FWHM", "-binary_spots",
       rules=_r(117, ("-binary_spots", "-tophat_spots"), Const("cfg", "xtal_shape", "tophat"), need=0), group=G_XTAL),
    _f("-fudge", 1, "float", "spot-size fudge factor for round/gauss/tophat shapes (default 1)",
       rules=_r(118, "-fudge", _cfg("fudge", c_atof)), group=G_XTAL),
    _f("-mosaic", 1, "float", "isotropic mosaic spread (deg)", "-mosaic_spread", "-mosaicity", "-mosaici",
       rules=_r(70, ("-mosaici", "-mosaic_spr"), _cfg("mosaic_spread", _deg), exact=("-mosaic",)),
       group=G_XTAL, unit="deg"),
    _f("-mosaic_domains", 1, "int", "number of mosaic domains (default 10 when -mosaic > 0)", "-mosaic_dom",
       rules=_r(71, "-mosaic_dom", _cfg("mosaic_domains", c_atoi)), group=G_XTAL, count=True),
    _f("-mosaic_seed", 1, "int", "seed for mosaic domain orientations (default 12345678)",
       rules=_r(121, "-mosaic_seed", _cfg("mosaic_seed", _neg_int)), group=G_XTAL),
    _f("-interpolate", 0, "none", "tricubic interpolation of F between lattice points (default: on if any N <= 2)",
       rules=_r(112, "-interpolate", Const("cfg", "interpolate", 1), need=0), group=G_XTAL),
    _f("-nointerpolate", 0, "none", "nearest-neighbour structure factors",
       rules=_r(113, "-nointerpolate", Const("cfg", "interpolate", 0), need=0), group=G_XTAL),
    _f("-density", 1, "float", "sample density (g/cm^3); accepted, no effect on the image", "-sample_density",
       rules=_r(15, ("-density", "-sample_den")), group=G_XTAL, unit="g/cm^3"),
    _f("-MW", 1, "float", "molecular weight (g/mol); accepted, no effect on the image", "-molecular_weight",
       rules=_r(16, "-molec", exact=("-MW",)), group=G_XTAL, unit="g/mol"),
    # ---- spindle
    _f("-phi", 1, "float", "starting spindle angle (deg, default 0)",
       rules=_r(85, "-phi", _cfg("phi0", _deg), length=4), group=G_SAMP, unit="deg"),
    _f("-osc", 1, "float", "oscillation range (deg)", rules=_r(86, "-osc", _cfg("osc", _deg)), group=G_SAMP, unit="deg"),
    _f("-phistep", 1, "float", "spindle step (deg)",
       rules=_r(87, "-phistep", _cfg("phistep", _deg), length=8), group=G_SAMP, unit="deg"),
    _f("-phisteps", 1, "int", "number of spindle steps",
       rules=_r(88, "-phisteps", _cfg("phisteps", c_atoi)), group=G_SAMP, count=True),
    _f("-spindle_axis", 3, "float", "spindle rotation axis x y z (sets CUSTOM convention)",
       rules=_r(34, "-spindle_axis", Vec3("spindle_vector"), need=3), group=G_SAMP),
    _f("-oversample", 1, "int", "sub-pixels per pixel edge (default: auto from crystal size)",
       rules=_r(62, "-oversample", _cfg("oversample", c_atoi)), group=G_SAMP, count=True),
    _f("-oversample_thick", 0, "none", "recompute detector absorption per sub-pixel",
       rules=_r(59, "-oversample_thick", Const("cfg", "oversample_thick", True), need=0, stop=True), group=G_SAMP),
    _f("-oversample_polar", 0, "none", "recompute polarization per sub-pixel",
       rules=_r(60, "-oversample_polar", Const("cfg", "oversample_polar", True), need=0, stop=True), group=G_SAMP),
    _f("-oversample_omega", 0, "none", "recompute pixel solid angle per sub-pixel",
       rules=_r(61, "-oversample_omega", Const("cfg", "oversample_omega", True), need=0, stop=True), group=G_SAMP),
    _f("-roi", 4, "int", "render only fast xmin xmax, slow ymin ymax (pixels, inclusive)",
       rules=_r(63, "-roi", Call(_roi), need=4), group=G_SAMP, unit="pixels"),
    # ---- beam
    _f("-lambda", 1, "float", "wavelength (Angstrom, default 1)", "-wave", "-wavelength",
       rules=_r(64, ("-lambda", "-wave"), _cfg("lambda0", _angstrom)), group=G_BEAM, unit="Angstrom", positive=True),
    _f("-energy", 1, "float", "photon energy (eV); alternative to -lambda",
       rules=_r(65, "-energy", _cfg("lambda0", _energy)), group=G_BEAM, unit="eV", positive=True),
    _f("-dispersion", 1, "float", "spectral width delta-lambda/lambda (percent)",
       rules=_r(72, "-dispersion", _cfg("dispersion", _percent)), group=G_BEAM, unit="%"),
    _f("-dispsteps", 1, "int", "wavelengths across the dispersion",
       rules=_r(73, "-dispsteps", _cfg("dispsteps", c_atoi)), group=G_BEAM, count=True),
    _f("-divergence", 1, "float", "horizontal and vertical divergence range (mrad)",
       rules=_r(74, "-divergence", Set(("hdivrange", "vdivrange"), _mm)), group=G_BEAM, unit="mrad"),
    _f("-hdivrange", 1, "float", "horizontal divergence range (mrad)",
       rules=_r(75, "-hdivrange", _cfg("hdivrange", _mm)), group=G_BEAM, unit="mrad"),
    _f("-vdivrange", 1, "float", "vertical divergence range (mrad)",
       rules=_r(76, "-vdivrange", _cfg("vdivrange", _mm)), group=G_BEAM, unit="mrad"),
    _f("-hdivstep", 1, "float", "horizontal divergence step (mrad)",
       rules=_r(77, "-hdivstep", _cfg("hdivstep", _mm), length=9), group=G_BEAM, unit="mrad"),
    _f("-vdivstep", 1, "float", "vertical divergence step (mrad)",
       rules=_r(79, "-vdivstep", _cfg("vdivstep", _mm), length=9), group=G_BEAM, unit="mrad"),
    _f("-hdivsteps", 1, "int", "horizontal divergence points",
       rules=_r(78, "-hdivsteps", _cfg("hdivsteps", c_atoi)), group=G_BEAM, count=True),
    _f("-vdivsteps", 1, "int", "vertical divergence points",
       rules=_r(80, "-vdivsteps", _cfg("vdivsteps", c_atoi)), group=G_BEAM, count=True),
    _f("-divsteps", 1, "int", "divergence points in both directions",
       rules=_r(81, "-divsteps", Set(("hdivsteps", "vdivsteps"), c_atoi)), group=G_BEAM, count=True),
    _f("-round_div", 0, "none", "trim the divergence grid to an ellipse (default)",
       rules=_r(82, "-round_div", Const("cfg", "round_div", True), need=0), group=G_BEAM),
    _f("-square_div", 0, "none", "full rectangular divergence grid",
       rules=_r(83, "-square_div", Const("cfg", "round_div", False), need=0), group=G_BEAM),
    _f("-sourcefile", 1, "str", "text file of sources: X Y Z weight lambda(m) per line",
       rules=_r(99, "-sourcefile", _run("sourcefile")), group=G_BEAM),
    _f("-source_distance", 1, "float", "source distance (mm); accepted, no effect (as in C)", group=G_BEAM, unit="mm"),
    _f("-fluence", 1, "float", "incident fluence (photons/m^2, default 1.26e29)",
       rules=_r(66, "-fluence", _cfg("fluence", c_atof)), group=G_BEAM, unit="photons/m^2"),
    _f("-flux", 1, "float", "incident flux (photons/s); with -exposure and -beamsize sets fluence",
       rules=_r(67, "-flux", _cfg("flux", c_atof)), group=G_BEAM, unit="photons/s"),
    _f("-exposure", 1, "float", "exposure time (s, default 1)",
       rules=_r(68, "-exposure", _cfg("exposure", c_atof)), group=G_BEAM, unit="s", positive=True),
    _f("-beamsize", 1, "float", "beam size (mm, default 0.1); clips the sample",
       rules=_r(69, "-beamsize", _cfg("beamsize", _mm)), group=G_BEAM, unit="mm", positive=True),
    _f("-polar", 1, "float", "Kahn polarization factor (default 0: unpolarized)",
       rules=_r(57, "-polar", _cfg("polarization", c_atof), Const("cfg", "nopolar", False), length=6), group=G_BEAM),
    _f("-nopolar", 0, "none", "no polarization correction",
       rules=_r(58, "-nopolar", Const("cfg", "nopolar", True), need=0), group=G_BEAM),
    _f("-beam_vector", 3, "float", "beam direction x y z (sets CUSTOM convention)",
       rules=_r(32, "-beam_vector", Vec3("beam_vector"), need=3), group=G_BEAM),
    _f("-polar_vector", 3, "float", "E-vector of the beam x y z (sets CUSTOM convention)",
       rules=_r(33, "-polar_vector", Vec3("polar_vector"), need=3), group=G_BEAM),
    _f("-water", 1, "float", "thickness of water in the beam (um) for a flat background",
       rules=_r(123, "-water", _cfg("water_size", _per_million)), group=G_BEAM, unit="um"),
    _f("-dmin", 1, "float", "skip scattering beyond this resolution (Angstrom)",
       rules=_r(89, "-dmin", _cfg("dmin", _dmin)), group=G_BEAM, unit="Angstrom"),
    _f("-coherent", 0, "none", "accepted; no effect in nanoBragg", rules=_r(108, "-coherent", need=0), group=G_BEAM),
    # ---- detector
    _f("-distance", 1, "float", "sample to detector distance along the beam (mm, default 100); pivot beam",
       rules=_r(38, "-distance", _cfg("distance", _mm), _pivot("beam")), group=G_DET, unit="mm", positive=True),
    _f("-close_distance", 1, "float", "sample to detector plane along its normal (mm); pivot sample",
       rules=_r(39, "-close_distance", _cfg("close_distance", _mm), _force_pivot("sample")), group=G_DET, unit="mm",
       positive=True),
    _f("-pixel", 1, "float", "pixel size (mm, default 0.1)",
       rules=_r(55, "-pixel", _cfg("pixel_size", _mm)), group=G_DET, unit="mm", positive=True),
    _f("-detpixels", 1, "int", "pixels along both edges",
       rules=_r(51, "-detpixels", Set(("fpixels", "spixels"), c_atoi), length=10), group=G_DET, unit="pixels",
       count=True),
    _f("-detpixels_x", 1, "int", "pixels along the fast axis", "-detpixels_f",
       rules=_r(52, ("-detpixels_f", "-detpixels_x"), _cfg("fpixels", c_atoi)), group=G_DET, unit="pixels",
       count=True),
    _f("-detpixels_y", 1, "int", "pixels along the slow axis", "-detpixels_s",
       rules=_r(53, ("-detpixels_s", "-detpixels_y"), _cfg("spixels", c_atoi)), group=G_DET, unit="pixels",
       count=True),
    _f("-detsize", 1, "float", "detector edge (mm, default 102.4)",
       rules=_r(48, "-detsize", Set(("detsize_f", "detsize_s"), _mm), length=8), group=G_DET, unit="mm",
       positive=True),
    _f("-detsize_f", 1, "float", "detector size along fast (mm)",
       rules=_r(49, "-detsize_f", _cfg("detsize_f", _mm)), group=G_DET, unit="mm", positive=True),
    _f("-detsize_s", 1, "float", "detector size along slow (mm)",
       rules=_r(50, "-detsize_s", _cfg("detsize_s", _mm)), group=G_DET, unit="mm", positive=True),
    _f("-Xbeam", 1, "float", "direct-beam fast position (mm); pivot beam",
       rules=_r(17, "-Xbeam", _cfg("Xbeam", _mm), _force_pivot("beam")), group=G_DET, unit="mm"),
    _f("-Ybeam", 1, "float", "direct-beam slow position (mm); pivot beam",
       rules=_r(18, "-Ybeam", _cfg("Ybeam", _mm), _force_pivot("beam")), group=G_DET, unit="mm"),
    _f("-Xclose", 1, "float", "near-point fast position (mm); pivot sample",
       rules=_r(19, "-Xclose", _cfg("Xclose", _mm), _force_pivot("sample")), group=G_DET, unit="mm"),
    _f("-Yclose", 1, "float", "near-point slow position (mm); pivot sample",
       rules=_r(20, "-Yclose", _cfg("Yclose", _mm), _force_pivot("sample")), group=G_DET, unit="mm"),
    _f("-ORGX", 1, "float", "XDS origin fast (pixels); pivot sample",
       rules=_r(21, "-ORGX", _cfg("ORGX", c_atof), _force_pivot("sample")), group=G_DET, unit="pixels"),
    _f("-ORGY", 1, "float", "XDS origin slow (pixels); pivot sample",
       rules=_r(22, "-ORGY", _cfg("ORGY", c_atof), _force_pivot("sample")), group=G_DET, unit="pixels"),
    _f("-pivot", 1, "choice", "detector pivot: beam or sample", choices=("beam", "sample"),
       rules=_r(23, "-pivot", Call(_pivot_choice)), group=G_DET),
    _f("-mosflm", 0, "none", "MOSFLM convention (default)",
       rules=_r(24, "-mosflm", _convention("MOSFLM", "beam"), need=0), group=G_DET),
    _f("-xds", 0, "none", "XDS convention", rules=_r(25, "-xds", _convention("XDS", "sample"), need=0), group=G_DET),
    _f("-adxv", 0, "none", "ADXV convention", rules=_r(26, "-adxv", _convention("ADXV", "beam"), need=0), group=G_DET),
    _f("-denzo", 0, "none", "DENZO convention",
       rules=_r(27, "-denzo", _convention("DENZO", "beam"), need=0), group=G_DET),
    _f("-dials", 0, "none", "DIALS convention",
       rules=_r(28, "-dials", _convention("DIALS", "beam"), need=0), group=G_DET),
    _f("-fdet_vector", 3, "float", "fast axis x y z (sets CUSTOM convention)",
       rules=_r(29, "-fdet_vector", Vec3("fdet_vector"), need=3), group=G_DET),
    _f("-sdet_vector", 3, "float", "slow axis x y z (sets CUSTOM convention)",
       rules=_r(30, "-sdet_vector", Vec3("sdet_vector"), need=3), group=G_DET),
    _f("-odet_vector", 3, "float", "detector normal x y z (sets CUSTOM convention)",
       rules=_r(31, "-odet_vector", Vec3("odet_vector"), need=3), group=G_DET),
    _f("-twotheta_axis", 3, "float", "two-theta rotation axis x y z (sets CUSTOM convention)",
       rules=_r(35, "-twotheta_axis", Vec3("twotheta_axis"), need=3), group=G_DET),
    _f("-pix0_vector", 3, "float", "sample to corner of the first pixel x y z (m); C recomputes it, spec mode honours it",
       rules=_r(36, "-pix0_vector", Vec3("pix0_vector"), need=3), group=G_DET, unit="m"),
    _f("-pix0_vector_mm", 3, "float", "as -pix0_vector in mm (C reads the numbers as metres)",
       rules=_r(37, "-pix0_vector_mm", Vec3("pix0_vector", 1000.0), need=3, spec_only=True), group=G_DET, unit="mm"),
    _f("-detector_rotx", 1, "float", "detector rotation about x (deg)",
       rules=_r(45, "-detector_rotx", _cfg("detector_rotx", _deg)), group=G_DET, unit="deg"),
    _f("-detector_roty", 1, "float", "detector rotation about y (deg)",
       rules=_r(46, "-detector_roty", _cfg("detector_roty", _deg)), group=G_DET, unit="deg"),
    _f("-detector_rotz", 1, "float", "detector rotation about z (deg)",
       rules=_r(47, "-detector_rotz", _cfg("detector_rotz", _deg)), group=G_DET, unit="deg"),
    _f("-twotheta", 1, "float", "detector rotation about the two-theta axis (deg); pivot sample",
       rules=_r(44, "-twotheta", _cfg("detector_twotheta", _deg), _pivot("sample")), group=G_DET, unit="deg"),
    _f("-curved_det", 0, "none", "spherical detector: every pixel at the same distance",
       rules=_r(54, "-curved_det", Const("cfg", "curved_detector", True)), group=G_DET),
    _f("-point_pixel", 0, "none", "solid angle 1/R^2 only (no obliquity)",
       rules=_r(56, "-point_pixel", Const("cfg", "point_pixel", True), need=0), group=G_DET),
    _f("-detector_abs", 1, "float", "sensor attenuation depth (um), 'inf' or 0 for none",
       "-detector_absorb", "-detector_absorption",
       rules=_r(40, "-detector_abs", Call(_detector_abs), need=0), group=G_DET, unit="um", allow_inf=True),
    _f("-detector_thick", 1, "float", "sensor thickness (um)",
       rules=_r(41, "-detector_thick", _cfg("detector_thick", _um), need=0, length=15), group=G_DET, unit="um"),
    _f("-detector_thicksteps", 1, "int", "sensor layers", "-thicksteps",
       rules=(_r(42, "-detector_thicksteps", _cfg("detector_thicksteps", c_atoi), need=0),
              _r(43, "-thicksteps", _cfg("detector_thicksteps", c_atoi), need=0)), group=G_DET, count=True),
    _f("-mask", 1, "str", "SMV image: pixels that are 0 are skipped; header sets geometry", group=G_DET),
    _f("-img", 1, "str", "SMV image whose header sets the geometry",
       rules=_r(94, "-img", _run("imgfile")), group=G_DET),
    # ---- outputs
    _f("-floatfile", 1, "str", "raw float32 image (default floatimage.bin)", "-floatimage",
       rules=_r(100, ("-floatfile", "-floatimage"), _run("floatfile")), group=G_OUT),
    _f("-intfile", 1, "str", "SMV noiseless image (default intimage.img)", "-intimage",
       rules=_r(101, ("-intfile", "-intimage"), _run("intfile")), group=G_OUT),
    _f("-noisefile", 1, "str", "SMV image with Poisson noise (default noiseimage.img)", "-noiseimage",
       rules=_r(103, ("-noisefile", "-noiseimage"), _run("noisefile"), Const("run", "calculate_noise", True)),
       group=G_OUT),
    _f("-pgmfile", 1, "str", "8-bit PGM preview (default image.pgm)", "-pgmimage",
       rules=_r(102, ("-pgmfile", "-pgmimage"), _run("pgmfile"), Const("run", "write_pgm", True)), group=G_OUT),
    _f("-scale", 1, "float", "scale of the -intfile (default: 55000/max)",
       rules=_r(106, "-scale", _run("intfile_scale", c_atof)), group=G_OUT),
    _f("-adc", 1, "float", "ADC offset added to SMV pixels (default 40)",
       rules=_r(84, "-adc", _run("adc_offset", c_atof)), group=G_OUT, unit="ADU"),
    _f("-pgmscale", 1, "float", "scale of the PGM (default: 250/(5 rmsd))",
       rules=_r(107, "-pgmscale", _run("pgm_scale", c_atof), Const("run", "write_pgm", True)), group=G_OUT),
    _f("-nopgm", 0, "none", "do not write the PGM",
       rules=_r(105, "-nopgm", Const("run", "write_pgm", False), need=0), group=G_OUT),
    _f("-nonoise", 0, "none", "do not write the noise image",
       rules=_r(104, "-nonoise", Const("run", "calculate_noise", False), need=0), group=G_OUT),
    _f("-seed", 1, "int", "noise seed (default: from the clock)",
       rules=_r(120, "-seed", _run("seed", _neg_int)), group=G_OUT),
    _f("-dump", 1, "str", "structure-factor cache file (default Fdump.bin)",
       rules=_r(93, "-dump", _run("dumpfile")), group=G_OUT),
    # C scales the file's first column by a flag-specific factor, but nothing read reaches the image
    _f("-stol", 1, "str", "sin(theta)/lambda vs F file; read, no effect on the image (as C)",
       rules=_r(96, "-stol", _run("stolfile"), length=5), group=G_OUT),
    _f("-4stol", 1, "str", "as -stol with 4 sin(theta)/lambda",
       rules=_r(97, "-4stol", _run("stolfile"), length=6), group=G_OUT),
    _f("-Q", 1, "str", "as -stol with Q", rules=_r(98, "-Q", _run("stolfile"), length=2), group=G_OUT),
    _f("-stolout", 1, "str", "accepted; no effect (as C)", rules=_r(95, "-stolout", longer_than=7), group=G_OUT),
    _f("-printout", 0, "none", "print per-pixel details",
       rules=_r(109, "-printout", Const("run", "printout", True), need=0), group=G_OUT),
    _f("-printout_pixel", 2, "int", "print details of pixel fast slow",
       rules=_r(119, "-printout_pixel", Const("run", "printout", True), Call(_printout_pixel), need=2),
       group=G_OUT, unit="pixels"),
    _f("-progress", 0, "none", "show progress",
       rules=_r(111, "-progress", Const("run", "progress", True), need=0), group=G_OUT),
    _f("-noprogress", 0, "none", "no progress meter",
       rules=_r(110, "-noprogress", Const("run", "progress", False), need=0), group=G_OUT),
    # ---- nbnumba
    _f("-mode", 1, "choice", "spec (intended physics, default) or parity (reproduce the C program)",
       choices=("spec", "parity"), group=G_RUN),
    _f("-backend", 1, "choice", "cpu (default), cuda or auto", choices=("cpu", "cuda", "auto"), group=G_RUN),
    _f("-dtype", 1, "choice", "float64 (default) or float32 (spec mode only)", choices=("float64", "float32"),
       group=G_RUN),
    _f("-nthreads", 1, "int", "CPU threads (default: all)", group=G_RUN, positive=True),
    _f("-cbffile", 1, "str", "Pilatus-style miniCBF of photon counts (Poisson, or rounded with -nonoise; no ADC "
       "offset, no 16-bit clip), with the geometry in its header", group=G_OUT),
    _f("-h5file", 1, "str", "NeXus/HDF5 (NXmx) file of the same photon counts, with the geometry", "-nexusfile",
       group=G_OUT),
    _f("-tifffile", 1, "str", "the float image as a float32 TIFF", group=G_OUT),
    _f("-edffile", 1, "str", "the float image as a float32 EDF, with the geometry in its header", group=G_OUT),
    _f("-pngfile", 1, "str", "PNG preview to look at (dark spots on white, scaled by -png_scale)", group=G_OUT),
    _f("-png_scale", 1, "choice", "PNG preview scaling: sqrt (default), log or linear",
       choices=("sqrt", "log", "linear"), group=G_OUT),
    _f("-exact", 0, "none", "evaluate the lattice factor with C's own formula: bit-identical to C on the CPU, slower",
       group=G_RUN),
]

BY_NAME: dict[str, Flag] = {spelling: flag for flag in FLAGS for spelling in flag.spellings}

RULES: list[tuple[Rule, Flag]] = sorted(((rule, flag) for flag in FLAGS for rule in flag.rules),
                                        key=lambda pair: pair[0].order)
"""Every C argument rule with the flag that owns it, in C's order."""


@dataclass
class Occurrence:
    """A flag as it appeared on the command line."""

    flag: Flag
    spelling: str
    values: list
    position: int  # index of the flag token in argv


@dataclass
class Parsed:
    """The command line, split into flag occurrences (in order)."""

    argv: list
    items: list = field(default_factory=list)

    def last(self, name):
        """Values of the last occurrence of canonical flag ``name`` (or None)."""
        for occ in reversed(self.items):
            if occ.flag.name == name:
                return occ.values
        return None

    def has(self, name):
        """Whether canonical flag ``name`` occurs."""
        return any(occ.flag.name == name for occ in self.items)


_INT_RE = re.compile(r"[+-]?[0-9]+")
INT_MIN, INT_MAX = -(2**31), 2**31 - 1


def parse_number(text: str) -> float | None:
    """The value of ``text`` when all of it is a number as C's ``strtod`` reads it, else None.

    Decimal and hexadecimal floats, ``inf``/``infinity`` and ``nan`` are
    numbers (C accepts them); ``1_0``, ``1e`` or ``.5.`` are not, although
    C's ``atof`` would read a prefix of them.

    Parameters
    ----------
    text : str
        One command-line token.

    Returns
    -------
    float or None
    """
    value, end = c_strtod_prefix(text)
    if end == 0 or end != len(text):
        return None
    return value


def _is_number(text: str) -> bool:
    return parse_number(text) is not None


def _convert(flag: Flag, spelling: str, text: str):
    if flag.kind == "float":
        value = parse_number(text)
        if value is None:
            raise UsageError(f"{spelling}: expected a number, got {text!r}")
        if math.isnan(value) or (math.isinf(value) and not flag.allow_inf):
            raise UsageError(f"{spelling}: expected a finite number, got {text!r}")
    elif flag.kind == "int":
        if not _INT_RE.fullmatch(text):
            # C's atoi would read "1e3" as 1 and "2.5" as 2: refuse rather than guess
            raise UsageError(f"{spelling}: expected an integer, got {text!r}")
        value = int(text)
        if not INT_MIN <= value <= INT_MAX:
            raise UsageError(f"{spelling}: integer out of range, got {text!r}")
    elif flag.kind == "choice":
        if text not in flag.choices:
            raise UsageError(f"{spelling}: expected one of {', '.join(flag.choices)}, got {text!r}")
        value = text
    else:
        value = text
    if flag.positive and not value > 0:
        raise UsageError(f"{spelling}: must be a positive number, got {text!r}")
    return value


_MISSET_ANGLE = Flag("-misset", 3, "float", "")
_CELL_VALUE = Flag("-cell", 1, "float", "")


def suggest(token: str) -> str:
    """A ' (did you mean -x?)' hint for an unknown flag, or ''.

    Parameters
    ----------
    token : str
        The unknown flag.

    Returns
    -------
    str
    """
    close = difflib.get_close_matches(token, list(BY_NAME), n=1, cutoff=0.6)
    if not close:
        low = token.lower()
        close = [n for n in BY_NAME if n.lower() == low]
    return f" (did you mean {close[0]}?)" if close else ""


def _values(flag: Flag, token: str, rest: list) -> list:
    if flag.nargs == "misset":
        if rest and rest[0].startswith("rand"):
            return ["random"]
        if len(rest) < 3:
            raise UsageError(f"{token}: expected 'random' or three angles (deg)")
        return [_convert(_MISSET_ANGLE, token, t) for t in rest[:3]]
    if flag.nargs == "cell":
        values = []
        for t in rest[:6]:
            if not _is_number(t):
                break
            values.append(_convert(_CELL_VALUE, token, t))
        if not values:
            raise UsageError(f"{token}: expected a b c [alpha beta gamma] (Angstrom, deg)")
        if any(v <= 0 for v in values[:3]):
            raise UsageError(f"{token}: cell lengths must be positive, got {' '.join(rest[:len(values)])}")
        return values
    k = int(flag.nargs)
    if len(rest) < k:
        what = "a value" if k == 1 else f"{k} values"
        raise UsageError(f"{token}: expected {what}")
    return [_convert(flag, token, t) for t in rest[:k]]


def parse_argv(argv: list) -> Parsed:
    """Split a nanoBragg command line into flag occurrences.

    Parameters
    ----------
    argv : list of str
        Arguments, without the program name.

    Returns
    -------
    Parsed
        The flags in order, with their values converted to the flag's kind.

    Raises
    ------
    UsageError
        For an unknown flag, a missing value, a value of the wrong type, or
        a NaN or infinite number.
    """
    parsed = Parsed(argv=list(argv))
    i = 0
    n = len(argv)
    while i < n:
        token = argv[i]
        flag = BY_NAME.get(token)
        if flag is None:
            if token.startswith("--") and BY_NAME.get(token[1:]) is not None:
                flag = BY_NAME[token[1:]]
            elif token.startswith("-") and not _is_number(token):
                raise UsageError(f"unknown option {token}{suggest(token)}")
            else:
                raise UsageError(f"unexpected argument {token!r} (values must follow their flag)")
        values = _values(flag, token, argv[i + 1:])
        parsed.items.append(Occurrence(flag=flag, spelling=token, values=values, position=i))
        i += 1 + len(values)
    return parsed


def check_counts(parsed: Parsed, mode: str) -> None:
    """Zero or negative counts: an error in spec mode, a warning in parity mode.

    C reads a count below 1 (``-phisteps 0``, ``-detpixels -5``) as "not
    given" and applies its default; parity mode keeps that and says so.

    Parameters
    ----------
    parsed : Parsed
        The command line.
    mode : {'spec', 'parity'}
        The run's mode.

    Warns
    -----
    UserWarning
        In parity mode, one per such count.

    Raises
    ------
    UsageError
        In spec mode, naming the flag and the value.
    """
    for occ in parsed.items:
        if not occ.flag.count or occ.values[0] > 0:
            continue
        what = f"{occ.spelling} {occ.values[0]}"
        if mode == "parity":
            warnings.warn(f"{what}: a count below 1 means 'not given' (C's default applies)", UserWarning,
                          stacklevel=3)
        else:
            raise UsageError(f"{what}: must be at least 1")


def help_text() -> str:
    """Every flag, grouped, with units, defaults and the SimConfig fields it sets.

    Returns
    -------
    str
        The text of ``nanoBragg -h`` after its usage lines.
    """
    lines = []
    groups: dict[str, list[Flag]] = {}
    for flag in FLAGS:
        groups.setdefault(flag.group, []).append(flag)
    for group, flags in groups.items():
        lines.append(f"{group}:")
        for flag in flags:
            if flag.nargs == "cell":
                meta = " a b c [al be ga]"
            elif flag.nargs == "misset":
                meta = " rx ry rz|random"
            elif flag.nargs == 0:
                meta = ""
            elif flag.kind == "choice":
                meta = " " + "|".join(flag.choices)
            else:
                meta = " " + " ".join(["V"] * int(flag.nargs))
            unit = f" [{flag.unit}]" if flag.unit else ""
            sets = f"  (SimConfig.{', '.join(flag.fields)})" if flag.fields else ""
            lines.append(f"  {', '.join(flag.spellings)}{meta}{unit}{sets}\n      {flag.help}")
        lines.append("")
    lines += [
        "Environment:",
        "  NBNUMBA_CPU_KERNEL=auto|native|jit",
        "      CPU kernel: the cached native library (default where a C compiler can link it) or Numba's JIT",
        "  NBNUMBA_CACHE_DIR",
        "      folder of the native kernel libraries (default ~/.cache/nbnumba)",
        "  NUMBA_NUM_THREADS",
        "      CPU threads when -nthreads is not given (default: all usable cores)",
        "  NBNUMBA_SERVER=auto|off|require",
        "      run on this user's command server when one is running (`nbnumba server start`; default auto),",
        "      never (off), or fail when none can take the command (require)",
        "",
    ]
    return "\n".join(lines)
