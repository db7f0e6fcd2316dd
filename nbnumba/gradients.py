"""Finite-difference gradients of the image, and least-squares refinement.

The simulator is not differentiable as written (Numba kernels), but it is
cheap to call again with one field changed, so derivatives come from
central differences::

    dI/dp ~ (I(p + h) - I(p - h)) / (2 h)

Parameters are :class:`~nbnumba.config.SimConfig` fields by name, scalar
(``'distance'``, ``'lambda0'``, ``'Na'``, ``'mosaic_spread'``,
``'detector_rotx'``, ``'phi0'``, ``'Xbeam'``, ...) or one component of a
vector field (``'misset[0]'``, ``'cell_angstrom[1]'``, ``'cell_angles[2]'``),
in the config's units: SI (metres, radians), except ``cell_angstrom`` in
Angstrom.  Default steps: a relative step of 1e-4 for lengths and other
magnitudes, 1e-5 rad for angles (see :func:`default_step`).

Before differencing, the configuration is *resolved*: values the C program
chooses automatically are pinned to what they are at the starting point, so
that a small change cannot flip a discrete choice (the auto-selected
oversampling, which depends on the distance and the wavelength; the number
of mosaic domains; tricubic interpolation), and "not given" markers of the
differenced fields become explicit values (a NaN beam centre becomes the one
C would use, a zero cell angle becomes 90 degrees, a missing misset becomes
zeros, a random misset becomes the angles it drew).

Images are rendered in double precision and kept as float64 (the float32
image of :func:`nbnumba.simulate` would lose the small differences).

:func:`nbnumba.fitting.fit` fits parameters to an observed image by least
squares on these finite-difference Jacobians, with uncertainties.
"""

from __future__ import annotations

import math

import numpy as np

from .config import FIELD_INFO, SimConfig
from .errors import ConfigError
from .scan import apply_changes, check_field, field_value

__all__ = [
    "automatic_choices",
    "crossed_choices",
    "default_step",
    "discontinuous_pixels",
    "difference_plan",
    "gradient",
    "jacobian",
    "render_image",
    "resolve_config",
]

# The field lists come from the SimConfig field metadata (nbnumba.config.FieldInfo).
# Lengths (metres; Angstrom for cell_angstrom) and attenuation (1/m): relative
# steps, and a small length step when the value is 0
LENGTH_FIELDS = frozenset(n for n, f in FIELD_INFO.items() if f.continuous and f.kind in ("length", "attenuation"))
# angles (radians): absolute steps
ANGLE_FIELDS = frozenset(n for n, f in FIELD_INFO.items() if f.continuous and f.kind == "angle")
# directions: absolute steps on the components
DIRECTION_FIELDS = frozenset(n for n, f in FIELD_INFO.items() if f.continuous and f.kind == "direction")
# values that must stay >= 0: one-sided (forward) differences at 0
NONNEGATIVE_FIELDS = frozenset(
    n for n, f in FIELD_INFO.items() if f.continuous and f.low == 0.0 and not f.low_open
)
RELATIVE_STEP = 1e-4
ANGLE_STEP = 1e-5
DIRECTION_STEP = 1e-5
# steps for a length or magnitude whose value is 0
ZERO_LENGTH_STEP = 1e-8  # metres
ZERO_VALUE_STEP = 1e-4


def _continuous(name: str) -> tuple[str, int | None]:
    fname, idx = check_field(name)
    if not FIELD_INFO[fname].continuous:
        what = "pixel limits are integers" if fname == "roi" else f"a {FIELD_INFO[fname].kind} field"
        raise ConfigError(f"{name}: not a continuous parameter ({what}); "
                          "gradients need a float field or a vector component such as misset[0]")
    return fname, idx


def default_step(name: str, value: float) -> float:
    """The default finite-difference step of a parameter.

    Parameters
    ----------
    name : str
        Field or component (``'distance'``, ``'misset[0]'``).
    value : float
        Its (resolved) value.

    Returns
    -------
    float
        ``1e-5`` rad for angles, ``1e-5`` for direction-vector components,
        otherwise ``1e-4 * |value|`` (``1e-8`` m, or ``1e-4``, when the value
        is 0).
    """
    fname, _ = _continuous(name)
    if fname in ANGLE_FIELDS:
        return ANGLE_STEP
    if fname in DIRECTION_FIELDS:
        return DIRECTION_STEP
    if value != 0.0 and math.isfinite(value):
        return RELATIVE_STEP * abs(value)
    return ZERO_LENGTH_STEP if fname in LENGTH_FIELDS else ZERO_VALUE_STEP


#: config fields that are "not given" (NaN) until the detector stage derives them
DETECTOR_DERIVED = ("Xbeam", "Ybeam", "Xclose", "Yclose", "ORGX", "ORGY", "close_distance")


def _resolved_value(config: SimConfig, prep, name: str) -> float:
    """The value C would use for a parameter, given its stored value and the prepared run."""
    fname, idx = _continuous(name)
    if fname == "cell_angles":
        v = float(field_value(config, name))
        return math.pi / 2 if v <= 0.0 else v
    if fname == "cell_angstrom":
        if config.cell_angstrom is None:
            raise ConfigError(f"{name}: no -cell or -mat, so no cell lengths to vary")
        v = float(field_value(config, name))
        return float(config.cell_angstrom[0]) if v <= 0.0 else v
    if fname == "misset" and config.misset_random:
        used = prep.crystal.cell.misset_used
        return float(used[idx])
    v = field_value(config, name)
    v = float(v)
    if math.isnan(v) and fname in DETECTOR_DERIVED:
        v = float(getattr(prep.detector, fname))
    if fname == "mosaic_spread" and v < 0:
        v = 0.0
    if math.isnan(v):
        raise ConfigError(f"{name}: not set and not derivable; give it a value")
    return v


def resolve_config(config: SimConfig, params=()) -> SimConfig:
    """Pin the automatic choices and make the differenced values explicit.

    Parameters
    ----------
    config : SimConfig
        Starting configuration.
    params : sequence of str
        Parameters that will be differenced.

    Returns
    -------
    SimConfig
        A configuration that renders the same image as ``config`` (up to the
        choice of lattice-factor formula when ``Na``/``Nb``/``Nc`` vary), whose
        oversampling, interpolation and mosaic-domain count no longer depend
        on the other fields, and whose ``params`` hold explicit values.

    Raises
    ------
    ConfigError
        For a parameter that is not a continuous field.
    """
    from .prepare import prepare

    names = list(params)
    for n in names:
        _continuous(n)
    if config.a_matrix is not None and {check_field(n)[0] for n in names} & {"cell_angstrom", "cell_angles"}:
        from .stages.crystal import split_orientation_matrix

        # -mat: vary the cell of A = U B with the orientation U kept
        config = split_orientation_matrix(config)
    prep = prepare(config)
    values = {n: _resolved_value(config, prep, n) for n in names}
    changes: dict = {"oversample": int(prep.sampling.oversample), "interpolate": int(prep.crystal.interpolate)}
    if prep.crystal.mosaic_spread > 0.0:
        changes["mosaic_domains"] = int(prep.crystal.mosaic_domains)
    fields_ = {check_field(n)[0] for n in names}
    if "misset" in fields_ and config.misset_random:
        used = prep.crystal.cell.misset_used
        changes.update({f"misset[{i}]": float(used[i]) for i in range(3)})
        changes["misset_random"] = False
    if "cell_angles" in fields_:
        changes.update({f"cell_angles[{i}]": _resolved_value(config, prep, f"cell_angles[{i}]")
                        for i in range(3)})
    if "cell_angstrom" in fields_:
        changes.update({f"cell_angstrom[{i}]": _resolved_value(config, prep, f"cell_angstrom[{i}]")
                        for i in range(3)})
    if fields_ & {"Na", "Nb", "Nc"} and hasattr(config, "exact_math"):
        # non-integer N uses the exact lattice-factor formula: use it throughout
        changes["exact_math"] = True
    if "mosaic_spread" in fields_ and prep.crystal.mosaic_spread <= 0.0 and config.mosaic_domains <= 0:
        changes["mosaic_domains"] = 10
    changes.update(_pinned_step_counts(prep, fields_))
    changes.update(values)
    return apply_changes(config, changes)


# (range field, count field, step field, Sampling attributes of count, range and step, inclusive ends)
_STEP_TRIPLES = (
    ("osc", "phisteps", "phistep", "phisteps", "osc", "phistep", False),
    ("dispersion", "dispsteps", "dispstep", "dispsteps", "dispersion", "dispstep", True),
    ("hdivrange", "hdivsteps", "hdivstep", "hdivsteps", "hdivrange", "hdivstep", True),
    ("vdivrange", "vdivsteps", "vdivstep", "vdivsteps", "vdivrange", "vdivstep", True),
    ("detector_thick", "detector_thicksteps", "detector_thickstep", "thicksteps", "thick", "thickstep", True),
)


def _pinned_step_counts(prep, fields_: set) -> dict:
    """Pin the step count of a differenced range (``osc``, ``dispersion``, ...).

    C derives the count from the range and the step (``ceil(range / step)``),
    so a small change of the range could add a step.  The count is pinned to
    its value at the start; the step then follows the range (``range /
    count``) where that is the step C used, otherwise the three are kept.
    """
    s = prep.sampling
    changes: dict = {}
    for rng_f, count_f, step_f, count_a, rng_a, step_a, inclusive in _STEP_TRIPLES:
        if rng_f not in fields_:
            continue
        count, rng, step = int(getattr(s, count_a)), float(getattr(s, rng_a)), float(getattr(s, step_a))
        changes[count_f] = count
        intervals = count - 1 if inclusive else count
        if intervals > 0 and step > 0.0 and abs(rng / intervals - step) <= 1e-12 * step:
            changes[step_f] = -1.0
    return changes


def automatic_choices(config: SimConfig) -> dict:
    """The discrete choices C makes for a configuration.

    Parameters
    ----------
    config : SimConfig

    Returns
    -------
    dict
        ``oversample``, ``interpolate``, ``mosaic_domains`` and the step
        counts (``phisteps``, ``dispsteps``, ``hdivsteps``, ``vdivsteps``,
        ``thicksteps``) as the run uses them.
    """
    from .prepare import prepare

    prep = prepare(config)
    s = prep.sampling
    return {"oversample": int(s.oversample), "interpolate": int(prep.crystal.interpolate),
            "mosaic_domains": int(prep.crystal.mosaic_domains), "phisteps": int(s.phisteps),
            "dispsteps": int(s.dispsteps), "hdivsteps": int(s.hdivsteps), "vdivsteps": int(s.vdivsteps),
            "thicksteps": int(s.thicksteps)}


def crossed_choices(config: SimConfig, values: dict) -> list[str]:
    """Discrete choices that C would make differently at other parameter values.

    :func:`resolve_config` pins the automatic choices where a fit starts;
    this says which of them the unpinned configuration would change at
    ``values`` (the refined ones): the auto-selected oversampling (it
    depends on the distance, the wavelength and the crystal size), the
    interpolation switch, the mosaic-domain count, the step counts.

    Parameters
    ----------
    config : SimConfig
        The starting configuration, before :func:`resolve_config`.
    values : dict
        Parameter -> value (config units).

    Returns
    -------
    list of str
        One line per choice that differs; empty when none does.
    """
    if config.a_matrix is not None and {check_field(n)[0] for n in values} & {"cell_angstrom", "cell_angles"}:
        from .stages.crystal import split_orientation_matrix

        config = split_orientation_matrix(config)
    changes = dict(values)
    if any(check_field(n)[0] == "misset" for n in values) and config.misset_random:
        changes["misset_random"] = False
    try:
        before = automatic_choices(config)
        after = automatic_choices(apply_changes(config, changes))
    except ConfigError as exc:
        return [f"cannot check the automatic choices at the refined values: {exc}"]
    moved = ", ".join(f"{k}=" + "{:.6g}".format(v) for k, v in values.items())
    return [f"{k} would be {after[k]}, not the {before[k]} pinned at the start, at the refined values ({moved}); "
            "refit from there if that matters" for k in before if after[k] != before[k]]


def discontinuous_pixels(plus: np.ndarray, centre: np.ndarray, minus: np.ndarray, scale: float = 1.0) -> int:
    """How many pixels jump between ``p - h`` and ``p + h`` instead of changing smoothly.

    A smooth pixel changes by about the same amount on either side of the
    centre; a pixel whose value steps (a nearest-neighbour structure factor
    switching reflection, a sub-pixel crossing a step boundary) changes on
    one side only.  Counted: pixels whose two one-sided changes differ by
    more than half their sum and by more than a tenth of the counting noise
    of ``scale * centre`` photons.

    Parameters
    ----------
    plus, centre, minus : ndarray
        Images at ``p + h``, ``p`` and ``p - h`` (same shape).
    scale : float
        Photons per model unit (the fitted scale).

    Returns
    -------
    int
    """
    up, down = plus - centre, centre - minus
    gap = np.abs(up - down)
    noise = np.sqrt(np.maximum(scale * np.abs(centre), 1.0)) / max(scale, 1e-300)
    return int(np.count_nonzero((gap > 0.5 * (np.abs(up) + np.abs(down))) & (gap > 0.1 * noise)))


def _render_flat(config: SimConfig, backend: str = "cpu", dtype: str = "float64",
                 nthreads: int | None = None) -> np.ndarray:
    """The image in double precision, shape (spixels, fpixels).

    On the CPU the kernel writes straight into a float64 array (the same
    numbers :func:`nbnumba.simulate` rounds to float32).  The CUDA kernel
    stores float32, so a CUDA render is the float32 image, widened.
    """

    from . import engine
    from .prepare import prepare

    engine.check_dtype(config, dtype)
    backend = engine.resolve_backend(backend)
    prep = prepare(config)
    image, _ = engine.render_flat(prep, backend, dtype, out_dtype=np.float64, nthreads=nthreads)
    return np.asarray(image, dtype=np.float64).reshape(prep.spixels, prep.fpixels)


def render_image(config: SimConfig, backend: str = "cpu", dtype: str = "float64",
                 nthreads: int | None = None) -> np.ndarray:
    """Render ``config`` and return the image in double precision.

    Same numbers as :func:`nbnumba.simulate` before its float32 rounding.

    Parameters
    ----------
    config : SimConfig
    backend : {'cpu', 'cuda', 'auto'}
    dtype : {'float64', 'float32'}
        Kernel precision (keep float64 for finite differences).
    nthreads : int, optional
        CPU threads.

    Returns
    -------
    ndarray, shape (spixels, fpixels), float64
    """
    return _render_flat(config, backend=backend, dtype=dtype, nthreads=nthreads)


def _render_task(task):
    config, backend, dtype, nthreads = task
    return _render_flat(config, backend=backend, dtype=dtype, nthreads=nthreads)


def difference_plan(base: SimConfig, params, steps) -> list[tuple]:
    """How each parameter is differenced.

    Parameters
    ----------
    base : SimConfig
        Resolved configuration (see :func:`resolve_config`).
    params : sequence of str
        Parameters.
    steps : dict or None
        Parameter -> step; the others get :func:`default_step`.

    Returns
    -------
    list of tuple
        ``(name, value, step, low, high, high - low)`` per parameter; ``low``
        equals ``value`` for a forward difference at a lower bound of 0.
    """
    steps = dict(steps or {})
    unknown = set(steps) - set(params)
    if unknown:
        raise ConfigError(f"step given for {sorted(unknown)[0]!r}, which is not among the parameters "
                          f"({', '.join(params)})")
    plan = []
    for name in params:
        fname, _ = _continuous(name)
        value = float(field_value(base, name))
        h = float(steps[name]) if name in steps else default_step(name, value)
        if not (h > 0.0 and math.isfinite(h)):
            raise ConfigError(f"{name}: step must be a positive number, got {h!r}")
        lo, hi = value - h, value + h
        if fname in NONNEGATIVE_FIELDS and lo < 0.0:
            lo = value  # forward difference at the boundary
        plan.append((name, value, h, lo, hi, hi - lo))
    return plan


def _differences(base, plan, backend, dtype, nthreads, executor):
    from .executors import LocalExecutor

    executor = executor or LocalExecutor()
    tasks = []
    for name, value, _h, lo, hi, _den in plan:
        tasks.append((apply_changes(base, {name: hi}), backend, dtype, nthreads))
        tasks.append((apply_changes(base, {name: lo}), backend, dtype, nthreads))
    return executor.map(_render_task, tasks)


def gradient(config: SimConfig, params, steps: dict | None = None, backend: str = "cpu",
             dtype: str = "float64", loss=None, executor=None, nthreads: int | None = None,
             resolve: bool = True) -> dict:
    """Central finite-difference derivatives of the image (or of a loss).

    Parameters
    ----------
    config : SimConfig
        Point at which to differentiate.
    params : str or sequence of str
        Parameters: field names or components (``'distance'``, ``'misset[0]'``).
    steps : dict, optional
        Parameter -> step in its units; others get :func:`default_step`.
    backend : {'cpu', 'cuda', 'auto'}
    dtype : {'float64', 'float32'}
        Kernel precision; float32 is too coarse for small steps.
    loss : callable, optional
        ``loss(image) -> float`` of the float64 image; when given, the
        derivatives of the loss are returned instead of image gradients.
    executor : Executor, optional
        Runs the ``2 * len(params)`` renders (default: in this process).
    nthreads : int, optional
        CPU threads per render.
    resolve : bool
        Pin automatic choices first (:func:`resolve_config`); turn off only
        for a configuration that is already resolved.

    Returns
    -------
    dict
        Parameter -> ndarray (spixels, fpixels) float64 of dI/dp in photons
        per unit of the parameter, or -> float d(loss)/dp.  A parameter at
        a lower bound of 0 (``mosaic_spread`` 0, ...) gets a forward
        difference.

    Examples
    --------
    >>> g = gradient(cfg, ["distance", "misset[0]"])            # doctest: +SKIP
    >>> g["distance"].shape == (cfg.spixels, cfg.fpixels)        # doctest: +SKIP
    """
    if isinstance(params, str):
        params = [params]
    params = list(params)
    if not params:
        raise ConfigError("no parameters to differentiate")
    if len(set(params)) != len(params):
        raise ConfigError("a parameter is listed twice")
    base = resolve_config(config, params) if resolve else config
    plan = difference_plan(base, params, steps)
    images = _differences(base, plan, backend, dtype, nthreads, executor)
    out = {}
    for k, (name, _v, _h, _lo, _hi, den) in enumerate(plan):
        plus, minus = images[2 * k], images[2 * k + 1]
        if loss is None:
            out[name] = (plus - minus) / den
        else:
            out[name] = (float(loss(plus)) - float(loss(minus))) / den
    return out


def jacobian(config: SimConfig, params, steps: dict | None = None, backend: str = "cpu",
             dtype: str = "float64", executor=None, nthreads: int | None = None,
             resolve: bool = True) -> np.ndarray:
    """The image Jacobian as a matrix.

    Parameters
    ----------
    config, params, steps, backend, dtype, executor, nthreads, resolve
        As for :func:`gradient`.

    Returns
    -------
    ndarray, shape (spixels * fpixels, len(params)), float64
        Column ``j``: the flattened dI/dp_j.
    """
    g = gradient(config, params, steps=steps, backend=backend, dtype=dtype, executor=executor,
                 nthreads=nthreads, resolve=resolve)
    return np.stack([g[p].reshape(-1) for p in params], axis=1)
