"""``nbnumba bench --quick`` (what CI runs): it works and its JSON has every key."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from nbnumba_cli.main import nbnumba

from nbnumba.bench import W3_INPUTS, build_cases, golden_inputs_dir, set_flag, w3_args

TIMING_KEYS = {"median_s", "runs_s"}


def _positive(x) -> bool:
    return isinstance(x, (int, float)) and x > 0


def test_set_flag_replaces_and_appends():
    args = ["-detpixels", "1024", "-N", "5"]
    assert set_flag(args, "-detpixels", 64) == ["-detpixels", "64", "-N", "5"]
    assert set_flag(args, "-phisteps", 3) == args + ["-phisteps", "3"]
    assert args == ["-detpixels", "1024", "-N", "5"]


def test_w3_drops_roi_and_floatfile():
    if not all((golden_inputs_dir() / f).exists() for f in W3_INPUTS):
        pytest.skip("golden corpus not available")
    args = w3_args()
    assert "-roi" not in args and "-floatfile" not in args and "-nonoise" not in args
    assert args[args.index("-detpixels_x") + 1] == "2463"


def test_cases_cover_the_series():
    cases = build_cases(("W1", "W2", "scaling"), quick=False, threads=2)
    groups = {c.group for c in cases}
    assert groups == {"W1", "W2", "detector", "phisteps", "mosaic", "threads"}
    assert [c.threads for c in cases if c.group == "threads"] == [1, 2]
    assert all(a in c.argv for c in cases for a in ("-nonoise", "-nopgm", "-noprogress"))


def test_bad_workload_is_a_usage_error():
    r = CliRunner().invoke(nbnumba, ["bench", "--workloads", "W9"])
    assert r.exit_code == 2
    assert "W9" in r.output


@pytest.mark.slow
def test_bench_quick_writes_json(tmp_path, monkeypatch):
    monkeypatch.delenv("NB_C_BIN", raising=False)
    workloads = "W1,W2,scaling"
    if all((golden_inputs_dir() / f).exists() for f in W3_INPUTS):
        workloads = "W1,W2,W3,scaling"
    r = CliRunner().invoke(nbnumba, ["bench", "--quick", "--threads", "2", "--workloads", workloads,
                                     "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    files = list(tmp_path.glob("cpu-*-quick.json"))
    assert len(files) == 1
    data = json.loads(files[0].read_text())
    assert data["schema"] == "nbnumba-bench/1"
    for key in ("cpu_model", "cores", "python", "numba", "date"):
        assert data["machine"][key]
    assert data["settings"]["quick"] is True and data["settings"]["repeats"] == 1
    names = {row["name"] for row in data["results"]}
    assert {"W1", "W2", "detector-32", "phisteps-2", "mosaic-2", "threads-1", "threads-2"} <= names
    for row in data["results"]:
        assert TIMING_KEYS <= set(row["ours_kernel"]) and TIMING_KEYS <= set(row["ours_command"])
        assert _positive(row["ours_kernel"]["median_s"]) and _positive(row["ours_command"]["median_s"])
        assert _positive(row["ours_kernel"]["first_call_s"])
        assert row["work"] > 0 and row["pixels"] > 0
        assert row["c"] is None and row["ratio_command"] is None
    assert {(v["mode"], v["dtype"]) for v in data["variants"]} == {("spec", "float64"), ("spec", "float32")}
    assert all(_positive(v["ours_kernel"]["median_s"]) for v in data["variants"])
    comp = data["compile"]
    assert _positive(comp["command_cold_s"]) and _positive(comp["command_warm_s"])
    assert _positive(data["peak_rss_kb"]["ours_command"])
    assert "| W1 |" in r.output


def test_startup_steps_are_measured_in_fresh_processes():
    """The start-up workload times the interpreter, NumPy, our modules and a 1-pixel run, each in its own process."""
    from nbnumba.bench import Settings, measure_startup

    s = Settings(workloads=("startup",), quick=True, repeats=1, threads=1, c_bin=None)
    rows = {r["step"]: r for r in measure_startup(s, log=lambda *a: None)["steps"]}
    assert set(rows) == {"python", "python + numpy", "python + nbnumba command modules", "our nanoBragg, 1 pixel"}
    for r in rows.values():
        assert len(r["runs_s"]) == 5 and all(t > 0 for t in r["runs_s"])
    # a run imports NumPy and more: it cannot be faster than the bare interpreter
    assert rows["our nanoBragg, 1 pixel"]["median_s"] > rows["python"]["median_s"]


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="the command server is Linux-only")
def test_bench_times_the_served_command_too():
    """With --server, a case and the start-up steps are also timed through a command server, which must
    take every run (NBNUMBA_SERVER=require), and a served 1-pixel run beats a fresh process."""
    from nbnumba.bench import W1, Case, Settings, measure_case, measure_startup

    s = Settings(quick=True, repeats=3, threads=1, c_bin=None, server=True)
    case = Case("W1", "W1", set_flag(W1, "-detpixels", 16), 1)
    row = measure_case(case, s, log=lambda *a: None)
    assert len(row["ours_server"]["runs_s"]) == 3 and _positive(row["ours_server"]["median_s"])
    assert row["ratio_server"] is None  # no C here
    steps = {r["step"]: r["median_s"] for r in measure_startup(s, log=lambda *a: None)["steps"]}
    served = steps["our nanoBragg through the command server, 1 pixel"]
    assert served < steps["our nanoBragg, 1 pixel"]
