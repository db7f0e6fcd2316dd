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
# Registers per thread of the kernels.  Uncapped, the compiler takes 255 and
# an H200 runs 8 warps per multiprocessor (12.5% occupancy, Nsight Compute);
# capped at 64 some values spill to (cached) local memory but four times as
# many warps run: 19-33% less kernel time on W2 and W3 in every mode and
# precision (bench/results/gpu-H200-2026-11-30.json, sweep_*).  Register
# allocation does not change the arithmetic.
MAX_REGISTERS = 64
DEFAULT_TILE_PIXELS = 1 << 24  # about 16 million pixels (64 MB of float32 image): a Pilatus 6M in one launch


# bound per precision by _kernels(); the kernels are compiled from clones
cuda = None
THREADS = THREADS_PER_BLOCK  # block size of the render kernel's reduction
float64 = None  # numba.float64
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
                interp_stop, scale, start, image, omega_blocks):
    """One thread per pixel of the tile starting at raster index ``start``.

    Each block also sums its pixels' solid angles in shared memory (a fixed
    tree, so the total does not depend on scheduling) into
    ``omega_blocks[block]``: only one number per block leaves the device.
    """
    t = cuda.grid(1)
    lane = cuda.threadIdx.x
    partial = cuda.shared.array(THREADS, float64)
    omega_sum = 0.0
    if t < image.size:
        rendered, value, omega_pixel, oor = _render_raster_pixel(
            start + t, fp, ip, sources, cells, cells_first, fhkl, mask, first_index,
            interp_stop, scale,
        )
        if rendered:
            image[t] = value
            omega_sum = omega_pixel
        else:
            image[t] = 0.0
    partial[lane] = omega_sum
    cuda.syncthreads()
    stride = THREADS // 2
    while stride > 0:
        if lane < stride:
            partial[lane] += partial[lane + stride]
        cuda.syncthreads()
        stride //= 2
    if lane == 0:
        omega_blocks[cuda.blockIdx.x] = partial[0]


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
def _kernels(precision: str = "double", threads: int = THREADS_PER_BLOCK, max_registers: int | None = MAX_REGISTERS):
    """``render_tile`` and ``out_of_range_tile`` bound to the physics build of ``precision``.

    ``threads`` (a power of two) is the block size the render kernel's
    shared-memory reduction is compiled for; ``max_registers`` caps the
    registers per thread (None: the compiler's choice).
    """
    if threads < 1 or threads & (threads - 1):
        raise ValueError(f"threads per block must be a power of two, not {threads}")
    module = _cuda()
    from numba import config, float64

    options = {}
    if max_registers is not None and not config.ENABLE_CUDASIM:  # the simulator has no registers
        options["max_registers"] = int(max_registers)
    with _numpy_row_stack():
        phys = cuda_functions(precision)
        namespace = dict(globals())
        namespace.update(cuda=module, _render_raster_pixel=phys.render_raster_pixel,
                         _raster_pixel_out_of_range=phys.raster_pixel_out_of_range,
                         THREADS=int(threads), float64=float64)
        return tuple(module.jit(rebind(fn, namespace), **options) for fn in (render_tile, out_of_range_tile))


class CudaBackend:
    """Launch on the GPU (or Numba's CUDA simulator); the output is always float32.

    Parameters
    ----------
    dtype : {'float64', 'float32'}
        Precision of the physics build.
    threads_per_block : int, optional
        Block size (a power of two; default :data:`THREADS_PER_BLOCK`).
    max_registers : int or None, optional
        Cap on registers per thread (default :data:`MAX_REGISTERS`; 0 for
        the compiler's choice).

    Attributes
    ----------
    device_seconds : float
        Kernel time on the device, summed over this backend's launches, as
        CUDA events measure it (no transfers, no host work).
    """

    name = "cuda"

    def __init__(self, dtype: str = "float64", threads_per_block: int | None = None,
                 max_registers: int | None = None):
        self.dtype = dtype
        self.threads_per_block = int(threads_per_block or THREADS_PER_BLOCK)
        self.max_registers = MAX_REGISTERS if max_registers is None else (int(max_registers) or None)
        self.device_seconds = 0.0
        self._buffers: dict = {}

    def kernels(self):
        """The ``(render, out_of_range)`` kernels this backend launches."""
        return _kernels(precision_of(self.dtype), self.threads_per_block, self.max_registers)

    def upload(self, arrays):
        """The run constants copied to the device (same order as ``arrays``)."""
        cuda_module = _cuda()
        return tuple(cuda_module.to_device(a) for a in arrays)

    def tiles(self, lo: int, hi: int, tile_pixels: int | None) -> list[tuple[int, int]]:
        """Tiles of ``tile_pixels`` (default about 16 million) pixels: bounds device memory."""
        step = max(1, min(int(tile_pixels or DEFAULT_TILE_PIXELS), hi - lo))
        return [(a, min(a + step, hi)) for a in range(lo, hi, step)]

    def _buffer(self, name: str, size: int, dtype):
        held = self._buffers.get(name)
        if held is None or held.size < size:
            held = self._buffers[name] = _cuda().device_array(size, dtype=dtype)
        return held[:size]

    def _timed(self, kernel, blocks, args):
        """Launch ``kernel`` on ``blocks`` blocks and add its event-measured time to :attr:`device_seconds`."""
        module = _cuda()
        begin, end = module.event(), module.event()
        with _numpy_row_stack():
            begin.record()
            kernel[blocks, self.threads_per_block](*args)
            end.record()
        end.synchronize()
        self.device_seconds += begin.elapsed_time(end) / 1000.0

    def launch(self, kind: str, arrays, first_index: int, interp_stop: int, scale: float, start: int,
               out: np.ndarray, progress=None) -> float:
        """Run ``kind`` (``render`` or ``out_of_range``) on pixels ``start ..`` into host array ``out``.

        ``progress`` is called with 1.0 once the launch is done.
        """
        render, out_of_range = self.kernels()
        count = out.size
        blocks = (count + self.threads_per_block - 1) // self.threads_per_block
        if kind == "out_of_range":
            flags = self._buffer("flags", count, np.int8)
            self._timed(out_of_range, blocks, (*arrays, first_index, interp_stop, scale, start, flags))
            _copy_to_host(flags, out)
            return 0.0
        if kind != "render":
            raise ValueError(f"the CUDA backend has no {kind!r} kernel")
        image = self._buffer("image", count, np.float32)
        omega_blocks = self._buffer("omega", blocks, np.float64)
        self._timed(render, blocks, (*arrays, first_index, interp_stop, scale, start, image, omega_blocks))
        _copy_to_host(image, out)
        total = float(omega_blocks.copy_to_host().sum(dtype=np.float64))
        if progress is not None:
            progress(1.0)
        return total


def _copy_to_host(device_array, out: np.ndarray) -> None:
    """Copy ``device_array`` into host array ``out`` (directly where ``out`` is contiguous and of its type)."""
    if out.flags.c_contiguous and out.dtype == device_array.dtype:
        device_array.copy_to_host(out)
    else:
        out[...] = device_array.copy_to_host()
