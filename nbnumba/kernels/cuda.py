"""CUDA kernels: one thread per pixel around the shared physics.

The per-pixel body is :func:`nbnumba.physics.render_raster_pixel`, compiled
as a CUDA device function by :func:`nbnumba.compile.cuda_functions` -- the
same source the CPU kernel compiles.  :class:`CudaBackend` only launches:
which pixels, in which tiles, and the parity pre-passes are decided by
:mod:`nbnumba.kernels.driver`; the output does not depend on the tiling.

numba-cuda 0.30 refers to ``numpy.row_stack``, which numpy 2.5 removed.
Rather than patching numpy for the whole process, the alias is put in place
only while numba-cuda is imported and the kernels are compiled (they
compile at their first launch, so launches are inside it too:
:func:`_numpy_row_stack`), and removed again afterwards.
"""

from __future__ import annotations

import contextlib
import functools

import numpy as np

from ..compile import cuda_functions, precision_of, rebind

THREADS_PER_BLOCK = 128
DEFAULT_TILE_PIXELS = 1 << 22  # about 4 million pixels, 64 MB of outputs


# bound per precision by _kernels(); the kernels are compiled from clones
cuda = None
_render_raster_pixel = None
_raster_pixel_out_of_range = None


@contextlib.contextmanager
def _numpy_row_stack():
    """``numpy.row_stack`` as an alias of ``vstack`` for the duration of the block, where numpy lacks it."""
    missing = "row_stack" not in np.__dict__
    if missing:
        np.row_stack = np.vstack
    try:
        yield
    finally:
        if missing:
            del np.row_stack


@functools.cache
def _cuda():
    """``numba.cuda``, imported with the numpy alias numba-cuda needs."""
    import importlib

    with _numpy_row_stack():
        from numba import cuda as module

        try:  # the module that refers to numpy.row_stack, otherwise imported at the first compilation
            importlib.import_module("numba.cuda.np.arrayobj")
        except ImportError:  # pragma: no cover - layout of other numba-cuda versions
            pass
    return module


def render_tile(fp, ip, sources, cells, cells_first, fhkl, mask, first_index,
                interp_stop, scale, start, image, omega):
    """One thread per pixel of the tile starting at raster index ``start``."""
    t = cuda.grid(1)
    if t >= image.size:
        return
    rendered, value, omega_sum, oor = _render_raster_pixel(
        start + t, fp, ip, sources, cells, cells_first, fhkl, mask, first_index,
        interp_stop, scale,
    )
    if rendered:
        image[t] = value
        omega[t] = omega_sum
    else:
        image[t] = 0.0
        omega[t] = 0.0


def out_of_range_tile(fp, ip, sources, cells, cells_first, fhkl, mask, first_index,
                      interp_stop, scale, start, flags):
    """Flag the tile's pixels whose interpolation stencil leaves the grid."""
    t = cuda.grid(1)
    if t >= flags.size:
        return
    flags[t] = _raster_pixel_out_of_range(
        start + t, fp, ip, sources, cells, cells_first, fhkl, mask, first_index
    )


@functools.cache
def _kernels(precision: str = "double"):
    """``render_tile`` and ``out_of_range_tile`` bound to the physics build of ``precision``."""
    module = _cuda()
    with _numpy_row_stack():
        phys = cuda_functions(precision)
        namespace = dict(globals())
        namespace.update(cuda=module, _render_raster_pixel=phys.render_raster_pixel,
                         _raster_pixel_out_of_range=phys.raster_pixel_out_of_range)
        return tuple(module.jit(rebind(fn, namespace)) for fn in (render_tile, out_of_range_tile))


class CudaBackend:
    """Launch on the GPU (or Numba's CUDA simulator); the output is always float32."""

    name = "cuda"

    def __init__(self, dtype: str = "float64", threads_per_block: int = THREADS_PER_BLOCK):
        self.dtype = dtype
        self.threads_per_block = threads_per_block
        self._buffers: dict = {}

    def upload(self, arrays):
        """The run constants copied to the device (same order as ``arrays``)."""
        cuda_module = _cuda()
        return tuple(cuda_module.to_device(a) for a in arrays)

    def tiles(self, lo: int, hi: int, tile_pixels: int | None) -> list[tuple[int, int]]:
        """Tiles of ``tile_pixels`` (default about 4 million) pixels: bounds device memory."""
        step = max(1, min(int(tile_pixels or DEFAULT_TILE_PIXELS), hi - lo))
        return [(a, min(a + step, hi)) for a in range(lo, hi, step)]

    def _buffer(self, name: str, size: int, dtype):
        held = self._buffers.get(name)
        if held is None or held.size < size:
            held = self._buffers[name] = _cuda().device_array(size, dtype=dtype)
        return held[:size]

    def launch(self, kind: str, arrays, first_index: int, interp_stop: int, scale: float, start: int,
               out: np.ndarray, progress=None) -> float:
        """Run ``kind`` (``render`` or ``out_of_range``) on pixels ``start ..`` into host array ``out``.

        ``progress`` is called with 1.0 once the launch is done.
        """
        render, out_of_range = _kernels(precision_of(self.dtype))
        count = out.size
        blocks = (count + self.threads_per_block - 1) // self.threads_per_block
        if kind == "out_of_range":
            flags = self._buffer("flags", count, np.int8)
            with _numpy_row_stack():
                out_of_range[blocks, self.threads_per_block](*arrays, first_index, interp_stop, scale, start, flags)
            out[...] = flags.copy_to_host()
            return 0.0
        if kind != "render":
            raise ValueError(f"the CUDA backend has no {kind!r} kernel")
        ft = np.float64 if self.dtype == "float64" else np.float32
        image = self._buffer("image", count, np.float32)
        omega = self._buffer("omega", count, ft)
        with _numpy_row_stack():
            render[blocks, self.threads_per_block](*arrays, first_index, interp_stop, scale, start, image, omega)
        out[...] = image.copy_to_host()
        total = float(omega.copy_to_host().sum(dtype=np.float64))
        if progress is not None:
            progress(1.0)
        return total
