"""The backend-neutral kernel driver: what runs, over which pixels, in which order.

:func:`render_flat` renders a prepared run on any backend.  It owns every
decision that is not the launch itself:

* the run-constant arrays in the kernel's precision
  (:func:`nbnumba.kernels.interface.kernel_arrays`);
* the parity pre-passes: the ``-dmin`` carry-over pass that finds the pixel
  whose first phi sweep starts from the unrotated cell
  (:func:`first_swept_pixel`), and the interpolation out-of-range pass that
  finds where C switches interpolation off (:func:`first_out_of_range`);
* the span of raster pixels to launch (the ROI's, :func:`roi_span`), its
  tiles, and the progress reports of the whole run (a backend reports the
  fraction of one launch done).

A backend only launches: ``upload(arrays)`` puts the run constants where its
kernels read them, and ``launch(kind, arrays, first_index, interp_stop,
scale, start, out)`` runs kernel ``kind`` (``render``, ``out_of_range`` or
``phi_loop``) on raster pixels ``start .. start+out.size-1`` into the host
array ``out`` and returns the summed solid angle (``render``) or 0;
``launch(..., progress=f)`` calls ``f`` with the fraction of it done.
Backends: :class:`CpuBackend` (the native library of
:mod:`nbnumba.kernels.native`, else the Numba ``prange`` kernels of
:mod:`nbnumba.kernels.cpu`) and :class:`nbnumba.kernels.cuda.CudaBackend`.
"""

from __future__ import annotations

import numpy as np

from .interface import KernelArrays, kernel_arrays

KINDS = ("render", "out_of_range", "phi_loop")
PROGRESS_STEPS = 20  # progress reports of a CPU run (whole-row tiles of about 5%)


class CpuBackend:
    """Launch on the CPU: the native library where it can be used, else the Numba ``prange`` kernels.

    Both compile the same physics and give the same bits.  The choice is
    made per kernel kind on first launch (:func:`nbnumba.kernels.native.load`).
    """

    name = "cpu"

    def __init__(self, dtype: str = "float64", nthreads: int | None = None, row: int = 1):
        self.dtype = dtype
        self.nthreads = nthreads
        self.row = max(1, int(row))

    def upload(self, arrays: KernelArrays) -> KernelArrays:
        """The arrays as the kernels read them (host memory: unchanged)."""
        return arrays

    def launch(self, kind: str, arrays: KernelArrays, first_index: int, interp_stop: int, scale: float,
               start: int, out: np.ndarray, progress=None) -> float:
        """Run kernel ``kind`` on raster pixels ``start .. start+out.size-1`` into ``out``.

        ``progress``, if given, is called with the fraction of this launch
        done, about every 5% (the CPU reports while it renders, without
        waiting for all threads at each step).
        """
        from . import native

        kernel = native.load(kind, self.dtype, out.dtype.name)
        if kernel is not None:
            return native.run(kernel, arrays, first_index, interp_stop, scale, out, start=start,
                              nthreads=self.nthreads, row=self.row, progress=progress)
        from ..compile import precision_of
        from . import cpu

        if self.nthreads is not None:
            import numba

            numba.set_num_threads(max(1, min(int(self.nthreads), numba.config.NUMBA_NUM_THREADS)))
        kern = getattr(cpu.kernels(precision_of(self.dtype)), cpu.KERNEL_OF_KIND[kind])
        if progress is None:
            return kern(*arrays, first_index, interp_stop, scale, start, out)
        n = out.size
        step = max(1, -(-n // (PROGRESS_STEPS * self.row))) * self.row  # whole rows, about 5% each
        total = 0.0
        for lo, hi in _split(0, n, step):
            total += kern(*arrays, first_index, interp_stop, scale, start + lo, out[lo:hi])
            progress(hi / n)
        return total

    def tiles(self, lo: int, hi: int, tile_pixels: int | None) -> list[tuple[int, int]]:
        """The whole span at once, unless ``tile_pixels`` bounds a launch."""
        return _split(lo, hi, int(tile_pixels)) if tile_pixels else [(lo, hi)]


def _split(lo: int, hi: int, step: int) -> list[tuple[int, int]]:
    step = max(1, step)
    return [(a, min(a + step, hi)) for a in range(lo, hi, step)]


def make_backend(backend, dtype: str, nthreads: int | None = None, row: int = 1):
    """The backend object of ``backend`` (``cpu`` or ``cuda``); a backend object is returned as it is."""
    if not isinstance(backend, str):
        return backend
    if backend == "cuda":
        from .cuda import CudaBackend

        return CudaBackend(dtype)
    if backend != "cpu":
        raise ValueError(f"unknown backend {backend!r}")
    return CpuBackend(dtype, nthreads=nthreads, row=row)


def roi_span(prep) -> tuple[int, int]:
    """Raster indices ``[lo, hi)`` from the first to past the last pixel of the ROI (empty: lo >= hi)."""
    n = prep.fpixels * prep.spixels
    xmin, xmax, ymin, ymax = prep.roi
    lo = max(ymin, 0) * prep.fpixels + max(xmin, 0)
    hi = min(min(ymax, prep.spixels - 1) * prep.fpixels + min(xmax, prep.fpixels - 1) + 1, n)
    return lo, max(lo, hi)


def _physics(name: str):
    from .. import physics

    return getattr(physics, name)


def _first_flagged(backend, kind: str, arrays, first_index: int, tiles) -> int:
    """Raster index of the first pixel kernel ``kind`` flags, over ``tiles`` in order; -1 if none."""
    for lo, hi in tiles:
        flags = np.zeros(hi - lo, dtype=np.int8)
        backend.launch(kind, arrays, first_index, 0, 0.0, lo, flags)
        hits = np.flatnonzero(flags)
        if hits.size:
            return lo + int(hits[0])
    return -1


def first_swept_pixel(prep) -> int:
    """Raster index of the pixel whose first phi sweep starts from the unrotated cell.

    That is the first rendered pixel, unless ``-dmin`` skips every source of
    the first pixels (then C's carry-over state is still fresh when it
    reaches a later pixel).  Only parity mode with a phi step of exactly 0
    depends on it; the pass runs on the CPU in double precision.
    """
    first = prep.first_pixel_index
    if prep.config.mode != "parity" or first < 0 or not prep.fp[_physics("FP_DMIN")] > 0.0:
        return first
    if np.array_equal(prep.cells, prep.cells_first):
        return first
    backend = CpuBackend("float64", row=prep.fpixels)
    lo, hi = roi_span(prep)
    return _first_flagged(backend, "phi_loop", kernel_arrays(prep, "float64"), -1, [(lo, hi)])


def first_out_of_range(prep, backend, arrays, first_index: int, tiles) -> int:
    """Where parity mode switches interpolation off: the first pixel whose stencil leaves the HKL grid.

    Returns the raster index, or the pixel count when interpolation stays on
    (spec mode never switches it off).
    """
    n = prep.fpixels * prep.spixels
    if prep.config.mode != "parity" or not prep.ip[_physics("IP_INTERPOLATE")]:
        return n
    hit = _first_flagged(backend, "out_of_range", arrays, first_index, tiles)
    return n if hit < 0 else hit


def out_of_grid_pixel(prep) -> int:
    """The first pixel (raster index) whose interpolation stencil leaves the HKL grid, in either mode.

    -1 when interpolation is off or every stencil stays inside the grid.
    Runs the out-of-range pass on the CPU in double precision.
    """
    if not prep.ip[_physics("IP_INTERPOLATE")]:
        return -1
    lo, hi = roi_span(prep)
    if hi <= lo:
        return -1
    backend = CpuBackend("float64", row=prep.fpixels)
    return _first_flagged(backend, "out_of_range", kernel_arrays(prep, "float64"), first_swept_pixel(prep), [(lo, hi)])


def render_flat(prep, backend="cpu", dtype: str = "float64", out_dtype=np.float32,
                nthreads: int | None = None, tile_pixels: int | None = None, progress=None,
                timings: dict | None = None) -> tuple[np.ndarray, float]:
    """Render a prepared run; return the flat image (raster order) and the summed solid angle.

    ``backend`` is ``cpu``, ``cuda`` or a backend object (a
    :class:`nbnumba.kernels.cuda.CudaBackend` with its own block size, say).
    The CPU backend can write the pixel values before C's float32 rounding
    (``out_dtype=np.float64``, used by the finite-difference gradients); the
    CUDA backend always returns float32.  ``tile_pixels`` bounds the pixels
    of one launch (CUDA: device memory); ``progress`` is called with the
    fraction done after each tile.  ``timings``, if given, receives
    ``device_kernel_s`` on the CUDA backend: the kernels' own time on the
    device (CUDA events), without transfers or host work.
    """
    n = prep.fpixels * prep.spixels
    first_index = first_swept_pixel(prep)
    runner = make_backend(backend, dtype, nthreads=nthreads, row=prep.fpixels)
    if runner.name == "cuda":
        out_dtype = np.float32
    image = np.zeros(n, dtype=out_dtype)
    lo, hi = roi_span(prep)
    if hi <= lo:
        return image, 0.0
    arrays = runner.upload(kernel_arrays(prep, dtype))
    tiles = runner.tiles(lo, hi, tile_pixels)
    interp_stop = first_out_of_range(prep, runner, arrays, first_index, tiles)
    omega_total = 0.0
    for a, b in tiles:
        report = None
        if progress is not None:
            def report(fraction, a=a, b=b):
                progress((a - lo + fraction * (b - a)) / (hi - lo))
        omega_total += runner.launch("render", arrays, first_index, interp_stop, prep.scale, a, image[a:b],
                                     progress=report)
    if timings is not None and hasattr(runner, "device_seconds"):
        timings["device_kernel_s"] = runner.device_seconds
    return image, omega_total


def run_pass(kind: str, prep, dtype: str, out: np.ndarray, first_index: int = -1, interp_stop: int = 0,
             scale: float = 0.0, nthreads: int | None = None) -> float:
    """Run CPU kernel ``kind`` over every pixel of ``prep`` into ``out`` (one entry per pixel)."""
    if kind not in KINDS:
        raise ValueError(f"kernel kind must be one of {KINDS}, not {kind!r}")
    backend = CpuBackend(dtype, nthreads=nthreads, row=prep.fpixels)
    return backend.launch(kind, kernel_arrays(prep, dtype), first_index, interp_stop, scale, 0, out)
