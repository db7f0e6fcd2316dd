"""C's ``-noisefile`` image: the Poisson noise loop, natively where it can be, else with Numba.

The generators themselves are in :mod:`nbnumba.rng` (plain Python, compiled
by :func:`nbnumba.compile.rng_functions`); this module only chooses where the
loop runs, so that :mod:`nbnumba.rng` imports nothing from the kernels.
"""

from __future__ import annotations

import numpy as np

from .. import rng
from ..io._roi import roi_mask


def poisson_image(float_image, roi, seed, adc_offset: float = 40.0, fpixels: int | None = None):
    """Poisson-noise image exactly as C's ``-noisefile`` loop.

    Pixels are visited in raster order (slow index outer); each pixel inside
    the region of interest gets ``poidev(value)``; the deviates are summed,
    `adc_offset` is added, values above 65535 are clipped to 65535 and
    counted as overloads, and the result is truncated to unsigned 16 bits.

    Parameters
    ----------
    float_image : array_like
        float32 image, 1-D (raster order) or 2-D ``(spixels, fpixels)``.
        Other dtypes are rounded to float32 first, as C's float image is.
    roi : None, numpy.ndarray of bool, or tuple
        None for every pixel; a boolean mask with one entry per pixel; or
        ``(xmin, xmax, ymin, ymax)`` inclusive pixel bounds on the fast (x)
        and slow (y) axes, tested as C tests them.
    seed : int or numpy.ndarray
        Seed as C stores it (already negated, e.g. ``-12345`` for
        ``-seed 12345``), or an existing ran1 state array that is used and
        advanced in place (see :mod:`nbnumba.rng` on the shared table).
    adc_offset : float, optional
        ADC offset added to each deviate (C default 40).
    fpixels : int, optional
        Fast-axis size, needed only for a 1-D image with an ROI tuple.

    Returns
    -------
    image : numpy.ndarray
        uint16 image with the shape of `float_image`; 0 outside the ROI.
    photon_sum : float
        Sum of the deviates (before the offset).
    overloads : int
        Number of pixels clipped at 65535.
    """
    from . import native

    img = np.asarray(float_image)
    shape = img.shape
    flat = np.ascontiguousarray(img.reshape(-1), dtype=np.float32)
    mask = roi_mask(shape, roi, fpixels)
    state = seed if isinstance(seed, np.ndarray) else rng.new_ran1_state(int(seed))
    pstate = rng.new_poisson_state()
    kernel = native.load("noise", "float32", "uint16")
    if kernel is not None:
        out, total, overloads = native.run_noise(kernel, flat, mask, float(adc_offset), state, pstate)
    else:
        out, total, overloads = rng.poisson_image_core(flat, mask, float(adc_offset), state, pstate)
    return out.reshape(shape), float(total), int(overloads)


def poisson_counts(float_image, roi, seed, fpixels: int | None = None):
    """Photon counts as a counting detector records them: C's deviates, no ADC offset, no clipping.

    The same deviates as :func:`poisson_image` with the same seed (so where
    nothing is clipped the counts are the noise image less its ADC offset),
    as int32, 0 outside the region of interest.

    Parameters
    ----------
    float_image, roi, seed, fpixels
        As for :func:`poisson_image`.

    Returns
    -------
    counts : numpy.ndarray
        int32 image with the shape of `float_image`.
    photon_sum : float
        Sum of the deviates.
    """
    img = np.asarray(float_image)
    shape = img.shape
    flat = np.ascontiguousarray(img.reshape(-1), dtype=np.float32)
    mask = roi_mask(shape, roi, fpixels)
    state = seed if isinstance(seed, np.ndarray) else rng.new_ran1_state(int(seed))
    out = np.zeros(flat.size, dtype=np.int32)
    total = rng.poisson_counts_fill(flat, mask, state, rng.new_poisson_state(), out)
    return out.reshape(shape), float(total)
