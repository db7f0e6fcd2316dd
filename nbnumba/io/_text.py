"""Reading a whole input text file, with one error message for every reader."""

from __future__ import annotations

import os

from nbnumba.errors import InputFileError


def read_text(path, what: str) -> tuple[str, str]:
    """Return ``(file name, text)``; bytes are read as Latin-1, like C's chars.

    Raises
    ------
    InputFileError
        ``"<file>: cannot read <what>: <reason>"`` when the file cannot be read.
    """
    fname = os.fspath(path)
    try:
        with open(fname, "rb") as handle:
            return fname, handle.read().decode("latin-1")
    except OSError as exc:
        raise InputFileError(f"{fname}: cannot read {what}: {exc.strerror or exc}") from exc
