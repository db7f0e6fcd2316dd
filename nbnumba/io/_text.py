"""Reading a whole input text file, with one error message for every reader.

Reading is bounded: a file larger than `max_bytes` or with a line longer than
`max_line` characters is refused while it is being read, so a device such as
``/dev/zero`` or a multi-gigabyte file given by mistake ends in one error
after a few kilobytes instead of filling the memory.
"""

from __future__ import annotations

import os

import numpy as np

from nbnumba.errors import InputFileError

MAX_TEXT_BYTES = 2 * 1024**3
"""Largest text input accepted (2 GiB)."""

MAX_LINE = 4096
"""Longest line accepted in an HKL or matrix file (4 KiB)."""

_CHUNK = 1 << 20


def _human(nbytes: int) -> str:
    from nbnumba.budget import human_bytes

    return human_bytes(nbytes)


def _line_lengths(chunk: bytes, run: int):
    """Lengths of the lines in ``chunk`` (without newlines); the first continues a line of ``run`` bytes.

    The last entry is the unfinished line at the end of the chunk.
    """
    newlines = np.flatnonzero(np.frombuffer(chunk, dtype=np.uint8) == 10)
    ends = np.append(newlines, len(chunk))
    lengths = np.diff(ends, prepend=-1) - 1
    lengths[0] += run
    return lengths


def read_bounded(fname: str, what: str, max_bytes: int, max_line: int | None = None) -> bytes:
    """Bytes of `fname`, refusing more than `max_bytes` or a line over `max_line`.

    Parameters
    ----------
    fname : str
        File to read (any kind: regular file, device, pipe).
    what : str
        What the file is, for the messages (``"hkl file"``).
    max_bytes : int
        Largest size accepted.
    max_line : int, optional
        Longest run of bytes without a newline accepted; None: no limit.

    Returns
    -------
    bytes
        The whole content.

    Raises
    ------
    InputFileError
        If the file cannot be read or exceeds a bound; the message names the
        file and, for an overlong line, the line number.
    """
    parts: list[bytes] = []
    total = 0
    run = 0  # bytes since the last newline
    lines_before = 0
    try:
        with open(fname, "rb") as handle:
            try:
                size = os.fstat(handle.fileno()).st_size
            except OSError:
                size = 0
            if size > max_bytes:
                raise InputFileError(
                    f"{fname}: {what} too large ({_human(size)}; at most {_human(max_bytes)} accepted)"
                )
            while True:
                chunk = handle.read(_CHUNK)
                if not chunk:
                    break
                total += len(chunk)
                if total > max_bytes:
                    raise InputFileError(f"{fname}: {what} too large (more than {_human(max_bytes)})")
                if max_line:
                    lengths = _line_lengths(chunk, run)
                    bad = np.flatnonzero(lengths > max_line)
                    if bad.size:
                        raise InputFileError(f"{fname}, line {lines_before + int(bad[0]) + 1}: line longer than "
                                             f"{max_line} characters in the {what}")
                    run = int(lengths[-1])
                    lines_before += lengths.size - 1
                parts.append(chunk)
    except OSError as exc:
        raise InputFileError(f"{fname}: cannot read {what}: {exc.strerror or exc}") from exc
    return b"".join(parts)


def read_text(path, what: str, max_bytes: int = MAX_TEXT_BYTES, max_line: int | None = MAX_LINE) -> tuple[str, str]:
    """Return ``(file name, text)``; bytes are read as Latin-1, like C's chars.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    what : str
        What the file is, for the messages.
    max_bytes : int, optional
        Largest size accepted (default :data:`MAX_TEXT_BYTES`).
    max_line : int or None, optional
        Longest line accepted (default :data:`MAX_LINE`); None: no limit.

    Raises
    ------
    InputFileError
        ``"<file>: cannot read <what>: <reason>"`` when the file cannot be
        read, or a message naming the bound the file exceeds.
    """
    fname = os.fspath(path)
    return fname, read_bounded(fname, what, max_bytes, max_line).decode("latin-1")
