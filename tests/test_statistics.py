"""C's image statistics (engine.statistics): blocks summed on threads give the same numbers on any
thread count, and agree with a direct numpy computation over the ROI and mask."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import triclinic_config

from nbnumba.engine import STATS_BLOCK_ROWS, statistics
from nbnumba.prepare import prepare

ROWS, COLS = 3 * STATS_BLOCK_ROWS + 17, 40  # several blocks, the last one short


def _prepared(masked: bool):
    rng = np.random.default_rng(5)
    mask = None
    if masked:
        mask = (rng.random(ROWS * COLS) > 0.3).astype(np.uint16)
    cfg = triclinic_config(fpixels=COLS, spixels=ROWS, roi=(3, COLS - 5, 2, ROWS - 9), mask=mask)
    return prepare(cfg), mask


@pytest.mark.parametrize("masked", [False, True], ids=["plain", "masked"])
def test_statistics_do_not_depend_on_threads_and_match_numpy(masked):
    prep, mask = _prepared(masked)
    rng = np.random.default_rng(11)
    image = (rng.random((ROWS, COLS)) ** 4 * 1e3).astype(np.float32)
    image[100, 20] = 5e4  # the maximum, inside the ROI and (forced) unmasked
    if mask is not None:
        prep.mask.reshape(ROWS, COLS)[100, 20] = 1
    runs = [statistics(prep, image, 2.0, nthreads=n) for n in (1, 2, 3, 7)]
    assert all(r == runs[0] for r in runs[1:])  # bit for bit, whatever the thread count
    s = runs[0]
    roi = image[2:ROWS - 8, 3:COLS - 4].astype(np.float64)
    keep = np.ones_like(roi, bool) if mask is None else prep.mask.reshape(ROWS, COLS)[2:ROWS - 8, 3:COLS - 4] != 0
    vals = roi[keep]
    assert s.rendered == vals.size
    assert s.max_I == 5e4
    assert math.isclose(s.mean, vals.mean(), rel_tol=1e-12)
    assert math.isclose(s.rms, math.sqrt((vals ** 2).sum() / (vals.size - 1)), rel_tol=1e-12)
    assert math.isclose(s.rmsd, math.sqrt(((roi - vals.mean()) ** 2).sum() / (roi.size - 1)), rel_tol=1e-12)
    pixel = prep.detector.pixel_size
    assert math.isclose(s.max_I_x, pixel * 20 + pixel / 2) and math.isclose(s.max_I_y, pixel * 100 + pixel / 2)


def test_integer_image_does_not_depend_on_threads_and_matches_c_rounding():
    """C's noiseless SMV pixels, floorf(v*scale + adc + 0.5) clipped to 16 bits, ROI only, on any thread count."""
    from nbnumba.io.frame import integer_image

    rng = np.random.default_rng(3)
    image = (rng.random((ROWS, COLS)) ** 3 * 3e3).astype(np.float32)
    image[7, 7] = 1e9  # clipped
    rows, cols = slice(2, ROWS - 9), slice(3, COLS - 4)
    outs = [integer_image(image, 21.5, 40.0, rows, cols, block_rows=64, threads=n) for n in (1, 2, 5)]
    assert all(np.array_equal(o, outs[0]) for o in outs[1:])
    expect = np.zeros(image.shape, np.uint16)
    v = np.clip(image[rows, cols].astype(np.float64) * 21.5 + 40.0, 0, 65535) + 0.5
    expect[rows, cols] = np.floor(v.astype(np.float32)).astype(np.uint16)
    assert np.array_equal(outs[0], expect)
    assert outs[0][7, 7] == 65535 and outs[0][0, 0] == 0
