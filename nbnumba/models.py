"""Structure factors from an atomic model (``-pdb``), to the resolution the detector reaches."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from .config import SimConfig
from .errors import InputFileError

__all__ = ["RESOLUTION_MARGIN", "detector_d_min", "model_grid"]

# reflections a little beyond the detector's corners still put the edges of
# their spots on it: compute structure factors this much further out
RESOLUTION_MARGIN = 0.95


def detector_d_min(config: SimConfig) -> float:
    """Finest resolution (Angstrom) any pixel of the detector sees, at the shortest wavelength.

    The largest scattering angle over a flat rectangle is at one of its
    corners; a curved detector is treated as its flat equivalent.
    """
    from . import physics as P
    from .prepare import prepare

    prep = prepare(dataclasses.replace(config, hkl=None, default_F=config.default_F or 1.0))
    fp = prep.fp
    pix0, fdet, sdet = (np.asarray(fp[k:k + 3]) for k in (P.FP_PIX0, P.FP_FDET, P.FP_SDET))
    beam = np.asarray(fp[P.FP_BEAM:P.FP_BEAM + 3])
    px = float(fp[P.FP_PIXEL_SIZE])
    two_theta = 0.0
    for a in (0, prep.fpixels):
        for b in (0, prep.spixels):
            corner = pix0 + a * px * fdet + b * px * sdet
            c = float(np.dot(corner, beam) / np.linalg.norm(corner) / np.linalg.norm(beam))
            two_theta = max(two_theta, math.acos(max(-1.0, min(1.0, c))))
    lam = float(prep.sources[:, P.SRC_LAMBDA].min()) * 1e10
    return lam / (2.0 * math.sin(two_theta / 2.0)) if two_theta > 0 else math.inf


def model_grid(config: SimConfig, path):
    """The structure-factor table of a model for this run, and a line saying what was done.

    Sets ``config.cell_angstrom`` / ``cell_angles`` from the model when the
    run gives neither ``-cell`` nor ``-mat``.

    Returns
    -------
    (HKLGrid, str)

    Raises
    ------
    InputFileError
        Unreadable model, or a detector that sees no reflection.
    """
    from .io.reflections import expand_to_p1, grid_from_reflections, model_structure_factors, read_model_cell

    cell = read_model_cell(path)
    if config.cell_angstrom is None and config.a_matrix is None:
        config.cell_angstrom = tuple(cell[:3])
        config.cell_angles = tuple(math.radians(v) for v in cell[3:])
    d_min = detector_d_min(config) * RESOLUTION_MARGIN
    if not math.isfinite(d_min):
        raise InputFileError(f"{path}: the detector sees no scattering angle, so no structure factors to compute")
    refl = model_structure_factors(path, d_min)
    p1 = expand_to_p1(refl)
    note = (f"computed {len(refl)} structure factors in {refl.spacegroup} to {d_min:.3g} A from {path}; "
            f"{len(p1)} after expansion to P1")
    return grid_from_reflections(p1, default_F=config.default_F), note
