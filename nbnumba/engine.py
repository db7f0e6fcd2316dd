"""The Python API: :func:`simulate` a :class:`~nbnumba.config.SimConfig`."""

from __future__ import annotations

import math
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
    timings : dict
        Seconds spent preparing (``prepare_s``) and rendering (``kernel_s``:
        transfers and host work included); on CUDA also ``device_kernel_s``,
        the kernels' own time on the device.
    warnings : list of str
        What the run should tell its user, once (C's interpolation warning).
    """

    image: np.ndarray
    stats: Statistics
    prepared: Prepared
    backend: str
    timings: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)


def cuda_usable() -> bool:
    """True when a CUDA GPU (or the CUDA simulator) can run kernels."""
    try:
        from numba import cuda

        return bool(cuda.is_available())
    except Exception:  # pragma: no cover - depends on the machine
        return False


def check_dtype(config: SimConfig, dtype: str) -> None:
    """Reject an unknown dtype, and float32 in parity mode."""
    if dtype not in DTYPES:
        raise ConfigError(f"dtype must be float64 or float32, not {dtype!r}")
    if dtype == "float32" and config.mode == "parity":
        raise ConfigError("parity mode requires -dtype float64")


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
        CUDA: pixels per launch (bounds GPU memory); default about 16
        million pixels.
    progress : callable, optional
        Called with the fraction done after each CUDA tile.

    Returns
    -------
    SimResult
    """
    import time

    check_dtype(config, dtype)
    backend = resolve_backend(backend)
    t0 = time.perf_counter()
    prep = prepared if prepared is not None else prepare(config)
    t1 = time.perf_counter()
    timings = {}
    image, omega_total = render_flat(prep, backend, dtype, nthreads=nthreads,
                                     tile_pixels=tile_pixels, progress=progress, timings=timings)
    t2 = time.perf_counter()
    image = image.reshape(prep.spixels, prep.fpixels)
    stats = statistics(prep, image, omega_total, nthreads=nthreads)
    return SimResult(image=image, stats=stats,
                     prepared=prep, backend=backend,
                     timings={"prepare_s": t1 - t0, "kernel_s": t2 - t1, **timings},
                     warnings=interpolation_warnings(prep))


def interpolation_warnings(prep: Prepared) -> list[str]:
    """C's warning when tricubic interpolation needs F beyond the HKL grid: one line, with where it happened."""
    from . import physics as P
    from .kernels.driver import out_of_grid_pixel

    hit = out_of_grid_pixel(prep)
    if hit < 0:
        return []
    spixel, fpixel = divmod(hit, prep.fpixels)
    fp, ip = prep.fp, prep.ip
    pos = P.subpixel_position(fpixel, spixel, 0, 0, 0.0, fp, ip)
    norm = math.sqrt(pos[0] ** 2 + pos[1] ** 2 + pos[2] ** 2)
    src = prep.sources[0]
    scat = [(pos[i] / norm + src[P.SRC_DIR + i]) / src[P.SRC_LAMBDA] for i in range(3)]
    cell = prep.cells_first[0, 0]
    h, k, l = (sum(cell[3 * j + i] * scat[i] for i in range(3)) for j in range(3))
    after = ("interpolation is switched off from that pixel on, as C does" if prep.config.mode == "parity"
             else f"F = {prep.config.default_F:g} (-default_F) is used for points beyond the grid")
    return [f"WARNING: tricubic interpolation needs structure factors beyond the HKL grid, first at pixel "
            f"{fpixel} {spixel} near h k l = {h:.2f} {k:.2f} {l:.2f}; {after}"]


def render_flat(prep: Prepared, backend: str = "cpu", dtype: str = "float64",
                out_dtype=np.float32, nthreads: int | None = None, tile_pixels: int | None = None,
                progress=None, timings: dict | None = None) -> tuple[np.ndarray, float]:
    """Run the kernel on a prepared run (see :func:`nbnumba.kernels.driver.render_flat`).

    Returns the flat image (raster order) and the summed solid angle.  The
    CPU backend can write the pixel values before C's float32 rounding
    (``out_dtype=np.float64``, used by the finite-difference gradients); the
    CUDA backend always returns float32.
    """
    from .kernels import driver

    return driver.render_flat(prep, backend, dtype, out_dtype=out_dtype, nthreads=nthreads,
                              tile_pixels=tile_pixels, progress=progress, timings=timings)


def cpu_pass(kind: str, prep: Prepared, dtype: str, out: np.ndarray, first_index: int = -1,
             interp_stop: int = 0, scale: float = 0.0, nthreads: int | None = None) -> float:
    """Run CPU kernel ``kind`` (``render``, ``out_of_range`` or ``phi_loop``) over every pixel.

    See :func:`nbnumba.kernels.driver.run_pass`.  Returns the solid-angle
    sum for ``render``.
    """
    from .kernels import driver

    return driver.run_pass(kind, prep, dtype, out, first_index=first_index, interp_stop=interp_stop,
                           scale=scale, nthreads=nthreads)


def first_swept_pixel(prep: Prepared) -> int:
    """Raster index of the pixel whose first phi sweep starts from the unrotated cell.

    See :func:`nbnumba.kernels.driver.first_swept_pixel`.
    """
    from .kernels import driver

    return driver.first_swept_pixel(prep)


def roi_slices(prep: Prepared) -> tuple[slice, slice]:
    """(slow, fast) slices of the ROI rectangle (C's inclusive bounds)."""
    xmin, xmax, ymin, ymax = prep.roi
    return (slice(max(ymin, 0), max(min(ymax, prep.spixels - 1) + 1, 0)),
            slice(max(xmin, 0), max(min(xmax, prep.fpixels - 1) + 1, 0)))


def roi_mask(prep: Prepared) -> np.ndarray:
    """Boolean (flat) mask of the ROI."""
    from .io._roi import roi_mask as raster_roi_mask

    return raster_roi_mask((prep.spixels, prep.fpixels), prep.roi)


def rendered_mask(prep: Prepared) -> np.ndarray:
    """Boolean (flat) mask of the pixels C renders: inside the ROI, mask != 0."""
    out = roi_mask(prep)
    if prep.config.mask is not None:
        out &= prep.mask != 0
    return out


STATS_BLOCK_ROWS = 256  # rows per block when summing, to keep temporaries small


def statistics(prep: Prepared, image: np.ndarray, omega_total: float, nthreads: int | None = None) -> Statistics:
    """C's statistics from the float32 image, shape (spixels, fpixels).

    Sums are taken in float64 over blocks of rows (numpy's pairwise
    summation inside a block; C sums in raster order, which agrees to the
    printed precision).  Blocks are summed on ``nthreads`` threads (default:
    as the kernel) and combined in block order, so the result does not
    depend on the thread count.
    """
    from . import _threads

    threads = _threads.pass_threads(nthreads)
    rows, cols = roi_slices(prep)
    mask2d = None
    if prep.config.mask is not None:
        mask2d = prep.mask.reshape(prep.spixels, prep.fpixels)
    starts = range(rows.start, rows.stop, STATS_BLOCK_ROWS)

    def first_pass(r0):
        r1 = min(r0 + STATS_BLOCK_ROWS, rows.stop)
        block = image[r0:r1, cols].astype(np.float64)
        if mask2d is not None:
            keep = mask2d[r0:r1, cols] != 0
            vals = block[keep]
        else:
            keep = None
            vals = block.reshape(-1)
        if vals.size == 0:
            return None
        k = int(np.argmax(vals))
        if keep is None:
            r, col = divmod(k, block.shape[1])
        else:
            r, col = np.argwhere(keep)[k]
        return (int(vals.size), float(np.sum(vals)), float(np.dot(vals, vals)), float(vals[k]),
                (r0 + int(r), cols.start + int(col)))

    total = sumsqr = 0.0
    sumn = 0
    max_I = 0.0
    max_at = None
    for part in _threads.map_ordered(first_pass, starts, threads):
        if part is None:
            continue
        size, block_sum, block_sq, block_max, at = part
        sumn += size
        total += block_sum
        sumsqr += block_sq
        if block_max > max_I:
            max_I = block_max
            max_at = at
    max_x = max_y = 0.0
    if max_at is not None:
        spixel, fpixel = max_at
        os_ = prep.sampling.oversample
        sub = prep.detector.pixel_size / os_
        max_x = sub * (fpixel * os_ + os_ - 1) + sub / 2.0
        max_y = sub * (spixel * os_ + os_ - 1) + sub / 2.0
    avg = total / (sumn if sumn > 0 else 1)
    rms = math.sqrt(sumsqr / ((sumn if sumn > 1 else 2) - 1))
    # C's deviation loop covers the whole ROI, masked pixels included
    def second_pass(r0):
        r1 = min(r0 + STATS_BLOCK_ROWS, rows.stop)
        block = image[r0:r1, cols].astype(np.float64).reshape(-1)
        block -= avg
        return float(np.dot(block, block)), block.size

    dev = 0.0
    n_roi = 0
    for block_dev, size in _threads.map_ordered(second_pass, starts, threads):
        dev += block_dev
        n_roi += size
    rmsd = math.sqrt(dev / ((n_roi if n_roi > 1 else 2) - 1))
    return Statistics(max_I=max_I, max_I_x=max_x, max_I_y=max_y, mean=avg, rms=rms, rmsd=rmsd,
                      omega_sum=float(omega_total) / prep.steps, rendered=sumn)

