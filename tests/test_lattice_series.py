"""The inline series behind the lattice factor, in both precision builds.

The double build keeps the lattice factor within rounding of C's formula
(parity mode); the single build (float32 kernels) uses shorter series that
are still far below float32's resolution.  Both are checked against the
C library's sin/cos and against the direct ``sin(n x)/sin(x)``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from tolerances import SERIES_DOUBLE_ATOL, SERIES_SINGLE_ATOL, SINCG_DOUBLE_RTOL, SINCG_SINGLE_RTOL

from nbnumba import physics
from nbnumba.compile import cpu_functions

T = np.linspace(-0.5, 0.5, 4001)
SERIES_TOL = {"double": SERIES_DOUBLE_ATOL, "single": SERIES_SINGLE_ATOL}
SINCG_TOL = {"double": SINCG_DOUBLE_RTOL, "single": SINCG_SINGLE_RTOL}


FLOAT = {"double": float, "single": np.float32}


@pytest.mark.parametrize("precision", ["double", "single"])
def test_sin_cos_series(precision):
    phys = cpu_functions(precision)
    ts = [FLOAT[precision](t) for t in T]
    sin_err = max(abs(float(phys.sinpi_small(t)) - math.sin(math.pi * float(t))) for t in ts)
    cos_err = max(abs(float(phys.cospi_small(t)) - math.cos(math.pi * float(t))) for t in ts)
    assert sin_err <= SERIES_TOL[precision]
    assert cos_err <= SERIES_TOL[precision]


def test_single_build_is_single_precision():
    """The builds differ where SINGLE_PRECISION_VARIANTS says, and in the type of their literals."""
    assert set(physics.SINGLE_PRECISION_VARIANTS) == {"sinpi_small", "cospi_small", "to_float", "floor_int",
                                                      "ceil_int", "narrow"}
    single, double = cpu_functions("single"), cpu_functions("double")
    t = 0.4321
    assert double.cospi_small(t) == physics.cospi_small(t)
    assert single.cospi_small(np.float32(t)) != double.cospi_small(t)
    assert abs(float(single.sinpi_small(np.float32(t))) - double.sinpi_small(t)) <= SERIES_SINGLE_ATOL
    # float32 in, float32 arithmetic out: literals and integers do not promote
    from numba import types

    single.to_float(3)
    assert single.cospi_small.nopython_signatures[-1].return_type == types.float32
    assert single.to_float.nopython_signatures[-1].return_type == types.float32
    double.to_float(3)
    assert double.to_float.nopython_signatures[-1].return_type == types.float64
    # float64 Miller indices in, float32 lattice factor out
    single.narrow(1.25)
    assert single.narrow.nopython_signatures[-1].return_type == types.float32
    num, den = single.sincg_reduced(10.3, 10, 47.0)
    assert single.sincg_reduced.nopython_signatures[-1].return_type == types.UniTuple(types.float32, 2)
    assert double.narrow(1.25) == 1.25


@pytest.mark.parametrize("precision", ["double", "single"])
@pytest.mark.parametrize("n", [2, 3, 5, 8, 9, 36, 47])
def test_sincg_reduced_matches_direct_formula(precision, n):
    """Against the direct formula in extended precision (the double one loses
    digits for large ``n h``, which is why the kernel reduces the argument)."""
    if np.finfo(np.longdouble).nmant < 60:
        pytest.skip("needs an extended-precision long double (x86) for the reference")
    phys = cpu_functions(precision)
    real = FLOAT[precision]
    pi = 4 * np.arctan(np.longdouble(1))
    worst = 0.0
    for h in np.linspace(-7.3, 11.9, 1733):
        h = real(h)
        h0 = int(math.ceil(float(h) - 0.5))
        num, den = phys.sincg_reduced(h, h0, real(n))
        x = pi * np.longdouble(float(h))
        direct = np.longdouble(n) if np.sin(x) == 0 else np.sin(n * x) / np.sin(x)
        worst = max(worst, float(abs(abs(np.longdouble(float(num)) / np.longdouble(float(den))) - abs(direct))) / n)
    assert worst <= SINCG_TOL[precision]
