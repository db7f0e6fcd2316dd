"""Compile the scalar physics of :mod:`nbnumba.physics` (and C's random generators) for each backend.

The functions in :mod:`nbnumba.physics` are plain Python.  For a target we
clone every function with a fresh globals dictionary in which each physics
name is bound to that target's compiled version, then decorate the clone.
Numba resolves global names when it compiles, so a call such as
``sincg(...)`` inside ``lattice_factor`` binds to the CPU or the CUDA build
of ``sincg`` as appropriate: one source, two compilations.

The random generators of :mod:`nbnumba.rng` go the same way
(:func:`rng_functions`): one source, compiled for the Numba JIT, for the
native noise kernel, or left as plain Python for the command line's setup.
"""

from __future__ import annotations

import functools
import inspect
import types

from . import physics


def rebind(fn, namespace: dict, name: str | None = None, code: types.CodeType | None = None):
    """A copy of function ``fn`` whose global names are looked up in ``namespace``.

    Numba reads a function's globals when it compiles it, so decorating such
    a copy binds the calls in ``fn`` to whatever ``namespace`` holds: how
    one physics source is compiled for each backend and precision, and how
    kernels are bound to a physics build.  ``name`` (default ``fn``'s)
    becomes the copy's name and qualified name; ``code`` replaces the body.
    """
    clone = types.FunctionType(code or fn.__code__, namespace, name or fn.__name__, fn.__defaults__,
                               fn.__closure__)
    clone.__qualname__ = name or fn.__qualname__
    clone.__module__ = fn.__module__
    clone.__doc__ = fn.__doc__
    return clone


def _physics_function_names() -> list[str]:
    return [
        name
        for name, obj in vars(physics).items()
        if inspect.isfunction(obj) and obj.__module__ == physics.__name__
    ]


# small leaf functions that the CPU build inlines at the Numba level (LLVM
# does not inline them across Numba's calling convention on its own)
CPU_INLINE = frozenset({"sinpi_small", "cospi_small", "sincg_reduced", "sincg", "sinc3", "unit3", "cross3",
                        "nearest_structure_factor", "subpixel_position", "render_pixel",
                        "render_raster_pixel", "raster_position", "lattice_factor", "interpolation_out_of_range",
                        "rotate_about_axis", "polarization_factor", "to_float", "narrow", "floor_int", "ceil_int",
                        "solid_angle", "layer_capture_fraction", "scattering_vector", "beyond_resolution",
                        "source_polarization", "miller_indices", "fractional_indices", "distance_and_direction",
                        "reflection_slot", "scale_terms", "chebyshev_u", "block_miller", "block_axis",
                        "block_sum", "fast_path_applies", "lanes_apply", "lanes_take", "lanes_sum",
                        "block_lattice_factors", "lanes_phi_mosaic_sum", "render_raster_block",
                        "raster_blocks", "raster_block", "subpixel_constants", "evaluation_term",
                        "block_evaluation_applies", "pixel_value"})


PRECISIONS = ("double", "single")
# pixels rendered together by the CPU builds (physics.PIXEL_LANES), per precision
PIXEL_LANES = {"double": 16, "single": 64}


def pixel_lanes(precision: str) -> int:
    """``physics.PIXEL_LANES`` of a CPU build: :data:`PIXEL_LANES`, or 1 where Numba uses Intel's SVML.

    With SVML, LLVM may turn the math-library calls of the lane loops
    (``exp`` of the capture fraction, ``atan2``/``cos`` of the polarization)
    into SVML vector calls, which differ from the scalar library in the last
    bits; the pixel-by-pixel path calls the scalar library, so the lanes
    could no longer match it.  Either build is correct, so the native
    library's cache key need not know which one it holds.
    """
    from numba import config

    return 1 if getattr(config, "USING_SVML", False) else PIXEL_LANES[precision]


def _float32_literals(code: types.CodeType) -> types.CodeType:
    """``code`` with each float literal (also inside folded tuples) as a numpy float32.

    Numba types a Python float literal as float64, so ``h - 0.5`` with a
    float32 ``h`` would be evaluated in double precision.
    """
    import numpy as np

    def convert(c):
        if type(c) is float:
            return np.float32(c)
        if type(c) is tuple:  # folded constants such as ``return 0.0, 0.0, 0.0``
            return tuple(convert(x) for x in c)
        return c

    return code.replace(co_consts=tuple(convert(c) for c in code.co_consts))


def precision_of(dtype: str) -> str:
    """``single`` for float32 kernels, ``double`` for float64."""
    return "single" if str(dtype) == "float32" else "double"


def _build(decorate, precision: str = "double", target_bindings: dict | None = None) -> types.SimpleNamespace:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    variants = physics.SINGLE_PRECISION_VARIANTS if precision == "single" else {}
    namespace = dict(vars(physics))
    target_bindings = target_bindings or {}
    namespace.update(target_bindings)
    if precision == "single":
        import numpy as np
        from numba import types as nbtypes

        # conversions as Numba types: callable in CPU and CUDA code alike
        namespace.update(float32=nbtypes.float32, float64=nbtypes.float64)
        for key, value in list(namespace.items()):
            if type(value) is float:  # module constants such as PI
                namespace[key] = np.float32(value)
    sources = {}
    for name in _physics_function_names():
        if name in variants.values() or name in target_bindings:
            continue  # compiled under the name it replaces, or bound for the target
        fn = getattr(physics, variants.get(name, name))
        sources[name] = (fn, fn.__code__ if precision == "double" else _float32_literals(fn.__code__))
    return compile_set(sources, namespace, decorate)


def compile_set(sources: dict, namespace: dict, decorate) -> types.SimpleNamespace:
    """Compile a set of functions that call each other: each clone bound to the others' compiled versions.

    ``sources`` maps each name to ``(function, code)``; ``namespace`` is the
    globals dictionary the clones share (updated in place with the compiled
    functions); ``decorate(clone, name)`` compiles one clone.
    """
    compiled = {}
    for name, (fn, code) in sources.items():
        compiled[name] = decorate(rebind(fn, namespace, name, code), name)
        namespace[name] = compiled[name]
    return types.SimpleNamespace(**compiled)


def cpu_bindings(precision: str = "double") -> dict:
    """What the CPU builds bind in place of physics' portable placeholders.

    ``FAST_PATH`` on; ``FAST_LANES`` the vector width of the precision's
    lattice-factor type; ``scratch_block`` a float64 array of
    ``physics.FAST_BLOCK`` on the stack of the calling function (the CPU
    builds have no allocator), ``scratch_block_real`` the same of the
    precision's lattice-factor type (float32 for ``single``); ``floor_float`` and ``ceil_float`` the
    rounding instructions (``np.floor``/``np.ceil`` of a scalar), which
    vectorise where ``float(math.floor(x))`` goes through an integer;
    ``PIXEL_LANES`` (:func:`pixel_lanes`) and its work arrays
    ``scratch_lanes`` (float64) and ``scratch_lanes_real``, likewise on the
    stack.
    """
    import numpy as np
    from numba import njit
    from numba import types as nbtypes

    from .kernels._numba_internals import stack_array

    block = physics.FAST_BLOCK

    def floor_float(x):
        return np.floor(x)

    def ceil_float(x):
        return np.ceil(x)

    options = dict(cache=False, nogil=True, error_model="numpy", _nrt=False, inline="always")
    real = (nbtypes.float32, 4) if precision == "single" else (nbtypes.float64, 8)
    # the per-axis loops run in whole vectors of the lattice-factor type (AVX2: 8 float32, 4 float64)
    lanes = 8 if precision == "single" else 4
    if block % lanes:  # the rounded-up block must stay within the stack arrays
        raise ValueError(f"physics.FAST_BLOCK ({block}) must be a multiple of {lanes}")
    lanes_of_pixels = pixel_lanes(precision)
    return {"FAST_PATH": True, "FAST_LANES": lanes, "scratch_block": stack_array(nbtypes.float64, 8, block),
            "scratch_block_real": stack_array(*real, block),
            "PIXEL_LANES": lanes_of_pixels, "scratch_lanes": stack_array(nbtypes.float64, 8, lanes_of_pixels),
            "scratch_lanes_real": stack_array(*real, lanes_of_pixels),
            "floor_float": njit(**options)(floor_float), "ceil_float": njit(**options)(ceil_float)}


@functools.cache
def cpu_functions(precision: str = "double", fast_path: bool = True) -> types.SimpleNamespace:
    """The physics compiled with ``numba.njit`` (CPU).

    ``precision="single"`` is the build of the float32 kernels: the
    functions of ``physics.SINGLE_PRECISION_VARIANTS`` (shorter series, as
    accurate as float32 can hold) replace their double-precision versions.
    The placeholders of :func:`cpu_bindings` are bound to their CPU versions;
    ``fast_path=False`` leaves ``physics.FAST_PATH`` off (the general loop
    only: what the tests compare the fast path with).
    """
    from numba import njit

    def decorate(fn, name):
        inline = "always" if name in CPU_INLINE else "never"
        return njit(fn, cache=False, nogil=True, error_model="numpy", _nrt=False, inline=inline)

    bindings = cpu_bindings(precision)
    bindings["FAST_PATH"] = fast_path
    return _build(decorate, precision, bindings)


@functools.cache
def cuda_functions(precision: str = "double") -> types.SimpleNamespace:
    """The physics compiled with ``numba.cuda.jit(device=True)`` (see :func:`cpu_functions`)."""
    from numba import cuda

    return _build(lambda fn, name: cuda.jit(fn, device=True), precision)


RNG_TARGETS = ("jit", "native", "python")


@functools.cache
def rng_functions(target: str = "jit") -> types.SimpleNamespace:
    """The generators of :mod:`nbnumba.rng` (``rng.COMPILED``) built for ``target``.

    ``jit``
        ``numba.njit(cache=True)``: the module-level functions of
        :mod:`nbnumba.rng`;
    ``native``
        ``numba.njit(error_model="numpy")``, for the native noise kernel of
        :mod:`nbnumba.kernels.native_build`;
    ``python``
        plain Python (no Numba), bound to each other: the setup draws of the
        command line.  The same numbers bit for bit, since the sources round
        to float32 where C does and take powers of float32 values with
        numpy's ``powf``.
    """
    from . import rng

    if target not in RNG_TARGETS:
        raise ValueError(f"target must be one of {RNG_TARGETS}, not {target!r}")
    if target == "python":
        def decorate(fn, name):
            return fn
    else:
        from numba import njit

        options = {"cache": True} if target == "jit" else {"error_model": "numpy"}

        def decorate(fn, name):
            return njit(**options)(fn)

    sources = {name: (fn, fn.__code__) for name, fn in rng.SOURCES.items()}
    return compile_set(sources, dict(vars(rng)), decorate)
