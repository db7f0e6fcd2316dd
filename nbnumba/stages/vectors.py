"""Small 3-vector helpers in C's order of operations.

The setup stages build geometry in float64 with these helpers rather than
with numpy's vectorised routines, because parity mode must reproduce the C
program's rounding: every sum and product here is written in the order C
evaluates it.
"""

from __future__ import annotations

import math

import numpy as np

from .. import physics as P

RTD = 180.0 * (1.0 / math.pi)


def unitize(v):
    """Unit vector and magnitude, C style (a zero vector stays zero).

    Parameters
    ----------
    v : sequence of float
        A 3-vector.

    Returns
    -------
    tuple of (numpy.ndarray, float)
        The unit vector and the magnitude of ``v``.
    """
    mag = math.sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2])
    if mag != 0.0:
        return np.array([v[0] / mag, v[1] / mag, v[2] / mag]), mag
    return np.zeros(3), mag


def cross(x, y):
    """Cross product ``x × y`` of two 3-vectors."""
    return np.array([x[1] * y[2] - x[2] * y[1], x[2] * y[0] - x[0] * y[2], x[0] * y[1] - x[1] * y[0]])


def dot(x, y):
    """Dot product of two 3-vectors, summed x, y, z."""
    return x[0] * y[0] + x[1] * y[1] + x[2] * y[2]


def magnitude(v):
    """Length of a 3-vector (the first three components of ``v``)."""
    return math.sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2])


def scale(v, s):
    """The 3-vector ``s * v``."""
    return np.array([s * v[0], s * v[1], s * v[2]])


def rescale(v, new_mag):
    """``v`` scaled to length ``new_mag`` (a zero vector is scaled as if of length 1)."""
    old = magnitude(v)
    if old <= 0.0:
        old = 1.0
    return np.array([new_mag / old * v[0], new_mag / old * v[1], new_mag / old * v[2]])


def rotate_xyz(v, phix, phiy, phiz):
    """Rotate about x, then y, then z (the C ``rotate``); angles in radians."""
    x, y, z = float(v[0]), float(v[1]), float(v[2])
    if phix != 0:
        ryy, ryz = math.cos(phix), -math.sin(phix)
        rzy, rzz = math.sin(phix), math.cos(phix)
        x, y, z = x, y * ryy + z * ryz, y * rzy + z * rzz
    if phiy != 0:
        rxx, rxz = math.cos(phiy), math.sin(phiy)
        rzx, rzz = -math.sin(phiy), math.cos(phiy)
        x, y, z = x * rxx + y * 0 + z * rxz, y, x * rzx + y * 0 + z * rzz
    if phiz != 0:
        rxx, rxy = math.cos(phiz), -math.sin(phiz)
        ryx, ryy = math.sin(phiz), math.cos(phiz)
        x, y, z = x * rxx + y * rxy, x * ryx + y * ryy, z
    return np.array([x, y, z])


def rotate_axis(v, axis, phi):
    """Rotate ``v`` by ``phi`` radians about the unit vector ``axis``."""
    return np.array(P.rotate_about_axis(v[0], v[1], v[2], axis[0], axis[1], axis[2], phi))


def rotate_umat(v, u):
    """Apply a row-major 3x3 rotation matrix (9 numbers) to ``v``."""
    return np.array([
        u[0] * v[0] + u[1] * v[1] + u[2] * v[2],
        u[3] * v[0] + u[4] * v[1] + u[5] * v[2],
        u[6] * v[0] + u[7] * v[1] + u[8] * v[2],
    ])


def c_ceil_int(x):
    """``(int) ceil(x)`` as C computes it."""
    return int(math.ceil(x))
