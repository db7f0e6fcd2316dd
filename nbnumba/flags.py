"""The nanoBragg command-line vocabulary.

One table, :data:`FLAGS`, lists every flag the C program understands (and
the few that nbnumba adds), with its spellings, how many values it takes,
their type, units and default.  The command-line front end uses it to parse
and to print help; :mod:`nbnumba.cargs` uses the parsed occurrences to build
a :class:`~nbnumba.config.SimConfig`.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from .errors import UsageError


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
    """

    name: str
    nargs: object
    kind: str
    help: str
    aliases: tuple = ()
    choices: tuple = ()
    group: str = ""


def _f(name, nargs, kind, help, *aliases, choices=(), group=""):
    return Flag(name, nargs, kind, help, tuple(aliases), tuple(choices), group)


G_XTAL, G_BEAM, G_DET, G_SAMP, G_OUT, G_RUN = (
    "Crystal", "Beam and source", "Detector", "Sampling", "Output files", "Run")

FLAGS: list[Flag] = [
    # ---- crystal
    _f("-cell", "cell", "float", "unit cell a b c (Angstrom) alpha beta gamma (deg); missing lengths copy a, angles default 90", group=G_XTAL),
    _f("-mat", 1, "str", "MOSFLM-style A matrix file (reciprocal vectors scaled by lambda)", "-matrix", group=G_XTAL),
    _f("-hkl", 1, "str", "text file of h k l F (P1, no symmetry applied)", group=G_XTAL),
    _f("-default_F", 1, "float", "structure factor of every reflection not in -hkl (default 0)", group=G_XTAL),
    _f("-misset", "misset", "str", "crystal rotations about x, y, z (deg), or 'random'", group=G_XTAL),
    _f("-misset_seed", 1, "int", "seed for -misset random (default: the noise seed)", group=G_XTAL),
    _f("-N", 1, "int", "unit cells along a, b and c (default 1)", group=G_XTAL),
    _f("-Na", 1, "int", "unit cells along a", group=G_XTAL),
    _f("-Nb", 1, "int", "unit cells along b", group=G_XTAL),
    _f("-Nc", 1, "int", "unit cells along c", group=G_XTAL),
    _f("-xtalsize", 1, "float", "crystal size along all axes (mm); alternative to -N", "-xtal_size", "-samplesize", "-sample_size", group=G_XTAL),
    _f("-xtal_x", 1, "float", "crystal size along a (mm)", "-xtal_thick", "-sample_x", "-sample_thick", group=G_XTAL),
    _f("-xtal_y", 1, "float", "crystal size along b (mm)", "-xtal_width", "-sample_y", "-sample_width", "-width", group=G_XTAL),
    _f("-xtal_z", 1, "float", "crystal size along c (mm)", "-xtal_height", "-sample_z", "-sample_height", "-height", group=G_XTAL),
    _f("-square_xtal", 0, "none", "parallelepiped crystal: sincg lattice factor (default)", group=G_XTAL),
    _f("-round_xtal", 0, "none", "ellipsoidal crystal (sinc3 lattice factor)", group=G_XTAL),
    _f("-gauss_xtal", 0, "none", "Gaussian spots, no inter-Bragg maxima", group=G_XTAL),
    _f("-tophat_spots", 0, "none", "flat-top spots clipped at the FWHM", "-binary_spots", group=G_XTAL),
    _f("-fudge", 1, "float", "spot-size fudge factor for round/gauss/tophat shapes (default 1)", group=G_XTAL),
    _f("-mosaic", 1, "float", "isotropic mosaic spread (deg)", "-mosaic_spread", "-mosaicity", "-mosaici", group=G_XTAL),
    _f("-mosaic_domains", 1, "int", "number of mosaic domains (default 10 when -mosaic > 0)", "-mosaic_dom", group=G_XTAL),
    _f("-mosaic_seed", 1, "int", "seed for mosaic domain orientations (default 12345678)", group=G_XTAL),
    _f("-interpolate", 0, "none", "tricubic interpolation of F between lattice points (default: on if any N <= 2)", group=G_XTAL),
    _f("-nointerpolate", 0, "none", "nearest-neighbour structure factors", group=G_XTAL),
    _f("-density", 1, "float", "sample density (g/cm^3); accepted, no effect on the image", "-sample_density", group=G_XTAL),
    _f("-MW", 1, "float", "molecular weight (g/mol); accepted, no effect on the image", "-molecular_weight", group=G_XTAL),
    # ---- spindle
    _f("-phi", 1, "float", "starting spindle angle (deg, default 0)", group=G_SAMP),
    _f("-osc", 1, "float", "oscillation range (deg)", group=G_SAMP),
    _f("-phistep", 1, "float", "spindle step (deg)", group=G_SAMP),
    _f("-phisteps", 1, "int", "number of spindle steps", group=G_SAMP),
    _f("-spindle_axis", 3, "float", "spindle rotation axis x y z (sets CUSTOM convention)", group=G_SAMP),
    _f("-oversample", 1, "int", "sub-pixels per pixel edge (default: auto from crystal size)", group=G_SAMP),
    _f("-oversample_thick", 0, "none", "recompute detector absorption per sub-pixel", group=G_SAMP),
    _f("-oversample_polar", 0, "none", "recompute polarization per sub-pixel", group=G_SAMP),
    _f("-oversample_omega", 0, "none", "recompute pixel solid angle per sub-pixel", group=G_SAMP),
    _f("-roi", 4, "int", "render only fast xmin xmax, slow ymin ymax (pixels, inclusive)", group=G_SAMP),
    # ---- beam
    _f("-lambda", 1, "float", "wavelength (Angstrom, default 1)", "-wave", "-wavelength", group=G_BEAM),
    _f("-energy", 1, "float", "photon energy (eV); alternative to -lambda", group=G_BEAM),
    _f("-dispersion", 1, "float", "spectral width delta-lambda/lambda (percent)", group=G_BEAM),
    _f("-dispsteps", 1, "int", "wavelengths across the dispersion", group=G_BEAM),
    _f("-divergence", 1, "float", "horizontal and vertical divergence range (mrad)", group=G_BEAM),
    _f("-hdivrange", 1, "float", "horizontal divergence range (mrad)", group=G_BEAM),
    _f("-vdivrange", 1, "float", "vertical divergence range (mrad)", group=G_BEAM),
    _f("-hdivstep", 1, "float", "horizontal divergence step (mrad)", group=G_BEAM),
    _f("-vdivstep", 1, "float", "vertical divergence step (mrad)", group=G_BEAM),
    _f("-hdivsteps", 1, "int", "horizontal divergence points", group=G_BEAM),
    _f("-vdivsteps", 1, "int", "vertical divergence points", group=G_BEAM),
    _f("-divsteps", 1, "int", "divergence points in both directions", group=G_BEAM),
    _f("-round_div", 0, "none", "trim the divergence grid to an ellipse (default)", group=G_BEAM),
    _f("-square_div", 0, "none", "full rectangular divergence grid", group=G_BEAM),
    _f("-sourcefile", 1, "str", "text file of sources: X Y Z weight lambda(m) per line", group=G_BEAM),
    _f("-source_distance", 1, "float", "source distance (mm); accepted, no effect (as in C)", group=G_BEAM),
    _f("-fluence", 1, "float", "incident fluence (photons/m^2, default 1.26e29)", group=G_BEAM),
    _f("-flux", 1, "float", "incident flux (photons/s); with -exposure and -beamsize sets fluence", group=G_BEAM),
    _f("-exposure", 1, "float", "exposure time (s, default 1)", group=G_BEAM),
    _f("-beamsize", 1, "float", "beam size (mm, default 0.1); clips the sample", group=G_BEAM),
    _f("-polar", 1, "float", "Kahn polarization factor (default 0: unpolarized)", group=G_BEAM),
    _f("-nopolar", 0, "none", "no polarization correction", group=G_BEAM),
    _f("-beam_vector", 3, "float", "beam direction x y z (sets CUSTOM convention)", group=G_BEAM),
    _f("-polar_vector", 3, "float", "E-vector of the beam x y z (sets CUSTOM convention)", group=G_BEAM),
    _f("-water", 1, "float", "thickness of water in the beam (um) for a flat background", group=G_BEAM),
    _f("-dmin", 1, "float", "skip scattering beyond this resolution (Angstrom)", group=G_BEAM),
    _f("-coherent", 0, "none", "accepted; no effect in nanoBragg", group=G_BEAM),
    # ---- detector
    _f("-distance", 1, "float", "sample to detector distance along the beam (mm, default 100); pivot beam", group=G_DET),
    _f("-close_distance", 1, "float", "sample to detector plane along its normal (mm); pivot sample", group=G_DET),
    _f("-pixel", 1, "float", "pixel size (mm, default 0.1)", group=G_DET),
    _f("-detpixels", 1, "int", "pixels along both edges", group=G_DET),
    _f("-detpixels_x", 1, "int", "pixels along the fast axis", "-detpixels_f", group=G_DET),
    _f("-detpixels_y", 1, "int", "pixels along the slow axis", "-detpixels_s", group=G_DET),
    _f("-detsize", 1, "float", "detector edge (mm, default 102.4)", group=G_DET),
    _f("-detsize_f", 1, "float", "detector size along fast (mm)", group=G_DET),
    _f("-detsize_s", 1, "float", "detector size along slow (mm)", group=G_DET),
    _f("-Xbeam", 1, "float", "direct-beam fast position (mm); pivot beam", group=G_DET),
    _f("-Ybeam", 1, "float", "direct-beam slow position (mm); pivot beam", group=G_DET),
    _f("-Xclose", 1, "float", "near-point fast position (mm); pivot sample", group=G_DET),
    _f("-Yclose", 1, "float", "near-point slow position (mm); pivot sample", group=G_DET),
    _f("-ORGX", 1, "float", "XDS origin fast (pixels); pivot sample", group=G_DET),
    _f("-ORGY", 1, "float", "XDS origin slow (pixels); pivot sample", group=G_DET),
    _f("-pivot", 1, "choice", "detector pivot: beam or sample", choices=("beam", "sample"), group=G_DET),
    _f("-mosflm", 0, "none", "MOSFLM convention (default)", group=G_DET),
    _f("-xds", 0, "none", "XDS convention", group=G_DET),
    _f("-adxv", 0, "none", "ADXV convention", group=G_DET),
    _f("-denzo", 0, "none", "DENZO convention", group=G_DET),
    _f("-dials", 0, "none", "DIALS convention", group=G_DET),
    _f("-fdet_vector", 3, "float", "fast axis x y z (sets CUSTOM convention)", group=G_DET),
    _f("-sdet_vector", 3, "float", "slow axis x y z (sets CUSTOM convention)", group=G_DET),
    _f("-odet_vector", 3, "float", "detector normal x y z (sets CUSTOM convention)", group=G_DET),
    _f("-twotheta_axis", 3, "float", "two-theta rotation axis x y z (sets CUSTOM convention)", group=G_DET),
    _f("-pix0_vector", 3, "float", "sample to corner of the first pixel x y z (m); C recomputes it, spec mode honours it", group=G_DET),
    _f("-pix0_vector_mm", 3, "float", "as -pix0_vector in mm (C reads the numbers as metres)", group=G_DET),
    _f("-detector_rotx", 1, "float", "detector rotation about x (deg)", group=G_DET),
    _f("-detector_roty", 1, "float", "detector rotation about y (deg)", group=G_DET),
    _f("-detector_rotz", 1, "float", "detector rotation about z (deg)", group=G_DET),
    _f("-twotheta", 1, "float", "detector rotation about the two-theta axis (deg); pivot sample", group=G_DET),
    _f("-curved_det", 0, "none", "spherical detector: every pixel at the same distance", group=G_DET),
    _f("-point_pixel", 0, "none", "solid angle 1/R^2 only (no obliquity)", group=G_DET),
    _f("-detector_abs", 1, "str", "sensor attenuation depth (um), 'inf' or 0 for none", "-detector_absorb", "-detector_absorption", group=G_DET),
    _f("-detector_thick", 1, "float", "sensor thickness (um)", group=G_DET),
    _f("-detector_thicksteps", 1, "int", "sensor layers", "-thicksteps", group=G_DET),
    _f("-mask", 1, "str", "SMV image: pixels that are 0 are skipped; header sets geometry", group=G_DET),
    _f("-img", 1, "str", "SMV image whose header sets the geometry", group=G_DET),
    # ---- outputs
    _f("-floatfile", 1, "str", "raw float32 image (default floatimage.bin)", "-floatimage", group=G_OUT),
    _f("-intfile", 1, "str", "SMV noiseless image (default intimage.img)", "-intimage", group=G_OUT),
    _f("-noisefile", 1, "str", "SMV image with Poisson noise (default noiseimage.img)", "-noiseimage", group=G_OUT),
    _f("-pgmfile", 1, "str", "8-bit PGM preview (default image.pgm)", "-pgmimage", group=G_OUT),
    _f("-scale", 1, "float", "scale of the -intfile (default: 55000/max)", group=G_OUT),
    _f("-adc", 1, "float", "ADC offset added to SMV pixels (default 40)", group=G_OUT),
    _f("-pgmscale", 1, "float", "scale of the PGM (default: 250/(5 rmsd))", group=G_OUT),
    _f("-nopgm", 0, "none", "do not write the PGM", group=G_OUT),
    _f("-nonoise", 0, "none", "do not write the noise image", group=G_OUT),
    _f("-seed", 1, "int", "noise seed (default: from the clock)", group=G_OUT),
    _f("-dump", 1, "str", "structure-factor cache file (default Fdump.bin)", group=G_OUT),
    _f("-stol", 1, "str", "sin(theta)/lambda vs F file; read, no effect on the image (as C)", group=G_OUT),
    _f("-4stol", 1, "str", "as -stol with 4 sin(theta)/lambda", group=G_OUT),
    _f("-Q", 1, "str", "as -stol with Q", group=G_OUT),
    _f("-stolout", 1, "str", "accepted; no effect (as C)", group=G_OUT),
    _f("-printout", 0, "none", "print per-pixel details", group=G_OUT),
    _f("-printout_pixel", 2, "int", "print details of pixel fast slow", group=G_OUT),
    _f("-progress", 0, "none", "show progress", group=G_OUT),
    _f("-noprogress", 0, "none", "no progress meter", group=G_OUT),
    # ---- nbnumba
    _f("-mode", 1, "choice", "spec (intended physics, default) or parity (reproduce the C program)", choices=("spec", "parity"), group=G_RUN),
    _f("-backend", 1, "choice", "cpu (default), cuda or auto", choices=("cpu", "cuda", "auto"), group=G_RUN),
    _f("-dtype", 1, "choice", "float64 (default) or float32 (spec mode only)", choices=("float64", "float32"), group=G_RUN),
    _f("-nthreads", 1, "int", "CPU threads (default: all)", group=G_RUN),
    _f("-exact", 0, "none", "evaluate the lattice factor with C's own formula: bit-identical to C on the CPU, slower", group=G_RUN),
]

BY_NAME: dict[str, Flag] = {}
for _flag in FLAGS:
    for _spelling in (_flag.name,) + _flag.aliases:
        BY_NAME[_spelling] = _flag


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
        return any(occ.flag.name == name for occ in self.items)


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


# flags whose value must be a positive number (zero or less has no geometry)
POSITIVE = frozenset({"-lambda", "-energy", "-pixel", "-distance", "-close_distance", "-detsize",
                      "-detsize_f", "-detsize_s", "-beamsize", "-exposure", "-nthreads"})


def _convert(flag: Flag, spelling: str, text: str):
    value = _convert_type(flag, spelling, text)
    if flag.name in POSITIVE and not value > 0:
        raise UsageError(f"{spelling}: must be a positive number, got {text!r}")
    return value


def _convert_type(flag: Flag, spelling: str, text: str):
    if flag.kind == "float":
        try:
            return float(text)
        except ValueError:
            raise UsageError(f"{spelling}: expected a number, got {text!r}") from None
    if flag.kind == "int":
        try:
            return int(text)
        except ValueError:
            # C's atoi would read "1e3" as 1 and "2.5" as 2: refuse rather than guess
            raise UsageError(f"{spelling}: expected an integer, got {text!r}") from None
    if flag.kind == "choice":
        if text not in flag.choices:
            raise UsageError(f"{spelling}: expected one of {', '.join(flag.choices)}, got {text!r}")
        return text
    return text


def suggest(token: str) -> str:
    """A ' (did you mean -x?)' hint for an unknown flag, or ''."""
    close = difflib.get_close_matches(token, list(BY_NAME), n=1, cutoff=0.6)
    if not close:
        low = token.lower()
        close = [n for n in BY_NAME if n.lower() == low]
    return f" (did you mean {close[0]}?)" if close else ""


def parse_argv(argv: list) -> Parsed:
    """Split a nanoBragg command line into flag occurrences.

    Raises
    ------
    UsageError
        For an unknown flag, a missing value or a value of the wrong type.
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
        rest = argv[i + 1:]
        if flag.nargs == "misset":
            if rest and rest[0].startswith("rand"):
                values = ["random"]
            else:
                if len(rest) < 3:
                    raise UsageError(f"{token}: expected 'random' or three angles (deg)")
                values = [_convert(Flag("-misset", 3, "float", ""), token, t) for t in rest[:3]]
        elif flag.nargs == "cell":
            values = []
            for t in rest[:6]:
                if not _is_number(t):
                    break
                values.append(float(t))
            if not values:
                raise UsageError(f"{token}: expected a b c [alpha beta gamma] (Angstrom, deg)")
            if any(v <= 0 for v in values[:3]):
                raise UsageError(f"{token}: cell lengths must be positive, got {' '.join(rest[:len(values)])}")
        else:
            k = int(flag.nargs)
            if len(rest) < k:
                what = "a value" if k == 1 else f"{k} values"
                raise UsageError(f"{token}: expected {what}")
            values = [_convert(flag, token, t) for t in rest[:k]]
        parsed.items.append(Occurrence(flag=flag, spelling=token, values=values, position=i))
        i += 1 + len(values)
    return parsed


def help_text() -> str:
    """Every flag, grouped, with units and defaults."""
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
            else:
                meta = " " + " ".join(["V"] * int(flag.nargs))
            names = ", ".join((flag.name,) + flag.aliases)
            lines.append(f"  {names}{meta}\n      {flag.help}")
        lines.append("")
    lines += [
        "Environment:",
        "  NBNUMBA_CPU_KERNEL=auto|native|jit",
        "      CPU kernel: the cached native library (default where a C compiler can link it) or Numba's JIT",
        "  NBNUMBA_CACHE_DIR",
        "      folder of the native kernel libraries (default ~/.cache/nbnumba)",
        "  NUMBA_NUM_THREADS",
        "      CPU threads when -nthreads is not given (default: all usable cores)",
        "",
    ]
    return "\n".join(lines)
