"""The Python API: :func:`simulate` a :class:`~nbnumba.config.SimConfig`."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np

from .config import SimConfig
from .errors import ConfigError
from .prepare import Prepared, prepare

BACKENDS = ("cpu", "cuda", "auto")
DTYPES = ("float64", "float32")


@dataclass
class Statistics:
    """The statistics C prints after rendering (photons per pixel)."""

    max_I: float
    max_I_x: float  # fast coordinate (m) of the last sub-pixel of the brightest pixel
    max_I_y: float
    mean: float
    rms: float
    rmsd: float
    omega_sum: float  # summed solid angle / steps (steradian)
    rendered: int


@dataclass
class SimResult:
    """A rendered image and what goes with it.

    Attributes
    ----------
    image : ndarray, shape (spixels, fpixels), float32
        Photons per pixel, as C stores them (the float image).
    stats : Statistics
        C's statistics line values.
    prepared : Prepared
        The resolved geometry and arrays.
    backend : str
        Backend that rendered it.
    """

    image: np.ndarray
    stats: Statistics
    prepared: Prepared
    backend: str
    timings: dict = field(default_factory=dict)


def cuda_usable() -> bool:
    """True when a CUDA GPU (or the CUDA simulator) can run kernels."""
    try:
        from numba import cuda

        return bool(cuda.is_available())
    except Exception:  # pragma: no cover - depends on the machine
        return False


def resolve_backend(backend: str) -> str:
    """Turn ``auto`` into ``cpu`` or ``cuda``; check ``cuda`` is usable."""
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    if backend == "auto":
        return "cuda" if cuda_usable() else "cpu"
    if backend == "cuda" and not cuda_usable():
        raise ConfigError("-backend cuda: no usable CUDA GPU or driver found (use -backend cpu)")
    return backend


def simulate(config: SimConfig, backend: str = "cpu", dtype: str = "float64",
             nthreads: int | None = None, prepared: Prepared | None = None,
             tile_pixels: int | None = None, progress=None) -> SimResult:
    """Render the image described by ``config``.

    Parameters
    ----------
    config : SimConfig
        The run description.
    backend : {'cpu', 'cuda', 'auto'}
        Where the kernel runs.
    dtype : {'float64', 'float32'}
        Floating-point precision of the kernel; parity mode requires float64.
    nthreads : int, optional
        CPU threads (default: numba's default, all cores).
    prepared : Prepared, optional
        Reuse an already prepared geometry (must come from ``config``).
    tile_pixels : int, optional
        CUDA: pixels per launch (bounds GPU memory); default whole rows up
        to about 4 million pixels.
    progress : callable, optional
        Called with the fraction done after each CUDA tile.

    Returns
    -------
    SimResult
    """
    import time

    if dtype not in DTYPES:
        raise ConfigError(f"dtype must be float64 or float32, not {dtype!r}")
    if dtype == "float32" and config.mode == "parity":
        raise ConfigError("parity mode requires -dtype float64")
    backend = resolve_backend(backend)
    t0 = time.perf_counter()
    prep = prepared if prepared is not None else prepare(config)
    t1 = time.perf_counter()
    n = prep.fpixels * prep.spixels
    if backend == "cpu":
        from .kernels import cpu as kern

        if nthreads is not None:
            import numba

            numba.set_num_threads(max(1, min(int(nthreads), numba.config.NUMBA_NUM_THREADS)))
        args = _kernel_arrays(prep, dtype)
        interp_stop = n
        if config.mode == "parity" and prep.ip[_ip("IP_INTERPOLATE")]:
            oor = np.zeros(n, dtype=np.int8)
            kern.find_out_of_range_cpu(*args, prep.first_pixel_index, oor)
            hits = np.flatnonzero(oor)
            if hits.size:
                interp_stop = int(hits[0])
        image = np.zeros(n, dtype=np.float64)
        omega = np.zeros(n, dtype=np.float64)
        oor = np.zeros(n, dtype=np.int8)
        kern.render_image_cpu(*args, prep.first_pixel_index, interp_stop, prep.scale,
                              image, omega, oor)
    else:
        from .kernels import cuda as kern

        image, omega = kern.render_cuda(prep, dtype=dtype, tile_pixels=tile_pixels,
                                        progress=progress)
    t2 = time.perf_counter()
    image32 = image.astype(np.float32)
    stats = statistics(prep, image32, omega)
    return SimResult(image=image32.reshape(prep.spixels, prep.fpixels), stats=stats,
                     prepared=prep, backend=backend,
                     timings={"prepare_s": t1 - t0, "kernel_s": t2 - t1})


def _ip(name):
    from . import physics

    return getattr(physics, name)


def _kernel_arrays(prep: Prepared, dtype: str):
    ft = np.float64 if dtype == "float64" else np.float32
    return (
        prep.fp.astype(ft), prep.ip, prep.sources.astype(ft), prep.cells.astype(ft),
        prep.cells_first.astype(ft), prep.fhkl.astype(ft), prep.mask,
    )


def rendered_mask(prep: Prepared) -> np.ndarray:
    """Boolean (flat) mask of the pixels C renders: inside the ROI, mask != 0."""
    f, s = prep.fpixels, prep.spixels
    xmin, xmax, ymin, ymax = prep.roi
    fi = np.arange(f)
    si = np.arange(s)
    in_roi = ((si[:, None] >= ymin) & (si[:, None] <= ymax)) & ((fi[None, :] >= xmin) & (fi[None, :] <= xmax))
    out = in_roi.reshape(-1)
    if prep.config.mask is not None:
        out = out & (prep.mask != 0)
    return out


def roi_mask(prep: Prepared) -> np.ndarray:
    """Boolean (flat) mask of the ROI alone."""
    f, s = prep.fpixels, prep.spixels
    xmin, xmax, ymin, ymax = prep.roi
    fi = np.arange(f)
    si = np.arange(s)
    return (((si[:, None] >= ymin) & (si[:, None] <= ymax))
            & ((fi[None, :] >= xmin) & (fi[None, :] <= xmax))).reshape(-1)


def statistics(prep: Prepared, image32: np.ndarray, omega: np.ndarray) -> Statistics:
    """Compute C's statistics from the float image."""
    rendered = rendered_mask(prep)
    vals = image32.astype(np.float64)[rendered]
    idx = np.flatnonzero(rendered)
    max_I = 0.0
    max_x = max_y = 0.0
    if vals.size and vals.max() > 0.0:
        k = int(np.argmax(vals))
        max_I = float(vals[k])
        pix = int(idx[k])
        spixel, fpixel = divmod(pix, prep.fpixels)
        os_ = prep.info["oversample"]
        sub = prep.info["pixel_size"] / os_
        max_x = sub * (fpixel * os_ + os_ - 1) + sub / 2.0
        max_y = sub * (spixel * os_ + os_ - 1) + sub / 2.0
    sumn = vals.size
    total = float(math.fsum(vals))
    sumsqr = float(math.fsum(vals * vals))
    avg = total / (sumn if sumn > 0 else 1)
    rms = math.sqrt(sumsqr / ((sumn if sumn > 1 else 2) - 1))
    roi_vals = image32.astype(np.float64)[roi_mask(prep)]
    n_roi = roi_vals.size
    dev = roi_vals - avg
    rmsd = math.sqrt(float(math.fsum(dev * dev)) / ((n_roi if n_roi > 1 else 2) - 1))
    omega_sum = float(math.fsum(omega[rendered])) / prep.steps
    return Statistics(max_I=max_I, max_I_x=max_x, max_I_y=max_y, mean=avg, rms=rms, rmsd=rmsd,
                      omega_sum=omega_sum, rendered=int(sumn))


def default_threads() -> int:
    return os.cpu_count() or 1
