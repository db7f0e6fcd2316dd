"""The CPU builds' pixel lanes against the pixel-by-pixel loop.

:func:`nbnumba.physics.render_raster_block` renders ``PIXEL_LANES``
neighbouring pixels together (:func:`nbnumba.physics.render_lanes`) where
it can.  Every pixel must come out bit for bit as when rendered alone by
:func:`nbnumba.physics.render_raster_pixel` (parity mode depends on it), in
both precisions, for every option the lanes accept; blocks they cannot take
(row ends, ROI edges, masked pixels, parity mode's first swept pixel, a
resolution cut-off, interpolation) must go pixel by pixel.  Each case also
checks how many blocks took the lanes, so that a case meant to exercise them
cannot pass without doing so.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import triclinic_config
from numba import njit

from nbnumba import physics
from nbnumba.compile import PIXEL_LANES, cpu_functions, precision_of
from nbnumba.io.hkl import HKLGrid
from nbnumba.kernels.driver import first_swept_pixel
from nbnumba.kernels.interface import kernel_arrays
from nbnumba.prepare import prepare

DEG = math.pi / 180.0
FPIXELS = 37  # not a multiple of the lane count: each row ends in a shorter block


@pytest.fixture(scope="module", params=["float64", "float32"])
def dtype(request):
    return request.param


def _loops(phys):
    rrp = phys.render_raster_pixel
    rrb = phys.render_raster_block
    take = phys.lanes_take
    blocks = phys.raster_blocks
    block = phys.raster_block

    @njit
    def by_pixel(fp, ip, sources, cells, cells_first, fhkl, mask, first_index, scale, start, out):
        total = 0.0
        for i in range(out.size):
            rendered, value, omega_sum, oor = rrp(start + i, fp, ip, sources, cells, cells_first, fhkl, mask,
                                                  first_index, 1 << 60, scale)
            if rendered:
                out[i] = value
                total += omega_sum
        return total

    @njit
    def by_block(fp, ip, sources, cells, cells_first, fhkl, mask, first_index, scale, start, out):
        # the kernels' loop (kernels/cpu.py, the native row loop), counting the blocks that take the lanes
        total = 0.0
        taken = 0
        covered = 0
        for b in range(blocks(start, out.size, ip)):
            idx, n = block(b, start, out.size, ip)
            covered += n
            if take(idx, n, fp, ip, first_index):
                taken += 1
            total = rrb(total, idx, n, fp, ip, sources, cells, cells_first, fhkl, mask, first_index, 1 << 60,
                        scale, out, idx - start)
        return total, taken, covered

    return by_pixel, by_block


_LOOPS = {}


def _compare(cfg, dtype, start=0):
    """Render ``cfg`` both ways; return (image, number of blocks that took the lanes)."""
    prec = precision_of(dtype)
    if prec not in _LOOPS:
        _LOOPS[prec] = _loops(cpu_functions(prec))
    by_pixel, by_block = _LOOPS[prec]
    prep = prepare(cfg)
    arrays = kernel_arrays(prep, dtype)
    first = first_swept_pixel(prep)
    n = prep.fpixels * prep.spixels - start
    expected = np.full(n, -1.0)
    got = np.full(n, -1.0)
    total_expected = by_pixel(*arrays, first, prep.scale, start, expected)
    total, taken, covered = by_block(*arrays, first, prep.scale, start, got)
    assert covered == n
    assert np.count_nonzero(expected > 0) > 0
    assert np.array_equal(got, expected)  # unrendered pixels (-1) untouched alike
    assert total == total_expected
    return expected, taken


def _hkl_grid(seed=7, half=12):
    rng = np.random.default_rng(seed)
    n = 2 * half + 2
    values = rng.uniform(0.0, 300.0, size=(n, n, n))
    values[rng.random(size=values.shape) < 0.2] = 0.0
    return HKLGrid(-half, half, -half, half, -half, half, values, 8)


BASE = dict(pixel_size=0.5e-3, fpixels=FPIXELS, spixels=5)
CASES = {
    # phi steps and mosaic domains: the evaluations of fast_phi_mosaic_sum, large N (sine branch)
    "sine-phi-mosaic": dict(Na=12, Nb=31, Nc=9, mosaic_spread=0.3 * DEG, mosaic_domains=3, mosaic_seed=-3,
                            phi0=0.0, osc=1.0 * DEG, phisteps=4, hkl=_hkl_grid()),
    # one evaluation per sub-pixel: what the general loop renders alone; Chebyshev branch (N = 5)
    "one-evaluation": dict(),
    # an axis of one cell, a table with zero structure factors, water background
    "mixed-axes-water": dict(Na=1, Nb=4, Nc=17, phi0=0.0, osc=1.0 * DEG, phisteps=2, hkl=_hkl_grid(3),
                             water_size=50e-6, interpolate=0),
    # sub-pixels and detector layers with absorption (capture fraction per layer), no polarization
    "oversample-thick-nopolar": dict(oversample=2, detector_thick=100e-6, detector_thicksteps=3,
                                     detector_mu=1.0 / 200e-6, nopolar=True, phisteps=2, osc=0.5 * DEG),
    # several sources: the polarization (Kahn factor) of the first source re-normalises the
    # diffracted direction the later sources use; dispersion in wavelength
    "sources-polarized": dict(polarization=0.7, hdivrange=2e-3, hdivsteps=3, vdivrange=1e-3, vdivsteps=2,
                              dispersion=0.02, dispsteps=2),
    # curved detector and point pixels
    "curved-point-pixel": dict(curved_detector=True, point_pixel=True, phisteps=3, osc=1.0 * DEG),
    # no structure factors at all
    "default-f-zero": dict(default_F=0.0, hkl=_hkl_grid(5), Na=20, Nb=20, Nc=20),
}


@pytest.mark.parametrize(("mode", "dtype"), [("parity", "float64"), ("spec", "float64"), ("spec", "float32")])
@pytest.mark.parametrize("case", sorted(CASES))
def test_lanes_are_bit_identical(case, mode, dtype):
    cfg = triclinic_config(mode=mode, **{**BASE, **CASES[case]})
    image, taken = _compare(cfg, dtype)
    # 5 rows of 37 pixels: each row in blocks of PIXEL_LANES or fewer, all of them taking the lanes
    # except, in parity mode, the block of the first swept pixel
    first_block = int(first_swept_pixel(prepare(cfg)) >= 0)
    assert taken == 5 * -(-FPIXELS // PIXEL_LANES[precision_of(dtype)]) - first_block


def test_parity_first_swept_pixel_block_goes_pixel_by_pixel():
    # parity mode with phi = 0: the first rendered pixel starts from the unrotated cell (cells_first);
    # rendered from there, the first block holds it and must go pixel by pixel
    cfg = triclinic_config(mode="parity", roi=(2, 36, 1, 3), phi0=0.0, osc=1.0 * DEG, phisteps=3, **BASE)
    prep = prepare(cfg)
    first = first_swept_pixel(prep)
    assert first == 1 * FPIXELS + 2
    assert not np.array_equal(prep.cells_first, prep.cells)
    _, taken = _compare(cfg, "float64", start=first)
    assert taken >= 1


def test_roi_mask_and_offset_start(dtype):
    mask = np.ones(FPIXELS * 5, dtype=np.uint16)
    mask[[50, 95, 130]] = 0  # inside blocks that would otherwise take the lanes (from 0 and from 11)
    cfg = triclinic_config(mode="spec", roi=(2, 35, 0, 4), mask=mask, phisteps=2, osc=1.0 * DEG, **BASE)
    _, taken = _compare(cfg, dtype)
    assert taken >= 1
    # a range that starts mid-row (as the kernels' chunks of a split image may)
    _, taken = _compare(cfg, dtype, start=11)
    assert taken >= 1


@pytest.mark.parametrize("change", [dict(dmin=2e-10), dict(interpolate=True, hkl=_hkl_grid(9)),
                                    dict(xtal_shape="gauss"), dict(oversample=2, oversample_omega=True)])
def test_other_cases_go_pixel_by_pixel(change, dtype):
    cfg = triclinic_config(mode="spec", **{**BASE, **change})
    _, taken = _compare(cfg, dtype)
    assert taken == 0


def test_lanes_are_a_cpu_build_binding():
    """PIXEL_LANES is 1 outside the CPU builds (CUDA renders pixel by pixel)."""
    assert physics.PIXEL_LANES == 1
    for prec in ("double", "single"):
        bound = cpu_functions(prec).render_raster_block.py_func.__globals__["PIXEL_LANES"]
        assert bound == PIXEL_LANES[prec] > 1
