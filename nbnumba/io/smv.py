"""SMV (ADSC) image files as nanoBragg writes and reads them.

Writing
-------
:func:`write_smv` produces byte for byte the integer and noise images of the C
program: a text header in a fixed key order, values printed with ``%g``,
closed by ``}`` and a form feed and padded with spaces to 512 bytes, followed
by the pixels as little-endian unsigned 16-bit integers, fast index fastest.

Reading
-------
:func:`read_smv` follows the C reader (the header must start with
``{\\nHEADER_BYT``; ``HEADER_BYTES``, ``BYTE_ORDER``, ``SIZE1``/``SIZE2`` or
``DETECTOR_DIMENSIONS`` are looked up with :func:`smv_value`, which, like C's
``ValueOf``, takes the *last* occurrence of a keyword).  Unlike C it checks
that the file holds all the pixels, and by default it honours a big-endian
``BYTE_ORDER`` (C works out whether to swap but never does; pass
``swap_bytes=False`` to reproduce that).
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from nbnumba.budget import check_memory
from nbnumba.errors import InputFileError
from nbnumba.io._atomic import atomic_write
from nbnumba.io.cfmt import c_atof, c_g
from nbnumba.io.registry import register_writer

__all__ = [
    "SMV_HEADER_BYTES",
    "SMVHeader",
    "c_g",
    "format_smv_header",
    "read_smv",
    "smv_chunks",
    "smv_value",
    "write_smv",
]

SMV_HEADER_BYTES = 512
"""Header size C writes (and assumes on first reading)."""

SMV_MAX_HEADER_BYTES = 1 << 24
"""Largest ``HEADER_BYTES`` the reader accepts (16 MiB)."""

_MAGIC = "{\nHEADER_BYT"


@dataclass
class SMVHeader:
    """Values printed in the header of C's integer and noise images.

    All numbers are in the units C prints.  The attribute names are also the
    keys accepted when a plain ``dict`` is passed instead.

    Attributes
    ----------
    size1, size2 : int or None
        ``SIZE1`` (fast pixels) and ``SIZE2`` (slow pixels); ``None`` lets
        :func:`write_smv` take them from the data shape.
    pixel_size : float
        ``PIXEL_SIZE`` in mm.
    distance : float
        ``DISTANCE`` in mm.
    wavelength : float
        ``WAVELENGTH`` in Angstrom.
    beam_center_x, beam_center_y : float
        ``BEAM_CENTER_X/Y`` in mm.
    adxv_center_x, adxv_center_y : float
        ``ADXV_CENTER_X/Y`` in mm.
    mosflm_center_x, mosflm_center_y : float
        ``MOSFLM_CENTER_X/Y`` in mm.
    denzo_x_beam, denzo_y_beam : float
        ``DENZO_X_BEAM/DENZO_Y_BEAM`` in mm.
    dials_origin : tuple of 3 float
        ``DIALS_ORIGIN`` in mm (written without a trailing semicolon, as C).
    xds_orgx, xds_orgy : float
        ``XDS_ORGX/Y`` in pixels.
    close_distance : float
        ``CLOSE_DISTANCE`` in mm.
    phi : float
        ``PHI`` in degrees.
    osc_start : float
        ``OSC_START`` in degrees.
    osc_range : float
        ``OSC_RANGE`` in degrees.
    twotheta : float
        ``TWOTHETA`` in degrees.
    byte_order : str
        ``BYTE_ORDER`` text; C writes its host order, ``little_endian``.
        The data are always written little-endian.
    """

    pixel_size: float = 0.0
    distance: float = 0.0
    wavelength: float = 0.0
    beam_center_x: float = 0.0
    beam_center_y: float = 0.0
    adxv_center_x: float = 0.0
    adxv_center_y: float = 0.0
    mosflm_center_x: float = 0.0
    mosflm_center_y: float = 0.0
    denzo_x_beam: float = 0.0
    denzo_y_beam: float = 0.0
    dials_origin: tuple = (0.0, 0.0, 0.0)
    xds_orgx: float = 0.0
    xds_orgy: float = 0.0
    close_distance: float = 0.0
    phi: float = 0.0
    osc_start: float = 0.0
    osc_range: float = 0.0
    twotheta: float = 0.0
    size1: int | None = None
    size2: int | None = None
    byte_order: str = "little_endian"


_FIELD_NAMES = {f.name for f in fields(SMVHeader)}


def _as_header(values: SMVHeader | dict[str, Any]) -> SMVHeader:
    if isinstance(values, SMVHeader):
        return values
    unknown = set(values) - _FIELD_NAMES
    if unknown:
        raise TypeError(f"unknown SMV header field(s): {', '.join(sorted(unknown))}")
    return SMVHeader(**values)


def format_smv_header(fields_: SMVHeader | dict[str, Any], pad: bool = False) -> bytes:
    """Header bytes as C writes them for an integer/noise image.

    Parameters
    ----------
    fields_ : SMVHeader or dict
        Header values; ``size1`` and ``size2`` must be set.
    pad : bool
        Spec mode: a header text longer than 512 bytes gets ``HEADER_BYTES``
        set to the next multiple of 512 and is padded to it, as fabio's ADSC
        writer does, so readers find the pixels.  False: C's bytes.

    Returns
    -------
    bytes
        The header, space-padded to 512 bytes.  If the text itself is longer
        than 512 bytes C writes it unpadded (and its ``HEADER_BYTES=512`` is
        then wrong); without ``pad`` this is reproduced, with a
        :class:`UserWarning`.
    """
    h = _as_header(fields_)
    if h.size1 is None or h.size2 is None:
        raise ValueError("SMV header needs size1 and size2")
    ox, oy, oz = (float(v) for v in h.dials_origin)
    g = c_g
    text = (
        "{\nHEADER_BYTES=512;\nDIM=2;\n"
        f"BYTE_ORDER={h.byte_order};\nTYPE=unsigned_short;\n"
        f"SIZE1={int(h.size1)};\nSIZE2={int(h.size2)};\n"
        f"PIXEL_SIZE={g(h.pixel_size)};\nDISTANCE={g(h.distance)};\n"
        f"WAVELENGTH={g(h.wavelength)};\n"
        f"BEAM_CENTER_X={g(h.beam_center_x)};\nBEAM_CENTER_Y={g(h.beam_center_y)};\n"
        f"ADXV_CENTER_X={g(h.adxv_center_x)};\nADXV_CENTER_Y={g(h.adxv_center_y)};\n"
        f"MOSFLM_CENTER_X={g(h.mosflm_center_x)};\nMOSFLM_CENTER_Y={g(h.mosflm_center_y)};\n"
        f"DENZO_X_BEAM={g(h.denzo_x_beam)};\nDENZO_Y_BEAM={g(h.denzo_y_beam)};\n"
        f"DIALS_ORIGIN={g(ox)},{g(oy)},{g(oz)}\n"
        f"XDS_ORGX={g(h.xds_orgx)};\nXDS_ORGY={g(h.xds_orgy)};\n"
        f"CLOSE_DISTANCE={g(h.close_distance)};\n"
        f"PHI={g(h.phi)};\nOSC_START={g(h.osc_start)};\nOSC_RANGE={g(h.osc_range)};\n"
        f"TWOTHETA={g(h.twotheta)};\n"
        "DETECTOR_SN=000;\nBEAMLINE=fake;\n}\f"
    )
    raw = text.encode("ascii")
    if len(raw) > SMV_HEADER_BYTES and pad:
        size = SMV_HEADER_BYTES
        while True:  # the size is part of the text it measures
            size = -(-len(text.replace("HEADER_BYTES=512;", f"HEADER_BYTES={size};", 1)) // SMV_HEADER_BYTES) * 512
            raw = text.replace("HEADER_BYTES=512;", f"HEADER_BYTES={size};", 1).encode("ascii")
            if len(raw) <= size:
                return raw + b" " * (size - len(raw))
    if len(raw) > SMV_HEADER_BYTES:
        warnings.warn(
            f"SMV header text is {len(raw)} bytes, more than {SMV_HEADER_BYTES}; "
            "written unpadded as the C program does",
            stacklevel=2,
        )
        return raw
    return raw + b" " * (SMV_HEADER_BYTES - len(raw))


def smv_chunks(data_uint16_2d, header_values: SMVHeader | dict[str, Any], pad: bool = False) -> tuple:
    """The bytes of an SMV image, byte-identical to C's output.

    Parameters
    ----------
    data_uint16_2d : array_like
        Image of shape ``(spixels, fpixels)`` (slow, fast); converted to
        unsigned 16-bit (values must already be in range).
    header_values : SMVHeader or dict
        Header values (see :class:`SMVHeader`); missing ``size1``/``size2``
        are taken from the data shape.
    pad : bool
        Pad a long header to a multiple of 512 (see :func:`format_smv_header`).

    Returns
    -------
    tuple of (bytes, memoryview)
        The padded header and the little-endian pixels.

    Raises
    ------
    ValueError
        If the data are not 2-D or disagree with ``size1``/``size2``.
    """
    data = np.asarray(data_uint16_2d)
    if data.ndim != 2:
        raise ValueError(f"SMV data must be 2-D, got shape {data.shape}")
    h = _as_header(header_values)
    spix, fpix = data.shape
    size1 = fpix if h.size1 is None else int(h.size1)
    size2 = spix if h.size2 is None else int(h.size2)
    if (size2, size1) != (spix, fpix):
        raise ValueError(f"SIZE1={size1}, SIZE2={size2} disagree with data shape {data.shape}")
    h = SMVHeader(**{**h.__dict__, "size1": size1, "size2": size2})
    header = format_smv_header(h, pad=pad)
    body = np.ascontiguousarray(data, dtype="<u2")
    return header, memoryview(body.reshape(-1)).cast("B")


@register_writer("smv", ".img", "as 2-byte integers")
def smv_frame_chunks(frame) -> tuple:
    """SMV bytes of a :class:`~nbnumba.io.frame.Frame`'s integer image."""
    return smv_chunks(frame.int_image, frame.header, pad=frame.smv_pad)


def write_smv(path, data_uint16_2d, header_values: SMVHeader | dict[str, Any]) -> None:
    """Write an SMV image atomically, byte-identical to C's output.

    Parameters
    ----------
    path : str or os.PathLike
        Destination file (see :func:`nbnumba.io._atomic.atomic_write`).
    data_uint16_2d : array_like
        Image of shape ``(spixels, fpixels)`` (slow, fast); converted to
        unsigned 16-bit (values must already be in range).
    header_values : SMVHeader or dict
        Header values (see :class:`SMVHeader`); missing ``size1``/``size2``
        are taken from the data shape.

    Raises
    ------
    ValueError
        If the data are not 2-D or disagree with ``size1``/``size2``.
    OutputFileError
        If the file cannot be written.
    """
    atomic_write(path, smv_chunks(data_uint16_2d, header_values))


def smv_value(header_text: str, keyword: str) -> float:
    """Numeric value of `keyword` in an SMV header, like C's ``ValueOf``.

    The *last* occurrence of the keyword substring is used; the value is
    ``atof`` of the text after the next ``=``.

    Parameters
    ----------
    header_text : str
        Header text (as returned by :func:`read_smv`).
    keyword : str
        Keyword, matched as a plain substring (``"ORGX"`` also matches
        ``XDS_ORGX``).

    Returns
    -------
    float
        The value; NaN if the keyword is absent, 0.0 if no ``=`` follows it
        or no number follows the ``=``.
    """
    if not keyword:
        # strstr() finds an empty needle everywhere; C would loop forever.
        raise ValueError("empty SMV keyword")
    # Walk forward one non-overlapping match at a time, as C does.
    start = 0
    last = -1
    while True:
        found = header_text.find(keyword, start)
        if found < 0:
            break
        last = found
        start = found + len(keyword)
    if last < 0:
        return float("nan")
    eq = header_text.find("=", last + len(keyword))
    if eq < 0:
        return 0.0
    return c_atof(header_text[eq + 1 :])


def _header_dict(header_text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    body = header_text
    body = body.removeprefix("{")
    end = body.find("}")
    if end >= 0:
        body = body[:end]
    for line in body.splitlines():
        if "=" not in line:
            continue
        key, _, value = line.partition("=")
        key = key.strip()
        if not key:
            continue
        out[key] = value.strip().rstrip(";").strip()
    return out


def _as_int(value: float, what: str, path) -> int:
    if not np.isfinite(value):
        raise InputFileError(f"{path}: SMV header has no usable {what}")
    return int(value)


def read_smv(path, swap_bytes: bool = True) -> tuple[str, dict[str, str], np.ndarray]:
    """Read an SMV image as the C program does.

    Parameters
    ----------
    path : str or os.PathLike
        SMV file.
    swap_bytes : bool, optional
        Convert big-endian data (``BYTE_ORDER=big_endian``) to native values
        (default).  C decides whether to swap but never applies it; pass False
        to read the raw little-endian values as C does.

    Returns
    -------
    header_text : str
        Header text, ``HEADER_BYTES`` bytes cut at the first NUL (C treats it
        as a string), decoded as Latin-1.
    header_dict : dict of str to str
        ``KEY=VALUE;`` entries (value text without the ``;``); later
        duplicates win.
    data : numpy.ndarray
        uint16 array of shape ``(SIZE2, SIZE1)``.

    Raises
    ------
    InputFileError
        If the file is missing, does not start like an ADSC header, has an
        unusable ``HEADER_BYTES`` or size, is shorter than its header and
        pixels, or has more pixels than fit in memory.  Only the header and
        the pixels are read, so a device such as ``/dev/zero`` ends in an
        error at once.
    """
    fname = os.fspath(path)
    try:
        with open(fname, "rb") as handle:
            return _read_smv_from(fname, handle, swap_bytes)
    except OSError as exc:
        raise InputFileError(f"{fname}: cannot read SMV file: {exc.strerror or exc}") from exc


def _read_upto(handle, raw: bytes, total: int) -> bytes:
    """`raw` extended from `handle` to `total` bytes (fewer at end of file)."""
    while len(raw) < total:
        more = handle.read(total - len(raw))
        if not more:
            break
        raw += more
    return raw


def _read_smv_from(fname: str, handle, swap_bytes: bool) -> tuple[str, dict[str, str], np.ndarray]:
    raw = _read_upto(handle, b"", SMV_HEADER_BYTES)
    if len(raw) < SMV_HEADER_BYTES:
        raise InputFileError(
            f"{fname}: truncated SMV file ({len(raw)} bytes, shorter than a {SMV_HEADER_BYTES}-byte header)"
        )

    def text_of(nbytes: int) -> str:
        chunk = raw[:nbytes]
        nul = chunk.find(b"\0")
        if nul >= 0:
            chunk = chunk[:nul]
        return chunk.decode("latin-1")

    header_text = text_of(SMV_HEADER_BYTES)
    if not header_text.startswith(_MAGIC):
        raise InputFileError(f"{fname}: does not look like an ADSC/SMV frame (no '{{' + HEADER_BYTES= at the start)")
    header_bytes = _as_int(smv_value(header_text, "HEADER_BYTES"), "HEADER_BYTES", fname)
    if header_bytes <= 0 or header_bytes > SMV_MAX_HEADER_BYTES:
        raise InputFileError(f"{fname}: invalid HEADER_BYTES={header_bytes}")
    if header_bytes != SMV_HEADER_BYTES:
        raw = _read_upto(handle, raw, header_bytes)
        if len(raw) < header_bytes:
            raise InputFileError(f"{fname}: truncated SMV file ({len(raw)} bytes, header claims {header_bytes})")
        header_text = text_of(header_bytes)

    # Byte order: C compares the first 10 characters after the last
    # "BYTE_ORDER=" with its own (little-endian) order; any mismatch means
    # the data were written big-endian.
    marker = "BYTE_ORDER="
    pos = header_text.rfind(marker)
    order = header_text[pos + len(marker) : pos + len(marker) + 10] if pos >= 0 else "little_end"
    big_endian = order != "little_end"

    width_value = smv_value(header_text, "SIZE1")
    if width_value == 0.0 or math.isnan(width_value):
        # C falls back to DETECTOR_DIMENSIONS when SIZE1 reads as 0 (a missing
        # SIZE1 gives C an undefined size; here it takes the same fallback).
        dim_value = smv_value(header_text, "DETECTOR_DIMENSIONS")
        dim = _as_int(dim_value, "SIZE1 or DETECTOR_DIMENSIONS", fname)
        width = height = dim
    else:
        width = _as_int(width_value, "SIZE1", fname)
        height = _as_int(smv_value(header_text, "SIZE2"), "SIZE2", fname)
    if width <= 0 or height <= 0:
        raise InputFileError(f"{fname}: invalid image size SIZE1={width} SIZE2={height}")

    # C indexes the pixels from header_bytes/2 unsigned shorts into the file.
    offset = (header_bytes // 2) * 2
    nbytes = 2 * width * height
    check_memory(3.0 * nbytes, f"{fname}: a {width} x {height} pixel SMV image", error=InputFileError)
    raw = _read_upto(handle, raw, offset + nbytes)
    if len(raw) < offset + nbytes:
        raise InputFileError(
            f"{fname}: truncated SMV file ({len(raw)} bytes, expected {offset + nbytes} "
            f"for a {header_bytes}-byte header and {width}x{height} pixels)"
        )
    dtype = ">u2" if (big_endian and swap_bytes) else "<u2"
    data = np.frombuffer(raw, dtype=dtype, count=width * height, offset=offset)
    data = data.astype(np.uint16).reshape(height, width)
    return header_text, _header_dict(header_text), data
