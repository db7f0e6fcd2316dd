"""Detector geometry, conventions, pivots and sampling auto-selection (Spec A AT-GEO-001..006)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from tolerances import ANGLE_ATOL_RAD, FLOAT32_STORAGE_RTOL, GEOMETRY_ATOL_M, SOLID_ANGLE_RTOL, UNIT_VECTOR_ATOL

from nbnumba.cargs import config_from_args
from nbnumba.config import R_E_SQR
from nbnumba.engine import simulate
from nbnumba.errors import UsageError
from nbnumba.prepare import prepare
from nbnumba.stages import DIVERGENCE_RULE, select_steps

DEG = math.pi / 180.0
MM = 1e-3
BASE = ["-default_F", "1", "-cell", "100", "100", "100", "-detpixels", "64", "-pixel", "0.1"]
MODES = ["spec", "parity"]



@pytest.fixture(autouse=True)
def _clean_cwd(tmp_path, monkeypatch):
    # config_from_args reads ./Fdump.bin when there is no -hkl: run in an empty folder
    monkeypatch.chdir(tmp_path)


def geo(args, mode="spec"):
    cfg, _run = config_from_args(BASE + list(args), mode=mode)
    return prepare(cfg)


def assert_vec(actual, expected, atol=GEOMETRY_ATOL_M):
    np.testing.assert_allclose(np.asarray(actual, dtype=float)[:3], expected, rtol=0, atol=atol)


def rot_x(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def rot_y(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def rot_z(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def rot_axis(axis, a):
    u = np.asarray(axis, float) / np.linalg.norm(axis)
    k = np.array([[0, -u[2], u[1]], [u[2], 0, -u[0]], [-u[1], u[0], 0]])
    return math.cos(a) * np.eye(3) + math.sin(a) * k + (1 - math.cos(a)) * np.outer(u, u)


# ---------------------------------------------------------------- AT-GEO-001

@pytest.mark.parametrize("mode", MODES)
def test_geo001_mosflm_beam_centre_half_pixel(mode):
    i = geo(["-detpixels", "1024", "-distance", "100", "-Xbeam", "51.2", "-Ybeam", "51.2"], mode)
    assert i.detector.pivot == "beam"
    assert i.detector.Fbeam == pytest.approx(51.25 * MM, abs=GEOMETRY_ATOL_M)
    assert i.detector.Sbeam == pytest.approx(51.25 * MM, abs=GEOMETRY_ATOL_M)
    assert_vec(i.detector.pix0, [0.1, 0.05125, -0.05125])
    assert_vec(i.detector.fdet, [0, 0, 1], UNIT_VECTOR_ATOL)
    assert_vec(i.detector.sdet, [0, -1, 0], UNIT_VECTOR_ATOL)
    assert_vec(i.detector.odet, [1, 0, 0], UNIT_VECTOR_ATOL)


# ---------------------------------------------------------------- AT-GEO-002 / pivots

@pytest.mark.parametrize("mode", MODES)
def test_geo002_distance_means_beam_pivot(mode):
    assert geo(["-distance", "100"], mode).detector.pivot == "beam"
    assert geo(["-Xbeam", "3", "-Ybeam", "3"], mode).detector.pivot == "beam"


@pytest.mark.parametrize("flag", [["-close_distance", "90"], ["-Xclose", "3", "-Yclose", "3.5"],
                                  ["-ORGX", "20", "-ORGY", "40"], ["-twotheta", "5"]])
def test_geo002_sample_pivot_flags_parity_keeps_mosflm_beam(flag):
    """C: the MOSFLM convention block forces BEAM after the flags were read."""
    i = geo(["-distance", "100"] + flag, "parity")
    assert i.detector.pivot == "beam"
    assert i.detector.ORGX == pytest.approx(33.5, abs=1e-9)  # near point from the default beam centre


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("flag", [["-close_distance", "90"], ["-Xclose", "3", "-Yclose", "3.5"],
                                  ["-ORGX", "20", "-ORGY", "40"], ["-twotheta", "5"]])
def test_sample_pivot_flags_set_the_pivot(flag, mode):
    """The flags themselves ask for the SAMPLE pivot (the convention may override it later)."""
    cfg, _ = config_from_args(BASE + ["-distance", "100"] + flag, mode=mode)
    assert cfg.detector_pivot == "sample"
    cfg, _ = config_from_args(BASE + flag + ["-distance", "100"], mode=mode)
    assert cfg.detector_pivot == "beam"  # the last pivot-setting flag wins


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("flag", [["-Xbeam", "3"], ["-Ybeam", "3"], ["-distance", "90"]])
def test_beam_pivot_flags_set_the_pivot(flag, mode):
    cfg, _ = config_from_args(BASE + ["-close_distance", "100"] + flag, mode=mode)
    assert cfg.detector_pivot == "beam"


@pytest.mark.parametrize("mode", MODES)
def test_close_distance_pivots_sample_with_custom_vectors(mode):
    """With custom axes (no convention block) -close_distance/-Xclose give SAMPLE in C too."""
    vecs = ["-fdet_vector", "0", "0", "1", "-sdet_vector", "0", "-1", "0", "-odet_vector", "1", "0", "0"]
    i = geo(vecs + ["-close_distance", "90", "-Xclose", "3", "-Yclose", "3.5"], mode)
    assert i.detector.pivot == "sample"
    assert i.detector.Fclose == pytest.approx(3.0 * MM, abs=GEOMETRY_ATOL_M)
    assert i.detector.Sclose == pytest.approx(3.5 * MM, abs=GEOMETRY_ATOL_M)
    assert i.detector.close_distance == pytest.approx(0.09, abs=GEOMETRY_ATOL_M)
    assert_vec(i.detector.pix0, [0.09, 3.5 * MM, -3.0 * MM])


def test_geo002_explicit_pivot_wins_in_spec_mode():
    assert geo(["-distance", "100", "-pivot", "sample"], "spec").detector.pivot == "sample"
    assert geo(["-xds", "-pivot", "beam"], "spec").detector.pivot == "beam"


def test_convention_overrides_explicit_pivot_in_parity_mode():
    assert geo(["-distance", "100", "-pivot", "sample"], "parity").detector.pivot == "beam"
    assert geo(["-xds", "-pivot", "beam"], "parity").detector.pivot == "sample"


@pytest.mark.parametrize("mode", MODES)
def test_explicit_pivot_changes_pix0(mode):
    """-pivot sample around the default near point: same pix0 without rotations, not with them."""
    rot = ["-detector_rotx", "5", "-twotheta", "10", "-distance", "100"]
    beam = geo(rot + ["-pivot", "beam"], "spec")
    sample = geo(rot + ["-pivot", "sample"], "spec")
    assert np.max(np.abs(beam.detector.pix0 - sample.detector.pix0)) > 1e-4


# ---------------------------------------------------------------- AT-GEO-003

def _rotated(v, rx, ry, rz, axis, tt):
    return rot_axis(axis, tt) @ (rot_z(rz) @ (rot_y(ry) @ (rot_x(rx) @ np.asarray(v, float))))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("twotheta", [0.0, 10.0])
def test_geo003_beam_pivot(mode, twotheta):
    """Beam pivot with rotations: distance = close_distance / r with r = beam . odet, where (as in C
    and in the golden rot_twotheta_beam case) odet is rotated by -detector_rot* but not by 2theta.
    Without 2theta the user's beam centre is preserved exactly."""
    rx, ry, rz, tt = 5 * DEG, 3 * DEG, 2 * DEG, twotheta * DEG
    args = ["-close_distance", "90", "-Xbeam", "2.5", "-Ybeam", "4.0", "-detector_rotx", "5", "-detector_roty", "3",
            "-detector_rotz", "2", "-twotheta", str(twotheta), "-pivot", "beam"]
    i = geo(args, mode)
    assert i.detector.pivot == "beam"
    o = _rotated([1, 0, 0], rx, ry, rz, [0, 0, -1], tt)
    f = _rotated([0, 0, 1], rx, ry, rz, [0, 0, -1], tt)
    s = _rotated([0, -1, 0], rx, ry, rz, [0, 0, -1], tt)
    assert_vec(i.detector.odet, o, UNIT_VECTOR_ATOL)
    assert_vec(i.detector.fdet, f, UNIT_VECTOR_ATOL)
    assert_vec(i.detector.sdet, s, UNIT_VECTOR_ATOL)
    beam = np.array([1.0, 0, 0])
    r = float(beam @ (rot_z(rz) @ rot_y(ry) @ rot_x(rx) @ beam))  # odet0 = beam in MOSFLM
    # MOSFLM: Fbeam = Ybeam + half a pixel, Sbeam = Xbeam + half a pixel
    Fb, Sb = 4.05 * MM, 2.55 * MM
    pix0 = -Fb * f - Sb * s + (0.09 / r) * beam
    assert_vec(i.detector.pix0, pix0)
    close = float(pix0 @ o)
    assert i.detector.close_distance == pytest.approx(close, abs=GEOMETRY_ATOL_M)
    assert i.detector.distance == pytest.approx(close / r, abs=GEOMETRY_ATOL_M)
    R = close / r * beam - pix0
    assert i.detector.Fbeam == pytest.approx(float(f @ R), abs=GEOMETRY_ATOL_M)
    assert i.detector.Sbeam == pytest.approx(float(s @ R), abs=GEOMETRY_ATOL_M)
    if twotheta == 0.0:
        assert i.detector.close_distance == pytest.approx(0.09, abs=GEOMETRY_ATOL_M)
        assert i.detector.Fbeam == pytest.approx(Fb, abs=GEOMETRY_ATOL_M)
        assert i.detector.Sbeam == pytest.approx(Sb, abs=GEOMETRY_ATOL_M)
    else:
        # the 2theta swing moves the direct beam off the requested centre (C behaviour)
        assert abs(i.detector.Fbeam - Fb) > 1e-5


@pytest.mark.parametrize("mode", MODES)
def test_geo003_sample_pivot_preserves_near_point(mode):
    rx, ry, rz, tt = 5 * DEG, 3 * DEG, 2 * DEG, 10 * DEG
    args = ["-xds", "-close_distance", "90", "-ORGX", "20", "-ORGY", "40", "-detector_rotx", "5",
            "-detector_roty", "3", "-detector_rotz", "2", "-twotheta", "10"]
    i = geo(args, mode)
    assert i.detector.pivot == "sample"
    Fc, Sc = 19.5 * 0.1 * MM, 39.5 * 0.1 * MM
    f0, s0, o0 = np.array([1.0, 0, 0]), np.array([0, 1.0, 0]), np.array([0, 0, 1.0])
    d0 = -Fc * f0 - Sc * s0 + 0.09 * o0
    pix0 = _rotated(d0, rx, ry, rz, [1, 0, 0], tt)
    f, s, o = (_rotated(v, rx, ry, rz, [1, 0, 0], tt) for v in (f0, s0, o0))
    assert_vec(i.detector.pix0, pix0)
    assert i.detector.Fclose == pytest.approx(Fc, abs=GEOMETRY_ATOL_M)
    assert i.detector.Sclose == pytest.approx(Sc, abs=GEOMETRY_ATOL_M)
    assert i.detector.close_distance == pytest.approx(0.09, abs=GEOMETRY_ATOL_M)
    assert i.detector.ORGX == pytest.approx(20.0, abs=1e-6)
    assert i.detector.ORGY == pytest.approx(40.0, abs=1e-6)
    beam = np.array([0, 0, 1.0])
    r = float(beam @ (rot_z(rz) @ rot_y(ry) @ rot_x(rx) @ o0))  # 2theta not included (C)
    assert i.detector.distance == pytest.approx(0.09 / r, abs=GEOMETRY_ATOL_M)
    R = 0.09 / r * beam - pix0
    assert i.detector.Fbeam == pytest.approx(float(f @ R), abs=GEOMETRY_ATOL_M)
    assert i.detector.Sbeam == pytest.approx(float(s @ R), abs=GEOMETRY_ATOL_M)


# ---------------------------------------------------------------- AT-GEO-004

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("conv,axis,odet0", [("-mosflm", [0, 0, -1], [1, 0, 0]), ("-xds", [1, 0, 0], [0, 0, 1]),
                                             ("-dials", [0, 1, 0], [0, 0, 1]), ("-adxv", [-1, 0, 0], [0, 0, 1])])
def test_geo004_twotheta_axis_defaults(conv, axis, odet0, mode):
    i = geo([conv, "-twotheta", "7"], mode)
    assert_vec(i.detector.twotheta_axis, axis, UNIT_VECTOR_ATOL)
    assert i.detector.twotheta == pytest.approx(7 * DEG, abs=ANGLE_ATOL_RAD)
    assert_vec(i.detector.odet, rot_axis(axis, 7 * DEG) @ np.array(odet0, float), UNIT_VECTOR_ATOL)


@pytest.mark.parametrize("mode", MODES)
def test_geo004_twotheta_axis_override(mode):
    i = geo(["-twotheta_axis", "0", "1", "0", "-twotheta", "7"], mode)
    assert i.detector.convention == "CUSTOM"
    assert_vec(i.detector.twotheta_axis, [0, 1, 0], UNIT_VECTOR_ATOL)
    assert i.detector.twotheta == pytest.approx(7 * DEG, abs=ANGLE_ATOL_RAD)
    assert_vec(i.detector.odet, rot_axis([0, 1, 0], 7 * DEG) @ np.array([1.0, 0, 0]), UNIT_VECTOR_ATOL)


def test_twotheta_axis_sets_twotheta_in_parity_only():
    """C matches "-twotheta" inside "-twotheta_axis": the axis' first number becomes 2theta (deg)."""
    argv = ["-twotheta_axis", "3", "0", "0"]
    assert geo(argv, "parity").detector.twotheta == pytest.approx(3 * DEG, abs=ANGLE_ATOL_RAD)
    assert geo(argv, "spec").detector.twotheta == 0.0


def test_misset_seed_reads_misset_angles_in_parity_only():
    """C matches "-misset" inside "-misset_seed" and reads the next three tokens as angles."""
    argv = ["-misset_seed", "7", "-N", "5"]
    p = geo(argv, "parity").crystal.cell.misset_used
    assert p is not None
    np.testing.assert_allclose(p, [7 * DEG, 0.0, 5 * DEG], atol=ANGLE_ATOL_RAD)
    assert geo(argv, "spec").crystal.cell.misset_used is None
    cfg, _ = config_from_args(BASE + argv, mode="spec")
    assert cfg.misset_seed == -7


# ---------------------------------------------------------------- conventions

CONVENTIONS = {
    # flag: beam, fdet, sdet, odet, polar, spindle, pivot, pix0 for a 64 x 0.1 mm detector at 100 mm
    "-mosflm": ([1, 0, 0], [0, 0, 1], [0, -1, 0], [1, 0, 0], [0, 0, 1], [0, 0, 1], "beam", [0.1, 3.3 * MM, -3.3 * MM]),
    "-denzo": ([1, 0, 0], [0, 0, 1], [0, -1, 0], [1, 0, 0], [0, 0, 1], [0, 0, 1], "beam",
               [0.1, 3.25 * MM, -3.25 * MM]),
    "-adxv": ([0, 0, 1], [1, 0, 0], [0, -1, 0], [0, 0, 1], [1, 0, 0], [1, 0, 0], "beam",
              [-3.25 * MM, 3.25 * MM, 0.1]),
    "-xds": ([0, 0, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0], [1, 0, 0], "sample", [-3.2 * MM, -3.2 * MM, 0.1]),
    "-dials": ([0, 0, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 1, 0], [0, 1, 0], "sample",
               [-3.2 * MM, -3.2 * MM, 0.1]),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("flag", sorted(CONVENTIONS))
def test_convention_bases_and_default_centre(flag, mode):
    beam, f, s, o, pol, spindle, pivot, pix0 = CONVENTIONS[flag]
    i = geo([flag, "-distance", "100"], mode)
    assert i.detector.convention == flag[1:].upper()
    for got, want in ((i.detector.beam, beam), (i.detector.fdet, f), (i.detector.sdet, s),
                      (i.detector.odet, o), (i.beam.polar_vector, pol), (i.crystal.spindle, spindle)):
        assert_vec(got, want, UNIT_VECTOR_ATOL)
    assert i.detector.pivot == pivot
    assert_vec(i.detector.pix0, pix0)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("flag,Fb,Sb", [("-mosflm", 4.05, 2.55), ("-denzo", 4.0, 2.5), ("-adxv", 2.5, 6.4 - 4.0)])
def test_convention_beam_centre_mapping(flag, Fb, Sb, mode):
    i = geo([flag, "-distance", "100", "-Xbeam", "2.5", "-Ybeam", "4.0"], mode)
    assert i.detector.Fbeam == pytest.approx(Fb * MM, abs=GEOMETRY_ATOL_M)
    assert i.detector.Sbeam == pytest.approx(Sb * MM, abs=GEOMETRY_ATOL_M)
    assert i.detector.Xbeam == pytest.approx(2.5 * MM, abs=GEOMETRY_ATOL_M)
    assert i.detector.Ybeam == pytest.approx(4.0 * MM, abs=GEOMETRY_ATOL_M)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("flag", ["-xds", "-dials"])
def test_xds_dials_origin(flag, mode):
    i = geo([flag, "-ORGX", "20", "-ORGY", "40", "-close_distance", "90"], mode)
    assert i.detector.ORGX == pytest.approx(20.0, abs=1e-9)
    assert i.detector.ORGY == pytest.approx(40.0, abs=1e-9)
    pix0 = np.array([-1.95 * MM, -3.95 * MM, 0.09])
    assert_vec(i.detector.pix0, pix0)
    # DIALS origin: pix0 on lab z, y, -x, in mm
    np.testing.assert_allclose(i.detector.dials_origin, [90.0, -3.95, 1.95], atol=1e-6)


# ---------------------------------------------------------------- pix0

def test_pix0_vector_honoured_in_spec_mode():
    i = geo(["-pix0_vector", "0.1", "0.002", "-0.004"], "spec")
    assert i.detector.convention == "CUSTOM"
    assert_vec(i.detector.pix0, [0.1, 0.002, -0.004])
    assert i.detector.Fbeam == pytest.approx(0.004, abs=GEOMETRY_ATOL_M)
    assert i.detector.Sbeam == pytest.approx(0.002, abs=GEOMETRY_ATOL_M)


def test_pix0_vector_mm_converted_in_spec_mode():
    i = geo(["-pix0_vector_mm", "100", "2", "-4"], "spec")
    assert_vec(i.detector.pix0, [0.1, 0.002, -0.004])


@pytest.mark.parametrize("flag,vals", [("-pix0_vector", ["0.1", "0.002", "-0.004"]),
                                       ("-pix0_vector_mm", ["100", "2", "-4"])])
def test_pix0_vector_recomputed_in_parity_mode(flag, vals):
    i = geo([flag, *vals, "-distance", "100"], "parity")
    # CUSTOM convention, beam pivot, beam centre at the detector centre (3.2 mm)
    assert_vec(i.detector.pix0, [0.1, 3.2 * MM, -3.2 * MM])


def test_pix0_vector_rotated_in_spec_mode():
    i = geo(["-pix0_vector", "0.1", "0.002", "-0.004", "-detector_rotz", "4"], "spec")
    assert_vec(i.detector.pix0, rot_z(4 * DEG) @ np.array([0.1, 0.002, -0.004]))


# ---------------------------------------------------------------- AT-GEO-005 / 006 (via rendered pixels)

def _solid_angles(args, mode="spec"):
    """Per-pixel solid angle recovered from a render with F = 1, N = 1, no polarization."""
    argv = ["-default_F", "1", "-cell", "100", "100", "100", "-N", "1", "-nopolar", "-oversample", "1",
            "-detpixels", "9", "-pixel", "2", "-distance", "50"]
    # -curved_det must not be the last token (C ignores it there; see test_curved_det_as_last_argument)
    argv = list(args) + argv
    cfg, _ = config_from_args(argv, mode=mode)
    res = simulate(cfg)
    return res.image.astype(np.float64) / (R_E_SQR * res.prepared.beam.fluence), res


def _plane_R(prep):
    i = prep
    px = i.detector.pixel_size
    s_idx, f_idx = np.mgrid[0:prep.spixels, 0:prep.fpixels]
    P = (i.detector.pix0[None, None, :] + ((f_idx + 0.5) * px)[..., None] * i.detector.fdet[None, None, :]
         + ((s_idx + 0.5) * px)[..., None] * i.detector.sdet[None, None, :])
    return np.linalg.norm(P, axis=-1)


@pytest.mark.parametrize("mode", MODES)
def test_geo006_point_pixel_solid_angle(mode):
    omega, res = _solid_angles(["-point_pixel", "-detector_rotx", "10"], mode)
    R = _plane_R(res.prepared)
    np.testing.assert_allclose(omega, 1.0 / R**2, rtol=2 * FLOAT32_STORAGE_RTOL)
    assert res.stats.omega_sum == pytest.approx(float(np.sum(1.0 / R**2)), rel=SOLID_ANGLE_RTOL)


@pytest.mark.parametrize("mode", MODES)
def test_geo006_default_solid_angle_with_obliquity(mode):
    omega, res = _solid_angles(["-detector_rotx", "10"], mode)
    prep = res.prepared
    R = _plane_R(prep)
    px, cd = prep.detector.pixel_size, prep.detector.close_distance
    expected = px * px / R**2 * cd / R
    np.testing.assert_allclose(omega, expected, rtol=2 * FLOAT32_STORAGE_RTOL)
    assert res.stats.omega_sum == pytest.approx(float(np.sum(expected)), rel=SOLID_ANGLE_RTOL)
    # the obliquity really matters on this detector
    assert expected.max() / expected.min() > 1.05


@pytest.mark.parametrize("mode", MODES)
def test_geo005_curved_detector_pixels_equidistant(mode):
    omega, res = _solid_angles(["-curved_det", "-point_pixel"], mode)
    d = res.prepared.detector.distance
    np.testing.assert_allclose(omega, 1.0 / d**2, rtol=2 * FLOAT32_STORAGE_RTOL)
    flat, _ = _solid_angles(["-point_pixel"], mode)
    assert flat.min() < 0.97 / d**2  # a flat detector's corners are further away
    # default solid angle on a curved detector: pixel^2 / d^2 * close_distance / d everywhere
    omega2, res2 = _solid_angles(["-curved_det"], mode)
    px = res2.prepared.detector.pixel_size
    np.testing.assert_allclose(omega2, px * px / d**3 * res2.prepared.detector.close_distance,
                               rtol=2 * FLOAT32_STORAGE_RTOL)


def test_geo005_curved_detector_positions_are_rotations_of_the_beam():
    """Spot-check one off-centre pixel: the curved position is distance * beam rotated about s and f
    by the angles (lab offsets from the direct beam / distance) -- not the flat position rescaled."""
    _omega, res = _solid_angles(["-curved_det", "-point_pixel", "-Xbeam", "9", "-Ybeam", "9"])
    flat, _ = _solid_angles(["-point_pixel", "-Xbeam", "9", "-Ybeam", "9"])
    # with a point pixel and F = N = 1 every curved pixel receives 1/d^2; the flat ones do not
    d = res.prepared.detector.distance
    assert np.ptp(_omega) <= 4 * FLOAT32_STORAGE_RTOL / d**2
    assert np.ptp(flat) > 0.01 / d**2


# ---------------------------------------------------------------- auto-selection of steps

PHI_CASES = [
    # (phisteps, osc deg, phistep deg) given (-1: not given) -> expected (phisteps, osc deg, phistep deg)
    ((-1, -1, -1), (1, 0.0, 0.0)),
    ((-1, -1, 0.5), (2, 0.5, 0.5)),
    ((-1, 2.0, -1), (2, 2.0, 1.0)),
    ((-1, 2.0, 0.5), (4, 2.0, 0.5)),
    ((-1, 2.0, 0.3), (7, 2.0, 0.3)),
    ((5, -1, -1), (5, 1.0, 0.2)),  # count only: 1 degree
    ((0, -1, -1), (1, 1.0, 1.0)),
    ((5, -1, 0.5), (2, 0.5, 0.5)),
    ((4, 2.0, -1), (4, 2.0, 0.5)),
    ((4, 2.0, 0.1), (4, 2.0, 0.1)),
]


@pytest.mark.parametrize("given,expected", PHI_CASES)
def test_phi_step_auto_selection(given, expected):
    args = []
    for flag, v in zip(("-phisteps", "-osc", "-phistep"), given):
        if v != -1:
            args += [flag, str(v)]
    mode = "spec"
    if given[0] == 0:
        # an explicit zero count is an error in spec mode; parity keeps C's "not given" (with a warning)
        with pytest.raises(UsageError, match="-phisteps 0"):
            geo(args)
        mode = "parity"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        i = geo(args, mode)
    assert i.sampling.phisteps == expected[0]
    assert i.sampling.osc == pytest.approx(expected[1] * DEG, abs=ANGLE_ATOL_RAD)
    assert i.sampling.phistep == pytest.approx(expected[2] * DEG, abs=ANGLE_ATOL_RAD)


AUTO_CASES = [
    # (steps, range, step) -> C's completion (divergence/dispersion rules; count-only range 1.0)
    ((-1, -1.0, -1.0), (1, 0.0, 0.0)),
    ((-1, -1.0, 0.2), (2, 0.2, 0.2)),
    ((-1, 0.6, -1.0), (2, 0.6, 0.6)),
    ((-1, 0.6, 0.2), (3, 0.6, 0.2)),
    ((-1, 0.7, 0.2), (4, 0.7, 0.2)),
    ((4, -1.0, -1.0), (4, 1.0, 0.25)),
    ((4, -1.0, 0.2), (2, 0.2, 0.2)),
    ((4, 0.6, -1.0), (4, 0.6, 0.2)),
    ((1, 0.6, -1.0), (2, 0.6, 0.6)),
    ((4, 0.6, 0.1), (4, 0.6, 0.1)),
]


@pytest.mark.parametrize("given,expected", AUTO_CASES)
def test_auto_steps_rules(given, expected):
    steps, rng, step = select_steps(given[0], given[1], given[2], DIVERGENCE_RULE)
    assert steps == expected[0]
    assert rng == pytest.approx(expected[1], abs=1e-15)
    assert step == pytest.approx(expected[2], abs=1e-15)


def test_divergence_auto_selection_in_prepare():
    # only a range (mrad): step = range, 2 steps
    i = geo(["-hdivrange", "0.6", "-vdivrange", "0.4"])
    assert i.sampling.hdivstep == pytest.approx(0.6e-3, abs=1e-15)
    assert i.sampling.vdivstep == pytest.approx(0.4e-3, abs=1e-15)
    # range and step: ceil(range / step) points per axis, square grid keeps all of them
    p = geo(["-hdivrange", "0.6", "-hdivstep", "0.2", "-vdivrange", "0.7", "-vdivstep", "0.2", "-square_div"])
    assert p.sources.shape[0] == 3 * 4
    # only steps: range 1 rad (!), step range/steps
    p = geo(["-hdivsteps", "4", "-vdivsteps", "2", "-square_div"])
    assert p.sampling.hdivrange == pytest.approx(1.0) and p.sampling.hdivstep == pytest.approx(0.25)
    assert p.sources.shape[0] == 8


def test_divergence_round_trimming():
    square = geo(["-divergence", "2", "-divsteps", "5", "-square_div"]).sources.shape[0]
    rnd = geo(["-divergence", "2", "-divsteps", "5", "-round_div"]).sources.shape[0]
    assert square == 25
    # kept where h^2 + v^2 <= 1.1 (mrad^2) on the grid -1, -0.5, 0, 0.5, 1 mrad: 13 points
    assert rnd == 13


def test_dispersion_auto_selection_in_prepare():
    p = geo(["-dispersion", "4", "-dispsteps", "3", "-lambda", "1"])
    lams = sorted(p.sources[:, 3])
    np.testing.assert_allclose(lams, [0.98e-10, 1.0e-10, 1.02e-10], rtol=1e-12)
    p = geo(["-dispersion", "4", "-lambda", "1"])  # range only: 2 wavelengths, step = range
    np.testing.assert_allclose(sorted(p.sources[:, 3]), [0.98e-10, 1.02e-10], rtol=1e-12)
    # count only: the dispersion defaults to 0 (not "unset"), so the step is 0 and the sanity
    # check leaves one wavelength
    p = geo(["-dispsteps", "3", "-lambda", "1"])
    np.testing.assert_allclose(p.sources[:, 3], [1.0e-10], rtol=1e-12)
    assert p.sampling.dispsteps == 1


THICK_CASES = [
    # (-detector_thick um, -detector_thicksteps) -> (thicksteps, thick m, thickstep m)
    ((None, None), (1, 0.0, 0.0)),
    ((450, None), (2, 450e-6, 225e-6)),  # range only: steps 2, step = range / 2 (unlike the others)
    ((450, 3), (3, 450e-6, 225e-6)),  # range and steps: step = range / (steps - 1)
    ((450, 1), (2, 450e-6, 450e-6)),
    # count only: the thickness defaults to 0 (not "unset"), so C's 0.5 um branch is unreachable
    # from the command line; the sanity check leaves one layer
    ((None, 5), (1, 0.0, 0.0)),
]


@pytest.mark.parametrize("given,expected", THICK_CASES)
def test_thickness_auto_selection(given, expected):
    args = []
    if given[0] is not None:
        args += ["-detector_thick", str(given[0])]
    if given[1] is not None:
        args += ["-thicksteps", str(given[1])]
    i = geo(args + ["-detector_abs", "300"])
    assert i.sampling.thicksteps == expected[0]
    assert i.sampling.thick == pytest.approx(expected[1], abs=1e-15)
    assert i.sampling.thickstep == pytest.approx(expected[2], abs=1e-15)
    if expected[1] > 0:
        assert i.sampling.mu == pytest.approx(1.0 / 300e-6)


def test_mosaic_domain_auto_selection():
    assert geo(["-mosaic", "0.5"]).crystal.mosaic_domains == 10
    assert geo(["-mosaic", "0"]).crystal.mosaic_domains == 1
    i = geo(["-mosaic_domains", "4"])
    assert i.crystal.mosaic_domains == 1 and i.crystal.mosaic_spread == 0.0
    assert geo(["-mosaic", "0.5", "-mosaic_domains", "4"]).crystal.mosaic_domains == 4


def test_curved_det_as_last_argument_spec_mode():
    cfg, _ = config_from_args(BASE + ["-curved_det"], mode="spec")
    assert cfg.curved_detector


def test_curved_det_as_last_argument_ignored_in_parity_mode():
    """C tests argc > i+1 even for this switch: the last token is ignored."""
    cfg, _ = config_from_args(BASE + ["-curved_det"], mode="parity")
    assert not cfg.curved_detector
    cfg, _ = config_from_args(BASE + ["-curved_det", "-nonoise"], mode="parity")
    assert cfg.curved_detector


# ---------------------------------------------------------------- Spec A pivot rules (spec mode)

@pytest.mark.parametrize("args,spec,parity", [
    (["-close_distance", "200"], "sample", "beam"),  # MOSFLM default: C forces beam
    (["-distance", "100", "-ORGX", "20", "-ORGY", "40"], "sample", "beam"),
    (["-distance", "100", "-Xclose", "3", "-Yclose", "3.5"], "sample", "beam"),
    (["-xds", "-distance", "100", "-Xbeam", "3", "-Ybeam", "3"], "beam", "sample"),
    (["-dials", "-close_distance", "100", "-Xbeam", "3"], "beam", "sample"),
    (["-Xbeam", "3", "-close_distance", "90"], "sample", "beam"),  # the last forcing flag wins
    (["-close_distance", "90", "-Xbeam", "3"], "beam", "beam"),
    (["-close_distance", "90", "-pivot", "beam"], "beam", "beam"),  # -pivot overrides both
    (["-pivot", "sample", "-Xbeam", "3"], "sample", "beam"),
    # -distance and -twotheta do not force a pivot: the convention's stays
    (["-xds", "-distance", "100"], "sample", "sample"),
    (["-twotheta", "5"], "beam", "beam"),
])
def test_spec_pivot_rules(args, spec, parity):
    assert geo(args, "spec").detector.pivot == spec
    assert geo(args, "parity").detector.pivot == parity


def test_spec_close_distance_alone_pivots_on_the_sample():
    """-close_distance 200 alone: the near point (detector centre, 3.2 mm) stays 200 mm from the sample."""
    d = geo(["-close_distance", "200"], "spec").detector
    assert_vec(d.pix0, [0.2, 3.2 * MM, -3.2 * MM])
    assert d.Fclose == pytest.approx(3.2 * MM, abs=GEOMETRY_ATOL_M)
    # C pivots on the default beam centre (3.25 mm + half a pixel)
    assert_vec(geo(["-close_distance", "200"], "parity").detector.pix0, [0.2, 3.3 * MM, -3.3 * MM])


def test_spec_orgx_places_the_near_point_under_mosflm():
    d = geo(["-distance", "100", "-ORGX", "20", "-ORGY", "40"], "spec").detector
    assert d.ORGX == pytest.approx(20.0, abs=1e-9) and d.ORGY == pytest.approx(40.0, abs=1e-9)
    assert_vec(d.pix0, [0.1, 3.95 * MM, -1.95 * MM])


def test_spec_beam_centre_flags_are_equivalent():
    """AT-PARALLEL-005: -Xclose/-Yclose with -close_distance and -Xbeam/-Ybeam with -distance
    describe the same untilted detector (MOSFLM axes and half-pixel shift for both)."""
    by_close = geo(["-close_distance", "90", "-Xclose", "3", "-Yclose", "3.5"], "spec").detector
    by_beam = geo(["-distance", "90", "-Xbeam", "3", "-Ybeam", "3.5"], "spec").detector
    assert by_close.pivot == "sample" and by_beam.pivot == "beam"
    assert_vec(by_close.pix0, [0.09, 3.05 * MM, -3.55 * MM])
    assert_vec(by_beam.pix0, by_close.pix0)
    assert by_close.Fbeam == pytest.approx(3.55 * MM, abs=GEOMETRY_ATOL_M)


# ---------------------------------------------------------------- header after a 2theta swing

TILT = ["-close_distance", "90", "-Xbeam", "2.5", "-Ybeam", "4.0", "-detector_rotx", "5", "-twotheta", "10",
        "-pivot", "beam"]


def test_spec_header_describes_the_rendered_detector_after_twotheta():
    d = geo(TILT, "spec").detector
    h = d.header_values()
    b = d.beam
    t = float(d.pix0 @ d.odet) / float(b @ d.odet)  # the beam meets the rendered plane at t * b
    R = t * b - d.pix0
    F, S = float(R @ d.fdet), float(R @ d.sdet)
    assert h["distance"] == pytest.approx(t * 1000.0, rel=1e-12)
    # MOSFLM: X = S - half a pixel, Y = F - half a pixel
    assert h["beam_center_x"] == pytest.approx((S - 0.05 * MM) * 1000.0, rel=1e-12)
    assert h["beam_center_y"] == pytest.approx((F - 0.05 * MM) * 1000.0, rel=1e-12)
    assert h["mosflm_center_x"] == pytest.approx(h["beam_center_x"], rel=1e-12)
    assert h["adxv_center_x"] == pytest.approx(F * 1000.0, rel=1e-12)
    # that point of the detector lies on the beam
    spot = d.pix0 + F * d.fdet + S * d.sdet
    np.testing.assert_allclose(np.cross(spot, b), 0.0, atol=1e-15)
    # with the beam pivot the beam meets the detector at the requested centre, 90 mm from the sample
    assert h["beam_center_x"] == pytest.approx(2.5) and h["beam_center_y"] == pytest.approx(4.0)
    assert h["mosflm_center_x"] == pytest.approx(2.5) and h["mosflm_center_y"] == pytest.approx(4.0)
    assert h["distance"] == pytest.approx(90.0)
    # C computes DISTANCE and the convention centres with the 2theta swing left out
    hp = geo(TILT, "parity").detector.header_values()
    assert hp["beam_center_x"] == pytest.approx(2.5) and hp["beam_center_y"] == pytest.approx(4.0)
    assert hp["distance"] == pytest.approx(88.63269777109872, rel=1e-12)
    assert hp["mosflm_center_x"] == pytest.approx(2.7365260492855974, rel=1e-12)


def test_spec_header_unchanged_without_twotheta():
    args = ["-close_distance", "90", "-Xbeam", "2.5", "-Ybeam", "4.0", "-detector_rotx", "5", "-detector_roty", "3"]
    assert geo(args, "spec").detector.header_values() == geo(args, "parity").detector.header_values()


def test_spec_header_after_twotheta_with_the_sample_pivot():
    """Sample pivot: the header's beam spot is where the beam meets the swung detector."""
    d = geo(["-xds", "-close_distance", "90", "-ORGX", "20", "-ORGY", "40", "-twotheta", "10"], "spec").detector
    h = d.header_values()
    F, S = h["beam_center_x"] * MM, h["beam_center_y"] * MM  # XDS axes are the detector's
    spot = d.pix0 + F * d.fdet + S * d.sdet
    np.testing.assert_allclose(np.cross(spot, d.beam), 0.0, atol=1e-15)
    assert h["distance"] * MM == pytest.approx(float(np.linalg.norm(spot)), rel=1e-12)
    assert h["xds_orgx"] == pytest.approx(20.0) and h["close_distance"] == pytest.approx(90.0)
