"""Checks of a :class:`~nbnumba.config.SimConfig` before anything is computed.

:func:`check_config` is the first thing :func:`nbnumba.prepare.prepare` does.
It turns settings that would give a NaN image, an endless loop or a
nonsensical geometry into one :class:`~nbnumba.errors.ConfigError` line that
names the field (and the command-line flag that sets it):

* a value that is not finite (NaN or infinity).  NaN is the C program's
  "not given" marker of the beam centres (``Xbeam``, ``Ybeam``, ``Xclose``,
  ``Yclose``, ``ORGX``, ``ORGY``) and of ``close_distance``, and of the empty
  columns of a source table, so NaN is accepted there (infinity is not);
* a zero-length beam, polarization, spindle, detector or two-theta axis
  vector (a zero ``odet_vector`` is accepted in parity mode, where C
  rebuilds it from the fast and slow axes, as the quirks table records);
* a unit cell whose angles make no cell (an angle of 180 degrees or more,
  angles summing to 360 or more, one angle larger than the other two
  together), or a negative edge;
* a source with a zero or negative wavelength (also through a dispersion of
  200 % or more), a zero or negative source distance;
* a negative fluence, flux, exposure, beam size, detector thickness,
  crystal size, water size or cell count, a zero beam size with a flux;
* an ROI that is empty or lies wholly outside the detector.

Negative values that C reads as "not given" (``-1`` step counts, ranges,
steps, mosaic spread, attenuation depth) are left to
:func:`~nbnumba.prepare.prepare`, which applies C's defaults.
"""

from __future__ import annotations

import math
from dataclasses import fields

import numpy as np

from nbnumba.config import SimConfig
from nbnumba.errors import ConfigError

__all__ = ["NAN_MEANS_UNSET", "check_config"]

NAN_MEANS_UNSET = frozenset({"Xbeam", "Ybeam", "Xclose", "Yclose", "ORGX", "ORGY", "close_distance"})
"""Fields whose NaN is C's "not given" marker."""

_FLAG = {
    "cell_angstrom": "-cell", "cell_angles": "-cell", "a_matrix": "-mat", "misset": "-misset",
    "default_F": "-default_F", "Na": "-Na", "Nb": "-Nb", "Nc": "-Nc", "sample_x": "-xtalsize",
    "sample_y": "-xtalsize", "sample_z": "-xtalsize", "fudge": "-fudge", "mosaic_spread": "-mosaic",
    "phi0": "-phi", "osc": "-osc", "phistep": "-phistep", "spindle_vector": "-spindle_axis",
    "lambda0": "-lambda", "dispersion": "-dispersion", "dispstep": "-dispstep", "hdivrange": "-hdivrange",
    "hdivstep": "-hdivstep", "vdivrange": "-vdivrange", "vdivstep": "-vdivstep",
    "source_table": "-sourcefile", "source_distance": "-source_distance", "fluence": "-fluence",
    "flux": "-flux", "exposure": "-exposure", "beamsize": "-beamsize", "polarization": "-polar",
    "beam_vector": "-beam_vector", "polar_vector": "-polar_vector", "water_size": "-water",
    "dmin": "-dmin", "pixel_size": "-pixel", "distance": "-distance", "close_distance": "-close_distance",
    "detsize_f": "-detsize_f", "detsize_s": "-detsize_s", "fpixels": "-detpixels_f",
    "spixels": "-detpixels_s", "Xbeam": "-Xbeam", "Ybeam": "-Ybeam", "Xclose": "-Xclose",
    "Yclose": "-Yclose", "ORGX": "-ORGX", "ORGY": "-ORGY", "fdet_vector": "-fdet_vector",
    "sdet_vector": "-sdet_vector", "odet_vector": "-odet_vector", "twotheta_axis": "-twotheta_axis",
    "pix0_vector": "-pix0_vector", "detector_rotx": "-detector_rotx", "detector_roty": "-detector_roty",
    "detector_rotz": "-detector_rotz", "detector_twotheta": "-twotheta", "detector_mu": "-detector_abs",
    "detector_thick": "-detector_thick", "detector_thickstep": "-thickstep", "roi": "-roi", "hkl": "-hkl",
    "mask": "-mask", "oversample": "-oversample", "phisteps": "-phisteps", "mosaic_domains": "-mosaic_dom",
}

_AXES = ("beam_vector", "polar_vector", "spindle_vector", "fdet_vector", "sdet_vector", "odet_vector",
         "twotheta_axis")

_NONNEGATIVE = ("fluence", "flux", "exposure", "beamsize", "detector_thick", "sample_x", "sample_y",
                "sample_z", "water_size", "Na", "Nb", "Nc", "fpixels", "spixels", "detsize_f", "detsize_s")


def _name(field: str) -> str:
    flag = _FLAG.get(field)
    return f"{field} ({flag})" if flag else field


def _fail(field: str, what: str) -> None:
    raise ConfigError(f"{_name(field)} {what}")


def _show(value) -> str:
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    return " ".join(f"{v:g}" for v in arr[:6]) + (" ..." if arr.size > 6 else "")


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _check_finite(config: SimConfig) -> None:
    for f in fields(config):
        name = f.name
        value = getattr(config, name)
        if value is None or isinstance(value, (str, bool, np.bool_)):
            continue
        if name == "hkl":
            _check_hkl(value)
            continue
        if name == "mask":
            continue
        if _is_number(value):
            v = float(value)
            if math.isnan(v) and name in NAN_MEANS_UNSET:
                continue
            if not math.isfinite(v):
                _fail(name, f"must be a finite number, got {v}")
            continue
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            _fail(name, f"must be numbers, got {type(value).__name__}")
        if name == "source_table":
            bad = np.isinf(arr)  # NaN: a column the source file leaves empty
        else:
            bad = ~np.isfinite(arr)
        if bad.any():
            _fail(name, f"must be finite numbers, got {_show(arr)}")


def _check_hkl(grid) -> None:
    F = np.asarray(getattr(grid, "F", None), dtype=np.float64)
    try:
        ranges = [int(getattr(grid, a)) for a in ("h_min", "h_max", "k_min", "k_max", "l_min", "l_max")]
    except (TypeError, ValueError, AttributeError):
        _fail("hkl", "must be an HKLGrid with integer index ranges")
    shape = tuple(ranges[i + 1] - ranges[i] + 2 for i in (0, 2, 4))
    if F.shape != shape:
        _fail("hkl", f"table has shape {F.shape}, but its index ranges need {shape}")
    if not np.isfinite(F).all():
        _fail("hkl", "holds a structure factor that is not finite")


def _check_vectors(config: SimConfig) -> None:
    parity = config.mode == "parity"
    for name in _AXES:
        v = np.asarray(getattr(config, name), dtype=np.float64).reshape(-1)
        if v.size != 3:
            _fail(name, f"must have 3 components, got {v.size}")
        if name == "odet_vector" and parity:
            continue  # C rebuilds a non-unit odet from fdet x sdet (quirks table)
        if not (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]) > 0.0:
            _fail(name, "must not be a zero-length vector")
    for name, shape in (("a_matrix", (3, 3)), ("pix0_vector", (3,)), ("misset", (3,))):
        value = getattr(config, name)
        if value is not None and np.asarray(value).shape != shape:
            _fail(name, f"must have shape {shape}, got {np.asarray(value).shape}")


def _check_cell(config: SimConfig) -> None:
    if config.cell_angstrom is None:
        return
    lengths = [float(v) for v in config.cell_angstrom]
    if len(lengths) != 3:
        _fail("cell_angstrom", f"must be 3 edge lengths, got {len(lengths)}")
    if not lengths[0] > 0.0:
        _fail("cell_angstrom", f"edge a must be positive, got {lengths[0]:g} A")
    for label, v in zip("bc", lengths[1:]):
        if v < 0.0:
            _fail("cell_angstrom", f"edge {label} must not be negative, got {v:g} A")
    angles = [float(v) for v in config.cell_angles]
    if len(angles) != 3:
        _fail("cell_angles", f"must be 3 angles, got {len(angles)}")
    # 0 (or less) means 90 degrees, as in C
    al, be, ga = (v if v > 0.0 else math.pi / 2 for v in angles)
    deg = f"{math.degrees(al):g} {math.degrees(be):g} {math.degrees(ga):g} degrees"
    if max(al, be, ga) >= math.pi:
        _fail("cell_angles", f"make no cell: {deg} (each angle must be below 180)")
    if al + be + ga >= 2 * math.pi:
        _fail("cell_angles", f"make no cell: {deg} (the angles must sum to less than 360)")
    if al >= be + ga or be >= al + ga or ga >= al + be:
        _fail("cell_angles", f"make no cell: {deg} (each angle must be smaller than the other two together)")


def _check_beam(config: SimConfig) -> None:
    if not config.lambda0 > 0.0:
        _fail("lambda0", f"must be positive, got {config.lambda0 * 1e10:g} A")
    if config.dispersion >= 2.0:
        _fail("dispersion", f"of {config.dispersion * 100:g} % reaches zero or negative wavelengths")
    if not config.source_distance > 0.0:
        _fail("source_distance", f"must be positive, got {config.source_distance:g} m")
    table = config.source_table
    if table is not None and len(table) > 0:
        tab = np.asarray(table, dtype=np.float64)
        if tab.ndim != 2 or tab.shape[1] < 5:
            _fail("source_table", f"must have 5 columns (X Y Z weight lambda), got shape {tab.shape}")
        lam = tab[:, 4]
        bad = np.flatnonzero(~np.isnan(lam) & ~(lam > 0.0))
        if bad.size:
            i = int(bad[0])
            _fail("source_table", f"source {i + 1} has a wavelength of {lam[i] * 1e10:g} A (must be positive)")
        xyz = tab[:, :3]
        given = ~np.isnan(xyz).any(axis=1)
        zero = np.flatnonzero(given & ~((xyz * xyz).sum(axis=1) > 0.0))
        if zero.size:
            _fail("source_table", f"source {int(zero[0]) + 1} is at the sample (zero direction vector)")


def _check_sizes(config: SimConfig) -> None:
    for name in _NONNEGATIVE:
        value = float(getattr(config, name))
        if value < 0.0:
            _fail(name, f"must not be negative, got {value:g}")
    if config.flux > 0.0 and config.exposure > 0.0 and config.beamsize == 0.0:
        _fail("beamsize", "must be positive with a flux (a zero beam size gives an infinite fluence)")
    if not config.pixel_size > 0.0:
        _fail("pixel_size", f"must be positive, got {config.pixel_size * 1000:g} mm")


def _detector_pixels(config: SimConfig) -> tuple[int, int]:
    """Detector size in pixels as :func:`nbnumba.prepare.prepare` computes it."""
    pixel = float(config.pixel_size)
    size_f = pixel * int(config.fpixels) if int(config.fpixels) else float(config.detsize_f)
    size_s = pixel * int(config.spixels) if int(config.spixels) else float(config.detsize_s)
    return math.ceil(size_f / pixel - 0.5), math.ceil(size_s / pixel - 0.5)


def _check_roi(config: SimConfig) -> None:
    roi = tuple(config.roi)
    if len(roi) != 4:
        _fail("roi", f"must be 4 numbers (xmin xmax ymin ymax), got {len(roi)}")
    if all(int(v) < 0 for v in roi):
        return
    fpixels, spixels = _detector_pixels(config)
    xmin, xmax, ymin, ymax = (int(v) for v in roi)
    xmin = 0 if xmin < 0 else xmin
    ymin = 0 if ymin < 0 else ymin
    xmax = fpixels if xmax < 0 else xmax
    ymax = spixels if ymax < 0 else ymax
    text = f"{xmin} {xmax} {ymin} {ymax}"
    if xmin > fpixels - 1 or ymin > spixels - 1:
        _fail("roi", f"{text} lies outside the {fpixels} x {spixels} pixel detector")
    if xmin > xmax or ymin > ymax:
        _fail("roi", f"{text} is empty (xmin > xmax or ymin > ymax)")


def check_config(config: SimConfig) -> None:
    """Refuse a configuration that cannot give a meaningful image.

    Parameters
    ----------
    config : SimConfig
        The run description, after the input files were read.

    Raises
    ------
    ConfigError
        One line naming the field (and its command-line flag) and the
        problem; see the module documentation for the list of checks.
    """
    _check_finite(config)
    _check_vectors(config)
    _check_cell(config)
    _check_beam(config)
    _check_sizes(config)
    if config.pixel_size > 0.0:
        _check_roi(config)
