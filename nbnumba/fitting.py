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

__all__ = ["FitResult", "ParameterEstimate", "fit"]

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
