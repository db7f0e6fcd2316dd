"""Pilatus-style miniCBF frames (``-cbffile``), written with fabio.

What a photon-counting detector records: integer counts (int32, byte-offset
compressed), no ADC offset, no 16-bit clipping.  The header
(``_array_data.header_contents``, convention ``PILATUS_1.2``) carries the
lines that DIALS, XDS and other readers of Pilatus frames take the geometry
from: ``Pixel_size``, ``Exposure_time``, ``Wavelength``,
``Detector_distance``, ``Beam_xy`` (pixels), ``Start_angle``,
``Angle_increment``, ``Phi`` and ``Oscillation_axis``.
"""

from __future__ import annotations

import math
import os

import numpy as np

from nbnumba.errors import OutputFileError
from nbnumba.io.geometry import FrameGeometry
from nbnumba.io.registry import register_writer

__all__ = ["COUNT_CUTOFF", "cbf_bytes", "cbf_header_contents", "write_cbf"]

RTD = 180.0 / math.pi
COUNT_CUTOFF = 1048575  # a Pilatus counter's 20 bits


def cbf_header_contents(info: FrameGeometry) -> str:
    """The Pilatus header lines of a frame (CRLF-terminated, as Pilatus writes them)."""
    bx, by = info.beam_center_px
    lines = [
        "# Detector: PILATUS-style frame simulated by nbnumba, S/N 00-0000",
        f"# Pixel_size {info.pixel_size:.6g} m x {info.pixel_size:.6g} m",
    ]
    if info.thickness > 0.0:
        lines.append(f"# Silicon sensor, thickness {info.thickness:.6f} m")
    lines += [
        f"# Exposure_time {info.exposure:.7f} s",
        f"# Exposure_period {info.exposure:.7f} s",
        f"# Count_cutoff {COUNT_CUTOFF} counts",
        f"# Wavelength {info.wavelength * 1e10:.6f} A",
        f"# Detector_distance {info.close_distance:.6f} m",
        f"# Beam_xy ({bx:.2f}, {by:.2f}) pixels",
        f"# Start_angle {info.phi0 * RTD:.4f} deg.",
        f"# Angle_increment {info.osc * RTD:.4f} deg.",
        f"# Phi {info.phi0 * RTD:.4f} deg.",
        f"# Oscillation_axis {info.oscillation_axis()}",
        "# N_oscillations 1",
    ]
    return "\r\n".join(lines) + "\r\n"


def cbf_bytes(counts: np.ndarray, info: FrameGeometry, name: str = "frame") -> bytes:
    """A miniCBF file of integer counts.

    Parameters
    ----------
    counts : ndarray, shape (spixels, fpixels)
        Photon counts; values must fit a signed 32-bit integer.
    info : FrameGeometry
        Geometry for the header.
    name : str
        What the file is, for error messages.

    Raises
    ------
    OutputFileError
        If the counts do not match the detector or do not fit int32.
    """
    from fabio.cbfimage import CbfImage

    from nbnumba.io.floatformats import fabio_bytes

    data = np.asarray(counts)
    if data.shape != (info.spixels, info.fpixels):
        raise OutputFileError(f"{name}: image is {data.shape}, the detector {info.spixels} x {info.fpixels}")
    if data.size and (data.min() < -(2**31) or data.max() > 2**31 - 1):
        raise OutputFileError(f"{name}: counts do not fit 32-bit integers")
    header = {
        "_array_data.header_convention": "PILATUS_1.2",
        "_array_data.header_contents": cbf_header_contents(info),
    }
    return fabio_bytes(CbfImage(data=data.astype(np.int32), header=header), ".cbf")


def write_cbf(path, counts: np.ndarray, info: FrameGeometry) -> None:
    """Write integer counts as a miniCBF file (atomically; see :func:`cbf_bytes`)."""
    from nbnumba.io._atomic import atomic_write

    atomic_write(path, cbf_bytes(counts, info, name=os.fspath(path)))


@register_writer("cbf", ".cbf", "as a Pilatus-style miniCBF of photon counts")
def cbf_frame_bytes(frame) -> bytes:
    """miniCBF bytes of a :class:`~nbnumba.io.frame.Frame`: its photon counts and geometry."""
    return cbf_bytes(frame.counts, frame.geometry)
