"""Region-of-interest masks in the C program's pixel order."""

from __future__ import annotations

import numpy as np

__all__ = ["roi_mask"]


def roi_mask(shape, roi, fpixels=None) -> np.ndarray:
    """Flat boolean mask of the pixels inside a region of interest.

    Parameters
    ----------
    shape : tuple of int
        Image shape, ``(spixels, fpixels)`` or ``(npixels,)``.
    roi : None, numpy.ndarray of bool, or tuple
        None selects every pixel; a boolean array with one entry per pixel
        is used as is; ``(xmin, xmax, ymin, ymax)`` selects the fast index
        ``xmin <= f <= xmax`` and slow index ``ymin <= s <= ymax``, the test
        C applies (bounds inclusive, out-of-range bounds allowed).
    fpixels : int, optional
        Fast-axis size; needed only for a 1-D `shape` with an ROI tuple.

    Returns
    -------
    numpy.ndarray
        1-D boolean array in raster order (fast index fastest).
    """
    n = int(np.prod(shape))
    if roi is None:
        return np.ones(n, dtype=np.bool_)
    if isinstance(roi, np.ndarray) and roi.dtype == np.bool_:
        if roi.size != n:
            raise ValueError(f"ROI mask has {roi.size} entries, image has {n}")
        return np.ascontiguousarray(roi.reshape(n))
    xmin, xmax, ymin, ymax = (int(v) for v in roi)
    if len(shape) == 2:
        spix, fpix = (int(v) for v in shape)
    else:
        if fpixels is None:
            raise ValueError("fpixels is required for a 1-D image with an ROI tuple")
        fpix = int(fpixels)
        spix = n // fpix
    f = np.arange(fpix)
    s = np.arange(spix)
    fok = (f >= xmin) & (f <= xmax)
    sok = (s >= ymin) & (s <= ymax)
    return np.ascontiguousarray((sok[:, None] & fok[None, :]).reshape(n))
