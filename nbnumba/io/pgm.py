"""PGM (P5) preview images as the C program writes them."""

from __future__ import annotations

import numpy as np

from nbnumba.io._atomic import atomic_write
from nbnumba.io._roi import roi_mask
from nbnumba.io.cfmt import c_g
from nbnumba.io.registry import register_writer

__all__ = ["pgm_bytes", "pgm_chunks", "write_pgm"]


def _to_uchar(values: np.ndarray) -> np.ndarray:
    # C casts the double to unsigned char through a 32-bit signed truncation
    # on x86-64 (NaN and out-of-range values give INT_MIN), keeping the low byte.
    ok = (values > -2147483649.0) & (values < 2147483648.0)
    ints = np.zeros(values.shape, dtype=np.int64)
    ints[ok] = np.trunc(values[ok]).astype(np.int64)
    return (ints & 0xFF).astype(np.uint8)


def pgm_chunks(float_image, pgm_scale: float, roi=None, fpixels: int | None = None, block_rows: int = 256):
    """C's PGM preview of a float image, as byte chunks (a block of rows at a time, to bound memory).

    Parameters
    ----------
    float_image : array_like
        float32 image ``(spixels, fpixels)``, or 1-D in raster order with
        `fpixels` given.
    pgm_scale : float
        Scale factor (already chosen by the caller as C chooses it).
    roi : None, numpy.ndarray of bool, or tuple, optional
        Region of interest (see :func:`nbnumba.io._roi.roi_mask`); pixels
        outside are 0.
    fpixels : int, optional
        Fast-axis size for a 1-D image.
    block_rows : int
        Rows converted at a time.

    Yields
    ------
    bytes
        ``P5\\n{fpixels} {spixels}\\n# pixels scaled by {%g}\\n255\\n``, then one
        byte per pixel: ``min(value * pgm_scale, 255)`` truncated to unsigned
        char.
    """
    img = np.asarray(float_image)
    if img.ndim == 1 and fpixels:
        fpix = int(fpixels)
        if img.size % fpix:
            raise ValueError(f"{img.size} pixels is not a multiple of fpixels={fpix}")
        img = img.reshape(-1, fpix)
    elif img.ndim != 2:
        raise ValueError("float_image must be 2-D, or 1-D with fpixels")
    spix, fpix = img.shape
    mask = roi_mask((spix, fpix), roi).reshape(spix, fpix)
    yield f"P5\n{fpix} {spix}\n# pixels scaled by {c_g(pgm_scale)}\n255\n".encode("ascii")
    for r0 in range(0, spix, block_rows):
        test = img[r0:r0 + block_rows].astype(np.float32).astype(np.float64) * float(pgm_scale)
        test = np.where(test > 255.0, 255.0, test)
        keep = mask[r0:r0 + block_rows]
        out = np.zeros(test.shape, dtype=np.uint8)
        out[keep] = _to_uchar(test[keep])
        yield out.tobytes()


def pgm_bytes(float_image, pgm_scale: float, roi=None, fpixels: int | None = None) -> bytes:
    """Bytes of C's PGM preview of a float image (see :func:`pgm_chunks`)."""
    return b"".join(pgm_chunks(float_image, pgm_scale, roi, fpixels))


@register_writer("pgm", ".pgm", "as 1-byte integers")
def pgm_frame_bytes(frame) -> bytes:
    """PGM bytes of a :class:`~nbnumba.io.frame.Frame`, at its PGM scale."""
    return pgm_chunks(frame.image, frame.pgm_scale_used, roi=frame.roi)


def write_pgm(path, float_image, pgm_scale: float, roi=None, fpixels: int | None = None) -> None:
    """Write C's PGM preview atomically (see :func:`pgm_bytes`).

    Parameters
    ----------
    path : str or os.PathLike
        Destination file.
    float_image : array_like
        float32 image ``(spixels, fpixels)`` or 1-D with `fpixels`.
    pgm_scale : float
        Scale factor.
    roi : None, numpy.ndarray of bool, or tuple, optional
        Region of interest; pixels outside are 0.
    fpixels : int, optional
        Fast-axis size for a 1-D image.

    Raises
    ------
    OutputFileError
        If the file cannot be written.
    """
    atomic_write(path, pgm_chunks(float_image, pgm_scale, roi, fpixels))
