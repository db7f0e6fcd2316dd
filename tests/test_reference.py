"""The kernels against the independent plain-numpy reference (tests/reference.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from reference import kahn_polarization, pixel_value, rotation_matrix, sincg
from tolerances import FLOAT32_STORAGE_RTOL, REFERENCE_ATOL, REFERENCE_RTOL

from nbnumba.config import SimConfig
from nbnumba.engine import simulate
from nbnumba.io.hkl import read_hkl
from nbnumba.prepare import prepare

DEG = math.pi / 180.0


def _base(**kw):
    cfg = dict(mode="spec", cell_angstrom=(100.0, 100.0, 100.0), default_F=100.0, Na=5, Nb=5, Nc=5,
               lambda0=6.2e-10, distance=0.1, pixel_size=0.5e-3, fpixels=20, spixels=18, oversample=1)
    cfg.update(kw)
    return SimConfig(**cfg)


def _hkl_config(tmp_path):
    text = "\n".join(f"{h} {k} {l} {10 + 3 * h + 5 * k - 2 * l + (h * k) % 7}"
                     for h in range(-3, 4) for k in range(-3, 4) for l in range(-2, 3))
    path = tmp_path / "small.hkl"
    path.write_text(text + "\n")
    grid = read_hkl(str(path), default_F=0.0)
    return _base(hkl=grid, default_F=7.0, interpolate=0, cell_angstrom=(70.0, 80.0, 90.0),
                 cell_angles=(75 * DEG, 85 * DEG, 95 * DEG), lambda0=1.0e-10, pixel_size=1.0e-3)


CONFIGS = {
    "cubic": lambda tmp: _base(),
    "triclinic_misset": lambda tmp: _base(cell_angstrom=(70.0, 80.0, 90.0), cell_angles=(75 * DEG, 85 * DEG, 95 * DEG),
                                          misset=(10 * DEG, 20 * DEG, 30 * DEG), lambda0=1.0e-10, pixel_size=1.0e-3),
    "polar_kahn": lambda tmp: _base(polarization=0.95, distance=0.06, detector_rotz=0.0),
    "nopolar_point_pixel": lambda tmp: _base(nopolar=True, point_pixel=True),
    "oversample2": lambda tmp: _base(oversample=2, polarization=0.5),
    "oversample2_flags": lambda tmp: _base(oversample=2, oversample_omega=True, oversample_polar=True,
                                           polarization=0.5),
    "phi_steps_from_zero": lambda tmp: _base(phi0=0.0, osc=3 * DEG, phisteps=3, cell_angstrom=(70.0, 80.0, 90.0),
                                             lambda0=1.0e-10, pixel_size=1.0e-3),
    "mosaic": lambda tmp: _base(mosaic_spread=0.8 * DEG, mosaic_domains=4, mosaic_seed=-42,
                                cell_angstrom=(70.0, 80.0, 90.0), lambda0=1.0e-10, pixel_size=1.0e-3),
    "dispersion": lambda tmp: _base(dispersion=0.04, dispsteps=3),
    "thickness": lambda tmp: _base(detector_thick=450e-6, detector_mu=1.0 / 300e-6, detector_thicksteps=3,
                                   detector_rotx=20 * DEG),
    "thickness_oversample_thick": lambda tmp: _base(detector_thick=450e-6, detector_mu=1.0 / 300e-6,
                                                    detector_thicksteps=3, detector_rotx=20 * DEG,
                                                    oversample=2, oversample_thick=True),
    "rotated_twotheta": lambda tmp: _base(detector_rotx=5 * DEG, detector_roty=3 * DEG, detector_rotz=2 * DEG,
                                          detector_twotheta=10 * DEG),
    "hkl_nearest": _hkl_config,
}


def _pixels(image):
    """Corner, centre, a few scattered pixels and the brightest pixel."""
    s, f = image.shape
    peak = np.unravel_index(int(np.argmax(image)), image.shape)
    picks = [(0, 0), (s // 2, f // 2), (s - 1, f - 1), (3, f - 4), (int(peak[0]), int(peak[1]))]
    return list(dict.fromkeys(picks))


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_kernel_matches_reference(name, backend, tmp_path):
    cfg = CONFIGS[name](tmp_path)
    result = simulate(cfg, backend=backend, tile_pixels=97)
    image = result.image
    pixels = _pixels(image)
    peak = np.unravel_index(int(np.argmax(image)), image.shape)
    # the brightest pixel must really be on a Bragg peak: far above the median
    assert image[peak] > 20.0 * float(np.median(image)) > 0.0
    prep = prepare(cfg)
    for sp, fp in pixels:
        ref = pixel_value(prep, fp, sp)
        assert ref > 0.0
        got = float(image[sp, fp])
        # the kernel's double-precision value (within REFERENCE_RTOL of the reference)
        # is stored rounded to single precision (at most half a float32 ulp away)
        limit = (FLOAT32_STORAGE_RTOL + REFERENCE_RTOL) * ref + REFERENCE_ATOL
        assert abs(got - ref) <= limit, f"{name} {backend} pixel fast={fp} slow={sp}: {got!r} vs reference {ref!r}"


def test_reference_detects_a_wrong_kernel_input():
    """The reference must disagree when the physics changes (a kernel that ignored
    the polarization factor would be caught)."""
    cfg = _base(polarization=0.95)
    prep_pol = prepare(cfg)
    prep_unpol = prepare(_base(polarization=0.0))
    img = simulate(cfg).image
    sp, fp = 2, 17
    assert float(img[sp, fp]) == pytest.approx(pixel_value(prep_pol, fp, sp), rel=1e-6)
    assert float(img[sp, fp]) != pytest.approx(pixel_value(prep_unpol, fp, sp), rel=1e-4)


# ---- the reference's own building blocks, against values worked out by hand

def test_sincg_limits():
    assert sincg(0.0, 5) == 5.0
    assert sincg(math.pi * 1e-9, 5) == pytest.approx(5.0, rel=1e-12)
    # sin(5 pi/2)/sin(pi/2) = 1
    assert sincg(math.pi / 2, 5) == pytest.approx(1.0, abs=1e-15)
    assert sincg(math.pi / 5, 5) == pytest.approx(0.0, abs=1e-15)


def test_kahn_polarization_textbook_values():
    i = np.array([1.0, 0.0, 0.0])
    p = np.array([0.0, 0.0, 1.0])
    # 90 degree scattering in the plane containing E: fully suppressed for K=1
    assert kahn_polarization(1.0, i, np.array([0.0, 0.0, 1.0]), p) == pytest.approx(0.0, abs=1e-15)
    # 90 degree scattering perpendicular to E: 1 for K=1
    assert kahn_polarization(1.0, i, np.array([0.0, 1.0, 0.0]), p) == pytest.approx(1.0, abs=1e-15)
    # unpolarized: (1 + cos^2 2theta) / 2
    d = np.array([math.cos(0.3), math.sin(0.3), 0.0])
    assert kahn_polarization(0.0, i, d, p) == pytest.approx(0.5 * (1 + math.cos(0.3) ** 2), rel=1e-15)


def test_rotation_matrix_right_handed():
    r = rotation_matrix([0.0, 0.0, 1.0], math.pi / 2)
    np.testing.assert_allclose(r @ [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], atol=1e-15)
