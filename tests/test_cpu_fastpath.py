"""The CPU fast path of the phi/mosaic loop against the general loop.

:func:`nbnumba.physics.fast_phi_mosaic_sum` evaluates the common case in
blocks of vectorised loops.  It must give the general loop's values bit for
bit (parity mode depends on it), in both precisions, with and without a
structure-factor table, for blocks of any length (padding, several blocks),
and must leave the other cases to the general loop.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import triclinic_config
from numba import njit

from nbnumba import physics
from nbnumba.compile import cpu_functions, precision_of
from nbnumba.io.hkl import HKLGrid
from nbnumba.kernels.driver import first_swept_pixel
from nbnumba.kernels.interface import kernel_arrays
from nbnumba.prepare import prepare

DEG = math.pi / 180.0


def _pixel_loop(render_raster_pixel):
    @njit
    def loop(fp, ip, sources, cells, cells_first, fhkl, mask, first_index, scale, out):
        for idx in range(out.size):
            rendered, value, omega_sum, oor = render_raster_pixel(
                idx, fp, ip, sources, cells, cells_first, fhkl, mask, first_index, out.size, scale)
            out[idx] = value
    return loop


def _values(cfg, dtype, fast_path):
    prep = prepare(cfg)
    arrays = kernel_arrays(prep, dtype)
    loop = _pixel_loop(cpu_functions(precision_of(dtype), fast_path).render_raster_pixel)
    out = np.zeros(prep.fpixels * prep.spixels)
    loop(*arrays, first_swept_pixel(prep), prep.scale, out)
    return out


def _hkl_grid(seed=7, half=12):
    rng = np.random.default_rng(seed)
    n = 2 * half + 2  # HKLGrid: one more than the index range on each axis
    values = rng.uniform(0.0, 300.0, size=(n, n, n))
    values[rng.random(size=values.shape) < 0.2] = 0.0  # zero F: skipped by both loops
    return HKLGrid(-half, half, -half, half, -half, half, values, 8)


FAST_CASES = {
    # N = 5 on every axis: the Chebyshev branch; 3 x 4 evaluations per sub-pixel
    "parity-chebyshev": dict(mode="parity", mosaic_spread=0.8 * DEG, mosaic_domains=4, mosaic_seed=-42,
                             phi0=0.0, osc=2.0 * DEG, phisteps=3, oversample=2),
    # large N: the sine branch; 70 evaluations, more than one block
    "parity-sine-blocks": dict(mode="parity", Na=12, Nb=31, Nc=9, mosaic_spread=0.3 * DEG, mosaic_domains=7,
                               mosaic_seed=-3, phi0=0.0, osc=1.0 * DEG, phisteps=10),
    # mixed axes, one of them a single cell; a structure-factor table with zeros
    "spec-mixed-hkl": dict(mode="spec", Na=1, Nb=4, Nc=17, phi0=0.0, osc=1.0 * DEG, phisteps=5, hkl=_hkl_grid()),
    "parity-hkl-two-steps": dict(mode="parity", Na=36, Nb=7, Nc=29, phi0=0.0, osc=0.5 * DEG, phisteps=2,
                                 hkl=_hkl_grid(3)),
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", sorted(FAST_CASES))
def test_fast_path_is_bit_identical(case, dtype):
    cfg = triclinic_config(**{"pixel_size": 0.5e-3, "fpixels": 9, "spixels": 7, **FAST_CASES[case]})
    if cfg.mode == "parity" and dtype == "float32":
        cfg = triclinic_config(**{"pixel_size": 0.5e-3, "fpixels": 9, "spixels": 7,
                                  **{**FAST_CASES[case], "mode": "spec"}})
    fast = _values(cfg, dtype, True)
    general = _values(cfg, dtype, False)
    assert np.count_nonzero(general) > 0
    assert np.array_equal(fast, general)


def test_fast_path_applies_only_to_the_common_case():
    ip = np.zeros(physics.IP_SIZE, dtype=np.int64)
    ip[physics.IP_PHISTEPS] = 2
    ip[physics.IP_DOMAINS] = 1
    render = physics.PASS_RENDER
    assert physics.fast_path_applies(ip, render, False)
    single = ip.copy()
    single[physics.IP_PHISTEPS] = 1
    assert not physics.fast_path_applies(single, render, False)  # one evaluation: the general loop
    assert not physics.fast_path_applies(ip, render, True)  # interpolation
    assert not physics.fast_path_applies(ip, physics.PASS_FIND_OUT_OF_RANGE, False)
    for index, value in ((physics.IP_SHAPE, physics.SHAPE_GAUSS), (physics.IP_EXACT_SINCG, 1),
                         (physics.IP_OS_THICK, 1), (physics.IP_OS_POLAR, 1), (physics.IP_OS_OMEGA, 1)):
        changed = ip.copy()
        changed[index] = value
        assert not physics.fast_path_applies(changed, render, False)


@pytest.mark.parametrize("m", range(1, physics.CHEBYSHEV_MAX_N + 1))
def test_chebyshev_u_matches_sincg_reduced(m):
    cheb = cpu_functions("double").chebyshev_u
    reduced = cpu_functions("double").sincg_reduced
    for h in np.random.default_rng(m).uniform(-20.0, 20.0, size=200):
        h0 = math.ceil(h - 0.5)
        u, one = reduced(h, h0, float(m))
        assert one == 1.0
        assert cheb(h - h0, m) == u


def test_general_loop_in_the_cuda_build_source():
    """FAST_PATH is off outside the CPU builds: the CUDA build compiles the general loop only."""
    assert physics.FAST_PATH is False
    assert cpu_functions("double").pixel_intensity.py_func.__globals__["FAST_PATH"] is True
    assert cpu_functions("double", False).pixel_intensity.py_func.__globals__["FAST_PATH"] is False


def test_fast_path_branch_is_pruned_without_the_cpu_bindings():
    """Without :func:`~nbnumba.compile.cpu_bindings` (as in the CUDA build) the fast path is never typed.

    Its portable placeholders (a Python list as work array) cannot compile
    without Numba's runtime, so this compiles only because the branch on
    ``FAST_PATH`` is pruned before typing, by the same frontend pass the
    CUDA compiler runs.
    """
    from nbnumba import compile as compile_module

    def decorate(fn, name):
        inline = "always" if name in compile_module.CPU_INLINE else "never"
        return njit(fn, error_model="numpy", _nrt=False, inline=inline)

    prep = prepare(triclinic_config("parity"))
    arrays = kernel_arrays(prep, "float64")
    plain = compile_module._build(decorate, "double")
    rendered, value, _, _ = plain.render_raster_pixel(3, *arrays, 0, 99, prep.scale)
    reference = cpu_functions("double").render_raster_pixel(3, *arrays, 0, 99, prep.scale)
    assert rendered == 1 and value == reference[1]
