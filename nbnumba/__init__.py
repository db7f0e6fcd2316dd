"""nbnumba: a Numba-accelerated re-implementation of James Holton's nanoBragg.

Quick use::

    from nbnumba import config_from_args, simulate
    cfg, run = config_from_args("-cell 100 100 100 90 90 90 -default_F 100 -N 5 "
                                "-lambda 6.2 -detpixels 128 -distance 100".split())
    result = simulate(cfg)
    result.image      # float32 photons per pixel, shape (slow, fast)
"""

from .cargs import config_from_args
from .config import SimConfig
from .engine import SimResult, simulate
from .prepare import prepare

__all__ = ["SimConfig", "SimResult", "config_from_args", "prepare", "simulate"]
__version__ = "0.1.0"
