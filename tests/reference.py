"""A slow, independent reference for the intensity of single pixels.

Plain numpy, written from the physics of nanoBragg's Spec A (not from the
package's kernels): it takes the resolved detector geometry (``pix0``,
``fdet``, ``sdet``, ``odet``, beam and polarization axes, ...) and the
unrotated real-space cell from :func:`nbnumba.prepare.prepare`, and computes
everything else itself:

* sub-pixel position ``P = pix0 + Fdet f + Sdet s + depth o`` and the
  diffracted unit vector ``d = P / |P|``;
* the sampling grid: detector layers, sub-pixels, wavelengths of the
  dispersion, spindle steps (rotation about the spindle axis) and mosaic
  domains (rotation matrices drawn by the package's RNG, applied after the
  spindle rotation);
* scattering vector ``q = (d - i) / lambda`` with ``i`` the beam direction;
* fractional Miller indices ``h = a . q`` etc., the nearest lattice point
  ``ceil(x - 0.5)``, the grating lattice factor
  ``prod sin(N pi x) / sin(pi x)`` of a parallelepiped crystal and the
  structure factor of the nearest lattice point (``default_F`` off the grid);
* the Kahn polarization factor, the pixel solid angle
  ``pixel^2 / R^2 * close_distance / R`` and the layer capture fraction;
* the scale ``r_e^2 * fluence / steps``.

Corrections not recomputed per sub-pixel (no ``-oversample_omega`` etc.)
are those of the first sub-pixel of the pixel (polarization, solid angle) or
of the first sub-pixel of the last layer (capture fraction), which is the
value the C program holds when it applies them.  With the oversample flags,
each contribution is weighted by its own sub-pixel's factor (spec mode).

Only what the tests here need is supported: a single beam direction (no
divergence, no source file), the square crystal shape, nearest-neighbour
structure factors (no interpolation), flat detector, spec-mode semantics.
"""

from __future__ import annotations

import math

import numpy as np

R_E_SQR = 7.94079248018965e-30  # classical electron radius squared, m^2


def _unit(v):
    v = np.asarray(v, dtype=np.float64)
    n = math.sqrt(float(v @ v))
    return v / n if n > 0 else v


def rotation_matrix(axis, angle):
    """Right-handed rotation by ``angle`` (rad) about unit ``axis``."""
    u = _unit(axis)
    ux = np.array([[0.0, -u[2], u[1]], [u[2], 0.0, -u[0]], [-u[1], u[0], 0.0]])
    return math.cos(angle) * np.eye(3) + math.sin(angle) * ux + (1.0 - math.cos(angle)) * np.outer(u, u)


def sincg(x, n):
    """sin(n x) / sin(x), equal to n at x = 0."""
    if x == 0.0:
        return float(n)
    return math.sin(n * x) / math.sin(x)


def kahn_polarization(kahn, incident, diffracted, polar_axis):
    """0.5 (1 + cos^2 2theta - K cos(2 psi) sin^2 2theta)."""
    i = _unit(incident)
    d = _unit(diffracted)
    p = _unit(polar_axis)
    cos2t = float(i @ d)
    sin2t_sqr = 1.0 - cos2t * cos2t
    b_in = _unit(np.cross(p, i))
    e_in = _unit(np.cross(i, b_in))
    psi = -math.atan2(float(d @ b_in), float(d @ e_in))
    return 0.5 * (1.0 + cos2t * cos2t - kahn * math.cos(2.0 * psi) * sin2t_sqr)


def structure_factor(config, h0, k0, l0):
    """F of the nearest lattice point; default_F outside the HKL grid."""
    grid = config.hkl
    if grid is not None and grid.hkls:
        if (grid.h_min <= h0 <= grid.h_max and grid.k_min <= k0 <= grid.k_max
                and grid.l_min <= l0 <= grid.l_max):
            return float(grid.F[h0 - grid.h_min, k0 - grid.k_min, l0 - grid.l_min])
    return float(config.default_F)


def crystal_orientations(prepared):
    """Real-space cell (3x3, rows a, b, c in metres) for every (phi, domain)."""
    xtal, samp = prepared.crystal, prepared.sampling
    cell0 = np.array([xtal.cell.a[:3], xtal.cell.b[:3], xtal.cell.c[:3]], dtype=np.float64)
    mosaic = xtal.mosaic_spread > 0.0
    out = []
    for t in range(samp.phisteps):
        phi = samp.phi0 + t * samp.phistep
        rot = rotation_matrix(xtal.spindle, phi)
        rotated = cell0 @ rot.T  # each row rotated
        for m in range(xtal.mosaic_domains):
            if mosaic:
                u = np.asarray(xtal.umats[m], dtype=np.float64).reshape(3, 3)
                out.append(rotated @ u.T)
            else:
                out.append(rotated)
    return out


def wavelengths(prepared):
    """Wavelengths of the dispersion grid (auto-selected step)."""
    beam = prepared.beam
    lam0 = beam.lambda0
    n = beam.dispsteps
    disp = beam.dispersion
    if n <= 1 or disp <= 0.0:
        return [lam0]
    step = disp / (n - 1)
    return [lam0 * (1.0 + step * t - disp / 2.0) for t in range(n)]


def check_supported(prepared):
    """Fail loudly on a configuration this reference does not model."""
    c = prepared.config
    beam = prepared.beam
    problems = []
    if c.source_table is not None:
        problems.append("source file")
    if beam.divsteps > 1 or beam.hdivrange > 0 or beam.vdivrange > 0:
        problems.append("beam divergence")
    if c.xtal_shape != "square":
        problems.append(f"crystal shape {c.xtal_shape}")
    if prepared.crystal.interpolate:
        problems.append("structure-factor interpolation")
    if c.curved_detector:
        problems.append("curved detector")
    if c.water_size != 0.0:
        problems.append("water background")
    if c.dmin > 0.0:
        problems.append("dmin cut")
    if c.mode != "spec":
        problems.append("parity mode")
    if problems:
        raise NotImplementedError("reference does not model: " + ", ".join(problems))


def pixel_value(prepared, fpixel: int, spixel: int) -> float:
    """Photons in pixel (fast, slow), computed from scratch."""
    check_supported(prepared)
    c = prepared.config
    det, samp, xtal = prepared.detector, prepared.sampling, prepared.crystal
    pix0 = np.asarray(det.pix0, dtype=np.float64)
    f = np.asarray(det.fdet, dtype=np.float64)
    s = np.asarray(det.sdet, dtype=np.float64)
    o = np.asarray(det.odet, dtype=np.float64)
    beam = _unit(prepared.beam.direction)
    polar_axis = prepared.beam.polar_vector
    pixel = det.pixel_size
    close_distance = det.close_distance
    n_os = samp.oversample
    n_layers = samp.thicksteps
    dz = samp.thickstep
    mu = samp.mu
    thick = samp.thick
    Na, Nb, Nc = xtal.Na, xtal.Nb, xtal.Nc

    cells = crystal_orientations(prepared)
    lams = wavelengths(prepared)
    steps = len(lams) * len(cells) * n_os * n_os
    assert steps == prepared.steps, (steps, prepared.steps)

    total = 0.0
    first_omega = first_polar = None
    capture = 1.0
    for layer in range(n_layers):
        depth = layer * dz
        layer_capture = None
        for sub_s in range(n_os):
            for sub_f in range(n_os):
                fdet = (fpixel + (sub_f + 0.5) / n_os) * pixel
                sdet = (spixel + (sub_s + 0.5) / n_os) * pixel
                P = pix0 + fdet * f + sdet * s + depth * o
                R = math.sqrt(float(P @ P))
                d = P / R
                omega = 1.0 / R**2 if c.point_pixel else pixel * pixel / R**2 * close_distance / R
                if thick > 0.0:
                    rho = float(d @ o)
                    cap = math.exp(-layer * dz * mu / rho) - math.exp(-(layer + 1) * dz * mu / rho)
                else:
                    cap = 1.0
                polar = 1.0 if c.nopolar else kahn_polarization(c.polarization, beam, d, polar_axis)
                if first_omega is None:
                    first_omega, first_polar = omega, polar
                if layer_capture is None:
                    layer_capture = cap
                weight = 1.0
                if c.oversample_thick:
                    weight *= cap
                if c.oversample_polar:
                    weight *= polar
                if c.oversample_omega:
                    weight *= omega
                for lam in lams:
                    q = (d - beam) / lam
                    for abc in cells:
                        h, k, l = abc @ q
                        f_latt = sincg(math.pi * h, Na) * sincg(math.pi * k, Nb) * sincg(math.pi * l, Nc)
                        h0, k0, l0 = (int(math.ceil(x - 0.5)) for x in (h, k, l))
                        F = structure_factor(c, h0, k0, l0)
                        total += weight * F * F * f_latt * f_latt
        capture = layer_capture
    value = R_E_SQR * prepared.beam.fluence / steps * total
    if not c.oversample_thick:
        value *= capture
    if not c.oversample_polar:
        value *= first_polar
    if not c.oversample_omega:
        value *= first_omega
    return value
