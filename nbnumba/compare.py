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
:func:`nbnumba.golden.compare_smv` judges them.  Relative differences are
taken against ``max(|reference|, 1e-6 x max|reference|)``, so that pixels
near zero do not report huge ratios.

:func:`write_artifacts` saves what a comparison found into a folder (the
``--outdir`` of ``nbnumba compare``, after Spec A's AT-TOOLS-001): the float
images, the programs' output, PNG previews of both images and of their
difference, and ``summary.json`` with the metrics (correlation, MSE, RMSE,
max absolute difference, the two sums and their ratio), optionally over a
region of interest.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .errors import ConfigError, InputFileError, OutputFileError, UsageError
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
    "write_artifacts",
    "write_c_run_artifacts",
    "write_previews",
]

SMV_SUFFIXES = (".img", ".smv")
# relative differences are taken against at least this fraction of the reference image's maximum
REL_FLOOR = 1e-6
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
        Largest ``|a - b| / max(|b|, floor)``, with ``floor`` the larger of
        1e-30 and ``REL_FLOOR`` (1e-6) times the largest ``|b|``.
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
    rtol : float
        Tolerance of ``frac_within``.
    mse, rmse : float
        Mean squared difference and its root.
    sum_a, sum_b : float
        Image sums; ``sum_ratio`` is ``sum_a / sum_b``.
    roi : tuple or None
        (xmin, xmax, ymin, ymax), inclusive pixel bounds the metrics were
        taken over (fast x, slow y); None for the whole image.
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
    mse: float = 0.0
    rmse: float = 0.0
    sum_a: float = 0.0
    sum_b: float = 0.0
    roi: tuple | None = None

    @property
    def sum_ratio(self) -> float:
        """``sum_a / sum_b`` (NaN when the reference sums to zero)."""
        return self.sum_a / self.sum_b if self.sum_b != 0 else float("nan")

    def metrics(self) -> dict:
        """The numbers as a JSON-ready dict."""
        out = {k: v for k, v in asdict(self).items() if k not in ("worst", "shape", "roi")}
        out.update(shape=list(self.shape), worst=list(self.worst), sum_ratio=self.sum_ratio,
                   roi=list(self.roi) if self.roi else None)
        return {k: (None if isinstance(v, float) and v != v else v) for k, v in out.items()}

    def summary(self) -> str:
        """One line: the statistics and the verdict."""
        return (f"max abs diff {self.max_abs:.6g}, max rel diff {self.max_rel:.6g} at {self.worst}, "
                f"{self.frac_within * 100:.4f}% within {self.rtol:g}, correlation {self.correlation:.9f}, "
                f"{self.n_differ} pixels differ -> {'OK' if self.ok else 'DIFFERENT'}")


def crop_roi(img, roi):
    """The ``roi`` part of an image.

    Parameters
    ----------
    img : ndarray, shape (slow, fast)
        The image.
    roi : tuple or None
        (xmin, xmax, ymin, ymax), inclusive and 0-based, x along the fast
        axis, as nanoBragg's ``-roi``; None: the whole image.

    Returns
    -------
    ndarray
        A view of the region.

    Raises
    ------
    ConfigError
        When the region is empty or outside the image.
    """
    if roi is None:
        return img
    xmin, xmax, ymin, ymax = (int(v) for v in roi)
    s, f = img.shape
    if not (0 <= xmin <= xmax < f and 0 <= ymin <= ymax < s):
        raise ConfigError(f"ROI {xmin} {xmax} {ymin} {ymax} does not fit an image of {f} x {s} pixels "
                          f"(xmin xmax ymin ymax, inclusive, 0-based)")
    return img[ymin:ymax + 1, xmin:xmax + 1]


def compare_images(a, b, rtol: float = FLOAT_RTOL, roi=None) -> ImageComparison:
    """Compare image ``a`` with reference ``b`` (same shape).

    Parameters
    ----------
    a, b : array_like
        Images; ``b`` is the reference for relative differences.
    rtol : float
        Relative tolerance for :attr:`ImageComparison.frac_within`.
    roi : tuple, optional
        (xmin, xmax, ymin, ymax): compare only these pixels (inclusive,
        x fast, y slow, 0-based); ``worst`` is then relative to the ROI.

    Returns
    -------
    ImageComparison

    Raises
    ------
    ConfigError
        When the shapes differ or the ROI does not fit.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ConfigError(f"images differ in shape: {a.shape} vs {b.shape}")
    a, b = crop_roi(a, roi), crop_roi(b, roi)
    roi = tuple(int(v) for v in roi) if roi is not None else None
    diff = np.abs(a - b)
    absb = np.abs(b)
    n = diff.size
    if n == 0:
        return ImageComparison(a.shape, 0.0, 0.0, 1.0, float("nan"), (), 0, True, rtol, roi=roi)
    floor = max(FLOAT_ATOL, REL_FLOOR * float(absb.max()))
    rel = np.where(diff == 0.0, 0.0, diff / np.maximum(absb, floor))
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
    mse = float(np.mean(diff * diff))
    return ImageComparison(shape=a.shape, max_abs=float(diff.max()), max_rel=max_rel, frac_within=frac,
                           correlation=corr, worst=worst, n_differ=int(np.count_nonzero(diff)), ok=ok,
                           rtol=rtol, mse=mse, rmse=mse ** 0.5, sum_a=float(a.sum()), sum_b=float(b.sum()),
                           roi=roi)


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


def compare_files(path_a, path_b, fpixels: int | None = None, spixels: int | None = None,
                  roi=None) -> FileComparison:
    """Compare two image files (``b`` is the reference).

    Parameters
    ----------
    path_a, path_b : str or path
        Both float images or both SMV images.
    fpixels, spixels : int, optional
        Size of float images (see :func:`load_image`).
    roi : tuple, optional
        (xmin, xmax, ymin, ymax): pixel statistics over this region only.

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
    stats = compare_images(a, b, roi=roi)
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
    c_stderr: str = ""
    ours_stderr: str = ""
    c_float: np.ndarray | None = None
    ours_float: np.ndarray | None = None


# the nanoBragg command in parity mode, for a child process started in the run folder
_OURS_CODE = (
    "import sys\n"
    "from nbnumba.errors import NbnumbaError\n"
    "from nbnumba.runner import run_nanobragg\n"
    "try:\n"
    "    code = run_nanobragg(sys.argv[1:], mode='parity')\n"
    "except NbnumbaError as exc:\n"
    "    print(f'nanoBragg: error: {exc}', file=sys.stderr)\n"
    "    code = 2\n"
    "sys.exit(code)\n"
)


def _run_ours(argv, folder, timeout: float = 600.0) -> tuple[int | None, str, str]:
    """Run ``nanoBragg -mode parity`` in ``folder`` (a child process: no chdir here).

    Returns (exit status or None on time-out, stdout, stderr).
    """
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    try:
        proc = subprocess.run([sys.executable, "-c", _OURS_CODE, *argv], cwd=folder, capture_output=True,
                              text=True, timeout=timeout, errors="replace", env=env)
    except subprocess.TimeoutExpired:
        return None, "", f"timed out after {timeout:g} s"
    return proc.returncode, proc.stdout, proc.stderr


def run_against_c(argv, c_bin, workdir=None, keep: bool = False, timeout: float = 600.0,
                  roi=None) -> CRunComparison:
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
        Seconds allowed for each run.
    roi : tuple, optional
        (xmin, xmax, ymin, ymax): float-image statistics over this region.

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
            res.c_output, res.c_stderr = proc.stdout, proc.stderr
        except subprocess.TimeoutExpired:
            res.c_returncode = None
            res.c_stderr = f"timed out after {timeout:g} s"
        res.c_seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        res.ours_returncode, res.ours_output, res.ours_stderr = _run_ours(argv, odir, timeout)
        res.ours_seconds = time.perf_counter() - t0
        lines = res.lines
        lines.append(f"C:       exit {res.c_returncode}, {res.c_seconds:.2f} s")
        lines.append(f"nbnumba: exit {res.ours_returncode}, {res.ours_seconds:.2f} s")
        if res.c_returncode != 0 or res.ours_returncode != 0:
            lines.append("a run failed; last output lines:")
            for who, text in (("C", res.c_output + res.c_stderr), ("nbnumba", res.ours_output + res.ours_stderr)):
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
            res.ours_float, res.c_float = a, b
            res.float_stats = st = compare_images(a, b, roi=roi)
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


def write_previews(images: dict, outdir, scale: str = "sqrt", percentile: float = 99.5, roi=None) -> dict:
    """PNG previews of two images on one intensity scale, and of their difference.

    Parameters
    ----------
    images : dict
        Two entries ``{name: 2-D array}``: the image and the reference, in
        that order; written as ``NAME.png``.  ``diff.png`` shows the first
        minus the second: red where it is larger, blue where it is smaller.
    outdir : str or path
        Existing folder.
    scale : {'sqrt', 'log', 'linear'}
        Mapping of intensity to grey level (0 up to the white level).
    percentile : float
        White level: this percentile of both images together (over ``roi``
        when given); the difference uses its largest absolute value.
    roi : tuple, optional
        (xmin, xmax, ymin, ymax): preview only this region.

    Returns
    -------
    dict
        The scaling used (``png_scale_method``, ``png_percentile``,
        ``png_white_level``, ``png_diff_white_level``), also written into
        each PNG's text metadata.
    """
    from .io.outputs import OutputSet

    with OutputSet() as out:
        info = add_previews(out, images, Path(outdir), scale, percentile, roi)
        out.commit()
    return info


def add_previews(out, images: dict, outdir: Path, scale: str = "sqrt", percentile: float = 99.5, roi=None) -> dict:
    """Add the previews of :func:`write_previews` to an output set ``out``; return their scaling."""
    from .io.png import encode_png, scaled, white_level

    (name_a, a), (name_b, b) = ((n, crop_roi(np.asarray(v, dtype=np.float64), roi)) for n, v in images.items())
    white = white_level([a, b], percentile)
    d = a - b
    dwhite = float(np.abs(d).max()) if d.size else 0.0
    info = dict(png_scale_method=scale, png_percentile=percentile, png_white_level=white,
                png_diff_white_level=dwhite)
    for name, img in ((name_a, a), (name_b, b)):
        out.add(outdir / f"{name}.png", encode_png(scaled(np.clip(img, 0.0, None), white, scale), info))
    rgb = np.zeros(d.shape + (3,))
    rgb[..., 0] = scaled(np.clip(d, 0.0, None), dwhite, scale)
    rgb[..., 2] = scaled(np.clip(-d, 0.0, None), dwhite, scale)
    out.add(outdir / "diff.png", encode_png(rgb, info))
    return info


def _comparison_folder(outdir) -> Path:
    """``outdir`` as a Path, created if missing (one clear error if it cannot be)."""
    outdir = Path(outdir)
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputFileError(f"{outdir}: cannot write the comparison there: {exc.strerror or exc}") from exc
    return outdir


def write_artifacts(outdir, ours, ref, stats: ImageComparison, names=("py", "c"), args=None,
                    texts=None, extra=None, png_scale: str = "sqrt", png_percentile: float = 99.5,
                    save_floats: bool = True) -> Path:
    """Save a comparison into ``outdir``: float images, previews, texts and ``summary.json``.

    Parameters
    ----------
    outdir : str or path
        Folder (created if missing).
    ours, ref : ndarray
        The compared images (full frames); ``ref`` is the reference.
    stats : ImageComparison
        Their comparison (over its ROI, if any).
    names : (str, str)
        Names of ``ours`` and ``ref`` in file names and summary keys
        (``NAME_float.bin``, ``NAME.png``, ``sum_NAME``).
    args : list of str, optional
        The command line both programs ran.
    texts : dict, optional
        ``{file name: text}`` to write (e.g. the programs' output).
    extra : dict, optional
        More summary entries (run times, binaries).
    png_scale, png_percentile
        See :func:`write_previews`.
    save_floats : bool
        Write the two float images (little-endian float32).

    Returns
    -------
    Path
        ``outdir``.

    Raises
    ------
    OutputFileError
        When the folder cannot be created or written.
    """
    from .io.outputs import OutputSet

    outdir = _comparison_folder(outdir)
    with OutputSet() as out:
        for name, text in (texts or {}).items():
            out.add(outdir / name, text.encode())
        if save_floats:
            for name, img in zip(names, (ours, ref)):
                out.add(outdir / f"{name}_float.bin", np.ascontiguousarray(img, dtype="<f4").tobytes())
        preview = add_previews(out, {names[0]: ours, names[1]: ref}, outdir, png_scale, png_percentile, stats.roi)
        summary = dict(args=list(args) if args is not None else None, roi=list(stats.roi) if stats.roi else None)
        summary.update(extra or {})
        summary.update(stats.metrics())
        summary.update({"max_abs_diff": stats.max_abs, f"sum_{names[0]}": stats.sum_a,
                        f"sum_{names[1]}": stats.sum_b})
        summary.update(preview)
        out.add(outdir / "summary.json", (json.dumps(summary, indent=2) + "\n").encode())
        out.commit()
    return outdir


def write_c_run_artifacts(res: CRunComparison, outdir, argv, c_bin, png_scale: str = "sqrt",
                          png_percentile: float = 99.5) -> Path:
    """Save a :func:`run_against_c` comparison into ``outdir`` (see :func:`write_artifacts`).

    Writes ``c_stdout.txt``, ``c_stderr.txt``, ``py_stdout.txt``, ``py_stderr.txt`` and, when both
    float images exist, ``c_float.bin``, ``py_float.bin``, ``c.png``, ``py.png``, ``diff.png`` and
    ``summary.json`` (with ``runtime_c_ms``, ``runtime_py_ms`` and the binaries used).

    Returns
    -------
    Path
        ``outdir``.
    """
    texts = {"c_stdout.txt": res.c_output, "c_stderr.txt": res.c_stderr,
             "py_stdout.txt": res.ours_output, "py_stderr.txt": res.ours_stderr}
    extra = dict(c_bin=os.path.abspath(os.fspath(c_bin)), py_bin=f"{sys.executable} (nbnumba, -mode parity)",
                 runtime_c_ms=res.c_seconds * 1000.0, runtime_py_ms=res.ours_seconds * 1000.0,
                 c_returncode=res.c_returncode, py_returncode=res.ours_returncode, verdict_ok=res.ok)
    if res.float_stats is None or res.ours_float is None:
        from .io.outputs import OutputSet

        outdir = _comparison_folder(outdir)
        with OutputSet() as out:
            for name, text in texts.items():
                out.add(outdir / name, text.encode())
            out.add(outdir / "summary.json", (json.dumps(dict(args=list(argv), **extra), indent=2) + "\n").encode())
            out.commit()
        return outdir
    return write_artifacts(outdir, res.ours_float, res.c_float, res.float_stats, names=("py", "c"), args=argv,
                           texts=texts, extra=extra, png_scale=png_scale, png_percentile=png_percentile)


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
