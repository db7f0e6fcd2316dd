"""Per-reflection structure factors: the exact Jacobian of an image in F, and F refinement.

With nearest-neighbour structure factors every evaluation inside a pixel uses
the F of one reflection ``(h0, k0, l0)``, so an image is linear in each
``F^2``::

    I(p) = b(p) + sum_r F_r^2 c(p, r)

(``b``: the part without structure factors, the ``-water`` background).
:func:`reflection_jacobian` computes ``b`` and the sparse matrix ``c`` (pixels
x reflections) in one pass of a kernel variant
(:func:`nbnumba.physics.pixel_reflection_terms`, through the same physics
helpers as the render), so ``dI(p)/dF_r = 2 F_r c(p, r)`` for every reflection
at once, without finite differences.

:func:`refine_structure_factors` fits the F of the reflections on an image
(geometry held fixed), with an overall scale, Poisson weights as
:func:`nbnumba.fitting.fit`, symmetry-equivalent reflections and Friedel mates
tied when a space group is given, and an optional restraint towards the
starting values.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from .config import SimConfig
from .errors import ConfigError
from .fitting import (
    REWEIGHT_ROUNDS,
    REWEIGHT_RTOL,
    ParameterEstimate,
    _given_weights,
    _poisson_weights,
    _status,
)

__all__ = ["ReflectionJacobian", "ReflectionFitResult", "config_with_structure_factors", "reflection_jacobian",
           "refine_structure_factors", "structure_factor_table"]

SLOTS = 16  # distinct reflections per pixel in a first pass (doubled for the pixels that see more)
MAX_SLOTS = 4096
TILE_PIXELS = 1 << 16  # pixels per launch (bounds the per-pixel slot arrays)
REDO_ONE_BY_ONE = 64  # overflowing pixels of a tile redone one by one; more: the tile with twice the slots


@dataclass
class ReflectionJacobian:
    """An image split by reflection: ``image = background + matrix @ F**2`` (flat, raster order).

    Attributes
    ----------
    matrix : scipy.sparse.csr_matrix, shape (pixels, reflections)
        ``c(p, r)``: photons of pixel ``p`` per unit ``F_r^2`` (rows of pixels
        the run does not render are empty).
    hkl : ndarray of int64, shape (reflections, 3)
        The reflections on the image (sorted).
    F : ndarray, shape (reflections,)
        The structure factors the run uses for them (the table's, or ``-default_F``).
    in_table : ndarray of bool, shape (reflections,)
        The reflection is inside the structure-factor table (refinable).
    background : ndarray, shape (pixels,)
        The part of each pixel without structure factors.
    shape : tuple of int
        ``(spixels, fpixels)``.
    """

    matrix: object
    hkl: np.ndarray
    F: np.ndarray
    in_table: np.ndarray
    background: np.ndarray
    shape: tuple

    def image(self, F=None) -> np.ndarray:
        """The image (shape ``(spixels, fpixels)``) for structure factors ``F`` (default: the run's)."""
        F = self.F if F is None else np.asarray(F, dtype=np.float64)
        return (self.background + self.matrix @ (F * F)).reshape(self.shape)

    def derivative(self, F=None):
        """``dI(p)/dF_r = 2 F_r c(p, r)`` as a CSR matrix (pixels x reflections)."""
        from scipy import sparse

        F = self.F if F is None else np.asarray(F, dtype=np.float64)
        return (self.matrix @ sparse.diags(2.0 * F)).tocsr()


def _check_linear(prep) -> None:
    from . import physics as P

    if prep.ip[P.IP_INTERPOLATE] != 0:
        raise ConfigError("per-reflection structure factors need nearest-neighbour F: with tricubic interpolation "
                          "the image is not linear in F^2 (give -nointerpolate)")


def _launch(kernel, arrays, first_index, scale, lo, hi, slots):
    n = hi - lo
    slot_hkl = np.zeros((n, slots, 3), dtype=np.int64)
    slot_c = np.zeros((n, slots), dtype=np.float64)
    background = np.zeros(n, dtype=np.float64)
    used = np.zeros(n, dtype=np.int64)
    overflow = np.zeros(n, dtype=np.int64)
    kernel(*arrays, first_index, 0, scale, lo, slot_hkl, slot_c, background, used, overflow)
    return slot_hkl, slot_c, background, used, overflow


def _tile_terms(kernel, arrays, first_index, scale, lo, hi, slots):
    """COO pieces (pixel, hkl, c) and the background of pixels ``lo .. hi-1``.

    Pixels that see more than ``slots`` reflections are rendered again with
    twice as many: the whole tile when many overflow, else one by one.
    """
    if slots > MAX_SLOTS:
        raise ConfigError(f"a pixel sees more than {MAX_SLOTS} distinct reflections: too many for the "
                          "per-reflection Jacobian")
    slot_hkl, slot_c, background, used, overflow = _launch(kernel, arrays, first_index, scale, lo, hi, slots)
    again = np.flatnonzero(overflow)
    if again.size > REDO_ONE_BY_ONE:
        return _tile_terms(kernel, arrays, first_index, scale, lo, hi, 2 * slots)
    keep = np.arange(slots)[None, :] < used[:, None]
    keep[again] = False
    pieces = [(np.nonzero(keep)[0] + lo, slot_hkl[keep], slot_c[keep])]
    for i in again:
        more, _bg = _tile_terms(kernel, arrays, first_index, scale, lo + int(i), lo + int(i) + 1, 2 * slots)
        pieces.extend(more)
    return pieces, background


def _table_values(prep, hkl: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The structure factors of ``hkl`` as the kernel looks them up, and which are in the table."""
    from . import physics as P

    ip = prep.ip
    lo = np.array([ip[P.IP_H_MIN], ip[P.IP_K_MIN], ip[P.IP_L_MIN]])
    hi = np.array([ip[P.IP_H_MAX], ip[P.IP_K_MAX], ip[P.IP_L_MAX]])
    inside = np.all((hkl >= lo) & (hkl <= hi), axis=1) & (ip[P.IP_HKLS] != 0)
    F = np.full(len(hkl), float(prep.fp[P.FP_DEFAULT_F]))
    idx = hkl[inside] - lo
    F[inside] = prep.fhkl[idx[:, 0], idx[:, 1], idx[:, 2]]
    return F, inside


def _unique_rows(hkl: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct rows of an integer (n, 3) array and each row's index among them (1-d keys: fast)."""
    if hkl.shape[0] == 0:
        return hkl.reshape(0, 3), np.zeros(0, dtype=np.int64)
    lo = hkl.min(axis=0)
    extent = hkl.max(axis=0) - lo + 1
    keys = np.ravel_multi_index(tuple((hkl - lo).T), tuple(int(e) for e in extent))
    distinct, cols = np.unique(keys, return_inverse=True)
    rows = np.column_stack(np.unravel_index(distinct, tuple(int(e) for e in extent))) + lo
    return rows.astype(np.int64), cols.reshape(-1)


def reflection_jacobian(config: SimConfig, *, slots: int = SLOTS, nthreads: int | None = None) -> ReflectionJacobian:
    """The image of ``config`` split by reflection, in about the time of one render.

    Parameters
    ----------
    config : SimConfig
        A run with nearest-neighbour structure factors (``-nointerpolate``, or
        the automatic choice for crystals of more than 2 cells on each axis).
    slots : int
        Distinct reflections per pixel held in the first pass; pixels that
        see more are rendered again with more.
    nthreads : int, optional
        CPU threads.

    Returns
    -------
    ReflectionJacobian

    Raises
    ------
    ConfigError
        Tricubic interpolation is on (the image is not linear in ``F^2``).
    """
    from scipy import sparse

    from .kernels import cpu, driver
    from .kernels.interface import kernel_arrays
    from .prepare import prepare

    prep = prepare(config)
    _check_linear(prep)
    if nthreads is not None:
        import numba

        numba.set_num_threads(max(1, min(int(nthreads), numba.config.NUMBA_NUM_THREADS)))
    n_pix = prep.fpixels * prep.spixels
    background = np.zeros(n_pix)
    lo, hi = driver.roi_span(prep)
    kernel = cpu.reflection_kernel()
    arrays = kernel_arrays(prep, "float64")
    first_index = driver.first_swept_pixel(prep)
    pieces = []
    for a in range(lo, hi, TILE_PIXELS):
        b = min(a + TILE_PIXELS, hi)
        tile, bg = _tile_terms(kernel, arrays, first_index, prep.scale, a, b, max(1, int(slots)))
        pieces.extend(tile)
        background[a:b] = bg
    rows = np.concatenate([p[0] for p in pieces]) if pieces else np.zeros(0, np.int64)
    hkl_all = np.concatenate([p[1] for p in pieces]).reshape(-1, 3) if pieces else np.zeros((0, 3), np.int64)
    coeff = np.concatenate([p[2] for p in pieces]) if pieces else np.zeros(0)
    hkl, cols = _unique_rows(hkl_all)
    matrix = sparse.csr_matrix((coeff, (rows, cols.reshape(-1))), shape=(n_pix, len(hkl)))
    F, inside = _table_values(prep, hkl)
    return ReflectionJacobian(matrix, hkl.astype(np.int64), F, inside, background, (prep.spixels, prep.fpixels))


def structure_factor_table(config: SimConfig):
    """The structure-factor table (:class:`~nbnumba.io.hkl.HKLGrid`) of ``config``; ConfigError without one."""
    grid = config.hkl
    if grid is None or getattr(grid, "hkls", 0) == 0:
        raise ConfigError("refining structure factors needs a structure-factor table (-hkl)")
    return grid


def config_with_structure_factors(config: SimConfig, hkl, F) -> SimConfig:
    """``config`` with the structure factors of reflections ``hkl`` set to ``F`` (all in the table)."""
    grid = structure_factor_table(config)
    hkl = np.asarray(hkl, dtype=np.int64).reshape(-1, 3)
    lo = np.array([grid.h_min, grid.k_min, grid.l_min])
    hi = np.array([grid.h_max, grid.k_max, grid.l_max])
    if np.any((hkl < lo) | (hkl > hi)):
        raise ConfigError("a reflection to change is outside the structure-factor table")
    table = np.array(grid.F, dtype=np.float64, copy=True)
    idx = hkl - lo
    table[idx[:, 0], idx[:, 1], idx[:, 2]] = np.asarray(F, dtype=np.float64).reshape(-1)
    return dataclasses.replace(config, hkl=dataclasses.replace(grid, F=table, warnings=list(grid.warnings)))


# ------------------------------------------------------------------ refinement


@dataclass
class ReflectionFitResult:
    """Outcome of :func:`refine_structure_factors`.

    Attributes
    ----------
    hkl : ndarray of int64, shape (n, 3)
        One reflection per refined F: the reciprocal-ASU index when a space
        group ties equivalents, else the reflection itself.
    members : list of ndarray
        The reflections of the image each F stands for.
    parameters : dict
        ``"F(h,k,l)"`` -> :class:`~nbnumba.fitting.ParameterEstimate` (``step``
        is 1), and ``"scale"`` unless the scale was fixed.
    config : SimConfig
        The configuration with the refined structure factors (and unscaled).
    chi2, dof, status, message, nfev, weights
        As :class:`~nbnumba.fitting.FitResult`; ``dof`` counts the restraint
        terms as observations.
    spacegroup : str or None
    """

    hkl: np.ndarray
    members: list
    parameters: dict
    config: SimConfig
    chi2: float
    dof: int
    status: str
    message: str
    nfev: int = 0
    weights: str = "poisson"
    spacegroup: str | None = None
    history: list = field(default_factory=list)

    @property
    def F(self) -> np.ndarray:
        """Refined structure factors, in the order of ``hkl``."""
        return np.array([p.value for k, p in self.parameters.items() if k != "scale"])

    @property
    def sigma(self) -> np.ndarray:
        """Their standard uncertainties."""
        return np.array([p.sigma for k, p in self.parameters.items() if k != "scale"])

    @property
    def start(self) -> np.ndarray:
        """The starting structure factors."""
        return np.array([p.start for k, p in self.parameters.items() if k != "scale"])

    @property
    def chi2_per_dof(self) -> float:
        """Reduced chi-square."""
        return self.chi2 / self.dof if self.dof > 0 else math.nan

    def as_dict(self) -> dict:
        """JSON-ready summary (the parameters as in ``nbnumba refine --out``)."""
        return {"parameters": {k: p.as_dict() for k, p in self.parameters.items()},
                "chi2": self.chi2, "dof": self.dof, "chi2_per_dof": self.chi2_per_dof, "weights": self.weights,
                "status": self.status, "message": self.message, "nfev": self.nfev, "spacegroup": self.spacegroup}

    def table_text(self) -> str:
        """``h k l F SIGF`` lines, one per refined F."""
        lines = [f"{h:d} {k:d} {l:d} {F:.6g} {s:.6g}" for (h, k, l), F, s in zip(self.hkl.tolist(), self.F,
                                                                                 self.sigma)]
        return "\n".join(lines) + "\n"


def _groups(hkl: np.ndarray, spacegroup: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Representative index of each group of tied reflections, and each reflection's group."""
    if spacegroup is None:
        return hkl, np.arange(len(hkl))
    import gemmi

    try:
        sg = gemmi.SpaceGroup(spacegroup)
    except (RuntimeError, ValueError) as exc:
        raise ConfigError(f"unknown space group {spacegroup!r}") from exc
    asu = gemmi.ReciprocalAsu(sg)
    ops = sg.operations()
    rep = np.array([asu.to_asu([int(h), int(k), int(l)], ops)[0] for h, k, l in hkl], dtype=np.int64).reshape(-1, 3)
    reps, group = np.unique(rep, axis=0, return_inverse=True)
    return reps, group.reshape(-1)


class _FProblem:
    """Residuals and sparse Jacobian of an F fit: ``model = s * (b + C (F^2))`` on the good pixels."""

    def __init__(self, C, b, obs, sqrt_w, start, restraint, fit_scale):
        self.C = C
        self.b = b
        self.obs = obs
        self.sqrt_w = sqrt_w
        self.start = start
        self.rw = math.sqrt(restraint) if restraint > 0 else 0.0
        self.fit_scale = fit_scale
        self.history: list = []

    def split(self, x):
        n = self.start.size
        return x[:n], (float(x[n]) if self.fit_scale else 1.0)

    def model(self, x) -> np.ndarray:
        F, _s = self.split(x)
        return self.b + self.C @ (F * F)

    def residuals(self, x) -> np.ndarray:
        F, s = self.split(x)
        r = self.sqrt_w * (s * self.model(x) - self.obs)
        if self.rw:
            r = np.concatenate([r, self.rw * (F - self.start)])
        self.history.append(float(np.dot(r, r)))
        return r

    def jacobian(self, x):
        from scipy import sparse

        F, s = self.split(x)
        blocks = [sparse.diags(self.sqrt_w) @ self.C @ sparse.diags(2.0 * s * F)]
        if self.fit_scale:
            blocks.append(sparse.csr_matrix((self.sqrt_w * self.model(x))[:, None]))
        J = sparse.hstack(blocks)
        if self.rw:
            restr = sparse.hstack([sparse.identity(F.size) * self.rw,
                                   sparse.csr_matrix((F.size, 1 if self.fit_scale else 0))])
            J = sparse.vstack([J, restr])
        return J.tocsr()


def refine_structure_factors(config: SimConfig, observed, *, spacegroup: str | None = None,
                             restraint: float = 0.0, mask=None, weights="poisson", fit_scale: bool = True,
                             loss: str = "linear", max_nfev: int = 100, jacobian: ReflectionJacobian | None = None,
                             nthreads: int | None = None, callback=None) -> ReflectionFitResult:
    """Refine the structure factors of the reflections on an image (geometry held fixed).

    Parameters
    ----------
    config : SimConfig
        Starting model, with a structure-factor table (``-hkl``) and
        nearest-neighbour F.  Only reflections inside the table are refined;
        any others (``-default_F``) stay fixed.
    observed : array_like, shape (spixels, fpixels)
        Observed image in photons.
    spacegroup : str, optional
        Tie symmetry-equivalent reflections and Friedel mates (one F each
        reciprocal-ASU reflection, gemmi's ASU convention).  Without it every
        reflection of the image has its own F.
    restraint : float
        Weight ``w`` of a restraint ``w (F - F_start)^2`` added to the
        chi-square for each F (0: none).
    mask, weights, loss, max_nfev, callback
        As :func:`nbnumba.fitting.fit` (``callback(nfev, chi2, F)``).
    fit_scale : bool
        Refine an overall scale (observed ~ scale * model).  Without a
        background (``-water``) or a restraint, the scale and the F are
        degenerate (``scale F^2``): fix one of them.
    jacobian : ReflectionJacobian, optional
        A precomputed :func:`reflection_jacobian` of ``config``.
    nthreads : int, optional
        CPU threads of the kernel pass.

    Returns
    -------
    ReflectionFitResult

    Notes
    -----
    ``dI/dF = 2 F c`` vanishes at ``F = 0``: an F that starts at exactly
    zero stays there.  F is bounded below by 0.
    """
    from scipy.optimize import least_squares

    from .engine import rendered_mask
    from .fitting import LOSSES
    from .prepare import prepare

    if loss not in LOSSES:
        raise ConfigError(f"loss must be one of {', '.join(LOSSES)}, not {loss!r}")
    if not (restraint >= 0.0 and math.isfinite(restraint)):
        raise ConfigError(f"restraint weight must be finite and non-negative, not {restraint!r}")
    structure_factor_table(config)
    jac = jacobian if jacobian is not None else reflection_jacobian(config, nthreads=nthreads)
    obs = np.asarray(observed, dtype=np.float64).reshape(-1)
    n_pix = jac.background.size
    if obs.size != n_pix:
        raise ConfigError(f"observed image has {obs.size} pixels, the model {n_pix}")
    given, wname = _given_weights(weights, n_pix)
    good = np.isfinite(obs) & rendered_mask(prepare(config))
    if given is not None:
        good &= given > 0
    if mask is not None:
        m = np.asarray(mask, dtype=bool).reshape(-1)
        if m.size != n_pix:
            raise ConfigError(f"mask has {m.size} pixels, the image {n_pix}")
        good &= m
    if not good.any():
        raise ConfigError("no pixels to fit (all masked or non-finite)")
    C_all = jac.matrix.tocsc()
    fixed = ~jac.in_table
    b = jac.background + C_all[:, fixed] @ (jac.F[fixed] ** 2)
    hkl = jac.hkl[jac.in_table]
    C = C_all[:, jac.in_table]
    reps, group = _groups(hkl, spacegroup)
    from scipy import sparse

    tie = sparse.csr_matrix((np.ones(len(hkl)), (np.arange(len(hkl)), group)), shape=(len(hkl), len(reps)))
    Cg = (C @ tie).tocsr()[good]
    seen = np.asarray(abs(Cg).sum(axis=0)).reshape(-1) > 0
    Cg = Cg[:, seen]
    reps = reps[seen]
    keep_groups = np.flatnonzero(seen)
    members = [hkl[group == g] for g in keep_groups]
    F_rep = np.zeros(len(seen))
    np.add.at(F_rep, group, jac.F[jac.in_table])
    counts = np.bincount(group, minlength=len(seen))
    start = (F_rep / np.maximum(counts, 1))[seen]  # tied reflections start from their mean
    if start.size == 0:
        raise ConfigError("no reflection of the structure-factor table contributes to the fitted pixels")
    obs_g = obs[good]
    b_g = b[good]
    x = np.append(start, 1.0) if fit_scale else start.copy()
    m0 = b_g + Cg @ (start * start)
    w = given[good] if given is not None else np.ones(obs_g.size)
    if fit_scale:
        den = float(np.dot(w * m0, m0))
        x[-1] = float(np.dot(w * obs_g, m0)) / den if den > 0 else 1.0
    if given is None:
        w = _poisson_weights(x[-1] if fit_scale else 1.0, m0)
    problem = _FProblem(Cg, b_g, obs_g, np.sqrt(w), start, restraint, fit_scale)
    start_scale = float(x[-1]) if fit_scale else 1.0

    def fun(xv):
        r = problem.residuals(xv)
        if callback is not None:
            callback(len(problem.history), problem.history[-1], xv[: start.size].copy())
        return r

    lower = np.zeros(x.size)
    bounds = (lower, np.full(x.size, np.inf))
    x = np.maximum(x, 0.0)
    rounds = REWEIGHT_ROUNDS if given is None else 1
    for _round in range(rounds):
        sol = least_squares(fun, x, jac=problem.jacobian, bounds=bounds, method="trf", loss=loss, x_scale="jac",
                            max_nfev=max_nfev, xtol=1e-10, ftol=1e-12, gtol=1e-10, tr_solver="lsmr")
        x = sol.x
        if given is not None:
            break
        F_, s_ = problem.split(x)
        new_w = _poisson_weights(s_, problem.model(x))
        change = float(np.max(np.abs(np.sqrt(new_w) - problem.sqrt_w) / problem.sqrt_w))
        problem.sqrt_w = np.sqrt(new_w)
        if change < REWEIGHT_RTOL:
            break
    return _summarise(sol, problem, config, reps, members, hkl, group, keep_groups, spacegroup, start_scale, wname,
                      int(good.sum()))


def _covariance_sparse(J, r: np.ndarray, red: float, wname: str) -> np.ndarray:
    """:func:`nbnumba.fitting._covariance` of a sparse Jacobian (the normal matrices formed sparsely).

    Poisson weights: ``(J^T J)^-1`` inflated by the reduced chi-square where
    it exceeds 1; given weights: scaled by it; unit weights: the sandwich
    estimator.
    """
    from scipy import sparse

    normal = (J.T @ J).toarray()
    try:
        inv = np.linalg.inv(normal)
    except np.linalg.LinAlgError:
        return np.full(normal.shape, np.nan)
    if wname == "poisson":
        return inv * max(red, 1.0)
    if wname == "unit":
        meat = (J.T @ sparse.diags(r * r) @ J).toarray()
        return inv @ meat @ inv
    return inv * red


def _summarise(sol, problem, config, reps, members, hkl, group, keep_groups, spacegroup, start_scale, wname,
               n_used) -> ReflectionFitResult:
    r = problem.residuals(sol.x)
    chi2 = float(np.dot(r, r))
    n_par = sol.x.size
    n_obs = n_used + (problem.start.size if problem.rw else 0)
    dof = n_obs - n_par
    red = chi2 / dof if dof > 0 else math.nan
    cov = _covariance_sparse(problem.jacobian(sol.x), r, red, wname)
    sig = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    F, s = problem.split(sol.x)
    params = {}
    for (h, k, l), f0, f, e in zip(reps.tolist(), problem.start, F, sig):
        params[f"F({h},{k},{l})"] = ParameterEstimate(float(f0), float(f), float(e), 1.0)
    if problem.fit_scale:
        params["scale"] = ParameterEstimate(start_scale, s, float(sig[-1]), 1.0)
    # every reflection of each group takes the group's value
    value_of = np.zeros(int(group.max()) + 1 if group.size else 0)
    value_of[keep_groups] = F
    changed = np.isin(group, keep_groups)
    new_config = config_with_structure_factors(config, hkl[changed], value_of[group[changed]])
    status, message = _status(sol.status > 0, red, dof, wname, sol.message)
    return ReflectionFitResult(hkl=reps, members=members, parameters=params, config=new_config, chi2=chi2, dof=dof,
                               status=status, message=message, nfev=len(problem.history), weights=wname,
                               spacegroup=spacegroup, history=problem.history)
