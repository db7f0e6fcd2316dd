"""Setup stages: the typed pieces :func:`nbnumba.prepare.prepare` composes.

- :class:`Detector` (:mod:`.detector`): conventions (:data:`CONVENTIONS`),
  beam centre, pivot, origin, ROI.
- :class:`Crystal` (:mod:`.crystal`): cell, orientation (``U``, ``B``),
  misset, mosaic domains, size and shape.
- :class:`Beam` (:mod:`.beam`): fluence, wavelength, polarisation, sources.
- :class:`Sampling` (:mod:`.sampling`): phi, divergence, dispersion,
  thickness and oversampling steps (:func:`select_steps`).

Each stage is built from a :class:`~nbnumba.config.SimConfig` alone or from
the stages it depends on; all follow the C program's order of operations.
"""

from .beam import Beam, Illumination
from .crystal import Crystal, UnitCell
from .detector import CONVENTIONS, BeamSpot, Convention, Detector, LabAxes, choose_pivot
from .sampling import (
    DISPERSION_RULE,
    DIVERGENCE_RULE,
    PHI_RULE,
    THICKNESS_RULE,
    Sampling,
    StepRule,
    select_steps,
)

__all__ = [
    "Beam", "Illumination", "Crystal", "UnitCell", "CONVENTIONS", "BeamSpot", "Convention", "Detector", "LabAxes",
    "choose_pivot",
    "DISPERSION_RULE", "DIVERGENCE_RULE", "PHI_RULE", "THICKNESS_RULE", "Sampling", "StepRule", "select_steps",
]
