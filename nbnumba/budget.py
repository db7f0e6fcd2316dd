"""Resource estimates: refuse what cannot fit in memory, warn about very long runs.

Every large allocation of a run is estimated here before it is made, so a
request that cannot fit (``-detpixels 100000``, ``-mosaic_dom 1e9``, an HKL
file spanning indices of +-2000) stops with one line saying how much memory
it would need, instead of a ``MemoryError`` traceback or the machine swapping.

The limit is the memory available now (``MemAvailable`` of
``/proc/meminfo``, or ``os.sysconf`` where there is no ``/proc``); the
environment variable ``NBNUMBA_MEMORY_LIMIT`` (bytes, suffixes k/M/G/T
allowed) overrides it, which the tests use.

The work estimate counts kernel evaluations (rendered pixels x sources x
mosaic domains x phi steps x oversample^2 x detector layers) at about
:data:`SECONDS_PER_EVALUATION` each; a run estimated above
:data:`LONG_RUN_SECONDS` gets a warning with the estimate, not an error.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from nbnumba.errors import ConfigError, NbnumbaError

__all__ = [
    "BYTES_PER_PIXEL",
    "LONG_RUN_SECONDS",
    "SECONDS_PER_EVALUATION",
    "RunEstimate",
    "available_memory",
    "check_memory",
    "check_run",
    "estimate_run",
    "human_bytes",
    "human_seconds",
    "source_count",
]

BYTES_PER_PIXEL = 40
"""Memory per detector pixel of a run: the float64 accumulator, the float32
image, the integer, noise and PGM images, the per-pixel flags and the
temporaries of the noise and statistics code (an upper estimate)."""

SECONDS_PER_EVALUATION = 5e-9
"""Rough cost of one kernel evaluation on this class of machine (all cores)."""

LONG_RUN_SECONDS = 3600.0
"""Runs estimated longer than this get a warning."""

# a source row, a cell of a (phi, domain) pair twice (cells, cells_first), a
# mosaic rotation and the Python objects built on the way (upper estimates)
_BYTES_PER_SOURCE = 8 * 16 + 400
_BYTES_PER_CELL = 8 * 9 * 2 + 600
_BYTES_PER_DOMAIN = 8 * 9 + 400
_HEADROOM = 64 * 1024**2

_SUFFIX = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def human_bytes(nbytes: float) -> str:
    """``nbytes`` as a short text with a binary unit (``"1.5 GiB"``)."""
    value = float(nbytes)
    if not math.isfinite(value):
        return "an unbounded amount"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(value) < 1024.0 or unit == "PiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.3g} {unit}"
        value /= 1024.0
    return f"{value:.3g} EiB"  # pragma: no cover


def human_seconds(seconds: float) -> str:
    """A duration as a short text (``"3.2 h"``)."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    if seconds < 3 * 365 * 86400:
        return f"{seconds / 86400:.1f} days"
    return f"{seconds / (365 * 86400):.3g} years"


def _limit_from_env() -> int | None:
    text = os.environ.get("NBNUMBA_MEMORY_LIMIT", "").strip().lower().removesuffix("b").removesuffix("i")
    if not text:
        return None
    unit = text[-1] if text[-1] in _SUFFIX else ""
    try:
        return int(float(text[: len(text) - len(unit)]) * _SUFFIX[unit])
    except ValueError:
        return None


def available_memory() -> int | None:
    """Bytes of memory available to this run now, or None when unknown.

    Returns
    -------
    int or None
        ``NBNUMBA_MEMORY_LIMIT`` if set, else ``MemAvailable`` from
        ``/proc/meminfo``, else available physical pages from ``os.sysconf``.
    """
    env = _limit_from_env()
    if env is not None:
        return env
    try:
        with open("/proc/meminfo", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(nbytes: float, what: str, error: type[NbnumbaError] = ConfigError) -> None:
    """Refuse an allocation of `nbytes` that cannot fit in the available memory.

    Parameters
    ----------
    nbytes : float
        Size of the planned allocation (a float, so products of huge counts
        do not overflow).
    what : str
        What would be allocated, for the message.
    error : type, optional
        The :class:`~nbnumba.errors.NbnumbaError` subclass raised.

    Raises
    ------
    NbnumbaError
        ``"<what> would need <size> of memory; <avail> is available"``.
    """
    avail = available_memory()
    if avail is None:
        return
    if nbytes + _HEADROOM > avail:
        raise error(f"{what} would need {human_bytes(nbytes)} of memory; {human_bytes(avail)} is available")


@dataclass(frozen=True)
class RunEstimate:
    """Memory and time a run is expected to take.

    Attributes
    ----------
    memory_bytes : float
        Image buffers plus per-step tables.
    evaluations : float
        Kernel evaluations (rendered pixels x steps x detector layers).
    seconds : float
        ``evaluations * SECONDS_PER_EVALUATION``.
    """

    memory_bytes: float
    evaluations: float
    seconds: float


def _roi_pixels(fpixels: int, spixels: int, roi) -> float:
    if roi is None:
        return float(fpixels) * float(spixels)
    xmin, xmax, ymin, ymax = (int(v) for v in roi)
    xmin = 0 if xmin < 0 else xmin
    ymin = 0 if ymin < 0 else ymin
    xmax = fpixels - 1 if xmax < 0 or xmax > fpixels - 1 else xmax
    ymax = spixels - 1 if ymax < 0 or ymax > spixels - 1 else ymax
    return float(max(0, xmax - xmin + 1)) * float(max(0, ymax - ymin + 1))


def estimate_run(fpixels: int, spixels: int, sources: int, phisteps: int, mosaic_domains: int,
                 oversample: int, thicksteps: int = 1, roi=None) -> RunEstimate:
    """Memory and work of a run with these counts.

    Parameters
    ----------
    fpixels, spixels : int
        Detector size in pixels.
    sources : int
        X-ray sources (divergence x dispersion points, or source-file rows).
    phisteps, mosaic_domains, oversample, thicksteps : int
        Step counts after C's auto-selection.
    roi : tuple of 4 int, optional
        ``(xmin, xmax, ymin, ymax)``; only these pixels are rendered.

    Returns
    -------
    RunEstimate
        The estimate (floats: products of large counts never overflow).
    """
    pixels = float(fpixels) * float(spixels)
    cells = float(phisteps) * float(mosaic_domains)
    memory = (pixels * BYTES_PER_PIXEL + float(sources) * _BYTES_PER_SOURCE + cells * _BYTES_PER_CELL
              + float(mosaic_domains) * _BYTES_PER_DOMAIN)
    steps = float(sources) * cells * float(oversample) ** 2 * float(max(thicksteps, 1))
    evaluations = _roi_pixels(fpixels, spixels, roi) * steps
    return RunEstimate(memory, evaluations, evaluations * SECONDS_PER_EVALUATION)


def source_count(config, grid_sources: int) -> int:
    """Sources a run will have: the source-file rows, else the divergence x dispersion grid.

    Parameters
    ----------
    config : SimConfig
        The run (its ``source_table``).
    grid_sources : int
        ``hdivsteps * vdivsteps * dispsteps`` (an upper bound: round
        divergence drops the corners).

    Returns
    -------
    int
        The number of sources (at least 1).
    """
    table = config.source_table
    if table is not None and len(table) > 0:
        return len(table)
    return max(int(grid_sources), 1)


def run_description(fpixels: int, spixels: int, sources: int, phisteps: int, mosaic_domains: int) -> str:
    """What a run's memory goes to, for the error that refuses it."""
    return (f"a {fpixels} x {spixels} pixel image with {sources} source(s), {phisteps} phi step(s) "
            f"and {mosaic_domains} mosaic domain(s)")


def check_run(fpixels: int, spixels: int, sources: int, phisteps: int, mosaic_domains: int,
              oversample: int, thicksteps: int = 1, roi=None) -> list[str]:
    """Refuse a run that cannot fit in memory; warn about one that takes hours.

    Parameters
    ----------
    fpixels, spixels, sources, phisteps, mosaic_domains, oversample, thicksteps, roi
        As for :func:`estimate_run`.

    Returns
    -------
    list of str
        Warning lines (empty, or one line with the time estimate).

    Raises
    ------
    ConfigError
        If the image and per-step tables would need more memory than is
        available; the message says how much.
    """
    est = estimate_run(fpixels, spixels, sources, phisteps, mosaic_domains, oversample, thicksteps, roi)
    check_memory(est.memory_bytes, run_description(fpixels, spixels, sources, phisteps, mosaic_domains))
    if est.seconds > LONG_RUN_SECONDS:
        return [f"WARNING: this run is estimated to take about {human_seconds(est.seconds)} "
                f"({est.evaluations:.3g} evaluations at ~{SECONDS_PER_EVALUATION * 1e9:g} ns each)"]
    return []
