"""MOSFLM-style orientation matrix files (``-mat``), read as C does.

C reads the first nine numbers with three ``fscanf("%lg%lg%lg")`` calls; the
three numbers of call *i* are component *i* of a*, b* and c* (the matrix is
stored by rows, reciprocal vectors in columns).  Anything after the ninth
number (cell parameters, missetting angles of a full MOSFLM file) is ignored.
"""

from __future__ import annotations

import math
import re

import numpy as np

from nbnumba.errors import InputFileError
from nbnumba.io._text import read_text
from nbnumba.io.cfmt import c_strtod_prefix

__all__ = ["read_mosflm_matrix"]

_TOKEN = re.compile(
    r"[ \t\n\v\f\r]*([+-]?(?:0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)(?:[pP][+-]?[0-9]+)?"
    r"|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
    r"|[iI][nN][fF](?:[iI][nN][iI][tT][yY])?|[nN][aA][nN](?:\([0-9A-Za-z_]*\))?))"
)
_SKIP_WS = re.compile(r"[ \t\n\v\f\r]*")


def read_mosflm_matrix(path) -> np.ndarray:
    """Read the 3x3 matrix of a MOSFLM orientation file.

    Parameters
    ----------
    path : str or os.PathLike
        Matrix file; its first nine numbers (white-space separated, any line
        layout) are used.

    Returns
    -------
    numpy.ndarray
        float64 array of shape (3, 3); row *i* is
        ``(a_star[i], b_star[i], c_star[i])``, so ``a_star = M[:, 0]``,
        ``b_star = M[:, 1]``, ``c_star = M[:, 2]`` (still in MOSFLM's units,
        including the wavelength, exactly as read).

    Raises
    ------
    InputFileError
        If the file cannot be read (or is larger than 2 GiB, or has a line
        over 4 KiB), does not start with nine numbers, or one of them is not
        finite; the message names the line.
    """
    fname, text = read_text(path, "matrix file")
    values = []
    pos = 0
    for _ in range(9):
        m = _TOKEN.match(text, pos)
        if m is None:
            where = _SKIP_WS.match(text, pos).end()
            got = text[where:].split("\n", 1)[0].strip()
            if not got:
                # End of file: point at the last line that has any content.
                where = len(text.rstrip())
            line = text.count("\n", 0, where) + 1
            found = f"found {got!r}" if got else "found end of file"
            raise InputFileError(
                f"{fname}, line {line}: expected 9 numbers (3 rows of a*, b*, c* components), "
                f"read {len(values)}, {found}"
            )
        token = m.group(1)
        try:
            value = float(token)
        except ValueError:
            value = c_strtod_prefix(token)[0]
        if not math.isfinite(value):
            line = text.count("\n", 0, m.start(1)) + 1
            raise InputFileError(f"{fname}, line {line}: non-finite matrix element {token!r}")
        values.append(value)
        pos = m.end(1)
    return np.array(values, dtype=np.float64).reshape(3, 3)
