"""Spec A, Sampling, Absorption, Polarization, Background & Noise:
AT-SAM-001..003, AT-ABS-001, AT-POL-001, AT-BKG-001, AT-NOISE-001 (spec mode unless noted).

With ``-N 1`` the lattice factor is 1 everywhere and with ``-default_F F``
the structure factor is F, so a pixel is exactly
``r_e^2 fluence F^2 * (corrections)``: the tests compare that with the
corrections of Spec A recomputed in numpy (:class:`speca_util.Geometry`).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from speca_util import (  # noqa: F401
    AVOGADRO,
    R_E_SQR,
    Geometry,
    differs,
    first,
    image,
    in_tmp,
    last,
    needs_golden,
    pinfo,
    poisson_image,
    prep,
    sim,
)

pytestmark = pytest.mark.usefixtures("in_tmp")

FLAT = "-default_F 100 -cell 100 100 100 90 90 90 -lambda 1 -N 1 -detpixels 16 -pixel 0.5 -distance 20"


def _base(result, F=100.0):
    return R_E_SQR * pinfo(result.prepared)["fluence"] * F * F


def test_at_sam_001_steps_normalization():
    args = "-default_F 100 -cell 70 80 90 75 85 95 -lambda 1 -N 5 -detpixels 32 -pixel 0.1 -distance 100 -oversample 1"
    one = sim(args + " -phi 0 -osc 0 -phisteps 1")
    two = sim(args + " -phi 0 -osc 0 -phisteps 2")
    assert two.prepared.steps == 2 * one.prepared.steps == 2
    assert one.image.max() > 0
    np.testing.assert_allclose(two.image, one.image, rtol=1e-6)


SAM_002 = [
    pytest.param("last", marks=differs(
        "Spec A: the final scale uses the last computed omega and polarization, and its loop computes them per "
        "sub-pixel (so the last sub-pixel's); C computes them once, at the first sub-pixel of a pixel, and "
        "nbnumba keeps that in both modes (docs/quirks.md, 'Same in both modes')"), id="last-subpixel"),
    pytest.param("not-average", id="one-subpixel-value-not-the-average"),
    pytest.param("oversample-flags", id="per-subpixel-with-oversample_omega-polar"),
]


@pytest.mark.parametrize("case", SAM_002)
def test_at_sam_002_oversample_last_value(case):
    args = FLAT + " -oversample 2"
    if case == "oversample-flags":
        r = sim(args + " -oversample_omega -oversample_polar")
        g = Geometry(r.prepared)
        # spec mode weights each contribution once (docs/quirks.md row 2)
        expected = _base(r) * (g.omega * g.polar(0.0)).mean(axis=(2, 3))
        np.testing.assert_allclose(r.image, expected, rtol=1e-6)
        return
    r = sim(args)
    g = Geometry(r.prepared)
    omega, polar = g.omega, g.polar(0.0)
    if case == "last":
        np.testing.assert_allclose(r.image, _base(r) * last(omega) * last(polar), rtol=1e-6)
    else:
        np.testing.assert_allclose(r.image, _base(r) * first(omega) * first(polar), rtol=1e-6)
        average = _base(r) * omega.mean(axis=(2, 3)) * polar.mean(axis=(2, 3))
        assert np.max(np.abs(r.image / average - 1)) > 1e-3


THICK = FLAT + " -oversample 1 -nopolar -detector_thick 450 -detector_abs 300 -thicksteps 3 -detector_rotx 20"


def _capture(prepared, layer, dz):
    g = Geometry(prepared, layer=layer, layer_step=dz)
    mu = pinfo(prepared)["mu"]
    rho = first(g.parallax)
    return np.exp(-layer * dz * mu / rho) - np.exp(-(layer + 1) * dz * mu / rho), rho


@pytest.mark.parametrize("layer_step", [
    pytest.param("spec", marks=differs(
        "Spec A takes the layer step as thickness/thicksteps (layers summing to 1 - exp(-thickness mu/rho)); "
        "C, and nbnumba in both modes, use thickness/(thicksteps - 1) when -thicksteps is given, so the "
        "layers reach one step deeper than the sensor")),
    pytest.param("c", id="c-layer-step"),
])
def test_at_abs_001_detector_absorption_layers(layer_step):
    r = sim(THICK)
    info = pinfo(r.prepared)
    n, thick = info["thicksteps"], 450e-6
    dz = thick / n if layer_step == "spec" else thick / (n - 1)
    # each layer's fraction with the parallax rho = d.o of that layer's detector point
    captures = [_capture(r.prepared, t, dz)[0] for t in range(n)]
    omega = first(Geometry(r.prepared, layer=0).omega)  # omega of the first sub-pixel of the first layer
    # without -oversample_thick: every layer adds F^2, the sum is scaled by the last layer's fraction
    np.testing.assert_allclose(r.image, _base(r) * n * captures[-1] * omega, rtol=1e-6)
    # with -oversample_thick: each layer's term carries its own fraction (spec mode: weighted once)
    r2 = sim(THICK + " -oversample_thick")
    np.testing.assert_allclose(r2.image, _base(r2) * sum(captures) * omega, rtol=1e-6)


def test_at_sam_003_dmin_culling():
    args = FLAT + " -oversample 1 -distance 10"
    r = sim(args + " -dmin 2.2")
    full = image(args)
    g = Geometry(r.prepared)
    d_spacing = 0.5 / first(g.stol) * 1e10  # Angstrom
    assert full.min() > 0
    culled = d_spacing < 2.2
    assert 0 < culled.sum() < culled.size
    away = np.abs(d_spacing - 2.2) > 1e-6
    assert np.all(r.image[culled & away] == 0)
    np.testing.assert_array_equal(r.image[~culled & away], full[~culled & away])


POL = FLAT + " -oversample 2 -detector_rotz 3"


@pytest.mark.parametrize("case", ["kahn", "nopolar", "oversample_polar-spec", "oversample_polar-parity"])
def test_at_pol_001_kahn_factor_and_toggles(case):
    if case == "kahn":
        r = sim(POL + " -polar 0.6")
        g = Geometry(r.prepared)
        # psi is not trivial on this detector: the K term matters
        assert np.ptp(np.cos(2 * np.arctan2(*np.moveaxis(first(g.d)[..., 1:], -1, 0)))) > 0.5
        np.testing.assert_allclose(r.image, _base(r) * first(g.omega) * first(g.polar(0.6)), rtol=1e-6)
    elif case == "nopolar":
        r = sim(POL + " -polar 0.6 -nopolar")
        g = Geometry(r.prepared)
        np.testing.assert_allclose(r.image, _base(r) * first(g.omega), rtol=1e-6)
    elif case == "oversample_polar-spec":
        r = sim(POL + " -polar 0.6 -oversample_polar")
        g = Geometry(r.prepared)
        # spec mode: each sub-pixel's term weighted once by its own factor (docs/quirks.md row 2)
        np.testing.assert_allclose(r.image, _base(r) * first(g.omega) * g.polar(0.6).mean(axis=(2, 3)),
                                   rtol=1e-6)
    else:
        r = sim(POL + " -polar 0.6 -oversample_polar", mode="parity")
        g = Geometry(r.prepared)
        P = g.polar(0.6)
        running = np.zeros(P.shape[:2])
        for s in range(2):  # C: the running sum is multiplied by each sub-pixel's factor
            for f in range(2):
                running = (running + 1.0) * P[:, :, s, f]
        np.testing.assert_allclose(r.image, _base(r) * first(g.omega) * running / 4, rtol=1e-6)


def test_at_bkg_001_water_background():
    args = "-default_F 1 -cell 100 100 100 90 90 90 -lambda 1 -N 1 -detpixels 16 -pixel 0.5 -distance 20 " \
           "-oversample 1 -water 80"
    r = sim(args, default_F=0.0)
    info = pinfo(r.prepared)
    fluence = info["fluence"]
    I_bg = 2.57 ** 2 * R_E_SQR * fluence * (80e-6) ** 3 * 1e6 * AVOGADRO / 18.0
    assert info["I_bg"] == pytest.approx(I_bg, rel=1e-12)
    g = Geometry(r.prepared)
    expected = R_E_SQR * fluence * I_bg / r.prepared.steps * first(g.omega) * first(g.polar(0.0))
    np.testing.assert_allclose(r.image, expected, rtol=1e-6)


def test_at_noise_001_noise_regimes_and_seeds():
    img = np.concatenate([np.full((40, 50), 5.0), np.full((40, 50), 900.0), np.full((40, 50), 2.0e6)]).astype(
        np.float32)
    noise, photons, overloads = poisson_image(img, None, -1234, adc_offset=40.0)
    small, mid, big = (noise[i * 40:(i + 1) * 40].astype(float) - 40 for i in range(3))
    n = small.size
    # exact Poisson below 12: mean and variance both 5 (4 sigma of the sample mean)
    assert abs(small.mean() - 5) < 4 * math.sqrt(5 / n)
    assert abs(small.var() - 5) < 0.5
    assert np.all(small == np.round(small))
    # rejection sampling up to 1e6: mean and variance 900
    assert abs(mid.mean() - 900) < 4 * math.sqrt(900 / n)
    assert abs(mid.var() / 900 - 1) < 0.1
    # above 1e6 (Gaussian approximation) every pixel overflows: clipped and counted
    assert np.all(noise[80:] == 65535)
    assert overloads == big.size
    assert photons > 2.0e6 * big.size * 0.99
    again, _, _ = poisson_image(img, None, -1234, adc_offset=40.0)
    np.testing.assert_array_equal(again, noise)
    other, _, _ = poisson_image(img, None, -4321, adc_offset=40.0)
    assert not np.array_equal(other, noise)


@needs_golden
@pytest.mark.parametrize("name", ["noise_levels", "cubic_outputs"])
def test_at_noise_001_noise_image_matches_c(name):
    """Parity mode: the seeded noise image equals C's, bit for bit."""
    from nbnumba.golden import run_case

    report = run_case(name, mode="parity")
    assert report.ok, report.details
    assert any(d.startswith("noise.img") for d in report.details)
