"""Run the CPU kernels from a cached shared library, without importing Numba.

:mod:`nbnumba.kernels.native_build` compiles the shared physics into a small
shared library once per source version and CPU; this module finds it in the
cache (building it on first use), loads it with :mod:`ctypes` and runs it on
a pool of threads over chunks of whole rows.  ctypes releases the GIL during
each call, so the threads render in parallel like the ``prange`` kernel.

Which CPU kernel runs is chosen by the ``NBNUMBA_CPU_KERNEL`` environment
variable:

``auto`` (default)
    the native library where one can be built (Linux with a C compiler to
    link it), else the Numba ``prange`` kernel;
``native``
    the native library; an error if it cannot be built;
``jit``
    the Numba ``prange`` kernels of :mod:`nbnumba.kernels.cpu`.

Libraries live in ``$NBNUMBA_CACHE_DIR`` (default
``$XDG_CACHE_HOME/nbnumba`` or ``~/.cache/nbnumba``), one per kernel kind,
precision and output type, keyed on a hash of the physics sources and of the
CPU model and feature flags.  A failed build leaves a ``.failed`` note so
later runs go straight to the JIT kernel; delete the folder to retry.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import itertools
import json
import os
import queue
import sys
import threading
import warnings

import numpy as np

from ..errors import ConfigError

ABI_VERSION = 1  # bump when the C signature in native_build changes
KERNEL_CHOICES = ("auto", "native", "jit")
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SOURCES = ("physics.py", "compile.py", "rng.py", os.path.join("kernels", "native_build.py"))
_loaded: dict = {}


def kernel_choice() -> str:
    """The ``NBNUMBA_CPU_KERNEL`` setting (``auto``, ``native`` or ``jit``)."""
    choice = os.environ.get("NBNUMBA_CPU_KERNEL", "auto").strip().lower() or "auto"
    if choice not in KERNEL_CHOICES:
        raise ConfigError(f"NBNUMBA_CPU_KERNEL must be one of {', '.join(KERNEL_CHOICES)}, not {choice!r}")
    return choice


def cache_dir() -> str:
    """Folder of the native kernel libraries."""
    explicit = os.environ.get("NBNUMBA_CACHE_DIR")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "nbnumba")


def _cpu_identity() -> str:
    """CPU model and feature flags (Linux ``/proc/cpuinfo``, first processor)."""
    wanted = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("vendor_id", "model name", "flags", "Features", "CPU implementer", "CPU part"):
                    wanted[key] = value.strip()
    except OSError:
        pass
    return json.dumps(wanted, sort_keys=True) + os.uname().machine


@functools.cache
def _sources_and_cpu() -> bytes:
    """What every library depends on: the compiled sources and the CPU (read once a process)."""
    digest = hashlib.sha256()
    for name in _SOURCES:
        with open(os.path.join(_PACKAGE_DIR, name), "rb") as handle:
            digest.update(handle.read())
    digest.update(f"{ABI_VERSION}|{_cpu_identity()}".encode())
    return digest.digest()


def library_key(kind: str, dtype: str, out_dtype: str) -> str:
    """Cache key of one kernel library: sources, ABI, kernel variant and CPU."""
    digest = hashlib.sha256(_sources_and_cpu())
    digest.update(f"{kind}|{dtype}|{out_dtype}".encode())
    return f"{kind}-{dtype}-{out_dtype}-{digest.hexdigest()[:24]}"


def supported() -> bool:
    """True where native libraries can be built and loaded (Linux)."""
    return sys.platform.startswith("linux")


class NativeKernel:
    """One loaded kernel function.

    ``render``, ``out_of_range`` and ``phi_loop`` are serial loops over a
    range of raster pixels (run them with :func:`run`); ``noise`` is the
    Poisson loop (:func:`run_noise`).
    """

    def __init__(self, path: str, symbol: str, kind: str, dtype: str, out_dtype: str):
        self.library = ctypes.CDLL(path)
        fn = self.library[symbol]
        p = ctypes.c_void_p
        i64 = ctypes.c_int64
        if kind == "noise":
            fn.argtypes = [p, p, i64, ctypes.c_double, p, p, p, p]
        else:
            fn.argtypes = [p, i64, p, i64, p, i64, i64, p, i64, i64, i64, p, p, i64, i64, i64, p, i64, i64, i64,
                           ctypes.c_double, i64, i64, p]
        fn.restype = ctypes.c_double
        self.fn = fn
        self.kind = kind
        self.dtype = np.dtype(dtype)
        self.out_dtype = np.dtype(out_dtype)


def _build_or_fail(kind, dtype, out_dtype, folder, key):
    import fcntl

    from . import native_build

    lib_path = os.path.join(folder, key + ".so")
    meta_path = os.path.join(folder, key + ".json")
    failed_path = os.path.join(folder, key + ".failed")
    with open(os.path.join(folder, key + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building the same library
        if os.path.exists(meta_path) and os.path.exists(lib_path):
            return
        try:
            symbol = native_build.build(kind, dtype, out_dtype, lib_path)
        except Exception as exc:  # noqa: BLE001 - any failure falls back to the JIT kernel
            with open(failed_path, "w") as handle:
                handle.write(f"{type(exc).__name__}: {exc}\n")
            raise
        import numba

        tmp = meta_path + f".{os.getpid()}.tmp"
        with open(tmp, "w") as handle:
            json.dump({"symbol": symbol, "kind": kind, "dtype": dtype, "out_dtype": out_dtype,
                       "numba": numba.__version__, "abi": ABI_VERSION}, handle)
        os.replace(tmp, meta_path)


def load(kind: str, dtype: str, out_dtype: str) -> NativeKernel | None:
    """The native kernel ``kind`` for this precision, or None to use the JIT kernel.

    Builds the library on first use.  With ``NBNUMBA_CPU_KERNEL=native`` a
    failure raises :class:`~nbnumba.errors.ConfigError` instead of
    returning None.
    """
    choice = kernel_choice()
    if choice == "jit":
        return None
    cache_key = (kind, dtype, out_dtype)
    if cache_key in _loaded:
        return _loaded[cache_key]
    if not supported():
        if choice == "native":
            raise ConfigError(f"NBNUMBA_CPU_KERNEL=native: native kernels are built on Linux only, not {sys.platform}")
        _loaded[cache_key] = None  # the JIT kernel is the normal one here: no warning
        return None
    try:
        folder = cache_dir()
        key = library_key(kind, dtype, out_dtype)
        lib_path = os.path.join(folder, key + ".so")
        meta_path = os.path.join(folder, key + ".json")
        if not (os.path.exists(lib_path) and os.path.exists(meta_path)):
            failed = os.path.join(folder, key + ".failed")
            if os.path.exists(failed) and choice == "auto":
                _loaded[cache_key] = None
                return None
            os.makedirs(folder, exist_ok=True)
            _build_or_fail(kind, dtype, out_dtype, folder, key)
        with open(meta_path) as handle:
            symbol = json.load(handle)["symbol"]
        kernel = NativeKernel(lib_path, symbol, kind, dtype, out_dtype)
    except Exception as exc:  # noqa: BLE001
        if choice == "native":
            raise ConfigError(f"NBNUMBA_CPU_KERNEL=native: cannot build or load the native kernel ({exc})") from exc
        warnings.warn(f"nbnumba: using the Numba JIT kernel ({exc})", RuntimeWarning, stacklevel=2)
        kernel = None
    _loaded[cache_key] = kernel
    return kernel


def default_threads() -> int:
    """Threads when none are asked for: ``NUMBA_NUM_THREADS``, else the usable cores."""
    env = os.environ.get("NUMBA_NUM_THREADS")
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            pass
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def run(kernel: NativeKernel, args, first_index: int, interp_stop: int, scale: float, out: np.ndarray,
        nthreads: int | None = None, row: int = 1, progress=None) -> float:
    """Run ``kernel`` on every raster pixel, into ``out`` (one entry per pixel).

    ``args`` are the kernel arrays (fp, ip, sources, cells, cells_first,
    fhkl, mask) in the kernel's precision.  The pixels are split into
    chunks of whole rows (``row`` pixels each) handed to ``nthreads``
    threads as each finishes its last.  Returns the summed return values
    (the solid angle for ``render``).
    """
    fp, ip, sources, cells, cells_first, fhkl, mask = (np.ascontiguousarray(a) for a in args)
    if out.dtype != kernel.out_dtype or not out.flags.c_contiguous:
        raise ValueError("output array must be contiguous and of the kernel's output type")
    for name, arr in (("fp", fp), ("sources", sources), ("cells", cells), ("cells_first", cells_first),
                      ("fhkl", fhkl)):
        if arr.dtype != kernel.dtype:
            raise ValueError(f"{name} must be {kernel.dtype}, not {arr.dtype}")
    ip = ip.astype(np.int64, copy=False)
    mask = mask.astype(np.uint16, copy=False)
    fixed = (fp.ctypes.data, fp.size, ip.ctypes.data, ip.size, sources.ctypes.data, sources.shape[0],
             sources.shape[1], cells.ctypes.data, cells.shape[0], cells.shape[1], cells.shape[2],
             cells_first.ctypes.data, fhkl.ctypes.data, fhkl.shape[0], fhkl.shape[1], fhkl.shape[2],
             mask.ctypes.data, mask.size, int(first_index), int(interp_stop), float(scale))
    n = out.size
    base = out.ctypes.data
    itemsize = out.itemsize
    threads = max(1, int(nthreads) if nthreads else default_threads())

    def chunk(lo, hi):
        return kernel.fn(*fixed, lo, hi - lo, base + lo * itemsize)

    if n == 0:
        return 0.0
    if threads == 1 and progress is None:
        return chunk(0, n)
    # about 16 chunks a thread, of whole rows, for an even load; each thread
    # takes the next chunk when it finishes one
    rows_total = -(-n // row)
    step = max(1, -(-rows_total // (16 * threads))) * row
    bounds = [(lo, min(lo + step, n)) for lo in range(0, n, step)]
    results = [0.0] * len(bounds)
    next_chunk = itertools.count()
    finished = queue.SimpleQueue()
    stop = threading.Event()

    def worker():
        try:
            for i in iter(next_chunk.__next__, None):
                if i >= len(bounds) or stop.is_set():
                    break
                results[i] = chunk(*bounds[i])
                finished.put(i)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller below
            finished.put(exc)

    workers = [threading.Thread(target=worker, daemon=True) for _ in range(min(threads, len(bounds)))]
    for thread in workers:
        thread.start()
    done = 0
    reported = 0
    error = None
    try:
        for _ in bounds:
            item = finished.get()
            if isinstance(item, BaseException):
                error = item
                break
            done += bounds[item][1] - bounds[item][0]
            if progress is not None and (done * 20 // n > reported or done == n):
                reported = done * 20 // n
                progress(done / n)
    finally:
        # no thread may still write into ``out`` once this returns or raises
        stop.set()
        for thread in workers:
            thread.join()
    if error is not None:
        raise error
    total = 0.0
    for value in results:  # in raster order, whatever order the threads finished in
        total += value
    # keep the arrays alive until every call returned
    del fp, ip, sources, cells, cells_first, fhkl, mask
    return total


def run_noise(kernel: NativeKernel, float_image: np.ndarray, mask: np.ndarray, adc_offset: float,
              state: np.ndarray, pstate: np.ndarray) -> tuple[np.ndarray, float, int]:
    """C's Poisson noise loop (:func:`nbnumba.rng.poisson_image_core`) in the native library.

    ``state`` and ``pstate`` are advanced in place, as by the JIT function.
    Returns ``(uint16 image, photon sum, overload count)``.
    """
    if kernel.kind != "noise":
        raise ValueError(f"not the noise kernel: {kernel.kind}")
    image = np.ascontiguousarray(float_image, dtype=np.float32).reshape(-1)
    inside = np.ascontiguousarray(mask, dtype=np.uint8).reshape(-1)
    if inside.size != image.size:
        raise ValueError("mask and image differ in size")
    work_state = np.ascontiguousarray(state, dtype=np.int64)
    work_pstate = np.ascontiguousarray(pstate, dtype=np.float32)
    out = np.zeros(image.size, dtype=np.uint16)
    overloads = np.zeros(1, dtype=np.int64)
    total = kernel.fn(image.ctypes.data, inside.ctypes.data, image.size, float(adc_offset),
                      work_state.ctypes.data, work_pstate.ctypes.data, out.ctypes.data, overloads.ctypes.data)
    if work_state is not state:
        state[...] = work_state
    if work_pstate is not pstate:
        pstate[...] = work_pstate
    return out, float(total), int(overloads[0])
