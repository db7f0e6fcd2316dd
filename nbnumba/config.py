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
from dataclasses import dataclass, field
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


def _vec(*v):
    return field(default_factory=lambda: np.array(v, dtype=np.float64))


@dataclass
class SimConfig:
    """Everything that determines a rendered image.

    Attributes follow the C program's variables; see ``nanoBragg -h`` for
    the command-line flag that sets each.  Lengths in metres, angles in
    radians, except ``cell_angstrom``.
    """

    mode: str = "spec"
    # evaluate sin(N x)/sin(x) exactly as C does (bit-identical CPU output);
    # the default reduced form agrees with it to rounding and is faster
    exact_math: bool = False

    # ---- crystal
    cell_angstrom: Optional[tuple] = None  # (a, b, c) Angstrom; None: no -cell
    cell_angles: tuple = (0.0, 0.0, 0.0)  # alpha, beta, gamma (rad); 0 -> 90 deg
    a_matrix: Optional[np.ndarray] = None  # MOSFLM A matrix rows as read (lambda-scaled)
    misset: Optional[tuple] = None  # (rotx, roty, rotz) rad
    misset_random: bool = False
    misset_seed: int = 0  # C's stored (negated) seed
    hkl: Optional[object] = None  # nbnumba.io.hkl.HKLGrid
    default_F: float = 0.0
    Na: float = 1.0
    Nb: float = 1.0
    Nc: float = 1.0
    sample_x: float = 0.0
    sample_y: float = 0.0
    sample_z: float = 0.0
    xtal_shape: str = "square"
    fudge: float = 1.0
    mosaic_spread: float = -1.0
    mosaic_domains: int = -1
    mosaic_seed: int = -12345678
    interpolate: int = 2  # 2: auto, 1: on, 0: off

    # ---- spindle
    phi0: float = 0.0
    osc: float = -1.0
    phistep: float = -1.0
    phisteps: int = -1
    spindle_vector: np.ndarray = _vec(0.0, 0.0, 1.0)

    # ---- beam
    lambda0: float = 1.0e-10
    dispersion: float = 0.0
    dispstep: float = -1.0
    dispsteps: int = -1
    hdivrange: float = -1.0
    hdivstep: float = -1.0
    hdivsteps: int = -1
    vdivrange: float = -1.0
    vdivstep: float = -1.0
    vdivsteps: int = -1
    round_div: bool = True
    source_table: Optional[np.ndarray] = None  # (n, 5): X Y Z weight lambda, NaN = missing
    source_distance: float = 10.0
    fluence: float = DEFAULT_FLUENCE
    flux: float = 0.0
    exposure: float = 1.0
    beamsize: float = 1e-4
    polarization: float = 0.0  # Kahn factor
    nopolar: bool = False
    beam_vector: np.ndarray = _vec(1.0, 0.0, 0.0)
    polar_vector: np.ndarray = _vec(0.0, 0.0, 1.0)
    water_size: float = 0.0
    dmin: float = 0.0

    # ---- detector
    convention: str = "MOSFLM"
    detector_pivot: str = "beam"  # as the C flags leave it
    pivot_explicit: Optional[str] = None  # what -pivot said, if anything
    # the last of -Xbeam/-Ybeam ("beam") or -Xclose/-Yclose/-ORGX/-ORGY/-close_distance ("sample");
    # spec mode lets it override the convention's pivot (Spec A)
    pivot_forced: Optional[str] = None
    pixel_size: float = 0.1e-3
    distance: float = 100.0e-3
    close_distance: float = NAN
    detsize_f: float = 102.4e-3
    detsize_s: float = 102.4e-3
    fpixels: int = 0
    spixels: int = 0
    Xbeam: float = NAN
    Ybeam: float = NAN
    Xclose: float = NAN
    Yclose: float = NAN
    ORGX: float = NAN
    ORGY: float = NAN
    fdet_vector: np.ndarray = _vec(0.0, 0.0, 1.0)
    sdet_vector: np.ndarray = _vec(0.0, -1.0, 0.0)
    odet_vector: np.ndarray = _vec(1.0, 0.0, 0.0)
    twotheta_axis: np.ndarray = _vec(0.0, 1.0, 0.0)
    pix0_vector: Optional[np.ndarray] = None  # user's pix0 (m); C ignores it
    detector_rotx: float = 0.0
    detector_roty: float = 0.0
    detector_rotz: float = 0.0
    detector_twotheta: float = 0.0
    detector_mu: float = -1.0
    detector_thick: float = 0.0
    detector_thickstep: float = -1.0
    detector_thicksteps: int = -1
    curved_detector: bool = False
    point_pixel: bool = False
    oversample: int = -1
    oversample_thick: bool = False
    oversample_polar: bool = False
    oversample_omega: bool = False
    roi: tuple = (-1, -1, -1, -1)  # xmin xmax ymin ymax (pixels, inclusive)
    mask: Optional[np.ndarray] = None  # uint16, flat raster; 0 = skip

    def __post_init__(self):
        if self.mode not in MODES:
            from .errors import ConfigError

            raise ConfigError(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
