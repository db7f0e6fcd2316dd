"""Spec A, Geometry & Conventions: AT-GEO-001 ... AT-GEO-006 (spec mode)."""

from __future__ import annotations

import numpy as np
import pytest
from speca_util import Geometry, cli, defect, first, image, in_tmp, pinfo, prep, sim, smv  # noqa: F401

pytestmark = pytest.mark.usefixtures("in_tmp")

CUBIC = "-default_F 100 -cell 100 100 100 90 90 90 -lambda 1 -N 5"


def test_at_geo_001_mosflm_beam_centre_and_half_pixel():
    p = prep(f"{CUBIC} -mosflm -pixel 0.1 -detpixels 1024 -distance 100 -Xbeam 51.2 -Ybeam 51.2 -pivot beam")
    info = pinfo(p)
    assert info["Fbeam"] == pytest.approx(0.05125, abs=1e-12)
    assert info["Sbeam"] == pytest.approx(0.05125, abs=1e-12)
    assert np.allclose(info["fdet"], [0, 0, 1]) and np.allclose(info["sdet"], [0, -1, 0])
    assert np.allclose(info["odet"], [1, 0, 0])
    np.testing.assert_allclose(info["pix0"], [0.1, 0.05125, -0.05125], atol=1e-9)


GEO_002 = [
    pytest.param("-mosflm -distance 100", "beam", id="A-distance-only"),
    pytest.param("-mosflm -close_distance 100", "sample",
                 id="B-close_distance-only"),
    pytest.param("-mosflm -distance 100 -pivot sample", "sample", id="C-explicit-pivot-wins"),
]


@pytest.mark.parametrize("flags, pivot", GEO_002)
def test_at_geo_002_pivot_defaults_and_overrides(flags, pivot):
    assert pinfo(prep(f"{CUBIC} -detpixels 64 {flags}"))["pivot"] == pivot


def _direct_beam(info):
    """Where the direct beam meets the rendered detector plane: (F, S, distance along the beam)."""
    b, f, s, o, pix0 = (np.asarray(info[k], float) for k in ("beam", "fdet", "sdet", "odet", "pix0"))
    t = (pix0 @ o) / (b @ o)
    hit = t * b - pix0
    return hit @ f, hit @ s, t, b @ o


ROT = "-detector_rotx 5 -detector_roty 3 -detector_rotz 2 -twotheta 15"


def test_at_geo_003_beam_pivot_renders_the_users_beam_centre():
    info = pinfo(prep(f"{CUBIC} -detpixels 64 -pixel 0.1 -distance 100 -Xbeam 3.1 -Ybeam 2.9 -pivot beam {ROT}"))
    F, S, dist, r = _direct_beam(info)
    # MOSFLM: Fbeam = Ybeam + pixel/2, Sbeam = Xbeam + pixel/2
    assert F == pytest.approx(0.0029 + 0.00005, abs=1e-9)
    assert S == pytest.approx(0.0031 + 0.00005, abs=1e-9)
    assert dist == pytest.approx(0.1, abs=1e-9)
    assert r == pytest.approx(float(np.asarray(info["beam"]) @ np.asarray(info["odet"])), abs=1e-15)


@pytest.mark.parametrize("pivot", [
    pytest.param("beam"),
    pytest.param("sample"),
])
def test_at_geo_003_reported_geometry_is_the_rendered_one(pivot, tmp_path):
    args = (f"{CUBIC} -detpixels 64 -pixel 0.1 -close_distance 100 -Xbeam 3.1 -Ybeam 2.9 -pivot {pivot} {ROT} "
            "-floatfile f.bin -intfile i.img -nonoise -nopgm")
    info = pinfo(prep(args))
    F, S, dist, r = _direct_beam(info)
    close = float(np.asarray(info["pix0"]) @ np.asarray(info["odet"]))
    code, _out, err = cli(args)
    assert code == 0, err
    h, _ = smv(tmp_path / "i.img")
    px = 0.1

    def mm(key):
        return pytest.approx(float(h[key]), rel=2e-5, abs=2e-5)

    assert mm("CLOSE_DISTANCE") == close * 1e3
    assert mm("DISTANCE") == close / r * 1e3  # distance = close_distance / r, r with every rotation
    assert mm("DISTANCE") == dist * 1e3
    # MOSFLM: X is the slow axis, Y the fast one, less half a pixel
    assert mm("BEAM_CENTER_X") == S * 1e3 - px / 2 and mm("BEAM_CENTER_Y") == F * 1e3 - px / 2
    assert mm("MOSFLM_CENTER_X") == S * 1e3 - px / 2 and mm("MOSFLM_CENTER_Y") == F * 1e3 - px / 2
    assert mm("DENZO_X_BEAM") == S * 1e3 and mm("DENZO_Y_BEAM") == F * 1e3
    assert mm("ADXV_CENTER_X") == F * 1e3


@pytest.mark.parametrize("conv, axis", [("-mosflm", (0, 0, -1)), ("-xds", (1, 0, 0)), ("-dials", (0, 1, 0))])
def test_at_geo_004_twotheta_axis_by_convention(conv, axis, tmp_path):
    args = f"{CUBIC} {conv} -detpixels 16 -pixel 0.1 -distance 100 -twotheta 7.5"
    info = pinfo(prep(args))
    np.testing.assert_allclose(info["twotheta_axis"], axis, atol=1e-15)
    # the detector normal turned by 7.5 degrees about that axis
    o0 = {"-mosflm": (1, 0, 0), "-xds": (0, 0, 1), "-dials": (0, 0, 1)}[conv]
    assert np.degrees(np.arccos(np.clip(np.dot(info["odet"], o0), -1, 1))) == pytest.approx(7.5, abs=1e-9)
    code, _out, err = cli(f"{args} -intfile i.img -floatfile f.bin -nonoise -nopgm")
    assert code == 0, err
    header, _ = smv(tmp_path / "i.img")
    assert float(header["TWOTHETA"]) == pytest.approx(7.5, abs=1e-9)
    # an explicit axis overrides the convention's
    info = pinfo(prep(f"{args} -twotheta_axis 0 1 0"))
    np.testing.assert_allclose(info["twotheta_axis"], (0, 1, 0), atol=1e-15)


def test_at_geo_005_curved_detector_is_a_sphere():
    # water background only (default_F 0, no HKL), no polarization: each pixel is
    # r_e^2 fluence I_bg / steps * omega, so equal |pos| means equal pixels
    args = ("-default_F 1 -cell 100 100 100 90 90 90 -lambda 1 -N 1 -detpixels 48 -pixel 0.5 -distance 50 "
            "-water 10 -nopolar")
    curved = sim(args + " -curved_det", default_F=0.0)
    flat = image(args, default_F=0.0)
    img = curved.image.astype(np.float64)
    assert img.min() > 0
    assert np.ptp(img) / img.max() < 1e-6  # |pos| = distance for every pixel
    assert np.ptp(flat) / flat.max() > 0.05  # the flat detector is not
    # planar vs curved: the curved pixel is the planar one brought to distance
    # along its direction, so their ratio is (R_planar / distance)^3 (omega ~ close/R^3)
    g = Geometry(prep(args))
    R = first(g.R)
    np.testing.assert_allclose(img / flat, (R / 0.05) ** 3, rtol=1e-5)


def test_at_geo_006_point_pixel_solid_angle():
    args = ("-default_F 100 -cell 100 100 100 90 90 90 -lambda 1 -N 1 -detpixels 24 -pixel 0.5 -distance 40 "
            "-oversample 1 -nopolar -detector_rotx 10")
    with_obliquity = sim(args)
    point = image(args + " -point_pixel")
    g = Geometry(with_obliquity.prepared)
    fluence = pinfo(with_obliquity.prepared)["fluence"]
    base = 7.94079248018965e-30 * fluence * 100.0 ** 2  # N = 1: F_latt = 1
    np.testing.assert_allclose(point, base / first(g.R) ** 2, rtol=1e-6)
    close = pinfo(with_obliquity.prepared)["close_distance"]
    expected = base * 0.0005 ** 2 / first(g.R) ** 2 * close / first(g.R)
    np.testing.assert_allclose(with_obliquity.image, expected, rtol=1e-6)
