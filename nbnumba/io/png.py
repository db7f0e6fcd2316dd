"""PNG previews a person can look at (``-pngfile``, ``nbnumba compare`` images), through Pillow.

A diffraction image spans many decades, so the preview is scaled as a
diffraction viewer does: intensities up to a *white level* (by default the
99.5th percentile of the pixels) are mapped through a square root or a
logarithm to 8-bit grey, dark spots on a light background (``invert``).
The scaling is written into the PNG's text chunks (``nbnumba_scale``,
``nbnumba_white_level``, ...), so the grey levels can be turned back into
photons.

Difference previews (:func:`difference_png`) show where one image is
brighter than the other in red and where it is dimmer in blue, on the same
scaling, symmetric about zero.
"""

from __future__ import annotations

import io

import numpy as np

from nbnumba.errors import ConfigError
from nbnumba.io.registry import register_writer

__all__ = ["SCALES", "difference_png", "encode_png", "preview_png", "scaled", "white_level"]

SCALES = ("sqrt", "log", "linear")
LOG_DECADES = 3.0  # the log scale spans this many decades below the white level


def scaled(values: np.ndarray, white: float, scale: str) -> np.ndarray:
    """Map intensities to [0, 1]: 0 at or below 0, 1 at or above ``white``."""
    if scale not in SCALES:
        raise ConfigError(f"PNG scaling must be one of {', '.join(SCALES)}, not {scale!r}")
    x = np.clip(np.asarray(values, dtype=np.float64) / white, 0.0, 1.0) if white > 0 else \
        np.zeros(np.shape(values))
    if scale == "sqrt":
        return np.sqrt(x)
    if scale == "log":
        k = 10.0 ** LOG_DECADES
        return np.log1p(k * x) / np.log1p(k)
    return x


def white_level(images, percentile: float) -> float:
    """The white level of one or more images: a percentile of their pixels (their maximum if that is 0)."""
    if not 0.0 < percentile <= 100.0:
        raise ConfigError(f"PNG percentile must be in (0, 100], not {percentile:g}")
    values = np.concatenate([np.asarray(a, dtype=np.float64).reshape(-1) for a in images])
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0
    white = float(np.percentile(values, percentile))
    return white if white > 0 else float(values.max())


def encode_png(pixels: np.ndarray, text: dict) -> bytes:
    """PNG bytes of grey (2-D) or RGB (3-D) levels in [0, 1], with ``text`` as its text chunks."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    meta = PngInfo()
    for key, value in text.items():
        meta.add_text(key, str(value))
    buf = io.BytesIO()
    Image.fromarray(np.round(np.clip(pixels, 0.0, 1.0) * 255.0).astype(np.uint8)).save(buf, format="PNG",
                                                                                        pnginfo=meta)
    return buf.getvalue()


def preview_png(image, scale: str = "sqrt", percentile: float = 99.5, white: float | None = None,
                invert: bool = True) -> tuple[bytes, dict]:
    """PNG bytes of a grey preview of ``image`` (photons), and the scaling used.

    Parameters
    ----------
    image : array_like, shape (slow, fast)
    scale : {'sqrt', 'log', 'linear'}
    percentile : float
        White level as a percentile of the pixels, unless ``white`` is given.
    white : float, optional
        White level in photons.
    invert : bool
        Dark spots on a light background (as diffraction viewers show them).

    Returns
    -------
    (bytes, dict)
        The PNG file and its scaling (``scale``, ``white_level``,
        ``percentile``, ``invert``), also stored in the file.
    """
    img = np.asarray(image, dtype=np.float64)
    level = float(white) if white is not None else white_level([img], percentile)
    grey = scaled(img, level, scale)
    if invert:
        grey = 1.0 - grey
    info = {"scale": scale, "white_level": level, "percentile": percentile if white is None else "",
            "invert": bool(invert), "units": "photons per pixel"}
    return encode_png(grey, {f"nbnumba_{k}": v for k, v in info.items()}), info


def difference_png(a, b, scale: str = "sqrt", white: float | None = None) -> tuple[bytes, dict]:
    """PNG bytes of ``a - b``: red where ``a`` is larger, blue where smaller, black where equal.

    ``white`` (default: the largest absolute difference) is the difference
    shown at full colour.
    """
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    finite = d[np.isfinite(d)]
    level = float(white) if white is not None else (float(np.abs(finite).max()) if finite.size else 0.0)
    rgb = np.zeros(d.shape + (3,))
    rgb[..., 0] = scaled(np.clip(d, 0.0, None), level, scale)
    rgb[..., 2] = scaled(np.clip(-d, 0.0, None), level, scale)
    info = {"scale": scale, "white_level": level, "units": "photons per pixel, first minus second"}
    return encode_png(rgb, {f"nbnumba_{k}": v for k, v in info.items()}), info


@register_writer("png", ".png", "as a PNG preview")
def png_frame_bytes(frame) -> bytes:
    """PNG preview bytes of a :class:`~nbnumba.io.frame.Frame` (``frame.extra['png_scale']``, default sqrt)."""
    return preview_png(frame.image, scale=frame.extra.get("png_scale", "sqrt"))[0]
