"""A rendered frame as the output formats see it.

:class:`Frame` holds the float image of a run, the header values of its
detector and beam, and the options that turn it into integer images; the
integer image (C's ``55000 / max_I`` scaling, ADC offset, rounding and
clipping), the PGM scale and the Poisson-noise image are computed here, once,
on first use, for whichever formats ask for them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

__all__ = ["Frame", "NoiseImage", "integer_image"]


def integer_image(image, scale: float, adc: float, rows: slice, cols: slice,
                  block_rows: int = 256, threads: int | None = None) -> np.ndarray:
    """Noiseless SMV pixels: ``floor(v * scale + adc + 0.5)`` clipped, ROI only.

    Parameters
    ----------
    image : numpy.ndarray
        float32 image ``(spixels, fpixels)``.
    scale, adc : float
        Scale factor and ADC offset.
    rows, cols : slice
        The ROI rectangle; pixels outside are 0.
    block_rows : int, optional
        Rows converted at a time (keeps temporaries small).
    threads : int, optional
        Threads converting blocks (default: as the kernel); the result does
        not depend on it.

    Returns
    -------
    numpy.ndarray
        uint16 image of the same shape.
    """
    from .. import _threads

    out = np.zeros(image.shape, dtype=np.uint16)

    def convert(r0):
        r1 = min(r0 + block_rows, rows.stop)
        test = image[r0:r1, cols].astype(np.float64)
        test *= scale
        test += adc
        np.clip(test, 0.0, 65535.0, out=test)
        test += 0.5
        # C rounds with floorf, i.e. after converting to single precision
        out[r0:r1, cols] = np.floor(test.astype(np.float32)).astype(np.uint16)

    _threads.map_ordered(convert, range(rows.start, rows.stop, block_rows), _threads.pass_threads(threads))
    return out


@dataclass(frozen=True)
class NoiseImage:
    """C's ``-noisefile`` image and the numbers it reports."""

    image: np.ndarray
    photons: float
    overloads: int


@dataclass
class Frame:
    """One rendered image and what its output formats need.

    Attributes
    ----------
    image : numpy.ndarray
        float32 image ``(spixels, fpixels)``, photons per pixel.
    header : dict
        SMV header values in C's units (see :class:`nbnumba.io.smv.SMVHeader`).
    roi : tuple or numpy.ndarray or None
        Region of interest as the run stores it: pixels outside are 0 in
        the integer, PGM and noise images.
    rows, cols : slice
        The ROI rectangle on the slow and fast axes.
    max_I, rmsd : float
        Statistics of the float image (C's, from the run).
    intfile_scale : float
        Requested SMV scale; 0 or less means ``55000 / max_I`` (1 if max_I
        is not positive).
    pgm_scale : float
        Requested PGM scale; 0 or less means ``250 / (5 rmsd)`` (the SMV
        scale if rmsd is not positive).
    adc_offset : float
        ADC offset of the integer and noise images.
    seed : int or None
        Noise seed as C stores it (negated).
    counting_noise : bool
        Photon counts (:attr:`counts`) are Poisson deviates; False
        (``-nonoise``): the expected photons rounded to integers.
    geometry : FrameGeometry or None
        The rendered detector and beam, for the formats that describe them
        (miniCBF, NeXus, EDF).
    smv_pad : bool
        SMV headers longer than 512 bytes are padded to a multiple of 512
        (spec mode); False keeps C's bytes (parity mode).
    """

    image: np.ndarray
    header: dict
    roi: object
    rows: slice
    cols: slice
    max_I: float
    rmsd: float
    intfile_scale: float = 0.0
    pgm_scale: float = 0.0
    adc_offset: float = 40.0
    seed: int | None = None
    extra: dict = field(default_factory=dict)
    counting_noise: bool = True
    geometry: object = None
    smv_pad: bool = False

    @classmethod
    def from_result(cls, result, intfile_scale: float = 0.0, pgm_scale: float = 0.0,
                    adc_offset: float = 40.0, seed: int | None = None, counting_noise: bool = True) -> Frame:
        """The frame of a :class:`~nbnumba.engine.SimResult`.

        Parameters
        ----------
        result : SimResult
            A finished render.
        intfile_scale, pgm_scale, adc_offset, seed, counting_noise
            See the class attributes.

        Returns
        -------
        Frame
        """
        from nbnumba.engine import roi_slices
        from nbnumba.io.geometry import FrameGeometry
        from nbnumba.runner import smv_header_values

        prep = result.prepared
        rows, cols = roi_slices(prep)
        return cls(image=result.image, header=smv_header_values(result), roi=prep.roi, rows=rows, cols=cols,
                   max_I=float(result.stats.max_I), rmsd=float(result.stats.rmsd),
                   intfile_scale=float(intfile_scale), pgm_scale=float(pgm_scale),
                   adc_offset=float(adc_offset), seed=seed, counting_noise=bool(counting_noise),
                   geometry=FrameGeometry.from_prepared(prep), smv_pad=prep.config.mode == "spec")

    @cached_property
    def int_scale(self) -> float:
        """The SMV scale used: the requested one, or C's ``55000 / max_I``."""
        if self.intfile_scale > 0.0:
            return self.intfile_scale
        return 55000.0 / self.max_I if self.max_I > 0.0 else 1.0

    @cached_property
    def pgm_scale_used(self) -> float:
        """The PGM scale used: the requested one, or C's ``250 / (5 rmsd)``."""
        if self.pgm_scale > 0.0:
            return self.pgm_scale
        return 250.0 / (5.0 * self.rmsd) if self.rmsd > 0.0 else self.int_scale

    @cached_property
    def int_image(self) -> np.ndarray:
        """The noiseless uint16 image of the SMV file."""
        return integer_image(self.image, self.int_scale, self.adc_offset, self.rows, self.cols)

    @cached_property
    def noise(self) -> NoiseImage:
        """C's Poisson-noise image (needs :attr:`seed`)."""
        from nbnumba.kernels.noise import poisson_image

        if self.seed is None:
            raise ValueError("a noise image needs a seed")
        image, photons, overloads = poisson_image(self.image, self.roi, self.seed, adc_offset=self.adc_offset)
        return NoiseImage(image, float(photons), int(overloads))

    @cached_property
    def counts(self) -> np.ndarray:
        """int32 photon counts of a counting detector (miniCBF, NeXus): no ADC offset, no 16-bit clip.

        With :attr:`counting_noise`, C's Poisson deviates from :attr:`seed`
        (the noise image's, less its offset); otherwise the expected photons
        rounded to the nearest integer.  0 outside the ROI.
        """
        if not self.counting_noise:
            out = np.zeros(self.image.shape, dtype=np.int32)
            block = np.floor(self.image[self.rows, self.cols].astype(np.float64) + 0.5)
            out[self.rows, self.cols] = np.clip(block, 0, 2**31 - 1).astype(np.int32)
            return out
        from nbnumba.kernels.noise import poisson_counts

        if self.seed is None:
            raise ValueError("Poisson counts need a seed")
        return poisson_counts(self.image, self.roi, self.seed)[0]
