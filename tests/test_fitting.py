"""Least-squares fits with uncertainties (nbnumba.fitting): recovery, calibration, honest status."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from nbnumba import config_from_args
from nbnumba.errors import ConfigError
from nbnumba.fitting import fit
from nbnumba.gradients import render_image
from nbnumba.scan import apply_changes

ARGS = ("-cell 50 60 70 90 90 90 -default_F 100 -N 6 -lambda 1.0 -detpixels 40 -pixel 0.24 -distance 60 "
        "-misset 10 20 30 -oversample 1 -phi 0 -osc 0.5 -phisteps 2 -water 0.02")
# -water 0.02: a background of about 5 photons a pixel, as on a real frame
PEAK = 2000.0  # expected photons in the brightest pixel


@pytest.fixture(scope="module")
def truth():
    cfg, _ = config_from_args(ARGS.split(), mode="spec")
    image = render_image(cfg)
    return cfg, image, PEAK / image.max()


def _noisy(image, scale, seed):
    return np.random.default_rng(seed).poisson(scale * image).astype(np.float64)


def test_recovers_orientation_and_distance_within_sigma(truth):
    cfg, image, scale = truth
    obs = _noisy(image, scale, seed=11)
    start = apply_changes(cfg, {"distance": 0.0612, "misset[0]": cfg.misset[0] + math.radians(0.5),
                                "misset[1]": cfg.misset[1] - math.radians(0.5)})
    res = fit(start, obs, ["distance", "misset[0]", "misset[1]"])
    assert res.status == "converged", res.message
    assert 0.7 < res.chi2_per_dof < 1.3
    want = {"distance": 0.06, "misset[0]": cfg.misset[0], "misset[1]": cfg.misset[1], "scale": scale}
    for name, value in want.items():
        p = res.parameters[name]
        assert 0.0 < p.sigma
        assert abs(p.value - value) < 4.0 * p.sigma, (name, p, value)
    assert res.parameters["distance"].start == pytest.approx(0.0612)
    assert res.correlations.shape == (4, 4)
    np.testing.assert_allclose(np.diag(res.correlations), 1.0)
    doc = json.loads(json.dumps(res.as_dict()))
    assert set(doc["parameters"]) == {"distance", "misset[0]", "misset[1]", "scale"}
    assert {"start", "value", "sigma"} <= set(doc["parameters"]["distance"])
    assert doc["status"] == "converged" and doc["chi2_per_dof"] == pytest.approx(res.chi2_per_dof)


@pytest.mark.slow
def test_reported_sigmas_match_the_scatter_over_noise_realisations(truth):
    cfg, image, scale = truth
    start = apply_changes(cfg, {"distance": 0.0603, "misset[0]": cfg.misset[0] + math.radians(0.1)})
    z = {"distance": [], "misset[0]": [], "scale": []}
    # 40 realisations (the acceptance asks for 20): the root-mean-square z of 20
    # is itself uncertain by about 16 %, too close to the 1.4 bound to judge by
    for seed in range(40):
        res = fit(start, _noisy(image, scale, seed=100 + seed), ["distance", "misset[0]"])
        assert res.status == "converged", res.message
        want = {"distance": 0.06, "misset[0]": cfg.misset[0], "scale": scale}
        for name in z:
            p = res.parameters[name]
            z[name].append((p.value - want[name]) / p.sigma)
    for name, values in z.items():
        spread = float(np.sqrt(np.mean(np.square(values))))
        # the scatter of the refined values is what the sigmas say, within a factor 1.4
        assert 1 / 1.4 < spread < 1.4, (name, spread, values)


def test_missing_physics_is_reported_suspect_not_converged(truth):
    cfg, image, scale = truth
    wrong_shape, _ = config_from_args((ARGS + " -mosaic 0.6 -mosaic_domains 8").split(), mode="spec")
    obs = _noisy(render_image(wrong_shape), scale, seed=3)
    res = fit(cfg, obs, ["distance"])
    assert res.status == "suspect"
    assert "chi2/dof" in res.message
    assert res.chi2_per_dof > 2.0


def test_unit_weights_are_uncalibrated_and_sigmas_scale_with_the_residuals(truth):
    cfg, image, scale = truth
    obs = _noisy(image, scale, seed=5)
    res = fit(apply_changes(cfg, {"distance": 0.0601}), obs, ["distance"], weights="unit")
    assert res.status == "uncalibrated"
    assert abs(res.parameters["distance"].value - 0.06) < 4 * res.parameters["distance"].sigma


def test_mask_and_given_weights(truth):
    cfg, image, scale = truth
    obs = _noisy(image, scale, seed=6)
    mask = np.zeros(image.shape, dtype=bool)
    mask[:, : image.shape[1] // 2] = True
    weights = 1.0 / np.maximum(scale * image, 0.01)
    res = fit(apply_changes(cfg, {"distance": 0.0601}), obs, ["distance"], mask=mask, weights=weights)
    assert res.dof == int(mask.sum()) - 2
    assert res.weights == "given"
    assert abs(res.parameters["distance"].value - 0.06) < 4 * res.parameters["distance"].sigma


@pytest.mark.parametrize("kwargs, message", [
    (dict(weights="sqrt"), "weights must be"),
    (dict(weights=np.ones(7)), "weights have 7 values"),
    (dict(weights=-np.ones((40, 40))), "finite and non-negative"),
    (dict(mask=np.ones(5, dtype=bool)), "mask has 5 pixels"),
    (dict(mask=np.zeros((40, 40), dtype=bool)), "no pixels to fit"),
    (dict(loss="l1"), "loss must be one of"),
])
def test_bad_arguments_are_one_clear_error(truth, kwargs, message):
    cfg, image, _scale = truth
    with pytest.raises(ConfigError, match=message):
        fit(cfg, image, ["distance"], **kwargs)


def test_wrong_image_size_and_no_parameters(truth):
    cfg, image, _scale = truth
    with pytest.raises(ConfigError, match="observed image has shape"):
        fit(cfg, image[:10], ["distance"])
    with pytest.raises(ConfigError, match="no parameters"):
        fit(cfg, image, [])


def test_refine_command_on_a_noisy_smv_frame(tmp_path):
    """The workflow on a frame as a detector gives it: SMV, Poisson noise, ADC offset 40."""
    from click.testing import CliRunner

    from cli.main import nbnumba
    from nbnumba.runner import run_nanobragg

    truth = ARGS.split() + ["-fluence", "4e28", "-seed", "7"]
    noise = tmp_path / "obs.img"
    run_nanobragg(truth + ["-noisefile", str(noise), "-floatfile", str(tmp_path / "f.bin"),
                           "-intfile", str(tmp_path / "i.img"), "-nopgm"], out=open(os.devnull, "w"))
    mask = np.ones((40, 40), dtype="<f4")
    mask[:4] = 0.0  # leave out the first four rows
    (tmp_path / "mask.bin").write_bytes(mask.tobytes())
    start = ARGS.replace("-distance 60 ", "-distance 60.5 ").split()
    res = CliRunner().invoke(nbnumba, ["refine", "--observed", str(noise), "--param", "distance",
                                       "--mask", str(tmp_path / "mask.bin"), "--out", str(tmp_path / "fit.json"),
                                       "--", *start, "-fluence", "4e28"])
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "fit.json").read_text())
    dist = doc["parameters"]["distance"]
    assert abs(dist["value"] - 0.06) < 4 * dist["sigma"], dist
    assert doc["parameters"]["scale"]["value"] == pytest.approx(1.0, abs=4 * doc["parameters"]["scale"]["sigma"])
    assert doc["status"] == "converged" and 0.8 < doc["chi2_per_dof"] < 1.2
    assert doc["dof"] == 36 * 40 - 2  # the mask's rows are left out
