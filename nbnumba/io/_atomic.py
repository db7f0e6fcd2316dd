"""Atomic file writing shared by the image and table writers."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable

from nbnumba.errors import OutputFileError

__all__ = ["atomic_write"]


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path, chunks: bytes | Iterable[bytes]) -> None:
    """Write bytes to `path` so that no partially written file is ever visible.

    The data go to a temporary file in the destination directory, which is
    flushed and then renamed over `path` with :func:`os.replace` (no fsync:
    the rename is what keeps a failed or interrupted write invisible).
    The file gets the permissions a plain ``fopen`` would give it
    (``0666`` less the umask).

    Parameters
    ----------
    path : str or os.PathLike
        Destination file.
    chunks : bytes or iterable of bytes-like
        Content, written in order.

    Raises
    ------
    OutputFileError
        If the file cannot be created or written; the temporary file is removed.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if isinstance(chunks, (bytes, bytearray, memoryview)):
        chunks = (chunks,)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix="-" + os.path.basename(path), dir=directory)
        os.chmod(tmp, 0o666 & ~_current_umask())
        with os.fdopen(fd, "wb") as handle:
            for chunk in chunks:
                handle.write(chunk)
            handle.flush()
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise OutputFileError(f"cannot write {path}: {exc.strerror or exc}") from exc
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
