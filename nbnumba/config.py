"""Simulation configuration: plain fields in SI units.

A :class:`SimConfig` holds what a nanoBragg command line says, after the
units have been converted (metres, radians, 1/m), with the C program's
"not given" markers kept (``-1`` for counts and ranges, ``nan`` for beam
centres) so that :func:`nbnumba.prepare.prepare` can apply the same
auto-selection rules as C.  Files are read before a config is built: a
config holds arrays, so scans and finite differences can change one field
with :func:`dataclasses.replace` and call :func:`nbnumba.simulate` again
without touching the disk or recompiling.

The one exception to SI is the unit cell, given in Angstrom and radians as
C computes it (``cell_angstrom``): the reciprocal cell is built in 1/Angstrom
like C, then converted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Optional

import numpy as np

NAN = math.nan

CONVENTIONS = ("CUSTOM", "ADXV", "MOSFLM", "XDS", "DIALS", "DENZO")
PIVOTS = ("beam", "sample")
SHAPES = ("square", "round", "gauss", "tophat")
MODES = ("spec", "parity")

# Thomson cross-section squared electron radius (m^2), as C uses it
R_E_SQR = 7.94079248018965e-30
AVOGADRO = 6.02214179e23
DEFAULT_FLUENCE = 125932015286227086360700780544.0


INF = math.inf
RTD = 180.0 / math.pi
META_KEY = "nbnumba"
"""Key of a :class:`SimConfig` field's :class:`FieldInfo` in ``dataclasses.field(metadata=...)``."""


@dataclass(frozen=True)
class FieldInfo:
    """What a :class:`SimConfig` field holds: its kind, units and valid values.

    The CLI help, ``nbnumba scan --vary`` and :mod:`nbnumba.gradients` read
    this instead of keeping their own lists.

    Attributes
    ----------
    kind : str
        ``length``, ``angle``, ``direction`` (unit-vector components),
        ``attenuation`` (1/m), ``count``, ``cells``, ``pixels``,
        ``magnitude``, ``fraction``, ``time``, ``seed``, ``switch``,
        ``choice``, ``data`` (read from files) or ``label``.
    unit : str
        Unit of the stored value (SI, except ``cell_angstrom``).
    user_unit : str
        Unit shown to people (the unit of the matching command-line flag).
    to_user : float
        Factor from the stored value to the user unit.
    low, high : float
        Bounds of a value given by the user (``low_open``/``high_open``:
        the bound itself is excluded).
    continuous : bool
        A real number that gradients and refinement may vary.
    size : int
        Number of components of a vector field (0 for a scalar).
    variable : bool
        A scan may change it per frame (False for file data and the mode).
    choices : tuple
        Allowed values of a ``choice`` field.
    """

    kind: str
    unit: str = ""
    user_unit: str = ""
    to_user: float = 1.0
    low: float = -INF
    high: float = INF
    low_open: bool = False
    high_open: bool = False
    continuous: bool = False
    size: int = 0
    variable: bool = True
    choices: tuple = ()

    def in_bounds(self, value: float) -> bool:
        """Whether a stored value lies within the bounds.

        Parameters
        ----------
        value : float
            In the field's stored units.

        Returns
        -------
        bool
        """
        if value < self.low or (self.low_open and value == self.low):
            return False
        return not (value > self.high or (self.high_open and value == self.high))

    def bounds_text(self) -> str:
        """The bounds in user units, for messages.

        Returns
        -------
        str
            For example ``'> 0 mm'``, ``'>= 1'`` or ``'0 to 1'``.
        """
        unit = f" {self.user_unit}" if self.user_unit else ""
        lo, hi = self.low * self.to_user, self.high * self.to_user
        if math.isinf(lo) and math.isinf(hi):
            return "any value"
        if math.isinf(hi):
            return f"{'>' if self.low_open else '>='} {lo:g}{unit}"
        if math.isinf(lo):
            return f"{'<' if self.high_open else '<='} {hi:g}{unit}"
        return f"{lo:g} to {hi:g}{unit}" + (" (ends excluded)" if self.low_open or self.high_open else "")


def _meta(default=None, factory=None, **info):
    md = {META_KEY: FieldInfo(**info)}
    if factory is not None:
        return field(default_factory=factory, metadata=md)
    return field(default=default, metadata=md)


def _vec(*v, kind="direction", **info):
    return _meta(factory=lambda: np.array(v, dtype=np.float64), kind=kind, size=3, continuous=True, **info)


_POS = dict(low=0.0, low_open=True)
_NONNEG = dict(low=0.0)


def _length(default, user="mm", scale=1e3, **kw):
    return _meta(default, kind="length", unit="m", user_unit=user, to_user=scale, continuous=True, **kw)


def _angle(default, user="deg", scale=RTD, **kw):
    return _meta(default, kind="angle", unit="rad", user_unit=user, to_user=scale, continuous=True, **kw)


def _count(default, unit=""):
    return _meta(default, kind="count", unit=unit, user_unit=unit, low=1.0)


def _value(default, kind="magnitude", unit="", user=None, **kw):
    return _meta(default, kind=kind, unit=unit, user_unit=unit if user is None else user, continuous=True, **kw)


def _switch(default):
    return _meta(default, kind="switch")


def _choice(default, choices):
    return _meta(default, kind="choice", choices=tuple(choices))


def _seed(default):
    return _meta(default, kind="seed")


def _data():
    return _meta(None, kind="data", variable=False)


@dataclass
class SimConfig:
    """Everything that determines a rendered image.

    Attributes follow the C program's variables; see ``nanoBragg -h`` for
    the command-line flag that sets each.  Lengths in metres, angles in
    radians, except ``cell_angstrom``.  Each field's
    :class:`FieldInfo` (kind, units, bounds) is in its metadata; see
    :func:`field_info`.
    """

    mode: str = _meta("spec", kind="label", variable=False, choices=MODES)
    # evaluate sin(N x)/sin(x) exactly as C does (bit-identical CPU output);
    # the default reduced form agrees with it to rounding and is faster
    exact_math: bool = _switch(False)

    # ---- crystal
    # (a, b, c) Angstrom; None: no -cell
    cell_angstrom: Optional[tuple] = _meta(None, kind="length", unit="Angstrom", user_unit="Angstrom", size=3,
                                           continuous=True, **_POS)
    # alpha, beta, gamma (rad); 0 -> 90 deg
    cell_angles: tuple = _meta((0.0, 0.0, 0.0), kind="angle", unit="rad", user_unit="deg", to_user=RTD, size=3,
                               continuous=True, low=0.0, high=math.pi, low_open=True, high_open=True)
    a_matrix: Optional[np.ndarray] = _data()  # MOSFLM A matrix rows as read (lambda-scaled)
    # the wavelength (m) the A matrix is scaled with; None: lambda0, as C does.  The
    # command line pins it to the run's wavelength, so that varying lambda0 keeps the cell
    a_matrix_lambda: Optional[float] = _meta(None, kind="length", unit="m", variable=False)
    # crystal orientation U (3x3 rotation) applied to the reciprocal axes built from
    # cell_angstrom/cell_angles, before the misset: a -mat crystal split into U and a cell
    umat: Optional[np.ndarray] = _data()
    misset: Optional[tuple] = _meta(None, kind="angle", unit="rad", user_unit="deg", to_user=RTD, size=3,
                                    continuous=True)  # (rotx, roty, rotz) rad
    misset_random: bool = _switch(False)
    misset_seed: int = _seed(0)  # C's stored (negated) seed
    hkl: Optional[object] = _data()  # nbnumba.io.hkl.HKLGrid
    default_F: float = _value(0.0, unit="electrons", **_NONNEG)
    Na: float = _value(1.0, kind="cells", unit="cells", **_NONNEG)
    Nb: float = _value(1.0, kind="cells", unit="cells", **_NONNEG)
    Nc: float = _value(1.0, kind="cells", unit="cells", **_NONNEG)
    sample_x: float = _length(0.0, **_NONNEG)
    sample_y: float = _length(0.0, **_NONNEG)
    sample_z: float = _length(0.0, **_NONNEG)
    xtal_shape: str = _choice("square", SHAPES)
    fudge: float = _value(1.0, **_NONNEG)
    mosaic_spread: float = _angle(-1.0, **_NONNEG)
    mosaic_domains: int = _count(-1)
    mosaic_seed: int = _seed(-12345678)
    interpolate: int = _meta(2, kind="choice", choices=(0, 1, 2))  # 2: auto, 1: on, 0: off

    # ---- spindle
    phi0: float = _angle(0.0)
    osc: float = _angle(-1.0, **_NONNEG)
    phistep: float = _angle(-1.0, **_POS)
    phisteps: int = _count(-1)
    spindle_vector: np.ndarray = _vec(0.0, 0.0, 1.0)

    # ---- beam
    lambda0: float = _length(1.0e-10, user="Angstrom", scale=1e10, **_POS)
    dispersion: float = _value(0.0, kind="fraction", user="%", to_user=100.0, **_NONNEG)
    dispstep: float = _length(-1.0, user="Angstrom", scale=1e10, **_POS)
    dispsteps: int = _count(-1)
    hdivrange: float = _angle(-1.0, user="mrad", scale=1e3, **_NONNEG)
    hdivstep: float = _angle(-1.0, user="mrad", scale=1e3, **_POS)
    hdivsteps: int = _count(-1)
    vdivrange: float = _angle(-1.0, user="mrad", scale=1e3, **_NONNEG)
    vdivstep: float = _angle(-1.0, user="mrad", scale=1e3, **_POS)
    vdivsteps: int = _count(-1)
    round_div: bool = _switch(True)
    source_table: Optional[np.ndarray] = _data()  # (n, 5): X Y Z weight lambda, NaN = missing
    source_distance: float = _length(10.0, **_POS)
    fluence: float = _value(DEFAULT_FLUENCE, unit="photons/m^2", **_NONNEG)
    flux: float = _value(0.0, unit="photons/s", **_NONNEG)
    exposure: float = _value(1.0, kind="time", unit="s", **_NONNEG)
    beamsize: float = _length(1e-4, **_NONNEG)
    polarization: float = _value(0.0, low=0.0, high=1.0)  # Kahn factor
    nopolar: bool = _switch(False)
    beam_vector: np.ndarray = _vec(1.0, 0.0, 0.0)
    polar_vector: np.ndarray = _vec(0.0, 0.0, 1.0)
    water_size: float = _length(0.0, user="um", scale=1e6, **_NONNEG)
    dmin: float = _length(0.0, user="Angstrom", scale=1e10, **_NONNEG)

    # ---- detector
    convention: str = _choice("MOSFLM", CONVENTIONS)
    detector_pivot: str = _choice("beam", PIVOTS)  # as the C flags leave it
    pivot_explicit: Optional[str] = _choice(None, PIVOTS)  # what -pivot said, if anything
    # the last of -Xbeam/-Ybeam ("beam") or -Xclose/-Yclose/-ORGX/-ORGY/-close_distance ("sample");
    # spec mode lets it override the convention's pivot (Spec A)
    pivot_forced: Optional[str] = _choice(None, PIVOTS)
    pixel_size: float = _length(0.1e-3, **_POS)
    distance: float = _length(100.0e-3, **_POS)
    close_distance: float = _length(NAN, **_POS)
    detsize_f: float = _length(102.4e-3, **_POS)
    detsize_s: float = _length(102.4e-3, **_POS)
    fpixels: int = _count(0, "pixels")
    spixels: int = _count(0, "pixels")
    Xbeam: float = _length(NAN)
    Ybeam: float = _length(NAN)
    Xclose: float = _length(NAN)
    Yclose: float = _length(NAN)
    ORGX: float = _value(NAN, kind="pixels", unit="pixels")
    ORGY: float = _value(NAN, kind="pixels", unit="pixels")
    fdet_vector: np.ndarray = _vec(0.0, 0.0, 1.0)
    sdet_vector: np.ndarray = _vec(0.0, -1.0, 0.0)
    odet_vector: np.ndarray = _vec(1.0, 0.0, 0.0)
    twotheta_axis: np.ndarray = _vec(0.0, 1.0, 0.0)
    # user's pix0 (m); C ignores it
    pix0_vector: Optional[np.ndarray] = _meta(None, kind="length", unit="m", user_unit="mm", to_user=1e3, size=3,
                                              continuous=True)
    detector_rotx: float = _angle(0.0)
    detector_roty: float = _angle(0.0)
    detector_rotz: float = _angle(0.0)
    detector_twotheta: float = _angle(0.0)
    detector_mu: float = _value(-1.0, kind="attenuation", unit="1/m", **_POS)
    detector_thick: float = _length(0.0, user="um", scale=1e6, **_NONNEG)
    detector_thickstep: float = _length(-1.0, user="um", scale=1e6, **_POS)
    detector_thicksteps: int = _count(-1)
    curved_detector: bool = _switch(False)
    point_pixel: bool = _switch(False)
    oversample: int = _count(-1)
    oversample_thick: bool = _switch(False)
    oversample_polar: bool = _switch(False)
    oversample_omega: bool = _switch(False)
    # xmin xmax ymin ymax (pixels, inclusive)
    roi: tuple = _meta((-1, -1, -1, -1), kind="pixels", unit="pixels", user_unit="pixels", size=4, low=0.0)
    mask: Optional[np.ndarray] = _data()  # uint16, flat raster; 0 = skip

    def __post_init__(self):
        if self.mode not in MODES:
            from .errors import ConfigError

            raise ConfigError(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")


def _field_infos() -> dict:
    return {f.name: f.metadata[META_KEY] for f in fields(SimConfig)}


FIELD_INFO: dict[str, FieldInfo] = _field_infos()
"""Every :class:`SimConfig` field's :class:`FieldInfo`, by name."""


def field_info(name: str) -> FieldInfo:
    """The :class:`FieldInfo` of a :class:`SimConfig` field.

    Parameters
    ----------
    name : str
        Field name (``'distance'``), without a component index.

    Returns
    -------
    FieldInfo

    Raises
    ------
    KeyError
        For a name that is not a field.
    """
    return FIELD_INFO[name]


def user_value(name: str, value) -> str:
    """A stored value as people read it: ``'120 mm'``, ``'10 deg'``, ``'1.5 Angstrom'``.

    Parameters
    ----------
    name : str
        Field name, optionally with a component index (``'misset[0]'``).
    value : object
        Value in the field's stored units (SI).

    Returns
    -------
    str
    """
    info = FIELD_INFO.get(name.split("[")[0].strip())
    if info is None or isinstance(value, (bool, str)) or value is None:
        return str(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    shown = number * info.to_user
    unit = f" {info.user_unit}" if info.user_unit else ""
    return f"{shown:.9g}{unit}"
