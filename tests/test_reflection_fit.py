"""Per-reflection structure factors (nbnumba.reflection_fit): exact Jacobian, F refinement, the refine-f command."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nbnumba import config_from_args
from nbnumba.errors import ConfigError
from nbnumba.gradients import render_image
from nbnumba.io.reflections import ReflectionList, expand_to_p1
from nbnumba.reflection_fit import config_with_structure_factors, refine_structure_factors, reflection_jacobian

ARGS = ("-cell 50 60 70 90 90 90 -N 6 -lambda 1.0 -detpixels 40 -pixel 0.24 -distance 60 "
        "-misset 10 20 30 -oversample 1 -phi 0 -osc 0.5 -phisteps 2 -water 0.02")
SPACEGROUP = "P 21 21 21"
PEAK = 2000.0  # expected photons in the brightest pixel


@pytest.fixture(scope="module")
def hklfile(tmp_path_factory):
    """P 21 21 21 amplitudes on an ASU box, expanded to P1 and written as a text hkl file."""
    hkl = np.array([(h, k, l) for h in range(0, 10) for k in range(0, 11) for l in range(0, 13)])
    F = np.random.default_rng(1).uniform(50.0, 150.0, len(hkl))
    p1 = expand_to_p1(ReflectionList(hkl, F, SPACEGROUP))
    path = tmp_path_factory.mktemp("hkl") / "p1.hkl"
    np.savetxt(path, np.column_stack([p1.hkl, p1.F]), fmt="%d %d %d %.6f")
    return str(path)


def _config(hklfile, extra="", mode="spec"):
    cfg, _ = config_from_args((ARGS + f" -hkl {hklfile} " + extra).split(), mode=mode)
    return cfg


@pytest.fixture(scope="module")
def truth(hklfile):
    cfg = _config(hklfile)
    jac = reflection_jacobian(cfg)
    image = render_image(cfg)
    return cfg, jac, image, PEAK / image.max()


def test_the_split_image_adds_up_to_the_render(truth):
    cfg, jac, image, _scale = truth
    assert jac.matrix.shape == (1600, len(jac.hkl)) and len(jac.hkl) > 50
    assert jac.in_table.all() and np.all(jac.F > 0)
    assert jac.background.min() > 0  # the water
    rebuilt = jac.image()
    assert np.max(np.abs(rebuilt - image)) < 1e-10 * image.max()
    # each pixel's reflections are the lattice points its evaluations are nearest to
    assert np.all(np.asarray(jac.matrix.sum(axis=0)).reshape(-1) > 0)


@pytest.mark.parametrize("extra", ["-oversample 2 -oversample_polar -oversample_omega -detpixels 24",
                                   "-oversample 2 -detpixels 24 -mosaic 0.3 -mosaic_domains 3"])
def test_the_split_matches_in_parity_mode_with_running_products(hklfile, extra):
    """C's running-sum products (parity mode, per-sub-pixel corrections) multiply every reflection's share."""
    cfg = _config(hklfile, extra, mode="parity")
    jac = reflection_jacobian(cfg, slots=2)  # few slots: the pixels that see more are redone with more
    image = render_image(cfg)
    assert np.max(np.abs(jac.image() - image)) < 1e-10 * image.max()


@pytest.mark.parametrize("redo_one_by_one", [64, 0])
def test_pixels_with_more_reflections_than_slots_are_redone(truth, redo_one_by_one, monkeypatch):
    """33 pixels see two reflections: redone one by one, or (threshold 0) the whole tile with more slots."""
    from nbnumba import reflection_fit

    monkeypatch.setattr(reflection_fit, "REDO_ONE_BY_ONE", redo_one_by_one)
    cfg, jac, _image, _scale = truth
    assert np.bincount(np.diff(jac.matrix.indptr)).tolist() == [0, 1567, 33]
    few = reflection_jacobian(cfg, slots=1)
    np.testing.assert_array_equal(few.hkl, jac.hkl)
    assert (few.matrix != jac.matrix).nnz == 0  # the same sums, in the same order
    np.testing.assert_array_equal(few.background, jac.background)


def test_derivatives_match_finite_differences(truth):
    cfg, jac, image, _scale = truth
    strongest = np.argsort(np.asarray(jac.matrix.sum(axis=0)).reshape(-1) * jac.F ** 2)[-3:]
    dI = jac.derivative()
    for r in strongest:
        step = 0.01 * jac.F[r]
        up = render_image(config_with_structure_factors(cfg, jac.hkl[r], jac.F[r] + step))
        down = render_image(config_with_structure_factors(cfg, jac.hkl[r], jac.F[r] - step))
        fd = ((up - down) / (2 * step)).reshape(-1)
        exact = dI[:, r].toarray().reshape(-1)
        assert np.abs(exact).max() > 0
        # I is quadratic in F: the central difference is exact up to rounding
        assert np.max(np.abs(fd - exact)) < 1e-6 * np.abs(exact).max(), jac.hkl[r]


def test_interpolation_is_refused(hklfile):
    cfg = _config(hklfile, "-interpolate")
    with pytest.raises(ConfigError, match="nearest-neighbour"):
        reflection_jacobian(cfg)


def _perturbed(cfg, jac, count, seed, spacegroup=None):
    """Start model: F of the ``count`` strongest reflections (or ASU groups) times 0.8 or 1.2."""
    rng = np.random.default_rng(seed)
    share = np.asarray(jac.matrix.sum(axis=0)).reshape(-1) * jac.F ** 2
    if spacegroup is None:
        groups = np.arange(len(jac.hkl))
    else:
        import gemmi

        sg = gemmi.SpaceGroup(spacegroup)
        asu, ops = gemmi.ReciprocalAsu(sg), sg.operations()
        reps = [tuple(asu.to_asu([int(v) for v in h], ops)[0]) for h in jac.hkl]
        _u, groups = np.unique(np.array(reps), axis=0, return_inverse=True)
        groups = groups.reshape(-1)
    group_share = np.bincount(groups, weights=share)
    chosen = np.argsort(group_share)[-count:]
    factor = np.ones(group_share.size)
    factor[chosen] = rng.choice([0.8, 1.2], size=count)
    F = jac.F * factor[groups]
    return config_with_structure_factors(cfg, jac.hkl, F), chosen, groups


@pytest.mark.parametrize("spacegroup", [None, SPACEGROUP])
def test_refinement_recovers_perturbed_structure_factors(truth, spacegroup):
    cfg, jac, image, scale = truth
    obs = np.random.default_rng(5).poisson(scale * image).astype(np.float64)
    start, chosen, groups = _perturbed(cfg, jac, 20, seed=3, spacegroup=spacegroup)
    res = refine_structure_factors(start, obs, spacegroup=spacegroup)
    assert res.status == "converged", res.message
    assert 0.8 < res.chi2_per_dof < 1.2
    sc = res.parameters["scale"]
    assert abs(sc.value - scale) < 4 * sc.sigma
    index = {tuple(h): i for i, m in enumerate(res.members) for h in m.tolist()}
    z = []
    for g in chosen:
        members = jac.hkl[groups == g]
        assert spacegroup is not None or len(members) == 1
        true_F = jac.F[groups == g][0]  # every member of a group has the same true F
        i = index[tuple(members[0].tolist())]
        assert all(index[tuple(h)] == i for h in members.tolist())  # tied to one F
        assert abs(res.start[i] - true_F) > 0.15 * true_F  # it was perturbed ...
        assert res.sigma[i] < 0.1 * true_F  # ... by two sigma or more
        z.append((res.F[i] - true_F) / res.sigma[i])
    z = np.abs(np.array(z))
    assert np.mean(z < 3.0) >= 0.9, z
    if spacegroup is not None:
        assert len(res.hkl) < len(jac.hkl)  # equivalents and Friedel mates share one F
    # the refined model renders the refined F
    again = reflection_jacobian(res.config)
    for i in range(len(res.hkl)):
        for h in res.members[i]:
            r = np.flatnonzero(np.all(again.hkl == h, axis=1))[0]
            assert again.F[r] == pytest.approx(res.F[i])


def test_restraint_pulls_towards_the_start(truth):
    cfg, jac, image, scale = truth
    obs = np.random.default_rng(6).poisson(scale * image).astype(np.float64)
    start, chosen, _groups = _perturbed(cfg, jac, 5, seed=4)
    free = refine_structure_factors(start, obs, jacobian=None)
    tied = refine_structure_factors(start, obs, restraint=1e6)
    assert np.max(np.abs(tied.F - tied.start)) < 0.01 * np.max(np.abs(free.F - free.start))
    assert np.all(tied.sigma < free.sigma + 1e-12)


def test_bad_arguments_are_refused(truth, hklfile):
    cfg, _jac, image, _scale = truth
    with pytest.raises(ConfigError, match="space group"):
        refine_structure_factors(cfg, image, spacegroup="Q 99")
    with pytest.raises(ConfigError, match="restraint"):
        refine_structure_factors(cfg, image, restraint=-1.0)
    with pytest.raises(ConfigError, match="pixels"):
        refine_structure_factors(cfg, image[:10])
    no_table, _ = config_from_args((ARGS + " -default_F 100").split(), mode="spec")
    with pytest.raises(ConfigError, match="-hkl"):
        refine_structure_factors(no_table, image)


def test_refine_f_command_writes_a_table_and_an_mtz(tmp_path, truth, hklfile):
    import gemmi
    from click.testing import CliRunner

    from cli.main import nbnumba
    from nbnumba.io.floatimage import write_float_image

    cfg, jac, image, scale = truth
    obs = np.random.default_rng(8).poisson(scale * image).astype(np.float32)
    write_float_image(tmp_path / "obs.bin", obs)
    argv = (ARGS + f" -hkl {hklfile}").split()
    out = tmp_path / "F.hkl"
    res = CliRunner().invoke(nbnumba, ["refine-f", "--observed", str(tmp_path / "obs.bin"), "--out", str(out),
                                       "--spacegroup", SPACEGROUP, "--json", str(tmp_path / "fit.json"),
                                       "--", *argv])
    assert res.exit_code == 0, res.output
    assert "status: converged" in res.output
    rows = np.loadtxt(out)
    assert rows.shape[1] == 5 and np.all(rows[:, 4] > 0)
    doc = json.loads((tmp_path / "fit.json").read_text())
    assert doc["status"] == "converged" and "scale" in doc["parameters"]
    mtz_path = tmp_path / "F.mtz"
    res = CliRunner().invoke(nbnumba, ["refine-f", "--observed", str(tmp_path / "obs.bin"), "--out", str(mtz_path),
                                       "--spacegroup", SPACEGROUP, "--", *argv])
    assert res.exit_code == 0, res.output
    mtz = gemmi.read_mtz_file(str(mtz_path))
    assert mtz.spacegroup.hm == SPACEGROUP
    data = np.array(mtz, copy=False)
    assert data.shape == rows.shape
    np.testing.assert_allclose(data[:, 3], rows[:, 3], rtol=1e-5)
    # interpolation on: one line, exit 2, nothing written
    bad = tmp_path / "bad.hkl"
    res = CliRunner().invoke(nbnumba, ["refine-f", "--observed", str(tmp_path / "obs.bin"), "--out", str(bad),
                                       "--", *argv, "-interpolate"])
    assert res.exit_code == 2 and "nearest-neighbour" in res.output and not bad.exists()
