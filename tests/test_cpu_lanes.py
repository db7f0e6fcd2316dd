"""The CPU builds' pixel lanes against the pixel-by-pixel loop.

:func:`nbnumba.physics.render_raster_block` renders up to ``PIXEL_LANES``
neighbouring pixels of a row together (:func:`nbnumba.physics.render_lanes`)
where :func:`nbnumba.physics.lanes_take` allows it.  Every pixel must come
out bit for bit as when rendered alone by
:func:`nbnumba.physics.render_raster_pixel` (parity mode depends on it), in
both precisions, for every option the lanes accept, with pixels outside the
ROI or mask left unwritten; blocks they do not take (the first rendered
pixel's, mostly unrendered ones, and every block of a run with a resolution
cut-off, interpolation, another crystal shape, C's exact sincg or
per-sub-pixel weights) go pixel by pixel.  Each case also checks how many
blocks took the lanes, so that a case meant to exercise them cannot pass
without doing so.  The loop here is the kernels' loop (``kernels/cpu.py``,
the native row loop), over :func:`nbnumba.physics.raster_block`.
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
FPIXELS = 70  # above both lane counts and a multiple of neither: each row ends in a shorter block


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
            if take(idx, n, fp, ip, mask, first_index):
                taken += 1
            total = rrb(total, idx, n, fp, ip, sources, cells, cells_first, fhkl, mask, first_index, 1 << 60,
                        scale, out, idx - start)
        return total, taken, covered

    return by_pixel, by_block


_LOOPS = {}


def _compare(cfg, dtype, start=0, stop=None):
    """Render pixels ``start .. stop-1`` of ``cfg`` both ways; return (image, blocks that took the lanes)."""
    prec = precision_of(dtype)
    if prec not in _LOOPS:
        _LOOPS[prec] = _loops(cpu_functions(prec))
    by_pixel, by_block = _LOOPS[prec]
    prep = prepare(cfg)
    arrays = kernel_arrays(prep, dtype)
    first = first_swept_pixel(prep)
    n = (prep.fpixels * prep.spixels if stop is None else stop) - start
    expected = np.full(n, -1.0)
    got = np.full(n, -1.0)
    total_expected = by_pixel(*arrays, first, prep.scale, start, expected)
    total, taken, covered = by_block(*arrays, first, prep.scale, start, got)
    assert covered == n
    assert np.count_nonzero(expected > 0) > 0
    assert np.array_equal(got, expected)  # unrendered pixels (-1) untouched alike
    assert total == total_expected
    return expected, taken


def _blocks_taken_per_row(dtype):
    """Blocks of a whole row of FPIXELS that lanes_take accepts: at least half a block of pixels."""
    lanes = PIXEL_LANES[precision_of(dtype)]
    sizes = [min(lanes, FPIXELS - lo) for lo in range(0, FPIXELS, lanes)]
    return sum(1 for size in sizes if 2 * size >= lanes)


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
    # 5 rows in blocks of PIXEL_LANES or fewer, all taking the lanes except the block of the first
    # rendered pixel (pixel 0) and a row's last block if shorter than half the lanes
    assert first_swept_pixel(prepare(cfg)) == 0
    assert taken == 5 * _blocks_taken_per_row(dtype) - 1


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


def test_roi_mask_and_ranges(dtype):
    lanes = PIXEL_LANES[precision_of(dtype)]
    mask = np.ones(FPIXELS * 5, dtype=np.uint16)
    mask[[FPIXELS + 20, 2 * FPIXELS + 3, 3 * FPIXELS + 40, 3 * FPIXELS + 41]] = 0
    cfg = triclinic_config(mode="spec", roi=(2, FPIXELS - 4, 0, 4), mask=mask, phisteps=2, osc=1.0 * DEG, **BASE)
    _, taken = _compare(cfg, dtype)
    # rows 1-4 (row 0 holds the first rendered pixel): the ROI leaves 62 of each row's first 64 pixels
    # and 14 of the first 16, so every whole block takes the lanes, masked pixels and all
    assert taken >= 4 * (FPIXELS // lanes)
    # ranges as the kernels' chunks of a split image may give: starting and ending mid-row
    _, taken = _compare(cfg, dtype, start=FPIXELS + 11, stop=4 * FPIXELS + 33)
    assert taken >= 1


def test_mostly_unrendered_blocks_go_pixel_by_pixel(dtype):
    # a ROI three pixels wide: every block holds at most three rendered pixels
    cfg = triclinic_config(mode="spec", roi=(30, 32, 0, 4), phisteps=2, osc=1.0 * DEG, **BASE)
    _, taken = _compare(cfg, dtype)
    assert taken == 0


@pytest.mark.parametrize("change", [dict(dmin=2e-10), dict(interpolate=1, hkl=_hkl_grid(9)),
                                    dict(xtal_shape="gauss"), dict(xtal_shape="round"), dict(xtal_shape="tophat"),
                                    dict(exact_math=True), dict(Na=5.5),
                                    dict(oversample=2, oversample_omega=True),
                                    dict(oversample=2, oversample_thick=True, detector_thick=100e-6,
                                         detector_thicksteps=2, detector_mu=1.0 / 200e-6),
                                    dict(oversample=2, oversample_polar=True)])
def test_other_cases_go_pixel_by_pixel(change, dtype):
    cfg = triclinic_config(mode="spec", **{**BASE, **change})
    _, taken = _compare(cfg, dtype)
    assert taken == 0


def test_lanes_are_a_cpu_build_binding(monkeypatch):
    """PIXEL_LANES is 1 outside the CPU builds (CUDA renders pixel by pixel) and where Numba uses SVML."""
    from numba import config

    from nbnumba.compile import pixel_lanes

    assert physics.PIXEL_LANES == 1
    for prec in ("double", "single"):
        bound = cpu_functions(prec).render_raster_block.py_func.__globals__["PIXEL_LANES"]
        assert bound == pixel_lanes(prec)
        monkeypatch.setattr(config, "USING_SVML", True, raising=False)
        assert pixel_lanes(prec) == 1
        monkeypatch.setattr(config, "USING_SVML", False, raising=False)
        assert pixel_lanes(prec) == PIXEL_LANES[prec] > 1
