"""Scans (phi and parameter series), executors and the ``nbnumba scan`` command."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from nbnumba import config_from_args, simulate
from nbnumba.errors import ConfigError
from nbnumba.executors import LocalExecutor
from nbnumba.io.floatimage import read_float_image
from nbnumba.io.smv import read_smv, smv_value
from nbnumba.scan import (
    Scan,
    apply_changes,
    check_field,
    field_value,
    parameter_scan,
    parse_vary,
    phi_scan,
    run_scan,
)

FLAGS = "-cell 100 100 100 90 90 90 -default_F 100 -N 5 -detpixels 32 -pixel 0.2 -misset 5 10 15"
RTD = 180.0 / math.pi


@pytest.fixture(scope="module")
def base():
    cfg, _ = config_from_args((FLAGS + " -phi 2").split())
    return cfg


def _square(x):
    return x * x


def test_phi_scan_frames(base):
    scan = phi_scan(base, step_deg=0.5, n_frames=4)
    assert len(scan) == 4
    for i, fr in enumerate(scan.frames):
        assert fr["phi0"] == pytest.approx(base.phi0 + i * 0.5 / RTD, abs=1e-15)
        assert fr["osc"] == pytest.approx(0.5 / RTD)
    assert base.phi0 == pytest.approx(2.0 / RTD)
    still = phi_scan(base, start_deg=10, step_deg=1, n_frames=2, osc_deg=0)
    assert still.frames[1] == {"phi0": pytest.approx(11 / RTD), "osc": 0.0}
    assert still.config(1).phi0 == pytest.approx(11 / RTD)
    with pytest.raises(ConfigError, match="at least one frame"):
        phi_scan(base, n_frames=0)


def test_apply_changes_scalars_and_components(base):
    cfg = apply_changes(base, {"distance": 0.2, "misset[1]": 0.25, "Na": "7", "oversample": "2.0"})
    assert cfg.distance == 0.2 and cfg.Na == 7.0 and cfg.oversample == 2
    assert cfg.misset == pytest.approx((5 / RTD, 0.25, 15 / RTD))
    assert base.misset[1] == pytest.approx(10 / RTD)  # the base is untouched
    spun = apply_changes(base, {"spindle_vector[0]": 1.0})
    assert isinstance(spun.spindle_vector, np.ndarray)
    assert spun.spindle_vector.tolist() == [1.0, 0.0, 1.0]
    assert base.spindle_vector.tolist() == [0.0, 0.0, 1.0]
    none_misset = apply_changes(apply_changes(base, {}), {"misset[2]": 0.1})
    assert field_value(none_misset, "misset[2]") == 0.1


@pytest.mark.parametrize("name, message", [
    ("distanc", "unknown SimConfig field 'distanc' \\(did you mean distance\\?\\); valid fields: .*distance"),
    ("misset", "field 'misset' is a vector: name one component"),
    ("distance[0]", "scalar: no \\[index\\]"),
    ("misset[3]", "index out of range"),
    ("hkl", "cannot be varied"),
    ("2x", "bad field name"),
])
def test_bad_fields_are_named(name, message):
    with pytest.raises(ConfigError, match=message):
        check_field(name)


def test_bad_values(base):
    with pytest.raises(ConfigError, match="oversample: expected an integer"):
        apply_changes(base, {"oversample": "2.5"})
    with pytest.raises(ConfigError, match="distance: bad value"):
        apply_changes(base, {"distance": "far"})


def test_parse_vary():
    frames = parse_vary(["distance=0.1,0.2", "misset[0]=0,0.01"])
    # converted to the stored units (SI) as they are parsed
    assert frames == [{"distance": 0.1, "misset[0]": 0.0}, {"distance": 0.2, "misset[0]": 0.01}]
    with pytest.raises(ConfigError, match="same number of values"):
        parse_vary(["distance=0.1,0.2", "Na=3"])
    with pytest.raises(ConfigError, match="FIELD=v1"):
        parse_vary(["distance"])
    with pytest.raises(ConfigError, match="bad value 'x'"):
        parse_vary(["distance=x"])


def test_run_scan_writes_frames(base, tmp_path):
    scan = phi_scan(base, step_deg=1.0, n_frames=3)
    records = run_scan(scan, out_dir=tmp_path, prefix="img")
    assert [r.index for r in records] == [0, 1, 2]
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["img_0001.bin", "img_0001.img", "img_0002.bin", "img_0002.img",
                     "img_0003.bin", "img_0003.img", "img_scan.json"]
    for i, rec in enumerate(records):
        ref = simulate(scan.config(i)).image
        img = read_float_image(rec.paths["float"], 32, 32)
        np.testing.assert_array_equal(img, ref)
        assert rec.image is None
        assert rec.stats["max_I"] == pytest.approx(float(ref.max()))
        text, _, data = read_smv(rec.paths["smv"])
        assert data.shape == (32, 32)
        assert smv_value(text, "PHI") == pytest.approx(2.0 + i, abs=1e-6)
        assert smv_value(text, "OSC_RANGE") == pytest.approx(1.0, abs=1e-6)
    doc = json.loads((tmp_path / "img_scan.json").read_text())
    assert [f["number"] for f in doc["frames"]] == [1, 2, 3]
    # consecutive wedges differ
    assert not np.array_equal(read_float_image(records[0].paths["float"], 32, 32),
                              read_float_image(records[1].paths["float"], 32, 32))


def test_parameter_scan_in_memory(base):
    scan = parameter_scan(base, "distance", [0.1, 0.12])
    records = run_scan(scan, out_dir=None)
    assert [r.changes for r in records] == [{"distance": 0.1}, {"distance": 0.12}]
    for r, d in zip(records, (0.1, 0.12)):
        from dataclasses import replace

        np.testing.assert_array_equal(r.image, simulate(replace(base, distance=d)).image)
        assert r.paths == {}
    with pytest.raises(ConfigError, match="unknown frame format 'tiff'"):
        run_scan(scan, formats=("tiff",))


def test_scan_validates_changes(base):
    with pytest.raises(ConfigError, match="unknown SimConfig field 'wavelength'"):
        Scan(base=base, frames=[{"wavelength": 1e-10}])


def test_local_executor():
    assert LocalExecutor().map(_square, [1, 2, 3]) == [1, 4, 9]
    with LocalExecutor() as ex:
        assert ex.map(_square, []) == []


@pytest.mark.dask
def test_dask_executor_same_frames(base):
    pytest.importorskip("distributed", reason="dask.distributed not installed (pip install dask distributed)")
    from nbnumba.executors import DaskExecutor

    scan = phi_scan(base, step_deg=1.0, n_frames=2)
    local = run_scan(scan)
    with DaskExecutor(n_workers=1) as ex:
        assert ex.map(_square, [3, 4]) == [9, 16]
        remote = run_scan(scan, executor=ex)
    for a, b in zip(local, remote):
        np.testing.assert_array_equal(a.image, b.image)
        assert a.stats == b.stats


def test_cli_phi_scan(tmp_path):
    from cli.main import nbnumba

    out = tmp_path / "frames"
    res = CliRunner().invoke(nbnumba, ["scan", "--frames", "2", "--phi-step", "1", "--out", str(out),
                                       "--", *FLAGS.split()])
    assert res.exit_code == 0, res.output
    # printed in user units: degrees, as --phi-step was given
    assert "frame 0001: phi0=0 deg osc=1 deg" in res.output
    assert "frame 0002: phi0=1 deg osc=1 deg" in res.output
    assert (out / "frame_0002.bin").stat().st_size == 32 * 32 * 4
    assert (out / "frame_0002.img").exists()


def test_cli_vary_and_errors(tmp_path):
    from cli.main import nbnumba

    runner = CliRunner()
    res = runner.invoke(nbnumba, ["scan", "--vary", "distance=0.1,0.11", "--format", "float",
                                  "--out", str(tmp_path), "--", *FLAGS.split()])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frame_0001.bin", "frame_0002.bin", "frame_scan.json"]
    res = runner.invoke(nbnumba, ["scan", "--vary", "detector_distance=0.1", "--out", str(tmp_path),
                                  "--", *FLAGS.split()])
    assert res.exit_code == 2
    assert "unknown SimConfig field 'detector_distance'" in res.output
    assert "valid fields:" in res.output and "distance" in res.output
    res = runner.invoke(nbnumba, ["scan", "--frames", "2", "--out", str(tmp_path), "--", *FLAGS.split()])
    assert res.exit_code == 2 and "--phi-step" in res.output
    res = runner.invoke(nbnumba, ["scan", "--frames", "2", "--phi-step", "1", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "after `--`" in res.output
