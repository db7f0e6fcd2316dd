"""Every case of the golden corpus: C's outputs (parity mode) and the spec-mode references."""

from __future__ import annotations

import re

import numpy as np
import pytest
from conftest import GOLDEN_DIR

from nbnumba.golden import case_names, compare_float, load_case, read_output, run_case

SLOW_CASES = {"pilatus_roi"}  # reads 64k reflections and renders a Pilatus-sized ROI
SPEC_CASES = ("phi_carryover", "phi_osc", "oversample_flags")


def _golden_case_params():
    if not GOLDEN_DIR.is_dir():
        # collected as one parameter so the skip (with its reason) shows in the report
        return [pytest.param("<no golden corpus>", id="no-golden-corpus")]
    return [pytest.param(name, marks=[pytest.mark.slow] if name in SLOW_CASES else [])
            for name in case_names(GOLDEN_DIR)]


def _report(report) -> str:
    return f"{report.name}:\n  " + "\n  ".join(report.details) + "\n--- stdout ---\n" + report.stdout[-3000:]


@pytest.mark.parametrize("name", _golden_case_params())
def test_parity_reproduces_c(name, golden_dir):
    report = run_case(name, golden_dir, mode="parity")
    assert report.details, f"{name}: nothing was compared"
    assert report.ok, _report(report)


def test_corpus_is_complete(golden_dir):
    """The corpus the parametrization found has the cases this suite relies on."""
    names = set(case_names(golden_dir))
    assert len(names) >= 50
    assert set(SPEC_CASES) | {"mosaic", "interp_outofrange", "pilatus_roi", "mask", "roi"} <= names


@pytest.mark.parametrize("name", SPEC_CASES)
def test_spec_mode_matches_fixed_c(name, golden_dir, golden_spec_dir):
    report = run_case(name, golden_dir, mode="spec", reference=golden_spec_dir)
    assert report.details, f"{name}: nothing was compared"
    assert report.ok, _report(report)


def _float(folder, name):
    case = load_case(GOLDEN_DIR, name)
    data = read_output(folder / name / "float.bin")
    return np.frombuffer(data, "<f4").reshape(case["spixels"], case["fpixels"])


@pytest.mark.parametrize("name", SPEC_CASES)
def test_the_two_references_differ(name, golden_dir, golden_spec_dir):
    """The C and fixed-C references really differ, so the mode tests are not vacuous."""
    ok, msg = compare_float(_float(golden_dir, name), _float(golden_spec_dir, name))
    assert not ok, msg


@pytest.mark.parametrize("name", SPEC_CASES)
def test_spec_mode_differs_from_c(name, golden_dir):
    report = run_case(name, golden_dir, mode="spec")
    float_line = [d for d in report.details if d.startswith("float.bin")]
    assert float_line and not report.ok, _report(report)


@pytest.mark.parametrize("name", SPEC_CASES)
def test_parity_mode_differs_from_spec_reference(name, golden_dir, golden_spec_dir):
    report = run_case(name, golden_dir, mode="parity", reference=golden_spec_dir)
    assert not report.ok, _report(report)
    worst = [float(re.search(r"worst rel (\S+)", d).group(1)) for d in report.details if d.startswith("float.bin")]
    assert worst and worst[0] > 1e-3, _report(report)


# Cases where spec mode is meant to differ from the C program, and why.
SPEC_DIFFERS_FROM_C = {
    "phi_carryover": "upstream fix: phi = 0 resets the cell (golden_spec)",
    "phi_osc": "upstream fix: phi = 0 resets the cell (golden_spec)",
    "oversample_flags": "upstream fix: -oversample_* weight each contribution (golden_spec)",
    "misset_random": "spec draws -misset random uniformly from SO(3), and -misset_seed does not read angles",
    "rot_twotheta_sample": "spec honours -pivot sample under the MOSFLM convention",
    "pilatus_roi": "spec honours -pix0_vector_mm (in mm)",
    "close_distance": "spec: -close_distance/-Xclose/-Yclose force the sample pivot under MOSFLM (Spec A), "
                      "and -Xclose/-Yclose place the near point",
    "orgx_orgy": "spec: -ORGX/-ORGY force the sample pivot under MOSFLM (Spec A)",
    "rot_twotheta_beam": "spec: after a 2theta swing the header's DISTANCE and beam centre describe the "
                         "detector as rendered",
    "interp_outofrange": "spec uses default_F for each out-of-range stencil but keeps interpolating "
                         "(order-independent); Spec A says it switches interpolation off for good",
}


def _spec_params():
    if not GOLDEN_DIR.is_dir():
        return [pytest.param("<no golden corpus>", id="no-golden-corpus")]
    return [name for name in case_names(GOLDEN_DIR) if name not in SPEC_DIFFERS_FROM_C]


@pytest.mark.parametrize("name", _spec_params())
def test_spec_mode_equals_c_elsewhere(name, golden_dir):
    """README of the corpus: every other case is unchanged in spec mode."""
    report = run_case(name, golden_dir, mode="spec")
    assert report.ok, _report(report)


@pytest.mark.parametrize("name", sorted(set(SPEC_DIFFERS_FROM_C) - {"pilatus_roi"}))
def test_spec_mode_differences_are_real(name, golden_dir):
    report = run_case(name, golden_dir, mode="spec")
    assert not report.ok, f"{name} no longer differs in spec mode ({SPEC_DIFFERS_FROM_C[name]}): update the table"
