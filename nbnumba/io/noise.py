"""Poisson-noise SMV images (``-noisefile``): C's noise loop in an SMV file."""

from __future__ import annotations

from nbnumba.io.registry import register_writer
from nbnumba.io.smv import smv_chunks

__all__ = ["noise_chunks"]


@register_writer("noise", ".img", "as 2-byte integers")
def noise_chunks(frame):
    """SMV bytes of the frame's Poisson-noise image (:attr:`Frame.noise`)."""
    return smv_chunks(frame.noise.image, frame.header, pad=frame.smv_pad)
