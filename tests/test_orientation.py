"""-misset random: C's generator in parity mode, a uniform rotation in spec mode."""

import numpy as np
import pytest

from nbnumba import rng
from nbnumba.orientation import misset_random_umat

ORTHONORMAL_ATOL = 1e-12
# mean trace of a uniformly random rotation is 0; with 4000 draws its standard error is ~0.016
UNIFORM_TRACE_MEAN_ATOL = 0.08


def _matrix(u):
    return np.asarray(u, dtype=float).reshape(3, 3)


@pytest.mark.parametrize("parity", [True, False])
def test_misset_random_is_a_rotation(parity):
    m = _matrix(misset_random_umat(-4321, parity=parity))
    assert np.allclose(m @ m.T, np.eye(3), atol=ORTHONORMAL_ATOL)
    assert np.linalg.det(m) == pytest.approx(1.0, abs=ORTHONORMAL_ATOL)


def test_parity_uses_c_generator_with_spread_90():
    state = rng.new_ran1_state(-4321)
    expected = rng.mosaic_rotation_umat(90.0, state)
    assert np.array_equal(misset_random_umat(-4321, parity=True), expected)


def test_spec_is_uniform_and_parity_is_not():
    spec = np.array([np.trace(_matrix(misset_random_umat(-s, parity=False))) for s in range(1, 4001)])
    parity = np.array([np.trace(_matrix(misset_random_umat(-s, parity=True))) for s in range(1, 4001)])
    assert abs(spec.mean()) < UNIFORM_TRACE_MEAN_ATOL
    assert abs(parity.mean()) > 3 * UNIFORM_TRACE_MEAN_ATOL


def test_same_seed_same_orientation():
    a = misset_random_umat(-99, parity=False)
    b = misset_random_umat(-99, parity=False)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, misset_random_umat(-100, parity=False))
