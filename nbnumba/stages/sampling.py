"""Sampling stage: how finely each integration axis is stepped.

C completes a (count, range, step) triple for the spindle rotation, the
beam divergence, the spectral dispersion and the detector thickness by the
same scheme, with small per-quantity differences that parity mode must
keep.  :func:`select_steps` is that scheme; a :class:`StepRule` names the
differences.  The oversampling of a pixel is chosen later, from the
crystal size and the detector distance (:meth:`Sampling.with_oversample`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Optional

from ..config import SimConfig
from ..errors import ConfigError
from .vectors import RTD, c_ceil_int


@dataclass(frozen=True)
class StepRule:
    """C's per-quantity differences in completing (count, range, step).

    Attributes
    ----------
    count_only_range : float
        The range used when only a count is given (1 rad for divergence and
        dispersion, 1 degree for phi, 0.5 µm for the detector thickness).
    range_only_divisor : float
        With only a range, two steps of ``range / range_only_divisor``
        (1 for divergence and dispersion, 2 for phi and thickness).
    zero_count_means_one : bool
        A count of 0 counts as given and means 1 (phi), instead of "not
        given" (the others).
    zero_step_given : bool
        With a count and a range, a step of exactly 0 counts as given and
        is kept (phi), instead of being derived (the others).
    inclusive_ends : bool
        With a count and a range, the count includes both ends: at least 2
        points, ``step = range / (count - 1)`` (the others); otherwise
        ``step = range / count`` (phi).
    collapse_empty : bool
        Afterwards, a non-positive range, step or count becomes a single
        point of zero range (all but phi).
    """

    count_only_range: float
    range_only_divisor: float
    zero_count_means_one: bool
    zero_step_given: bool
    inclusive_ends: bool
    collapse_empty: bool


#: spindle rotation (``-phisteps``, ``-osc``, ``-phistep``)
PHI_RULE = StepRule(count_only_range=1.0 / RTD, range_only_divisor=2.0, zero_count_means_one=True,
                    zero_step_given=True, inclusive_ends=False, collapse_empty=False)
#: horizontal and vertical divergence (``-hdivsteps``, ``-hdivrange``, ``-hdivstep``, ...)
DIVERGENCE_RULE = StepRule(count_only_range=1.0, range_only_divisor=1.0, zero_count_means_one=False,
                           zero_step_given=False, inclusive_ends=True, collapse_empty=True)
#: spectral dispersion (``-dispsteps``, ``-dispersion``, ``-dispstep``)
DISPERSION_RULE = DIVERGENCE_RULE
#: detector thickness layers (``-thicksteps``, ``-detector_thick``, ``-detector_thickstep``)
THICKNESS_RULE = StepRule(count_only_range=0.5e-6, range_only_divisor=2.0, zero_count_means_one=False,
                          zero_step_given=False, inclusive_ends=True, collapse_empty=True)


def select_steps(steps, rng, step, rule: StepRule) -> tuple[int, float, float]:
    """Complete a (count, range, step) triple as C does.

    Parameters
    ----------
    steps : int
        Number of points; negative (or 0, see ``rule``) when not given.
    rng : float
        Full range; negative when not given.
    step : float
        Spacing; non-positive when not given.
    rule : StepRule
        The quantity's differences from the common scheme.

    Returns
    -------
    tuple of (int, float, float)
        ``(steps, range, step)`` as C uses them.
    """
    steps, rng, step = int(steps), float(rng), float(step)
    if rule.zero_count_means_one and steps == 0:
        steps = 1
    if steps <= 0:
        if rng < 0.0:
            if step <= 0.0:
                steps, rng, step = 1, 0.0, 0.0
            else:
                rng, steps = step, 2
        elif step <= 0.0:
            steps, step = 2, rng / rule.range_only_divisor
        else:
            steps = c_ceil_int(rng / step)
    elif rng < 0.0:
        if step <= 0.0:
            rng = rule.count_only_range
            step = rng / steps
        else:
            rng, steps = step, 2
    elif step < 0.0 or (step == 0.0 and not rule.zero_step_given):
        if rule.inclusive_ends:
            if steps <= 1:
                steps = 2
            step = rng / (steps - 1)
        else:
            step = rng / steps
    if rule.collapse_empty and (rng <= 0.0 or step <= 0.0 or steps <= 0):
        steps, rng, step = 1, 0.0, 0.0
    return steps, rng, step


def choose_oversample(requested: int, xtalsize_max: float, lambda0: float, distance: float,
                      pixel_size: float, messages: list) -> int:
    """Sub-pixels per pixel edge: C's rule of three per reciprocal pixel.

    Parameters
    ----------
    requested : int
        ``-oversample``; non-positive to choose automatically.
    xtalsize_max : float
        Largest crystal dimension (m).
    lambda0 : float
        Nominal wavelength (m).
    distance : float
        Sample-to-beam-spot distance (m).
    pixel_size : float
        Pixel edge (m).
    messages : list of str
        Receives C's notes and warnings.

    Returns
    -------
    int
        The oversampling.

    Raises
    ------
    ConfigError
        When the ratio is infinite or undefined.
    """
    reciprocal_pixel_size = lambda0 * distance / pixel_size
    ratio_os = 3.0 * xtalsize_max / reciprocal_pixel_size
    if not math.isfinite(ratio_os):
        raise ConfigError("impossible geometry: cannot choose an oversampling (infinite or undefined "
                          f"crystal size {xtalsize_max:g} m over reciprocal pixel {reciprocal_pixel_size:g} m)")
    recommended = c_ceil_int(ratio_os)
    if recommended <= 0:
        recommended = 1
    oversample = int(requested)
    if oversample <= 0:
        oversample = recommended
        messages.append(f"auto-selected {oversample}-fold oversampling")
    if oversample < recommended:
        messages.append(f"WARNING: maximum dimension of sample is {xtalsize_max * 1e10:g} A")
        messages.append(f"         but reciprocal pixel size is {reciprocal_pixel_size * 1e10:g} A")
        messages.append("         intensity may vary significantly across a pixel!")
        messages.append(f"         recommend -oversample {recommended} to work around this")
    return oversample


@dataclass
class Sampling:
    """Step counts of every integration axis (SI units: radians, metres).

    Attributes
    ----------
    phi0, osc, phistep : float
        Spindle start, oscillation range and step (rad).
    phisteps : int
        Spindle steps.
    hdivrange, hdivstep, vdivrange, vdivstep : float
        Horizontal and vertical divergence range and step (rad).
    hdivsteps, vdivsteps : int
        Divergence grid points per axis (before round trimming).
    dispersion, dispstep : float
        Relative spectral width and step.
    dispsteps : int
        Wavelengths per divergence direction.
    thick, thickstep : float
        Detector sensor thickness and layer step (m).
    thicksteps : int
        Sensor layers.
    mu : float
        Sensor attenuation coefficient (1/m); ``1/thick`` when not given.
    oversample : int or None
        Sub-pixels per pixel edge; None until :meth:`with_oversample`.
    """

    phi0: float
    osc: float
    phistep: float
    phisteps: int
    hdivrange: float
    hdivstep: float
    hdivsteps: int
    vdivrange: float
    vdivstep: float
    vdivsteps: int
    dispersion: float
    dispstep: float
    dispsteps: int
    thick: float
    thickstep: float
    thicksteps: int
    mu: float
    oversample: Optional[int] = None

    @classmethod
    def from_config(cls, config: SimConfig, messages: Optional[list] = None) -> "Sampling":
        """Complete every step triple of ``config`` (the oversampling is left open).

        Parameters
        ----------
        config : SimConfig
            The run description.
        messages : list of str, optional
            Receives C's warnings (the attenuation-depth note).

        Returns
        -------
        Sampling
            Step counts, ``oversample`` None.
        """
        msgs = messages if messages is not None else []
        c = config
        phisteps, osc, phistep = select_steps(c.phisteps, c.osc, c.phistep, PHI_RULE)
        hdivsteps, hdivrange, hdivstep = select_steps(c.hdivsteps, c.hdivrange, c.hdivstep, DIVERGENCE_RULE)
        vdivsteps, vdivrange, vdivstep = select_steps(c.vdivsteps, c.vdivrange, c.vdivstep, DIVERGENCE_RULE)
        dispsteps, dispersion, dispstep = select_steps(c.dispsteps, c.dispersion, c.dispstep, DISPERSION_RULE)
        thicksteps, thick, thickstep = select_steps(
            c.detector_thicksteps, c.detector_thick, c.detector_thickstep, THICKNESS_RULE)
        mu = float(c.detector_mu)
        if thick > 0.0 and mu < 0.0:
            mu = 1.0 / thick
            msgs.append(f"WARNING: setting detector attenuation depth to {mu:g} m")
        return cls(phi0=float(c.phi0), osc=osc, phistep=phistep, phisteps=phisteps,
                   hdivrange=hdivrange, hdivstep=hdivstep, hdivsteps=hdivsteps,
                   vdivrange=vdivrange, vdivstep=vdivstep, vdivsteps=vdivsteps,
                   dispersion=dispersion, dispstep=dispstep, dispsteps=dispsteps,
                   thick=thick, thickstep=thickstep, thicksteps=thicksteps, mu=mu)

    def with_oversample(self, config: SimConfig, xtalsize_max: float, distance: float,
                        pixel_size: float, messages: Optional[list] = None) -> "Sampling":
        """A copy with the oversampling chosen (:func:`choose_oversample`).

        Parameters
        ----------
        config : SimConfig
            Supplies ``oversample`` and ``lambda0``.
        xtalsize_max : float
            Largest crystal dimension (m), :attr:`Crystal.xtalsize`.
        distance : float
            Sample-to-beam-spot distance (m), :attr:`Detector.distance`.
        pixel_size : float
            Pixel edge (m).
        messages : list of str, optional
            Receives C's notes and warnings.

        Returns
        -------
        Sampling
            This sampling with ``oversample`` set.
        """
        msgs = messages if messages is not None else []
        os_ = choose_oversample(config.oversample, xtalsize_max, config.lambda0, distance, pixel_size, msgs)
        return dataclasses.replace(self, oversample=os_)

    @property
    def phis(self) -> list:
        """Spindle angle of each phi step (rad), ``phi0 + t * phistep``."""
        return [self.phi0 + self.phistep * t for t in range(self.phisteps)]
