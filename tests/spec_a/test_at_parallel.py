"""Spec A, Parallel validation (C equivalence): AT-PARALLEL-001 ... 029.

The C reference is the golden corpus (C outputs) where it has the AT's setup,
and otherwise nbnumba's parity mode, which reproduces C (all 50 golden cases
bit-identical).  nbnumba itself runs in spec mode.  Detectors are the AT's
where a render takes under a second on two cores; larger ones render the
ROI around the beam, or are marked slow.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from speca_util import (  # noqa: F401
    GOLDEN_SPEC_DIR,
    R_E_SQR,
    Geometry,
    centroid,
    correlation,
    defect,
    differs,
    first,
    golden_args,
    golden_float,
    golden_inputs,
    image,
    in_tmp,
    matched_fraction,
    needs_golden,
    peaks,
    pinfo,
    poisson_image,
    prep,
    sim,
)

pytestmark = pytest.mark.usefixtures("in_tmp")

CUBIC = "-default_F 100 -cell 100 100 100 90 90 90"
TRICLINIC = "-default_F 100 -cell 70 80 90 75 85 95"
PLAIN = "-phi 0 -osc 0 -mosaic 0 -oversample 1"


def _hit(info):
    """(fast, slow) pixel index (centre = integer) where the direct beam meets the detector."""
    b, f, s, o, pix0 = (np.asarray(info[k], float) for k in ("beam", "fdet", "sdet", "odet", "pix0"))
    hit = (pix0 @ o) / (b @ o) * b - pix0
    px = info["pixel_size"]
    return hit @ f / px - 0.5, hit @ s / px - 0.5


def _parity_equivalent(args, img=None, corr=0.9999):
    """Spec mode against the C reference (parity mode) on the same command line."""
    ours = image(args) if img is None else img
    ref = image(args, mode="parity")
    assert np.all(np.isfinite(ours))
    assert correlation(ours, ref) >= corr
    return ours, ref


def _golden_equivalent(name, corr, gate, n_peaks, mode="spec"):
    """nbnumba on a golden case's command line against C's float image: correlation and peak registration."""
    golden_inputs(name, ".")
    ours = image(golden_args(name), mode=mode)
    ref = golden_float(name)
    assert ours.shape == ref.shape
    assert correlation(ours, ref) >= corr
    pa, pb = peaks(ours, n_peaks, 99.0), peaks(ref, n_peaks, 99.0)
    frac, _ = matched_fraction(pa, pb, gate)
    assert len(pa) > 0 and frac >= 0.95
    return ours, ref


@pytest.mark.parametrize("pixels", [64, 128, 256, 512, pytest.param(1024, marks=pytest.mark.slow)])
def test_at_parallel_001_beam_centre_scales_with_detector_size(pixels):
    args = f"{CUBIC} -N 3 -lambda 6.2 -detpixels {pixels} -pixel 0.1 -distance 100 {PLAIN}"
    info = pinfo(prep(args))
    # MOSFLM default beam centre: (detsize + pixel) / 2 mm, i.e. the detector centre (no fixed 51.2 mm)
    assert info["Xbeam"] * 1e3 == pytest.approx(pixels * 0.1 / 2 + 0.05, abs=1e-9)
    assert info["Ybeam"] * 1e3 == pytest.approx(pixels * 0.1 / 2 + 0.05, abs=1e-9)
    img, _ = _parity_equivalent(args)
    s, f = np.unravel_index(np.argmax(img), img.shape)
    assert abs(s - pixels / 2) <= 2 and abs(f - pixels / 2) <= 2


@pytest.mark.parametrize("pixel", [0.05, 0.1, 0.2, 0.4])
def test_at_parallel_002_pixel_size_independence(pixel):
    args = f"{CUBIC} -N 5 -lambda 6.2 -detpixels 256 -pixel {pixel} -distance 100 -Xbeam 25.6 -Ybeam 25.6 {PLAIN}"
    f, s = _hit(pinfo(prep(args)))
    assert f == pytest.approx(25.6 / pixel, abs=0.1) and s == pytest.approx(25.6 / pixel, abs=0.1)
    if 25.6 / pixel > 250:
        return  # 0.05 mm: the beam centre (pixel 512) lies off a 256-pixel detector; no peak to find
    img, _ = _parity_equivalent(args)
    c = centroid(img, np.unravel_index(np.argmax(img), img.shape), half=12)
    # the direct-beam peak sits at the beam centre; other peaks scale as 1 / pixel (checked in AT-PARALLEL-006)
    assert np.all(np.abs(c - (s, f)) <= 0.6)


# the AT's centres on its detectors, where the centre lies on the detector (a 256-pixel detector is 25.6 mm wide)
PAR_003 = [(c, n) for n in (256, 512, 1024) for c in ((20, 20), (30, 40), (45, 25), (60, 60)) if max(c) < n * 0.1]


@pytest.mark.parametrize("centre, pixels", PAR_003)
def test_at_parallel_003_detector_offset_preservation(centre, pixels):
    x, y = centre
    args = f"{CUBIC} -N 5 -lambda 6.2 -detpixels {pixels} -pixel 0.1 -distance 100 -Xbeam {x} -Ybeam {y} {PLAIN}"
    f, s = _hit(pinfo(prep(args)))
    # the ROI around the expected peak keeps the large detectors cheap
    roi = f"-roi {int(f) - 15} {int(f) + 15} {int(s) - 15} {int(s) + 15}"
    img = image(f"{args} {roi}")
    c = centroid(img, np.unravel_index(np.argmax(img), img.shape), half=3)
    # MOSFLM: the slow axis carries Xbeam, the fast axis Ybeam (plus the half pixel)
    assert abs(c[0] - x / 0.1) <= 1 and abs(c[1] - y / 0.1) <= 1
    assert (c[0] + 0.5) / (c[1] + 0.5) == pytest.approx((x + 0.05) / (y + 0.05), rel=0.02)


def test_at_parallel_004_mosflm_half_pixel_offset():
    common = f"{CUBIC} -N 5 -lambda 6.2 -detpixels 256 -pixel 0.1 -distance 100 {PLAIN}"
    mos = image(f"{common} -mosflm -Xbeam 12.8 -Ybeam 12.8")
    xds = image(f"{common} -xds -Xbeam 12.8 -Ybeam 12.8")
    # the direct-beam spot (N = 5 at 6.2 A: about 12 pixels wide)
    cm = centroid(mos, np.unravel_index(np.argmax(mos), mos.shape), half=12)
    cx = centroid(xds, np.unravel_index(np.argmax(xds), xds.shape), half=12)
    assert np.all((cm - cx >= 0.4) & (cm - cx <= 0.6))
    # aligned: XDS given the MOSFLM-mapped centre renders the same pattern
    aligned = image(f"{common} -xds -ORGX 129 -ORGY 129")  # near point = beam at 12.85 mm
    assert correlation(mos, aligned) >= 0.9999


PAR_005 = [
    pytest.param("-Xbeam 20 -Ybeam 15", "beam", id="Xbeam"),
    # -Xclose/-Yclose in the convention's axes, like -Xbeam/-Ybeam (docs/quirks.md)
    pytest.param("-Xclose 20 -Yclose 15", "sample", id="Xclose"),
    pytest.param("-ORGX 151 -ORGY 201", "sample", id="ORGX"),
]


@pytest.mark.parametrize("flags, pivot", PAR_005)
def test_at_parallel_005_beam_centre_parameter_mapping(flags, pivot):
    info = pinfo(prep(f"{CUBIC} -N 5 -lambda 6.2 -detpixels 256 -pixel 0.1 -distance 100 {flags}"))
    f, s = _hit(info)
    # -Xbeam 20 -Ybeam 15 (MOSFLM): fast 15.05 mm, slow 20.05 mm: pixel indices 150, 200
    assert abs(f - 150.0) <= 0.5 and abs(s - 200.0) <= 0.5
    assert info["pivot"] == pivot


@pytest.mark.parametrize("distance", [50, 100, 200])
@pytest.mark.parametrize("lam", [1.0, 1.5, 2.0])
def test_at_parallel_006_single_reflection_position(distance, lam):
    # oversampling left to its automatic choice: the spots are narrower than a pixel
    args = f"{CUBIC} -N 5 -lambda {lam} -detpixels 256 -pixel 0.1 -distance {distance} -phi 0 -osc 0 -mosaic 0"
    info = pinfo(prep(args))
    f0, s0 = _hit(info)
    two_theta = 2 * math.asin(lam / (2 * 100.0))
    expected = f0 + distance * math.tan(two_theta) / 0.1  # (0 0 1) along +fast (MOSFLM: c* along z)
    # the neighbours (0 1 1), (0 0 2) are >= 5 pixels away
    lo, hi = int(expected) - 2, int(expected) + 3
    img = image(f"{args} -roi {lo} {hi} {int(s0) - 2} {int(s0) + 3}")
    c = centroid(img, np.unravel_index(np.argmax(img), img.shape), half=2)
    assert abs(c[1] - expected) <= 0.5
    assert abs(c[0] - s0) <= 0.5


def _spec_vs_golden_sum(ours, ref):
    assert 0.9 <= ours.sum() / ref.sum() <= 1.1


@needs_golden
def test_at_parallel_007_peak_position_with_rotations():
    from nbnumba.golden import run_case

    assert run_case("rot_twotheta_beam", mode="parity").ok
    ours, ref = _golden_equivalent("rot_twotheta_beam", 0.9999, 1.0, 25)
    _spec_vs_golden_sum(ours, ref)


@needs_golden
def test_at_parallel_008_multi_peak_registration():
    ours, ref = _golden_equivalent("energy", 0.98, 1.0, 100)  # triclinic 70 80 90 75 85 95, N 5, 1 A
    pa = peaks(ours, 100, 99.0)
    ratio = ours[tuple(pa.astype(int).T)] / ref[tuple(pa.astype(int).T)]
    assert math.sqrt(np.mean((ratio - 1) ** 2)) < 0.10


def test_at_parallel_009_intensity_normalization():
    def i_max(n, F):
        img = image(f"-default_F {F} -cell 100 100 100 90 90 90 -N {n} -lambda 6.2 -detpixels 64 -pixel 0.1 "
                    f"-distance 100 {PLAIN}")
        s, f = np.unravel_index(np.argmax(img), img.shape)
        return img[max(s - 10, 0):s + 11, max(f - 10, 0):f + 11].max()

    def fit(x, y):
        lx, ly = np.log(x), np.log(y)
        slope, icpt = np.polyfit(lx, ly, 1)
        resid = ly - (slope * lx + icpt)
        return slope, 1 - resid.var() / ly.var()

    ns = np.array([1, 2, 3, 5, 10])
    slope, r2 = fit(ns, [i_max(n, 100) for n in ns])
    assert slope == pytest.approx(6.0, abs=0.3) and r2 >= 0.99
    fs = np.array([50, 100, 200, 500])
    slope, r2 = fit(fs, [i_max(5, F) for F in fs])
    assert slope == pytest.approx(2.0, abs=0.05) and r2 >= 0.99


@pytest.mark.parametrize("quantity", [
    pytest.param("total-sum", marks=differs(
        "Spec A: the total image sum goes as 1/R^2 (point pixel, +-5%) and close_distance/R^3 (+-10%); the "
        "Bragg spots' angular size is fixed, so a spot covers ~R^2 pixels of ~1/R^2 each and the total sum "
        "hardly depends on R (measured 1 : 0.86 : 0.45 : 0.10 for R = 50, 100, 200, 400 mm, against "
        "1 : 0.25 : 0.0625 : 0.0156); the per-pixel solid angle obeys the law (other parameter)")),
    pytest.param("pixel", id="pixel-solid-angle"),
])
def test_at_parallel_010_solid_angle_corrections(quantity):
    common = f"{CUBIC} -N 5 -lambda 6.2 -detpixels 256 -pixel 0.1 {PLAIN}"
    if quantity == "total-sum":
        for point, tol in (("-point_pixel", 0.05), ("", 0.10)):
            sums = {R: image(f"{common} -distance {R} {point}").sum() for R in (50, 100, 200, 400)}
            for R in (100, 200, 400):
                # untilted: close_distance = R, so close/R^3 is 1/R^2 as well
                assert sums[R] / sums[50] == pytest.approx((50 / R) ** 2, rel=tol)
        return
    for tilt in (0, 10, 20, 30):
        for point in ("-point_pixel", ""):
            vals = {}
            for R in (50, 100, 200, 400):
                args = (f"-default_F 100 -cell 100 100 100 90 90 90 -N 1 -lambda 1 -detpixels 16 -pixel 0.1 "
                        f"-distance {R} -detector_rotx {tilt} -oversample 1 -nopolar {point}")
                r = sim(args)
                g = Geometry(r.prepared)
                base = R_E_SQR * pinfo(r.prepared)["fluence"] * 100.0 ** 2
                omega = first(g.omega_point if point else g.omega)
                np.testing.assert_allclose(r.image, base * omega, rtol=1e-6)
                vals[R] = (r.image[8, 8], first(g.R)[8, 8], pinfo(r.prepared)["close_distance"])
            for R in (100, 200, 400):
                (i1, r1, c1), (i2, r2, c2) = vals[50], vals[R]
                law = (r1 / r2) ** 2 if point else (c2 / r2 ** 3) / (c1 / r1 ** 3)
                assert i2 / i1 == pytest.approx(law, rel=1e-5)


@pytest.mark.parametrize("kahn, tol", [(0.0, 0.01), (0.95, 0.02)])
def test_at_parallel_011_polarization(kahn, tol):
    args = f"{CUBIC} -N 5 -lambda 1 -detpixels 256 -pixel 0.1 -distance 100 {PLAIN}"
    r = sim(f"{args} -polar {kahn}")
    nopolar = image(f"{args} -nopolar")
    g = Geometry(r.prepared)
    theory = first(g.polar(kahn))
    keep = nopolar > 1e-6 * nopolar.max()
    measured = r.image[keep] / nopolar[keep]
    t = theory[keep]
    r2 = 1 - np.sum((measured - t) ** 2) / np.sum((t - t.mean()) ** 2)
    assert r2 >= 0.95
    assert np.mean(np.abs(measured / t - 1)) <= tol
    _parity_equivalent(f"{args} -polar {kahn}", img=r.image, corr=0.98)


@needs_golden
@pytest.mark.parametrize("name, gate", [("cubic_basic", 0.5), ("triclinic_misset", 0.5), ("rot_twotheta_beam", 1.0)])
def test_at_parallel_012_reference_pattern_correlation(name, gate):
    _golden_equivalent(name, 0.9995, gate, 50)


def test_at_parallel_012_high_resolution_variant():
    args = f"{CUBIC} -N 5 -lambda 0.5 -detpixels 4096 -pixel 0.05 -distance 500 {PLAIN}"
    f, s = (int(v) for v in _hit(pinfo(prep(args))))
    roi = f"-roi {f - 256} {f + 255} {s - 256} {s + 255}"
    img = image(f"{args} {roi}")[s - 256:s + 256, f - 256:f + 256]
    assert np.all(np.isfinite(img)) and img.max() > 0
    ref = image(f"{args} {roi}", mode="parity")[s - 256:s + 256, f - 256:f + 256]
    assert correlation(img, ref) >= 0.95
    frac, _ = matched_fraction(peaks(img, 50, 99.0), peaks(ref, 50, 99.0), 1.0)
    assert frac >= 0.95


@needs_golden
def test_at_parallel_013_consistency():
    import dataclasses

    from nbnumba import config_from_args, simulate

    golden_inputs("triclinic_misset", ".")
    args = golden_args("triclinic_misset")
    cfg = config_from_args(args, mode="spec")[0]
    a = simulate(cfg, nthreads=1).image
    b = simulate(dataclasses.replace(cfg), nthreads=2).image
    np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-12)  # same run, another thread count
    ref = golden_float("triclinic_misset")
    np.testing.assert_allclose(a, ref, rtol=1e-5, atol=1e-6)
    assert correlation(a, ref) >= 0.995


def test_at_parallel_014_noise_robustness():
    args = f"-default_F 100 -cell 100 100 100 90 90 90 -N 2 -lambda 1 -detpixels 128 -pixel 0.1 -distance 60 {PLAIN}"
    img = image(args)
    img = (img * (1e3 / img.mean())).astype(np.float32)
    top = peaks(img, 20, 99.0, radius=3)
    assert len(top) >= 5
    overloads = []
    for seed in (123, 456):
        noise, _, over = poisson_image(img, None, -seed, adc_offset=40.0)
        overloads.append(over)
        assert noise.astype(float).mean() == pytest.approx(img.astype(float).mean() + 40, rel=0.01)
        shifts = np.array([np.linalg.norm(centroid(noise.astype(float) - 40, p, 2) - centroid(img, p, 2))
                           for p in top])
        assert np.median(shifts) <= 0.5 and np.percentile(shifts, 90) <= 1.0
    assert abs(overloads[0] - overloads[1]) <= 0.1 * max(overloads)


@pytest.mark.parametrize("a, b", [
    ("-lambda 1", "-energy 12398.42"),
    ("-distance 100 -Xbeam 3.25 -Ybeam 3.25", "-distance 100"),  # mm, the default MOSFLM centre
    ("-detpixels 64", "-detsize 6.4"),
    ("-pixel 0.1 -detpixels 64", "-pixel 0.1 -detsize_f 6.4 -detsize_s 6.4"),
])
def test_at_parallel_015_mixed_units(a, b):
    common = f"{TRICLINIC} -N 5 -pixel 0.1 {PLAIN}"
    defaults = {("-lambda", "-energy"): "-lambda 1", ("-distance",): "-distance 100",
                ("-detpixels", "-detsize"): "-detpixels 64"}
    fill = " ".join(v for keys, v in defaults.items() if not any(k in a + b for k in keys))
    ia, ib = image(f"{common} {fill} {a}"), image(f"{common} {fill} {b}")
    assert ia.max() > 0
    np.testing.assert_allclose(ia, ib, rtol=1e-6, atol=1e-9 * ia.max())


@pytest.mark.parametrize("case", [
    "-N 1 -lambda 0.1 -distance 10 -detpixels 128 -pixel 0.05",
    pytest.param("-cell 300 300 300 90 90 90 -N 10 -lambda 6 -distance 100 -detpixels 1024 -pixel 0.1",
                 marks=pytest.mark.slow),
    "-N 5 -lambda 1 -distance 10000 -detpixels 256 -pixel 0.2",
])
def test_at_parallel_016_extreme_scales(case):
    args = f"{CUBIC} {case} {PLAIN}"
    ours, ref = _parity_equivalent(args, corr=0.95)
    assert ours.max() > 0
    frac, _ = matched_fraction(peaks(ours, 25, 99.0), peaks(ref, 25, 99.0), 2.0)
    assert frac >= 0.95


@pytest.mark.parametrize("flags", ["-detector_rotx 50 -twotheta 65", "-detector_roty 60 -twotheta 70 -pivot sample",
                                   "-twotheta 80 -detector_rotz 45"])
def test_at_parallel_017_grazing_incidence(flags):
    args = f"-default_F 100 -cell 100 100 100 90 90 90 -N 1 -lambda 1 -detpixels 32 -pixel 0.5 -distance 50 " \
           f"-oversample 1 {flags}"
    r = sim(args)
    assert np.all(np.isfinite(r.image)) and r.image.max() > 0
    g = Geometry(r.prepared)
    base = R_E_SQR * pinfo(r.prepared)["fluence"] * 100.0 ** 2
    np.testing.assert_allclose(r.image, base * first(g.omega) * first(g.polar(0.0)), rtol=1e-6)
    for v in ("fdet", "sdet", "odet"):
        assert np.linalg.norm(pinfo(r.prepared)[v]) == pytest.approx(1.0, abs=1e-12)


def test_at_parallel_018_crystal_boundary_conditions():
    common = f"{CUBIC} -lambda 1 -detpixels 48 -pixel 0.1 -distance 100 -oversample 1"
    for n in (1, 5):
        base = image(f"{common} -N {n}")
        assert np.all(np.isfinite(base)) and base.max() > 0
        np.testing.assert_allclose(image(f"{common} -N {n} -misset 0 0 0"), base, rtol=1e-6)
        near = image(f"{common} -N {n} -misset 1e-6 1e-6 1e-6")
        np.testing.assert_allclose(near, base, rtol=1e-4, atol=1e-6 * base.max())
    # the direct-beam pixel sits at h = k = l = 0 exactly: sincg(0, N) = N, no 0/0
    for extra in ("-phi 90 -osc 0", "-cell 100 100 100 90 90 90 -N 7 -phi 0 -osc 90 -phisteps 2"):
        img = image(f"{common} -N 3 {extra}")
        assert np.all(np.isfinite(img)) and img.max() > 0


INTEGRATION = (f"{TRICLINIC} -N 5 -mosaic 0.5 -mosaic_dom 5 -mosaic_seed 7 -phi 0 -osc 90 -phisteps 9 "
               "-detector_rotx 5 -detector_roty 3 -detector_rotz 2 -twotheta 10 -detector_abs 500 "
               "-detector_thick 450 -thicksteps 5 -polar 0.95 -pixel 0.1 -distance 100 -oversample 1 -lambda 1")


CARRY_OVER = ("spec mode renders phi = 0 with the unrotated cell (C's fix/phi0-stale-rotation, docs/quirks.md row 1); "
              "C reuses the previous pixel's last rotated cell there, so with -phi 0 and several steps the two "
              "images differ by design (the fixed-C reference golden_spec/phi_osc is matched bit for bit instead)")


@pytest.mark.parametrize("pixels, check", [
    (96, "correlation-and-sum"),
    pytest.param(96, "peaks", marks=differs(CARRY_OVER + "; here 57% of the top 50 peaks match")),
    pytest.param(512, "correlation-and-sum", marks=[pytest.mark.slow, differs(
        CARRY_OVER + "; on the AT's 512 x 512 detector the correlation is 0.948 (< 0.95)")]),
])
def test_at_parallel_020_comprehensive_integration(pixels, check):
    ours, ref = _parity_equivalent(f"{INTEGRATION} -detpixels {pixels}", corr=0.95)
    if check == "peaks":
        frac, _ = matched_fraction(peaks(ours, 50, 99.0), peaks(ref, 50, 99.0), 1.0)
        assert frac >= 0.95
    assert 0.9 <= ours.sum() / ref.sum() <= 1.1


@needs_golden
def test_at_parallel_021_phi_sweep_matches_c():
    """A phi sweep from 0: parity mode equals C, spec mode equals C with its upstream phi = 0 fix."""
    from nbnumba.golden import run_case

    assert run_case("phi_osc", mode="parity").ok
    assert run_case("phi_osc", mode="spec", reference=GOLDEN_SPEC_DIR).ok


PHI_COMMON = f"{CUBIC} -N 5 -lambda 1 -detpixels 64 -pixel 0.1 -distance 100 -oversample 1"


@pytest.mark.parametrize("case", [
    pytest.param("single-step-midpoint", marks=differs(
        "Spec A: one phi step over -osc 90 samples the midpoint (~45 deg); C (and nbnumba) sample each step at its "
        "start, phi0 + i*phistep, so one step renders phi = 0")),
    "multi-step",
])
def test_at_parallel_021_phi_rotation(case):
    if case == "single-step-midpoint":
        one = image(f"{PHI_COMMON} -phi 0 -osc 90 -phisteps 1")
        mid = image(f"{PHI_COMMON} -phi 45 -osc 0")
        assert correlation(one, mid) > 0.99
        return
    multi = image(f"{PHI_COMMON} -phi 0 -osc 90 -phisteps 9")
    parts = [image(f"{PHI_COMMON} -phi {10 * i} -osc 0") for i in range(9)]
    np.testing.assert_allclose(multi, np.mean(parts, axis=0), rtol=1e-5, atol=1e-6)
    assert correlation(multi, parts[0]) < 0.9  # the steps really differ


def test_at_parallel_022_detector_and_crystal_rotation():
    rot = "-detector_rotx 5 -detector_roty 3 -detector_rotz 2 -twotheta 10"
    multi = image(f"{PHI_COMMON} {rot} -phi 0 -osc 90 -phisteps 9")
    parts = [image(f"{PHI_COMMON} {rot} -phi {10 * i} -osc 0") for i in range(9)]
    np.testing.assert_allclose(multi, np.mean(parts, axis=0), rtol=1e-5, atol=1e-6)
    # against C (parity mode), phi started at 5 deg so that C's phi = 0 carry-over does not enter
    args = f"{PHI_COMMON} {rot} -phi 5 -osc 90 -phisteps 9"
    ours, ref = _parity_equivalent(args, corr=0.98)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6)
    assert 0.9 <= ours.sum() / ref.sum() <= 1.1


def _rot(angles_deg):
    x, y, z = np.radians(angles_deg)
    rx = np.array([[1, 0, 0], [0, math.cos(x), -math.sin(x)], [0, math.sin(x), math.cos(x)]])
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rz = np.array([[math.cos(z), -math.sin(z), 0], [math.sin(z), math.cos(z), 0], [0, 0, 1]])
    return rz @ ry @ rx


@pytest.mark.parametrize("cell", ["70 80 90 75 85 95", "100 100 100 90 90 90"])
@pytest.mark.parametrize("misset", [(0.0, 0.0, 0.0), (10.5, 0.0, 0.0), (0.0, 10.25, 0.0), (0.0, 0.0, 9.75),
                                    (15.0, 20.5, 30.25)])
def test_at_parallel_023_explicit_misset(cell, misset):
    common = f"-default_F 100 -cell {cell} -N 5 -lambda 1 -detpixels 64 -pixel 0.1 -distance 100 {PLAIN}"
    plain = pinfo(prep(common))
    info = pinfo(prep(f"{common} -misset {misset[0]} {misset[1]} {misset[2]}"))
    R = _rot(misset)  # right-handed rotations about X, then Y, then Z, applied to the reciprocal vectors
    for k in ("a_star", "b_star", "c_star"):
        np.testing.assert_allclose(info[k][:3], R @ np.asarray(plain[k][:3]), atol=1e-14)
    for k in ("a", "b", "c"):  # real vectors recomputed: the same rotation
        np.testing.assert_allclose(info[k][:3], R @ np.asarray(plain[k][:3]), atol=1e-22)
    args = f"{common} -misset {misset[0]} {misset[1]} {misset[2]}"
    ours, ref = _parity_equivalent(args, corr=0.99)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6)


@needs_golden
def test_at_parallel_023_misset_matches_c():
    _golden_equivalent("triclinic_misset", 0.99, 0.5, 25)


RANDOM = f"{CUBIC} -N 5 -lambda 1 -detpixels 96 -pixel 0.1 -distance 100 {PLAIN} -misset random"


@pytest.mark.parametrize("case", [
    "determinism-and-seed-effect",
    pytest.param("cross-implementation", marks=differs(
        "spec mode draws -misset random uniformly from SO(3) (docs/quirks.md row 8); C's generator reads its 90 "
        "degree cap as radians, so the same seed gives another orientation (parity mode keeps C's)")),
])
def test_at_parallel_024_random_misset(case):
    if case == "cross-implementation":
        for seed in (12345, 54321):
            ours, ref = image(f"{RANDOM} -misset_seed {seed}"), image(f"{RANDOM} -misset_seed {seed}", "parity")
            np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6)
        return
    a1, a2 = image(f"{RANDOM} -misset_seed 12345"), image(f"{RANDOM} -misset_seed 12345")
    np.testing.assert_allclose(a1, a2, rtol=1e-12, atol=1e-15)
    b = image(f"{RANDOM} -misset_seed 54321")
    assert correlation(a1, b) <= 0.7


def test_at_parallel_025_maximum_intensity_position():
    args = f"{CUBIC} -N 1 -lambda 1 -detpixels 64 -pixel 0.1 -distance 100 {PLAIN}"
    ours, ref = _parity_equivalent(args)
    a, b = np.unravel_index(np.argmax(ours), ours.shape), np.unravel_index(np.argmax(ref), ref.shape)
    assert abs(a[0] - b[0]) < 0.5 and abs(a[1] - b[1]) < 0.5
    f, s = _hit(pinfo(prep(args)))
    assert abs(a[0] - s) <= 1 and abs(a[1] - f) <= 1


def test_at_parallel_026_triclinic_absolute_peak_position():
    args = "-default_F 100 -cell 70 80 90 85 95 105 -lambda 1.5 -N 1 -detpixels 256 -pixel 0.1 -distance 150 " \
           f"-mosflm {PLAIN}"
    ours, ref = _parity_equivalent(args)
    a, b = np.unravel_index(np.argmax(ours), ours.shape), np.unravel_index(np.argmax(ref), ref.shape)
    assert abs(a[0] - b[0]) <= 1 and abs(a[1] - b[1]) <= 1


PATTERN = [(0, 0, 0, 100.0), (1, 0, 0, 50.0), (0, 1, 0, 25.0), (1, 1, 0, 12.5), (2, 0, 0, 200.0), (0, 2, 0, 150.0)]


def _pattern_file():
    with open("test_pattern.hkl", "w") as fh:
        for row in PATTERN:
            fh.write("%d %d %d %g\n" % row)


@pytest.mark.parametrize("case", [
    "f-squared-ratios",
    pytest.param("literal", marks=differs(
        "AT-PARALLEL-027 contradicts itself: (2,0,0) 'is 4x brighter than (1,0,0)' yet 200^2/50^2 = 16; and on its "
        "64x64 detector at 6.2 A (MOSFLM: beam along a*) no (h,0,0) reflection but (0,0,0) is reached")),
])
def test_at_parallel_027_non_uniform_structure_factors(case):
    _pattern_file()
    if case == "literal":
        args = "-hkl test_pattern.hkl -cell 100 100 100 90 90 90 -lambda 6.2 -N 5 -detpixels 64 -pixel 0.1 " \
               "-distance 100 -mosflm"
        r = sim(args)
        h0 = np.ceil(first(Geometry(r.prepared).hkl()) - 0.5).astype(int)
        i100 = r.image[np.all(h0 == (1, 0, 0), axis=-1)]
        i200 = r.image[np.all(h0 == (2, 0, 0), axis=-1)]
        assert i100.size and i200.size and i200.max() / i100.max() == pytest.approx(4.0, rel=0.01)
        return
    # -N 1 (no lattice peaks): the pixels of each reflection's region carry exactly F^2 x corrections
    args = "-hkl test_pattern.hkl -cell 100 100 100 90 90 90 -lambda 1 -N 1 -nointerpolate -detpixels 64 " \
           "-pixel 0.1 -distance 30 -oversample 1"
    r = sim(args)
    g = Geometry(r.prepared)
    F2 = r.image / (R_E_SQR * pinfo(r.prepared)["fluence"] * first(g.omega) * first(g.polar(0.0)))
    h0 = np.ceil(first(g.hkl()) - 0.5).astype(int)
    seen = {(h, k, l): F for h, k, l, F in PATTERN if np.all(h0 == (h, k, l), axis=-1).any()}
    assert len(seen) >= 3
    for key, F in seen.items():
        np.testing.assert_allclose(F2[np.all(h0 == key, axis=-1)], F ** 2, rtol=0.01)
    _parity_equivalent(args, img=r.image, corr=0.999)


OS_COMMON = f"{CUBIC} -N 5 -lambda 1 -detpixels 256 -pixel 0.1 -distance 50 -mosflm -phi 0 -osc 0 -mosaic 0"


def _hf_fraction(img):
    power = np.abs(np.fft.fft2(img)) ** 2
    k = np.hypot(*np.meshgrid(np.fft.fftfreq(img.shape[0]) * img.shape[0],
                              np.fft.fftfreq(img.shape[1]) * img.shape[1], indexing="ij"))
    return power[k > 64].sum() / power.sum()


def _fwhm(img, p):
    s, f = (int(v) for v in p)
    row = img[s, max(f - 8, 0):f + 9]
    return float(np.sum(row >= row.max() / 2))


@pytest.mark.parametrize("case", [
    pytest.param("aliasing", marks=differs(
        "Spec A: oversample >= 2 cuts the power above 64 cycles/image by >= 50%; the N = 5 spots are sharper than "
        "a pixel, so that power is the spots' own: measured fraction 0.68, 0.55, 0.53, 0.52 for oversample 1, 2, 4, "
        "8 (an 18% cut)")),
    "positions-and-widths",
])
def test_at_parallel_029_subpixel_sampling(case):
    imgs = {n: image(f"{OS_COMMON} -oversample {n}") for n in (1, 2, 4, 8)}
    if case == "aliasing":
        for n in (2, 4, 8):
            assert _hf_fraction(imgs[n]) <= 0.5 * _hf_fraction(imgs[1])
        return
    top = peaks(imgs[8], 10, 99.0, radius=3)
    assert len(top) == 10
    cents = {n: np.array([centroid(imgs[n], p, 2) for p in top]) for n in imgs}
    for n in (1, 2, 4):
        assert np.max(np.linalg.norm(cents[n] - cents[8], axis=1)) <= 0.5
    w4, w8 = (np.mean([_fwhm(imgs[n], p) for p in top]) for n in (4, 8))
    assert w8 == pytest.approx(w4, rel=0.05)
    for n in (1, 2):
        assert correlation(imgs[n], image(f"{OS_COMMON} -oversample {n}", mode="parity")) >= 0.98
