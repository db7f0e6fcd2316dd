"""Least-squares fits of the model to observed images, with uncertainties.

:func:`fit` adjusts :class:`~nbnumba.config.SimConfig` parameters (names as
in :mod:`nbnumba.gradients`: ``'distance'``, ``'misset[0]'``, ...) and an
overall scale so that the rendered image matches an observed one, using
:func:`scipy.optimize.least_squares` (trust-region reflective: bounds,
robust losses, parameter scaling) on finite-difference Jacobians from
:func:`nbnumba.gradients.gradient`.  At the solution it reports, per
parameter, the value, its standard uncertainty from the covariance
``(J^T W J)^-1`` scaled by the reduced chi-square, and the correlations; the
chi-square per degree of freedom; and an honest status.

Weights
-------
``"poisson"`` (default)
    ``1 / max(scale * model, VARIANCE_FLOOR)``: counting statistics, for
    images in photons (noise images with the ADC offset removed,
    photon-counting frames).  The variances come from the model, not from
    the counts (weights from the counts bias a fit towards low values), and
    are updated from the solution and the fit repeated until they settle
    (iteratively reweighted least squares).  The reduced chi-square of a
    good fit is then about 1 (less where many pixels expect far below one
    photon), and a fit whose chi-square is far above what the noise explains
    is reported ``suspect``.  The sigmas are those of counting statistics,
    inflated by the reduced chi-square where it exceeds 1.
``"unit"``
    All pixels alike (the chi-square scale is then unknown: the status says
    so, and the sigmas come from the residuals themselves, through the
    sandwich estimator, which holds whatever the real variances are).
array
    Per-pixel weights (relative inverse variances); 0 drops a pixel.  The
    sigmas are scaled by the reduced chi-square.

Beyond one image
----------------
:func:`fit` searches the crystal size of a square or tophat crystal over
whole numbers (:func:`integer_parameters`) and warns, in
:attr:`FitResult.warnings`, when a discrete choice pinned at the start would
change at the refined values or finite differences jump.
:func:`fit_coarse_to_fine` widens the capture range: binned images and
broadened spots first (:class:`FitStage`, :func:`binned_config`), several
starting orientations, then the full model.  :func:`fit_frames` refines
several frames together: shared parameters and per-frame orientation and
scale, the renders spread over an executor (:class:`FramesFitResult`).

Internally each parameter is measured in units of its finite-difference
step (``x = (p - p_start) / step``) so that the optimiser sees numbers of
order one whatever the physical units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .config import SimConfig
from .errors import ConfigError

__all__ = ["DEFAULT_STAGES", "FitResult", "FitStage", "ParameterEstimate", "bin_image", "binned_config", "fit",
           "fit_coarse_to_fine", "fit_frames", "FramesFitResult", "integer_parameters", "start_offsets"]

# smallest variance (photons) a Poisson weight assumes for a pixel
VARIANCE_FLOOR = 0.01
# reweighting rounds of a Poisson fit, and the weight change that ends them
REWEIGHT_ROUNDS = 4
REWEIGHT_RTOL = 1e-3

LOSSES = ("linear", "soft_l1", "huber", "cauchy", "arctan")
# a Poisson-weighted fit is "suspect" when chi2/dof exceeds 1 by more than
# this many standard deviations of the chi-square distribution, and by 10 %
SUSPECT_SIGMAS = 5.0
SUSPECT_EXCESS = 0.10
# crystal shapes whose lattice factor needs whole numbers of cells
INTEGER_SHAPES = ("square", "tophat")
# rounds of the integer search over Na/Nb/Nc
MAX_SEARCH_ROUNDS = 3


@dataclass
class ParameterEstimate:
    """One refined quantity: where it started, where it ended, how well known."""

    start: float
    value: float
    sigma: float
    step: float
    #: ``least squares``, or ``integer search`` for a crystal size of a square
    #: or tophat crystal (no sigma: NaN, written as null)
    method: str = "least squares"

    def as_dict(self) -> dict:
        """JSON-ready mapping: ``start``, ``value``, ``sigma``, ``step``, ``method`` (NaN as None)."""
        return {"start": _finite(self.start), "value": _finite(self.value), "sigma": _finite(self.sigma),
                "step": _finite(self.step), "method": self.method}


def _finite(v: float):
    """A float for JSON: NaN and infinities become None."""
    return float(v) if math.isfinite(v) else None


@dataclass
class FitResult:
    """Outcome of :func:`fit`.

    Attributes
    ----------
    config : SimConfig
        The refined configuration (automatic choices pinned).
    parameters : dict
        Name -> :class:`ParameterEstimate`, the fitted ``scale`` included
        (observed ~ scale * model) unless the scale was fixed.
    correlations : ndarray
        Correlation matrix, rows and columns in the order of ``parameters``.
    chi2 : float
        Weighted sum of squared residuals at the solution.
    dof : int
        Pixels used minus parameters fitted.
    status : str
        ``converged``, ``suspect`` (chi-square far above what the weights
        allow), ``uncalibrated`` (converged, but unit weights give no absolute
        chi-square), or ``not converged``.
    message : str
        The optimiser's reason for stopping, and the status reason.
    nfev, njev : int
        Model evaluations and Jacobians (each Jacobian is ``2 * len(params)`` renders).
    history : list of float
        Chi-square after each model evaluation.
    warnings : list of str
        One line each: a discrete choice the refined values would change
        (an auto-selected oversampling, a step count), pixels whose finite
        differences jump (a nearest-neighbour structure-factor boundary).
    stages : list of dict
        Coarse-to-fine fits (:func:`fit_coarse_to_fine`): per stage its
        binning, spot broadening, starts tried, chi2/dof and values.
    integer_search : list of dict
        Crystal sizes tried by the integer search: ``{"values", "chi2"}``.
    """

    config: SimConfig
    parameters: dict
    correlations: np.ndarray
    chi2: float
    dof: int
    status: str
    message: str
    nfev: int = 0
    njev: int = 0
    weights: str = "poisson"
    history: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    stages: list = field(default_factory=list)
    integer_search: list = field(default_factory=list)

    @property
    def chi2_per_dof(self) -> float:
        """Reduced chi-square."""
        return self.chi2 / self.dof if self.dof > 0 else math.nan

    @property
    def values(self) -> dict:
        """Name -> refined value."""
        return {k: p.value for k, p in self.parameters.items()}

    def as_dict(self) -> dict:
        """The JSON document of ``nbnumba refine --out``."""
        names = list(self.parameters)
        return {
            "parameters": {k: p.as_dict() for k, p in self.parameters.items()},
            "correlations": {"names": names, "matrix": [[_finite(v) for v in row]
                                                        for row in np.round(self.correlations, 6).tolist()]},
            "chi2": self.chi2,
            "dof": self.dof,
            "chi2_per_dof": self.chi2_per_dof,
            "weights": self.weights,
            "status": self.status,
            "message": self.message,
            "nfev": self.nfev,
            "njev": self.njev,
            "history": self.history,
            "warnings": list(self.warnings),
            "stages": list(self.stages),
            "integer_search": list(self.integer_search),
        }


def _given_weights(spec, n: int) -> tuple[np.ndarray | None, str]:
    """Fixed weights from the ``weights`` argument; ``None`` for Poisson (from the model)."""
    if spec is None or (isinstance(spec, str) and spec == "poisson"):
        return None, "poisson"
    if isinstance(spec, str):
        if spec == "unit":
            return np.ones(n), "unit"
        raise ConfigError(f"weights must be 'poisson', 'unit' or an array, not {spec!r}")
    w = np.asarray(spec, dtype=np.float64).reshape(-1)
    if w.size != n:
        raise ConfigError(f"weights have {w.size} values, the image {n}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ConfigError("weights must be finite and non-negative")
    return w, "given"


class _Problem:
    """Residuals and Jacobian of one fit, with the last model kept for the Jacobian."""

    def __init__(self, base, params, steps, obs, sqrt_w, good, fit_scale, render, executor):
        from .gradients import difference_plan

        self.base = base
        self.good = good
        self.params = params
        plan = difference_plan(base, params, steps)
        self.start = np.array([v for _n, v, _h, _lo, _hi, _d in plan])
        self.step = np.array([d / 2.0 for _n, _v, _h, _lo, _hi, d in plan])
        self.obs = obs
        self.sqrt_w = sqrt_w
        self.fit_scale = fit_scale
        self.render = render
        self.executor = executor
        self.cache: dict = {}
        self.history: list = []
        self.njev = 0
        self.start_scale = 1.0
        self.jumps: dict = {}

    def config_at(self, x) -> SimConfig:
        from .scan import apply_changes

        values = self.start + self.step * np.asarray(x[: len(self.params)])
        return apply_changes(self.base, dict(zip(self.params, (float(v) for v in values))))

    def model(self, x) -> np.ndarray:
        from .gradients import render_image

        key = tuple(np.asarray(x[: len(self.params)], dtype=float).tolist())
        if key not in self.cache:
            self.cache = {key: render_image(self.config_at(x), **self.render).reshape(-1)[self.good]}
        return self.cache[key]

    def scale(self, x) -> float:
        return float(x[-1]) if self.fit_scale else 1.0

    def poisson_weights(self, x) -> np.ndarray:
        return _poisson_weights(self.scale(x), self.model(x))

    def residuals(self, x) -> np.ndarray:
        try:
            m = self.model(x)
        except ConfigError:
            # outside what can be rendered: a large residual keeps the optimiser away
            return np.full(self.obs.size, 1e10)
        r = self.sqrt_w * (self.scale(x) * m - self.obs)
        self.history.append(float(np.dot(r, r)))
        return r

    def jacobian(self, x) -> np.ndarray:
        from .gradients import _differences, difference_plan, discontinuous_pixels

        self.njev += 1
        cols = []
        if self.params:
            cfg = self.config_at(x)
            plan = difference_plan(cfg, self.params, dict(zip(self.params, self.step.tolist())))
            images = _differences(cfg, plan, self.render["backend"], self.render["dtype"], self.render["nthreads"],
                                  self.executor)
            centre = self.model(x)
            for k, (name, value, _h, lo, _hi, den) in enumerate(plan):
                plus, minus = images[2 * k].reshape(-1)[self.good], images[2 * k + 1].reshape(-1)[self.good]
                if lo != value:
                    jumps = discontinuous_pixels(plus, centre, minus, self.scale(x))
                    if jumps:
                        self.jumps[name] = max(self.jumps.get(name, 0), jumps)
                cols.append(self.scale(x) * (plus - minus) / den * self.step[k])
        if self.fit_scale:
            cols.append(self.model(x))
        if not cols:
            return np.zeros((self.obs.size, 0))
        return self.sqrt_w[:, None] * np.stack(cols, axis=1)


def _bounds(problem: _Problem, fit_scale: bool):
    from .gradients import NONNEGATIVE_FIELDS, _continuous

    lo = []
    for name, start, step in zip(problem.params, problem.start, problem.step):
        fname, _ = _continuous(name)
        lo.append((0.0 - start) / step if fname in NONNEGATIVE_FIELDS else -np.inf)
    if fit_scale:
        lo.append(0.0)
    return np.array(lo), np.full(len(lo), np.inf)


def _status(ok: bool, chi2_dof: float, dof: int, weights: str, message: str) -> tuple[str, str]:
    if not ok:
        return "not converged", message
    if weights == "unit":
        return "uncalibrated", message + "; unit weights: chi-square has no absolute scale"
    allowed = 1.0 + max(SUSPECT_SIGMAS * math.sqrt(2.0 / max(dof, 1)), SUSPECT_EXCESS)
    if chi2_dof > allowed:
        return "suspect", (message + f"; chi2/dof = {chi2_dof:.3g} is above the {allowed:.3g} the noise "
                           "explains (wrong minimum, missing physics or wrong weights)")
    return "converged", message


def _param_list(params) -> list:
    if isinstance(params, str):
        params = [params]
    params = list(params)
    if not params:
        raise ConfigError("no parameters to refine")
    if len(set(params)) != len(params):
        raise ConfigError("a parameter is listed twice")
    return params


def integer_parameters(config: SimConfig, params) -> list:
    """The parameters that :func:`fit` searches over integers instead of refining continuously.

    The crystal size ``Na``/``Nb``/``Nc`` of a ``square`` or ``tophat``
    crystal: their lattice factor is defined for whole numbers of cells only
    (at non-integer N the finite-difference gradient can even have the wrong
    sign).  For ``round`` and ``gauss`` crystals the size is continuous.

    Parameters
    ----------
    config : SimConfig
    params : sequence of str

    Returns
    -------
    list of str
    """
    if config.xtal_shape not in INTEGER_SHAPES:
        return []
    return [p for p in params if p in ("Na", "Nb", "Nc")]


def fit(config: SimConfig, observed, params, *, mask=None, weights="poisson", fit_scale: bool = True,
        steps: dict | None = None, loss: str = "linear", max_nfev: int = 50, backend: str = "cpu",
        dtype: str = "float64", nthreads: int | None = None, executor=None, callback=None) -> FitResult:
    """Fit parameters (and a scale) so the rendered image matches ``observed``.

    Parameters
    ----------
    config : SimConfig
        Starting model.
    observed : array_like, shape (spixels, fpixels)
        Observed image in photons (remove any ADC offset first).
    params : sequence of str
        Parameters to refine (see :mod:`nbnumba.gradients`).  ``Na``/``Nb``/
        ``Nc`` of a ``square`` or ``tophat`` crystal are searched over whole
        numbers (N, N+1, N-1, ... while chi-square improves, the others
        refitted at each), reported with ``method='integer search'``.
    mask : array_like of bool, optional
        Pixels to use (True).  Pixels the run does not render (outside its
        ``-roi``, or 0 in its ``-mask``) and non-finite observed pixels are
        always dropped.
    weights : 'poisson', 'unit' or array_like
        Per-pixel weights (see the module notes).
    fit_scale : bool
        Refine an overall scale factor ``scale`` (observed ~ scale * model).
    steps : dict, optional
        Finite-difference steps per parameter (default :func:`~nbnumba.gradients.default_step`).
    loss : {'linear', 'soft_l1', 'huber', 'cauchy', 'arctan'}
        Robust loss of :func:`scipy.optimize.least_squares`.
    max_nfev : int
        Most model evaluations.
    backend, dtype, nthreads, executor
        How renders run (see :func:`nbnumba.gradients.gradient`).
    callback : callable, optional
        ``callback(nfev, chi2, values)`` after every model evaluation.

    Returns
    -------
    FitResult
        With ``warnings`` when a discrete choice pinned at the start would
        change at the refined values, or finite differences jump.

    Raises
    ------
    ConfigError
        Bad parameters, weights, loss, or an image of the wrong shape.
    """
    params = _param_list(params)
    if loss not in LOSSES:
        raise ConfigError(f"loss must be one of {', '.join(LOSSES)}, not {loss!r}")
    kw = dict(mask=mask, weights=weights, fit_scale=fit_scale, steps=steps, loss=loss, max_nfev=max_nfev,
              backend=backend, dtype=dtype, nthreads=nthreads, executor=executor, callback=callback)
    integer = integer_parameters(config, params)
    if integer:
        if steps and set(steps) & set(integer):
            raise ConfigError(f"{sorted(set(steps) & set(integer))[0]}: searched over whole numbers, no step to give")
        return _integer_search(config, observed, params, integer, kw)
    res = _fit_continuous(config, observed, params, **kw)
    _add_choice_warnings(res, config, params)
    return res


def _add_choice_warnings(res: FitResult, config: SimConfig, params) -> None:
    from .gradients import crossed_choices

    values = {p: res.parameters[p].value for p in params if res.parameters[p].method == "least squares"}
    if values:
        res.warnings.extend(crossed_choices(config, values))


def _pixels(base: SimConfig, first: np.ndarray, observed, weights, mask):
    """Observed pixels, fixed weights and the pixels a fit uses."""
    from .engine import rendered_mask
    from .prepare import prepare

    obs = np.asarray(observed, dtype=np.float64)
    if obs.size != first.size:
        raise ConfigError(f"observed image has shape {obs.shape}, the model {first.shape}")
    obs = obs.reshape(-1)
    given, wname = _given_weights(weights, obs.size)
    good = np.isfinite(obs) & rendered_mask(prepare(base))
    if given is not None:
        good &= given > 0
    if mask is not None:
        m = np.asarray(mask, dtype=bool).reshape(-1)
        if m.size != obs.size:
            raise ConfigError(f"mask has {m.size} pixels, the image {obs.size}")
        good &= m
    if not good.any():
        raise ConfigError("no pixels to fit (all masked or non-finite)")
    return obs, given, wname, good


def _start_scale(w: np.ndarray, obs: np.ndarray, model: np.ndarray) -> float:
    """Weighted linear least-squares scale of ``model`` onto ``obs``."""
    den = float(np.dot(w * model, model))
    return float(np.dot(w * obs, model)) / den if den > 0 else 1.0


def _fit_continuous(config, observed, params, *, mask, weights, fit_scale, steps, loss, max_nfev, backend, dtype,
                    nthreads, executor, callback) -> FitResult:
    from .gradients import render_image, resolve_config

    render = dict(backend=backend, dtype=dtype, nthreads=nthreads)
    base = resolve_config(config, params)
    first = render_image(base, **render)
    obs, given, wname, good = _pixels(base, first, observed, weights, mask)
    obs_g = obs[good]
    m0 = first.reshape(-1)[good]
    x = np.zeros(len(params) + (1 if fit_scale else 0))
    w = given[good] if given is not None else np.ones(obs_g.size)
    if fit_scale:
        x[-1] = _start_scale(w, obs_g, m0)
    if given is None:
        w = _poisson_weights(x[-1] if fit_scale else 1.0, m0)
    problem = _Problem(base, params, steps, obs_g, np.sqrt(w), good, fit_scale, render, executor)
    problem.cache = {tuple(x[: len(params)].tolist()): m0}
    problem.start_scale = float(x[-1]) if fit_scale else 1.0

    def fun(xv):
        r = problem.residuals(xv)
        if callback is not None:
            callback(len(problem.history), problem.history[-1] if problem.history else math.nan,
                     dict(zip(params, (problem.start + problem.step * xv[: len(params)]).tolist())))
        return r

    if x.size == 0:  # nothing continuous to optimise: the chi-square where it stands
        from types import SimpleNamespace

        sol = SimpleNamespace(x=x, status=1, message="no continuous parameter to optimise")
    else:
        sol = _optimise(fun, problem, x, _bounds(problem, fit_scale), loss, max_nfev, given is None)
    return _summarise(sol, problem, params, fit_scale, wname, int(good.sum()))


def _optimise(fun, problem, x, bounds, loss, max_nfev, reweight: bool):
    """``least_squares``, repeated with Poisson weights from the solution until they settle."""
    from scipy.optimize import least_squares

    for _round in range(REWEIGHT_ROUNDS if reweight else 1):
        sol = least_squares(fun, x, jac=problem.jacobian, bounds=bounds, method="trf", loss=loss, x_scale=1.0,
                            max_nfev=max_nfev, xtol=1e-8, ftol=1e-10, gtol=1e-10)
        x = sol.x
        if not reweight:
            break
        new_w = problem.poisson_weights(x)
        change = float(np.max(np.abs(np.sqrt(new_w) - problem.sqrt_w) / problem.sqrt_w))
        problem.sqrt_w = np.sqrt(new_w)
        if change < REWEIGHT_RTOL:
            break
    return sol


def _integer_search(config, observed, params, integer, kw) -> FitResult:
    """Whole-number crystal sizes: step each while chi-square improves, the rest refitted at each."""
    from .scan import apply_changes, field_value

    cont = [p for p in params if p not in integer]
    starts = {n: float(field_value(config, n)) for n in integer}
    current = {n: max(1, int(round(v))) for n, v in starts.items()}
    tried: dict = {}

    def run(values, from_config):
        key = tuple(values[n] for n in integer)
        if key not in tried:
            res = _fit_continuous(apply_changes(from_config, values), observed, cont, **kw)
            tried[key] = res
        return tried[key]

    best = run(current, config)
    for _round in range(MAX_SEARCH_ROUNDS):
        improved = False
        for name in integer:
            for direction in (1, -1):
                while current[name] + direction >= 1:
                    cand = {**current, name: current[name] + direction}
                    if tuple(cand[n] for n in integer) in tried:
                        break
                    res = run(cand, best.config)
                    if not res.chi2 < best.chi2:
                        break
                    best, current, improved = res, cand, True
        if not improved:
            break
    for name in integer:
        best.parameters[name] = ParameterEstimate(starts[name], float(current[name]), math.nan, 1.0,
                                                  method="integer search")
    n_all = len(best.parameters)
    corr = np.full((n_all, n_all), np.nan)
    k = best.correlations.shape[0]
    corr[:k, :k] = best.correlations
    # the continuous parameters first, then scale, then the searched sizes
    order = [p for p in params if p not in integer] + (["scale"] if "scale" in best.parameters else []) + integer
    best.parameters = {n: best.parameters[n] for n in order}
    best.correlations = corr
    best.integer_search = [{"values": dict(zip(integer, key)), "chi2": r.chi2, "chi2_per_dof": r.chi2_per_dof}
                           for key, r in tried.items()]
    best.message += "; " + ", ".join(f"{n} by integer search ({current[n]} of "
                                     f"{sorted({key[i] for key in tried})})" for i, n in enumerate(integer))
    best.nfev = sum(r.nfev for r in tried.values())
    best.njev = sum(r.njev for r in tried.values())
    if cont:
        _add_choice_warnings(best, config, cont)
    return best


def _poisson_weights(scale: float, model: np.ndarray) -> np.ndarray:
    """Inverse Poisson variances of the expected counts ``scale * model``."""
    return 1.0 / np.maximum(scale * model, VARIANCE_FLOOR)


def _covariance(J: np.ndarray, r: np.ndarray, red: float, wname: str) -> np.ndarray:
    """Covariance of the fitted (scaled) parameters.

    Poisson weights are absolute: the counting-statistics covariance
    ``(J^T J)^-1``, inflated by the reduced chi-square where the fit is worse
    than the noise.  Given weights are relative inverse variances: scaled by
    the reduced chi-square.  Unit weights say nothing of the variances: the
    sandwich estimator ``A^-1 J^T diag(r^2) J A^-1`` takes them from the
    residuals themselves.
    """
    try:
        inv = np.linalg.inv(J.T @ J)
    except np.linalg.LinAlgError:
        return np.full((J.shape[1], J.shape[1]), np.nan)
    if wname == "poisson":
        return inv * max(red, 1.0)
    if wname == "unit":
        meat = (J * (r * r)[:, None]).T @ J
        return inv @ meat @ inv
    return inv * red


def _summarise(sol, problem: _Problem, params, fit_scale, wname, n_used) -> FitResult:
    r = problem.residuals(sol.x)
    chi2 = float(np.dot(r, r))
    n_par = len(sol.x)
    dof = n_used - n_par
    J = problem.jacobian(sol.x)
    red = chi2 / dof if dof > 0 else math.nan
    cov_x = _covariance(J, r, red, wname)
    units = np.append(problem.step, 1.0) if fit_scale else problem.step
    cov = cov_x * np.outer(units, units)
    sig = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = cov / np.outer(sig, sig)
    names = list(params) + (["scale"] if fit_scale else [])
    starts = np.append(problem.start, problem.start_scale) if fit_scale else problem.start
    values = problem.start + problem.step * sol.x[: len(params)]
    if fit_scale:
        values = np.append(values, sol.x[-1])
    estimates = {n: ParameterEstimate(float(s), float(v), float(e), float(u))
                 for n, s, v, e, u in zip(names, starts, values, sig, units)}
    status, message = _status(sol.status > 0, red, dof, wname, sol.message)
    return FitResult(config=problem.config_at(sol.x), parameters=estimates, correlations=corr, chi2=chi2,
                     dof=dof, status=status, message=message, nfev=len(problem.history), njev=problem.njev,
                     weights=wname, history=problem.history, warnings=_jump_warnings(problem.jumps))


def _jump_warnings(jumps: dict) -> list:
    return [f"{name}: {n} pixel(s) step between p-h and p+h instead of changing smoothly (a discrete choice "
            "crosses there: nearest-neighbour structure factors, a sampling boundary); their derivatives are "
            "unreliable (-interpolate, or a larger step)" for name, n in jumps.items()]


# ---------------------------------------------------------------- coarse to fine


@dataclass
class FitStage:
    """One stage of :func:`fit_coarse_to_fine`.

    Attributes
    ----------
    bin : int
        Pixels binned per edge: the observed image is summed over
        ``bin x bin`` blocks and the model rendered with pixels ``bin``
        times larger on the same detector (same origin and axes).
    n_factor : float
        Crystal size multiplier (``Na``/``Nb``/``Nc`` times this, whole
        numbers, at least 1): smaller crystals give broader spots, so a
        start further from the truth still overlaps the observed spots.
    mosaic_deg : float
        Mosaic spread (degrees) added for the stage (0: the model's own);
        broadens the spots too, at ``mosaic_domains`` renders per pixel.
    mosaic_domains : int
        Domains used with ``mosaic_deg``.
    max_nfev : int
        Most model evaluations of the stage.
    weights : str or None
        Weights of the stage (``'unit'``, ``'poisson'``); None: the fit's
        own.  Far from the solution, Poisson weights from the model are
        blind to observed spots the model lacks (their model variance is the
        floor and their derivative zero): unit weights let overlapping spot
        flanks pull the model in.
    """

    bin: int = 1
    n_factor: float = 1.0
    mosaic_deg: float = 0.0
    mosaic_domains: int = 8
    max_nfev: int = 30
    weights: str | None = None

    def as_dict(self) -> dict:
        """JSON-ready description of the stage."""
        return {"bin": self.bin, "n_factor": self.n_factor, "mosaic_deg": self.mosaic_deg,
                "mosaic_domains": self.mosaic_domains, "max_nfev": self.max_nfev, "weights": self.weights}


#: stages of :func:`fit_coarse_to_fine` by default: 8x8 bins with crystals a
#: sixteenth and an eighth of the size (on the Pilatus frame of the real crystal
#: the quarter-size spots of a start 0.5 degrees off do not overlap the observed
#: ones at all), 4x4 and quarter size, 2x2 and half size, then the full model
DEFAULT_STAGES = (FitStage(bin=8, n_factor=1 / 16, max_nfev=25, weights="unit"),
                  FitStage(bin=8, n_factor=1 / 8, max_nfev=25, weights="unit"),
                  FitStage(bin=4, n_factor=0.25, max_nfev=25, weights="unit"),
                  FitStage(bin=2, n_factor=0.5, max_nfev=25, weights="unit"),
                  FitStage(bin=1, n_factor=1.0, max_nfev=50))
# a coarse stage is skipped when its bins leave fewer pixels than this along an edge of the rendered region
MIN_BINNED_PIXELS = 16
# the detector-origin pairs a binned geometry may adjust to keep the pixel grid in place
_CENTRE_PAIRS = (("Xbeam", "Ybeam"), ("Xclose", "Yclose"), ("ORGX", "ORGY"))


def _pix0(config: SimConfig) -> np.ndarray:
    from .prepare import prepare

    return np.asarray(prepare(config).detector.pix0, dtype=float)


def binned_config(config: SimConfig, k: int) -> SimConfig:
    """The same detector with pixels ``k`` times larger (``k x k`` blocks of the original).

    The first pixel's corner and the axes stay where they are, so pixel
    ``(i, j)`` of the result covers pixels ``k*i .. k*i+k-1`` (slow) and
    ``k*j ..`` (fast) of ``config``; rows and columns beyond a whole block
    are dropped.  The beam centre (or ``Xclose``/``ORGX``, whichever the
    geometry follows) is adjusted so that the conventions' half-pixel
    offsets leave the origin in place.  A ``-roi`` becomes the blocks it
    covers; a ``-mask`` is dropped (pass a binned mask to the fit instead).

    Parameters
    ----------
    config : SimConfig
    k : int
        Binning (1 returns ``config``).

    Returns
    -------
    SimConfig

    Raises
    ------
    ConfigError
        When the binned detector cannot be placed on the original grid.
    """
    from .prepare import prepare
    from .scan import apply_changes

    k = int(k)
    if k < 1:
        raise ConfigError(f"binning must be a whole number >= 1, got {k}")
    if k == 1:
        return config
    prep = prepare(config)
    f, s = prep.fpixels // k, prep.spixels // k
    if f < 1 or s < 1:
        raise ConfigError(f"a {prep.fpixels}x{prep.spixels} detector has no whole {k}x{k} block")
    p = float(config.pixel_size) * k
    changes = {"pixel_size": p, "fpixels": f, "spixels": s, "detsize_f": f * p, "detsize_s": s * p}
    xmin, xmax, ymin, ymax = (int(v) for v in prep.roi)
    roi = (max(xmin, 0) // k, min(xmax // k, f - 1), max(ymin, 0) // k, min(ymax // k, s - 1))
    import dataclasses

    out = dataclasses.replace(apply_changes(config, changes), roi=roi, mask=None)
    target = np.asarray(prep.detector.pix0, dtype=float)
    if np.linalg.norm(_pix0(out) - target) <= 1e-12:
        return out
    for pair in _CENTRE_PAIRS:
        moved = _recentre(out, pair, prep, target)
        if moved is not None:
            return moved
    raise ConfigError(f"cannot bin this detector {k}x{k}: its origin cannot be kept in place")


def _recentre(config: SimConfig, pair, fine_prep, target):
    """``config`` with ``pair`` (e.g. Xbeam, Ybeam) set so that its origin is ``target``; None if they cannot."""
    from .scan import apply_changes

    values = {}
    for name in pair:
        v = float(getattr(config, name))
        values[name] = float(getattr(fine_prep.detector, name)) if math.isnan(v) else v
    try:
        base = apply_changes(config, values)
        p0 = _pix0(base)
        delta = 1e-4
        cols = [(_pix0(apply_changes(base, {n: values[n] + delta})) - p0) / delta for n in pair]
    except ConfigError:
        return None
    jac = np.stack(cols, axis=1)
    if np.linalg.matrix_rank(jac, tol=1e-9) < 2:
        return None
    shift = np.linalg.lstsq(jac, target - p0, rcond=None)[0]
    out = apply_changes(base, {n: values[n] + float(d) for n, d in zip(pair, shift)})
    return out if np.linalg.norm(_pix0(out) - target) <= 1e-9 else None


def bin_image(image, k: int, how: str = "sum") -> np.ndarray:
    """``k x k`` blocks of an image: summed (``how='sum'``) or all true (``'all'``).

    Parameters
    ----------
    image : array_like, shape (spixels, fpixels)
    k : int
    how : {'sum', 'all'}

    Returns
    -------
    ndarray, shape (spixels // k, fpixels // k)
    """
    a = np.asarray(image)
    s, f = a.shape[0] // k, a.shape[1] // k
    blocks = a[: s * k, : f * k].reshape(s, k, f, k)
    if how == "all":
        return blocks.all(axis=(1, 3))
    return blocks.sum(axis=(1, 3), dtype=np.float64)


def _stage_inputs(base: SimConfig, observed, mask, weights, k: int):
    """Binned observed image, mask and weights of a stage."""
    from .engine import rendered_mask
    from .prepare import prepare

    prep = prepare(base)
    obs = np.asarray(observed, dtype=np.float64).reshape(prep.spixels, prep.fpixels)
    good = np.isfinite(obs) & rendered_mask(prep).reshape(obs.shape)
    if mask is not None:
        good &= np.asarray(mask, dtype=bool).reshape(obs.shape)
    w = weights
    if not isinstance(weights, str):
        w = np.asarray(weights, dtype=np.float64).reshape(obs.shape)
        good &= w > 0
        with np.errstate(divide="ignore"):
            var = np.where(w > 0, 1.0 / np.where(w > 0, w, 1.0), np.inf)
        w = 1.0 / bin_image(np.where(good, var, 0.0), k)
    obs_b = bin_image(np.where(good, obs, 0.0), k)
    return obs_b, bin_image(good, k, "all"), w


def start_offsets(n_axes: int, starts: int, step: float) -> list:
    """The first ``starts`` points of the grid ``{-step, 0, step}^n_axes``, nearest the centre first."""
    import itertools

    grid = sorted(itertools.product((0, 1, -1), repeat=n_axes), key=lambda t: (sum(map(abs, t)), [abs(v) for v in t]))
    return [tuple(step * v for v in t) for t in grid[: max(1, int(starts))]]


def fit_coarse_to_fine(config: SimConfig, observed, params, *, stages=None, starts: int = 1,
                       start_step_deg: float = 0.5, mask=None, weights="poisson", fit_scale: bool = True,
                       steps: dict | None = None, loss: str = "linear", backend: str = "cpu",
                       dtype: str = "float64", nthreads: int | None = None, executor=None,
                       callback=None) -> FitResult:
    """Fit from far away: binned images and broad spots first, then the full model.

    Each stage fits the parameters (:func:`fit`) against the observed image
    binned ``bin x bin`` with the model rendered on the binned detector and
    its spots broadened (``n_factor``, ``mosaic_deg``), starting where the
    previous stage ended; the last stage of the default is the model itself
    at full resolution.  With ``starts > 1`` the first stage is run from
    several orientations (offsets of ``start_step_deg`` on the refined
    ``misset`` components, nearest first) and the best chi-square goes on.

    Parameters
    ----------
    config, observed, params, mask, weights, fit_scale, steps, loss, backend, dtype, nthreads, executor, callback
        As for :func:`fit`.  Whole-number crystal sizes (``Na`` of a
        square crystal) are searched in the last stage only.
    stages : sequence of FitStage, optional
        Default :data:`DEFAULT_STAGES`.  A last stage other than
        ``FitStage(bin=1, n_factor=1)`` leaves the result at that stage.
    starts : int
        Orientations tried in the first stage run (needs ``misset``
        parameters when above 1).  A coarse stage whose bins would leave
        fewer than :data:`MIN_BINNED_PIXELS` pixels along an edge of the
        rendered region is skipped (recorded with status ``skipped``).
    start_step_deg : float
        Spacing of the start grid (degrees).

    Returns
    -------
    FitResult
        The last stage's fit, with ``stages`` (per stage: its settings, the
        starts tried, chi2/dof and the values reached) and each parameter's
        ``start`` the value it had in ``config``.

    Raises
    ------
    ConfigError
        As :func:`fit`; ``starts > 1`` without a ``misset`` parameter.
    """
    from .gradients import resolve_config
    from .scan import apply_changes, field_value

    params = _param_list(params)
    stages = list(stages or DEFAULT_STAGES)
    if not stages or not all(isinstance(s, FitStage) for s in stages):
        raise ConfigError("stages must be a non-empty list of FitStage")
    integer = integer_parameters(config, params)
    cont = [p for p in params if p not in integer]
    orient = [p for p in cont if p.startswith("misset[")]
    if int(starts) > 1 and not orient:
        raise ConfigError("several starts need an orientation parameter (misset[0], misset[1], misset[2])")
    base = resolve_config(config, cont)
    begin = {p: float(field_value(base, p)) for p in params}
    values = {p: begin[p] for p in cont}
    kw = dict(weights=weights, fit_scale=fit_scale, steps=steps, loss=loss, backend=backend, dtype=dtype,
              nthreads=nthreads, executor=executor, callback=callback)
    record = []
    res = None
    first = True
    for i, stage in enumerate(stages):
        last = i == len(stages) - 1
        stage_params = params if (last and stage.bin == 1 and stage.n_factor == 1.0) else cont
        if not stage_params:
            continue
        small = _too_coarse(base, stage.bin)
        if small and not last:
            record.append({**stage.as_dict(), "starts": [], "status": "skipped", "message": small})
            continue
        tries = start_offsets(len(orient), starts, math.radians(start_step_deg)) if first else [()]
        first = False
        best, tried = None, []
        for offset in tries:
            at = {**values, **{p: values[p] + d for p, d in zip(orient, offset)}}
            r, shifts = _run_stage(stage, apply_changes(base, at), observed, mask, stage_params, kw)
            tried.append({"offset_deg": [math.degrees(d) for d in offset], "chi2_per_dof": r.chi2_per_dof})
            if best is None or r.chi2 < best[0].chi2:
                best = (r, shifts)
        res, shifts = best
        values = {p: res.parameters[p].value - shifts.get(p, 0.0) for p in cont}
        record.append({**stage.as_dict(), "starts": tried if len(tries) > 1 else [], "status": res.status,
                       "chi2_per_dof": res.chi2_per_dof, "values": dict(values), "nfev": res.nfev})
    for p in params:
        if p in res.parameters:  # (a size searched over integers is fitted in a full-resolution last stage only)
            est = res.parameters[p]
            est.value = values.get(p, est.value)
            est.start = begin[p]
    res.stages = record
    return res


def _too_coarse(config: SimConfig, k: int) -> str:
    """Why a ``k x k`` binning is too coarse for the rendered region (empty when it is not)."""
    from .prepare import prepare

    if k <= 1:
        return ""
    prep = prepare(config)
    xmin, xmax, ymin, ymax = (int(v) for v in prep.roi)
    f = (min(xmax, prep.fpixels - 1) - max(xmin, 0) + 1) // k
    s = (min(ymax, prep.spixels - 1) - max(ymin, 0) + 1) // k
    if min(f, s) < MIN_BINNED_PIXELS:
        return f"{k}x{k} bins leave {f}x{s} pixels, fewer than {MIN_BINNED_PIXELS} a side"
    return ""


def _run_stage(stage: FitStage, config: SimConfig, observed, mask, params, kw) -> tuple[FitResult, dict]:
    """One stage: broaden, bin, fit; the shifts (binned minus full-detector values) map its values back."""
    from .gradients import resolve_config
    from .scan import apply_changes, field_value

    kw = {**kw, "max_nfev": stage.max_nfev}
    if stage.weights is not None and isinstance(kw["weights"], str):
        kw["weights"] = stage.weights  # (a given weight image stays: it describes the data)
    changes: dict = {}
    if stage.n_factor != 1.0:
        for n in ("Na", "Nb", "Nc"):
            if n not in params:
                changes[n] = float(max(1, round(float(getattr(config, n)) * stage.n_factor)))
    if stage.mosaic_deg > 0.0 and "mosaic_spread" not in params:
        changes.update(mosaic_spread=math.radians(stage.mosaic_deg), mosaic_domains=int(stage.mosaic_domains))
    fine = resolve_config(apply_changes(config, changes) if changes else config, params)
    if stage.bin == 1:
        return fit(fine, observed, params, mask=mask, **kw), {}
    coarse = binned_config(fine, stage.bin)
    obs_b, mask_b, w_b = _stage_inputs(fine, observed, mask, kw["weights"], stage.bin)
    res = fit(coarse, obs_b, params, mask=mask_b, **{**kw, "weights": w_b})
    return res, {p: float(field_value(coarse, p)) - float(field_value(fine, p)) for p in params}


# ---------------------------------------------------------------- several frames


@dataclass
class FramesFitResult:
    """Outcome of :func:`fit_frames`.

    Attributes
    ----------
    configs : list of SimConfig
        Each frame's refined configuration.
    shared : dict
        Name -> :class:`ParameterEstimate` of the parameters all frames share.
    frames : list of dict
        Per frame: name -> :class:`ParameterEstimate` of its own parameters
        (its ``scale`` included unless scales are fixed).
    names : list of str
        Row and column names of ``correlations``: the shared names, then
        ``frame<i>:<name>`` per frame.
    correlations : ndarray
    chi2 : float
        Weighted sum of squared residuals over all frames.
    frame_chi2 : list of float
        Its share from each frame.
    dof : int
        Pixels used (all frames) minus parameters fitted.
    status, message, nfev, njev, weights, history, warnings
        As in :class:`FitResult`.
    """

    configs: list
    shared: dict
    frames: list
    names: list
    correlations: np.ndarray
    chi2: float
    frame_chi2: list
    frame_pixels: list
    dof: int
    status: str
    message: str
    nfev: int = 0
    njev: int = 0
    weights: str = "poisson"
    history: list = field(default_factory=list)
    warnings: list = field(default_factory=list)

    @property
    def chi2_per_dof(self) -> float:
        """Reduced chi-square."""
        return self.chi2 / self.dof if self.dof > 0 else math.nan

    @property
    def parameters(self) -> dict:
        """Every estimate by its ``names`` entry (shared, then ``frame<i>:<name>``)."""
        out = dict(self.shared)
        for i, frame in enumerate(self.frames):
            out.update({f"frame{i}:{k}": v for k, v in frame.items()})
        return out

    def as_dict(self) -> dict:
        """The JSON document of ``nbnumba refine --out`` with several frames."""
        return {
            "parameters": {k: p.as_dict() for k, p in self.shared.items()},
            "frames": [{"parameters": {k: p.as_dict() for k, p in frame.items()}, "chi2": c, "pixels": n}
                       for frame, c, n in zip(self.frames, self.frame_chi2, self.frame_pixels)],
            "correlations": {"names": list(self.names),
                             "matrix": [[_finite(v) for v in row] for row in np.round(self.correlations, 6).tolist()]},
            "chi2": self.chi2, "dof": self.dof, "chi2_per_dof": self.chi2_per_dof, "weights": self.weights,
            "status": self.status, "message": self.message, "nfev": self.nfev, "njev": self.njev,
            "history": self.history, "warnings": list(self.warnings),
        }


class _FramesProblem:
    """Residuals and Jacobian of a joint fit: shared parameters, then per frame its own and its scale."""

    def __init__(self, bases, shared, per_frame, steps, data, fit_scale, render, executor):
        from .gradients import difference_plan

        self.bases, self.shared, self.per_frame = bases, shared, per_frame
        steps = dict(steps or {})
        plan = difference_plan(bases[0], shared, {k: v for k, v in steps.items() if k in shared})
        self.s_start = np.array([p[1] for p in plan])
        self.s_step = np.array([p[5] / 2.0 for p in plan])
        self.f_start, self.f_step = [], []
        for base in bases:
            plan = difference_plan(base, per_frame, {k: v for k, v in steps.items() if k in per_frame})
            self.f_start.append(np.array([p[1] for p in plan]))
            self.f_step.append(np.array([p[5] / 2.0 for p in plan]))
        self.obs = [d[0] for d in data]
        self.good = [d[1] for d in data]
        self.sqrt_w = [d[2] for d in data]
        self.fit_scale, self.render, self.executor = fit_scale, render, executor
        self.width = len(per_frame) + (1 if fit_scale else 0)
        self.cache: dict = {}
        self.history: list = []
        self.njev = 0
        self.jumps: dict = {}

    def block(self, f: int) -> slice:
        first = len(self.shared) + f * self.width
        return slice(first, first + self.width)

    def scale(self, x, f: int) -> float:
        return float(x[self.block(f)][-1]) if self.fit_scale else 1.0

    def values(self, x, f: int) -> dict:
        ns, npf = len(self.shared), len(self.per_frame)
        out = dict(zip(self.shared, (self.s_start + self.s_step * x[:ns]).tolist()))
        own = x[self.block(f)][:npf]
        out.update(zip(self.per_frame, (self.f_start[f] + self.f_step[f] * own).tolist()))
        return out

    def config_at(self, x, f: int) -> SimConfig:
        from .scan import apply_changes

        return apply_changes(self.bases[f], self.values(x, f))

    def key(self, x) -> tuple:
        keep = [i for i in range(x.size) if not (self.fit_scale and i >= len(self.shared)
                                                  and (i - len(self.shared)) % self.width == self.width - 1)]
        return tuple(np.asarray(x, dtype=float)[keep].tolist())

    def models(self, x) -> list:
        from .executors import LocalExecutor
        from .gradients import _render_task

        key = self.key(x)
        if key not in self.cache:
            tasks = [(self.config_at(x, f), self.render["backend"], self.render["dtype"], self.render["nthreads"])
                     for f in range(len(self.bases))]
            images = (self.executor or LocalExecutor()).map(_render_task, tasks)
            self.cache = {key: [im.reshape(-1)[g] for im, g in zip(images, self.good)]}
        return self.cache[key]

    def residuals(self, x) -> np.ndarray:
        try:
            models = self.models(x)
        except ConfigError:
            return np.full(sum(o.size for o in self.obs), 1e10)
        r = np.concatenate([sw * (self.scale(x, f) * m - o)
                            for f, (m, o, sw) in enumerate(zip(models, self.obs, self.sqrt_w))])
        self.history.append(float(np.dot(r, r)))
        return r

    def jacobian(self, x) -> np.ndarray:
        from .gradients import difference_plan, discontinuous_pixels

        self.njev += 1
        names = self.shared + self.per_frame
        plans, tasks = [], []
        for f in range(len(self.bases)):
            steps = dict(zip(names, np.concatenate([self.s_step, self.f_step[f]]).tolist()))
            plan = difference_plan(self.config_at(x, f), names, steps) if names else []
            plans.append(plan)
            tasks.append((self.config_at(x, f), plan))
        flat = [(cfg, [p]) for cfg, plan in tasks for p in plan]
        images = _differences_many(flat, self.render, self.executor)
        models = self.models(x)
        rows = [o.size for o in self.obs]
        J = np.zeros((sum(rows), x.size))
        at, pos = 0, 0
        for f, plan in enumerate(plans):
            n, g, sc = rows[f], self.good[f], self.scale(x, f)
            for k, (name, value, _h, lo, _hi, den) in enumerate(plan):
                plus, minus = images[pos].reshape(-1)[g], images[pos + 1].reshape(-1)[g]
                pos += 2
                if lo != value:
                    jumps = discontinuous_pixels(plus, models[f], minus, sc)
                    if jumps:
                        self.jumps[name] = max(self.jumps.get(name, 0), jumps)
                if k < len(self.shared):
                    col, unit = k, self.s_step[k]
                else:
                    j = k - len(self.shared)
                    col, unit = self.block(f).start + j, self.f_step[f][j]
                J[at:at + n, col] = sc * (plus - minus) / den * unit
            if self.fit_scale:
                J[at:at + n, self.block(f).stop - 1] = models[f]
            J[at:at + n] *= self.sqrt_w[f][:, None]
            at += n
        return J

    def poisson_weights(self, x) -> list:
        return [_poisson_weights(self.scale(x, f), m) for f, m in enumerate(self.models(x))]


def _differences_many(items, render, executor) -> list:
    """The plus and minus renders of every (config, plan) pair, in one executor map."""
    from .executors import LocalExecutor
    from .gradients import _render_task
    from .scan import apply_changes

    tasks = []
    for cfg, plan in items:
        for name, _value, _h, lo, hi, _den in plan:
            tasks.append((apply_changes(cfg, {name: hi}), render["backend"], render["dtype"], render["nthreads"]))
            tasks.append((apply_changes(cfg, {name: lo}), render["backend"], render["dtype"], render["nthreads"]))
    return (executor or LocalExecutor()).map(_render_task, tasks) if tasks else []


def fit_frames(configs, observed_images, shared=(), per_frame=(), *, masks=None, weights="poisson",
               fit_scale: bool = True, steps: dict | None = None, loss: str = "linear", max_nfev: int = 50,
               backend: str = "cpu", dtype: str = "float64", nthreads: int | None = None, executor=None,
               callback=None) -> FramesFitResult:
    """Refine several frames together: shared parameters, and each frame's own.

    A rotation scan (configurations differing in ``phi0``: see
    :func:`nbnumba.scan.phi_scan`) or stills.  The ``shared`` parameters
    (cell, detector distance and centre, ...) take one value for all frames,
    starting from the first frame's; the ``per_frame`` parameters (the
    orientation ``misset[i]``, ...) and a scale are refined per frame.  Each
    model evaluation renders all frames, and each Jacobian all their finite
    differences, in one ``executor.map`` (Dask spreads them over workers).

    Parameters
    ----------
    configs : sequence of SimConfig
        Each frame's starting model (same detector size).
    observed_images : sequence of array_like
        Each frame's observed image in photons.
    shared, per_frame : sequence of str
        Parameter names (as for :func:`fit`); at least one in all.
    masks : sequence of array_like, optional
        Per-frame pixel masks (True = use).
    weights : 'poisson', 'unit' or sequence of array_like
    fit_scale : bool
        A scale per frame.
    steps, loss, max_nfev, backend, dtype, nthreads, executor
        As for :func:`fit`.
    callback : callable, optional
        ``callback(nfev, chi2, values)`` after each evaluation (values of
        the shared parameters and of the first frame's).

    Returns
    -------
    FramesFitResult

    Raises
    ------
    ConfigError
        Bad parameters (a crystal size of a square crystal: fit it by
        :func:`fit`), mismatched lists, images of the wrong shape.
    """
    from .gradients import resolve_config
    from .scan import apply_changes, field_value

    configs, observed_images = list(configs), list(observed_images)
    shared, per_frame = list(shared), list(per_frame)
    if not configs or len(configs) != len(observed_images):
        raise ConfigError(f"{len(configs)} configurations for {len(observed_images)} observed images")
    names = _param_list(shared + per_frame)
    if integer_parameters(configs[0], names):
        raise ConfigError(f"{integer_parameters(configs[0], names)[0]}: a whole number for a "
                          f"{configs[0].xtal_shape} crystal; search it frame by frame with fit()")
    if loss not in LOSSES:
        raise ConfigError(f"loss must be one of {', '.join(LOSSES)}, not {loss!r}")
    n = len(configs)
    masks = [None] * n if masks is None else list(masks)
    wlist = [weights] * n if isinstance(weights, str) else list(weights)
    if len(masks) != n or len(wlist) != n:
        raise ConfigError(f"masks and weights need one entry per frame ({n})")
    unknown = set(steps or {}) - set(names)
    if unknown:
        raise ConfigError(f"step given for {sorted(unknown)[0]!r}, which is not among the parameters "
                          f"({', '.join(names)})")
    render = dict(backend=backend, dtype=dtype, nthreads=nthreads)
    bases = [resolve_config(c, names) for c in configs]
    common = {p: float(field_value(bases[0], p)) for p in shared}
    bases = [apply_changes(b, common) for b in bases]
    firsts = _render_all(bases, render, executor)
    data, x, wname, given_any = [], [], "poisson", False
    for f in range(n):
        obs, given, wname, good = _pixels(bases[f], firsts[f], observed_images[f], wlist[f], masks[f])
        m0 = firsts[f].reshape(-1)[good]
        w = given[good] if given is not None else np.ones(int(good.sum()))
        sc = _start_scale(w, obs[good], m0) if fit_scale else 1.0
        if given is None:
            w = _poisson_weights(sc, m0)
        given_any |= given is not None
        data.append((obs[good], good, np.sqrt(w)))
        x.append(np.zeros(len(per_frame)))
        if fit_scale:
            x.append(np.array([sc]))
    x = np.concatenate([np.zeros(len(shared)), *x])
    problem = _FramesProblem(bases, shared, per_frame, steps, data, fit_scale, render, executor)
    problem.cache = {problem.key(x): [fi.reshape(-1)[d[1]] for fi, d in zip(firsts, data)]}
    start_x = x.copy()

    def fun(xv):
        r = problem.residuals(xv)
        if callback is not None:
            callback(len(problem.history), problem.history[-1] if problem.history else math.nan, problem.values(xv, 0))
        return r

    bounds = _frames_bounds(problem)
    sol = _optimise_frames(fun, problem, x, bounds, loss, max_nfev, not given_any)
    return _summarise_frames(sol, problem, start_x, wname)


def _render_all(configs, render, executor) -> list:
    from .executors import LocalExecutor
    from .gradients import _render_task

    tasks = [(c, render["backend"], render["dtype"], render["nthreads"]) for c in configs]
    return (executor or LocalExecutor()).map(_render_task, tasks)


def _frames_bounds(problem: _FramesProblem):
    from .gradients import NONNEGATIVE_FIELDS, _continuous

    lo = np.full(len(problem.shared) + len(problem.bases) * problem.width, -np.inf)
    for k, (name, start, step) in enumerate(zip(problem.shared, problem.s_start, problem.s_step)):
        if _continuous(name)[0] in NONNEGATIVE_FIELDS:
            lo[k] = -start / step
    for f in range(len(problem.bases)):
        b = problem.block(f)
        for j, name in enumerate(problem.per_frame):
            if _continuous(name)[0] in NONNEGATIVE_FIELDS:
                lo[b.start + j] = -problem.f_start[f][j] / problem.f_step[f][j]
        if problem.fit_scale:
            lo[b.stop - 1] = 0.0
    return lo, np.full(lo.size, np.inf)


def _optimise_frames(fun, problem, x, bounds, loss, max_nfev, reweight: bool):
    from scipy.optimize import least_squares

    for _round in range(REWEIGHT_ROUNDS if reweight else 1):
        sol = least_squares(fun, x, jac=problem.jacobian, bounds=bounds, method="trf", loss=loss, x_scale=1.0,
                            max_nfev=max_nfev, xtol=1e-8, ftol=1e-10, gtol=1e-10)
        x = sol.x
        if not reweight:
            break
        new = [np.sqrt(w) for w in problem.poisson_weights(x)]
        change = max(float(np.max(np.abs(a - b) / b)) for a, b in zip(new, problem.sqrt_w))
        problem.sqrt_w = new
        if change < REWEIGHT_RTOL:
            break
    return sol


def _summarise_frames(sol, problem: _FramesProblem, start_x, wname) -> FramesFitResult:
    r = problem.residuals(sol.x)
    chi2 = float(np.dot(r, r))
    sizes = [o.size for o in problem.obs]
    edges = np.cumsum([0, *sizes])
    frame_chi2 = [float(np.dot(r[a:b], r[a:b])) for a, b in zip(edges[:-1], edges[1:])]
    dof = int(sum(sizes)) - sol.x.size
    J = problem.jacobian(sol.x)
    red = chi2 / dof if dof > 0 else math.nan
    units = np.concatenate([problem.s_step, *[np.append(s, 1.0) if problem.fit_scale else s
                                              for s in problem.f_step]])
    cov = _covariance(J, r, red, wname) * np.outer(units, units)
    sig = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = cov / np.outer(sig, sig)
    ns = len(problem.shared)
    shared = {n: ParameterEstimate(float(s0), float(s0 + h * v), float(e), float(h))
              for n, s0, h, v, e in zip(problem.shared, problem.s_start, problem.s_step, sol.x[:ns], sig[:ns])}
    frames, names = [], list(problem.shared)
    for f in range(len(problem.bases)):
        b = problem.block(f)
        own = {}
        for j, n in enumerate(problem.per_frame):
            s0, h = problem.f_start[f][j], problem.f_step[f][j]
            own[n] = ParameterEstimate(float(s0), float(s0 + h * sol.x[b.start + j]), float(sig[b.start + j]),
                                       float(h))
        if problem.fit_scale:
            own["scale"] = ParameterEstimate(float(start_x[b.stop - 1]), float(sol.x[b.stop - 1]),
                                             float(sig[b.stop - 1]), 1.0)
        frames.append(own)
        names += [f"frame{f}:{n}" for n in own]
    status, message = _status(sol.status > 0, red, dof, wname, sol.message)
    return FramesFitResult(configs=[problem.config_at(sol.x, f) for f in range(len(problem.bases))], shared=shared,
                           frames=frames, names=names, correlations=corr, chi2=chi2, frame_chi2=frame_chi2,
                           frame_pixels=sizes, dof=dof, status=status, message=message, nfev=len(problem.history),
                           njev=problem.njev, weights=wname, history=problem.history,
                           warnings=_jump_warnings(problem.jumps))
