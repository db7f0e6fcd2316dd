"""The float image (photons per pixel) as TIFF or EDF (``-tifffile``, ``-edffile``), through fabio.

Both keep the float32 values bit for bit (uncompressed 32-bit IEEE
samples), so any reader sees exactly what ``-floatfile`` holds, with the
image size in the file.  The EDF header also records the geometry
(pixel size, distance, beam centre, wavelength, exposure) in ESRF-style
keys.
"""

from __future__ import annotations

import math
import os

import numpy as np

from nbnumba.errors import OutputFileError
from nbnumba.io.geometry import FrameGeometry
from nbnumba.io.registry import register_writer

__all__ = ["edf_bytes", "fabio_bytes", "tiff_bytes", "write_edf", "write_tiff"]


def _float32(path, image, info: FrameGeometry) -> np.ndarray:
    data = np.ascontiguousarray(image, dtype=np.float32)
    if data.shape != (info.spixels, info.fpixels):
        raise OutputFileError(f"{os.fspath(path)}: image is {data.shape}, the detector "
                              f"{info.spixels} x {info.fpixels}")
    return data


def _write(image_obj, path) -> None:
    try:
        image_obj.write(os.fspath(path))
    except OSError as exc:
        raise OutputFileError(f"cannot write {os.fspath(path)}: {exc.strerror or exc}") from exc


def fabio_bytes(image_obj, suffix: str) -> bytes:
    """The file a fabio image object writes, as bytes.

    fabio writes only to a named file; this one lives in a private
    temporary folder (mode 0700) and is removed at once, so the output
    layer can place the bytes with its own guarantees.
    """
    import tempfile

    with tempfile.TemporaryDirectory(prefix="nbnumba-fabio-") as folder:
        path = os.path.join(folder, "frame" + suffix)
        _write(image_obj, path)
        with open(path, "rb") as handle:
            return handle.read()


def _tiff(path, image, info):
    from fabio.tifimage import TifImage

    return TifImage(data=_float32(path, image, info))


def _edf(path, image, info):
    from fabio.edfimage import EdfImage

    return EdfImage(data=_float32(path, image, info), header=edf_header(info))


def tiff_bytes(image, info: FrameGeometry) -> bytes:
    """A single-strip float32 TIFF of the float image."""
    return fabio_bytes(_tiff("TIFF image", image, info), ".tif")


def edf_bytes(image, info: FrameGeometry) -> bytes:
    """An EDF file (FloatValue, little-endian) of the float image, with the geometry in its header."""
    return fabio_bytes(_edf("EDF image", image, info), ".edf")


def write_tiff(path, image, info: FrameGeometry) -> None:
    """Write the float image as a single-strip float32 TIFF (atomically)."""
    from nbnumba.io._atomic import atomic_write

    atomic_write(path, fabio_bytes(_tiff(path, image, info), ".tif"))


def edf_header(info: FrameGeometry) -> dict:
    """ESRF-style header keys describing the frame (SI units, as the key names say)."""
    bx, by = info.beam_center_px
    return {
        "Title": "nbnumba simulated diffraction image (photons per pixel)",
        "PSize_1": f"{info.pixel_size:.9g}",
        "PSize_2": f"{info.pixel_size:.9g}",
        "SampleDistance": f"{info.close_distance:.9g}",
        "Center_1": f"{bx:.6f}",
        "Center_2": f"{by:.6f}",
        "WaveLength": f"{info.wavelength:.9g}",
        "ExposureTime": f"{info.exposure:.9g}",
        "Phi": f"{math.degrees(info.phi0):.6f}",
        "PhiIncrement": f"{math.degrees(info.osc):.6f}",
    }


def write_edf(path, image, info: FrameGeometry) -> None:
    """Write the float image as an EDF file (FloatValue, little-endian; atomically)."""
    from nbnumba.io._atomic import atomic_write

    atomic_write(path, fabio_bytes(_edf(path, image, info), ".edf"))


@register_writer("tiff", ".tif", "as a float32 TIFF")
def tiff_frame_bytes(frame) -> bytes:
    """float32 TIFF bytes of a :class:`~nbnumba.io.frame.Frame`'s float image."""
    return tiff_bytes(frame.image, frame.geometry)


@register_writer("edf", ".edf", "as a float32 EDF")
def edf_frame_bytes(frame) -> bytes:
    """EDF bytes of a :class:`~nbnumba.io.frame.Frame`'s float image, with its geometry in the header."""
    return edf_bytes(frame.image, frame.geometry)
