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

__all__ = ["write_edf", "write_tiff"]


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


def write_tiff(path, image, info: FrameGeometry) -> None:
    """Write the float image as a single-strip float32 TIFF."""
    from fabio.tifimage import TifImage

    _write(TifImage(data=_float32(path, image, info)), path)


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
    """Write the float image as an EDF file (FloatValue, little-endian)."""
    from fabio.edfimage import EdfImage

    _write(EdfImage(data=_float32(path, image, info), header=edf_header(info)), path)
