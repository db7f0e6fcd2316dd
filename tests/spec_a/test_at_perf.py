"""Spec A, AT-PERF-001 ... 008: performance targets written for the PyTorch port.

They are benchmark cases of ``nbnumba bench`` (workload ``specA`` plus W1 and the
scaling series; see docs/spec_a.md), not timed tests.  This checks that the
cases exist and describe the AT's setup.
"""

from __future__ import annotations

import pytest
from speca_util import in_tmp, pinfo, prep  # noqa: F401

from nbnumba.bench import SPEC_A_PERF, W1, WORKLOADS, build_cases

pytestmark = pytest.mark.usefixtures("in_tmp")


def test_at_perf_cases_are_benchmark_workloads():
    assert "specA" in WORKLOADS
    full = {c.name: c for c in build_cases(("specA",), quick=False, threads=2)}
    assert set(full) == set(SPEC_A_PERF) == {"AT-PERF-002", "AT-PERF-004", "AT-PERF-006"}
    quick = build_cases(("specA",), quick=True, threads=2)
    assert all(c.args[c.args.index("-detpixels") + 1] == "64" for c in quick)
    # AT-PERF-001/003/005: W1 (cubic 100 A, 6.2 A, N 5, 100 mm) and its detector series up to 2048
    assert " ".join(W1).startswith("-default_F 100 -cell 100 100 100 90 90 90 -lambda 6.2 -N 5")
    sides = [c.param for c in build_cases(("scaling",), quick=False, threads=2) if c.group == "detector"]
    assert sides == [256, 512, 1024, 2048]


@pytest.mark.parametrize("name", ["AT-PERF-002", "AT-PERF-004", "AT-PERF-006"])
def test_at_perf_setups(name):
    info = pinfo(prep(SPEC_A_PERF[name].replace("-detpixels 1024", "-detpixels 64")))
    if name == "AT-PERF-002":
        assert info["Na"] == info["Nb"] == info["Nc"] == 10 and info["lambda0"] == pytest.approx(1e-10)
    elif name == "AT-PERF-004":
        assert info["Na"] == 8 and info["misset_used"] is not None
    else:
        assert info["oversample"] == 2 and info["thicksteps"] == 3 and info["dispsteps"] == 3
        assert info["thick"] == pytest.approx(200e-6) and info["divsteps"] > 1
