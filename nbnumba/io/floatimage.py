"""Raw float images (``-floatfile``): little-endian float32, no header."""

from __future__ import annotations

import os

import numpy as np

from nbnumba.errors import InputFileError
from nbnumba.io._atomic import atomic_write
from nbnumba.io.registry import register_writer

__all__ = ["float_bytes", "read_float_image", "write_float_image"]


def float_bytes(image) -> memoryview:
    """The bytes of a raw float image: little-endian float32, C (raster) order.

    Parameters
    ----------
    image : array_like
        Image, any shape; rounded to float32 as C stores its float image.

    Returns
    -------
    memoryview
        A byte view of the (possibly converted) data.
    """
    data = np.ascontiguousarray(np.asarray(image), dtype="<f4")
    return memoryview(data.reshape(-1)).cast("B")


@register_writer("float", ".bin", "as 4-byte floats")
def float_frame_bytes(frame) -> memoryview:
    """Float-image bytes of a :class:`~nbnumba.io.frame.Frame`."""
    return float_bytes(frame.image)


def write_float_image(path, image) -> None:
    """Write an image as raw little-endian float32, atomically.

    Parameters
    ----------
    path : str or os.PathLike
        Destination file.
    image : array_like
        Image, any shape; written in C (raster) order after rounding to
        float32, as C stores its float image.

    Raises
    ------
    OutputFileError
        If the file cannot be written.
    """
    atomic_write(path, float_bytes(image))


def read_float_image(path, fpixels: int, spixels: int) -> np.ndarray:
    """Read a raw little-endian float32 image.

    Parameters
    ----------
    path : str or os.PathLike
        File holding exactly ``fpixels * spixels`` float32 values.
    fpixels : int
        Fast-axis size.
    spixels : int
        Slow-axis size.

    Returns
    -------
    numpy.ndarray
        float32 array of shape ``(spixels, fpixels)``.

    Raises
    ------
    InputFileError
        If the file cannot be read or its size does not match.
    """
    fname = os.fspath(path)
    try:
        with open(fname, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        raise InputFileError(f"{fname}: cannot read float image: {exc.strerror or exc}") from exc
    need = 4 * int(fpixels) * int(spixels)
    if len(raw) != need:
        raise InputFileError(
            f"{fname}: float image has {len(raw)} bytes, expected {need} for {fpixels}x{spixels} float32 pixels"
        )
    return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(int(spixels), int(fpixels))
