"""CPU kernels: a ``prange`` loop over pixels around the shared physics.

Compiled kernels are cached on disk (``cache=True``, invalidated when the
physics changes too: see :mod:`nbnumba.kernels._cache`); the body,
:func:`nbnumba.physics.render_raster_block`, renders a block of pixels
together where it can and otherwise calls, pixel by pixel, the function the
CUDA kernel runs (:func:`nbnumba.physics.render_raster_pixel`), compiled by
:func:`nbnumba.compile.cpu_functions`.  There is
one set of kernels for each precision of the physics build
(:func:`kernels`); the module-level names are the double-precision set.

These are the Numba JIT kernels; by default the CPU backend runs the same
loops from a native library (:mod:`nbnumba.kernels.native`).
"""

import functools
import types

from numba import njit, prange

from ..compile import cpu_functions, rebind
from ._cache import install as _install_physics_aware_cache

_install_physics_aware_cache()

# bound per precision by kernels(); the loops below are compiled from clones
render_raster_block = raster_pixel_out_of_range = raster_pixel_runs_phi_loop = None
raster_blocks = raster_block = None


def render_image(fp, ip, sources, cells, cells_first, fhkl, mask, first_index,
                 interp_stop, scale, start, image):
    """Render pixels ``start .. start+image.size-1`` (raster order) into ``image``, block by block.

    Returns the summed solid angle of the rendered sub-pixels (C's statistic).
    """
    omega_total = 0.0
    for b in prange(raster_blocks(start, image.size, ip)):
        idx, n = raster_block(b, start, image.size, ip)
        omega_total += render_raster_block(0.0, idx, n, fp, ip, sources, cells, cells_first, fhkl, mask,
                                           first_index, interp_stop, scale, image, idx - start)
    return omega_total


def find_out_of_range(fp, ip, sources, cells, cells_first, fhkl, mask, first_index, interp_stop, scale,
                      start, out_of_range):
    """Flag pixels ``start ..`` whose interpolation stencil leaves the HKL grid (returns 0.0)."""
    for i in prange(out_of_range.size):
        out_of_range[i] = raster_pixel_out_of_range(
            start + i, fp, ip, sources, cells, cells_first, fhkl, mask, first_index
        )
    return 0.0


def find_phi_loop_pixels(fp, ip, sources, cells, cells_first, fhkl, mask, first_index, interp_stop, scale,
                         start, flags):
    """Flag the rendered pixels ``start ..`` where some sub-pixel/source passes ``-dmin`` (returns 0.0)."""
    for i in prange(flags.size):
        flags[i] = raster_pixel_runs_phi_loop(start + i, fp, ip, sources, cells, cells_first, fhkl, mask)
    return 0.0


# the kernel of each kind of pass (nbnumba.kernels.driver); all take the
# run constants of nbnumba.kernels.interface, then start and the output
KERNEL_OF_KIND = {"render": "render_image", "out_of_range": "find_out_of_range", "phi_loop": "find_phi_loop_pixels"}


@functools.cache
def kernels(precision: str = "double") -> types.SimpleNamespace:
    """The three ``prange`` kernels bound to the physics build of ``precision``.

    Each precision's kernels have their own names (``render_image_cpu``,
    ``render_image_cpu_single``, ...), hence their own entries in Numba's
    on-disk cache.
    """
    phys = cpu_functions(precision)
    namespace = dict(globals())
    namespace.update(render_raster_block=phys.render_raster_block,
                     raster_pixel_out_of_range=phys.raster_pixel_out_of_range,
                     raster_pixel_runs_phi_loop=phys.raster_pixel_runs_phi_loop,
                     raster_blocks=phys.raster_blocks, raster_block=phys.raster_block)
    suffix = "_cpu" if precision == "double" else f"_cpu_{precision}"
    built = {}
    for fn in (render_image, find_out_of_range, find_phi_loop_pixels):
        clone = rebind(fn, namespace, fn.__name__ + suffix)
        built[fn.__name__] = njit(parallel=True, cache=True, error_model="numpy")(clone)
    return types.SimpleNamespace(**built)


_double = kernels("double")
render_image_cpu = _double.render_image
find_out_of_range_cpu = _double.find_out_of_range
find_phi_loop_pixels_cpu = _double.find_phi_loop_pixels


# --- the per-reflection variant (nbnumba.reflection_fit) ---------------------------------------------------

raster_reflection_terms = None  # bound by reflection_kernel()


def reflection_terms(fp, ip, sources, cells, cells_first, fhkl, mask, first_index, interp_stop, scale, start,
                     slot_hkl, slot_c, background, used, overflow):
    """Split pixels ``start .. start+background.size-1`` by reflection.

    See :func:`nbnumba.physics.pixel_reflection_terms`.  The run constants
    come as :mod:`nbnumba.kernels.interface` declares them (``interp_stop``
    unused: interpolation is off).  Row ``i`` of ``slot_hkl`` (K x 3 per
    pixel) and ``slot_c`` (K per pixel) receives the reflections of pixel
    ``start + i`` and their coefficients, ``used[i]`` how many,
    ``overflow[i]`` 1 where the pixel saw more than K; ``background[i]`` the
    part without structure factors.  Returns the number of overflowing
    pixels.
    """
    n_over = 0
    for i in prange(background.size):
        rendered, bg, n, over = raster_reflection_terms(
            start + i, fp, ip, sources, cells, cells_first, fhkl, mask, first_index, scale, slot_hkl[i], slot_c[i]
        )
        if rendered:
            background[i] = bg
            used[i] = n
            overflow[i] = over
            n_over += over
    return n_over


@functools.cache
def reflection_kernel():
    """The ``prange`` kernel :func:`reflection_terms`, bound to the double-precision physics build."""
    phys = cpu_functions("double")
    namespace = dict(globals())
    namespace.update(raster_reflection_terms=phys.raster_reflection_terms)
    clone = rebind(reflection_terms, namespace, "reflection_terms_cpu")
    return njit(parallel=True, cache=True, error_model="numpy")(clone)
