"""Shared fixtures: backends and the golden corpus of C outputs."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
GOLDEN_DIR = SHARED / "golden"
GOLDEN_SPEC_DIR = SHARED / "golden_spec"

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
