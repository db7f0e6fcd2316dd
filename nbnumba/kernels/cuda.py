"""CUDA kernels: one thread per pixel around the shared physics.

The per-pixel body is :func:`nbnumba.physics.render_raster_pixel`, compiled
as a CUDA device function by :func:`nbnumba.compile.cuda_functions` -- the
same source the CPU kernel compiles.  Large detectors are rendered in tiles
of whole pixel runs so device memory stays bounded; the output does not
depend on the tiling.
"""

from __future__ import annotations

import functools

import numpy as np

if not hasattr(np, "row_stack"):  # numpy >= 2.5 removed it; numba-cuda 0.30 still registers it
    np.row_stack = np.vstack

from numba import cuda  # noqa: E402

from ..compile import cuda_functions, precision_of, rebind

THREADS_PER_BLOCK = 128
DEFAULT_TILE_PIXELS = 1 << 22  # about 4 million pixels, 64 MB of outputs


# bound per precision by _kernels(); the kernels are compiled from clones
_render_raster_pixel = None
_raster_pixel_out_of_range = None


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
                      start, flags):
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
    phys = cuda_functions(precision)
    namespace = dict(globals())
    namespace.update(_render_raster_pixel=phys.render_raster_pixel,
                     _raster_pixel_out_of_range=phys.raster_pixel_out_of_range)
    return tuple(cuda.jit(rebind(fn, namespace)) for fn in (render_tile, out_of_range_tile))


def render_cuda(prep, dtype: str = "float64", tile_pixels: int | None = None, progress=None,
                threads_per_block: int = THREADS_PER_BLOCK, first_index: int | None = None):
    """Render a prepared run on the GPU.

    Returns the flat float32 ``image`` (raster order) and the summed solid
    angle of the rendered sub-pixels.
    """
    render_tile, out_of_range_tile = _kernels(precision_of(dtype))
    ft = np.float64 if dtype == "float64" else np.float32
    n = prep.fpixels * prep.spixels
    tile = int(tile_pixels or DEFAULT_TILE_PIXELS)
    tile = max(1, min(tile, n))
    d_fp = cuda.to_device(prep.fp.astype(ft))
    d_ip = cuda.to_device(prep.ip)
    d_sources = cuda.to_device(prep.sources.astype(ft))
    d_cells = cuda.to_device(prep.cells.astype(ft))
    d_cells_first = cuda.to_device(prep.cells_first.astype(ft))
    d_fhkl = cuda.to_device(prep.fhkl.astype(ft))
    d_mask = cuda.to_device(prep.mask)
    first = prep.first_pixel_index if first_index is None else first_index
    consts = (d_fp, d_ip, d_sources, d_cells, d_cells_first, d_fhkl, d_mask, first)

    # only the raster span of the ROI is launched
    xmin, xmax, ymin, ymax = prep.roi
    first_idx = max(ymin, 0) * prep.fpixels + max(xmin, 0)
    last_idx = min(min(ymax, prep.spixels - 1) * prep.fpixels + min(xmax, prep.fpixels - 1) + 1, n)
    if last_idx <= first_idx:
        return np.zeros(n, dtype=np.float32), 0.0

    interp_stop = n
    from .. import physics

    if prep.config.mode == "parity" and prep.ip[physics.IP_INTERPOLATE]:
        for start in range(first_idx, last_idx, tile):
            count = min(tile, last_idx - start)
            d_flags = cuda.device_array(count, dtype=np.int8)
            blocks = (count + threads_per_block - 1) // threads_per_block
            out_of_range_tile[blocks, threads_per_block](*consts, start, d_flags)
            hits = np.flatnonzero(d_flags.copy_to_host())
            if hits.size:
                interp_stop = start + int(hits[0])
                break

    image = np.zeros(n, dtype=np.float32)
    omega_total = 0.0
    d_image = cuda.device_array(tile, dtype=np.float32)
    d_omega = cuda.device_array(tile, dtype=ft)
    for start in range(first_idx, last_idx, tile):
        count = min(tile, last_idx - start)
        img_view = d_image[:count]
        om_view = d_omega[:count]
        blocks = (count + threads_per_block - 1) // threads_per_block
        render_tile[blocks, threads_per_block](*consts, interp_stop, prep.scale, start, img_view, om_view)
        image[start:start + count] = img_view.copy_to_host()
        omega_total += float(om_view.copy_to_host().sum(dtype=np.float64))
        if progress is not None:
            progress((start + count - first_idx) / max(last_idx - first_idx, 1))
    return image, omega_total
