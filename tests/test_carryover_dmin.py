"""Parity phi = 0 carry-over when -dmin skips the first rendered pixels.

C's carry-over state is still fresh (unrotated cell) at the first pixel whose
phi loop actually runs; with -dmin that can be far from the first pixel.
"""

import math
import os

import numpy as np
import pytest

from nbnumba import config_from_args, physics, prepare, simulate
from nbnumba.engine import first_swept_pixel

ARGS = ("-default_F 100 -cell 70 80 90 75 85 95 -lambda 1 -N 5 -detpixels 64 -dmin 30 "
        "-phi 0 -osc 1 -phisteps 3 -nonoise -nopgm -noprogress").split()
C_BIN = os.environ.get("NB_C_BIN")


def _python_first_swept(prep):
    fp, ip = prep.fp, prep.ip
    dmin = fp[physics.FP_DMIN]
    for idx in range(prep.fpixels * prep.spixels):
        spixel, fpixel = divmod(idx, prep.fpixels)
        os_ = int(ip[physics.IP_OVERSAMPLE])
        for sub_s in range(os_):
            for sub_f in range(os_):
                x, y, z = physics.subpixel_position(fpixel, spixel, sub_f, sub_s, 0.0, fp, ip)
                r = math.sqrt(x * x + y * y + z * z)
                for src in prep.sources:
                    s = [((x, y, z)[i] / r + src[i]) / src[3] for i in range(3)]
                    stol = 0.5 * math.sqrt(sum(v * v for v in s))
                    if not (stol > 0.0 and dmin > 0.5 / stol):
                        return idx
    return -1


def test_first_swept_pixel_skips_pixels_beyond_dmin():
    cfg, _ = config_from_args(ARGS, mode="parity")
    prep = prepare(cfg)
    first = first_swept_pixel(prep)
    assert first > prep.first_pixel_index
    assert first == _python_first_swept(prep)


def test_that_pixel_starts_from_the_unrotated_cell(backend):
    cfg, _ = config_from_args(ARGS, mode="parity")
    prep = prepare(cfg)
    first = first_swept_pixel(prep)
    spixel, fpixel = divmod(first, prep.fpixels)
    image = simulate(cfg, backend=backend).image
    expected, _, _ = physics.render_pixel(fpixel, spixel, prep.fp, prep.ip, prep.sources, prep.cells,
                                          prep.cells_first, prep.fhkl, True, physics.INTERP_ON, prep.scale)
    steady, _, _ = physics.render_pixel(fpixel, spixel, prep.fp, prep.ip, prep.sources, prep.cells,
                                        prep.cells_first, prep.fhkl, False, physics.INTERP_ON, prep.scale)
    assert np.float32(expected) != np.float32(steady)  # the case really exercises the quirk
    assert image[spixel, fpixel] == np.float32(expected)


def test_spec_mode_has_no_carry_over():
    cfg, _ = config_from_args(ARGS, mode="spec")
    prep = prepare(cfg)
    assert np.array_equal(prep.cells, prep.cells_first)


@pytest.mark.skipif(not C_BIN, reason="set NB_C_BIN to a C nanoBragg executable to compare against it")
def test_matches_c_with_dmin_and_carry_over():
    from nbnumba.compare import run_against_c

    res = run_against_c(ARGS, C_BIN)
    assert res.ok, "\n".join(res.lines)
