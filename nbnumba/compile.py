"""Compile the scalar physics of :mod:`nbnumba.physics` for each backend.

The functions in :mod:`nbnumba.physics` are plain Python.  For a target we
clone every function with a fresh globals dictionary in which each physics
name is bound to that target's compiled version, then decorate the clone.
Numba resolves global names when it compiles, so a call such as
``sincg(...)`` inside ``lattice_factor`` binds to the CPU or the CUDA build
of ``sincg`` as appropriate: one source, two compilations.
"""

from __future__ import annotations

import functools
import inspect
import types

from . import physics


def _physics_function_names() -> list[str]:
    return [
        name
        for name, obj in vars(physics).items()
        if inspect.isfunction(obj) and obj.__module__ == physics.__name__
    ]


def _build(decorate) -> types.SimpleNamespace:
    namespace = dict(vars(physics))
    compiled = {}
    for name in _physics_function_names():
        fn = getattr(physics, name)
        clone = types.FunctionType(fn.__code__, namespace, name, fn.__defaults__, fn.__closure__)
        clone.__qualname__ = fn.__qualname__
        clone.__module__ = fn.__module__
        clone.__doc__ = fn.__doc__
        compiled[name] = decorate(clone)
        namespace[name] = compiled[name]
    return types.SimpleNamespace(**compiled)


@functools.cache
def cpu_functions() -> types.SimpleNamespace:
    """The physics compiled with ``numba.njit`` (CPU)."""
    from numba import njit

    return _build(lambda fn: njit(fn, cache=False, nogil=True))


@functools.cache
def cuda_functions() -> types.SimpleNamespace:
    """The physics compiled with ``numba.cuda.jit(device=True)``."""
    from numba import cuda

    return _build(lambda fn: cuda.jit(fn, device=True))
