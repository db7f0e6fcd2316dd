"""Finite-difference gradients, refinement, and the gradients/refine commands."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from nbnumba import config_from_args, prepare, simulate
from nbnumba.errors import ConfigError
from nbnumba.fitting import fit
from nbnumba.gradients import (
    default_step,
    difference_plan,
    gradient,
    jacobian,
    render_image,
    resolve_config,
)
from nbnumba.io.floatimage import read_float_image, write_float_image

# a tiny detector: 32 x 32 pixels of 0.4 mm, cubic 50 A cell, N 5, 1 A
FLAGS = ("-cell 50 50 50 90 90 90 -default_F 100 -N 5 -lambda 1 -detpixels 32 -pixel 0.4 "
         "-distance 100 -misset 10 20 30 -oversample 2")
RTD = 180.0 / math.pi


@pytest.fixture(scope="module")
def cfg():
    c, _ = config_from_args(FLAGS.split())
    return c


@pytest.fixture(scope="module")
def observed(cfg):
    return simulate(cfg).image


def test_render_image_is_simulate_in_double(cfg, observed):
    img = render_image(cfg)
    assert img.dtype == np.float64 and img.shape == (32, 32)
    np.testing.assert_allclose(img, observed, rtol=1e-7, atol=0)
    assert np.array_equal(img.astype(np.float32), observed)


def test_fluence_gradient_is_image_over_fluence(cfg):
    img = render_image(cfg)
    g = gradient(cfg, ["fluence"])["fluence"]
    lit = img > 0
    assert lit.sum() > 100
    rel = np.abs(g[lit] * cfg.fluence - img[lit]) / img[lit]
    assert rel.max() < 1e-6
    assert np.all(g[~lit] == 0)


def test_total_intensity_derivative_is_step_independent(cfg):
    d_default = gradient(cfg, "distance", loss=np.sum)["distance"]
    d_small = gradient(cfg, "distance", steps={"distance": 1e-6}, loss=np.sum)["distance"]
    assert d_default < 0  # farther detector, fewer photons
    assert d_small == pytest.approx(d_default, rel=1e-3)
    # the loss derivative is the sum of the image gradient
    g = gradient(cfg, "distance")["distance"]
    assert g.sum() == pytest.approx(d_default, rel=1e-9)


def test_jacobian_columns(cfg):
    J = jacobian(cfg, ["distance", "misset[0]"])
    g = gradient(cfg, ["misset[0]"])
    assert J.shape == (32 * 32, 2)
    np.testing.assert_allclose(J[:, 1], g["misset[0]"].reshape(-1), rtol=1e-12)


def test_misset_gradient_matches_a_larger_step(cfg):
    g1 = gradient(cfg, "misset[1]")["misset[1]"]
    g2 = gradient(cfg, "misset[1]", steps={"misset[1]": 1e-4})["misset[1]"]
    assert np.linalg.norm(g1 - g2) < 1e-3 * np.linalg.norm(g1)


def test_default_steps():
    assert default_step("distance", 0.1) == pytest.approx(1e-5)
    assert default_step("cell_angstrom[1]", 50.0) == pytest.approx(5e-3)
    assert default_step("misset[0]", 0.3) == 1e-5
    assert default_step("detector_rotx", 0.0) == 1e-5
    assert default_step("Na", 5.0) == pytest.approx(5e-4)
    assert default_step("Xbeam", 0.0) == 1e-8


def test_resolve_pins_automatic_choices():
    c, _ = config_from_args("-cell 50 50 50 90 90 90 -default_F 100 -N 5 -detpixels 32 -pixel 0.4".split())
    assert c.oversample == -1 and math.isnan(c.Xbeam) and c.misset is None
    r = resolve_config(c, ["Xbeam", "misset[0]", "cell_angles[2]", "mosaic_spread"])
    prep = prepare(c)
    assert r.oversample == prep.sampling.oversample
    assert r.Xbeam == pytest.approx(prep.detector.Xbeam)
    assert r.misset == (0.0, 0.0, 0.0)
    assert r.cell_angles == pytest.approx((math.pi / 2,) * 3)
    assert r.mosaic_spread == 0.0
    np.testing.assert_allclose(render_image(r), render_image(c), rtol=1e-12)
    plan = {p[0]: p for p in difference_plan(r, ["mosaic_spread", "Xbeam"], None)}
    assert plan["mosaic_spread"][3] == 0.0  # forward difference at 0
    assert plan["Xbeam"][3] < plan["Xbeam"][1] < plan["Xbeam"][4]


@pytest.mark.parametrize("param, message", [
    ("fpixels", "not a continuous parameter"),
    ("convention", "not a continuous parameter"),
    ("roi[0]", "not a continuous parameter"),
    ("distanse", "unknown SimConfig field"),
])
def test_bad_parameters(cfg, param, message):
    with pytest.raises(ConfigError, match=message):
        gradient(cfg, [param])


def test_bad_steps(cfg):
    with pytest.raises(ConfigError, match="not among the parameters"):
        gradient(cfg, ["distance"], steps={"lambda0": 1e-14})
    with pytest.raises(ConfigError, match="positive"):
        gradient(cfg, ["distance"], steps={"distance": 0.0})


def test_fit_recovers_distance_and_scale_from_a_noiseless_image(cfg, observed):
    start = dataclasses.replace(cfg, distance=100.5e-3)
    res = fit(start, observed * 3.0, ["distance"], weights="unit")
    assert res.parameters["distance"].start == pytest.approx(100.5e-3)
    assert abs(res.parameters["distance"].value - 100e-3) < 0.01e-3
    assert res.parameters["scale"].value == pytest.approx(3.0, rel=1e-4)
    assert res.history[-1] < 1e-6 * res.history[0]
    assert res.status == "uncalibrated", res.message  # unit weights
    assert res.config.distance == pytest.approx(res.parameters["distance"].value)


def test_fit_recovers_misset_and_distance(cfg, observed):
    m = cfg.misset
    start = dataclasses.replace(cfg, misset=(m[0] + 0.3 / RTD, m[1], m[2]), distance=100.3e-3)
    seen = []
    res = fit(start, observed, ["misset[0]", "distance"], weights="unit",
              callback=lambda nfev, chi2, values: seen.append(chi2))
    assert abs(res.parameters["misset[0]"].value - m[0]) * RTD < 0.002
    assert abs(res.parameters["distance"].value - 100e-3) < 0.01e-3
    assert seen == res.history[: len(seen)]


def test_fit_checks_image_shape(cfg):
    with pytest.raises(ConfigError, match="observed image has shape"):
        fit(cfg, np.zeros((4, 4)), ["distance"])


def test_cli_gradients(tmp_path):
    from cli.main import nbnumba

    out = tmp_path / "g"
    res = CliRunner().invoke(nbnumba, ["gradients", "--param", "distance", "--param", "misset[0]",
                                       "--step", "distance=2e-6", "--out", str(out), "--", *FLAGS.split()])
    assert res.exit_code == 0, res.output
    assert "misset[0]" in res.output and "L2 norm" in res.output
    summary = json.loads((out / "gradients.json").read_text())
    assert summary["parameters"]["distance"]["step"] == pytest.approx(2e-6)
    g = read_float_image(out / "grad_misset_0.bin", 32, 32)
    assert summary["parameters"]["misset[0]"]["l2_norm"] == pytest.approx(np.linalg.norm(g), rel=1e-5)
    assert (out / "grad_distance.bin").stat().st_size == 32 * 32 * 4
    res = CliRunner().invoke(nbnumba, ["gradients", "--param", "pixels", "--out", str(out), "--", *FLAGS.split()])
    assert res.exit_code == 2 and "unknown SimConfig field 'pixels'" in res.output


def test_cli_refine(tmp_path, observed):
    from cli.main import nbnumba

    obs = tmp_path / "obs.bin"
    write_float_image(obs, observed)
    argv = FLAGS.replace("-distance 100", "-distance 100.4").split()
    res = CliRunner().invoke(nbnumba, ["refine", "--observed", str(obs), "--param", "distance", "--weights", "unit",
                                       "--out", str(tmp_path / "r.json"), "--", *argv])
    assert res.exit_code == 0, res.output
    assert "status: uncalibrated" in res.output and "evaluation 1: chi2" in res.output
    doc = json.loads((tmp_path / "r.json").read_text())
    dist = doc["parameters"]["distance"]
    assert abs(dist["value"] - 0.1) < 1e-5 and dist["start"] == pytest.approx(0.1004) and dist["sigma"] > 0
    assert doc["status"] == "uncalibrated" and doc["correlations"]["names"] == ["distance", "scale"]
