"""Writing output files without ever destroying anything.

Every file a command writes goes through :class:`OutputSet`, a small
transaction:

* a regular file (new, existing, or reached through a symbolic link) is
  written to a temporary beside its final target,
  ``.nbnumba-<pid>-<random>-<name>.tmp``, and renamed over the target only
  when every output of the set is complete.  A symbolic link stays a link:
  its target is replaced, in the target's folder, and keeps its
  permissions (and, for root, its owner);
* a character device, FIFO or socket (``/dev/null``, a named pipe, and
  a link under ``/dev/`` or ``/proc/`` such as ``/dev/stdout``) is
  written straight through, never replaced; this happens at commit time,
  after every regular output is complete and before any is renamed;
* when anything fails (a full disk, an I/O error, an exception,
  ``KeyboardInterrupt``) the temporaries are removed and the files at the
  final names are left as they were;
* temporaries left behind by a killed process (a dead pid in the name) are
  removed by the next set that writes into the same folder.

:func:`check_outputs` makes the checks that need no rendering (folders,
collisions between outputs and with the run's inputs) so that a command
can refuse before any work.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from nbnumba.errors import OutputFileError

__all__ = ["OutputSet", "atomic_write", "check_outputs", "is_stream", "remove_stale_temporaries"]

TEMP_PREFIX = ".nbnumba-"
_TEMP_RE = re.compile(r"^\.nbnumba-(\d+)-[0-9a-f]+-.*\.tmp$")
_STREAM_ROOTS = ("/dev/", "/proc/")
_NAME_KEEP = 100  # characters of the target's name kept in a temporary's name

Content = bytes | bytearray | memoryview | Iterable[bytes] | Callable[[], object]


def _strerror(exc: OSError) -> str:
    return exc.strerror or str(exc)


@dataclass(frozen=True)
class Target:
    """Where and how one output is written.

    Attributes
    ----------
    path : str
        The path as given.
    final : str
        The file that ends up holding the data: the real path (symbolic
        links resolved) for a regular file, `path` itself for a stream.
    kind : {'file', 'stream', 'socket'}
        Replaced through a temporary, written straight through, or sent to
        a Unix socket.
    """

    path: str
    final: str
    kind: str


def _stat(path: str, follow: bool = True):
    try:
        return os.stat(path, follow_symlinks=follow)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise OutputFileError(f"{path}: {_strerror(exc)}") from exc


def is_stream(path) -> bool:
    """True when `path` is written straight through rather than replaced.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    bool
        For an existing character device, FIFO or socket, and for a link
        under ``/dev/`` or ``/proc/`` (``/dev/stdout`` redirected to a file
        is written through, as C does).
    """
    return resolve(path).kind != "file"


def resolve(path) -> Target:
    """How an output at `path` would be written (see :class:`Target`).

    Raises
    ------
    OutputFileError
        For a folder, a block device, or a path whose links cannot be
        resolved.
    """
    p = os.fspath(path)
    if not p:
        raise OutputFileError("empty output file name")
    st = _stat(p)
    if st is not None:
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            raise OutputFileError(f"{p}: is a folder, not a file")
        if stat.S_ISBLK(mode):
            raise OutputFileError(f"{p}: is a block device; refusing to write an image onto it")
        if stat.S_ISSOCK(mode):
            return Target(p, p, "socket")
        if not stat.S_ISREG(mode):
            return Target(p, p, "stream")
    absolute = os.path.abspath(p)
    real = os.path.realpath(p)
    if st is not None and absolute.startswith(_STREAM_ROOTS) and real != absolute:
        # /dev/stdout, /proc/self/fd/N: a descriptor of this process, written through
        return Target(p, p, "stream")
    return Target(p, real, "file")


def _identity(path: str):
    st = _stat(path)
    return None if st is None else (st.st_dev, st.st_ino)


def check_outputs(paths, inputs=(), optional=()) -> list[Target]:
    """Refuse, before any work, outputs that cannot or must not be written.

    Parameters
    ----------
    paths : iterable of str, os.PathLike or None
        Output files of one run (None entries are skipped).
    inputs : iterable of str, os.PathLike or None
        Files the run reads; none of them may be an output.
    optional : iterable of str
        Outputs among `paths` that a run may fail to write with a warning
        (C's ``Fdump.bin`` cache): checked for collisions only.

    Returns
    -------
    list of Target
        One per output, in order.

    Raises
    ------
    OutputFileError
        When a folder is missing or not writable, an output is a folder or
        an existing file that is not writable, two outputs are one file, or
        an output is one of the inputs (same real path, or the same file by
        :func:`os.path.samefile`).  Streams (devices, FIFOs) are written
        through and may repeat.
    """
    in_real = {}
    in_ids = {}
    for item in inputs:
        if item is None:
            continue
        name = os.fspath(item)
        in_real.setdefault(os.path.realpath(name), name)
        ident = _identity(name)
        if ident is not None:
            in_ids.setdefault(ident, name)
    optional = {os.fspath(p) for p in optional}
    seen_real: dict[str, str] = {}
    seen_ids: dict[tuple, str] = {}
    targets = []
    for item in paths:
        if item is None:
            continue
        t = resolve(item)
        targets.append(t)
        if t.kind != "file":
            if not os.access(t.path, os.W_OK):
                raise OutputFileError(f"{t.path}: is not writable")
            continue
        if t.path not in optional:
            _check_folder(t)
        ident = _identity(t.final)
        other = in_real.get(t.final) or (in_ids.get(ident) if ident else None)
        if other is not None:
            raise OutputFileError(f"{t.path}: output file is also an input of the run ({other}); "
                                  "refusing to overwrite it")
        other = seen_real.get(t.final) or (seen_ids.get(ident) if ident else None)
        if other is not None:
            raise OutputFileError(f"{t.path}: two outputs of the run are the same file ({other} and {t.path})")
        seen_real[t.final] = t.path
        if ident is not None:
            seen_ids[ident] = t.path
    return targets


def _check_folder(t: Target) -> None:
    folder = os.path.dirname(t.final) or "."
    if not os.path.isdir(folder):
        raise OutputFileError(f"{t.path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputFileError(f"{t.path}: folder {folder} is not writable")
    if os.path.lexists(t.final) and not os.access(t.final, os.W_OK):
        raise OutputFileError(f"{t.path}: file exists and is not writable")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def remove_stale_temporaries(folder) -> list[str]:
    """Remove temporaries of dead processes from `folder`.

    A temporary is recognised by its name, ``.nbnumba-<pid>-<hex>-<name>.tmp``;
    it is removed when no process with that pid exists (the run that made it
    was killed with SIGKILL or lost its machine).

    Parameters
    ----------
    folder : str or os.PathLike

    Returns
    -------
    list of str
        The files removed.
    """
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        m = _TEMP_RE.match(name)
        if m is None or _pid_alive(int(m.group(1))):
            continue
        path = os.path.join(folder, name)
        try:
            if stat.S_ISREG(os.lstat(path).st_mode):
                os.unlink(path)
                removed.append(path)
        except OSError:
            pass
    return removed


def _chunks_of(content: Content) -> Iterable:
    if callable(content):
        content = content()
    if isinstance(content, (bytes, bytearray, memoryview)):
        return (content,)
    return content


def _write_all(fd: int, content: Content, hasher) -> int:
    size = 0
    for chunk in _chunks_of(content):
        view = memoryview(chunk).cast("B")
        if hasher is not None:
            hasher.update(view)
        while view:
            n = os.write(fd, view)
            size += n
            view = view[n:]
    return size


@dataclass
class _Staged:
    target: Target
    tmp: str | None = None
    content: Content | None = None


@dataclass(frozen=True)
class Written:
    """Size and sha256 (hex, or None when not asked for) of one output."""

    size: int
    sha256: str | None


class OutputSet:
    """All outputs of one run, written together or not at all.

    Use it as a context manager; :meth:`commit` makes the outputs appear,
    leaving the block without committing (or with an exception) removes
    every temporary and leaves the final names untouched.

    Parameters
    ----------
    inputs : iterable of str, optional
        Files the run reads: adding one of them as an output is an error.
    digest : bool, optional
        Record the sha256 of each output in :attr:`written`.
    sweep : bool, optional
        Remove dead processes' temporaries from each folder written into
        (see :func:`remove_stale_temporaries`); default True.

    Attributes
    ----------
    written : dict of str to Written
        After :meth:`commit`: output path (as given) -> size and checksum.

    Examples
    --------
    >>> import os, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> with OutputSet() as out:
    ...     out.add(os.path.join(folder, "a.txt"), b"one")
    ...     out.add(os.path.join(folder, "b.txt"), [b"tw", b"o"])
    ...     out.commit()
    >>> sorted(os.listdir(folder))
    ['a.txt', 'b.txt']
    """

    def __init__(self, inputs=(), digest: bool = False, sweep: bool = True):
        self._inputs = [os.fspath(p) for p in inputs if p is not None]
        self._digest = digest
        self._staged: list[_Staged] = []
        self._sweep = sweep
        self._swept: set[str] = set()
        self._done = False
        self.written: dict[str, Written] = {}

    def __enter__(self) -> OutputSet:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if not self._done:
            self.abort()
        return False

    def _check_new(self, path: str) -> Target:
        paths = [s.target.path for s in self._staged] + [path]
        return check_outputs(paths, self._inputs)[-1]

    def add(self, path, content: Content) -> None:
        """Add one output.

        A regular file's temporary is written now; a stream's content is
        kept and written at :meth:`commit`.

        Parameters
        ----------
        path : str or os.PathLike
            Output file.
        content : bytes, iterable of bytes-like, or callable
            The data, or a function returning them (called once, when the
            data are written).

        Raises
        ------
        OutputFileError
            For a path :func:`check_outputs` refuses, or when the temporary
            cannot be written (every temporary of the set is then removed).
        """
        if self._done:
            raise OutputFileError("output set already committed or aborted")
        try:
            target = self._check_new(os.fspath(path))
            staged = _Staged(target)
            self._staged.append(staged)
            if target.kind != "file":
                staged.content = content
                return
            staged.tmp = self._write_temporary(target, content)
        except BaseException:
            self.abort()
            raise

    def _write_temporary(self, target: Target, content: Content) -> str:
        folder = os.path.dirname(target.final) or "."
        if self._sweep and folder not in self._swept:
            self._swept.add(folder)
            remove_stale_temporaries(folder)
        old = _stat(target.final)
        name = os.path.basename(target.final)[:_NAME_KEEP]
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        while True:
            tmp = os.path.join(folder, f"{TEMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}-{name}.tmp")
            try:
                fd = os.open(tmp, flags, 0o666)
                break
            except FileExistsError:
                continue
            except OSError as exc:
                raise OutputFileError(f"cannot write {target.path}: {_strerror(exc)}") from exc
        hasher = hashlib.sha256() if self._digest else None
        try:
            try:
                if old is not None:
                    os.fchmod(fd, stat.S_IMODE(old.st_mode))
                    if os.geteuid() == 0 and (old.st_uid, old.st_gid) != (0, 0):
                        os.fchown(fd, old.st_uid, old.st_gid)
                size = _write_all(fd, content, hasher)
            finally:
                os.close(fd)
        except BaseException as exc:
            _unlink(tmp)
            if isinstance(exc, OSError):
                raise OutputFileError(f"cannot write {target.path}: {_strerror(exc)}") from exc
            raise
        self.written[target.path] = Written(size, hasher.hexdigest() if hasher else None)
        return tmp

    def _write_stream(self, staged: _Staged) -> None:
        t = staged.target
        hasher = hashlib.sha256() if self._digest else None
        try:
            if t.kind == "socket":
                import socket  # only for this rare kind of output

                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                    sock.connect(t.path)
                    size = 0
                    for chunk in _chunks_of(staged.content):
                        view = memoryview(chunk).cast("B")
                        if hasher is not None:
                            hasher.update(view)
                        sock.sendall(view)
                        size += len(view)
            else:
                fd = os.open(t.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o666)
                try:
                    size = _write_all(fd, staged.content, hasher)
                finally:
                    os.close(fd)
        except OSError as exc:
            raise OutputFileError(f"cannot write {t.path}: {_strerror(exc)}") from exc
        staged.content = None
        self.written[t.path] = Written(size, hasher.hexdigest() if hasher else None)

    def commit(self) -> None:
        """Write the streams, then rename every temporary into place.

        Raises
        ------
        OutputFileError
            When a stream or a rename fails; the temporaries not yet renamed
            are removed.
        """
        if self._done:
            raise OutputFileError("output set already committed or aborted")
        try:
            if any(staged.target.kind != "file" for staged in self._staged):
                _flush_std_streams()  # text already printed comes before data sent to /dev/stdout
            for staged in self._staged:
                if staged.target.kind != "file":
                    self._write_stream(staged)
            for staged in self._staged:
                if staged.tmp is not None:
                    try:
                        os.replace(staged.tmp, staged.target.final)
                    except OSError as exc:
                        raise OutputFileError(f"cannot write {staged.target.path}: {_strerror(exc)}") from exc
                    staged.tmp = None
        except BaseException:
            self.abort()
            raise
        self._done = True

    def abort(self) -> None:
        """Remove every temporary; the final names keep what they held."""
        for staged in self._staged:
            if staged.tmp is not None:
                _unlink(staged.tmp)
                staged.tmp = None
            staged.content = None
        self._done = True

    def __len__(self) -> int:
        return len(self._staged)


def _flush_std_streams() -> None:
    import sys

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def atomic_write(path, chunks: Content, inputs=()) -> None:
    """Write one file safely (an :class:`OutputSet` of one output).

    Parameters
    ----------
    path : str or os.PathLike
        Destination; a regular file is replaced atomically, a device or
        FIFO is written through, a symbolic link's target is replaced.
    chunks : bytes or iterable of bytes-like
        Content, written in order.
    inputs : iterable of str, optional
        Files that must not be overwritten.

    Raises
    ------
    OutputFileError
        If the file cannot be written; nothing is left behind.
    """
    with OutputSet(inputs=inputs) as out:
        out.add(path, chunks)
        out.commit()
