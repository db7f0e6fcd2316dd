"""The one declaration of the kernels' run-constant arguments.

Every kernel (the native library, the Numba ``prange`` kernels, the CUDA
kernels) receives the same run constants: seven arrays (:data:`ARRAYS`) and
three scalars (:data:`SCALARS`).  They are declared here once, with their
Numba type, ctypes type and dtype rule; everything else is derived:

* :class:`KernelArrays`, the typed tuple of arrays a kernel is called with,
  and :func:`kernel_arrays`, which builds it from a prepared run;
* the C signature of the native row loop (:func:`cfunc_signature`) and the
  row loop itself, with its array views (:func:`row_loop_source`);
* the ctypes argument types (:func:`ctypes_argtypes`) and the argument
  tuple of a call (:func:`pack`);
* :data:`INTERFACE_HASH`, which goes into the native library's cache key
  (a changed declaration can never load an old library).

Importing this module imports neither Numba nor ctypes' loaders; the Numba
types are looked up only when a kernel is compiled.

The exported native function takes, in order: for each array a pointer and
one ``int64`` extent per dimension, then the scalars, then ``start``,
``count`` (the range of raster pixels) and the output pointer; it returns
the ``float64`` sum of the per-pixel return values.
"""

from __future__ import annotations

import hashlib
from collections import namedtuple
from dataclasses import dataclass

import numpy as np

REAL = "real"  # dtype rule: the kernel's precision (float64 or float32)


@dataclass(frozen=True)
class ArrayArg:
    """One run-constant array: its name (an attribute of :class:`~nbnumba.prepare.Prepared`),
    its number of dimensions and its element type (``real`` or a fixed numpy dtype name)."""

    name: str
    ndim: int
    dtype: str

    def numpy_dtype(self, real: str) -> np.dtype:
        """The numpy dtype of this array in a kernel of precision ``real``."""
        return np.dtype(real if self.dtype == REAL else self.dtype)


@dataclass(frozen=True)
class ScalarArg:
    """One run-constant scalar: its name and type (``int64`` or ``float64``)."""

    name: str
    dtype: str


# The geometry (float constants, sources, cell vectors) is float64 in every
# precision: a float32 Miller index h ~ 70 is off by ~5e-6, which a lattice
# factor of 50 cells turns into errors of 1e-4 of the image maximum.  The
# single-precision build evaluates the lattice factor and structure factors
# in float32 from the float64 indices (physics.narrow).
ARRAYS = (
    ArrayArg("fp", 1, "float64"),  # floating-point constants (physics.FP_*)
    ArrayArg("ip", 1, "int64"),  # integer constants (physics.IP_*)
    ArrayArg("sources", 2, "float64"),
    ArrayArg("cells", 3, "float64"),  # (phi steps, mosaic domains, 9)
    ArrayArg("cells_first", 3, "float64"),
    ArrayArg("fhkl", 3, REAL),
    ArrayArg("mask", 1, "uint16"),
)
SCALARS = (
    ScalarArg("first_index", "int64"),
    ScalarArg("interp_stop", "int64"),
    ScalarArg("scale", "float64"),
)
# per call, after the run constants: the pixel range and the output
CALL = (ScalarArg("start", "int64"), ScalarArg("count", "int64"))

# The native Poisson noise loop (nbnumba.rng.poisson_fill): its own, fixed parameters.
NOISE_PARAMETERS = (("image", "float32*"), ("mask", "uint8*"), ("n", "int64"), ("adc_offset", "float64"),
                    ("state", "int64*"), ("pstate", "float32*"), ("out", "uint16*"), ("overloads", "int64*"))

ARRAY_NAMES = tuple(a.name for a in ARRAYS)
SCALAR_NAMES = tuple(s.name for s in SCALARS)

KernelArrays = namedtuple("KernelArrays", ARRAY_NAMES)
KernelArrays.__doc__ = "The run-constant arrays of one kernel call, in declaration order."


def _describe() -> str:
    parts = [f"{a.name}:{a.ndim}:{a.dtype}" for a in ARRAYS]
    parts += [f"{s.name}:{s.dtype}" for s in SCALARS + CALL]
    parts += [f"noise.{name}:{kind}" for name, kind in NOISE_PARAMETERS]
    return "|".join(parts) + "|out"


INTERFACE_HASH = hashlib.sha256(_describe().encode()).hexdigest()[:16]
"""Hash of the declaration (names, ranks, types, order): part of the native cache key."""


def kernel_arrays(prep, dtype: str) -> KernelArrays:
    """The arrays of a prepared run in the types a ``dtype`` kernel reads (contiguous).

    No copies where the prepared array already has that type: the kernels
    only read them.
    """
    return KernelArrays(*(np.ascontiguousarray(getattr(prep, a.name), dtype=a.numpy_dtype(dtype)) for a in ARRAYS))


def check_arrays(arrays: KernelArrays, dtype: str) -> None:
    """Raise ``ValueError`` unless ``arrays`` have the declared ranks and types for ``dtype``."""
    for decl, arr in zip(ARRAYS, arrays):
        if arr.ndim != decl.ndim or arr.dtype != decl.numpy_dtype(dtype) or not arr.flags.c_contiguous:
            raise ValueError(f"kernel array {decl.name} must be a contiguous {decl.ndim}-d "
                             f"{decl.numpy_dtype(dtype)} array, not {arr.ndim}-d {arr.dtype}")


_CTYPES = {}


def _ctypes_table() -> dict:
    import ctypes

    if not _CTYPES:
        _CTYPES.update({"int64": ctypes.c_int64, "float64": ctypes.c_double})
        _CTYPES.update({name + "*": ctypes.c_void_p for name in ("float32", "float64", "uint8", "uint16", "int64")})
    return _CTYPES


# --- the native (C ABI) side ------------------------------------------------------------------------------

def _pointer_name(a: ArrayArg) -> str:
    return f"{a.name}_p"


def _extent_names(a: ArrayArg) -> list[str]:
    return [f"{a.name}_n{d}" for d in range(a.ndim)]


def c_parameter_names() -> list[str]:
    """Parameter names of the exported function, in order."""
    names = []
    for a in ARRAYS:
        names.append(_pointer_name(a))
        names.extend(_extent_names(a))
    names.extend(SCALAR_NAMES)
    names.extend(s.name for s in CALL)
    names.append("out_p")
    return names


def cfunc_signature(dtype: str, out_dtype: str):
    """The Numba signature of the exported row loop (imports Numba)."""
    from numba import types

    def element(name):
        return getattr(types, dtype if name == REAL else name)

    args = []
    for a in ARRAYS:
        args.append(types.CPointer(element(a.dtype)))
        args.extend([types.int64] * a.ndim)
    args.extend(getattr(types, s.dtype) for s in SCALARS + CALL)
    args.append(types.CPointer(getattr(types, out_dtype)))
    return types.float64(*args)


def ctypes_argtypes() -> list:
    """ctypes argument types of the exported row loop."""
    table = _ctypes_table()
    types = []
    for a in ARRAYS:
        types.append(table["int64*"])  # any pointer: c_void_p
        types.extend([table["int64"]] * a.ndim)
    types.extend(table[s.dtype] for s in SCALARS + CALL)
    types.append(table["int64*"])
    return types


def noise_ctypes_argtypes() -> list:
    """ctypes argument types of the native noise loop (see :func:`noise_signature`)."""
    table = _ctypes_table()
    return [table[t] for _, t in NOISE_PARAMETERS]


def noise_signature():
    """The Numba signature of the native noise loop (imports Numba)."""
    from numba import types

    def nb(t):
        return types.CPointer(getattr(types, t[:-1])) if t.endswith("*") else getattr(types, t)

    return types.float64(*(nb(t) for _, t in NOISE_PARAMETERS))


def pack(arrays: KernelArrays, first_index: int, interp_stop: int, scale: float) -> tuple:
    """The run-constant part of a native call (pointers, extents, scalars), in declaration order.

    The caller keeps ``arrays`` alive while the call runs.
    """
    values = []
    for arr in arrays:
        values.append(arr.ctypes.data)
        values.extend(int(n) for n in arr.shape)
    values.extend((int(first_index), int(interp_stop), float(scale)))
    return tuple(values)


def row_loop_source() -> str:
    """Python source of the exported row loop: array views of the arguments, then ``pixels`` per block.

    Compiled by :mod:`nbnumba.kernels.native_build` with ``carray``,
    ``raster_blocks`` and ``raster_block`` (the blocks of the range, from
    the physics build) and ``pixels`` (the step over one block of raster
    pixels, which carries the running total) bound in its namespace.
    """
    lines = [f"def row_loop({', '.join(c_parameter_names())}):"]
    for a in ARRAYS:
        extents = ", ".join(_extent_names(a)) + ("," if a.ndim == 1 else "")
        lines.append(f"    {a.name} = carray({_pointer_name(a)}, ({extents}))")
    lines.append("    out = carray(out_p, (count,))")
    lines.append("    total = 0.0")
    lines.append("    for b in range(raster_blocks(start, count, ip)):")
    lines.append("        idx, n = raster_block(b, start, count, ip)")
    lines.append(f"        total = pixels(total, idx, idx - start, n, out, {', '.join(ARRAY_NAMES + SCALAR_NAMES)})")
    lines.append("    return total")
    return "\n".join(lines) + "\n"
