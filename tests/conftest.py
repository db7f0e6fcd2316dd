"""Shared fixtures: backends and the golden corpus of C outputs."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

# A command server the developer left running must not run the tests' nanoBragg commands
# (tests/test_server.py starts its own, in private folders, and turns this back on).
os.environ["NBNUMBA_SERVER"] = "off"

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
GOLDEN_DIR = SHARED / "golden"
GOLDEN_SPEC_DIR = SHARED / "golden_spec"

DEG = math.pi / 180.0


def triclinic_config(mode: str = "spec", **changes):
    """A small triclinic crystal on a tiny detector (6 x 5 pixels of 1 mm at 100 mm).

    Pixels are large so that Bragg peaks fall on them; ``changes`` override
    any :class:`~nbnumba.config.SimConfig` field.
    """
    from nbnumba.config import SimConfig

    fields = dict(mode=mode, cell_angstrom=(70.0, 80.0, 90.0), cell_angles=(75 * DEG, 85 * DEG, 95 * DEG),
                  default_F=100.0, Na=5, Nb=5, Nc=5, lambda0=1e-10, distance=0.1, pixel_size=1e-3,
                  fpixels=6, spixels=5, oversample=1)
    fields.update(changes)
    return SimConfig(**fields)


CUDA_SKIP_REASON = "CUDA not available (set NUMBA_ENABLE_CUDASIM=1 to use the simulator)"


def cuda_available() -> bool:
    """True with a usable GPU or with NUMBA_ENABLE_CUDASIM=1."""
    try:
        from numba import cuda

        return bool(cuda.is_available())
    except Exception:  # pragma: no cover - depends on the machine
        return False


def cuda_simulated() -> bool:
    """True when CUDA kernels run in numba's (slow, Python) simulator."""
    from numba import config

    return bool(getattr(config, "ENABLE_CUDASIM", 0))


@pytest.fixture(params=["cpu", "cuda"])
def backend(request) -> str:
    """Backend name; the cuda parameter skips where CUDA cannot run."""
    if request.param == "cuda" and not cuda_available():
        pytest.skip(CUDA_SKIP_REASON)
    return request.param


@pytest.fixture
def cuda_backend() -> str:
    """'cuda', or skip where CUDA cannot run."""
    if not cuda_available():
        pytest.skip(CUDA_SKIP_REASON)
    return "cuda"


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    """The golden corpus of C outputs (../shared/golden)."""
    if not GOLDEN_DIR.is_dir():
        pytest.skip(f"golden corpus of C outputs not found at {GOLDEN_DIR}")
    return GOLDEN_DIR


@pytest.fixture(scope="session")
def golden_spec_dir() -> Path:
    """Spec-mode references (../shared/golden_spec)."""
    if not GOLDEN_SPEC_DIR.is_dir():
        pytest.skip(f"spec-mode references not found at {GOLDEN_SPEC_DIR}")
    return GOLDEN_SPEC_DIR


@pytest.fixture(scope="session")
def golden_inputs(golden_dir) -> Path:
    return golden_dir / "inputs"
