"""Reading a whole input text file, with one error message for every reader.

Reading is bounded: a file larger than `max_bytes` or with a line longer than
`max_line` characters is refused while it is being read, so a device such as
``/dev/zero`` or a multi-gigabyte file given by mistake ends in one error
after a few kilobytes instead of filling the memory.
"""

from __future__ import annotations

import os
import re

from nbnumba.errors import InputFileError

MAX_TEXT_BYTES = 2 * 1024**3
"""Largest text input accepted (2 GiB)."""

MAX_LINE = 4096
"""Longest line accepted in an HKL or matrix file (4 KiB)."""

_CHUNK = 1 << 20


def _human(nbytes: int) -> str:
    from nbnumba.budget import human_bytes

    return human_bytes(nbytes)


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
    too_long = re.compile(rb"[^\n]{%d}" % (max_line + 1)) if max_line else None
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
                if too_long is not None:
                    first_nl = chunk.find(b"\n")
                    bad = run + (first_nl if first_nl >= 0 else len(chunk)) > max_line
                    m = None if bad else too_long.search(chunk)
                    if bad or m is not None:
                        line = lines_before + chunk.count(b"\n", 0, m.start() if m else 0) + 1
                        raise InputFileError(
                            f"{fname}, line {line}: line longer than {max_line} characters in the {what}"
                        )
                    last_nl = chunk.rfind(b"\n")
                    run = run + len(chunk) if last_nl < 0 else len(chunk) - last_nl - 1
                    lines_before += chunk.count(b"\n")
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
