"""NeXus/HDF5 frames following the NXmx application definition (``-h5file``), with h5py.

One file holds one frame or a whole rotation scan (one frame per slice of
``/entry/data/data``), with what a processing program needs to treat it as
a real sweep: the wavelength, the detector's pixel size, distance and beam
centre, its position and axes as an ``NXtransformations`` chain, and the
rotation axis of the sample with one angle per frame.

Vectors are given in the NeXus (McStas) frame: z along the beam, x along
the horizontal polarisation direction, y = z x x (see
:meth:`nbnumba.io.geometry.FrameGeometry.lab_to_mcstas`).  Lengths in the file are
in metres unless an attribute says otherwise; angles in degrees.
"""

from __future__ import annotations

import datetime
import math
import os

import numpy as np

from nbnumba.errors import OutputFileError
from nbnumba.io.geometry import FrameGeometry
from nbnumba.io.registry import register_writer

__all__ = ["nxmx_bytes", "write_nxmx"]

RTD = 180.0 / math.pi


def _nx(group, nx_class: str):
    group.attrs["NX_class"] = nx_class
    return group


def _transformation(group, name, value, kind, vector, depends_on, units, offset=None):
    ds = group.create_dataset(name, data=value)
    ds.attrs["transformation_type"] = kind
    ds.attrs["vector"] = np.asarray(vector, dtype=np.float64)
    ds.attrs["depends_on"] = depends_on
    ds.attrs["units"] = units
    if offset is not None:
        ds.attrs["offset"] = np.asarray(offset, dtype=np.float64)
        ds.attrs["offset_units"] = "m"
    return ds


def nxmx_bytes(frames: np.ndarray, info: FrameGeometry, angles=None, name: str = "NeXus file") -> bytes:
    """An NXmx file of integer counts.

    Parameters
    ----------
    frames : ndarray, shape (spixels, fpixels) or (n, spixels, fpixels)
        Integer counts, one frame or a scan.
    info : FrameGeometry
        Geometry (of the first frame: the detector does not move in a scan).
    angles : sequence of float, optional
        Rotation at the start of each frame (rad); default ``info.phi0 +
        k * info.osc``.
    name : str
        What the file is, for error messages.

    Raises
    ------
    OutputFileError
        If the frames do not match the detector or the angles the frames.
    """
    import io

    import h5py

    data = np.asarray(frames)
    if data.ndim == 2:
        data = data[None]
    if data.shape[1:] != (info.spixels, info.fpixels):
        raise OutputFileError(f"{name}: frames are {data.shape[1:]}, the detector {info.spixels} x {info.fpixels}")
    n = data.shape[0]
    if angles is None:
        angles = [info.phi0 + k * info.osc for k in range(n)]
    angles = np.asarray(angles, dtype=np.float64) * RTD
    if angles.size != n:
        raise OutputFileError(f"{name}: {angles.size} angles for {n} frames")
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        _fill(f, data, info, angles, os.path.basename(name))
    return buf.getvalue()


def write_nxmx(path, frames: np.ndarray, info: FrameGeometry, angles=None) -> None:
    """Write counts as an NXmx file (atomically; see :func:`nxmx_bytes`)."""
    from nbnumba.io._atomic import atomic_write

    atomic_write(path, nxmx_bytes(frames, info, angles, name=os.fspath(path)))


def _fill(f, data, info: FrameGeometry, angles, file_name: str) -> None:
    rot = info.lab_to_mcstas()
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    f.attrs["file_name"] = file_name
    f.attrs["creator"] = "nbnumba"
    entry = _nx(f.create_group("entry"), "NXentry")
    f.attrs["default"] = "entry"
    entry.attrs["default"] = "data"
    entry["definition"] = "NXmx"
    entry["start_time"] = now
    entry["end_time"] = now
    entry["end_time_estimated"] = now

    instrument = _nx(entry.create_group("instrument"), "NXinstrument")
    instrument["name"] = "nbnumba simulation"
    beam = _nx(instrument.create_group("beam"), "NXbeam")
    wl = beam.create_dataset("incident_wavelength", data=info.wavelength * 1e10)
    wl.attrs["units"] = "angstrom"
    beam["total_flux"] = 0.0
    beam["total_flux"].attrs["units"] = "Hz"

    det = _nx(instrument.create_group("detector"), "NXdetector")
    det["description"] = "photon-counting pixel detector (simulated)"
    det["type"] = "pixel"
    det["sensor_material"] = "Si"
    det["depends_on"] = "/entry/instrument/detector/transformations/origin"
    for name, value, units in (
        ("x_pixel_size", info.pixel_size, "m"), ("y_pixel_size", info.pixel_size, "m"),
        ("distance", info.close_distance, "m"), ("sensor_thickness", info.thickness, "m"),
        ("count_time", info.exposure, "s"), ("frame_time", info.exposure, "s"),
    ):
        det.create_dataset(name, data=value).attrs["units"] = units
    bx, by = info.beam_center_px
    det.create_dataset("beam_center_x", data=bx).attrs["units"] = "pixel"
    det.create_dataset("beam_center_y", data=by).attrs["units"] = "pixel"
    det["saturation_value"] = np.int64(2**31 - 1)
    det["underload_value"] = np.int64(-1)
    det["bit_depth_readout"] = np.int32(32)
    counts = det.create_dataset("data", data=data.astype(np.int32), chunks=(1,) + data.shape[1:],
                                compression="gzip", compression_opts=2, shuffle=True)
    counts.attrs["units"] = "counts"

    # the detector: one module whose first pixel's corner is at pix0
    trans = _nx(det.create_group("transformations"), "NXtransformations")
    _transformation(trans, "origin", [0.0], "translation", [0.0, 0.0, 1.0], ".", "m",
                    offset=rot @ info.pix0)
    module = _nx(det.create_group("module"), "NXdetector_module")
    module["data_origin"] = np.array([0, 0], dtype=np.int32)
    module["data_size"] = np.array([info.spixels, info.fpixels], dtype=np.int32)
    module["data_stride"] = np.array([1, 1], dtype=np.int32)
    origin = "/entry/instrument/detector/transformations/origin"
    _transformation(module, "module_offset", [0.0], "translation", [0.0, 0.0, 1.0], origin, "m",
                    offset=[0.0, 0.0, 0.0])
    offset = "/entry/instrument/detector/module/module_offset"
    _transformation(module, "fast_pixel_direction", [info.pixel_size], "translation", rot @ info.fdet,
                    offset, "m", offset=[0.0, 0.0, 0.0])
    _transformation(module, "slow_pixel_direction", [info.pixel_size], "translation", rot @ info.sdet,
                    offset, "m", offset=[0.0, 0.0, 0.0])

    sample = _nx(entry.create_group("sample"), "NXsample")
    sample["name"] = "simulated nanocrystal"
    sample["depends_on"] = "/entry/sample/transformations/omega"
    strans = _nx(sample.create_group("transformations"), "NXtransformations")
    _transformation(strans, "omega", angles, "rotation", rot @ info.spindle, ".", "deg")
    omega_inc = strans.create_dataset("omega_increment_set", data=info.osc * RTD)
    omega_inc.attrs["units"] = "deg"
    omega_end = strans.create_dataset("omega_end", data=angles + info.osc * RTD)
    omega_end.attrs["units"] = "deg"
    sample["beam"] = f["/entry/instrument/beam"]

    nxdata = _nx(entry.create_group("data"), "NXdata")
    nxdata.attrs["signal"] = "data"
    nxdata["data"] = counts


@register_writer("nexus", ".h5", "as NeXus/NXmx photon counts")
def nexus_frame_bytes(frame) -> bytes:
    """NXmx bytes of a :class:`~nbnumba.io.frame.Frame`: one frame of photon counts, with its geometry."""
    return nxmx_bytes(frame.counts, frame.geometry)
