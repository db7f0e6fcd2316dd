"""Compare images, and nbnumba against the C nanoBragg on one command line.

Three uses, behind the ``nbnumba compare`` command:

* :func:`compare_files`: two float images (raw float32, sizes given) or two
  SMV images (sizes from the headers): max absolute and relative
  difference, the fraction of pixels within 1e-6 (relative), correlation,
  and for SMV files the header keys that differ.
* :func:`run_against_c`: run the C program and ``nanoBragg -mode parity``
  on the same command line, each in its own temporary folder (input files
  copied into both), and compare the float images, the SMV images and
  their headers.
* :func:`run_golden`: the golden corpus, via :func:`nbnumba.golden.run_case`.

The verdict uses the golden-corpus tolerance: at least 99.9% of the float
pixels within 1e-6 relative and none beyond 1e-3; SMV images as
:func:`nbnumba.golden.compare_smv` judges them.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tempfile
import time
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import ConfigError, InputFileError, NbnumbaError, UsageError
from .golden import FLOAT_ATOL, FLOAT_FRACTION, FLOAT_RTOL, FLOAT_RTOL_MAX, compare_smv

__all__ = [
    "CRunComparison",
    "ImageComparison",
    "compare_files",
    "compare_images",
    "input_files",
    "load_image",
    "run_against_c",
    "run_golden",
]

SMV_SUFFIXES = (".img", ".smv")
# flags naming files the program reads
INPUT_FLAGS = ("-hkl", "-mat", "-sourcefile", "-mask", "-img", "-stol")


@dataclass
class ImageComparison:
    """Pixel statistics of ``a`` against the reference ``b``.

    Attributes
    ----------
    shape : tuple
        Image shape (slow, fast).
    max_abs : float
        Largest ``|a - b|``.
    max_rel : float
        Largest ``|a - b| / |b|`` (pixels where ``|b| <= 1e-30`` use
        ``|a - b| / 1e-30``).
    frac_within : float
        Fraction of pixels with relative difference <= ``rtol``.
    correlation : float
        Pearson correlation (NaN when either image is constant).
    worst : tuple
        (slow, fast) index of the largest relative difference.
    n_differ : int
        Pixels that are not identical.
    ok : bool
        Within the golden tolerance.
    """

    shape: tuple
    max_abs: float
    max_rel: float
    frac_within: float
    correlation: float
    worst: tuple
    n_differ: int
    ok: bool
    rtol: float = FLOAT_RTOL

    def summary(self) -> str:
        """One line: the statistics and the verdict."""
        return (f"max abs diff {self.max_abs:.6g}, max rel diff {self.max_rel:.6g} at {self.worst}, "
                f"{self.frac_within * 100:.4f}% within {self.rtol:g}, correlation {self.correlation:.9f}, "
                f"{self.n_differ} pixels differ -> {'OK' if self.ok else 'DIFFERENT'}")


def compare_images(a, b, rtol: float = FLOAT_RTOL) -> ImageComparison:
    """Compare image ``a`` with reference ``b`` (same shape).

    Parameters
    ----------
    a, b : array_like
        Images; ``b`` is the reference for relative differences.
    rtol : float
        Relative tolerance for :attr:`ImageComparison.frac_within`.

    Returns
    -------
    ImageComparison

    Raises
    ------
    ConfigError
        When the shapes differ.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ConfigError(f"images differ in shape: {a.shape} vs {b.shape}")
    diff = np.abs(a - b)
    absb = np.abs(b)
    rel = np.where(absb > FLOAT_ATOL, diff / np.maximum(absb, FLOAT_ATOL), diff / FLOAT_ATOL)
    rel = np.where(diff == 0.0, 0.0, rel)
    n = rel.size
    if n == 0:
        return ImageComparison(a.shape, 0.0, 0.0, 1.0, float("nan"), (), 0, True, rtol)
    k = int(np.argmax(rel))
    worst = tuple(int(i) for i in np.unravel_index(k, rel.shape))
    frac = float(np.mean(rel <= rtol))
    max_rel = float(rel.reshape(-1)[k])
    av, bv = a.reshape(-1), b.reshape(-1)
    if np.std(av) > 0 and np.std(bv) > 0:
        corr = float(np.corrcoef(av, bv)[0, 1])
    else:
        corr = 1.0 if np.array_equal(av, bv) else float("nan")
    ok = frac >= FLOAT_FRACTION and max_rel <= FLOAT_RTOL_MAX
    return ImageComparison(shape=a.shape, max_abs=float(diff.max()), max_rel=max_rel, frac_within=frac,
                           correlation=corr, worst=worst, n_differ=int(np.count_nonzero(diff)), ok=ok,
                           rtol=rtol)


def is_smv(path) -> bool:
    """True for a file that starts like an SMV image (or is named .img/.smv)."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError:
        return path.lower().endswith(SMV_SUFFIXES)
    return head.startswith(b"{\nHEADER_BYTES=") or head.startswith(b"{\r\nHEADER_BYTES=")


def load_image(path, fpixels: int | None = None, spixels: int | None = None):
    """Read a float image or an SMV image.

    Parameters
    ----------
    path : str or path
        Raw little-endian float32 file, or SMV file.
    fpixels, spixels : int, optional
        Float images: the size; if neither is given, a square image is
        assumed; if one is given, the other follows from the file size.

    Returns
    -------
    image : ndarray, shape (spixels, fpixels)
        float32 (float file) or uint16 (SMV) pixels.
    header : str or None
        SMV header text, None for a float file.

    Raises
    ------
    InputFileError
        When the file cannot be read or its size does not fit.
    """
    from .io.floatimage import read_float_image
    from .io.smv import read_smv

    path = os.fspath(path)
    if is_smv(path):
        text, _hdr, data = read_smv(path)
        return data, text
    try:
        nbytes = os.path.getsize(path)
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if nbytes % 4:
        raise InputFileError(f"{path}: {nbytes} bytes is not a whole number of float32 pixels")
    n = nbytes // 4
    if fpixels is None and spixels is None:
        side = int(round(n ** 0.5))
        if side * side != n:
            raise InputFileError(f"{path}: {n} pixels is not a square image: give --fpixels and --spixels")
        fpixels = spixels = side
    elif fpixels is None:
        fpixels = n // int(spixels) if spixels else 0
    elif spixels is None:
        spixels = n // int(fpixels) if fpixels else 0
    return read_float_image(path, int(fpixels), int(spixels)), None


def header_differences(text_a: str, text_b: str, rtol: float = 1e-6) -> list[str]:
    """SMV header keys whose values differ (numbers compared to ``rtol``).

    Parameters
    ----------
    text_a, text_b : str
        Header texts.
    rtol : float
        Relative tolerance for numeric values.

    Returns
    -------
    list of str
        ``"KEY: a != b"`` lines; keys found in only one header included.
    """
    from .io.smv import _header_dict

    da, db = _header_dict(text_a), _header_dict(text_b)
    out = []
    for key in list(db) + [k for k in da if k not in db]:
        va, vb = da.get(key), db.get(key)
        if va == vb:
            continue
        if va is None or vb is None:
            out.append(f"{key}: {va if va is not None else '(missing)'} != {vb if vb is not None else '(missing)'}")
            continue
        try:
            xa = [float(t) for t in va.split()]
            xb = [float(t) for t in vb.split()]
            if len(xa) == len(xb) and all(abs(p - q) <= rtol * max(abs(q), 1e-9) for p, q in zip(xa, xb)):
                continue
        except ValueError:
            pass
        out.append(f"{key}: {va} != {vb}")
    return out


@dataclass
class FileComparison:
    """Result of :func:`compare_files`."""

    image: ImageComparison
    kind: str  # 'float' or 'smv'
    header_diffs: list = field(default_factory=list)
    smv_ok: bool | None = None
    smv_message: str = ""

    @property
    def ok(self) -> bool:
        if self.kind == "smv":
            return bool(self.smv_ok)
        return self.image.ok


def compare_files(path_a, path_b, fpixels: int | None = None, spixels: int | None = None) -> FileComparison:
    """Compare two image files (``b`` is the reference).

    Parameters
    ----------
    path_a, path_b : str or path
        Both float images or both SMV images.
    fpixels, spixels : int, optional
        Size of float images (see :func:`load_image`).

    Returns
    -------
    FileComparison
        Float files are judged by the float tolerance; SMV files as the
        golden corpus judges noiseless SMV images (header values to 1e-6,
        pixels equal or, for a few, one count apart).
    """
    a, ha = load_image(path_a, fpixels, spixels)
    b, hb = load_image(path_b, fpixels, spixels)
    if (ha is None) != (hb is None):
        raise UsageError("compare a float image with a float image, and an SMV image with an SMV image")
    stats = compare_images(a, b)
    if ha is None:
        return FileComparison(image=stats, kind="float")
    ok, msg = compare_smv(Path(path_a).read_bytes(), Path(path_b).read_bytes(), "int")
    return FileComparison(image=stats, kind="smv", header_diffs=header_differences(ha, hb), smv_ok=ok,
                          smv_message=msg)


def _parse_outputs(argv):
    from .cargs import config_from_args

    _cfg, run = config_from_args(list(argv), mode="parity", load_files=False)
    return run


def input_files(argv) -> list[tuple[int, str]]:
    """Files a nanoBragg command line reads: ``[(argv index of the name, name), ...]``.

    Parameters
    ----------
    argv : list of str
        The command line (no program name).

    Returns
    -------
    list of (int, str)
        For ``-hkl``, ``-mat``, ``-sourcefile``, ``-mask``, ``-img`` and
        ``-stol``.
    """
    from .flags import parse_argv

    parsed = parse_argv(list(argv))
    out = []
    for occ in parsed.items:
        if occ.flag.name in INPUT_FLAGS and occ.values:
            out.append((occ.position + 1, str(occ.values[0])))
    return out


def _stage_inputs(argv, folders) -> list:
    """Copy input files into each folder; return argv with outside paths made absolute."""
    argv = list(argv)
    names = input_files(argv)
    run = _parse_outputs(argv)
    if run.hklfile is None and os.path.exists(run.dumpfile) and not os.path.isabs(run.dumpfile):
        names.append((None, run.dumpfile))  # both programs read the Fdump cache
    for index, name in names:
        if not os.path.exists(name):
            raise InputFileError(f"{name}: no such input file")
        if os.path.isabs(name):
            continue
        norm = os.path.normpath(name)
        if norm.startswith(".."):
            if index is not None:
                argv[index] = os.path.abspath(name)
            continue
        for folder in folders:
            dest = os.path.join(folder, norm)
            os.makedirs(os.path.dirname(dest) or folder, exist_ok=True)
            shutil.copy(name, dest)
    return argv


@dataclass
class CRunComparison:
    """Result of :func:`run_against_c`."""

    ok: bool
    lines: list = field(default_factory=list)
    c_returncode: int | None = None
    ours_returncode: int | None = None
    c_seconds: float = 0.0
    ours_seconds: float = 0.0
    float_stats: ImageComparison | None = None
    workdir: str | None = None
    c_output: str = ""
    ours_output: str = ""


def _run_ours(argv, folder) -> tuple[int, str]:
    from .runner import run_nanobragg

    buf = io.StringIO()
    cwd = os.getcwd()
    rc = 0
    try:
        os.chdir(folder)
        with redirect_stdout(buf):
            rc = run_nanobragg(list(argv), out=buf, mode="parity")
    except NbnumbaError as exc:
        buf.write(f"nanoBragg: error: {exc}\n")
        rc = 2
    finally:
        os.chdir(cwd)
    return rc, buf.getvalue()


def run_against_c(argv, c_bin, workdir=None, keep: bool = False, timeout: float = 600.0) -> CRunComparison:
    """Run the C nanoBragg and ``nanoBragg -mode parity`` on one command line and compare.

    Parameters
    ----------
    argv : list of str
        nanoBragg command line (no program name).  Output names must be
        relative (each program writes into its own folder).
    c_bin : str or path
        The C executable.
    workdir : str or path, optional
        Folder for the two runs (``c/`` and ``nbnumba/``); default a new
        temporary folder, removed afterwards unless ``keep``.
    keep : bool
        Keep the temporary folder.
    timeout : float
        Seconds allowed for the C run.

    Returns
    -------
    CRunComparison
        ``ok`` is True when both runs succeed and the float image, the SMV
        image (and the noise image, with ``-seed``) agree within the golden
        tolerance.

    Raises
    ------
    ConfigError
        When the C binary is missing or an output name is absolute.
    InputFileError
        When an input file named on the command line does not exist.
    """
    c_bin = os.fspath(c_bin)
    if not (os.path.isfile(c_bin) and os.access(c_bin, os.X_OK)):
        raise ConfigError(f"{c_bin}: not an executable C nanoBragg binary")
    argv = [str(a) for a in argv]
    run = _parse_outputs(argv)
    outputs = {"float": run.floatfile, "int": run.intfile}
    if run.calculate_noise:
        outputs["noise"] = run.noisefile
    if run.write_pgm:
        outputs["pgm"] = run.pgmfile
    for what, name in outputs.items():
        if os.path.isabs(name):
            raise ConfigError(f"output file {name} is an absolute path: give relative names so that each "
                              "program writes into its own folder")
    own_tmp = workdir is None
    base = Path(tempfile.mkdtemp(prefix="nbcompare_")) if own_tmp else Path(workdir)
    cdir, odir = base / "c", base / "nbnumba"
    cdir.mkdir(parents=True, exist_ok=True)
    odir.mkdir(parents=True, exist_ok=True)
    res = CRunComparison(ok=False, workdir=str(base))
    try:
        argv = _stage_inputs(argv, [cdir, odir])
        t0 = time.perf_counter()
        try:
            # parity mode reproduces C run with one OpenMP thread: with more, C's
            # phi = 0 carry-over depends on where each thread's rows start
            c_env = dict(os.environ, OMP_NUM_THREADS="1")
            proc = subprocess.run([c_bin] + argv, cwd=cdir, capture_output=True, text=True, timeout=timeout,
                                  errors="replace", env=c_env)
            res.c_returncode = proc.returncode
            res.c_output = proc.stdout + proc.stderr
        except subprocess.TimeoutExpired:
            res.c_returncode = None
            res.c_output = f"timed out after {timeout:g} s"
        res.c_seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        res.ours_returncode, res.ours_output = _run_ours(argv, odir)
        res.ours_seconds = time.perf_counter() - t0
        lines = res.lines
        lines.append(f"C:       exit {res.c_returncode}, {res.c_seconds:.2f} s")
        lines.append(f"nbnumba: exit {res.ours_returncode}, {res.ours_seconds:.2f} s")
        if res.c_returncode != 0 or res.ours_returncode != 0:
            lines.append("a run failed; last output lines:")
            for who, text in (("C", res.c_output), ("nbnumba", res.ours_output)):
                for line in text.strip().splitlines()[-3:]:
                    lines.append(f"  {who}: {line}")
            res.ok = False
            return res
        ok = True
        shape = None
        int_c, int_o = cdir / run.intfile, odir / run.intfile
        if int_c.exists() and int_o.exists():
            from .io.smv import read_smv

            shape = read_smv(int_c)[2].shape
        fc, fo = cdir / run.floatfile, odir / run.floatfile
        if fc.exists() and fo.exists():
            from .io.floatimage import read_float_image

            s, f = shape if shape else (None, None)
            if shape is None:
                a, _ = load_image(fo)
                b, _ = load_image(fc)
            else:
                a, b = read_float_image(fo, f, s), read_float_image(fc, f, s)
            res.float_stats = st = compare_images(a, b)
            lines.append(f"float image {run.floatfile}: {st.summary()}")
            ok &= st.ok
        else:
            lines.append(f"float image {run.floatfile}: missing from " + ("C" if not fc.exists() else "nbnumba"))
            ok = False
        for what in ("int", "noise"):
            if what not in outputs:
                continue
            name = outputs[what]
            pc, po = cdir / name, odir / name
            if what == "noise" and "-seed" not in argv:
                lines.append(f"noise image {name}: not compared (no -seed: each run seeds from the clock)")
                continue
            if not (pc.exists() and po.exists()):
                lines.append(f"{what} image {name}: missing from " + ("C" if not pc.exists() else "nbnumba"))
                ok = False
                continue
            sok, msg = compare_smv(po.read_bytes(), pc.read_bytes(), what)
            from .io.smv import read_smv

            hd = header_differences(read_smv(po)[0], read_smv(pc)[0])
            lines.append(f"SMV {name}: {msg}")
            if hd:
                lines.append("  header differences: " + "; ".join(hd))
            ok &= sok
        if "pgm" in outputs:
            pc, po = cdir / outputs["pgm"], odir / outputs["pgm"]
            if pc.exists() and po.exists():
                same = pc.read_bytes() == po.read_bytes()
                lines.append(f"PGM {outputs['pgm']}: " + ("identical" if same else "differs (not judged)"))
        res.ok = ok
        return res
    finally:
        if own_tmp and not keep:
            shutil.rmtree(base, ignore_errors=True)
            res.workdir = None


def run_golden(names=(), golden_dir=None, mode: str = "parity", reference=None, out=None) -> bool:
    """Run golden-corpus cases and print PASS/FAIL per case.

    Parameters
    ----------
    names : sequence of str
        Cases to run; empty: all.
    golden_dir : str or path, optional
        The corpus (default ``../shared/golden`` beside the checkout).
    mode : {'parity', 'spec'}
        Mode to run nbnumba in.
    reference : str or path, optional
        Folder of reference outputs (default the corpus itself).
    out : file, optional
        Where to print (default stdout).

    Returns
    -------
    bool
        True when every case passed.

    Raises
    ------
    ConfigError
        For a missing corpus or an unknown case name.
    """
    import sys

    from .golden import case_names, default_golden_dir, run_case

    out = out or sys.stdout
    golden = Path(golden_dir) if golden_dir else default_golden_dir()
    if not golden.is_dir():
        raise ConfigError(f"{golden}: no golden corpus there (give --golden-dir)")
    available = case_names(golden)
    names = list(names) or available
    unknown = [n for n in names if n not in available]
    if unknown:
        raise ConfigError(f"unknown golden case {unknown[0]!r}; available: {', '.join(available)}")
    passed = 0
    for name in names:
        t0 = time.perf_counter()
        try:
            rep = run_case(name, golden, mode=mode, reference=reference)
            ok, details = rep.ok, rep.details
        except Exception as exc:  # a crash is a failure of that case, not of the run
            ok, details = False, [f"error: {type(exc).__name__}: {exc}"]
        passed += ok
        print(f"{'PASS' if ok else 'FAIL'} {name} ({time.perf_counter() - t0:.1f} s)", file=out)
        if not ok:
            for d in details:
                print(f"    {d}", file=out)
    print(f"{passed}/{len(names)} cases passed", file=out)
    return passed == len(names)
