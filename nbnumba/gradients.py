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
    "default_step",
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
    changes.update(values)
    return apply_changes(config, changes)


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
