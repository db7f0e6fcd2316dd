"""PGM (P5) preview images as the C program writes them."""

from __future__ import annotations

import numpy as np

from nbnumba.io._atomic import atomic_write
from nbnumba.io._roi import roi_mask
from nbnumba.io.cfmt import c_g
from nbnumba.io.registry import register_writer

__all__ = ["pgm_bytes", "write_pgm"]


def _to_uchar(values: np.ndarray) -> np.ndarray:
    # C casts the double to unsigned char through a 32-bit signed truncation
    # on x86-64 (NaN and out-of-range values give INT_MIN), keeping the low byte.
    ok = (values > -2147483649.0) & (values < 2147483648.0)
    ints = np.zeros(values.shape, dtype=np.int64)
    ints[ok] = np.trunc(values[ok]).astype(np.int64)
    return (ints & 0xFF).astype(np.uint8)


def pgm_bytes(float_image, pgm_scale: float, roi=None, fpixels: int | None = None) -> bytes:
    """Bytes of C's PGM preview of a float image.

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

    Returns
    -------
    bytes
        ``P5\\n{fpixels} {spixels}\\n# pixels scaled by {%g}\\n255\\n`` and one
        byte per pixel: ``min(value * pgm_scale, 255)`` truncated to unsigned
        char.
    """
    img = np.asarray(float_image)
    if img.ndim == 2:
        spix, fpix = img.shape
    elif img.ndim == 1 and fpixels:
        fpix = int(fpixels)
        spix = img.size // fpix
        if spix * fpix != img.size:
            raise ValueError(f"{img.size} pixels is not a multiple of fpixels={fpix}")
    else:
        raise ValueError("float_image must be 2-D, or 1-D with fpixels")
    flat = img.reshape(-1).astype(np.float32).astype(np.float64)
    mask = roi_mask((spix, fpix), roi)
    test = flat * float(pgm_scale)
    test = np.where(test > 255.0, 255.0, test)
    out = np.zeros(flat.size, dtype=np.uint8)
    out[mask] = _to_uchar(test[mask])
    head = f"P5\n{fpix} {spix}\n# pixels scaled by {c_g(pgm_scale)}\n255\n".encode("ascii")
    return head + out.tobytes()


@register_writer("pgm", ".pgm", "as 1-byte integers")
def pgm_frame_bytes(frame) -> bytes:
    """PGM bytes of a :class:`~nbnumba.io.frame.Frame`, at its PGM scale."""
    return pgm_bytes(frame.image, frame.pgm_scale_used, roi=frame.roi)


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
    atomic_write(path, pgm_bytes(float_image, pgm_scale, roi, fpixels))
