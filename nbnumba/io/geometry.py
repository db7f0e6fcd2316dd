"""What a frame file says about the experiment: :class:`FrameGeometry`.

The writers of the field's formats (miniCBF, NeXus/NXmx, TIFF, EDF) need
the geometry of the rendered detector and beam in the terms those formats
use.  :class:`FrameGeometry` holds them, in SI units and in nanoBragg's
laboratory frame, and converts to what each format wants (pixels, mm,
Angstrom; the McStas frame of NeXus).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["FrameGeometry"]


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


@dataclass
class FrameGeometry:
    """Geometry and exposure of one rendered frame (SI units, nanoBragg's lab frame).

    Attributes
    ----------
    fpixels, spixels : int
        Detector size (fast, slow).
    pixel_size : float
        Pixel pitch (m), the same along both axes.
    distance : float
        Sample to detector plane along the beam (m).
    close_distance : float
        Sample to detector plane along its normal (m).
    beam_center : (float, float)
        Where the direct beam meets the detector plane, from the outer corner
        of the first pixel along the fast and slow axes (m).
    wavelength : float
        Central wavelength (m).
    exposure : float
        Exposure time (s).
    fdet, sdet, odet, pix0, beam, polar, spindle : ndarray
        Fast, slow and normal axes of the detector, the corner of its first
        pixel (m), the beam direction (sample towards detector), the
        polarisation (E-vector) direction and the rotation axis.
    phi0, osc : float
        Rotation at the start of the frame and its oscillation range (rad).
    thickness : float
        Sensor thickness (m), 0 if not modelled.
    """

    fpixels: int
    spixels: int
    pixel_size: float
    distance: float
    close_distance: float
    beam_center: tuple
    wavelength: float
    exposure: float = 1.0
    fdet: np.ndarray = field(default_factory=lambda: np.array([0.0, 0.0, 1.0]))
    sdet: np.ndarray = field(default_factory=lambda: np.array([0.0, -1.0, 0.0]))
    odet: np.ndarray = field(default_factory=lambda: np.array([1.0, 0.0, 0.0]))
    pix0: np.ndarray = field(default_factory=lambda: np.zeros(3))
    beam: np.ndarray = field(default_factory=lambda: np.array([1.0, 0.0, 0.0]))
    polar: np.ndarray = field(default_factory=lambda: np.array([0.0, 0.0, 1.0]))
    spindle: np.ndarray = field(default_factory=lambda: np.array([0.0, 0.0, 1.0]))
    phi0: float = 0.0
    osc: float = 0.0
    thickness: float = 0.0

    @classmethod
    def from_prepared(cls, prep) -> FrameGeometry:
        """The geometry of a prepared run (:class:`nbnumba.prepare.Prepared`), as rendered.

        The beam centre is where the beam meets the detector after every
        rotation; the distance is along the detector normal.
        """
        det, beam, samp = prep.detector, prep.beam, prep.sampling
        return cls(fpixels=int(prep.fpixels), spixels=int(prep.spixels), pixel_size=float(det.pixel_size),
                   distance=float(det.distance), close_distance=float(det.close_distance),
                   beam_center=(float(det.Fbeam), float(det.Sbeam)), wavelength=float(beam.lambda0),
                   exposure=float(beam.exposure), fdet=np.array(det.fdet, float), sdet=np.array(det.sdet, float),
                   odet=np.array(det.odet, float), pix0=np.array(det.pix0, float),
                   beam=np.array(det.beam, float), polar=np.array(beam.polar_vector, float),
                   spindle=np.array(det.axes.spindle, float), phi0=float(samp.phi0), osc=float(samp.osc),
                   thickness=float(samp.thick))

    @property
    def beam_center_px(self) -> tuple[float, float]:
        """Direct-beam position in pixels (fast, slow), 0 at the outer corner of the first pixel."""
        return self.beam_center[0] / self.pixel_size, self.beam_center[1] / self.pixel_size

    def lab_to_mcstas(self) -> np.ndarray:
        """Rotation taking nanoBragg lab vectors to the NeXus (McStas) frame.

        McStas: z along the beam, x along the horizontal polarisation
        direction (perpendicular to the beam), y = z x x (up for a
        horizontally polarised synchrotron beam).  Rows are the McStas axes
        in lab coordinates.
        """
        z = _unit(self.beam)
        p = np.asarray(self.polar, dtype=np.float64)
        x = p - np.dot(p, z) * z
        if float(np.linalg.norm(x)) < 1e-9:  # polarisation along the beam: any perpendicular axis
            x = np.cross(z, [0.0, 1.0, 0.0] if abs(z[1]) < 0.9 else [1.0, 0.0, 0.0])
        x = _unit(x)
        y = np.cross(z, x)
        return np.stack([x, y, z])

    def oscillation_axis(self) -> str:
        """Pilatus header ``Oscillation_axis``: the detector axis the spindle lies along, and its sense."""
        s = _unit(self.spindle)
        for label, axis in (("X", self.fdet), ("Y", self.sdet)):
            c = float(np.dot(s, _unit(axis)))
            if abs(abs(c) - 1.0) < 1e-6:
                return f"{label}, {'CW' if c > 0 else 'CCW'}"
        return "X, CW (spindle not along a detector axis: %s)" % " ".join(f"{v:.6g}" for v in s)

    def two_theta_max(self) -> float:
        """Largest scattering angle (rad) over the detector's corners."""
        corners = [self.pix0 + a * self.fpixels * self.pixel_size * self.fdet
                   + b * self.spixels * self.pixel_size * self.sdet for a in (0, 1) for b in (0, 1)]
        beam = _unit(self.beam)
        return max(math.acos(max(-1.0, min(1.0, float(np.dot(_unit(c), beam))))) for c in corners)
