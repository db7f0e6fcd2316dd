"""Setup: turn a :class:`~nbnumba.config.SimConfig` into kernel-ready arrays.

Everything here is numpy in float64 and follows the C program's order of
operations (auto-selection of step counts, detector conventions and pivots,
cell construction, sources, mosaic domains), so parity mode reproduces its
geometry to rounding.  The result, a :class:`Prepared`, also carries the
derived values that C prints and writes into image headers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import physics as P
from .budget import check_run, source_count
from .config import AVOGADRO, R_E_SQR, SimConfig
from .errors import ConfigError
from .validate import check_config

RTD = 180.0 * (1.0 / math.pi)


# ---------------------------------------------------------------- vector helpers
def unitize(v):
    """Unit vector and magnitude, C style (zero stays zero)."""
    mag = math.sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2])
    if mag != 0.0:
        return np.array([v[0] / mag, v[1] / mag, v[2] / mag]), mag
    return np.zeros(3), mag


def cross(x, y):
    return np.array([x[1] * y[2] - x[2] * y[1], x[2] * y[0] - x[0] * y[2], x[0] * y[1] - x[1] * y[0]])


def dot(x, y):
    return x[0] * y[0] + x[1] * y[1] + x[2] * y[2]


def magnitude(v):
    return math.sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2])


def scale(v, s):
    return np.array([s * v[0], s * v[1], s * v[2]])


def rescale(v, new_mag):
    old = magnitude(v)
    if old <= 0.0:
        old = 1.0
    return np.array([new_mag / old * v[0], new_mag / old * v[1], new_mag / old * v[2]])


def rotate_xyz(v, phix, phiy, phiz):
    """Rotate about x, then y, then z (the C ``rotate``)."""
    x, y, z = float(v[0]), float(v[1]), float(v[2])
    if phix != 0:
        ryy, ryz = math.cos(phix), -math.sin(phix)
        rzy, rzz = math.sin(phix), math.cos(phix)
        x, y, z = x, y * ryy + z * ryz, y * rzy + z * rzz
    if phiy != 0:
        rxx, rxz = math.cos(phiy), math.sin(phiy)
        rzx, rzz = -math.sin(phiy), math.cos(phiy)
        x, y, z = x * rxx + y * 0 + z * rxz, y, x * rzx + y * 0 + z * rzz
    if phiz != 0:
        rxx, rxy = math.cos(phiz), -math.sin(phiz)
        ryx, ryy = math.sin(phiz), math.cos(phiz)
        x, y, z = x * rxx + y * rxy, x * ryx + y * ryy, z
    return np.array([x, y, z])


def rotate_axis(v, axis, phi):
    return np.array(P.rotate_about_axis(v[0], v[1], v[2], axis[0], axis[1], axis[2], phi))


def rotate_umat(v, u):
    return np.array([
        u[0] * v[0] + u[1] * v[1] + u[2] * v[2],
        u[3] * v[0] + u[4] * v[1] + u[5] * v[2],
        u[6] * v[0] + u[7] * v[1] + u[8] * v[2],
    ])


def c_ceil_int(x):
    return int(math.ceil(x))


# ---------------------------------------------------------------- step auto-selection
def auto_steps(steps, rng, step, count_only_range):
    """C's count/range/step completion for divergence and dispersion."""
    if steps <= 0:
        if rng < 0.0:
            if step <= 0.0:
                steps, rng, step = 1, 0.0, 0.0
            else:
                rng, steps = step, 2
        else:
            if step <= 0.0:
                step, steps = rng, 2
            else:
                steps = c_ceil_int(rng / step)
    else:
        if rng < 0.0:
            if step <= 0.0:
                rng = count_only_range
                step = rng / steps
            else:
                rng, steps = step, 2
        else:
            if step <= 0.0:
                if steps <= 1:
                    steps = 2
                step = rng / (steps - 1)
    return steps, rng, step


@dataclass
class Prepared:
    """Kernel arrays plus the derived values C reports."""

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
    # derived geometry (SI)
    info: dict = field(default_factory=dict)
    messages: list = field(default_factory=list)

    @property
    def first_pixel_index(self) -> int:
        """Raster index of the first rendered pixel (parity phi carry-over)."""
        return self.info["first_pixel_index"]


def prepare(config: SimConfig) -> Prepared:
    """Resolve defaults and build all arrays for the kernels.

    Parameters
    ----------
    config : SimConfig
        The run description.

    Returns
    -------
    Prepared
        Arrays and derived geometry.

    Raises
    ------
    ConfigError
        For a geometry or crystal that cannot be rendered.
    """
    check_config(config)
    c = config
    parity = c.mode == "parity"
    msgs: list[str] = []
    info: dict = {}

    pixel_size = float(c.pixel_size)
    if not pixel_size > 0.0:
        raise ConfigError(f"pixel size must be positive, got {pixel_size * 1000:g} mm")
    if not c.lambda0 > 0.0 or not math.isfinite(c.lambda0):
        raise ConfigError(f"wavelength must be positive, got {c.lambda0 * 1e10:g} A")
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

    # ---- fluence
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

    # ---- beam centres
    nan = math.nan
    Xbeam, Ybeam = float(c.Xbeam), float(c.Ybeam)
    Xclose, Yclose = float(c.Xclose), float(c.Yclose)
    Fclose = Sclose = Fbeam = Sbeam = nan
    if not math.isnan(c.ORGX):
        Fclose = (c.ORGX - 0.5) * pixel_size
    if not math.isnan(c.ORGY):
        Sclose = (c.ORGY - 0.5) * pixel_size
    if math.isnan(Fclose):
        Fclose = (detsize_f - 0 * pixel_size) / 2.0
    if math.isnan(Sclose):
        Sclose = (detsize_s + 0 * pixel_size) / 2.0
    if math.isnan(Xclose):
        Xclose = Fclose
    if math.isnan(Yclose):
        Yclose = Sclose
    if math.isnan(Fbeam):
        Fbeam = Fclose
    if math.isnan(Sbeam):
        Sbeam = Sclose
    roi = list(c.roi)
    if roi[0] < 0:
        roi[0] = 0
    if roi[1] < 0:
        roi[1] = fpixels
    if roi[2] < 0:
        roi[2] = 0
    if roi[3] < 0:
        roi[3] = spixels
    roi = tuple(int(v) for v in roi)

    beam = np.array(c.beam_vector, dtype=float)
    fdet = np.array(c.fdet_vector, dtype=float)
    sdet = np.array(c.sdet_vector, dtype=float)
    odet = np.array(c.odet_vector, dtype=float)
    twotheta_axis = np.array(c.twotheta_axis, dtype=float)
    polar_vector = np.array(c.polar_vector, dtype=float)
    spindle = np.array(c.spindle_vector, dtype=float)
    pivot = c.detector_pivot
    conv = c.convention
    if conv == "ADXV":
        if math.isnan(Xbeam):
            Xbeam = (detsize_f + pixel_size) / 2.0
        if math.isnan(Ybeam):
            Ybeam = (detsize_s - pixel_size) / 2.0
        beam, fdet, sdet, odet = [np.array(v, float) for v in ((0, 0, 1), (1, 0, 0), (0, -1, 0), (0, 0, 1))]
        twotheta_axis, polar_vector, spindle = [np.array(v, float) for v in ((-1, 0, 0), (1, 0, 0), (1, 0, 0))]
        Fbeam = Xbeam
        Sbeam = detsize_s - Ybeam
        pivot = "beam"
    elif conv in ("MOSFLM", "DENZO"):
        if math.isnan(Xbeam):
            Xbeam = (detsize_s + pixel_size) / 2.0
        if math.isnan(Ybeam):
            Ybeam = (detsize_f + pixel_size) / 2.0
        beam, odet, fdet, sdet = [np.array(v, float) for v in ((1, 0, 0), (1, 0, 0), (0, 0, 1), (0, -1, 0))]
        twotheta_axis, polar_vector, spindle = [np.array(v, float) for v in ((0, 0, -1), (0, 0, 1), (0, 0, 1))]
        half = 0.5 if conv == "MOSFLM" else 0.0
        Fbeam = Ybeam + half * pixel_size
        Sbeam = Xbeam + half * pixel_size
        pivot = "beam"
    elif conv == "XDS":
        if math.isnan(Xbeam):
            Xbeam = Xclose
        if math.isnan(Ybeam):
            Ybeam = Yclose
        beam, fdet, sdet, odet = [np.array(v, float) for v in ((0, 0, 1), (1, 0, 0), (0, 1, 0), (0, 0, 1))]
        twotheta_axis, polar_vector, spindle = [np.array(v, float) for v in ((1, 0, 0), (1, 0, 0), (1, 0, 0))]
        Fbeam, Sbeam = Xbeam, Ybeam
        pivot = "sample"
    elif conv == "DIALS":
        if math.isnan(Xbeam):
            Xbeam = Xclose
        if math.isnan(Ybeam):
            Ybeam = Yclose
        beam, fdet, sdet, odet = [np.array(v, float) for v in ((0, 0, 1), (1, 0, 0), (0, 1, 0), (0, 0, 1))]
        twotheta_axis, polar_vector, spindle = [np.array(v, float) for v in ((0, 1, 0), (0, 1, 0), (0, 1, 0))]
        Fbeam, Sbeam = Xbeam, Ybeam
        pivot = "sample"
    elif conv == "CUSTOM":
        if math.isnan(Xbeam):
            Xbeam = Xclose
        if math.isnan(Ybeam):
            Ybeam = Yclose
        Fbeam, Sbeam = Xbeam, Ybeam
        Fclose, Sclose = Xbeam, Ybeam
    else:
        raise ConfigError(f"unknown detector convention {conv!r}")
    if not parity and c.pivot_explicit is not None:
        # spec: an explicit -pivot is honoured whatever the convention
        pivot = c.pivot_explicit
    user_pix0 = None
    if not parity and c.pix0_vector is not None:
        user_pix0 = np.array(c.pix0_vector, dtype=float)

    beam, _ = unitize(beam)
    fdet, _ = unitize(fdet)
    sdet, _ = unitize(sdet)
    odet, omag = unitize(odet)
    if omag != 1.0:
        msgs.append("WARNING: auto-generating odet_vector")
        odet, _ = unitize(cross(fdet, sdet))
    polar_vector, _ = unitize(polar_vector)
    spindle, _ = unitize(spindle)
    vert_vector, _ = unitize(cross(beam, polar_vector))

    # ---- sampling: phi
    phi0, osc, phistep, phisteps = float(c.phi0), float(c.osc), float(c.phistep), int(c.phisteps)
    if phisteps < 0:
        if osc < 0.0:
            if phistep <= 0.0:
                phisteps, osc, phistep = 1, 0.0, 0.0
            else:
                osc, phisteps = phistep, 2
        else:
            if phistep <= 0.0:
                phisteps, phistep = 2, osc / 2.0
            else:
                phisteps = c_ceil_int(osc / phistep)
    else:
        if phisteps == 0:
            phisteps = 1
        if osc < 0.0:
            if phistep <= 0.0:
                osc = 1.0 / RTD
                phistep = osc / phisteps
            else:
                osc, phisteps = phistep, 2
        else:
            if phistep < 0.0:
                phistep = osc / phisteps

    hdivsteps, hdivrange, hdivstep = auto_steps(c.hdivsteps, c.hdivrange, c.hdivstep, 1.0)
    vdivsteps, vdivrange, vdivstep = auto_steps(c.vdivsteps, c.vdivrange, c.vdivstep, 1.0)
    dispsteps, dispersion, dispstep = auto_steps(c.dispsteps, c.dispersion, c.dispstep, 1.0)

    # detector thickness (note the 'range only' branch differs from the others)
    thick, thickstep, thicksteps = float(c.detector_thick), float(c.detector_thickstep), int(c.detector_thicksteps)
    if thicksteps <= 0:
        if thick < 0.0:
            if thickstep <= 0.0:
                thicksteps, thick, thickstep = 1, 0.0, 0.0
            else:
                thick, thicksteps = thickstep, 2
        else:
            if thickstep <= 0.0:
                thicksteps = 2
                thickstep = thick / thicksteps
            else:
                thicksteps = c_ceil_int(thick / thickstep)
    else:
        if thick < 0.0:
            if thickstep <= 0.0:
                thick = 0.5e-6
                thickstep = thick / thicksteps
            else:
                thick, thicksteps = thickstep, 2
        else:
            if thickstep <= 0.0:
                if thicksteps <= 1:
                    thicksteps = 2
                thickstep = thick / (thicksteps - 1)
    mu = float(c.detector_mu)
    if thick > 0.0 and mu < 0.0:
        mu = 1.0 / thick
        msgs.append(f"WARNING: setting detector attenuation depth to {mu:g} m")

    mosaic_spread, mosaic_domains = float(c.mosaic_spread), int(c.mosaic_domains)
    if mosaic_domains <= 0:
        if mosaic_spread < 0.0:
            mosaic_domains, mosaic_spread = 1, 0.0
        else:
            if mosaic_spread == 0.0:
                mosaic_domains = 1
            else:
                msgs.append("WARNING: finite mosaicity with only one domain! upping to 10 mosaic domains")
                mosaic_domains = 10
    else:
        if mosaic_spread < 0.0:
            msgs.append("WARNING: no mosaic spread specified.  setting mosaic_domains = 1")
            mosaic_spread, mosaic_domains = 0.0, 1
        elif mosaic_spread == 0.0:
            msgs.append("WARNING: zero mosaic spread specified.  setting mosaic_domains = 1")
            mosaic_domains = 1

    if hdivrange <= 0.0 or hdivstep <= 0.0 or hdivsteps <= 0:
        hdivsteps, hdivrange, hdivstep = 1, 0.0, 0.0
    if vdivrange <= 0.0 or vdivstep <= 0.0 or vdivsteps <= 0:
        vdivsteps, vdivrange, vdivstep = 1, 0.0, 0.0
    if dispersion <= 0.0 or dispstep <= 0.0 or dispsteps <= 0:
        dispsteps, dispersion, dispstep = 1, 0.0, 0.0
    if thick <= 0.0 or thickstep <= 0.0 or thicksteps <= 0:
        thicksteps, thick, thickstep = 1, 0.0, 0.0

    # ---- detector origin
    distance = float(c.distance)
    close_distance = float(c.close_distance)
    rx, ry, rz, twotheta = c.detector_rotx, c.detector_roty, c.detector_rotz, c.detector_twotheta
    rotated_o = rotate_xyz(odet, rx, ry, rz)
    ratio = dot(beam, rotated_o)
    if ratio == 0.0:
        raise ConfigError("impossible geometry: the beam runs parallel to the detector plane "
                          "(beam vector . detector normal = 0)")
    if math.isnan(close_distance):
        close_distance = abs(ratio * distance)
    distance = close_distance / ratio
    if not (math.isfinite(distance) and close_distance > 0.0) and user_pix0 is None:
        raise ConfigError(
            f"impossible detector geometry: the detector plane is {close_distance * 1000:g} mm from the sample "
            "along its normal (the beam runs parallel to it or the distance is not positive)"
        )

    pix0 = np.zeros(3)
    if user_pix0 is not None:
        pix0 = rotate_xyz(user_pix0, rx, ry, rz)
        pix0 = rotate_axis(pix0, twotheta_axis, twotheta)
    elif pivot == "sample":
        pix0 = np.array([
            -Fclose * fdet[i] - Sclose * sdet[i] + close_distance * odet[i] for i in range(3)
        ])
        pix0 = rotate_xyz(pix0, rx, ry, rz)
        pix0 = rotate_axis(pix0, twotheta_axis, twotheta)
    fdet = rotate_xyz(fdet, rx, ry, rz)
    sdet = rotate_xyz(sdet, rx, ry, rz)
    odet = rotate_xyz(odet, rx, ry, rz)
    fdet = rotate_axis(fdet, twotheta_axis, twotheta)
    sdet = rotate_axis(sdet, twotheta_axis, twotheta)
    odet = rotate_axis(odet, twotheta_axis, twotheta)
    if user_pix0 is None and pivot == "beam":
        pix0 = np.array([-Fbeam * fdet[i] - Sbeam * sdet[i] + distance * beam[i] for i in range(3)])

    Fclose = -dot(pix0, fdet)
    Sclose = -dot(pix0, sdet)
    close_distance = dot(pix0, odet)
    newv = np.array([close_distance / ratio * beam[i] - pix0[i] for i in range(3)])
    Fbeam = dot(fdet, newv)
    Sbeam = dot(sdet, newv)
    distance = close_distance / ratio
    if user_pix0 is not None:
        # spec: report the beam centre that the honoured origin implies
        Xbeam, Ybeam = Fbeam, Sbeam
    ORGX = Fclose / pixel_size + 0.5
    ORGY = Sclose / pixel_size + 0.5
    dials_origin = (
        1000.0 * dot(pix0, (0.0, 0.0, 1.0)),
        1000.0 * dot(pix0, (0.0, 1.0, 0.0)),
        1000.0 * dot(pix0, (-1.0, 0.0, 0.0)),
    )
    xds_beam = (dot(beam, fdet), dot(beam, sdet), dot(beam, odet))

    Na, Nb, Nc = float(c.Na), float(c.Nb), float(c.Nc)
    interpolate = int(c.interpolate)
    if interpolate > 1:
        if Na <= 2 or Nb <= 2 or Nc <= 2:
            msgs.append("auto-selected tricubic interpolation of structure factors")
            interpolate = 1
        else:
            msgs.append("auto-selected no interpolation")
            interpolate = 0

    # ---- crystal
    cellinfo = build_cell(c, msgs)
    a0, b0, c0 = cellinfo["a"], cellinfo["b"], cellinfo["c"]
    if sample_x > 0:
        Na = math.ceil(sample_x / a0[3])
    if sample_y > 0:
        Nb = math.ceil(sample_y / b0[3])
    if sample_z > 0:
        Nc = math.ceil(sample_z / c0[3])
    Na, Nb, Nc = max(Na, 1.0), max(Nb, 1.0), max(Nc, 1.0)
    xtal = (a0[3] * Na, b0[3] * Nb, c0[3] * Nc)
    xtalsize_max = max(xtal)
    reciprocal_pixel_size = c.lambda0 * distance / pixel_size
    ratio_os = 3.0 * xtalsize_max / reciprocal_pixel_size
    if not math.isfinite(ratio_os):
        raise ConfigError("impossible geometry: cannot choose an oversampling (infinite or undefined "
                          f"crystal size {xtalsize_max:g} m over reciprocal pixel {reciprocal_pixel_size:g} m)")
    recommended_oversample = c_ceil_int(ratio_os)
    if recommended_oversample <= 0:
        recommended_oversample = 1
    oversample = int(c.oversample)
    if oversample <= 0:
        oversample = recommended_oversample
        msgs.append(f"auto-selected {oversample}-fold oversampling")
    if oversample < recommended_oversample:
        msgs.append(f"WARNING: maximum dimension of sample is {xtalsize_max * 1e10:g} A")
        msgs.append(f"         but reciprocal pixel size is {reciprocal_pixel_size * 1e10:g} A")
        msgs.append("         intensity may vary significantly across a pixel!")
        msgs.append(f"         recommend -oversample {recommended_oversample} to work around this")
    msgs.extend(check_run(fpixels, spixels, source_count(c, hdivsteps * vdivsteps * dispsteps),
                          phisteps, mosaic_domains, oversample, thicksteps, roi))

    # ---- structure factors
    hkl = c.hkl
    if hkl is not None:
        fhkl = np.ascontiguousarray(hkl.F, dtype=np.float64)
        hrange = (hkl.h_min, hkl.h_max, hkl.k_min, hkl.k_max, hkl.l_min, hkl.l_max)
        hkls = int(hkl.hkls)
    else:
        fhkl = np.zeros((1, 1, 1))
        hrange = (0, 0, 0, 0, 0, 0)
        hkls = 0
    if hkls == 0:
        interpolate = 0

    # ---- sources
    sources, divsteps = build_sources(
        c, beam, polar_vector, vert_vector, hdivsteps, hdivrange, hdivstep,
        vdivsteps, vdivrange, vdivstep, dispsteps, dispersion, dispstep,
    )
    n_sources = sources.shape[0]
    if n_sources == 0:
        raise ConfigError("no X-ray sources to render (the divergence grid is empty)")

    # ---- mosaic domains
    from .rng import mosaic_umats_python

    umats = np.asarray(mosaic_umats_python(mosaic_spread, mosaic_domains, c.mosaic_seed), dtype=np.float64)
    umats = umats.reshape(mosaic_domains, 9)

    # ---- cell for each phi step and domain
    phis = [phi0 + phistep * t for t in range(phisteps)]
    cells, cells_first = rotated_cells(a0, b0, c0, spindle, phis, umats, mosaic_spread, parity)

    steps = n_sources * mosaic_domains * phisteps * oversample * oversample
    subpixel_size = pixel_size / oversample

    water_F, water_MW = 2.57, 18.0
    I_bg = water_F * water_F * R_E_SQR * fluence * c.water_size ** 3 * 1e6 * AVOGADRO / water_MW

    shape = {"square": P.SHAPE_SQUARE, "round": P.SHAPE_ROUND, "gauss": P.SHAPE_GAUSS,
             "tophat": P.SHAPE_TOPHAT}[c.xtal_shape]

    fp = np.zeros(P.FP_SIZE)
    fp[P.FP_FDET:P.FP_FDET + 3] = fdet
    fp[P.FP_SDET:P.FP_SDET + 3] = sdet
    fp[P.FP_ODET:P.FP_ODET + 3] = odet
    fp[P.FP_PIX0:P.FP_PIX0 + 3] = pix0
    fp[P.FP_BEAM:P.FP_BEAM + 3] = beam
    fp[P.FP_ASTAR:P.FP_ASTAR + 3] = cellinfo["a_star"][:3]
    fp[P.FP_BSTAR:P.FP_BSTAR + 3] = cellinfo["b_star"][:3]
    fp[P.FP_CSTAR:P.FP_CSTAR + 3] = cellinfo["c_star"][:3]
    fp[P.FP_PIXEL_SIZE] = pixel_size
    fp[P.FP_SUBPIXEL_SIZE] = subpixel_size
    fp[P.FP_DISTANCE] = distance
    fp[P.FP_CLOSE_DISTANCE] = close_distance
    fp[P.FP_THICKSTEP] = thickstep
    fp[P.FP_MU] = mu
    fp[P.FP_THICK] = thick
    fp[P.FP_DMIN] = c.dmin
    fp[P.FP_NA], fp[P.FP_NB], fp[P.FP_NC] = Na, Nb, Nc
    fp[P.FP_FUDGE] = c.fudge
    fp[P.FP_KAHN] = c.polarization
    fp[P.FP_I_BG] = I_bg
    fp[P.FP_WATER] = c.water_size
    fp[P.FP_DEFAULT_F] = c.default_F

    ip = np.zeros(P.IP_SIZE, dtype=np.int64)
    ip[P.IP_FPIXELS] = fpixels
    ip[P.IP_SPIXELS] = spixels
    ip[P.IP_OVERSAMPLE] = oversample
    ip[P.IP_THICKSTEPS] = thicksteps
    ip[P.IP_SOURCES] = n_sources
    ip[P.IP_PHISTEPS] = phisteps
    ip[P.IP_DOMAINS] = mosaic_domains
    ip[P.IP_CURVED] = int(c.curved_detector)
    ip[P.IP_POINT_PIXEL] = int(c.point_pixel)
    ip[P.IP_NOPOLAR] = int(c.nopolar)
    ip[P.IP_OS_THICK] = int(c.oversample_thick)
    ip[P.IP_OS_POLAR] = int(c.oversample_polar)
    ip[P.IP_OS_OMEGA] = int(c.oversample_omega)
    ip[P.IP_SHAPE] = shape
    ip[P.IP_INTERPOLATE] = interpolate
    ip[P.IP_H_MIN:P.IP_L_MAX + 1] = hrange
    ip[P.IP_HKLS] = hkls
    ip[P.IP_ROI_XMIN:P.IP_ROI_YMAX + 1] = roi
    ip[P.IP_HAS_MASK] = int(c.mask is not None)
    ip[P.IP_WEIGHT_ONCE] = 0 if parity else 1
    ip[P.IP_INTERP_PARITY] = 1 if parity else 0
    integer_cells = all(float(v).is_integer() for v in (Na, Nb, Nc))
    ip[P.IP_EXACT_SINCG] = 1 if (c.exact_math or not integer_cells) else 0

    if c.mask is not None:
        mask = np.ascontiguousarray(c.mask, dtype=np.uint16).reshape(-1)
        if mask.size != fpixels * spixels:
            raise ConfigError(
                f"mask has {mask.size} pixels but the detector has {fpixels} x {spixels}"
            )
    else:
        mask = np.ones(1, dtype=np.uint16)

    first_pixel_index = first_rendered_pixel(fpixels, spixels, roi, c.mask)
    info.update(
        fpixels=fpixels, spixels=spixels, detsize_f=detsize_f, detsize_s=detsize_s,
        pixel_size=pixel_size, distance=distance, close_distance=close_distance,
        Xbeam=Xbeam, Ybeam=Ybeam, Fbeam=Fbeam, Sbeam=Sbeam, Xclose=Xclose, Yclose=Yclose,
        Fclose=Fclose, Sclose=Sclose, ORGX=ORGX, ORGY=ORGY, dials_origin=dials_origin,
        xds_beam=xds_beam, pix0=pix0, fdet=fdet, sdet=sdet, odet=odet, beam=beam,
        polar_vector=polar_vector, spindle=spindle, twotheta_axis=twotheta_axis, pivot=pivot,
        convention=conv, fluence=fluence, flux=flux, exposure=exposure, beamsize=beamsize,
        lambda0=c.lambda0, dispersion=dispersion, dispsteps=dispsteps,
        hdivrange=hdivrange, hdivstep=hdivstep, vdivrange=vdivrange, vdivstep=vdivstep,
        divsteps=divsteps, phi0=phi0, osc=osc, phistep=phistep, phisteps=phisteps,
        mosaic_spread=mosaic_spread, mosaic_domains=mosaic_domains, umats=umats,
        oversample=oversample, thick=thick, thickstep=thickstep, thicksteps=thicksteps, mu=mu,
        Na=Na, Nb=Nb, Nc=Nc, xtalsize=xtal, interpolate=interpolate, hkls=hkls,
        twotheta=twotheta, first_pixel_index=first_pixel_index, I_bg=I_bg,
        sample=(sample_x, sample_y, sample_z), **{k: v for k, v in cellinfo.items()},
    )
    scale_factor = R_E_SQR * fluence / steps
    return Prepared(
        config=c, fp=fp, ip=ip, sources=sources, cells=cells, cells_first=cells_first,
        fhkl=fhkl, mask=mask, scale=scale_factor, steps=steps, fpixels=fpixels,
        spixels=spixels, roi=roi, info=info, messages=msgs,
    )


def first_rendered_pixel(fpixels, spixels, roi, mask):
    """Raster index of the first pixel the C loop renders (ROI and mask)."""
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


def build_cell(c: SimConfig, msgs: list) -> dict:
    """Real and reciprocal cell vectors as C builds them.

    Returns a dict with ``a``, ``b``, ``c`` (4-vectors: x, y, z in metres and
    magnitude) and ``a_star`` etc. in 1/Angstrom, plus printable cell values.
    """
    a_star = np.zeros(4)
    b_star = np.zeros(4)
    c_star = np.zeros(4)
    user_cell = c.cell_angstrom is not None
    if user_cell:
        a_len, b_len, c_len = (float(v) for v in c.cell_angstrom)
        alpha, beta, gamma = (float(v) for v in c.cell_angles)
        if b_len <= 0.0:
            b_len = a_len
        if c_len <= 0.0:
            c_len = a_len
        if alpha <= 0.0:
            alpha = math.pi / 2
        if beta <= 0.0:
            beta = math.pi / 2
        if gamma <= 0.0:
            gamma = math.pi / 2
        aavg = (alpha + beta + gamma) / 2
        skew = math.sin(aavg) * math.sin(aavg - alpha) * math.sin(aavg - beta) * math.sin(aavg - gamma)
        if skew < 0.0:
            skew = -skew
        V_cell = 2.0 * a_len * b_len * c_len * math.sqrt(skew)
        if V_cell <= 0.0:
            raise ConfigError(
                f"impossible unit cell: volume {V_cell:g} A^3 from -cell "
                f"{a_len:g} {b_len:g} {c_len:g} {alpha * RTD:g} {beta * RTD:g} {gamma * RTD:g}"
            )
        V_star = 1.0 / V_cell
        a_star[3] = b_len * c_len * math.sin(alpha) * V_star
        b_star[3] = c_len * a_len * math.sin(beta) * V_star
        c_star[3] = a_len * b_len * math.sin(gamma) * V_star
        cos_alpha_star = (math.cos(beta) * math.cos(gamma) - math.cos(alpha)) / (math.sin(beta) * math.sin(gamma))
        cos_beta_star = (math.cos(gamma) * math.cos(alpha) - math.cos(beta)) / (math.sin(gamma) * math.sin(alpha))
        cos_gamma_star = (math.cos(alpha) * math.cos(beta) - math.cos(gamma)) / (math.sin(alpha) * math.sin(beta))
        sin_gamma_star = c_len * V_star / a_star[3] / b_star[3]
        if sin_gamma_star > 1.0:
            sin_gamma_star = 1.0
        if sin_gamma_star < -1.0:
            sin_gamma_star = -1.0
        if cos_alpha_star * cos_alpha_star > 1.0:
            cos_alpha_star = 1.0
        if cos_beta_star * cos_beta_star > 1.0:
            cos_beta_star = 1.0
        if cos_gamma_star * cos_gamma_star > 1.0:
            cos_gamma_star = 1.0
        a_star[0] = a_star[3]
        b_star[0] = b_star[3] * cos_gamma_star
        c_star[0] = c_star[3] * cos_beta_star
        a_star[1] = 0.0
        b_star[1] = b_star[3] * sin_gamma_star
        c_star[1] = c_star[3] * (cos_alpha_star - cos_beta_star * cos_gamma_star) / sin_gamma_star
        a_star[2] = 0.0
        b_star[2] = 0.0
        c_star[2] = c_star[3] * V_cell / (a_len * b_len * c_len * sin_gamma_star)
        cell_lengths = (a_len, b_len, c_len)
    if c.a_matrix is not None:
        m = np.asarray(c.a_matrix, dtype=float)
        # rows of the file: (a*_i, b*_i, c*_i) for i = x, y, z
        for i in range(3):
            a_star[i], b_star[i], c_star[i] = m[i, 0], m[i, 1], m[i, 2]
        s = 1e-10 / c.lambda0
        for v in (a_star, b_star, c_star):
            v[:3] = [s * v[0], s * v[1], s * v[2]]
            v[3] = magnitude(v)
    if not user_cell and c.a_matrix is None:
        raise ConfigError("no crystal: give -cell a b c alpha beta gamma or -mat A.mat")

    misset = c.misset
    if c.misset_random:
        from .orientation import misset_random_umat
        from .rng import umat2misset_python as umat2misset

        umat = misset_random_umat(c.misset_seed, parity=(c.mode == "parity"))
        misset = umat2misset(umat)
        msgs.append(
            "random orientation misset angles: %f %f %f deg"
            % (misset[0] * RTD, misset[1] * RTD, misset[2] * RTD)
        )
    if misset is not None:
        for v in (a_star, b_star, c_star):
            v[:3] = rotate_xyz(v[:3], misset[0], misset[1], misset[2])

    a_star[3] = magnitude(a_star)
    b_star[3] = magnitude(b_star)
    c_star[3] = magnitude(c_star)
    a_x_b = cross(a_star, b_star)
    b_x_c = cross(b_star, c_star)
    c_x_a = cross(c_star, a_star)
    V_star = dot(a_star, b_x_c)
    if user_cell:
        b_x_c = rescale(b_x_c, cell_lengths[0] / V_cell)
        c_x_a = rescale(c_x_a, cell_lengths[1] / V_cell)
        a_x_b = rescale(a_x_b, cell_lengths[2] / V_cell)
        V_star = 1.0 / V_cell
    if V_star == 0.0 or not math.isfinite(V_star):
        raise ConfigError("the orientation matrix is singular (zero reciprocal-cell volume)")
    V_cell = 1.0 / V_star
    a = scale(b_x_c, V_cell)
    b = scale(c_x_a, V_cell)
    cc = scale(a_x_b, V_cell)
    a_star3 = scale(cross(a, b), V_star)  # c_star
    b_star3 = scale(cross(cc, a), V_star)
    a_star2 = scale(cross(b, cc), V_star)
    a_star, b_star, c_star = a_star2, b_star3, a_star3
    am, bm, cm = magnitude(a), magnitude(b), magnitude(cc)
    cos_alpha = dot(b, cc) / bm / cm
    cos_beta = dot(a, cc) / am / cm
    cos_gamma = dot(a, b) / am / bm
    sin_alpha = magnitude(a_star) * V_cell / bm / cm
    sin_beta = magnitude(b_star) * V_cell / am / cm
    sin_gamma = magnitude(c_star) * V_cell / am / bm
    angles = tuple(
        math.atan2(min(max(s_, -1.0), 1.0), co if co * co <= 1.0 else 1.0) * RTD
        for s_, co in ((sin_alpha, cos_alpha), (sin_beta, cos_beta), (sin_gamma, cos_gamma))
    )
    a_m, b_m, c_m = scale(a, 1e-10), scale(b, 1e-10), scale(cc, 1e-10)
    out = {
        "a": np.append(a_m, magnitude(a_m)),
        "b": np.append(b_m, magnitude(b_m)),
        "c": np.append(c_m, magnitude(c_m)),
        "a_star": np.append(a_star, magnitude(a_star)),
        "b_star": np.append(b_star, magnitude(b_star)),
        "c_star": np.append(c_star, magnitude(c_star)),
        "cell_A": (am, bm, cm) + angles,
        "V_cell": V_cell,
        "misset_used": misset,
    }
    return out


def build_sources(c, beam, polar_vector, vert_vector, hdivsteps, hdivrange, hdivstep,
                  vdivsteps, vdivrange, vdivstep, dispsteps, dispersion, dispstep):
    """Source table, shape (n, ``physics.SRC_SIZE``).

    Each row: unit vector from the sample to the source, wavelength, and the
    source's polarization frame (:func:`nbnumba.physics.polarization_basis`).
    """
    rows = []
    divsteps = 0
    if c.source_table is not None and len(c.source_table) > 0:
        tab = np.array(c.source_table, dtype=float)
        for r in tab:
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
    else:
        lambda0 = c.lambda0
        for hdiv_tic in range(hdivsteps):
            for vdiv_tic in range(vdivsteps):
                hdiv = hdivstep * hdiv_tic - hdivrange / 2.0
                vdiv = vdivstep * vdiv_tic - vdivrange / 2.0
                if c.round_div:
                    with np.errstate(divide="ignore", invalid="ignore"):
                        h_term = hdiv * hdiv - hdivstep * hdivstep / 4.0 * (1 - hdivsteps % 2)
                        v_term = vdiv * vdiv - vdivstep * vdivstep / 4.0 * (1 - vdivsteps % 2)
                        # numpy scalars: a zero range gives inf/nan (as in C), not an exception
                        test = np.float64(h_term) / np.float64(hdivrange) / hdivrange
                        test += np.float64(v_term) / np.float64(vdivrange) / vdivrange
                    if test * 4.0 > 1.1:
                        continue
                divsteps += 1
                v = np.array([-c.source_distance * beam[i] for i in range(3)])
                nv = rotate_axis(v, polar_vector, vdiv)
                v = rotate_axis(nv, vert_vector, hdiv)
                for disp_tic in range(dispsteps):
                    lam = lambda0 * (1.0 + dispstep * disp_tic - dispersion / 2.0)
                    rows.append((v[0], v[1], v[2], lam))
    out = np.zeros((len(rows), P.SRC_SIZE))
    px, py, pz = (float(v) for v in polar_vector)
    for i, (x, y, z, lam) in enumerate(rows):
        u, _ = unitize((x, y, z))
        out[i, P.SRC_DIR:P.SRC_DIR + 3] = u
        out[i, P.SRC_LAMBDA] = lam
        out[i, P.SRC_INCIDENT:] = P.polarization_basis(float(u[0]), float(u[1]), float(u[2]), px, py, pz)
    return out, divsteps


def rotated_cells(a0, b0, c0, spindle, phis, umats, mosaic_spread, parity):
    """Cell vectors for every (phi step, mosaic domain).

    Returns ``cells`` and ``cells_first``.  In spec mode both are the cell
    rotated by each phi.  In parity mode a phi of exactly 0 reuses the
    previous rotation, as C does: within a sweep that is the previous step's
    rotation; at the start of a sweep it is the last rotation of the
    previous sweep (``cells``) or, for the very first sweep of the run, the
    unrotated cell (``cells_first``).
    """
    nphi = len(phis)
    ndom = umats.shape[0]

    def rot(phi):
        return [rotate_axis(v[:3], spindle, phi) for v in (a0, b0, c0)]

    base = [np.array(v[:3]) for v in (a0, b0, c0)]
    fresh = [rot(p) if p != 0.0 else None for p in phis]

    def sweep(entry):
        out = []
        cur = entry
        for t in range(nphi):
            if fresh[t] is not None or not parity:
                cur = fresh[t] if fresh[t] is not None else base
            out.append(cur)
        return out

    first = sweep(base)
    steady = sweep(first[-1]) if parity else first
    cells = np.zeros((nphi, ndom, 9))
    cells_first = np.zeros((nphi, ndom, 9))
    for target, src in ((cells, steady), (cells_first, first)):
        for t in range(nphi):
            ap, bp, cp = src[t]
            for m in range(ndom):
                if mosaic_spread > 0.0:
                    u = umats[m]
                    vecs = (rotate_umat(ap, u), rotate_umat(bp, u), rotate_umat(cp, u))
                else:
                    vecs = (ap, bp, cp)
                target[t, m, :] = np.concatenate(vecs)
    return cells, cells_first
