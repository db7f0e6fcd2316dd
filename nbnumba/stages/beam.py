"""Beam stage: fluence, wavelength, polarisation and the source table.

The fluence is settled first (it may clip the sample, which C reports
before anything else); the sources need the lab axes of the detector
convention and the divergence and dispersion steps of the sampling.
Lengths in metres, angles in radians, fluence in photons/m².
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .. import physics as P
from ..config import AVOGADRO, R_E_SQR, SimConfig
from ..errors import ConfigError
from .detector import LabAxes
from .sampling import Sampling
from .vectors import rotate_axis, unitize


@dataclass
class Illumination:
    """Photons on the sample.

    Attributes
    ----------
    lambda0 : float
        Nominal wavelength (m).
    fluence : float
        Photons per m² (from flux, exposure and beam size when a flux is given).
    flux : float
        Photons per second.
    exposure : float
        Exposure time (s).
    beamsize : float
        Beam edge (m).
    sample : tuple of float
        Sample size (x, y, z) in metres after clipping by the beam.
    """

    lambda0: float
    fluence: float
    flux: float
    exposure: float
    beamsize: float
    sample: tuple

    @classmethod
    def from_config(cls, config: SimConfig, messages: Optional[list] = None) -> "Illumination":
        """Fluence, flux and the illuminated sample as C settles them.

        Parameters
        ----------
        config : SimConfig
            The run description.
        messages : list of str, optional
            Receives C's sample-clipping warnings.

        Returns
        -------
        Illumination
            The illumination.

        Raises
        ------
        ConfigError
            For a wavelength that is not positive and finite.
        """
        c = config
        msgs = messages if messages is not None else []
        if not c.lambda0 > 0.0 or not math.isfinite(c.lambda0):
            raise ConfigError(f"wavelength must be positive, got {c.lambda0 * 1e10:g} A")
        fluence = float(c.fluence)
        flux, exposure, beamsize = float(c.flux), float(c.exposure), float(c.beamsize)
        sample_x, sample_y, sample_z = float(c.sample_x), float(c.sample_y), float(c.sample_z)
        if flux != 0.0 and exposure > 0.0 and beamsize >= 0:
            fluence = flux * exposure / beamsize / beamsize
        if beamsize >= 0:
            if beamsize < sample_y:
                msgs.append(f"WARNING: clipping sample ({sample_y:g} m high) with beam ({beamsize:g} m)")
                sample_y = beamsize
            if beamsize < sample_z:
                msgs.append(f"WARNING: clipping sample ({sample_z:g} m wide) with beam ({beamsize:g} m)")
                sample_z = beamsize
        if exposure > 0.0:
            flux = fluence / exposure * beamsize * beamsize
        return cls(lambda0=c.lambda0, fluence=fluence, flux=flux, exposure=exposure, beamsize=beamsize,
                   sample=(sample_x, sample_y, sample_z))


@dataclass
class Beam:
    """The incident beam as rendered.

    Attributes
    ----------
    lambda0 : float
        Nominal wavelength (m).
    fluence, flux, exposure, beamsize : float
        See :class:`Illumination`.
    direction : numpy.ndarray
        Unit vector of the incident beam.
    polar_vector : numpy.ndarray
        Unit polarisation (E-vector) direction.
    vert_vector : numpy.ndarray
        ``direction × polar_vector``.
    polarization : float
        Kahn polarisation factor.
    nopolar : bool
        Polarisation factor switched off.
    dispersion, hdivrange, vdivrange : float
        Spectral width (relative) and divergence ranges (rad) as sampled.
    dispsteps : int
        Wavelengths per direction.
    divsteps : int
        Divergence directions kept (after round trimming); 0 with a source file.
    sources : numpy.ndarray
        Source table, shape (n, ``physics.SRC_SIZE``).
    I_bg : float
        Water-background intensity scale (C's ``I_bg``).
    """

    lambda0: float
    fluence: float
    flux: float
    exposure: float
    beamsize: float
    direction: np.ndarray
    polar_vector: np.ndarray
    vert_vector: np.ndarray
    polarization: float
    nopolar: bool
    dispersion: float
    dispsteps: int
    hdivrange: float
    hdivstep: float
    vdivrange: float
    vdivstep: float
    divsteps: int
    sources: np.ndarray
    I_bg: float

    @classmethod
    def from_config(cls, config: SimConfig, sampling: Optional[Sampling] = None,
                    illumination: Optional[Illumination] = None, axes: Optional[LabAxes] = None) -> "Beam":
        """Build the source table of ``config``.

        Parameters
        ----------
        config : SimConfig
            The run description.
        sampling : Sampling, optional
            Divergence and dispersion steps; from ``config`` when omitted.
        illumination : Illumination, optional
            Fluence; from ``config`` when omitted.
        axes : LabAxes, optional
            Beam and polarisation axes; from ``config``'s convention when omitted.

        Returns
        -------
        Beam
            The beam.

        Raises
        ------
        ConfigError
            When no source is left to render.
        """
        c = config
        ill = illumination if illumination is not None else Illumination.from_config(c)
        s = sampling if sampling is not None else Sampling.from_config(c)
        ax = axes if axes is not None else LabAxes.from_config(c)
        sources, divsteps = build_sources(c, ax.beam, ax.polar, ax.vert, s)
        if sources.shape[0] == 0:
            raise ConfigError("no X-ray sources to render (the divergence grid is empty)")
        water_F, water_MW = 2.57, 18.0
        I_bg = water_F * water_F * R_E_SQR * ill.fluence * c.water_size ** 3 * 1e6 * AVOGADRO / water_MW
        return cls(lambda0=ill.lambda0, fluence=ill.fluence, flux=ill.flux, exposure=ill.exposure,
                   beamsize=ill.beamsize, direction=ax.beam, polar_vector=ax.polar, vert_vector=ax.vert,
                   polarization=float(c.polarization), nopolar=bool(c.nopolar),
                   dispersion=s.dispersion, dispsteps=s.dispsteps, hdivrange=s.hdivrange,
                   hdivstep=s.hdivstep, vdivrange=s.vdivrange, vdivstep=s.vdivstep,
                   divsteps=divsteps, sources=sources, I_bg=I_bg)


def _divergence_kept(c: SimConfig, s: Sampling, hdiv: float, vdiv: float) -> bool:
    """C's round-divergence test for one grid point (square grids keep all)."""
    if not c.round_div:
        return True
    with np.errstate(divide="ignore", invalid="ignore"):
        h_term = hdiv * hdiv - s.hdivstep * s.hdivstep / 4.0 * (1 - s.hdivsteps % 2)
        v_term = vdiv * vdiv - s.vdivstep * s.vdivstep / 4.0 * (1 - s.vdivsteps % 2)
        # numpy scalars: a zero range gives inf/nan (as in C), not an exception
        test = np.float64(h_term) / np.float64(s.hdivrange) / s.hdivrange
        test += np.float64(v_term) / np.float64(s.vdivrange) / s.vdivrange
    return not test * 4.0 > 1.1


def _table_rows(c: SimConfig, beam) -> list:
    """Rows (x, y, z, lambda) of a ``-sourcefile``, with C's defaults for missing values."""
    rows = []
    for r in np.array(c.source_table, dtype=float):
        x, y, z, _w, lam = (float(v) for v in r[:5])
        if math.isnan(x):
            x = -c.source_distance * beam[0]
        if math.isnan(y):
            y = -c.source_distance * beam[1]
        if math.isnan(z):
            z = -c.source_distance * beam[2]
        if math.isnan(lam):
            lam = c.lambda0
        rows.append((x, y, z, lam))
    return rows


def build_sources(c: SimConfig, beam, polar_vector, vert_vector, s: Sampling):
    """Source table, shape (n, ``physics.SRC_SIZE``), and the divergence count.

    Each row: unit vector from the sample to the source, wavelength, and the
    source's polarization frame (:func:`nbnumba.physics.polarization_basis`).

    Parameters
    ----------
    c : SimConfig
        The run description (source file, source distance, round divergence).
    beam, polar_vector, vert_vector : numpy.ndarray
        Unit beam direction and polarisation axes.
    s : Sampling
        Divergence and dispersion steps.

    Returns
    -------
    tuple of (numpy.ndarray, int)
        The table and the number of divergence directions kept.
    """
    divsteps = 0
    if c.source_table is not None and len(c.source_table) > 0:
        rows = _table_rows(c, beam)
    else:
        rows = []
        lambda0 = c.lambda0
        for hdiv_tic in range(s.hdivsteps):
            for vdiv_tic in range(s.vdivsteps):
                hdiv = s.hdivstep * hdiv_tic - s.hdivrange / 2.0
                vdiv = s.vdivstep * vdiv_tic - s.vdivrange / 2.0
                if not _divergence_kept(c, s, hdiv, vdiv):
                    continue
                divsteps += 1
                v = np.array([-c.source_distance * beam[i] for i in range(3)])
                nv = rotate_axis(v, polar_vector, vdiv)
                v = rotate_axis(nv, vert_vector, hdiv)
                for disp_tic in range(s.dispsteps):
                    lam = lambda0 * (1.0 + s.dispstep * disp_tic - s.dispersion / 2.0)
                    rows.append((v[0], v[1], v[2], lam))
    out = np.zeros((len(rows), P.SRC_SIZE))
    px, py, pz = (float(v) for v in polar_vector)
    for i, (x, y, z, lam) in enumerate(rows):
        u, _ = unitize((x, y, z))
        out[i, P.SRC_DIR:P.SRC_DIR + 3] = u
        out[i, P.SRC_LAMBDA] = lam
        out[i, P.SRC_INCIDENT:] = P.polarization_basis(float(u[0]), float(u[1]), float(u[2]), px, py, pz)
    return out, divsteps
