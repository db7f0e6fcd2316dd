"""CPU kernels: a ``prange`` loop over pixels around the shared physics.

Compiled kernels are cached on disk (``cache=True``, invalidated when the
physics changes too: see :mod:`nbnumba.kernels._cache`); the per-pixel body,
:func:`nbnumba.physics.render_raster_pixel`, is the same function the CUDA
kernel runs, compiled by :func:`nbnumba.compile.cpu_functions`.
"""

from numba import njit, prange

from ..compile import cpu_functions
from ._cache import install as _install_physics_aware_cache

_install_physics_aware_cache()

_phys = cpu_functions()
render_raster_pixel = _phys.render_raster_pixel
raster_pixel_out_of_range = _phys.raster_pixel_out_of_range
raster_pixel_runs_phi_loop = _phys.raster_pixel_runs_phi_loop


@njit(parallel=True, cache=True, error_model="numpy")
def render_image_cpu(fp, ip, sources, cells, cells_first, fhkl, mask, first_index,
                     interp_stop, scale, start, image):
    """Render pixels ``start .. start+image.size-1`` (raster order) into ``image``.

    Returns the summed solid angle of the rendered sub-pixels (C's statistic).
    """
    omega_total = 0.0
    for i in prange(image.size):
        rendered, value, omega_sum, oor = render_raster_pixel(
            start + i, fp, ip, sources, cells, cells_first, fhkl, mask, first_index, interp_stop, scale
        )
        if rendered:
            image[i] = value
            omega_total += omega_sum
    return omega_total


@njit(parallel=True, cache=True, error_model="numpy")
def find_out_of_range_cpu(fp, ip, sources, cells, cells_first, fhkl, mask, first_index,
                          out_of_range):
    """Flag pixels whose interpolation stencil leaves the HKL grid."""
    for idx in prange(out_of_range.size):
        out_of_range[idx] = raster_pixel_out_of_range(
            idx, fp, ip, sources, cells, cells_first, fhkl, mask, first_index
        )


@njit(parallel=True, cache=True, error_model="numpy")
def find_phi_loop_pixels_cpu(fp, ip, sources, cells, cells_first, fhkl, mask, flags):
    """Flag the rendered pixels where some sub-pixel/source passes ``-dmin``."""
    for idx in prange(flags.size):
        flags[idx] = raster_pixel_runs_phi_loop(idx, fp, ip, sources, cells, cells_first, fhkl, mask)

