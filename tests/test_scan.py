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


def _add(x, shared):
    return x + shared


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
    with pytest.raises(ConfigError, match="unknown frame format 'jpeg'"):
        run_scan(scan, formats=("jpeg",))


def test_scan_validates_changes(base):
    with pytest.raises(ConfigError, match="unknown SimConfig field 'wavelength'"):
        Scan(base=base, frames=[{"wavelength": 1e-10}])


def test_local_executor():
    assert LocalExecutor().map(_square, [1, 2, 3]) == [1, 4, 9]
    assert LocalExecutor().map(_add, [1, 2], shared=10) == [11, 12]
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
        assert ex.map(_add, [3, 4], shared=10) == [13, 14]
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


# ---------------------------------------------------------------- --vary values: units, checks, user units

@pytest.mark.parametrize("spec,expected", [
    ("distance=0.1,120mm,0.14 m", [0.1, 0.12, 0.14]),
    ("phi0=0,10deg,0.5rad", [0.0, 10 / RTD, 0.5]),
    ("misset[1]=5deg", [5 / RTD]),
    ("lambda0=1.5A,1.2 Angstrom,0.1nm", [1.5e-10, 1.2e-10, 1e-10]),
    ("cell_angstrom[2]=50,5nm", [50.0, 50.0]),  # stored in Angstrom
    ("hdivrange=2mrad", [2e-3]),
    ("dispersion=1%,0.02", [0.01, 0.02]),
    ("water_size=50um", [5e-5]),
    ("mosaic_domains=3,4", [3, 4]),
    ("roi[1]=10,20", [10, 20]),
    ("xtal_shape=round,gauss", ["round", "gauss"]),
    ("curved_detector=true,0", [True, False]),
    ("distance=0x1p-3", [0.125]),
])
def test_parse_vary_units_to_stored_values(spec, expected):
    name = spec.partition("=")[0]
    frames = parse_vary([spec])
    got = [fr[name] for fr in frames]
    assert got == pytest.approx(expected, rel=1e-15) if isinstance(expected[0], float) else got == expected


@pytest.mark.parametrize("spec,message", [
    ("distance=nan", "distance: expected a finite number, got 'nan'"),
    ("distance=0.1,inf", "distance: expected a finite number, got 'inf'"),
    ("phi0=1e999deg", "phi0: expected a finite number, got '1e999deg'"),
    ("distance=-0.1", "distance: '-0.1' is out of range (> 0 mm)"),
    ("distance=0", "distance: '0' is out of range (> 0 mm)"),
    ("lambda0=-1A", "lambda0: '-1A' is out of range (> 0 Angstrom)"),
    ("polarization=1.5", "polarization: '1.5' is out of range (0 to 1)"),
    ("mosaic_spread=-1deg", "mosaic_spread: '-1deg' is out of range (>= 0 deg)"),
    ("phisteps=0", "phisteps: '0' is out of range (>= 1)"),
    ("mosaic_domains=2.5", "mosaic_domains: expected an integer, got '2.5'"),
    ("cell_angles[0]=180deg", "cell_angles[0]: '180deg' is out of range"),
    ("distance=10deg", "distance: unknown unit 'deg' in '10deg'; use one of A, Angstrom, m, mm, nm, um"),
    ("phi0=1mm", "phi0: unknown unit 'mm' in '1mm'; use one of deg, mrad, rad, urad"),
    ("distance=1_0", "distance: unknown unit '_0'"),
    ("distance=x", "distance: bad value 'x'"),
    ("distance=1,,2", "distance: empty value in '1,,2'"),
    ("distance=", "distance: no values"),
    ("xtal_shape=cube", "xtal_shape: expected one of square, round, gauss, tophat, got 'cube'"),
    ("misset[3]=1", "misset[3]: index out of range (0 to 2)"),
    ("misset=1", "field 'misset' is a vector: name one component"),
    ("distance[0]=1", "field 'distance' is a scalar: no [index] allowed"),
    ("hkl=1", "field 'hkl' cannot be varied"),
    ("detector_distance=0.1", "unknown SimConfig field 'detector_distance'"),
])
def test_parse_vary_rejects_bad_values_naming_the_field(spec, message):
    with pytest.raises(ConfigError) as info:
        parse_vary([spec])
    assert str(info.value).startswith(f"--vary {spec!r}: {message}")


def test_parse_vary_rejects_a_field_given_twice():
    with pytest.raises(ConfigError, match="distance: given twice"):
        parse_vary(["distance=0.1", "distance=0.2"])


def test_scan_api_checks_values(base):
    with pytest.raises(ConfigError, match="distance: expected a finite number"):
        Scan(base=base, frames=[{"distance": 0.1}, {"distance": math.nan}])
    with pytest.raises(ConfigError, match=r"osc: .* is out of range \(>= 0 deg\)"):
        Scan(base=base, frames=[{"osc": -0.01}])
    with pytest.raises(ConfigError, match="phi0: expected a finite number"):
        phi_scan(base, step_deg=math.nan, n_frames=2)
    scan = parameter_scan(base, "distance", ["100mm", 0.12])
    assert [fr["distance"] for fr in scan.frames] == ["100mm", 0.12]
    assert scan.config(0).distance == pytest.approx(0.1) and scan.config(1).distance == 0.12


@pytest.mark.parametrize("spec", ["distance=0.1,nan", "distance=0.1,-5mm", "phisteps=2,0", "distance=0.1,2parsec"])
def test_cli_vary_bad_value_writes_nothing(spec, tmp_path):
    from cli.main import nbnumba

    out = tmp_path / "frames"
    res = CliRunner().invoke(nbnumba, ["scan", "--vary", spec, "--out", str(out), "--", *FLAGS.split()])
    assert res.exit_code == 2
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"nbnumba scan: error: --vary {spec!r}: "), res.output
    assert not out.exists()


def test_cli_vary_prints_user_units(tmp_path):
    from cli.main import nbnumba

    res = CliRunner().invoke(nbnumba, ["scan", "--vary", "distance=100mm,0.12", "--vary", "misset[0]=5deg,0.1",
                                       "--format", "float", "--out", str(tmp_path), "--", *FLAGS.split()])
    assert res.exit_code == 0, res.output
    assert "frame 0001: distance=100 mm misset[0]=5 deg" in res.output
    assert "frame 0002: distance=120 mm misset[0]=5.72957795 deg" in res.output
    # the manifest keeps the API's SI values
    doc = json.loads((tmp_path / "frame_scan.json").read_text())
    assert doc["frames"][1]["changes"] == {"distance": 0.12, "misset[0]": 0.1}
    assert doc["frames"][0]["changes"]["distance"] == pytest.approx(0.1)


class _Recording(LocalExecutor):
    """A local executor that keeps what each map call received."""

    def __init__(self):
        self.calls = []

    def map(self, fn, items, shared=None):
        items = list(items)
        self.calls.append((items, shared))
        return super().map(fn, items, shared)


def test_structure_factor_table_goes_to_the_executor_once(tmp_path):
    """Frames carry no copy of the -hkl table: the executor gets it once, as ``shared``; images are unchanged."""
    hkl = tmp_path / "t.hkl"
    hkl.write_text("".join(f"{h} {k} {l} {10 + abs(h) + 2 * abs(k) + 3 * abs(l)}\n"
                           for h in range(-4, 5) for k in range(-4, 5) for l in range(-4, 5)))
    cfg, _ = config_from_args((FLAGS.replace("-default_F 100 ", "") + f" -hkl {hkl}").split())
    assert cfg.hkl is not None
    scan = phi_scan(cfg, step_deg=1.0, n_frames=3)
    ex = _Recording()
    records = run_scan(scan, executor=ex)
    (items, shared), = ex.calls
    assert shared is cfg.hkl
    assert len(items) == 3 and all(t.config.hkl is None for t in items)
    direct = [simulate(scan.config(i)).image for i in range(3)]
    assert max(float(img.max()) for img in direct) > 0.0
    for record, image in zip(records, direct):
        np.testing.assert_array_equal(record.image, image)
