"""The scan workload of ``nbnumba bench`` (``--workloads scan``): rotation scans and gradients at scale.

The fast tests run the quick workload locally and check the per-frame probe
(it must see an input file being opened, and see none during a scan); the
Dask one runs the quick workload through the command on local clusters of 1
and 2 workers and checks that their files are byte-identical to the local
ones.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from nbnumba_cli.main import nbnumba

from nbnumba.bench import (
    GRADIENT_PARAMS,
    SCAN_FRAMES,
    Settings,
    install_scan_probe,
    measure_gradients,
    measure_scan,
    output_stem,
    remove_scan_probe,
    scan_args,
    scan_markdown,
    scan_probe,
    scan_probe_counts,
    write_scan_hkl,
)

QUICK_FRAMES = SCAN_FRAMES[1]


@pytest.fixture
def small_scan(tmp_path, monkeypatch):
    """A 3-frame scan of a 16 x 16 detector reading a small -hkl file, and the file."""
    from nbnumba.cargs import config_from_args
    from nbnumba.scan import phi_scan

    monkeypatch.chdir(tmp_path)
    hkl = tmp_path / "small.hkl"
    assert write_scan_hkl(hkl, hmax=4) == 9 ** 3
    argv = scan_args(True, hkl)
    argv[argv.index("-detpixels") + 1] = "16"
    with scan_probe([hkl]):
        cfg, _ = config_from_args(argv)
        opens = scan_probe_counts()["input_opens"]
    return phi_scan(cfg, start_deg=0.0, step_deg=1.0, n_frames=3), hkl, opens


def test_probe_sees_the_input_read_once_and_never_per_frame(small_scan, tmp_path):
    from nbnumba.scan import run_scan

    scan, hkl, opens_while_reading = small_scan
    assert opens_while_reading >= 1  # the probe does see the -hkl file being read
    with scan_probe([hkl]):
        records = run_scan(scan, out_dir=tmp_path / "frames", nthreads=1, inputs=[str(hkl)])
        counts = scan_probe_counts()
    assert len(records) == 3 and all(r.files["float"]["size"] == 16 * 16 * 4 for r in records)
    assert counts["simulate_calls"] == 3 and counts["prepare_calls"] == 3
    assert counts["input_opens"] == 0
    assert counts["kernel_library_loads"] <= 1 and counts["native_builds"] <= 1 and counts["numba_compiles"] <= 1
    assert len(counts["simulate_s"]) == 3 and all(t > 0 for t in counts["simulate_s"])


def test_probe_counts_a_reread_and_is_removed(small_scan):
    from nbnumba import engine

    _scan, hkl, _ = small_scan
    original = engine.simulate
    install_scan_probe([hkl])
    try:
        assert engine.simulate is not original
        hkl.read_text()  # what a scan that re-read its input per frame would do
        with open(hkl, "rb"):
            pass
        assert scan_probe_counts()["input_opens"] == 2
    finally:
        remove_scan_probe()
    assert engine.simulate is original
    hkl.read_text()
    assert scan_probe_counts()["input_opens"] == 2  # off: nothing more counted


def test_quick_scan_workload_locally():
    s = Settings(quick=True, threads=2, workloads=("scan",), compile=False, scan_workers=())
    sc = measure_scan(s, log=lambda *_: None)
    assert sc["frames"] == QUICK_FRAMES and sc["detector_pixels"] == [64, 64]
    assert sc["input_opens_while_reading_config"] >= 1
    assert 0 < sc["task_config_bytes"] < sc["hkl_table_bytes"] / 10  # the table travels apart, once per worker
    runs = {r["run"]: r for r in sc["runs"]}
    assert set(runs) == {"local", "local, no files", "local, 1 thread"}
    for r in runs.values():
        assert r["frames"] == QUICK_FRAMES and r["fps"] > 0 and r["wall_s"] > 0
        assert r["totals"]["simulate_calls"] == QUICK_FRAMES and r["totals"]["prepare_calls"] == QUICK_FRAMES
        assert r["totals"]["input_opens"] == 0 and r["totals"]["native_builds"] == 0
        assert r["frame_s"]["first_s"] > 0 and r["frame_s"]["rest_median_s"] > 0
    assert runs["local"]["writes_files"] and runs["local"]["formats"] == ["float", "smv"]
    assert not runs["local, no files"]["writes_files"]
    assert sc["per_frame"]["repeated_per_frame"] is False and sc["per_frame"]["one_render_per_frame"]
    g = sc["gradients"]
    assert [p["parameter"] for p in g["parameters"]] == list(GRADIENT_PARAMS)
    for p in g["parameters"]:
        assert p["seconds"] > 0 and p["forward_renders"] > 1.0  # a central difference is two renders
        assert p["nonzero_pixels"] > 0 and p["finite"]
    assert g["all_at_once"]["seconds"] > 0
    assert isinstance(g["structure_factors"], str)  # not in quick mode
    text = scan_markdown({"scan": sc})
    assert f"| local | - | 2 | float+smv | {QUICK_FRAMES} |" in text
    assert output_stem(s).startswith("scan-") and output_stem(s).endswith("-quick")


@pytest.mark.slow
def test_gradient_cost_with_structure_factors(small_scan):
    scan, _, _ = small_scan
    g = measure_gradients(scan.config(0), Settings(quick=False, repeats=1, threads=1), params=["distance"],
                          log=lambda *_: None)
    sf = g["structure_factors"]
    assert sf["reflections"] > 0 and sf["seconds"] > 0 and sf["forward_renders"] > 0
    # the exact split reproduces the forward image
    assert g["image_max"] > 0 and sf["max_abs_image_difference"] <= 1e-9 * g["image_max"]


def test_bad_scan_workers_is_a_usage_error():
    r = CliRunner().invoke(nbnumba, ["bench", "--workloads", "scan", "--scan-workers", "0,x"])
    assert r.exit_code == 2 and "--scan-workers" in r.output


@pytest.mark.slow
@pytest.mark.dask
def test_bench_scan_quick_on_dask(tmp_path):
    pytest.importorskip("distributed", reason="dask.distributed not installed (pip install dask distributed)")
    r = CliRunner().invoke(nbnumba, ["bench", "--quick", "--threads", "2", "--workloads", "scan", "--no-compile",
                                     "--scan-workers", "1,2", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    files = list(tmp_path.glob("scan-*-quick.json"))
    assert len(files) == 1
    data = json.loads(files[0].read_text())
    assert data["schema"] == "nbnumba-bench/1" and data["results"] == []
    sc = data["scan"]
    dask = [run for run in sc["runs"] if run["executor"] == "dask"]
    assert [run["workers"] for run in dask] == [1, 2]
    for run in dask:
        assert run["frames"] == QUICK_FRAMES and run["fps"] > 0 and run["cluster_start_s"] > 0
        assert run["identical_to_local"] is True and run["frames_differing_from_local"] == 0
        assert run["threads_per_render"] == 1 and run["writes_files"]
        # one probe per worker process, each loading the kernel at most once, whatever its frame count
        assert len(run["processes"]) == run["workers"]
        assert len({p["pid"] for p in run["processes"]}) == run["workers"]
        assert sum(p["simulate_calls"] for p in run["processes"]) == QUICK_FRAMES
        assert all(p["kernel_library_loads"] <= 1 and p["input_opens"] == 0 for p in run["processes"])
    assert set(sc["dask_fps_by_workers"]) == {"1", "2"}
    assert sc["per_frame"]["repeated_per_frame"] is False
    assert data["gradients"]["forward_s"] > 0
    assert "| dask, 2 workers | 2 | 1 | float+smv |" in r.output
