"""A crystal given by -mat: orientation U and cell B, the wavelength convention, cell refinement."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from nbnumba import config_from_args
from nbnumba.errors import ConfigError
from nbnumba.fitting import fit
from nbnumba.gradients import gradient, render_image, resolve_config
from nbnumba.prepare import prepare
from nbnumba.stages.crystal import split_orientation_matrix

# the real A.mat of the golden corpus (a 1 A-ish wavelength Pilatus experiment), on a small detector
RUN = ("-default_F 100 -Na 8 -Nb 8 -Nc 8 -lambda 0.9768 -distance 120 -detpixels 48 -pixel 0.5 -oversample 1 "
       "-nointerpolate -phi 0 -osc 0.3 -phisteps 3")


@pytest.fixture(scope="module")
def mat_config(golden_inputs):
    cfg, _ = config_from_args(RUN.split() + ["-mat", str(golden_inputs / "A.mat")])
    return cfg


def test_split_matrix_renders_the_same_crystal(mat_config):
    split = split_orientation_matrix(mat_config)
    assert split.a_matrix is None and split.umat is not None
    u = split.umat
    np.testing.assert_allclose(u @ u.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(u) == pytest.approx(1.0)
    a, b = prepare(mat_config), prepare(split)
    # the same reciprocal and real cell, to rounding
    np.testing.assert_allclose(b.crystal.reciprocal_matrix, a.crystal.reciprocal_matrix, rtol=1e-12, atol=1e-3)
    np.testing.assert_allclose(b.crystal.cell.cell_A, a.crystal.cell.cell_A, rtol=1e-12)
    np.testing.assert_allclose(b.crystal.U, a.crystal.U, atol=1e-12)
    img_a, img_b = render_image(mat_config), render_image(split)
    assert img_a.max() > 0
    np.testing.assert_allclose(img_b, img_a, rtol=1e-8, atol=1e-12 * img_a.max())


def test_split_refuses_what_it_cannot_split(mat_config):
    with pytest.raises(ConfigError, match="no A matrix"):
        split_orientation_matrix(dataclasses.replace(mat_config, a_matrix=None, cell_angstrom=(50, 50, 50)))
    with pytest.raises(ConfigError, match="both -cell and -mat"):
        split_orientation_matrix(dataclasses.replace(mat_config, cell_angstrom=(50, 50, 50)))


def test_wavelength_convention_with_mat(mat_config):
    """The A matrix is scaled by the run's wavelength: the cell stays put when lambda0 changes."""
    assert mat_config.a_matrix_lambda == pytest.approx(0.9768e-10)
    base = render_image(mat_config)
    other = dataclasses.replace(mat_config, lambda0=0.99e-10)
    # the same crystal seen at another wavelength: a different image ...
    changed = render_image(other)
    assert np.abs(changed - base).max() > 0.1 * base.max()
    # ... equal to the split (cell + U) crystal at that wavelength
    split = dataclasses.replace(split_orientation_matrix(mat_config), lambda0=0.99e-10)
    np.testing.assert_allclose(changed, render_image(split), rtol=1e-8, atol=1e-12 * base.max())
    # C's own rule (no pinned wavelength) rescales the cell with lambda0: the image does not move
    c_rule = dataclasses.replace(mat_config, a_matrix_lambda=None)
    np.testing.assert_allclose(render_image(dataclasses.replace(c_rule, lambda0=0.99e-10)), base,
                               rtol=1e-9, atol=1e-12 * base.max())
    g = gradient(mat_config, ["lambda0"])["lambda0"]
    assert np.abs(g).max() > 0


def test_cell_of_a_mat_crystal_is_refinable(mat_config):
    resolved = resolve_config(mat_config, ["cell_angstrom[0]", "cell_angles[2]"])
    assert resolved.a_matrix is None and resolved.umat is not None
    g = gradient(mat_config, ["cell_angstrom[0]", "cell_angstrom[2]"])
    assert all(np.abs(v).max() > 0 for v in g.values())
    split = split_orientation_matrix(mat_config)
    a, b, c = split.cell_angstrom
    truth = dataclasses.replace(split, cell_angstrom=(a * 1.003, b * 0.998, c))
    observed = render_image(truth)
    res = fit(mat_config, observed, ["cell_angstrom[0]", "cell_angstrom[1]"], weights="unit")
    assert res.parameters["cell_angstrom[0]"].value == pytest.approx(a * 1.003, rel=1e-6)
    assert res.parameters["cell_angstrom[1]"].value == pytest.approx(b * 0.998, rel=1e-6)
    # the orientation is kept
    np.testing.assert_allclose(res.config.umat, split.umat, atol=1e-15)


def test_orientation_path_realises_the_requested_cell_exactly():
    """With ``umat`` the cell is built exactly; C's ``-cell`` construction is off for triclinic cells."""
    import math

    flags = "-default_F 100 -N 4 -lambda 1 -distance 100 -detpixels 16 -cell 26.75 31.31 33.67 88.69 71.53 68.14"
    cfg, _ = config_from_args(flags.split())
    want = (26.75, 31.31, 33.67, 88.69, 71.53, 68.14)
    exact = prepare(dataclasses.replace(cfg, umat=np.eye(3))).crystal.cell.cell_A
    np.testing.assert_allclose(exact, want, rtol=1e-12)
    # C's construction (both modes today) keeps the lengths but not the angles: beta comes out 71.63
    c_cell = prepare(cfg).crystal.cell.cell_A
    np.testing.assert_allclose(c_cell[:3], want[:3], rtol=1e-12)
    assert abs(c_cell[4] - 71.53) > 0.05
    assert math.isclose(c_cell[4], 71.6263396881937, rel_tol=1e-9)


REAL = ("-nonoise -nointerpolate -oversample 1 -lambda 0.9768 -Na 18 -Nb 24 -Nc 15 -distance 100 -pixel 0.172 "
        "-detpixels 192 -osc 0.3 -phi 0 -phisteps 3 -spindle_axis -1 0 0")


@pytest.mark.slow
def test_real_crystal_distance_orientation_and_cell_recovered_within_sigma(golden_inputs):
    """A.mat + scaled.hkl with Poisson noise: distance, orientation and cell perturbed together.

    Four noise realisations (seeds 12-15, all of them: none left out). Realisation 12 is an unlucky
    one: its likelihood minimum itself lies 3.7 sigma from the true ``misset[1]`` (a chi2 profile
    shows it), and the joint fit ends 5.8 sigma away there; the others are within 2 sigma.
    """
    import math

    argv = REAL.split() + ["-hkl", str(golden_inputs / "scaled.hkl"), "-mat", str(golden_inputs / "A.mat")]
    truth = split_orientation_matrix(config_from_args(argv)[0])
    image = render_image(truth)
    scale = 2000.0 / image.max()
    a, b, c = truth.cell_angstrom
    start = dataclasses.replace(truth, distance=0.1005, misset=(math.radians(0.05), math.radians(-0.04), 0.0),
                                cell_angstrom=(a * 1.003, b * 0.998, c * 1.002))
    params = ["distance", "misset[0]", "misset[1]", "misset[2]", "cell_angstrom[0]", "cell_angstrom[1]",
              "cell_angstrom[2]"]
    want = {"distance": 0.1, "misset[0]": 0.0, "misset[1]": 0.0, "misset[2]": 0.0, "cell_angstrom[0]": a,
            "cell_angstrom[1]": b, "cell_angstrom[2]": c, "scale": scale}
    z = []
    for seed in (12, 13, 14, 15):
        # a 2-photon background a pixel; weights: the variances of the simulated counts
        observed = np.random.default_rng(seed).poisson(scale * image + 2.0).astype(float) - 2.0
        res = fit(start, observed, params, weights=1.0 / (scale * image + 2.0))
        assert res.status == "converged", res.message
        assert 0.9 < res.chi2_per_dof < 1.1
        z += [(res.parameters[n].value - v) / res.parameters[n].sigma for n, v in want.items()]
    z = np.array(z)
    assert np.all(np.abs(z) < 6.0), z
    assert 0.6 < float(np.sqrt(np.mean(z * z))) < 1.5, z
