"""Random crystal orientations for ``-misset random``."""

from __future__ import annotations

import math

import numpy as np

from . import rng


def misset_random_umat(seed: int, parity: bool) -> np.ndarray:
    """Rotation matrix (9 elements, row-major) for ``-misset random``.

    Parameters
    ----------
    seed : int
        The stored (negated) misset seed, as C keeps it.
    parity : bool
        Parity mode calls the mosaic-cap generator with a "spread" of 90,
        which C passes as radians although it means degrees; the resulting
        distribution is not uniform.  Spec mode draws a rotation uniformly
        from SO(3) (Shoemake's quaternion method) from the same generator.
    """
    state = rng.new_ran1_state(seed)
    if parity:
        return np.asarray(rng.mosaic_rotation_umat_python(90.0, state), dtype=np.float64)
    u1, u2, u3 = (float(rng.ran1_python(state)) for _ in range(3))
    q1 = math.sqrt(1.0 - u1) * math.sin(2.0 * math.pi * u2)
    q2 = math.sqrt(1.0 - u1) * math.cos(2.0 * math.pi * u2)
    q3 = math.sqrt(u1) * math.sin(2.0 * math.pi * u3)
    q0 = math.sqrt(u1) * math.cos(2.0 * math.pi * u3)
    return np.array([
        1 - 2 * (q2 * q2 + q3 * q3), 2 * (q1 * q2 - q0 * q3), 2 * (q1 * q3 + q0 * q2),
        2 * (q1 * q2 + q0 * q3), 1 - 2 * (q1 * q1 + q3 * q3), 2 * (q2 * q3 - q0 * q1),
        2 * (q1 * q3 - q0 * q2), 2 * (q2 * q3 + q0 * q1), 1 - 2 * (q1 * q1 + q2 * q2),
    ])
