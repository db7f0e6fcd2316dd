"""Setup: turn a :class:`~nbnumba.config.SimConfig` into kernel-ready arrays.

:func:`prepare` composes the setup stages of :mod:`nbnumba.stages`
(illumination, :class:`~nbnumba.stages.Detector`,
:class:`~nbnumba.stages.Sampling`, :class:`~nbnumba.stages.Crystal`,
:class:`~nbnumba.stages.Beam`) in the C program's order of operations, so
parity mode reproduces its geometry to rounding and prints its warnings in
its order, then packs the kernel's parameter vectors.  The result, a
:class:`Prepared`, carries the stages, whose values C prints and writes
into image headers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import physics as P
from .budget import check_memory, check_run, estimate_run, run_description, source_count
from .config import R_E_SQR, SimConfig
from .errors import ConfigError
from .stages import Beam, Crystal, Detector, Illumination, Sampling
from .stages.crystal import mosaic_domain_count
from .validate import check_config


@dataclass
class Prepared:
    """Kernel arrays plus the stages they were built from.

    Attributes
    ----------
    config : SimConfig
        The run description.
    fp, ip : numpy.ndarray
        Float and integer kernel parameters (``physics.FP_*``, ``physics.IP_*``).
    sources : numpy.ndarray
        Source table (:attr:`Beam.sources`).
    cells, cells_first : numpy.ndarray
        Real cell for every (phi, domain) (:attr:`Crystal.cells`).
    fhkl : numpy.ndarray
        Structure-factor grid.
    mask : numpy.ndarray
        Flat uint16 pixel mask (one element when there is none).
    scale : float
        ``r_e² · fluence / steps``.
    steps : int
        Sources × domains × phi steps × oversample².
    fpixels, spixels : int
        Detector size in pixels.
    roi : tuple of int
        ``(xmin, xmax, ymin, ymax)``, inclusive.
    messages : list of str
        C's notes and warnings, in C's order.
    first_pixel_index : int
        Raster index of the first rendered pixel (parity phi carry-over), -1 if none.
    detector, crystal, beam, sampling : stage
        The setup stages (:mod:`nbnumba.stages`).
    """

    config: SimConfig
    fp: np.ndarray
    ip: np.ndarray
    sources: np.ndarray
    cells: np.ndarray
    cells_first: np.ndarray
    fhkl: np.ndarray
    mask: np.ndarray
    scale: float
    steps: int
    fpixels: int
    spixels: int
    roi: tuple
    detector: Detector
    crystal: Crystal
    beam: Beam
    sampling: Sampling
    first_pixel_index: int
    messages: list = field(default_factory=list)


def prepare(config: SimConfig) -> Prepared:
    """Resolve defaults and build all arrays for the kernels.

    Parameters
    ----------
    config : SimConfig
        The run description.

    Returns
    -------
    Prepared
        Arrays and the setup stages.

    Raises
    ------
    ConfigError
        For a geometry or crystal that cannot be rendered.
    """
    c = config
    check_config(c)
    msgs: list[str] = []
    illumination = Illumination.from_config(c, msgs)
    detector = Detector.from_config(c, msgs)
    sampling = Sampling.from_config(c, msgs)
    counts = _table_sizes(c, detector, sampling)
    # memory first, before the per-domain and per-step tables are allocated
    check_memory(estimate_run(*counts, oversample=1).memory_bytes, run_description(*counts))
    crystal = Crystal.from_config(c, sampling, illumination, detector.axes, msgs)
    sampling = sampling.with_oversample(c, max(crystal.xtalsize), detector.distance, detector.pixel_size, msgs)
    # then the work, once the oversampling is known: a warning for very long runs
    msgs.extend(check_run(*counts, oversample=sampling.oversample, thicksteps=sampling.thicksteps,
                          roi=detector.roi))
    beam = Beam.from_config(c, sampling, illumination, detector.axes)
    mask = _mask_array(c, detector.fpixels, detector.spixels)

    steps = beam.sources.shape[0] * crystal.mosaic_domains * sampling.phisteps * sampling.oversample ** 2
    prepared = Prepared(
        config=c, fp=float_parameters(c, detector, crystal, beam, sampling),
        ip=int_parameters(c, detector, crystal, beam, sampling), sources=beam.sources,
        cells=crystal.cells, cells_first=crystal.cells_first, fhkl=crystal.fhkl, mask=mask,
        scale=R_E_SQR * beam.fluence / steps, steps=steps, fpixels=detector.fpixels,
        spixels=detector.spixels, roi=detector.roi, messages=msgs,
        first_pixel_index=first_rendered_pixel(detector.fpixels, detector.spixels, detector.roi, c.mask),
        detector=detector, crystal=crystal, beam=beam, sampling=sampling,
    )
    return prepared


def _table_sizes(c: SimConfig, detector: Detector, sampling: Sampling) -> tuple:
    """(fpixels, spixels, sources, phisteps, mosaic domains): what the run's tables scale with."""
    grid = sampling.hdivsteps * sampling.vdivsteps * sampling.dispsteps
    _spread, domains = mosaic_domain_count(c.mosaic_spread, c.mosaic_domains, [])
    return detector.fpixels, detector.spixels, source_count(c, grid), sampling.phisteps, domains



def _mask_array(c: SimConfig, fpixels: int, spixels: int) -> np.ndarray:
    """The flat uint16 mask of ``c`` (a single 1 when there is none), checked against the detector."""
    if c.mask is None:
        return np.ones(1, dtype=np.uint16)
    mask = np.ascontiguousarray(c.mask, dtype=np.uint16).reshape(-1)
    if mask.size != fpixels * spixels:
        raise ConfigError(f"mask has {mask.size} pixels but the detector has {fpixels} x {spixels}")
    return mask


def float_parameters(c: SimConfig, detector: Detector, crystal: Crystal, beam: Beam,
                     sampling: Sampling) -> np.ndarray:
    """The kernel's float parameter vector (``physics.FP_*``).

    Parameters
    ----------
    c : SimConfig
        The run description.
    detector, crystal, beam, sampling : stage
        The setup stages.

    Returns
    -------
    numpy.ndarray
        Shape (``physics.FP_SIZE``,), float64.
    """
    cell = crystal.cell
    fp = np.zeros(P.FP_SIZE)
    fp[P.FP_FDET:P.FP_FDET + 3] = detector.fdet
    fp[P.FP_SDET:P.FP_SDET + 3] = detector.sdet
    fp[P.FP_ODET:P.FP_ODET + 3] = detector.odet
    fp[P.FP_PIX0:P.FP_PIX0 + 3] = detector.pix0
    fp[P.FP_BEAM:P.FP_BEAM + 3] = beam.direction
    fp[P.FP_ASTAR:P.FP_ASTAR + 3] = cell.a_star[:3]
    fp[P.FP_BSTAR:P.FP_BSTAR + 3] = cell.b_star[:3]
    fp[P.FP_CSTAR:P.FP_CSTAR + 3] = cell.c_star[:3]
    fp[P.FP_PIXEL_SIZE] = detector.pixel_size
    fp[P.FP_SUBPIXEL_SIZE] = detector.pixel_size / sampling.oversample
    fp[P.FP_DISTANCE] = detector.distance
    fp[P.FP_CLOSE_DISTANCE] = detector.close_distance
    fp[P.FP_THICKSTEP] = sampling.thickstep
    fp[P.FP_MU] = sampling.mu
    fp[P.FP_THICK] = sampling.thick
    fp[P.FP_DMIN] = c.dmin
    fp[P.FP_NA], fp[P.FP_NB], fp[P.FP_NC] = crystal.Na, crystal.Nb, crystal.Nc
    fp[P.FP_FUDGE] = c.fudge
    fp[P.FP_KAHN] = c.polarization
    fp[P.FP_I_BG] = beam.I_bg
    fp[P.FP_WATER] = c.water_size
    fp[P.FP_DEFAULT_F] = c.default_F
    return fp


def int_parameters(c: SimConfig, detector: Detector, crystal: Crystal, beam: Beam,
                   sampling: Sampling) -> np.ndarray:
    """The kernel's integer parameter vector (``physics.IP_*``).

    Parameters
    ----------
    c : SimConfig
        The run description.
    detector, crystal, beam, sampling : stage
        The setup stages.

    Returns
    -------
    numpy.ndarray
        Shape (``physics.IP_SIZE``,), int64.
    """
    parity = c.mode == "parity"
    ip = np.zeros(P.IP_SIZE, dtype=np.int64)
    ip[P.IP_FPIXELS] = detector.fpixels
    ip[P.IP_SPIXELS] = detector.spixels
    ip[P.IP_OVERSAMPLE] = sampling.oversample
    ip[P.IP_THICKSTEPS] = sampling.thicksteps
    ip[P.IP_SOURCES] = beam.sources.shape[0]
    ip[P.IP_PHISTEPS] = sampling.phisteps
    ip[P.IP_DOMAINS] = crystal.mosaic_domains
    ip[P.IP_CURVED] = int(c.curved_detector)
    ip[P.IP_POINT_PIXEL] = int(c.point_pixel)
    ip[P.IP_NOPOLAR] = int(c.nopolar)
    ip[P.IP_OS_THICK] = int(c.oversample_thick)
    ip[P.IP_OS_POLAR] = int(c.oversample_polar)
    ip[P.IP_OS_OMEGA] = int(c.oversample_omega)
    ip[P.IP_SHAPE] = crystal.shape_code
    ip[P.IP_INTERPOLATE] = crystal.interpolate
    ip[P.IP_H_MIN:P.IP_L_MAX + 1] = crystal.hrange
    ip[P.IP_HKLS] = crystal.hkls
    ip[P.IP_ROI_XMIN:P.IP_ROI_YMAX + 1] = detector.roi
    ip[P.IP_HAS_MASK] = int(c.mask is not None)
    ip[P.IP_WEIGHT_ONCE] = 0 if parity else 1
    ip[P.IP_INTERP_PARITY] = 1 if parity else 0
    integer_cells = all(float(v).is_integer() for v in (crystal.Na, crystal.Nb, crystal.Nc))
    ip[P.IP_EXACT_SINCG] = 1 if (c.exact_math or not integer_cells) else 0
    return ip


def first_rendered_pixel(fpixels, spixels, roi, mask):
    """Raster index of the first pixel the C loop renders (ROI and mask).

    Parameters
    ----------
    fpixels, spixels : int
        Detector size in pixels.
    roi : tuple of int
        ``(xmin, xmax, ymin, ymax)``, inclusive.
    mask : array_like or None
        Flat raster mask (0 = skip), or None.

    Returns
    -------
    int
        The raster index, or -1 when no pixel is rendered.
    """
    xmin, xmax, ymin, ymax = roi
    xs = max(xmin, 0)
    xe = min(xmax, fpixels - 1)
    ys = max(ymin, 0)
    ye = min(ymax, spixels - 1)
    if xs > xe or ys > ye:
        return -1
    if mask is None:
        return ys * fpixels + xs
    m = np.asarray(mask).reshape(spixels, fpixels)
    sub = m[ys:ye + 1, xs:xe + 1] != 0
    hits = np.flatnonzero(sub.reshape(-1))
    if hits.size == 0:
        return -1
    r, col = divmod(int(hits[0]), sub.shape[1])
    return (ys + r) * fpixels + xs + col
