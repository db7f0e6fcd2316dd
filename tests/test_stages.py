"""The setup stages (nbnumba.stages) on their own: conventions, cell split, step rules."""

from __future__ import annotations

import math

import numpy as np
import pytest
from tolerances import GEOMETRY_ATOL_M, UNIT_VECTOR_ATOL

from nbnumba.cargs import config_from_args
from nbnumba.config import SimConfig
from nbnumba.errors import ConfigError
from nbnumba.prepare import Prepared, prepare
from nbnumba.stages import (
    CONVENTIONS,
    DIVERGENCE_RULE,
    PHI_RULE,
    THICKNESS_RULE,
    Beam,
    Crystal,
    Detector,
    Illumination,
    LabAxes,
    Sampling,
    select_steps,
)

DEG = math.pi / 180.0
MM = 1e-3
BASE = ["-default_F", "1", "-cell", "100", "100", "100", "-detpixels", "64", "-pixel", "0.1", "-distance", "100"]


@pytest.fixture(autouse=True)
def _clean_cwd(tmp_path, monkeypatch):
    # config_from_args reads ./Fdump.bin when there is no -hkl: run in an empty folder
    monkeypatch.chdir(tmp_path)


def cfg(*args, mode="spec"):
    c, _ = config_from_args(BASE + list(args), mode=mode)
    return c


# ---------------------------------------------------------------- each stage alone

def test_detector_alone_mosflm_default():
    d = Detector.from_config(cfg())
    assert d.convention == "MOSFLM" and d.pivot == "beam"
    assert (d.fpixels, d.spixels) == (64, 64)
    # MOSFLM default centre: (detsize + pixel) / 2 = 3.25 mm, plus half a pixel on F and S
    assert d.Xbeam == pytest.approx(3.25 * MM, abs=GEOMETRY_ATOL_M)
    assert d.Fbeam == pytest.approx(3.30 * MM, abs=GEOMETRY_ATOL_M)
    np.testing.assert_allclose(d.pix0, [0.1, 3.3 * MM, -3.3 * MM], atol=GEOMETRY_ATOL_M)
    assert d.distance == pytest.approx(0.1) and d.close_distance == pytest.approx(0.1)
    assert d.ORGX == pytest.approx(33.5, abs=1e-9) and d.ORGY == pytest.approx(33.5, abs=1e-9)
    assert d.roi == (0, 64, 0, 64)


def test_detector_alone_roi_and_rotation():
    d = Detector.from_config(cfg("-roi", "3", "20", "5", "30", "-detector_rotz", "90"))
    assert d.roi == (3, 20, 5, 30)
    assert d.rotation == (0.0, 0.0, pytest.approx(90 * DEG))
    # a quarter turn about z takes the MOSFLM slow axis (0, -1, 0) to (1, 0, 0)
    np.testing.assert_allclose(d.sdet, [1.0, 0.0, 0.0], atol=UNIT_VECTOR_ATOL)


def test_sampling_alone_leaves_oversample_open():
    s = Sampling.from_config(cfg("-phisteps", "5", "-phi", "10"))
    assert s.phisteps == 5 and s.oversample is None
    assert s.osc == pytest.approx(1 * DEG) and s.phistep == pytest.approx(0.2 * DEG)
    np.testing.assert_allclose(s.phis, np.array([10.0, 10.2, 10.4, 10.6, 10.8]) * DEG, rtol=1e-14)
    # 3 x 100 A crystal (N = 3: 300 A) over a reciprocal pixel of 1 A * 0.1 m / 0.1 mm = 1000 A: 0.9 -> 1
    assert s.with_oversample(cfg("-N", "3"), 3e-8, 0.1, 1e-4).oversample == 1
    msgs: list = []
    assert s.with_oversample(cfg(), 1e-7, 0.1, 1e-4, msgs).oversample == 3
    assert msgs == ["auto-selected 3-fold oversampling"]


def test_crystal_alone():
    x = Crystal.from_config(cfg("-N", "5", "-mosaic", "1", "-mosaic_domains", "3", "-phisteps", "2", "-osc", "1"))
    np.testing.assert_allclose(x.cell.a, [1e-8, 0, 0, 1e-8], atol=1e-22)
    np.testing.assert_allclose(x.cell.c_star, [0, 0, 0.01, 0.01], atol=1e-16)
    assert x.cell.V_cell == pytest.approx(1e6)
    assert (x.Na, x.Nb, x.Nc) == (5.0, 5.0, 5.0)
    assert x.xtalsize == pytest.approx((5e-8, 5e-8, 5e-8))
    assert x.mosaic_domains == 3 and x.umats.shape == (3, 9)
    assert x.cells.shape == (2, 3, 9)
    # each domain rotation is a proper rotation
    for u in x.umats:
        m = u.reshape(3, 3)
        np.testing.assert_allclose(m @ m.T, np.eye(3), atol=1e-12)
    assert x.shape == "square" and x.interpolate == 0


def test_beam_alone():
    b = Beam.from_config(cfg("-dispersion", "4", "-dispsteps", "3", "-lambda", "1", "-polar", "0.9"))
    np.testing.assert_allclose(sorted(b.sources[:, 3]), [0.98e-10, 1.0e-10, 1.02e-10], rtol=1e-12)
    assert b.dispsteps == 3 and b.divsteps == 1 and b.polarization == 0.9
    np.testing.assert_allclose(b.direction, [1, 0, 0])
    np.testing.assert_allclose(b.vert_vector, [0, -1, 0], atol=UNIT_VECTOR_ATOL)  # beam x polar


def test_illumination_from_flux():
    ill = Illumination.from_config(cfg("-flux", "1e12", "-exposure", "2", "-beamsize", "0.05"))
    assert ill.fluence == pytest.approx(1e12 * 2 / 0.05e-3 ** 2)
    msgs: list = []
    ill = Illumination.from_config(cfg("-beamsize", "0.001", "-sample_thick", "1", "-sample_width", "1",
                                       "-sample_height", "0.5"), msgs)
    assert ill.sample == (1e-3, 1e-6, 1e-6)
    assert len(msgs) == 2 and msgs[0].startswith("WARNING: clipping sample")


def test_stages_alone_equal_the_composed_run():
    c = cfg("-xds", "-twotheta", "5", "-misset", "10", "20", "30", "-phisteps", "3", "-osc", "1",
            "-hdivrange", "0.5", "-hdivsteps", "3")
    p = prepare(c)
    d = Detector.from_config(c)
    x = Crystal.from_config(c)
    b = Beam.from_config(c)
    assert d.pix0.tobytes() == p.detector.pix0.tobytes()
    assert x.cells.tobytes() == p.cells.tobytes()
    assert b.sources.tobytes() == p.sources.tobytes()
    assert isinstance(p, Prepared) and not hasattr(p, "info")
    assert p.steps == b.sources.shape[0] * x.mosaic_domains * 3 * p.sampling.oversample ** 2


def test_messages_keep_c_order():
    c = cfg("-beamsize", "0.001", "-sample_width", "1", "-odet_vector", "2", "0", "0", "-detector_thick", "100",
            "-mosaic", "1", "-N", "2", "-misset", "random", "-misset_seed", "3", mode="parity")
    msgs = prepare(c).messages
    starts = ["WARNING: clipping sample", "WARNING: auto-generating odet_vector",
              "WARNING: setting detector attenuation depth", "WARNING: finite mosaicity",
              "auto-selected tricubic interpolation", "random orientation misset angles",
              "auto-selected "]
    assert len(msgs) == len(starts)
    for m, s in zip(msgs, starts):
        assert m.startswith(s), (m, s)


# ---------------------------------------------------------------- the convention table

@pytest.mark.parametrize("name,beam,f,s,o,axis,polar,spindle,pivot", [
    ("MOSFLM", (1, 0, 0), (0, 0, 1), (0, -1, 0), (1, 0, 0), (0, 0, -1), (0, 0, 1), (0, 0, 1), "beam"),
    ("DENZO", (1, 0, 0), (0, 0, 1), (0, -1, 0), (1, 0, 0), (0, 0, -1), (0, 0, 1), (0, 0, 1), "beam"),
    ("ADXV", (0, 0, 1), (1, 0, 0), (0, -1, 0), (0, 0, 1), (-1, 0, 0), (1, 0, 0), (1, 0, 0), "beam"),
    ("XDS", (0, 0, 1), (1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 0, 0), (1, 0, 0), (1, 0, 0), "sample"),
    ("DIALS", (0, 0, 1), (1, 0, 0), (0, 1, 0), (0, 0, 1), (0, 1, 0), (0, 1, 0), (0, 1, 0), "sample"),
])
def test_convention_table_vectors(name, beam, f, s, o, axis, polar, spindle, pivot):
    conv = CONVENTIONS[name]
    assert (conv.beam, conv.fdet, conv.sdet, conv.odet) == (beam, f, s, o)
    assert (conv.twotheta_axis, conv.polar, conv.spindle, conv.pivot) == (axis, polar, spindle, pivot)
    ax = LabAxes.from_config(SimConfig(convention=name))
    for got, want in ((ax.beam, beam), (ax.fdet, f), (ax.sdet, s), (ax.odet, o), (ax.polar, polar),
                      (ax.spindle, spindle)):
        np.testing.assert_array_equal(got, np.array(want, float))


def test_custom_convention_takes_the_config_vectors():
    conv = CONVENTIONS["CUSTOM"]
    assert conv.pivot is None and conv.beam is None and conv.close_from_beam
    ax = LabAxes.from_config(SimConfig(convention="CUSTOM", fdet_vector=np.array([0.0, 0.0, 2.0]),
                                       polar_vector=np.array([0.0, 3.0, 0.0])))
    np.testing.assert_array_equal(ax.fdet, [0.0, 0.0, 1.0])
    np.testing.assert_array_equal(ax.polar, [0.0, 1.0, 0.0])
    with pytest.raises(ConfigError, match="unknown detector convention"):
        LabAxes.from_config(SimConfig(convention="PILATUS"))


@pytest.mark.parametrize("name,X0,Y0,F,S", [
    # 64 x 0.1 mm detector; user centre X = 2.5 mm, Y = 4.0 mm
    ("MOSFLM", 3.25, 3.25, 4.05, 2.55),
    ("DENZO", 3.25, 3.25, 4.0, 2.5),
    ("ADXV", 3.25, 3.15, 2.5, 6.4 - 4.0),
    ("XDS", 1.0, 2.0, 2.5, 4.0),
    ("DIALS", 1.0, 2.0, 2.5, 4.0),
])
def test_convention_centre_rules(name, X0, Y0, F, S):
    conv = CONVENTIONS[name]
    det, px = 6.4 * MM, 0.1 * MM
    x0, y0 = conv.default_centre(det, det, px, 1.0 * MM, 2.0 * MM)
    assert (x0, y0) == (pytest.approx(X0 * MM), pytest.approx(Y0 * MM))
    f, s = conv.to_fs(2.5 * MM, 4.0 * MM, det, px)
    assert (f, s) == (pytest.approx(F * MM), pytest.approx(S * MM))


@pytest.mark.parametrize("flag,keys", [("-mosflm", ("mosflm_center_x", "mosflm_center_y")),
                                       ("-denzo", ("denzo_x_beam", "denzo_y_beam")),
                                       ("-adxv", ("adxv_center_x", "adxv_center_y"))])
def test_header_gives_back_the_users_centre(flag, keys):
    """Each convention writes the centre the user gave in its own axes (mm)."""
    d = Detector.from_config(cfg(flag, "-Xbeam", "2.5", "-Ybeam", "4.0"))
    h = d.header_values()
    assert h[keys[0]] == pytest.approx(2.5, abs=1e-9) and h[keys[1]] == pytest.approx(4.0, abs=1e-9)
    assert h["beam_center_x"] == pytest.approx(2.5) and h["beam_center_y"] == pytest.approx(4.0)
    # every header carries every convention's keywords
    for other in ("mosflm_center_x", "denzo_x_beam", "adxv_center_x", "xds_orgx", "dials_origin"):
        assert other in h


def test_header_xds_and_dials_origin():
    h = Detector.from_config(cfg("-xds", "-ORGX", "20", "-ORGY", "40", "-close_distance", "90")).header_values()
    assert h["xds_orgx"] == pytest.approx(20.0) and h["xds_orgy"] == pytest.approx(40.0)
    np.testing.assert_allclose(h["dials_origin"], [90.0, -3.95, 1.95], atol=1e-9)
    assert h["close_distance"] == pytest.approx(90.0) and h["pixel_size"] == pytest.approx(0.1)


# ---------------------------------------------------------------- U and B

@pytest.mark.parametrize("misset", [None, ("10", "20", "30")])
def test_u_b_split_of_a_triclinic_cell(misset):
    args = ["-cell", "70", "80", "90", "75", "85", "95"] + (["-misset", *misset] if misset else [])
    x = Crystal.from_config(cfg(*args))
    A, U, B = x.reciprocal_matrix, x.U, x.B
    np.testing.assert_allclose(U @ B, A, rtol=0, atol=1e-12 * np.abs(A).max())
    assert np.all(np.tril(B, -1) == 0.0) and np.all(np.diag(B) > 0)
    np.testing.assert_allclose(U @ U.T, np.eye(3), atol=1e-14)
    assert np.linalg.det(U) == pytest.approx(1.0)
    # Busing & Levy: a* on the first axis, b* in the first plane; the diagonal is a*, b* sin(gamma*), 1/c
    ast, bst, cst = (np.linalg.norm(A[:, i]) for i in range(3))
    cos_gs = float(A[:, 0] @ A[:, 1]) / ast / bst
    cos_bs = float(A[:, 0] @ A[:, 2]) / ast / cst
    np.testing.assert_allclose(B[0], [ast, bst * cos_gs, cst * cos_bs], rtol=1e-12)
    assert B[1, 1] == pytest.approx(bst * math.sqrt(1 - cos_gs ** 2), rel=1e-12)
    assert B[2, 2] == pytest.approx(1.0 / 90e-10, rel=1e-3)  # 1/c of C's (slightly inconsistent) cell
    # the reciprocal axes are the columns of A and index the real axes: a . a* = 1, a . b* = 0 (to C's
    # rounding of a triclinic cell: its real axes are rescaled to the requested volume)
    assert float(x.cell.a[:3] @ A[:, 0]) == pytest.approx(1.0, rel=1e-3)
    assert float(x.cell.a[:3] @ A[:, 1]) == pytest.approx(0.0, abs=1e-12)
    if misset is None:
        # C's construction puts a* on x and b* in the xy plane: no rotation
        np.testing.assert_allclose(U, np.eye(3), atol=1e-14)
    else:
        rx, ry, rz = (float(v) * DEG for v in misset)
        Rx = np.array([[1, 0, 0], [0, math.cos(rx), -math.sin(rx)], [0, math.sin(rx), math.cos(rx)]])
        Ry = np.array([[math.cos(ry), 0, math.sin(ry)], [0, 1, 0], [-math.sin(ry), 0, math.cos(ry)]])
        Rz = np.array([[math.cos(rz), -math.sin(rz), 0], [math.sin(rz), math.cos(rz), 0], [0, 0, 1]])
        np.testing.assert_allclose(U, Rz @ Ry @ Rx, atol=1e-12)


def test_u_b_of_an_orthorhombic_cell():
    x = Crystal.from_config(cfg("-cell", "50", "60", "70", "90", "90", "90", "-misset", "0", "0", "90"))
    np.testing.assert_allclose(x.B, np.diag([1 / 50e-10, 1 / 60e-10, 1 / 70e-10]), rtol=1e-12, atol=1e-3)
    # a quarter turn about z: a* along y, b* along -x
    np.testing.assert_allclose(x.U, [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-12)


# ---------------------------------------------------------------- one step-selection function

STEP_CASES = [
    # (rule, given (count, range, step), C's completion)
    (PHI_RULE, (-1, -1.0, -1.0), (1, 0.0, 0.0)),
    (DIVERGENCE_RULE, (-1, -1.0, -1.0), (1, 0.0, 0.0)),
    # range only: two steps of range/2 (phi, thickness) or of the whole range (divergence, dispersion)
    (PHI_RULE, (-1, 2.0, -1.0), (2, 2.0, 1.0)),
    (THICKNESS_RULE, (-1, 450e-6, -1.0), (2, 450e-6, 225e-6)),
    (DIVERGENCE_RULE, (-1, 2.0, -1.0), (2, 2.0, 2.0)),
    # count 0: phi renders one step over 1 degree; the others treat 0 as "not given"
    (PHI_RULE, (0, -1.0, -1.0), (1, DEG, DEG)),
    (DIVERGENCE_RULE, (0, -1.0, -1.0), (1, 0.0, 0.0)),
    # count only: 1 degree, 1 rad or 0.5 um
    (PHI_RULE, (5, -1.0, -1.0), (5, DEG, DEG / 5)),
    (DIVERGENCE_RULE, (5, -1.0, -1.0), (5, 1.0, 0.2)),
    (THICKNESS_RULE, (5, -1.0, -1.0), (5, 0.5e-6, 1e-7)),
    # count and range: phi divides by the count, the others count both ends
    (PHI_RULE, (4, 2.0, -1.0), (4, 2.0, 0.5)),
    (DIVERGENCE_RULE, (4, 2.0, -1.0), (4, 2.0, 2.0 / 3.0)),
    (THICKNESS_RULE, (1, 2.0, -1.0), (2, 2.0, 2.0)),
    (PHI_RULE, (1, 2.0, -1.0), (1, 2.0, 2.0)),
    # a step of 0 with a count and a range: kept by phi, derived by the others
    (PHI_RULE, (4, 2.0, 0.0), (4, 2.0, 0.0)),
    (DIVERGENCE_RULE, (4, 2.0, 0.0), (4, 2.0, 2.0 / 3.0)),
    # range and step: ceil(range / step)
    (PHI_RULE, (-1, 2.0, 0.3), (7, 2.0, 0.3)),
    (THICKNESS_RULE, (-1, 2.0, 0.3), (7, 2.0, 0.3)),
    # step only: two steps of one step
    (DIVERGENCE_RULE, (5, -1.0, 0.5), (2, 0.5, 0.5)),
    # an empty range collapses to one point except for phi
    (PHI_RULE, (-1, 0.0, -1.0), (2, 0.0, 0.0)),
    (DIVERGENCE_RULE, (-1, 0.0, -1.0), (1, 0.0, 0.0)),
    (THICKNESS_RULE, (3, 0.0, -1.0), (1, 0.0, 0.0)),
]


@pytest.mark.parametrize("rule,given,expected", STEP_CASES)
def test_select_steps(rule, given, expected):
    steps, rng, step = select_steps(*given, rule)
    assert isinstance(steps, int)
    assert steps == expected[0]
    assert rng == pytest.approx(expected[1], rel=1e-15, abs=1e-18)
    assert step == pytest.approx(expected[2], rel=1e-15, abs=1e-18)


def test_sampling_uses_the_rules():
    s = Sampling.from_config(cfg("-detector_thick", "450", "-hdivrange", "2", "-osc", "2", "-detector_abs", "300"))
    assert (s.thicksteps, s.thick, s.thickstep) == (2, pytest.approx(450e-6), pytest.approx(225e-6))
    assert (s.hdivsteps, s.hdivrange, s.hdivstep) == (2, pytest.approx(2e-3), pytest.approx(2e-3))
    assert (s.phisteps, s.osc, s.phistep) == (2, pytest.approx(2 * DEG), pytest.approx(1 * DEG))
    assert s.mu == pytest.approx(1.0 / 300e-6)
