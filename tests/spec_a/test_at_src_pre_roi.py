"""Spec A, Sources, Precedence, ROI, Fluence and Statistics:
AT-SRC-001..002, AT-PRE-001..002, AT-ROI-001, AT-FLU-001, AT-STA-001 (spec mode)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from speca_util import config, defect, differs, image, in_tmp, pinfo, prep, sim  # noqa: F401

pytestmark = pytest.mark.usefixtures("in_tmp")

BASE = "-default_F 100 -cell 100 100 100 90 90 90 -lambda 1 -N 5 -detpixels 48 -pixel 0.1 -distance 100 -oversample 1"


@pytest.mark.parametrize("column", [
    pytest.param("weight", id="weights-ignored-steps-2"),
    pytest.param("lambda", marks=differs(
        "Spec A: the sourcefile wavelength column is read but ignored (-lambda is authoritative); C, and nbnumba "
        "in both modes, render each source at its own wavelength (its parallel shard even asks for the weights "
        "to be applied, contradicting the core shard)"), id="lambda-column-ignored"),
])
def test_at_src_001_sourcefile(column, tmp_path):
    one = image(BASE)
    if column == "weight":
        (tmp_path / "s.src").write_text("-10 0 0 1.0 1.0e-10\n-10 0 0 3.0 1.0e-10\n")
    else:
        (tmp_path / "s.src").write_text("-10 0 0 1.0 1.0e-10\n-10 0 0 1.0 2.0e-10\n")
    r = sim(BASE + " -sourcefile s.src")
    assert r.prepared.steps == 2
    assert one.max() > 0
    # both sources count equally and the sum is divided by steps = 2: the single-source image
    np.testing.assert_allclose(r.image, one, rtol=1e-6, atol=1e-9 * one.max())


SRC_002 = [
    pytest.param("-hdivstep 0.5 -vdivstep 0.5", ("h", 2, 0.5e-3, 0.5e-3), id="divergence-step-only"),
    pytest.param("-hdivrange 0.4 -vdivrange 0.4", ("h", 2, 0.4e-3, 0.4e-3), id="divergence-range-only"),
    pytest.param("-hdivsteps 4 -vdivsteps 4", ("h", 4, 1.0, 0.25), id="divergence-count-only"),
    pytest.param("-hdivrange 0.3 -hdivstep 0.1 -vdivrange 0.3 -vdivstep 0.1", ("h", 3, 0.3e-3, 0.1e-3),
                 id="divergence-range-and-step"),
    pytest.param("-dispersion 2", ("disp", 2, 0.02, 0.02), id="dispersion-range-only"),
    pytest.param("-dispersion 2 -dispsteps 5", ("disp", 5, 0.02, 0.005), id="dispersion-range-and-count"),
    pytest.param("", ("thick", 1, 0.0, 0.0), id="nothing-given"),
    pytest.param("-detector_thick 100", ("thick", 2, 100e-6, 100e-6), marks=differs(
        "Spec A: range only -> step = range, 2 steps; for the detector thickness C (and nbnumba) take "
        "step = thickness / 2"), id="thickness-range-only"),
    pytest.param("-thicksteps 4", ("thick", 4, 0.5e-6, 0.5e-6 / 3), marks=differs(
        "Spec A: count only -> thickness 0.5 um; C starts from a thickness of 0 (not 'unset'), so a layer count "
        "alone leaves the detector without thickness (1 layer)"), id="thickness-count-only"),
]


@pytest.mark.parametrize("flags, want", SRC_002)
def test_at_src_002_auto_selection(flags, want):
    p = prep(f"{BASE} -square_div {flags}")
    info = pinfo(p)
    what, count, rng, step = want
    if what == "h":
        assert info["hdivrange"] == pytest.approx(rng, rel=1e-12)
        assert info["hdivstep"] == pytest.approx(step, rel=1e-12)
        assert info["vdivrange"] == pytest.approx(rng, rel=1e-12)
        assert p.sources.shape[0] == count * count  # square grid, both axes alike
    elif what == "disp":
        assert info["dispsteps"] == count
        assert info["dispersion"] == pytest.approx(rng, rel=1e-12)
        lams = np.unique(np.round(p.sources[:, 3], 22))
        assert len(lams) == count
        if count > 1:
            assert lams.max() - lams.min() == pytest.approx(step * 1e-10 * (count - 1), rel=1e-9)
    else:
        assert info["thicksteps"] == count
        assert info["thick"] == pytest.approx(rng, abs=1e-15)
        assert info["thickstep"] == pytest.approx(step, abs=1e-15)


def _write_header(path, pixels, distance, wavelength, ycen, zeros=None):
    from nbnumba.io.smv import write_smv

    data = np.ones((pixels, pixels), dtype=np.uint16)
    if zeros is not None:
        data[zeros] = 0
    write_smv(path, data, dict(pixel_size=0.1, distance=distance, wavelength=wavelength, beam_center_x=1.5,
                               beam_center_y=ycen, close_distance=distance, size1=pixels, size2=pixels))


@pytest.mark.parametrize("order", ["img-then-mask", "mask-then-img"])
def test_at_pre_001_header_precedence(order, tmp_path):
    _write_header(tmp_path / "img.img", 32, 120.0, 1.2, 1.0)
    _write_header(tmp_path / "mask.img", 32, 90.0, 1.5, 2.0)
    files = "-img img.img -mask mask.img" if order == "img-then-mask" else "-mask mask.img -img img.img"
    cfg = config(f"-default_F 100 -cell 100 100 100 90 90 90 -N 5 {files}")[0]
    # C reads the -mask header first and the -img header last, whatever their order on the command line:
    # the last file read (-img) wins for the shared keys, BEAM_CENTER_Y taken directly
    assert cfg.distance == pytest.approx(0.120)
    assert cfg.lambda0 == pytest.approx(1.2e-10)
    assert cfg.Ybeam == pytest.approx(1.0e-3)
    # -mask alone: BEAM_CENTER_Y is read as detsize_s - value
    cfg = config("-default_F 100 -cell 100 100 100 90 90 90 -N 5 -mask mask.img")[0]
    assert cfg.distance == pytest.approx(0.090)
    assert cfg.Ybeam == pytest.approx(3.2e-3 - 2.0e-3)


PRE_002 = [
    pytest.param("-xds -Xbeam 2.0 -Ybeam 2.5", "beam",
        id="Xbeam-forces-beam"),
    pytest.param("-mosflm -Xclose 2.0 -Yclose 2.5", "sample",
        id="Xclose-forces-sample"),
    pytest.param("-mosflm -ORGX 20 -ORGY 25", "sample", id="ORGX-forces-sample"),
    pytest.param("-mosflm -Xclose 2.0 -Yclose 2.5 -pivot beam", "beam", id="pivot-overrides-Xclose"),
    pytest.param("-mosflm -Xbeam 2.0 -Ybeam 2.5 -pivot sample", "sample", id="pivot-overrides-Xbeam"),
    pytest.param("-xds -ORGX 20 -ORGY 25 -pivot beam", "beam", id="pivot-overrides-ORGX"),
]


@pytest.mark.parametrize("flags, pivot", PRE_002)
def test_at_pre_002_pivot_and_origin_overrides(flags, pivot):
    assert pinfo(prep(f"{BASE} {flags}"))["pivot"] == pivot


@differs("Spec A (core: SMV header ingestion; numbered AT 10) applies an -img/-mask header's TWOTHETA; C reads it "
         "into a variable it never uses, and nbnumba does the same in both modes")
def test_at_pre_001_header_twotheta(tmp_path):
    from nbnumba.io.smv import write_smv

    write_smv(tmp_path / "img.img", np.ones((32, 32), dtype=np.uint16),
              dict(pixel_size=0.1, distance=100.0, wavelength=1.0, beam_center_x=1.6, beam_center_y=1.6,
                   close_distance=100.0, phi=3.0, osc_range=0.5, twotheta=5.0))
    cfg = config("-default_F 100 -cell 100 100 100 90 90 90 -N 5 -img img.img")[0]
    assert math.degrees(cfg.phi0) == pytest.approx(3.0) and math.degrees(cfg.osc) == pytest.approx(0.5)
    assert math.degrees(cfg.detector_twotheta) == pytest.approx(5.0)


def _roi_mask_run(mask):
    mask_arr = None
    if mask:
        mask_arr = np.ones((48, 48), dtype=np.uint16)
        mask_arr[20:26, 10:30] = 0
    r = sim(BASE + " -roi 5 40 8 30", mask=None if mask_arr is None else mask_arr.reshape(-1))
    inside = np.zeros((48, 48), bool)
    inside[8:31, 5:41] = True  # -roi xmin xmax ymin ymax, inclusive
    if mask_arr is not None:
        inside &= mask_arr != 0
    return r, inside


@pytest.mark.parametrize("mask", [False, True])
def test_at_roi_001_roi_and_mask(mask):
    r, inside = _roi_mask_run(mask)
    img = r.image
    assert np.all(img[~inside] == 0) and np.all(img[inside] > 0)
    assert r.stats.rendered == inside.sum()
    assert r.stats.mean == pytest.approx(img[inside].astype(float).mean(), rel=1e-9)
    assert r.stats.max_I == pytest.approx(float(img[inside].max()), rel=1e-9)


def test_at_flu_001_fluence_and_clipping():
    r = prep(BASE + " -fluence 1e20 -flux 1e12 -exposure 0.5 -beamsize 0.002 -samplesize 0.005")
    info = pinfo(r)
    assert info["fluence"] == pytest.approx(1e12 * 0.5 / (2e-6) ** 2, rel=1e-12)
    assert info["beamsize"] == pytest.approx(2e-6)
    assert info["sample"][1] == pytest.approx(2e-6) and info["sample"][2] == pytest.approx(2e-6)
    assert info["sample"][0] == pytest.approx(5e-6)
    assert sum("clipping sample" in m for m in r.messages) == 2
    # exposure > 0 recomputes flux from the fluence
    assert info["flux"] == pytest.approx(info["fluence"] / 0.5 * (2e-6) ** 2, rel=1e-12)
    # without flux the given fluence stands
    assert pinfo(prep(BASE + " -fluence 1e20"))["fluence"] == 1e20


@pytest.mark.parametrize("mask", [False, pytest.param(True, marks=differs(
    "Spec A: RMSD over unmasked ROI pixels; C's deviation loop covers the whole ROI, masked pixels included, "
    "and nbnumba keeps that in both modes (docs/quirks.md, 'Same in both modes')"))])
def test_at_sta_001_statistics(mask):
    r, inside = _roi_mask_run(mask)
    vals = r.image[inside].astype(np.float64)
    n = vals.size
    st = r.stats
    assert st.mean == pytest.approx(vals.sum() / n, rel=1e-12)
    assert st.rms == pytest.approx(math.sqrt(np.sum(vals ** 2) / (n - 1)), rel=1e-12)
    s, f = np.unravel_index(np.argmax(np.where(inside, r.image, -1)), inside.shape)
    assert st.max_I == r.image[s, f]
    # the coordinates of the last sub-pixel that set the maximum (oversample 1: the pixel centre)
    assert st.max_I_x == pytest.approx((f + 0.5) * 1e-4, abs=1e-12)
    assert st.max_I_y == pytest.approx((s + 0.5) * 1e-4, abs=1e-12)
    assert st.rmsd == pytest.approx(math.sqrt(np.sum((vals - vals.mean()) ** 2) / (n - 1)), rel=1e-12)
