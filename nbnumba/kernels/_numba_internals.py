"""Every use of Numba and llvmlite internals, in one place, behind a version check.

The native kernel build needs a compiled function's LLVM library and the
CPU name and features Numba's JIT targets; the physics-aware disk cache
needs Numba's list of cache locators.  None of these is public API, so an
upgrade of Numba or llvmlite may move them: each accessor here checks the
installed versions against the tested range first (:func:`check`) and turns
a missing attribute into one :class:`NumbaInternalsError` that names it.

:func:`installed_versions` reads the versions without importing either
package (the native loader must not pay for importing Numba).
"""

from __future__ import annotations

import functools
import os
import re

# (lowest tested, first untested) as (major, minor)
TESTED = {"numba": ((0, 60), (0, 70)), "llvmlite": ((0, 43), (0, 52))}


class NumbaInternalsError(RuntimeError):
    """Numba or llvmlite no longer has an internal this project uses."""


def _read_version(package: str) -> str:
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.origin:
        return "absent"
    path = os.path.join(os.path.dirname(spec.origin), "_version.py")
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            text = handle.read(65536)
    except OSError:
        return "unknown"
    match = (re.search(r'"version":\s*"([^"]+)"', text)
             or re.search(r"version_version\s*=\s*'([^']+)'", text))
    return match.group(1) if match else "unknown"


@functools.cache
def installed_versions() -> dict:
    """``{"numba": ..., "llvmlite": ...}`` as installed, read without importing them."""
    return {name: _read_version(name) for name in TESTED}


def _major_minor(version: str):
    match = re.match(r"(\d+)\.(\d+)", version)
    return (int(match.group(1)), int(match.group(2))) if match else None


@functools.cache
def check() -> None:
    """Raise :class:`NumbaInternalsError` when Numba or llvmlite is outside the tested versions."""
    import llvmlite
    import numba

    for name, module in (("numba", numba), ("llvmlite", llvmlite)):
        low, high = TESTED[name]
        found = _major_minor(module.__version__)
        if found is None or not low <= found < high:
            raise NumbaInternalsError(
                f"{name} {module.__version__} is outside the versions nbnumba's native kernel build was tested "
                f"with ({low[0]}.{low[1]} to before {high[0]}.{high[1]}); check nbnumba/kernels/_numba_internals.py "
                "against it, or set NBNUMBA_CPU_KERNEL=jit")


def _get(obj, name: str, what: str):
    try:
        return getattr(obj, name)
    except AttributeError:
        raise NumbaInternalsError(f"{what} has no attribute {name!r} any more: update "
                                  "nbnumba/kernels/_numba_internals.py") from None


def llvm_ir(compiled) -> str:
    """The optimised LLVM IR of a ``numba.cfunc``."""
    check()
    return _get(compiled, "_library", "numba cfunc").get_llvm_str()


def host_target(compiled) -> tuple[str, str]:
    """(CPU name, feature string) Numba's JIT compiles ``compiled`` for."""
    check()
    codegen = _get(_get(compiled, "_library", "numba cfunc"), "codegen", "numba code library")
    return _get(codegen, "_get_host_cpu_name", "numba codegen")(), _get(codegen, "_tm_features", "numba codegen")


def cache_impl():
    """Numba's cache implementation class, which holds the list of cache locators."""
    check()
    from numba.core import caching

    impl = getattr(caching, "CacheImpl", None) or getattr(caching, "_CacheImpl", None)
    if impl is None:
        raise NumbaInternalsError("numba.core.caching has neither CacheImpl nor _CacheImpl any more: update "
                                  "nbnumba/kernels/_numba_internals.py")
    _get(impl, "_locator_classes", "numba's CacheImpl")
    return impl


def locator_classes() -> list:
    """Numba's list of cache locator classes (mutable: tried in order)."""
    return cache_impl()._locator_classes


def add_stamped_locators(prefix: str, extra_stamp, accepts, exclude=frozenset()) -> None:
    """Put in front of Numba's cache locators variants whose source stamp also holds ``extra_stamp()``.

    The variants serve only functions whose file ``accepts(py_file)``; other
    functions keep Numba's locators.  Idempotent per ``prefix``.
    """
    impl = cache_impl()
    marker = f"_nbnumba_{prefix}"
    if getattr(impl, marker, False):
        return
    classes = locator_classes()

    def variant(base):
        class Locator(base):
            def get_source_stamp(self):
                return (super().get_source_stamp(), extra_stamp())

            @classmethod
            def from_function(cls, py_func, py_file):
                if not accepts(py_file):
                    return None
                return super().from_function(py_func, py_file)

        Locator.__name__ = Locator.__qualname__ = prefix + base.__name__.lstrip("_")
        return Locator

    for name in ("get_source_stamp", "from_function"):
        for base in classes:
            _get(base, name, f"numba cache locator {base.__name__}")
    classes[:0] = [variant(cls) for cls in classes if cls.__name__ not in exclude]
    setattr(impl, marker, True)


def stack_array(dtype, itembytes: int, size: int):
    """A Numba intrinsic: a C-contiguous 1-d array of ``size`` ``dtype`` items on the caller's stack.

    For the CPU builds, which run without Numba's allocator (``_nrt=False``):
    the storage is an ``alloca`` at the entry block of the function the
    intrinsic is expanded in, so it lives as long as that call.
    """
    check()
    import importlib

    from numba import types as nbtypes
    from numba.extending import intrinsic

    try:
        cgutils = importlib.import_module("numba.core.cgutils")
        arrayobj = importlib.import_module("numba.np.arrayobj")
    except ImportError as exc:
        raise NumbaInternalsError(f"{exc}: update nbnumba/kernels/_numba_internals.py") from None
    make_array = _get(arrayobj, "make_array", "numba.np.arrayobj")
    populate_array = _get(arrayobj, "populate_array", "numba.np.arrayobj")
    array_type = nbtypes.Array(dtype, 1, "C")

    @intrinsic
    def scratch(typingctx):
        def codegen(context, builder, signature, args):
            data = cgutils.alloca_once(builder, context.get_value_type(dtype), size=size)
            ary = make_array(array_type)(context, builder)
            itemsize = context.get_constant(nbtypes.intp, itembytes)
            shape = cgutils.pack_array(builder, [context.get_constant(nbtypes.intp, size)])
            populate_array(ary, data=data, shape=shape, strides=cgutils.pack_array(builder, [itemsize]),
                           itemsize=itemsize, meminfo=None)
            return ary._getvalue()

        return array_type(), codegen

    return scratch
