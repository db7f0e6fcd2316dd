"""Run the CPU kernels from a cached shared library, without importing Numba.

:mod:`nbnumba.kernels.native_build` compiles the shared physics into a small
shared library once per source version and CPU; this module finds it in the
cache (building it on first use), checks it, loads it with :mod:`ctypes` and
runs it on a pool of threads over chunks of whole rows.  ctypes releases the
GIL during each call, so the threads render in parallel like the ``prange``
kernel.

Which CPU kernel runs is chosen by the ``NBNUMBA_CPU_KERNEL`` environment
variable:

``auto`` (default)
    the native library where one can be built (Linux with a C compiler to
    link it), else the Numba ``prange`` kernel (saying so once, with why);
``native``
    the native library; an error if it cannot be built;
``jit``
    the Numba ``prange`` kernels of :mod:`nbnumba.kernels.cpu`.

Libraries live in ``$NBNUMBA_CACHE_DIR`` (default
``$XDG_CACHE_HOME/nbnumba`` or ``~/.cache/nbnumba``), one per kernel kind,
precision and output type, keyed on a hash of the physics sources, of the
kernel interface (:data:`~nbnumba.kernels.interface.INTERFACE_HASH`), of the
Numba and llvmlite versions and of the CPU model and feature flags.

The cache is shared state that another user or a crashed run may have
touched, so nothing in it is trusted:

* the folder must be owned by the current user and closed to writes by
  group and others, else a private per-user folder under the temporary
  directory is used (or, failing that, the JIT kernel), with one warning;
* each library has a record (``.json``) of its key, kind, precisions,
  interface hash, Numba and llvmlite versions, size and SHA-256; a library
  is loaded only when it is a regular file owned by the user, not writable
  by others, and matches its record byte for byte (it is loaded through the
  very file descriptor that was checked).  Anything else -- truncated,
  corrupt, swapped from another key -- is rebuilt, never loaded;
* lock, note and temporary files are opened without following symbolic
  links, and an existing file is never truncated (records and notes are
  written to a new temporary and renamed);
* a failed build leaves a ``.failed`` note so later runs go straight to the
  JIT kernel; the note is ignored once Numba, llvmlite, the interface or the
  linker changed, or when the failure was transient (a full disk, an I/O
  error).
"""

from __future__ import annotations

import ctypes
import errno
import functools
import hashlib
import json
import os
import re
import stat
import sys
import time
import warnings

import numpy as np

from .. import _threads
from ..errors import ConfigError
from . import interface
from ._numba_internals import installed_versions

KERNEL_CHOICES = ("auto", "native", "jit")
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SOURCES = ("physics.py", "compile.py", "rng.py", os.path.join("kernels", "native_build.py"),
            os.path.join("kernels", "interface.py"))
RECORD_LIMIT = 1 << 16  # bytes: a record or note larger than this is not one of ours
TRANSIENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EAGAIN, errno.ENOMEM, errno.EINTR,
                              errno.EBUSY, errno.ETXTBSY, errno.EMFILE, errno.ENFILE})
_TRANSIENT_TEXT = ("No space left on device", "Disk quota exceeded", "Input/output error",
                   "Resource temporarily unavailable", "Cannot allocate memory")
_SYMBOL = re.compile(r"[A-Za-z0-9_.$]{1,4096}")
_loaded: dict = {}
_warned: set = set()
_held_fds: dict = {}  # (device, inode, sha256) -> open descriptor a library was loaded through


class _Fallback(Exception):
    """The native kernel cannot be used here; the message says why."""


def kernel_choice() -> str:
    """The ``NBNUMBA_CPU_KERNEL`` setting (``auto``, ``native`` or ``jit``)."""
    choice = os.environ.get("NBNUMBA_CPU_KERNEL", "auto").strip().lower() or "auto"
    if choice not in KERNEL_CHOICES:
        raise ConfigError(f"NBNUMBA_CPU_KERNEL must be one of {', '.join(KERNEL_CHOICES)}, not {choice!r}")
    return choice


def cache_dir() -> str:
    """Folder of the native kernel libraries, as configured (see :func:`safe_cache_dir`)."""
    explicit = os.environ.get("NBNUMBA_CACHE_DIR")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "nbnumba")


def private_cache_dir() -> str:
    """The per-user fallback folder (mode 0700 under the temporary directory)."""
    import tempfile

    return os.path.join(tempfile.gettempdir(), f"nbnumba-kernels-{os.geteuid()}")


def _warn_once(topic: str, message: str) -> None:
    if topic not in _warned:
        _warned.add(topic)
        warnings.warn(message, RuntimeWarning, stacklevel=4)


def _is_private(st: os.stat_result) -> bool:
    """Owned by this user and not writable by group or others."""
    return st.st_uid == os.geteuid() and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _folder_problem(path: str) -> str | None:
    """None when ``path`` is (or was made) a private folder of this user, else what is wrong with it."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        st = os.stat(path)
    except OSError as exc:
        return f"cannot create {path} ({exc.strerror or exc})"
    if not stat.S_ISDIR(st.st_mode):
        return f"{path} is not a folder"
    if st.st_uid != os.geteuid():
        return f"{path} belongs to another user"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"{path} is writable by group or others"
    return None


def safe_cache_dir() -> str:
    """The configured cache folder when it is safe, else the private one; raises :class:`_Fallback` if neither is."""
    folder = cache_dir()
    problem = _folder_problem(folder)
    if problem is None:
        return folder
    private = private_cache_dir()
    second = _folder_problem(private)
    if second is not None:
        raise _Fallback(f"no safe kernel cache: {problem}; {second}")
    _warn_once("folder", f"nbnumba: {problem}: using the private kernel cache {private} instead")
    return private


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
    """What every library depends on: sources, interface, Numba/llvmlite versions, CPU (read once a process)."""
    digest = hashlib.sha256()
    for name in _SOURCES:
        with open(os.path.join(_PACKAGE_DIR, name), "rb") as handle:
            digest.update(handle.read())
    versions = installed_versions()
    digest.update(f"{interface.INTERFACE_HASH}|{versions['numba']}|{versions['llvmlite']}|{_cpu_identity()}".encode())
    return digest.digest()


def library_key(kind: str, dtype: str, out_dtype: str) -> str:
    """Cache key of one kernel library: sources, interface, versions, kernel variant and CPU."""
    digest = hashlib.sha256(_sources_and_cpu())
    digest.update(f"{kind}|{dtype}|{out_dtype}".encode())
    return f"{kind}-{dtype}-{out_dtype}-{digest.hexdigest()[:24]}"


def expected_record(key: str, kind: str, dtype: str, out_dtype: str) -> dict:
    """The fields a library's record must hold (besides symbol, size and sha256)."""
    versions = installed_versions()
    return {"key": key, "kind": kind, "dtype": dtype, "out_dtype": out_dtype,
            "interface": interface.INTERFACE_HASH, "numba": versions["numba"], "llvmlite": versions["llvmlite"]}


def supported() -> bool:
    """True where native libraries can be built and loaded (Linux)."""
    return sys.platform.startswith("linux")


class NativeKernel:
    """One loaded kernel function.

    ``render``, ``out_of_range`` and ``phi_loop`` are serial loops over a
    range of raster pixels (run them with :func:`run`); ``noise`` is the
    Poisson loop (:func:`run_noise`).  ``path`` is the checked file the
    library is loaded from (a ``/proc/self/fd`` path on Linux).
    """

    def __init__(self, path: str, symbol: str, kind: str, dtype: str, out_dtype: str):
        self.library = ctypes.CDLL(path)
        fn = self.library[symbol]
        fn.argtypes = interface.noise_ctypes_argtypes() if kind == "noise" else interface.ctypes_argtypes()
        fn.restype = ctypes.c_double
        self.fn = fn
        self.kind = kind
        self.dtype = np.dtype(dtype)
        self.out_dtype = np.dtype(out_dtype)


# --- files in the cache: never follow a link, never truncate ------------------------------------------------

def _open_nofollow(path: str, flags: int, mode: int = 0o600) -> int:
    return os.open(path, flags | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), mode)


def _read_private(path: str, limit: int = RECORD_LIMIT) -> bytes | None:
    """The bytes of ``path`` if it is a regular file of ours, not a link, at most ``limit`` bytes; else None."""
    try:
        fd = _open_nofollow(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or not _is_private(st) or st.st_size > limit:
            return None
        return handle.read(limit + 1)


def _write_new(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` through a new temporary file (O_EXCL, no links followed), renamed over it."""
    tmp = f"{path}.{os.getpid()}.tmp"
    for attempt in range(2):
        try:
            fd = _open_nofollow(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            break
        except FileExistsError:
            if attempt:
                raise
            os.unlink(tmp)  # left by a dead process with our pid (we hold the lock)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _lock(path: str) -> int:
    """Take the build lock ``path`` (created if absent, never truncated, never through a link)."""
    import fcntl

    for attempt in range(3):
        try:
            fd = _open_nofollow(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            if exc.errno != errno.ELOOP or attempt == 2:
                raise
            os.unlink(path)  # a symbolic link: remove the link itself, never touch its target
            continue
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode) and _is_private(st):
            fcntl.flock(fd, fcntl.LOCK_EX)  # another process may be building the same library
            return fd
        os.close(fd)
        os.unlink(path)
    raise OSError(errno.EPERM, f"cannot take the lock {path}")


def _sha256_fd(fd: int) -> str:
    digest = hashlib.sha256()
    os.lseek(fd, 0, os.SEEK_SET)
    while True:
        block = os.read(fd, 1 << 20)
        if not block:
            return digest.hexdigest()
        digest.update(block)


def _record_problem(record, expected: dict) -> str | None:
    if not isinstance(record, dict):
        return "the record is not a JSON object"
    for name, value in expected.items():
        if record.get(name) != value:
            return f"the record's {name} is {record.get(name)!r}, not {value!r}"
    if not (isinstance(record.get("symbol"), str) and _SYMBOL.fullmatch(record["symbol"])):
        return "the record has no valid symbol"
    if not isinstance(record.get("size"), int) or not re.fullmatch(r"[0-9a-f]{64}", str(record.get("sha256"))):
        return "the record has no size or sha256"
    return None


def _checked_kernel(folder: str, key: str, expected: dict) -> tuple[NativeKernel | None, str]:
    """The library of ``key`` if it and its record check out, else (None, why not)."""
    raw = _read_private(os.path.join(folder, key + ".json"))
    if raw is None:
        return None, "no record"
    try:
        record = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None, "the record is not valid JSON"
    problem = _record_problem(record, expected)
    if problem:
        return None, problem
    lib_path = os.path.join(folder, key + ".so")
    try:
        fd = _open_nofollow(lib_path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        return None, f"cannot open the library ({exc.strerror})"
    keep = False
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or not _is_private(st):
            return None, "the library is not a regular file of this user closed to others"
        if st.st_size != record["size"] or _sha256_fd(fd) != record["sha256"]:
            return None, "the library does not match its record (size or sha256)"
        # Loaded through the descriptor just checked.  The descriptor stays open for the life of the
        # process (one per file): the dynamic loader knows a library by its path, and a reused
        # descriptor number would otherwise name another library as an already loaded one.
        identity = (st.st_dev, st.st_ino, record["sha256"])
        if identity in _held_fds:
            load_fd = _held_fds[identity]
        else:
            load_fd = fd
        proc_path = f"/proc/self/fd/{load_fd}"
        keep = load_fd == fd and os.path.exists(proc_path)
        kernel = NativeKernel(proc_path if os.path.exists(proc_path) else lib_path, record["symbol"],
                              expected["kind"], expected["dtype"], expected["out_dtype"])
        if keep:
            _held_fds[identity] = fd
    except BaseException:
        keep = False
        raise
    finally:
        if not keep:
            os.close(fd)
    return kernel, ""


def _is_transient(exc: BaseException) -> bool:
    seen = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in TRANSIENT_ERRNOS:
            return True
        if any(text in str(seen) for text in _TRANSIENT_TEXT):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _note_fields() -> dict:
    from . import native_build

    versions = installed_versions()
    return {"numba": versions["numba"], "llvmlite": versions["llvmlite"], "interface": interface.INTERFACE_HASH,
            "linker": native_build.find_linker()}


def _failed_note(path: str) -> str | None:
    """The reason in a still valid ``.failed`` note; None (and the note removed) when it has expired."""
    raw = _read_private(path)
    if raw is None:
        if os.path.lexists(path):
            _remove(path)  # a link or a foreign file: not our note
        return None
    try:
        note = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        note = None
    if (isinstance(note, dict) and not note.get("transient")
            and all(note.get(k) == v for k, v in _note_fields().items())):
        return str(note.get("error", "unknown error"))[:500]
    _remove(path)
    return None


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _write_failed_note(path: str, exc: BaseException) -> None:
    note = dict(_note_fields(), error=f"{type(exc).__name__}: {exc}"[:2000], transient=_is_transient(exc))
    try:
        _write_new(path, json.dumps(note).encode())
    except OSError:
        pass  # a full disk: nothing to remember


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, another user's
    return True


def _remove_leftovers(folder: str, key: str) -> None:
    """Remove what builds of ``key`` killed mid-way left behind (their pid is in the name and gone)."""
    import shutil

    pattern = re.compile(r"\.build-(\d+)-.*|" + re.escape(key) + r"\.(?:json|failed)\.(\d+)\.tmp")
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        match = pattern.fullmatch(name)
        if not match:
            continue
        pid = int(match.group(1) or match.group(2))
        if pid == os.getpid() or _pid_alive(pid):
            continue
        path = os.path.join(folder, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            _remove(path)


_told_compiling = False


def _tell(text: str, stream=None) -> None:
    """A progress note for a person at a terminal: on stderr, and only when it is a terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        if stream.isatty():
            print(text, file=stream, flush=True)
    except (AttributeError, OSError, ValueError):
        pass


def _say_compiling(stream=None) -> None:
    """Say once a process that the kernels are being compiled (the first run waits for it)."""
    global _told_compiling
    if not _told_compiling:
        _told_compiling = True
        _tell("nbnumba: compiling the kernels for this CPU (once, about 5-15 s; later runs load them from "
              f"{cache_dir()})", stream)


def _build_checked(kind: str, dtype: str, out_dtype: str, folder: str, key: str, expected: dict) -> NativeKernel:
    """Build the library of ``key`` under the lock (unless another process just did) and load it."""
    from . import native_build

    fd = _lock(os.path.join(folder, key + ".lock"))
    try:
        kernel, _ = _checked_kernel(folder, key, expected)
        if kernel is not None:
            return kernel
        _remove_leftovers(folder, key)
        lib_path = os.path.join(folder, key + ".so")
        _say_compiling()
        started = time.perf_counter()
        try:
            symbol = native_build.build(kind, dtype, out_dtype, lib_path)
        except Exception as exc:
            _write_failed_note(os.path.join(folder, key + ".failed"), exc)
            raise
        lib_fd = _open_nofollow(lib_path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        try:
            size, sha = os.fstat(lib_fd).st_size, _sha256_fd(lib_fd)
        finally:
            os.close(lib_fd)
        record = dict(expected, symbol=symbol, size=size, sha256=sha)
        _write_new(os.path.join(folder, key + ".json"), json.dumps(record).encode())
        kernel, problem = _checked_kernel(folder, key, expected)
        if kernel is None:
            raise RuntimeError(f"the library just built does not check out: {problem}")
        _tell(f"nbnumba: {kind} kernel ({dtype}) compiled in {time.perf_counter() - started:.1f} s")
        return kernel
    finally:
        os.close(fd)


def _load_or_build(kind: str, dtype: str, out_dtype: str, choice: str) -> NativeKernel:
    folder = safe_cache_dir()
    key = library_key(kind, dtype, out_dtype)
    expected = expected_record(key, kind, dtype, out_dtype)
    kernel, _ = _checked_kernel(folder, key, expected)
    if kernel is not None:
        return kernel
    failed = os.path.join(folder, key + ".failed")
    reason = _failed_note(failed)
    if reason is not None and choice == "auto":
        raise _Fallback(f"an earlier build failed ({reason}); delete {failed} to retry")
    return _build_checked(kind, dtype, out_dtype, folder, key, expected)


def load(kind: str, dtype: str, out_dtype: str) -> NativeKernel | None:
    """The native kernel ``kind`` for this precision, or None to use the JIT kernel.

    Builds the library on first use, and rebuilds one that does not match
    its record.  With ``NBNUMBA_CPU_KERNEL=native`` a failure raises
    :class:`~nbnumba.errors.ConfigError` instead of returning None; in
    ``auto`` mode the first fallback of a process is reported with a
    ``RuntimeWarning`` that says why.
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
        kernel = _load_or_build(kind, dtype, out_dtype, choice)
    except Exception as exc:  # noqa: BLE001 - any failure falls back to the JIT kernel
        if choice == "native":
            raise ConfigError(f"NBNUMBA_CPU_KERNEL=native: cannot build or load the native kernel ({exc})") from exc
        _warn_once("fallback", f"nbnumba: using the Numba JIT kernel ({exc})")
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


def start_workers(count: int | None = None) -> None:
    """Start the kernel's helper threads now (``count``, default one fewer than
    :func:`default_threads`), so that the next run does not wait for them."""
    _threads.pool().ensure(default_threads() - 1 if count is None else max(0, int(count)))


def stop_workers() -> None:
    """End the helper threads (before a fork that must leave a process without threads)."""
    _threads.stop()


def run(kernel: NativeKernel, arrays: interface.KernelArrays, first_index: int, interp_stop: int, scale: float,
        out: np.ndarray, start: int = 0, nthreads: int | None = None, row: int = 1, progress=None) -> float:
    """Run ``kernel`` on raster pixels ``start .. start+out.size-1``, into ``out``.

    ``arrays`` are the run constants in the kernel's precision
    (:func:`nbnumba.kernels.interface.kernel_arrays`).  The range is split
    into chunks of whole rows (``row`` pixels each) handed to ``nthreads``
    threads as each finishes its last; ``progress``, if given, is called
    with the fraction of the range done (about every 5%).  Returns the
    summed return values (the solid angle for ``render``), added in raster
    order.
    """
    interface.check_arrays(arrays, kernel.dtype.name)
    if out.dtype != kernel.out_dtype or not out.flags.c_contiguous:
        raise ValueError("output array must be contiguous and of the kernel's output type")
    fixed = interface.pack(arrays, first_index, interp_stop, scale)
    n = out.size
    base = out.ctypes.data
    itemsize = out.itemsize
    threads = max(1, int(nthreads) if nthreads else default_threads())

    def chunk(lo, hi):
        return kernel.fn(*fixed, start + lo, hi - lo, base + lo * itemsize)

    if n == 0:
        return 0.0
    if threads == 1 and progress is None:
        return chunk(0, n)
    # about 16 chunks a thread, of whole rows, for an even load; each thread (the calling one
    # included) takes the next chunk when it finishes one
    rows_total = -(-n // row)
    step = max(1, -(-rows_total // (16 * threads))) * row
    bounds = [(lo, min(lo + step, n)) for lo in range(0, n, step)]
    done = reported = 0

    def account(i):
        nonlocal done, reported
        done += bounds[i][1] - bounds[i][0]
        if done * 20 // n > reported or done == n:
            reported = done * 20 // n
            progress(done / n)

    results = _threads.run_chunks(lambda i: chunk(*bounds[i]), len(bounds), threads,
                                  on_done=account if progress is not None else None)
    total = 0.0
    for value in results:  # in raster order, whatever order the threads finished in
        total += value
    del arrays  # alive until every call returned
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
