"""Build a :class:`~nbnumba.config.SimConfig` from a nanoBragg command line.

The C program reads its arguments with substring tests (``strstr``): every
token is compared with every option pattern, in a fixed order, and each
pattern found inside the token takes effect.  A few tokens therefore do more
than their name says (``-twotheta_axis`` also sets ``-twotheta``;
``-misset_seed N`` also reads the next three tokens as misset angles;
``-pix0_vector_mm`` is read by the ``-pix0_vector`` rule, in metres).

That pattern list is declared with the flags, in :data:`nbnumba.flags.FLAGS`
(each flag owns its rules; :data:`nbnumba.flags.RULES` puts them in C's
order).  :func:`interpret` applies it: in parity mode every rule whose
pattern occurs in a flag token fires, in C's order, exactly as C does; in
spec mode a flag fires only the rules that belong to it.
"""

from __future__ import annotations

import functools
import math
import os
import time
from dataclasses import dataclass, field

import numpy as np

from .config import SimConfig
from .errors import InputFileError, UsageError
from .flags import RULES, Parsed, check_counts, parse_argv
from .io.cfmt import c_atof, c_atoi

RTD = 180.0 * (1.0 / math.pi)

__all__ = ["RunOptions", "apply_header", "c_atof", "c_atoi", "config_from_args", "interpret", "load_inputs",
           "mode_of"]


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
    hkl_column: str | None = None
    pdbfile: str | None = None
    cbffile: str | None = None
    h5file: str | None = None
    tifffile: str | None = None
    edffile: str | None = None
    pngfile: str | None = None
    png_scale: str = "sqrt"
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


@functools.lru_cache(maxsize=1024)
def _parity_rules(token: str) -> tuple:
    """The rules (with their flags), in C's order, whose test is true for ``token`` in parity mode."""
    return tuple((rule, owner) for rule, owner in RULES if not rule.spec_only and rule.matches(token))


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
        for rule, owner in (_parity_rules(token) if parity else RULES):
            if parity:
                # C's "enough arguments follow" guard; in spec mode the parser
                # has already checked the values
                if rule.need and not argc > i + rule.need:
                    continue
            elif owner is not occ.flag:
                continue
            stop = False
            for action in rule.action:
                stop = bool(action(st, argv, i)) or stop
            if stop or rule.stop:
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
    for name, attr in (("-backend", "backend"), ("-dtype", "dtype"), ("-nthreads", "nthreads"),
                       ("-hkl_column", "hkl_column"), ("-pdb", "pdbfile"), ("-cbffile", "cbffile"),
                       ("-h5file", "h5file"), ("-tifffile", "tifffile"), ("-edffile", "edffile"),
                       ("-pngfile", "pngfile"), ("-png_scale", "png_scale")):
        vals = parsed.last(name)
        if vals is not None:
            setattr(run, attr, vals[0])
    return cfg, run, st


def _is_reflection_file(path) -> bool:
    from .io.reflections import is_reflection_file

    return is_reflection_file(path)


def _read_structure_factors(cfg: SimConfig, run: RunOptions):
    """The -hkl file: C's text list, or an MTZ/mmCIF file expanded to P1."""
    if not _is_reflection_file(run.hklfile):
        from .io.hkl import read_hkl

        return read_hkl(run.hklfile, default_F=cfg.default_F, mode=cfg.mode)
    from .io.reflections import expand_to_p1, grid_from_reflections, read_reflection_file

    refl = read_reflection_file(run.hklfile, column=run.hkl_column)
    p1 = expand_to_p1(refl)
    run.notes.append(f"read {len(refl)} reflections in {refl.spacegroup} from {refl.source}; "
                     f"{len(p1)} after expansion to P1 with symmetry and Friedel mates")
    return grid_from_reflections(p1, default_F=cfg.default_F)


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


def config_from_args(argv: list, mode: str | None = None, load_files: bool = True,
                     fdump_cache: bool = False):
    """Parse a nanoBragg command line into ``(SimConfig, RunOptions)``.

    Parameters
    ----------
    argv : list of str
        Arguments, without the program name.
    mode : {'spec', 'parity'}, optional
        Overrides any ``-mode`` flag.
    load_files : bool
        Read the input files it names (HKL, matrix, sources, mask, header).
    fdump_cache : bool
        Without ``-hkl``, read structure factors from the ``Fdump.bin``
        cache (``-dump`` names it) when that file exists, as the C program
        does.  The ``nanoBragg`` command turns this on; the Python API
        leaves it off, so a stray cache file is never read by surprise.

    Raises
    ------
    UsageError, InputFileError, ConfigError
    """
    parsed = parse_argv(argv)
    mode = mode or mode_of(parsed)
    check_counts(parsed, mode)
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
        load_inputs(cfg, run, fdump_cache=fdump_cache)
    return cfg, run


def load_inputs(cfg: SimConfig, run: RunOptions, fdump_cache: bool = False) -> None:
    """Read the HKL (or Fdump), matrix, model and source files a run names."""
    if run.matfile is not None:
        from .io.matrix import read_mosflm_matrix

        if not os.path.exists(run.matfile):
            raise InputFileError(f"{run.matfile}: no such matrix file")
        cfg.a_matrix = read_mosflm_matrix(run.matfile)
        cfg.a_matrix_lambda = cfg.lambda0  # the file is scaled by the run's wavelength
    if run.pdbfile is not None and run.hklfile is not None:
        raise UsageError("-pdb and -hkl both give structure factors: give one")
    if run.hkl_column is not None and (run.hklfile is None or not _is_reflection_file(run.hklfile)):
        raise UsageError("-hkl_column selects a column of an MTZ or mmCIF -hkl file")
    if run.hklfile is not None:
        cfg.hkl = _read_structure_factors(cfg, run)
    elif run.pdbfile is not None:
        from .models import model_grid

        cfg.hkl, note = model_grid(cfg, run.pdbfile)
        run.notes.append(note)
    elif fdump_cache and os.path.exists(run.dumpfile):
        from .io.hkl import read_fdump

        run.notes.append(f"reading Fs from {run.dumpfile}")
        cfg.hkl = read_fdump(run.dumpfile)
    if cfg.hkl is None and cfg.default_F == 0.0:
        cache = f" (no {run.dumpfile} cache in the working directory either)" if fdump_cache else ""
        raise InputFileError(f"no structure factors: give -hkl FILE, -pdb MODEL or -default_F F{cache}")
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
