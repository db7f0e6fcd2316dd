"""Detector stage: conventions, beam centre, pivot, origin and ROI.

A detector convention (``-mosflm``, ``-xds``, ...) fixes the lab axes, the
default beam centre, how the user's ``-Xbeam``/``-Ybeam`` map onto the
detector's fast/slow axes, the pivot, and the beam-centre values written into
image headers.  :data:`CONVENTIONS` holds one :class:`Convention` per name;
:class:`Detector` applies one to a configuration in C's order of operations.
All lengths are metres, angles radians.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from ..config import SimConfig
from ..errors import ConfigError
from .vectors import c_ceil_int, cross, dot, rotate_axis, rotate_xyz, unitize

Vec = tuple[float, float, float]


def _centre_of(detsize_f, detsize_s, pixel, xclose, yclose):
    return xclose, yclose


def _identity(x, y, detsize_s, pixel):
    return x, y


def _adxv_centre(detsize_f, detsize_s, pixel, xclose, yclose):
    return (detsize_f + pixel) / 2.0, (detsize_s - pixel) / 2.0


def _adxv_to_fs(x, y, detsize_s, pixel):
    return x, detsize_s - y


def _mosflm_centre(detsize_f, detsize_s, pixel, xclose, yclose):
    return (detsize_s + pixel) / 2.0, (detsize_f + pixel) / 2.0


def _mosflm_to_fs(x, y, detsize_s, pixel):
    return y + 0.5 * pixel, x + 0.5 * pixel


def _denzo_to_fs(x, y, detsize_s, pixel):
    return y + 0.0 * pixel, x + 0.0 * pixel


def _adxv_from_fs(f, s, detsize_s, pixel):
    return f, detsize_s - s


def _mosflm_from_fs(f, s, detsize_s, pixel):
    return s - 0.5 * pixel, f - 0.5 * pixel


def _denzo_from_fs(f, s, detsize_s, pixel):
    return s - 0.0 * pixel, f - 0.0 * pixel


def _no_header(det) -> dict:
    return {}


def _centre_header(convention, name_x, name_y):
    """Header keywords (mm) for the reported beam spot in ``convention``'s own axes."""
    def header(det) -> dict:
        x, y = CONVENTIONS[convention].from_fs(det.spot.Fbeam, det.spot.Sbeam, det.detsize_s, det.pixel_size)
        return {name_x: x * 1000.0, name_y: y * 1000}
    return header


def _xds_header(det) -> dict:
    return dict(xds_orgx=det.ORGX, xds_orgy=det.ORGY)


def _dials_header(det) -> dict:
    return dict(dials_origin=tuple(det.dials_origin))


@dataclass(frozen=True)
class Convention:
    """One detector convention.

    Attributes
    ----------
    name : str
        Upper-case name, as ``SimConfig.convention`` spells it.
    beam, fdet, sdet, odet, twotheta_axis, polar, spindle : tuple of float or None
        Lab vectors the convention imposes (None: taken from the config,
        as for ``CUSTOM``).
    pivot : str or None
        ``"beam"`` or ``"sample"``; None keeps the config's pivot.
    default_centre : callable
        ``(detsize_f, detsize_s, pixel, Xclose, Yclose) -> (Xbeam, Ybeam)``,
        the beam centre when ``-Xbeam``/``-Ybeam`` are not given.
    to_fs : callable
        ``(Xbeam, Ybeam, detsize_s, pixel) -> (Fbeam, Sbeam)``, the user's
        beam centre on the detector's fast and slow axes.
    from_fs : callable
        ``(Fbeam, Sbeam, detsize_s, pixel) -> (Xbeam, Ybeam)``, the inverse.
    close_from_beam : bool
        The near point is set to the beam centre (``CUSTOM``).
    header : callable
        ``Detector -> dict``: the beam-centre keywords this convention
        contributes to an SMV header (every header carries all of them).
    """

    name: str
    beam: Optional[Vec]
    fdet: Optional[Vec]
    sdet: Optional[Vec]
    odet: Optional[Vec]
    twotheta_axis: Optional[Vec]
    polar: Optional[Vec]
    spindle: Optional[Vec]
    pivot: Optional[str]
    default_centre: Callable = _centre_of
    to_fs: Callable = _identity
    from_fs: Callable = _identity
    close_from_beam: bool = False
    header: Callable = _no_header


_MOSFLM_AXES = dict(beam=(1, 0, 0), fdet=(0, 0, 1), sdet=(0, -1, 0), odet=(1, 0, 0), twotheta_axis=(0, 0, -1),
                    polar=(0, 0, 1), spindle=(0, 0, 1))

#: The conventions, by name.
CONVENTIONS: dict[str, Convention] = {conv.name: conv for conv in (
    Convention("ADXV", beam=(0, 0, 1), fdet=(1, 0, 0), sdet=(0, -1, 0), odet=(0, 0, 1), twotheta_axis=(-1, 0, 0),
               polar=(1, 0, 0), spindle=(1, 0, 0), pivot="beam", default_centre=_adxv_centre,
               to_fs=_adxv_to_fs, from_fs=_adxv_from_fs,
               header=_centre_header("ADXV", "adxv_center_x", "adxv_center_y")),
    Convention("MOSFLM", **_MOSFLM_AXES, pivot="beam", default_centre=_mosflm_centre, to_fs=_mosflm_to_fs,
               from_fs=_mosflm_from_fs, header=_centre_header("MOSFLM", "mosflm_center_x", "mosflm_center_y")),
    Convention("DENZO", **_MOSFLM_AXES, pivot="beam", default_centre=_mosflm_centre, to_fs=_denzo_to_fs,
               from_fs=_denzo_from_fs, header=_centre_header("DENZO", "denzo_x_beam", "denzo_y_beam")),
    Convention("XDS", beam=(0, 0, 1), fdet=(1, 0, 0), sdet=(0, 1, 0), odet=(0, 0, 1), twotheta_axis=(1, 0, 0),
               polar=(1, 0, 0), spindle=(1, 0, 0), pivot="sample", header=_xds_header),
    Convention("DIALS", beam=(0, 0, 1), fdet=(1, 0, 0), sdet=(0, 1, 0), odet=(0, 0, 1), twotheta_axis=(0, 1, 0),
               polar=(0, 1, 0), spindle=(0, 1, 0), pivot="sample", header=_dials_header),
    Convention("CUSTOM", beam=None, fdet=None, sdet=None, odet=None, twotheta_axis=None, polar=None,
               spindle=None, pivot=None, close_from_beam=True),
)}


def convention_of(config: SimConfig) -> Convention:
    """The :class:`Convention` named by ``config.convention``.

    Raises
    ------
    ConfigError
        For an unknown name.
    """
    try:
        return CONVENTIONS[config.convention]
    except KeyError:
        raise ConfigError(f"unknown detector convention {config.convention!r}") from None


@dataclass
class LabAxes:
    """Unit lab vectors before any detector rotation.

    Attributes
    ----------
    beam : numpy.ndarray
        Direction of the incident beam.
    fdet, sdet, odet : numpy.ndarray
        Detector fast, slow and normal axes.
    twotheta_axis : numpy.ndarray
        Axis of the detector 2θ swing (not normalised, as C leaves it).
    polar : numpy.ndarray
        Polarisation (E-vector) direction.
    vert : numpy.ndarray
        ``beam × polar``, the second polarisation axis.
    spindle : numpy.ndarray
        Goniometer rotation axis.
    """

    beam: np.ndarray
    fdet: np.ndarray
    sdet: np.ndarray
    odet: np.ndarray
    twotheta_axis: np.ndarray
    polar: np.ndarray
    vert: np.ndarray
    spindle: np.ndarray

    @classmethod
    def from_config(cls, config: SimConfig, messages: Optional[list] = None) -> "LabAxes":
        """The convention's axes (or the config's, for ``CUSTOM``), made unit.

        Parameters
        ----------
        config : SimConfig
            The run description.
        messages : list of str, optional
            Receives C's warning when the detector normal is regenerated.

        Returns
        -------
        LabAxes
            The axes.
        """
        conv = convention_of(config)
        raw = {}
        for name, cfg_name in (("beam", "beam_vector"), ("fdet", "fdet_vector"), ("sdet", "sdet_vector"),
                               ("odet", "odet_vector"), ("twotheta_axis", "twotheta_axis"),
                               ("polar", "polar_vector"), ("spindle", "spindle_vector")):
            v = getattr(conv, name)
            raw[name] = np.array(getattr(config, cfg_name) if v is None else v, dtype=float)
        beam, _ = unitize(raw["beam"])
        fdet, _ = unitize(raw["fdet"])
        sdet, _ = unitize(raw["sdet"])
        odet, omag = unitize(raw["odet"])
        if omag != 1.0:
            if messages is not None:
                messages.append("WARNING: auto-generating odet_vector")
            odet, _ = unitize(cross(fdet, sdet))
        polar, _ = unitize(raw["polar"])
        spindle, _ = unitize(raw["spindle"])
        vert, _ = unitize(cross(beam, polar))
        return cls(beam=beam, fdet=fdet, sdet=sdet, odet=odet, twotheta_axis=raw["twotheta_axis"],
                   polar=polar, vert=vert, spindle=spindle)


@dataclass
class BeamSpot:
    """Where the direct beam meets the detector, as image headers report it.

    Attributes
    ----------
    distance : float
        Sample to the spot along the beam (m).
    Fbeam, Sbeam : float
        The spot on the fast and slow axes (m).
    Xbeam, Ybeam : float
        The spot in the convention's own axes (m).
    """

    distance: float
    Fbeam: float
    Sbeam: float
    Xbeam: float
    Ybeam: float


@dataclass
class Detector:
    """The detector as rendered, in SI units.

    Attributes
    ----------
    convention : str
        Convention name.
    pivot : str
        ``"beam"`` or ``"sample"``: the point kept fixed by rotations.
    pixel_size : float
        Pixel edge (m).
    fpixels, spixels : int
        Pixels along the fast and slow axes.
    detsize_f, detsize_s : float
        Detector extent (m).
    distance : float
        Sample to the direct-beam spot along the beam (m).
    close_distance : float
        Sample to the detector plane along its normal (m).
    Xbeam, Ybeam : float
        Beam centre in the convention's own axes (m).
    Fbeam, Sbeam : float
        Direct-beam spot on the fast and slow axes, from ``pix0`` (m).
    Xclose, Yclose, Fclose, Sclose : float
        Near point (foot of the normal from the sample), as given and as
        rendered (m).
    ORGX, ORGY : float
        XDS origin: the near point in pixels.
    dials_origin : tuple of float
        DIALS origin: ``pix0`` on lab z, y, -x (mm).
    xds_beam : tuple of float
        The beam direction on the rotated fast, slow and normal axes.
    pix0 : numpy.ndarray
        Lab position of the first pixel's corner (m).
    fdet, sdet, odet : numpy.ndarray
        Rotated fast, slow and normal axes.
    axes : LabAxes
        Lab axes before rotation (beam, polarisation, spindle, 2θ axis).
    rotation : tuple of float
        ``-detector_rotx/y/z`` (rad), applied in that order.
    twotheta : float
        2θ swing about ``axes.twotheta_axis`` (rad), applied last.
    roi : tuple of int
        ``(xmin, xmax, ymin, ymax)`` in pixels, inclusive.
    spot : BeamSpot
        The direct-beam spot headers report: C's values (parity mode, or no
        2θ); in spec mode after a 2θ swing, where the beam meets the
        detector as rendered.
    """

    convention: str
    pivot: str
    pixel_size: float
    fpixels: int
    spixels: int
    detsize_f: float
    detsize_s: float
    distance: float
    close_distance: float
    Xbeam: float
    Ybeam: float
    Fbeam: float
    Sbeam: float
    Xclose: float
    Yclose: float
    Fclose: float
    Sclose: float
    ORGX: float
    ORGY: float
    dials_origin: tuple
    xds_beam: tuple
    pix0: np.ndarray
    fdet: np.ndarray
    sdet: np.ndarray
    odet: np.ndarray
    axes: LabAxes
    rotation: tuple
    twotheta: float
    roi: tuple
    spot: BeamSpot

    @property
    def beam(self) -> np.ndarray:
        """Unit vector of the incident beam."""
        return self.axes.beam

    @property
    def twotheta_axis(self) -> np.ndarray:
        """Axis of the 2θ swing."""
        return self.axes.twotheta_axis

    @classmethod
    def from_config(cls, config: SimConfig, messages: Optional[list] = None) -> "Detector":
        """Apply the convention, pivot and rotations of ``config`` as C does.

        Parameters
        ----------
        config : SimConfig
            The run description.
        messages : list of str, optional
            Receives C's warnings.

        Returns
        -------
        Detector
            The rendered detector.

        Raises
        ------
        ConfigError
            For a detector without pixels, an unknown convention, or a
            geometry in which the beam never meets the detector plane.
        """
        c = config
        pixel_size, detsize_f, detsize_s, fpixels, spixels = _size(c)
        centre = _BeamCentre.from_config(c, pixel_size, detsize_f, detsize_s)
        roi = _roi(c.roi, fpixels, spixels)
        conv = convention_of(c)
        centre.apply(conv, detsize_f, detsize_s, pixel_size)
        if c.mode != "parity":
            centre.near_point_from_close(c, conv, detsize_s, pixel_size)
        pivot = choose_pivot(c, conv)
        user_pix0 = None
        if c.mode != "parity" and c.pix0_vector is not None:
            user_pix0 = np.array(c.pix0_vector, dtype=float)
        axes = LabAxes.from_config(c, messages)
        origin = _Origin.solve(c, axes, centre, pivot, user_pix0)
        Xbeam, Ybeam = centre.Xbeam, centre.Ybeam
        if user_pix0 is not None:
            # spec: report the beam centre that the honoured origin implies
            Xbeam, Ybeam = origin.Fbeam, origin.Sbeam
        pix0 = origin.pix0
        fdet, sdet, odet = origin.fdet, origin.sdet, origin.odet
        dials_origin = (
            1000.0 * dot(pix0, (0.0, 0.0, 1.0)),
            1000.0 * dot(pix0, (0.0, 1.0, 0.0)),
            1000.0 * dot(pix0, (-1.0, 0.0, 0.0)),
        )
        xds_beam = (dot(axes.beam, fdet), dot(axes.beam, sdet), dot(axes.beam, odet))
        spot = BeamSpot(distance=origin.distance, Fbeam=origin.Fbeam, Sbeam=origin.Sbeam, Xbeam=Xbeam, Ybeam=Ybeam)
        if c.mode != "parity" and c.detector_twotheta != 0.0:
            spot = _rendered_spot(conv, axes.beam, origin, detsize_s, pixel_size)
        return cls(
            convention=conv.name, pivot=pivot, pixel_size=pixel_size, fpixels=fpixels, spixels=spixels,
            detsize_f=detsize_f, detsize_s=detsize_s, distance=origin.distance,
            close_distance=origin.close_distance, Xbeam=Xbeam, Ybeam=Ybeam, Fbeam=origin.Fbeam,
            Sbeam=origin.Sbeam, Xclose=centre.Xclose, Yclose=centre.Yclose, Fclose=origin.Fclose,
            Sclose=origin.Sclose, ORGX=origin.Fclose / pixel_size + 0.5, ORGY=origin.Sclose / pixel_size + 0.5,
            dials_origin=dials_origin, xds_beam=xds_beam, pix0=pix0, fdet=fdet, sdet=sdet, odet=odet,
            axes=axes, rotation=(c.detector_rotx, c.detector_roty, c.detector_rotz),
            twotheta=c.detector_twotheta, roi=roi, spot=spot,
        )

    def header_values(self) -> dict:
        """Detector keywords of an SMV header, in C's units (mm, pixels, degrees).

        Returns
        -------
        dict
            ``pixel_size``, ``distance``, ``close_distance``, ``twotheta``,
            the generic ``beam_center_x/y`` and every convention's own
            beam-centre keywords (:attr:`Convention.header`).
        """
        out = dict(
            pixel_size=self.pixel_size * 1000.0,
            distance=self.spot.distance * 1000.0,
            beam_center_x=self.spot.Xbeam * 1000.0,
            beam_center_y=self.spot.Ybeam * 1000,
            close_distance=self.close_distance * 1000.0,
            twotheta=self.twotheta * (180.0 * (1.0 / math.pi)),
        )
        for conv in CONVENTIONS.values():
            out.update(conv.header(self))
        return out


def choose_pivot(c: SimConfig, conv: Convention) -> str:
    """The pivot: the convention's, else the flags'; in spec mode Spec A's overrides.

    C lets a named convention impose its pivot whatever the flags said.  Spec
    mode follows Spec A: ``-Xbeam``/``-Ybeam`` force the beam pivot,
    ``-Xclose``/``-Yclose``, ``-ORGX``/``-ORGY`` and ``-close_distance`` the
    sample pivot (the last of them wins), and ``-pivot`` overrides both.

    Parameters
    ----------
    c : SimConfig
        Supplies ``detector_pivot``, ``pivot_forced``, ``pivot_explicit`` and ``mode``.
    conv : Convention
        The active convention.

    Returns
    -------
    str
        ``"beam"`` or ``"sample"``.
    """
    pivot = c.detector_pivot if conv.pivot is None else conv.pivot
    if c.mode != "parity":
        if c.pivot_forced is not None:
            pivot = c.pivot_forced
        if c.pivot_explicit is not None:
            pivot = c.pivot_explicit
    return pivot


def _rendered_spot(conv: Convention, beam, origin: "_Origin", detsize_s, pixel_size) -> BeamSpot:
    """Where the beam meets the detector plane as rendered (after the 2θ swing); NaN if it never does."""
    r = dot(beam, origin.odet)
    if not r > 0.0:
        return BeamSpot(*(math.nan,) * 5)
    distance = origin.close_distance / r
    R = np.array([distance * beam[i] - origin.pix0[i] for i in range(3)])
    F, S = dot(origin.fdet, R), dot(origin.sdet, R)
    X, Y = conv.from_fs(F, S, detsize_s, pixel_size)
    return BeamSpot(distance=distance, Fbeam=F, Sbeam=S, Xbeam=X, Ybeam=Y)


def _size(c: SimConfig):
    """Pixel size, detector extent and pixel counts, checked."""
    pixel_size = float(c.pixel_size)
    if not pixel_size > 0.0:
        raise ConfigError(f"pixel size must be positive, got {pixel_size * 1000:g} mm")
    if not (c.distance > 0.0 or c.close_distance > 0.0 or c.pix0_vector is not None):
        raise ConfigError(f"detector distance must be positive, got {c.distance * 1000:g} mm")
    detsize_f, detsize_s = float(c.detsize_f), float(c.detsize_s)
    fpixels, spixels = int(c.fpixels), int(c.spixels)
    if fpixels:
        detsize_f = pixel_size * fpixels
    if spixels:
        detsize_s = pixel_size * spixels
    fpixels = c_ceil_int(detsize_f / pixel_size - 0.5)
    spixels = c_ceil_int(detsize_s / pixel_size - 0.5)
    if fpixels <= 0 or spixels <= 0:
        raise ConfigError(f"detector has no pixels ({fpixels} x {spixels})")
    return pixel_size, detsize_f, detsize_s, fpixels, spixels


def _roi(given, fpixels, spixels) -> tuple:
    """The region of interest with C's defaults (the whole detector)."""
    roi = list(given)
    if roi[0] < 0:
        roi[0] = 0
    if roi[1] < 0:
        roi[1] = fpixels
    if roi[2] < 0:
        roi[2] = 0
    if roi[3] < 0:
        roi[3] = spixels
    return tuple(int(v) for v in roi)


@dataclass
class _BeamCentre:
    """Beam centre and near point as given, before the origin is solved."""

    Xbeam: float
    Ybeam: float
    Xclose: float
    Yclose: float
    Fbeam: float
    Sbeam: float
    Fclose: float
    Sclose: float

    @classmethod
    def from_config(cls, c: SimConfig, pixel_size, detsize_f, detsize_s) -> "_BeamCentre":
        Fclose = Sclose = math.nan
        if not math.isnan(c.ORGX):
            Fclose = (c.ORGX - 0.5) * pixel_size
        if not math.isnan(c.ORGY):
            Sclose = (c.ORGY - 0.5) * pixel_size
        if math.isnan(Fclose):
            Fclose = (detsize_f - 0 * pixel_size) / 2.0
        if math.isnan(Sclose):
            Sclose = (detsize_s + 0 * pixel_size) / 2.0
        Xclose, Yclose = float(c.Xclose), float(c.Yclose)
        if math.isnan(Xclose):
            Xclose = Fclose
        if math.isnan(Yclose):
            Yclose = Sclose
        return cls(Xbeam=float(c.Xbeam), Ybeam=float(c.Ybeam), Xclose=Xclose, Yclose=Yclose,
                   Fbeam=Fclose, Sbeam=Sclose, Fclose=Fclose, Sclose=Sclose)

    def apply(self, conv: Convention, detsize_f, detsize_s, pixel_size) -> None:
        """Default beam centre and its fast/slow mapping for ``conv``."""
        X0, Y0 = conv.default_centre(detsize_f, detsize_s, pixel_size, self.Xclose, self.Yclose)
        if math.isnan(self.Xbeam):
            self.Xbeam = X0
        if math.isnan(self.Ybeam):
            self.Ybeam = Y0
        self.Fbeam, self.Sbeam = conv.to_fs(self.Xbeam, self.Ybeam, detsize_s, pixel_size)
        if conv.close_from_beam:
            self.Fclose, self.Sclose = self.Xbeam, self.Ybeam

    def near_point_from_close(self, c: SimConfig, conv: Convention, detsize_s, pixel_size) -> None:
        """Spec mode: ``-Xclose``/``-Yclose`` (both given, no ``-ORGX``/``-ORGY``) set the near point.

        They are read in the convention's own axes, like ``-Xbeam``/``-Ybeam``.
        C ignores them except through the ``CUSTOM`` default beam centre.
        """
        if math.isnan(c.Xclose) or math.isnan(c.Yclose) or not (math.isnan(c.ORGX) and math.isnan(c.ORGY)):
            return
        self.Fclose, self.Sclose = conv.to_fs(float(c.Xclose), float(c.Yclose), detsize_s, pixel_size)


@dataclass
class _Origin:
    """``pix0``, the rotated axes and the distances and centres they imply."""

    pix0: np.ndarray
    fdet: np.ndarray
    sdet: np.ndarray
    odet: np.ndarray
    distance: float
    close_distance: float
    Fbeam: float
    Sbeam: float
    Fclose: float
    Sclose: float

    @classmethod
    def solve(cls, c: SimConfig, axes: LabAxes, centre: _BeamCentre, pivot: str, user_pix0) -> "_Origin":
        rx, ry, rz, twotheta = c.detector_rotx, c.detector_roty, c.detector_rotz, c.detector_twotheta
        beam, tt_axis = axes.beam, axes.twotheta_axis
        ratio = dot(beam, rotate_xyz(axes.odet, rx, ry, rz))
        if ratio == 0.0:
            raise ConfigError("impossible geometry: the beam runs parallel to the detector plane "
                              "(beam vector . detector normal = 0)")
        close_distance = float(c.close_distance)
        if math.isnan(close_distance):
            close_distance = abs(ratio * float(c.distance))
        distance = close_distance / ratio
        if not (math.isfinite(distance) and close_distance > 0.0) and user_pix0 is None:
            raise ConfigError(
                f"impossible detector geometry: the detector plane is {close_distance * 1000:g} mm from the "
                "sample along its normal (the beam runs parallel to it or the distance is not positive)"
            )
        fdet, sdet, odet = axes.fdet, axes.sdet, axes.odet
        pix0 = np.zeros(3)
        if user_pix0 is not None:
            pix0 = rotate_axis(rotate_xyz(user_pix0, rx, ry, rz), tt_axis, twotheta)
        elif pivot == "sample":
            pix0 = np.array([
                -centre.Fclose * fdet[i] - centre.Sclose * sdet[i] + close_distance * odet[i] for i in range(3)
            ])
            pix0 = rotate_axis(rotate_xyz(pix0, rx, ry, rz), tt_axis, twotheta)
        fdet, sdet, odet = (rotate_axis(rotate_xyz(v, rx, ry, rz), tt_axis, twotheta) for v in (fdet, sdet, odet))
        if user_pix0 is None and pivot == "beam":
            pix0 = np.array([-centre.Fbeam * fdet[i] - centre.Sbeam * sdet[i] + distance * beam[i]
                             for i in range(3)])
        close_distance = dot(pix0, odet)
        newv = np.array([close_distance / ratio * beam[i] - pix0[i] for i in range(3)])
        return cls(pix0=pix0, fdet=fdet, sdet=sdet, odet=odet, distance=close_distance / ratio,
                   close_distance=close_distance, Fbeam=dot(fdet, newv), Sbeam=dot(sdet, newv),
                   Fclose=-dot(pix0, fdet), Sclose=-dot(pix0, sdet))
