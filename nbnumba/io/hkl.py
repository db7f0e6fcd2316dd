"""Structure-factor text files (``-hkl``) and the binary ``Fdump.bin`` cache.

The C program reads an hkl file twice with ``fscanf``: a first pass reads
``h k l F`` as four floating-point numbers to find the index ranges (it warns
about non-integer indices), a second pass reads ``h k l`` as integers and
``F`` as a float and stores F in a dense 3-D table.  Because the second pass
parses integers, a non-integer index such as ``1.5`` stops it early (the
``%d`` conversion takes ``1`` and then fails on ``.5``); :func:`read_hkl`
reproduces that, and records C's warnings.

Unlike C, :func:`read_hkl` refuses files that are not one ``h k l F``
record per line (C silently stops at the first text it cannot parse), and
non-finite numbers.  Files with extra columns (``h k l F SIGF`` or
``h k l F SIGF PHASE``, as CCP4 tools write them) are read in spec mode with
F from the fourth column; C reads any file as a stream of numbers taken four
at a time, whatever the lines, so parity mode reads such a file that way
(with a warning): the fifth number becomes the next record's h.

Reading is bounded (:mod:`nbnumba.io._text`: 2 GiB, 4 KiB lines) and the
dense table is checked against the available memory before it is allocated
(:func:`nbnumba.budget.check_memory`).

``Fdump.bin`` is the text line ``"h_min h_max k_min k_max l_min l_max\\n\\f"``
followed by the table as native (little-endian) doubles, including the extra
last plane, row and column C allocates.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from dataclasses import dataclass, field

import numpy as np

from nbnumba.budget import check_memory
from nbnumba.errors import InputFileError
from nbnumba.io._atomic import atomic_write
from nbnumba.io._text import MAX_TEXT_BYTES, read_text
from nbnumba.io.cfmt import C_WHITESPACE, c_g, c_strtod_prefix

__all__ = ["HKLGrid", "dense_grid", "fdump_bytes", "read_fdump", "read_hkl", "write_fdump"]

_WS = r"[ \t\n\v\f\r]*"
_FLT = (
    r"[+-]?(?:0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)(?:[pP][+-]?[0-9]+)?"
    r"|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
    r"|[iI][nN][fF](?:[iI][nN][iI][tT][yY])?"
    r"|[nN][aA][nN](?:\([0-9A-Za-z_]*\))?)"
)
_INT = r"[+-]?[0-9]+"
# One record of the first pass ("%lg%lg%lg%lg") and of the second ("%d%d%d%lg").
_PASS1 = re.compile(f"{_WS}({_FLT}){_WS}({_FLT}){_WS}({_FLT}){_WS}({_FLT})")
_PASS2 = re.compile(f"{_WS}({_INT}){_WS}({_INT}){_WS}({_INT}){_WS}({_FLT})")
_NONSPACE = re.compile(r"[^ \t\n\v\f\r]")
_INT6 = re.compile(f"{_WS}({_INT}){_WS}({_INT}){_WS}({_INT}){_WS}({_INT}){_WS}({_INT}){_WS}({_INT})".encode())

_FDUMP_HEADER_MAX = 65536
_INITIAL_MIN = 1_000_000_000
_INITIAL_MAX = -1_000_000_000


@dataclass
class HKLGrid:
    """Dense structure-factor table as the C program holds it.

    Attributes
    ----------
    h_min, h_max, k_min, k_max, l_min, l_max : int
        Index ranges.
    F : numpy.ndarray
        float64 array of shape ``(h_range + 1, k_range + 1, l_range + 1)``;
        ``F[h - h_min, k - k_min, l - l_min]`` is the structure factor.  The
        last plane/row/column is an extra one C allocates; it stays 0 even
        when a default F is given.
    hkls : int
        C's reflection count: records read by the first pass of an hkl file,
        or ``h_range * k_range * l_range`` for a table read from Fdump.
    warnings : list of str
        Warnings C would print (non-integer indices, early stop).
    """

    h_min: int
    h_max: int
    k_min: int
    k_max: int
    l_min: int
    l_max: int
    F: np.ndarray
    hkls: int = 0
    warnings: list = field(default_factory=list)

    @property
    def h_range(self) -> int:
        """``h_max - h_min + 1``."""
        return self.h_max - self.h_min + 1

    @property
    def k_range(self) -> int:
        """``k_max - k_min + 1``."""
        return self.k_max - self.k_min + 1

    @property
    def l_range(self) -> int:
        """``l_max - l_min + 1``."""
        return self.l_max - self.l_min + 1


def _to_double(token: str) -> float:
    try:
        return float(token)
    except ValueError:
        return c_strtod_prefix(token)[0]


def _to_int32(token: str) -> int:
    value = int(token)
    return (value + 2**31) % 2**32 - 2**31


def _line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _check_table(fname: str, h_min: int, h_max: int, k_min: int, k_max: int, l_min: int, l_max: int) -> None:
    """Refuse a dense table that cannot fit in memory (before np.zeros)."""
    cells = (h_max - h_min + 2) * (k_max - k_min + 2) * (l_max - l_min + 2)
    check_memory(
        8.0 * cells if cells < 2**100 else math.inf,
        f"{fname}: the structure-factor table for h {h_min}..{h_max}, k {k_min}..{k_max}, l {l_min}..{l_max}",
        error=InputFileError,
    )


_SPLIT = re.compile(r"[ \t\n\v\f\r]+")
_NUMBER = re.compile(_FLT)


def _drop_extra_columns(fname: str, text: str) -> str:
    """Spec mode: keep ``h k l F`` of ``h k l F SIGF [PHASE]`` lines (line numbers kept)."""
    out = []
    for lineno, line in enumerate(text.split("\n"), start=1):
        fields = [f for f in _SPLIT.split(line) if f]
        if len(fields) > 4:
            if len(fields) > 6:
                raise InputFileError(
                    f"{fname}, line {lineno}: {len(fields)} columns; expected 'h k l F', 'h k l F SIGF' "
                    "or 'h k l F SIGF PHASE'"
                )
            for extra in fields[4:]:
                if not _NUMBER.fullmatch(extra):
                    raise InputFileError(f"{fname}, line {lineno}: expected a number, got {extra!r}")
                if not math.isfinite(_to_double(extra)):
                    raise InputFileError(f"{fname}, line {lineno}: non-finite value {extra!r}")
            line = " ".join(fields[:4])
        out.append(line)
    return "\n".join(out)


def read_hkl(path, default_F: float = 0.0, mode: str = "spec") -> HKLGrid:
    """Read an ``h k l F`` text file into a dense table, as C does.

    Parameters
    ----------
    path : str or os.PathLike
        The hkl file: one reflection per line, ``h k l F`` separated by
        white space; in spec mode also ``h k l F SIGF`` or
        ``h k l F SIGF PHASE`` (F is the fourth column, the rest is
        ignored).
    default_F : float, optional
        Value pre-filled, when non-zero, into ``F[:h_range, :k_range,
        :l_range]`` before the file's values are stored (C's ``-default_F``).
    mode : {'spec', 'parity'}, optional
        Parity mode reads extra columns as C does: the numbers are taken
        four at a time across lines (with a warning).

    Returns
    -------
    HKLGrid
        The table and ranges.  Non-integer indices give C's warning text in
        ``HKLGrid.warnings`` (and one :class:`UserWarning`).

    Raises
    ------
    InputFileError
        If the file cannot be read, is larger than 2 GiB or has a line over
        4 KiB, holds no reflection, has a line that is not four numbers (or,
        in spec mode, five or six), has a non-finite number, or needs a table
        larger than the available memory.
    """
    fname, text = read_text(path, "hkl file", max_bytes=MAX_TEXT_BYTES)
    parity = mode == "parity"

    fast = _read_plain_hkl(fname, text, default_F)
    if fast is not None:
        return fast
    if not parity:
        text = _drop_extra_columns(fname, text)
        fast = _read_plain_hkl(fname, text, default_F)
        if fast is not None:
            return fast

    h_min, h_max, k_min, k_max, l_min, l_max, hkls, messages = _first_pass(fname, text, parity)
    h_range = h_max - h_min + 1
    k_range = k_max - k_min + 1
    l_range = l_max - l_min + 1
    if h_range < 0 or k_range < 0 or l_range < 0:
        raise InputFileError(f"{fname}: not enough HKL indices")

    _check_table(fname, h_min, h_max, k_min, k_max, l_min, l_max)
    F = np.zeros((h_range + 1, k_range + 1, l_range + 1), dtype=np.float64)
    if default_F != 0.0:
        F[:h_range, :k_range, :l_range] = default_F
    _second_pass(fname, text, F, (h_min, k_min, l_min), messages)
    if messages:
        warnings.warn(f"{fname}: {len(messages)} warning(s) reading hkl file; first: {messages[0]}", stacklevel=2)
    return HKLGrid(h_min, h_max, k_min, k_max, l_min, l_max, F, hkls, messages)


def _first_pass(fname: str, text: str, parity: bool) -> tuple:
    """C's first reading, ``%lg%lg%lg%lg``: index ranges, record count, warnings."""
    h_min = k_min = l_min = _INITIAL_MIN
    h_max = k_max = l_max = _INITIAL_MAX
    hkls = 0
    messages: list[str] = []
    pos = 0
    prev_end = -1
    spanned = False
    match = _PASS1.match
    while True:
        m = match(text, pos)
        if m is None:
            break
        start, end = m.start(1), m.end(4)
        if "\n" in text[start:end] or (prev_end >= 0 and "\n" not in text[prev_end:start]):
            line = _line_of(text, start)
            if not parity:
                raise InputFileError(f"{fname}, line {line}: expected one 'h k l F' record per line")
            if not spanned:
                spanned = True
                messages.append(
                    f"WARNING: records of {fname} span lines from line {line}: the numbers are read four "
                    "at a time whatever the lines, as C does (extra columns are misread; spec mode reads "
                    "F from the fourth column)"
                )
        h, k, l_ = (_to_double(m.group(i)) for i in (1, 2, 3))
        F_value = _to_double(m.group(4))
        for name, v in (("h", h), ("k", k), ("l", l_)):
            if not math.isfinite(v):
                raise InputFileError(f"{fname}, line {_line_of(text, start)}: non-finite {name} index ({v})")
            if not -(2**31) < v < 2**31:
                raise InputFileError(f"{fname}, line {_line_of(text, start)}: {name} index {c_g(v)} out of range")
            if v != math.ceil(v - 0.4):
                messages.append(f"WARNING: non-integer value for {name} ({c_g(v)}) at line {hkls}")
        if not math.isfinite(F_value):
            raise InputFileError(f"{fname}, line {_line_of(text, m.start(4))}: non-finite F ({F_value})")
        if h_min > h:
            h_min = int(h)
        if k_min > k:
            k_min = int(k)
        if l_min > l_:
            l_min = int(l_)
        if h_max < h:
            h_max = int(h)
        if k_max < k:
            k_max = int(k)
        if l_max < l_:
            l_max = int(l_)
        hkls += 1
        pos = end
        prev_end = end
    rest = _NONSPACE.search(text, pos)
    if rest is not None:
        line = _line_of(text, rest.start())
        bad = text[rest.start() :].split("\n", 1)[0].strip()
        raise InputFileError(f"{fname}, line {line}: expected 'h k l F' (four numbers), got {bad!r}")
    if hkls == 0:
        raise InputFileError(f"{fname}, line 1: no 'h k l F' records found")

    return h_min, h_max, k_min, k_max, l_min, l_max, hkls, messages


def _second_pass(fname: str, text: str, F: np.ndarray, lo: tuple, messages: list) -> None:
    """C's second reading, ``%d%d%d%lg``: store F at the integer indices."""
    h_min, k_min, l_min = lo
    h_range, k_range, l_range = (n - 1 for n in F.shape)
    # Second pass: integer indices, as C's "%d%d%d%lg".
    pos = 0
    match = _PASS2.match
    while True:
        m = match(text, pos)
        if m is None:
            break
        h0, k0, l0 = (_to_int32(m.group(i)) for i in (1, 2, 3))
        ih, ik, il = h0 - h_min, k0 - k_min, l0 - l_min
        if not (0 <= ih <= h_range and 0 <= ik <= k_range and 0 <= il <= l_range):
            line = _line_of(text, m.start(1))
            raise InputFileError(f"{fname}, line {line}: index {h0} {k0} {l0} outside the table read in the first pass")
        F_value = _to_double(m.group(4))
        if not math.isfinite(F_value):
            raise InputFileError(f"{fname}, line {_line_of(text, m.start(4))}: non-finite F ({F_value})")
        F[ih, ik, il] = F_value
        pos = m.end(4)
    if _NONSPACE.search(text, pos) is not None:
        line = _line_of(text, _NONSPACE.search(text, pos).start())
        messages.append(
            f"WARNING: integer re-read of {fname} stopped at line {line} "
            "(non-integer index); later reflections are not stored, as in C"
        )


_PLAIN_HKL_LINE = re.compile(
    r"[ \t]*(?:[+-]?\d+[ \t]+[+-]?\d+[ \t]+[+-]?\d+[ \t]+[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?[ \t]*)?\r?"
)


_DIGITS_AS_ZERO = str.maketrans("123456789", "000000000")


def _read_plain_hkl(fname: str, text: str, default_F: float) -> HKLGrid | None:
    """Vectorised reading of the common case: integer indices, one reflection
    per line, no repeated reflection.  Returns None for anything else, which
    the line-by-line C emulation then handles (with its warnings and errors).
    """
    # Every line must match _PLAIN_HKL_LINE.  Whether it does depends only on
    # where its digits are, not on which digits they are, so each distinct
    # line shape (digits all written as 0) is matched once: a few hundred
    # shapes for tens of thousands of reflections.
    match = _PLAIN_HKL_LINE.fullmatch
    if not all(match(shape) for shape in set(text.translate(_DIGITS_AS_ZERO).split("\n"))):
        return None
    # the text is now known to be numbers and white space only: numpy's text
    # parser reads them as float() would (correctly rounded)
    values = np.fromstring(text, dtype=np.float64, sep=" ")
    if values.size == 0 or values.size % 4:
        return None
    table = values.reshape(-1, 4)
    idx = table[:, :3]
    if np.abs(idx).max() >= 2**31 - 1:
        return None
    if not np.isfinite(table[:, 3]).all():
        return None  # an overflowing F (1e999): reported with its line by the C emulation
    return dense_grid(fname, idx.astype(np.int64), table[:, 3], default_F)


def dense_grid(fname: str, hkl: np.ndarray, F: np.ndarray, default_F: float = 0.0) -> HKLGrid | None:
    """C's dense structure-factor table of a list of reflections (integer indices).

    The table spans the index ranges plus the extra plane, row and column C
    allocates; ``default_F`` (when non-zero) fills the ranges before the
    listed values are stored.  The memory it needs is checked first.

    Parameters
    ----------
    fname : str
        Where the reflections come from, for error messages.
    hkl : ndarray of int64, shape (n, 3)
    F : ndarray, shape (n,)
    default_F : float

    Returns
    -------
    HKLGrid or None
        None when a reflection is listed twice (C's last-one-wins order is
        then the line-by-line reader's business).

    Raises
    ------
    InputFileError
        If the table cannot fit in memory.
    """
    lo = hkl.min(axis=0)
    hi = hkl.max(axis=0)
    ranges = hi - lo + 1
    _check_table(fname, *(int(v) for v in (lo[0], hi[0], lo[1], hi[1], lo[2], hi[2])))
    table = np.zeros(tuple(int(r) + 1 for r in ranges), dtype=np.float64)
    flat = np.ravel_multi_index(tuple((hkl - lo).T), table.shape)
    cells = table.reshape(-1)
    # a repeat: some reflection's cell holds a later reflection's number (linear in the list and no
    # memory beyond it, where np.unique sorts: 12 ms for 64k reflections)
    order = np.arange(1, flat.size + 1, dtype=np.float64)
    cells[flat] = order
    if not np.array_equal(cells[flat], order):
        return None
    if default_F != 0.0:
        table[: ranges[0], : ranges[1], : ranges[2]] = default_F
    cells[flat] = F
    return HKLGrid(int(lo[0]), int(hi[0]), int(lo[1]), int(hi[1]), int(lo[2]), int(hi[2]), table,
                   int(hkl.shape[0]), [])


def fdump_bytes(grid: HKLGrid) -> bytes:
    """Content of ``Fdump.bin`` for `grid`, as C writes it.

    Parameters
    ----------
    grid : HKLGrid
        The table.

    Returns
    -------
    bytes
        Header line plus native little-endian doubles.
    """
    shape = (grid.h_range + 1, grid.k_range + 1, grid.l_range + 1)
    F = np.asarray(grid.F)
    if F.shape != shape:
        raise ValueError(f"F has shape {F.shape}, expected {shape} for the grid's ranges")
    head = f"{grid.h_min} {grid.h_max} {grid.k_min} {grid.k_max} {grid.l_min} {grid.l_max}\n\f"
    return head.encode("ascii") + np.ascontiguousarray(F, dtype="<f8").tobytes()


def write_fdump(path, grid: HKLGrid) -> None:
    """Write ``Fdump.bin`` atomically, byte-identical to C's.

    Parameters
    ----------
    path : str or os.PathLike
        Destination file.
    grid : HKLGrid
        The table.

    Raises
    ------
    OutputFileError
        If the file cannot be written.
    """
    atomic_write(path, fdump_bytes(grid))


def read_fdump(path, c_whitespace_quirk: bool = True) -> HKLGrid:
    """Read ``Fdump.bin`` as C does.

    C reads the six ranges with ``fscanf("%d%d%d%d%d%d\\n\\f")``.  The
    ``\\n\\f`` in that format skips *any* run of white space, so if the first
    bytes of the binary table happen to be white-space characters (0x09-0x0d,
    0x20) C skips them too and reads the doubles shifted, leaving the missing
    tail zero.  With `c_whitespace_quirk` (the default) this is reproduced
    (with a :class:`UserWarning`); without it exactly one ``\\n\\f`` is
    expected.

    Parameters
    ----------
    path : str or os.PathLike
        The dump file.
    c_whitespace_quirk : bool, optional
        Reproduce C's white-space skipping (see above).

    Returns
    -------
    HKLGrid
        The table, with ``hkls = h_range * k_range * l_range`` as in C.

    Raises
    ------
    InputFileError
        If the file is missing, its header is not six integers, it holds
        fewer doubles than the ranges require, the table would not fit in
        memory, or a value is not finite.
    """
    fname = os.fspath(path)
    try:
        with open(fname, "rb") as handle:
            raw = handle.read(_FDUMP_HEADER_MAX)
            m = _INT6.match(raw)
            if m is None or m.end() == len(raw) == _FDUMP_HEADER_MAX:
                raise InputFileError(
                    f"{fname}, line 1: expected six integers 'h_min h_max k_min k_max l_min l_max'"
                )
            h_min, h_max, k_min, k_max, l_min, l_max = (_to_int32(m.group(i).decode()) for i in range(1, 7))
            h_range = h_max - h_min + 1
            k_range = k_max - k_min + 1
            l_range = l_max - l_min + 1
            if h_range < 0 or k_range < 0 or l_range < 0:
                raise InputFileError(f"{fname}, line 1: invalid index ranges")
            shape = (h_range + 1, k_range + 1, l_range + 1)
            count = shape[0] * shape[1] * shape[2]
            _check_table(fname, h_min, h_max, k_min, k_max, l_min, l_max)
            # the table, plus room for the white space C's header format may skip
            want = m.end() + 2 + 8 * count + _FDUMP_HEADER_MAX
            if want > len(raw):
                raw += handle.read(want - len(raw))
    except OSError as exc:
        raise InputFileError(f"{fname}: cannot read Fdump file: {exc.strerror or exc}") from exc
    pos = m.end()
    ws = C_WHITESPACE.encode()
    skipped = 0
    if c_whitespace_quirk:
        start = pos
        while pos < len(raw) and raw[pos] in ws:
            pos += 1
        skipped = pos - start - 2 if raw[start : start + 2] == b"\n\f" else pos - start
    else:
        if raw[pos : pos + 2] != b"\n\f":
            raise InputFileError(f"{fname}, line 1: header must end with a newline and a form feed")
        pos += 2
    data = raw[pos:]
    need = 8 * count
    if len(data) < need:
        if c_whitespace_quirk and skipped > 0 and len(data) + skipped >= need:
            data = data[: len(data) // 8 * 8]
        else:
            raise InputFileError(f"{fname}: truncated Fdump file ({len(data)} data bytes, expected {need})")
    F = np.zeros(count, dtype=np.float64)
    n = min(count, len(data) // 8)
    F[:n] = np.frombuffer(data, dtype="<f8", count=n)
    if skipped > 0:
        warnings.warn(
            f"{fname}: the first table bytes are white space; reading shifted by {skipped} byte(s) as C does",
            stacklevel=2,
        )
    F = F.reshape(shape)
    bad = np.argwhere(~np.isfinite(F))
    if bad.size:
        h, k, l_ = (int(v) for v in bad[0] + (h_min, k_min, l_min))
        raise InputFileError(f"{fname}: non-finite structure factor {F[tuple(bad[0])]} at h k l = {h} {k} {l_}")
    return HKLGrid(h_min, h_max, k_min, k_max, l_min, l_max, F, h_range * k_range * l_range)
