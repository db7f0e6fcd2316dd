"""Number formatting and parsing that behave like the C library.

nanoBragg prints header values with ``printf("%g")`` and reads numbers with
``atof``/``strtod``/``fscanf``; these helpers give the same text and values in
Python.
"""

from __future__ import annotations

import math
import re

__all__ = ["C_WHITESPACE", "c_atof", "c_atoi", "c_g", "c_strtod_prefix", "c_strtol_prefix"]

C_WHITESPACE = " \t\n\v\f\r"
"""Characters for which C's ``isspace`` is true in the "C" locale."""

_STRTOD_RE = re.compile(
    r"""[ \t\n\v\f\r]*
    (
      [+-]?
      (?:
          0x(?:[0-9a-f]+\.?[0-9a-f]*|\.[0-9a-f]+)(?:p[+-]?[0-9]+)?
        | (?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:e[+-]?[0-9]+)?
        | inf(?:inity)?
        | nan(?:\([0-9a-z_]*\))?
      )
    )""",
    re.VERBOSE | re.IGNORECASE,
)


def c_g(x: float, precision: int = 6) -> str:
    """Format a number as glibc ``printf("%g")`` (or ``%.<precision>g``) does.

    Parameters
    ----------
    x : float
        Value to format (ints are converted to float, as a C ``double``).
    precision : int, optional
        Significant digits, default 6 like ``%g``.

    Returns
    -------
    str
        The text glibc prints, e.g. ``'0.1'``, ``'1e+06'``, ``'-0'``,
        ``'inf'``, ``'-inf'``, ``'nan'`` or ``'-nan'`` (NaN with the sign bit
        set, which glibc prints with a minus sign).
    """
    x = float(x)
    if math.isnan(x):
        return "-nan" if math.copysign(1.0, x) < 0 else "nan"
    return format(x, f".{precision}g")


def c_strtod_prefix(text: str) -> tuple[float, int]:
    """Parse the longest numeric prefix of `text` as C's ``strtod`` does.

    Leading C white space is skipped; decimal and hexadecimal floats,
    ``inf``/``infinity`` and ``nan``/``nan(...)`` are accepted in any case.

    Parameters
    ----------
    text : str
        Text to parse.

    Returns
    -------
    value : float
        Parsed value, 0.0 when no number is found.
    end : int
        Index just past the number in `text`, or 0 when nothing was parsed
        (``strtod`` then leaves ``endptr`` at the start).
    """
    m = _STRTOD_RE.match(text)
    if m is None:
        return 0.0, 0
    token = m.group(1)
    body = token.lstrip("+-")
    negative = token.startswith("-")
    low = body.lower()
    if low.startswith("0x"):
        try:
            value = float.fromhex(body)
        except OverflowError:  # strtod gives HUGE_VAL
            value = math.inf
    elif low.startswith("inf"):
        value = math.inf
    elif low.startswith("nan"):
        value = math.nan
    else:
        value = float(body)
    if negative:
        value = -value
    return value, m.end(1)


def c_atof(text: str) -> float:
    """Value of C's ``atof(text)``: the numeric prefix, or 0.0 if none.

    Parameters
    ----------
    text : str
        Text to parse.

    Returns
    -------
    float
        Parsed value.
    """
    return c_strtod_prefix(text)[0]


_STRTOL_RE = re.compile(r"[ \t\n\v\f\r]*([+-]?[0-9]+)")
_LONG_MAX = 2**63 - 1


def c_strtol_prefix(text: str) -> tuple[int, int]:
    """Parse the longest base-10 integer prefix of `text` as C's ``strtol`` does.

    Leading C white space is skipped, then an optional sign and ASCII digits;
    a value beyond the 64-bit ``long`` range is clamped to it, as glibc does.

    Parameters
    ----------
    text : str
        Text to parse.

    Returns
    -------
    value : int
        Parsed value, 0 when no number is found.
    end : int
        Index just past the number in `text`, or 0 when nothing was parsed.
    """
    m = _STRTOL_RE.match(text)
    if m is None:
        return 0, 0
    value = max(-_LONG_MAX - 1, min(_LONG_MAX, int(m.group(1))))
    return value, m.end(1)


def c_atoi(text: str) -> int:
    """Value of C's ``atoi(text)`` with glibc on a 64-bit machine.

    glibc computes ``(int) strtol(text, NULL, 10)``: the clamped ``long``
    keeps its low 32 bits, read as a signed ``int``.

    Parameters
    ----------
    text : str
        Text to parse.

    Returns
    -------
    int
        Parsed value.
    """
    value = c_strtol_prefix(text)[0] & 0xFFFFFFFF
    return value - (1 << 32) if value >= (1 << 31) else value
