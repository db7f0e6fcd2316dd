"""Shared helpers of the Spec A acceptance tests (``tests/spec_a``).

Spec A is the peer project's written specification of nanoBragg (its
acceptance tests AT-*); see ``docs/spec_a.md`` for the table of every AT
and the status of its test here.  The helpers render through the public
API (:func:`nbnumba.config_from_args`, :func:`nbnumba.simulate`) and the
``nanoBragg`` command, and recompute the Spec A formulas independently in
numpy from the prepared geometry (detector vectors, cell vectors), so a
test compares the engine with the written formula, not with itself.
"""

from __future__ import annotations

import contextlib
import io
import math
import shlex
from pathlib import Path

import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
GOLDEN_DIR = SHARED / "golden"
GOLDEN_SPEC_DIR = SHARED / "golden_spec"
needs_golden = pytest.mark.skipif(not GOLDEN_DIR.is_dir(), reason=f"no golden corpus at {GOLDEN_DIR}")

R_E_SQR = 7.94079248018965e-30
AVOGADRO = 6.02214179e23
DEG = math.pi / 180.0


def defect(what: str):
    """Strict xfail for a known defect of ours, to be removed when fixed (grep DEFECT-13)."""
    return pytest.mark.xfail(strict=True, reason=f"DEFECT-13: {what}")


def differs(what: str):
    """Strict xfail where Spec A contradicts C (or itself) or nbnumba differs on purpose."""
    return pytest.mark.xfail(strict=True, reason=what)


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run the test in an empty temporary folder (no stray Fdump.bin is read)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def pinfo(prepared) -> dict:
    """The derived geometry of a prepared run by name (fdet, pix0, Fbeam, thickstep, fluence, a_star ...).

    Reads ``Prepared.info`` where it exists, else the typed setup stages
    (``prepared.detector``, ``.crystal``, ``.beam``, ``.sampling``).
    """
    legacy = getattr(prepared, "info", None)
    if isinstance(legacy, dict):
        return legacy
    d, c, b, s = prepared.detector, prepared.crystal, prepared.beam, prepared.sampling
    out = {k: getattr(d, k) for k in ("fdet", "sdet", "odet", "pix0", "beam", "twotheta_axis", "pivot", "Fbeam",
                                      "Sbeam", "Xbeam", "Ybeam", "Fclose", "Sclose", "distance", "close_distance",
                                      "pixel_size", "detsize_f", "detsize_s")}
    out.update({k: getattr(s, k) for k in ("oversample", "thick", "thickstep", "thicksteps", "mu")})
    out.update({k: getattr(b, k) for k in ("fluence", "flux", "beamsize", "lambda0", "dispersion", "dispsteps",
                                           "hdivrange", "hdivstep", "vdivrange", "vdivstep", "divsteps", "I_bg",
                                           "polar_vector")})
    out.update({k: getattr(c, k) for k in ("Na", "Nb", "Nc")})
    out.update({k: getattr(c.cell, k) for k in ("a", "b", "c", "a_star", "b_star", "c_star", "misset_used")})
    from nbnumba.stages import Illumination

    out["sample"] = Illumination.from_config(prepared.config, []).sample
    return out


def argv(args) -> list:
    return shlex.split(args) if isinstance(args, str) else [str(a) for a in args]


def config(args, mode: str = "spec"):
    """(SimConfig, RunOptions) of a nanoBragg command line."""
    from nbnumba import config_from_args

    return config_from_args(argv(args), mode=mode)


def prep(args, mode: str = "spec"):
    """The prepared geometry of a command line (nothing rendered)."""
    from nbnumba import prepare

    return prepare(config(args, mode)[0])


def sim(args, mode: str = "spec", **changes):
    """Render a command line through the API; ``changes`` replace SimConfig fields."""
    import dataclasses

    from nbnumba import simulate

    cfg = config(args, mode)[0]
    if changes:
        cfg = dataclasses.replace(cfg, **changes)
    return simulate(cfg)


def image(args, mode: str = "spec", **changes) -> np.ndarray:
    return sim(args, mode, **changes).image.astype(np.float64)


def cli(args) -> tuple[int, str, str]:
    """Run the ``nanoBragg`` command in-process: (exit status, stdout, stderr)."""
    from cli.nanobragg import run_command_line

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            run_command_line(argv(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return code, out.getvalue(), err.getvalue()


def poisson_image(*args, **kwargs):
    """C's noise loop (``nbnumba.kernels.noise.poisson_image``, formerly in ``nbnumba.rng``)."""
    try:
        from nbnumba.kernels.noise import poisson_image as noise
    except ImportError:
        from nbnumba.rng import poisson_image as noise
    return noise(*args, **kwargs)


def read_float(path, fpixels: int, spixels: int) -> np.ndarray:
    return np.fromfile(path, dtype="<f4").reshape(spixels, fpixels).astype(np.float64)


def smv(path):
    """(header dict, uint16 image) of an SMV file."""
    from nbnumba.io.smv import read_smv

    _text, header, data = read_smv(path)
    return header, data


# ---------------------------------------------------------------- geometry, as Spec A writes it


class Geometry:
    """Spec A's per-sub-pixel quantities recomputed in numpy from a prepared run.

    Arrays have shape (spixels, fpixels, oversample, oversample) for the
    sub-pixel (slow, fast) grid of detector layer ``layer``.
    """

    def __init__(self, prepared, layer: int = 0, source: int = 0, layer_step: float | None = None):
        info = pinfo(prepared)
        self.info = info
        n = int(info["oversample"])
        sub = info["pixel_size"] / n
        s_idx = np.arange(prepared.spixels)[:, None, None, None] * n + np.arange(n)[None, None, :, None]
        f_idx = np.arange(prepared.fpixels)[None, :, None, None] * n + np.arange(n)[None, None, None, :]
        fdet = sub * f_idx + sub / 2.0
        sdet = sub * s_idx + sub / 2.0
        f, s, o = (np.asarray(info[k], float) for k in ("fdet", "sdet", "odet"))
        odepth = layer * (info["thickstep"] if layer_step is None else layer_step)
        pos = (fdet[..., None] * f + sdet[..., None] * s + odepth * o + np.asarray(info["pix0"], float))
        self.pos = np.broadcast_to(pos, (prepared.spixels, prepared.fpixels, n, n, 3))
        self.R = np.linalg.norm(self.pos, axis=-1)
        self.d = self.pos / self.R[..., None]
        self.omega = info["pixel_size"] ** 2 / self.R ** 2 * info["close_distance"] / self.R
        self.omega_point = 1.0 / self.R ** 2
        src = prepared.sources[source]
        self.incident = -src[:3] / np.linalg.norm(src[:3])
        self.lam = src[3]
        self.q = (self.d - self.incident) / self.lam  # 1/m
        self.stol = 0.5 * np.linalg.norm(self.q, axis=-1)
        self.parallax = self.d @ o

    def polar(self, kahn: float) -> np.ndarray:
        """Kahn factor 0.5 (1 + cos^2 2theta - K cos 2psi sin^2 2theta)."""
        i = self.incident
        p = np.asarray(self.info["polar_vector"], float)
        b_in = np.cross(p, i)
        b_in /= np.linalg.norm(b_in)
        e_in = np.cross(i, b_in)
        e_in /= np.linalg.norm(e_in)
        cos2t = self.d @ i
        sin2t_sqr = 1.0 - cos2t ** 2
        psi = -np.arctan2(self.d @ b_in, self.d @ e_in)
        return 0.5 * (1.0 + cos2t ** 2 - kahn * np.cos(2.0 * psi) * sin2t_sqr)

    def hkl(self, cell_index=(0, 0)) -> np.ndarray:
        """Fractional Miller indices h = a.q for the cell of (phi step, domain)."""
        info = self.info
        if cell_index == (0, 0) and not info.get("misset_used"):
            a, b, c = (np.asarray(info[k][:3], float) for k in ("a", "b", "c"))
        else:
            raise NotImplementedError
        return np.stack([self.q @ a, self.q @ b, self.q @ c], axis=-1)


def first(arr: np.ndarray) -> np.ndarray:
    """The first sub-pixel's value of each pixel."""
    return arr[:, :, 0, 0]


def last(arr: np.ndarray) -> np.ndarray:
    """The last sub-pixel's value of each pixel."""
    return arr[:, :, -1, -1]


# ---------------------------------------------------------------- image metrics used by AT-PARALLEL


def correlation(a, b) -> float:
    a = np.asarray(a, float).ravel()
    b = np.asarray(b, float).ravel()
    return float(np.corrcoef(a, b)[0, 1])


def peaks(img, n: int, percentile: float = 99.0, radius: int = 1) -> np.ndarray:
    """Up to ``n`` local maxima above a percentile, brightest first: array of (slow, fast)."""
    from scipy.ndimage import maximum_filter

    img = np.asarray(img, float)
    local = img == maximum_filter(img, size=2 * radius + 1, mode="nearest")
    cut = np.percentile(img, percentile)
    cand = np.argwhere(local & (img > cut) & (img > 0))
    order = np.argsort(-img[tuple(cand.T)], kind="stable")
    return cand[order][:n].astype(float)


def centroid(img, at, half: int = 3, level: float = 0.5) -> np.ndarray:
    """Centre of the peak near ``at`` (slow, fast): the intensity above ``level`` x its maximum,
    weighted, in the (2 half + 1)^2 window (the cut keeps an off-centre window unbiased)."""
    s, f = (int(round(v)) for v in at)
    s0, s1 = max(s - half, 0), min(s + half + 1, img.shape[0])
    f0, f1 = max(f - half, 0), min(f + half + 1, img.shape[1])
    win = np.asarray(img[s0:s1, f0:f1], float)
    win = np.clip(win - level * win.max(), 0.0, None)
    ss, ff = np.mgrid[s0:s1, f0:f1]
    tot = win.sum()
    return np.array([(ss * win).sum() / tot, (ff * win).sum() / tot])


def matched_fraction(pa, pb, gate: float) -> tuple[float, np.ndarray]:
    """Hungarian matching of two peak lists: (fraction of ``pa`` matched within ``gate``, distances)."""
    from scipy.optimize import linear_sum_assignment

    if len(pa) == 0:
        return 1.0, np.zeros(0)
    dist = np.linalg.norm(pa[:, None, :] - pb[None, :, :], axis=-1)
    rows, cols = linear_sum_assignment(dist)
    d = dist[rows, cols]
    return float(np.sum(d <= gate)) / len(pa), d


def golden_float(name: str, folder: Path = GOLDEN_DIR) -> np.ndarray:
    from nbnumba.golden import load_case, read_output

    case = load_case(GOLDEN_DIR, name)
    data = read_output(folder / name / "float.bin")
    return np.frombuffer(data, "<f4").reshape(case["spixels"], case["fpixels"]).astype(np.float64)


def golden_args(name: str) -> list:
    from nbnumba.golden import load_case

    return list(load_case(GOLDEN_DIR, name)["args"])


def golden_inputs(name: str, dest: Path) -> None:
    """Copy a golden case's input files into ``dest``."""
    import shutil

    from nbnumba.golden import load_case

    for inp in load_case(GOLDEN_DIR, name).get("inputs", []):
        shutil.copy(GOLDEN_DIR / "inputs" / inp, Path(dest) / inp)
