"""Multi-column numeric text files (``-sourcefile``, ``-stol``), read as C does.

C's reader takes each line, skips leading delimiters (any of `` \\t,;:!``),
ignores lines that are then just a newline, and converts successive fields
with ``atof``; columns a line does not supply stay NaN.  Two consequences of
its end-of-line test, which looks for a bare ``"\\n"``, are reproduced: on a
last line without a newline, and on lines ending in ``"\\r\\n"``, the columns
after the last field are set to 0.0 instead of NaN (a :class:`UserWarning`
reports it).  Lines longer than 10239 characters are split, as ``fgets``
with C's buffer does.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from nbnumba.errors import InputFileError
from nbnumba.io._text import read_text
from nbnumba.io.cfmt import c_atof

__all__ = ["DELIMITERS", "read_text_columns"]

DELIMITERS = " \t,;:!"
"""Field separators of C's text reader."""

MAX_COLUMN_LINE = 65536
"""Longest line accepted in a column file (C splits lines at 10239 characters,
which is reproduced; longer runs without a newline are refused)."""

_NUMBER_CHARS = "0123456789-+.EGeg"
_FGETS_MAX = 10240 - 1


def _span(text: str, pos: int, chars: str) -> int:
    n = len(text)
    while pos < n and text[pos] in chars:
        pos += 1
    return pos


def _cspan(text: str, pos: int, chars: str) -> int:
    n = len(text)
    while pos < n and text[pos] not in chars:
        pos += 1
    return pos


def _fgets_chunks(text: str):
    pos = 0
    n = len(text)
    while pos < n:
        nl = text.find("\n", pos, pos + _FGETS_MAX)
        end = nl + 1 if nl >= 0 else min(pos + _FGETS_MAX, n)
        yield text[pos:end]
        pos = end


def read_text_columns(path, ncols: int) -> np.ndarray:
    """Read up to `ncols` numeric columns from a text file, like C.

    Parameters
    ----------
    path : str or os.PathLike
        Text file, one record per line, fields separated by any run of
        `` \\t,;:!``.
    ncols : int
        Number of columns to read (5 for a source file: X Y Z weight
        wavelength; 2 for an ``-stol`` file: sin(theta)/lambda and F).

    Returns
    -------
    numpy.ndarray
        float64 array of shape ``(ncols, nlines)`` where ``nlines`` counts
        the non-blank lines.  Missing columns are NaN; a field that is not a
        number reads as 0.0 (``atof``).

    Raises
    ------
    InputFileError
        If the file cannot be read (or is larger than 2 GiB, or has a line
        over 64 KiB) or a field reads as infinity or NaN.
    """
    if ncols < 1:
        raise ValueError("ncols must be at least 1")
    fname, text = read_text(path, "text file", max_line=MAX_COLUMN_LINE)

    rows: list[list[float]] = []
    zero_filled: list[int] = []
    newlines_before = 0
    for chunk in _fgets_chunks(text):
        lineno = newlines_before + 1
        newlines_before += chunk.count("\n")
        pos = _span(chunk, 0, DELIMITERS)
        if chunk[pos:] == "\n":
            continue
        row = [np.nan] * ncols
        i = 0
        while True:
            if pos >= len(chunk):
                # C keeps converting the empty remainder: atof("") == 0.
                zero_filled.append(lineno)
            row[i] = c_atof(chunk[pos:])
            if not math.isfinite(row[i]):
                raise InputFileError(f"{fname}, line {lineno}: non-finite value in column {i + 1}")
            pos = _span(chunk, pos, _NUMBER_CHARS)
            if chunk[pos:] == "\n":
                break
            pos = _cspan(chunk, pos, DELIMITERS)
            pos = _span(chunk, pos, DELIMITERS)
            if chunk[pos:] == "\n":
                break
            i += 1
            if i >= ncols:
                break
        rows.append(row)
    if zero_filled:
        warnings.warn(
            f"{fname}, line {zero_filled[0]}: no plain newline ends the line, so missing "
            "columns read as 0 instead of NaN, as in the C program",
            stacklevel=2,
        )
    out = np.full((ncols, len(rows)), np.nan, dtype=np.float64)
    if rows:
        out[:, :] = np.array(rows, dtype=np.float64).T
    return out


def check_numeric_columns(path, ncols: int, what: str) -> None:
    """Reject a column file with non-numeric fields or too many columns.

    C reads such fields as 0 (``atof``) and silently ignores extra columns;
    nbnumba stops with the file name and line instead.

    Raises
    ------
    InputFileError
        Naming the file, the line and the offending text.
    """
    import re

    fname, text = read_text(path, what, max_line=MAX_COLUMN_LINE)
    splitter = re.compile("[" + re.escape(DELIMITERS) + "\r\n]+")
    rows = 0
    for lineno, line in enumerate(text.split("\n"), start=1):
        fields = [f for f in splitter.split(line) if f]
        if not fields:
            continue
        rows += 1
        if len(fields) > ncols:
            raise InputFileError(f"{fname}, line {lineno}: {len(fields)} columns in a {what} (at most {ncols})")
        for field in fields:
            try:
                value = float(field)
            except ValueError:
                raise InputFileError(f"{fname}, line {lineno}: {field!r} is not a number ({what})") from None
            if not math.isfinite(value):
                raise InputFileError(f"{fname}, line {lineno}: non-finite value {field!r} ({what})")
    if rows == 0:
        raise InputFileError(f"{fname}: no data in the {what}")
