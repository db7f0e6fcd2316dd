"""Crystal stage: unit cell, orientation, mosaic domains, size and shape.

The cell is built as C builds it (from ``-cell`` or a MOSFLM ``-mat`` A
matrix, then the misset rotation), so parity mode keeps C's rounding.  The
reciprocal matrix is also offered split into an orientation ``U`` and a
metric ``B`` (``A = U·B``, Busing & Levy), the parameters refinement varies.
Real-space vectors in metres, reciprocal vectors in 1/Angstrom as C keeps
them (:attr:`Crystal.reciprocal_matrix` is in 1/m).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .. import physics as P
from ..config import SimConfig
from ..errors import ConfigError
from .beam import Illumination
from .detector import LabAxes
from .sampling import Sampling
from .vectors import RTD, cross, dot, magnitude, rescale, rotate_axis, rotate_umat, rotate_xyz, scale

SHAPE_CODES = {"square": P.SHAPE_SQUARE, "round": P.SHAPE_ROUND, "gauss": P.SHAPE_GAUSS,
               "tophat": P.SHAPE_TOPHAT}


@dataclass
class UnitCell:
    """Real and reciprocal cell of the unrotated (phi = 0) crystal.

    Attributes
    ----------
    a, b, c : numpy.ndarray
        Real-space axes: x, y, z in metres, then the length.
    a_star, b_star, c_star : numpy.ndarray
        Reciprocal axes: x, y, z in 1/Angstrom, then the length.
    cell_A : tuple of float
        a, b, c (Angstrom) and alpha, beta, gamma (degrees), as C prints them.
    V_cell : float
        Cell volume (Angstrom³).
    misset_used : tuple of float or None
        Misset rotation applied (rad, about x, y, z), if any.
    """

    a: np.ndarray
    b: np.ndarray
    c: np.ndarray
    a_star: np.ndarray
    b_star: np.ndarray
    c_star: np.ndarray
    cell_A: tuple
    V_cell: float
    misset_used: Optional[tuple]


def _reciprocal_from_parameters(c: SimConfig):
    """Reciprocal axes (1/Angstrom, with lengths) of ``-cell``, C's construction."""
    a_star, b_star, c_star = np.zeros(4), np.zeros(4), np.zeros(4)
    a_len, b_len, c_len = (float(v) for v in c.cell_angstrom)
    alpha, beta, gamma = (float(v) for v in c.cell_angles)
    if b_len <= 0.0:
        b_len = a_len
    if c_len <= 0.0:
        c_len = a_len
    if alpha <= 0.0:
        alpha = math.pi / 2
    if beta <= 0.0:
        beta = math.pi / 2
    if gamma <= 0.0:
        gamma = math.pi / 2
    aavg = (alpha + beta + gamma) / 2
    skew = math.sin(aavg) * math.sin(aavg - alpha) * math.sin(aavg - beta) * math.sin(aavg - gamma)
    if skew < 0.0:
        skew = -skew
    V_cell = 2.0 * a_len * b_len * c_len * math.sqrt(skew)
    if V_cell <= 0.0:
        raise ConfigError(
            f"impossible unit cell: volume {V_cell:g} A^3 from -cell "
            f"{a_len:g} {b_len:g} {c_len:g} {alpha * RTD:g} {beta * RTD:g} {gamma * RTD:g}"
        )
    V_star = 1.0 / V_cell
    a_star[3] = b_len * c_len * math.sin(alpha) * V_star
    b_star[3] = c_len * a_len * math.sin(beta) * V_star
    c_star[3] = a_len * b_len * math.sin(gamma) * V_star
    cos_alpha_star = (math.cos(beta) * math.cos(gamma) - math.cos(alpha)) / (math.sin(beta) * math.sin(gamma))
    cos_beta_star = (math.cos(gamma) * math.cos(alpha) - math.cos(beta)) / (math.sin(gamma) * math.sin(alpha))
    cos_gamma_star = (math.cos(alpha) * math.cos(beta) - math.cos(gamma)) / (math.sin(alpha) * math.sin(beta))
    sin_gamma_star = c_len * V_star / a_star[3] / b_star[3]
    if sin_gamma_star > 1.0:
        sin_gamma_star = 1.0
    if sin_gamma_star < -1.0:
        sin_gamma_star = -1.0
    if cos_alpha_star * cos_alpha_star > 1.0:
        cos_alpha_star = 1.0
    if cos_beta_star * cos_beta_star > 1.0:
        cos_beta_star = 1.0
    if cos_gamma_star * cos_gamma_star > 1.0:
        cos_gamma_star = 1.0
    a_star[0] = a_star[3]
    b_star[0] = b_star[3] * cos_gamma_star
    c_star[0] = c_star[3] * cos_beta_star
    a_star[1] = 0.0
    b_star[1] = b_star[3] * sin_gamma_star
    c_star[1] = c_star[3] * (cos_alpha_star - cos_beta_star * cos_gamma_star) / sin_gamma_star
    a_star[2] = 0.0
    b_star[2] = 0.0
    c_star[2] = c_star[3] * V_cell / (a_len * b_len * c_len * sin_gamma_star)
    return a_star, b_star, c_star, (a_len, b_len, c_len), V_cell


def _reciprocal_from_matrix(c: SimConfig, a_star, b_star, c_star) -> None:
    """Overwrite the reciprocal axes with a MOSFLM A matrix (unscaled by the wavelength)."""
    m = np.asarray(c.a_matrix, dtype=float)
    # rows of the file: (a*_i, b*_i, c*_i) for i = x, y, z
    for i in range(3):
        a_star[i], b_star[i], c_star[i] = m[i, 0], m[i, 1], m[i, 2]
    s = 1e-10 / (c.lambda0 if c.a_matrix_lambda is None else c.a_matrix_lambda)
    for v in (a_star, b_star, c_star):
        v[:3] = [s * v[0], s * v[1], s * v[2]]
        v[3] = magnitude(v)


def _misset(c: SimConfig, msgs: list):
    """The misset angles to apply (drawn for ``-misset random``), or None."""
    misset = c.misset
    if c.misset_random:
        from ..orientation import misset_random_umat
        from ..rng import umat2misset_python as umat2misset

        umat = misset_random_umat(c.misset_seed, parity=(c.mode == "parity"))
        misset = umat2misset(umat)
        msgs.append(
            "random orientation misset angles: %f %f %f deg"
            % (misset[0] * RTD, misset[1] * RTD, misset[2] * RTD)
        )
    return misset


def _cell_angles(a, b, cc, a_star, b_star, c_star, V_cell) -> tuple:
    """Printable alpha, beta, gamma (degrees) of the real cell."""
    am, bm, cm = magnitude(a), magnitude(b), magnitude(cc)
    cos_alpha = dot(b, cc) / bm / cm
    cos_beta = dot(a, cc) / am / cm
    cos_gamma = dot(a, b) / am / bm
    sin_alpha = magnitude(a_star) * V_cell / bm / cm
    sin_beta = magnitude(b_star) * V_cell / am / cm
    sin_gamma = magnitude(c_star) * V_cell / am / bm
    return tuple(
        math.atan2(min(max(s_, -1.0), 1.0), co if co * co <= 1.0 else 1.0) * RTD
        for s_, co in ((sin_alpha, cos_alpha), (sin_beta, cos_beta), (sin_gamma, cos_gamma))
    )


def metric_matrix(lengths, angles) -> np.ndarray:
    """B of a cell (1/Angstrom): the reciprocal axes as columns, upper triangular, positive diagonal.

    The real cell has c along z and b in the yz plane; B is the inverse of
    the matrix whose rows are a, b and c, so a* lies along x and b* in the xy
    plane (Busing & Levy).
    """
    a_len, b_len, c_len = (float(v) for v in lengths)
    ca, cb, cg = (math.cos(float(v)) for v in angles)
    sa = math.sin(float(angles[0]))
    ay = a_len * (cg - ca * cb) / sa
    az = a_len * cb
    ax = math.sqrt(max(a_len * a_len - ay * ay - az * az, 0.0))
    real = np.array([[ax, ay, az], [0.0, b_len * sa, b_len * ca], [0.0, 0.0, c_len]])
    if not ax > 0.0:
        raise ConfigError(f"impossible unit cell: {a_len:g} {b_len:g} {c_len:g} with these angles has no volume")
    return np.linalg.inv(real)


def _reciprocal_from_orientation(c: SimConfig):
    """Reciprocal axes (1/Angstrom, with lengths) of ``umat`` times the exact B of the cell."""
    lengths = tuple(float(v) for v in c.cell_angstrom)
    recip = np.asarray(c.umat, dtype=float).reshape(3, 3) @ metric_matrix(lengths, c.cell_angles)
    axes = [np.append(recip[:, j], magnitude(recip[:, j])) for j in range(3)]
    return axes[0], axes[1], axes[2], lengths, 1.0 / float(np.linalg.det(recip))


def split_orientation_matrix(c: SimConfig) -> SimConfig:
    """The same crystal with its A matrix split into an orientation U and a unit cell.

    ``A = U B`` with B upper triangular and a positive diagonal
    (:func:`metric_matrix`): the returned config has ``cell_angstrom`` /
    ``cell_angles`` from B, ``umat`` = U, and no ``a_matrix``.  It renders
    the same image to rounding, and its cell can be varied with the
    orientation kept; the misset stays a rotation on top of U.  (B is built
    exactly: C's own ``-cell`` construction realises slightly different
    angles for a triclinic cell.)

    Raises
    ------
    ConfigError
        If the config has no A matrix, also gives ``-cell`` (C combines the
        two in its own way), or the matrix is singular.
    """
    import dataclasses

    if c.a_matrix is None:
        raise ConfigError("no A matrix (-mat) to split into orientation and cell")
    if c.cell_angstrom is not None:
        raise ConfigError("both -cell and -mat give the cell: give one to refine the cell")
    lam = c.lambda0 if c.a_matrix_lambda is None else c.a_matrix_lambda
    recip = np.asarray(c.a_matrix, dtype=float).reshape(3, 3) * (1e-10 / lam)  # columns a*, b*, c* (1/A)
    if not abs(np.linalg.det(recip)) > 0.0:
        raise ConfigError("the orientation matrix is singular (zero reciprocal-cell volume)")
    q, r = np.linalg.qr(recip)
    signs = np.where(np.diag(r) < 0.0, -1.0, 1.0)
    u, b = q * signs, r * signs[:, None]
    real = np.linalg.inv(b)  # rows: a, b, c of the unrotated cell (Angstrom)
    lengths = np.linalg.norm(real, axis=1)
    cosines = [np.dot(real[1], real[2]) / lengths[1] / lengths[2], np.dot(real[0], real[2]) / lengths[0] / lengths[2],
               np.dot(real[0], real[1]) / lengths[0] / lengths[1]]
    angles = tuple(math.acos(max(-1.0, min(1.0, float(v)))) for v in cosines)
    if np.linalg.det(u) < 0.0:
        raise ConfigError("the orientation matrix describes a left-handed cell")
    return dataclasses.replace(c, a_matrix=None, a_matrix_lambda=None, cell_angstrom=tuple(float(v) for v in lengths),
                               cell_angles=angles, umat=np.ascontiguousarray(u))


def build_cell(c: SimConfig, msgs: list) -> UnitCell:
    """Real and reciprocal cell vectors as C builds them.

    Parameters
    ----------
    c : SimConfig
        Supplies ``cell_angstrom``/``cell_angles`` or ``a_matrix``, and the misset.
    msgs : list of str
        Receives the random-misset note.

    Returns
    -------
    UnitCell
        The cell.

    Raises
    ------
    ConfigError
        For no cell, an impossible cell or a singular orientation matrix.
    """
    a_star, b_star, c_star = np.zeros(4), np.zeros(4), np.zeros(4)
    user_cell = c.cell_angstrom is not None
    if user_cell and c.umat is not None:
        a_star, b_star, c_star, cell_lengths, V_cell = _reciprocal_from_orientation(c)
    elif user_cell:
        a_star, b_star, c_star, cell_lengths, V_cell = _reciprocal_from_parameters(c)
    if c.a_matrix is not None:
        _reciprocal_from_matrix(c, a_star, b_star, c_star)
    if not user_cell and c.a_matrix is None:
        raise ConfigError("no crystal: give -cell a b c alpha beta gamma or -mat A.mat")

    misset = _misset(c, msgs)
    if misset is not None:
        for v in (a_star, b_star, c_star):
            v[:3] = rotate_xyz(v[:3], misset[0], misset[1], misset[2])

    a_star[3] = magnitude(a_star)
    b_star[3] = magnitude(b_star)
    c_star[3] = magnitude(c_star)
    a_x_b = cross(a_star, b_star)
    b_x_c = cross(b_star, c_star)
    c_x_a = cross(c_star, a_star)
    V_star = dot(a_star, b_x_c)
    if user_cell:
        b_x_c = rescale(b_x_c, cell_lengths[0] / V_cell)
        c_x_a = rescale(c_x_a, cell_lengths[1] / V_cell)
        a_x_b = rescale(a_x_b, cell_lengths[2] / V_cell)
        V_star = 1.0 / V_cell
    if V_star == 0.0 or not math.isfinite(V_star):
        raise ConfigError("the orientation matrix is singular (zero reciprocal-cell volume)")
    V_cell = 1.0 / V_star
    a = scale(b_x_c, V_cell)
    b = scale(c_x_a, V_cell)
    cc = scale(a_x_b, V_cell)
    c_star = scale(cross(a, b), V_star)
    b_star = scale(cross(cc, a), V_star)
    a_star = scale(cross(b, cc), V_star)
    angles = _cell_angles(a, b, cc, a_star, b_star, c_star, V_cell)
    a_m, b_m, c_m = scale(a, 1e-10), scale(b, 1e-10), scale(cc, 1e-10)
    return UnitCell(
        a=np.append(a_m, magnitude(a_m)), b=np.append(b_m, magnitude(b_m)), c=np.append(c_m, magnitude(c_m)),
        a_star=np.append(a_star, magnitude(a_star)), b_star=np.append(b_star, magnitude(b_star)),
        c_star=np.append(c_star, magnitude(c_star)),
        cell_A=(magnitude(a), magnitude(b), magnitude(cc)) + angles, V_cell=V_cell, misset_used=misset,
    )


def mosaic_domain_count(spread: float, domains: int, msgs: list) -> tuple[float, int]:
    """C's completion of (mosaic spread, domain count), with its warnings.

    Parameters
    ----------
    spread : float
        ``-mosaic`` (rad); negative when not given.
    domains : int
        ``-mosaic_domains``; non-positive when not given.
    msgs : list of str
        Receives C's warnings.

    Returns
    -------
    tuple of (float, int)
        The spread and the number of domains.
    """
    spread, domains = float(spread), int(domains)
    if domains <= 0:
        if spread < 0.0:
            domains, spread = 1, 0.0
        elif spread == 0.0:
            domains = 1
        else:
            msgs.append("WARNING: finite mosaicity with only one domain! upping to 10 mosaic domains")
            domains = 10
    elif spread < 0.0:
        msgs.append("WARNING: no mosaic spread specified.  setting mosaic_domains = 1")
        spread, domains = 0.0, 1
    elif spread == 0.0:
        msgs.append("WARNING: zero mosaic spread specified.  setting mosaic_domains = 1")
        domains = 1
    return spread, domains


def _interpolation(c: SimConfig, msgs: list) -> int:
    """C's automatic choice of structure-factor interpolation (small crystals interpolate)."""
    interpolate = int(c.interpolate)
    if interpolate > 1:
        if float(c.Na) <= 2 or float(c.Nb) <= 2 or float(c.Nc) <= 2:
            msgs.append("auto-selected tricubic interpolation of structure factors")
            interpolate = 1
        else:
            msgs.append("auto-selected no interpolation")
            interpolate = 0
    return interpolate


def _structure_factors(c: SimConfig):
    """The F grid, its index ranges and the number of reflections read."""
    hkl = c.hkl
    if hkl is None:
        return np.zeros((1, 1, 1)), (0, 0, 0, 0, 0, 0), 0
    fhkl = np.ascontiguousarray(hkl.F, dtype=np.float64)
    hrange = (hkl.h_min, hkl.h_max, hkl.k_min, hkl.k_max, hkl.l_min, hkl.l_max)
    return fhkl, hrange, int(hkl.hkls)


@dataclass
class Crystal:
    """The crystal as rendered.

    Attributes
    ----------
    cell : UnitCell
        Cell of the unrotated crystal.
    Na, Nb, Nc : float
        Unit cells along each axis.
    xtalsize : tuple of float
        Crystal extent along a, b, c (m).
    shape : str
        Lattice-factor shape (``square``, ``round``, ``gauss``, ``tophat``).
    mosaic_spread : float
        Mosaic spread (rad).
    mosaic_domains : int
        Number of mosaic domains.
    umats : numpy.ndarray
        Domain rotations, shape (mosaic_domains, 9), row-major.
    interpolate : int
        1 to interpolate structure factors tricubically, 0 not.
    fhkl : numpy.ndarray
        Structure-factor grid.
    hrange : tuple of int
        h, k, l minima and maxima of ``fhkl``.
    hkls : int
        Reflections read.
    spindle : numpy.ndarray
        Unit spindle axis.
    cells, cells_first : numpy.ndarray
        Real-space axes for every (phi step, domain), shape (phisteps,
        domains, 9); see :func:`rotated_cells`.
    """

    cell: UnitCell
    Na: float
    Nb: float
    Nc: float
    xtalsize: tuple
    shape: str
    mosaic_spread: float
    mosaic_domains: int
    umats: np.ndarray
    interpolate: int
    fhkl: np.ndarray
    hrange: tuple
    hkls: int
    spindle: np.ndarray
    cells: np.ndarray
    cells_first: np.ndarray

    @classmethod
    def from_config(cls, config: SimConfig, sampling: Optional[Sampling] = None,
                    illumination: Optional[Illumination] = None, axes: Optional[LabAxes] = None,
                    messages: Optional[list] = None) -> "Crystal":
        """Build the crystal of ``config`` in C's order.

        Parameters
        ----------
        config : SimConfig
            The run description.
        sampling : Sampling, optional
            Phi steps; from ``config`` when omitted.
        illumination : Illumination, optional
            The sample size after clipping by the beam; from ``config`` when omitted.
        axes : LabAxes, optional
            The spindle axis; from ``config``'s convention when omitted.
        messages : list of str, optional
            Receives C's notes and warnings.

        Returns
        -------
        Crystal
            The crystal.

        Raises
        ------
        ConfigError
            For no cell, an impossible cell or a singular orientation matrix.
        """
        from ..rng import mosaic_umats_python

        c = config
        msgs = messages if messages is not None else []
        s = sampling if sampling is not None else Sampling.from_config(c)
        ill = illumination if illumination is not None else Illumination.from_config(c)
        ax = axes if axes is not None else LabAxes.from_config(c)
        mosaic_spread, mosaic_domains = mosaic_domain_count(c.mosaic_spread, c.mosaic_domains, msgs)
        interpolate = _interpolation(c, msgs)
        cell = build_cell(c, msgs)
        Na, Nb, Nc = float(c.Na), float(c.Nb), float(c.Nc)
        sample_x, sample_y, sample_z = ill.sample
        if sample_x > 0:
            Na = math.ceil(sample_x / cell.a[3])
        if sample_y > 0:
            Nb = math.ceil(sample_y / cell.b[3])
        if sample_z > 0:
            Nc = math.ceil(sample_z / cell.c[3])
        Na, Nb, Nc = max(Na, 1.0), max(Nb, 1.0), max(Nc, 1.0)
        xtal = (cell.a[3] * Na, cell.b[3] * Nb, cell.c[3] * Nc)
        fhkl, hrange, hkls = _structure_factors(c)
        if hkls == 0:
            interpolate = 0
        umats = np.asarray(mosaic_umats_python(mosaic_spread, mosaic_domains, c.mosaic_seed), dtype=np.float64)
        umats = umats.reshape(mosaic_domains, 9)
        cells, cells_first = rotated_cells(cell.a, cell.b, cell.c, ax.spindle, s.phis, umats, mosaic_spread,
                                           c.mode == "parity")
        return cls(cell=cell, Na=Na, Nb=Nb, Nc=Nc, xtalsize=xtal, shape=c.xtal_shape,
                   mosaic_spread=mosaic_spread, mosaic_domains=mosaic_domains, umats=umats,
                   interpolate=interpolate, fhkl=fhkl, hrange=hrange, hkls=hkls, spindle=ax.spindle,
                   cells=cells, cells_first=cells_first)

    @property
    def shape_code(self) -> int:
        """The kernel's code for :attr:`shape` (``physics.SHAPE_*``)."""
        return SHAPE_CODES[self.shape]

    @property
    def reciprocal_matrix(self) -> np.ndarray:
        """A: the reciprocal axes a*, b*, c* as columns (1/m), unrotated crystal."""
        cell = self.cell
        return np.column_stack([cell.a_star[:3], cell.b_star[:3], cell.c_star[:3]]) * 1e10

    def _ub(self):
        q, r = np.linalg.qr(self.reciprocal_matrix)
        signs = np.where(np.diag(r) < 0.0, -1.0, 1.0)
        return q * signs, r * signs[:, None]

    @property
    def U(self) -> np.ndarray:
        """Orientation: the rotation with ``reciprocal_matrix = U @ B``."""
        return self._ub()[0]

    @property
    def B(self) -> np.ndarray:
        """Metric (Busing & Levy): upper-triangular, positive diagonal, ``reciprocal_matrix = U @ B`` (1/m)."""
        return self._ub()[1]


def rotated_cells(a0, b0, c0, spindle, phis, umats, mosaic_spread, parity):
    """Cell vectors for every (phi step, mosaic domain).

    Returns ``cells`` and ``cells_first``.  In spec mode both are the cell
    rotated by each phi.  In parity mode a phi of exactly 0 reuses the
    previous rotation, as C does: within a sweep that is the previous step's
    rotation; at the start of a sweep it is the last rotation of the
    previous sweep (``cells``) or, for the very first sweep of the run, the
    unrotated cell (``cells_first``).

    Parameters
    ----------
    a0, b0, c0 : numpy.ndarray
        Unrotated real axes (first three components used).
    spindle : numpy.ndarray
        Unit spindle axis.
    phis : sequence of float
        Spindle angle of each step (rad).
    umats : numpy.ndarray
        Domain rotations, shape (domains, 9).
    mosaic_spread : float
        Domains are applied only when positive.
    parity : bool
        Reproduce C's reuse of the previous rotation at phi = 0.

    Returns
    -------
    tuple of numpy.ndarray
        ``cells`` and ``cells_first``, each of shape (len(phis), domains, 9).
    """
    nphi = len(phis)
    ndom = umats.shape[0]

    def rot(phi):
        return [rotate_axis(v[:3], spindle, phi) for v in (a0, b0, c0)]

    base = [np.array(v[:3]) for v in (a0, b0, c0)]
    fresh = [rot(p) if p != 0.0 else None for p in phis]

    def sweep(entry):
        out = []
        cur = entry
        for t in range(nphi):
            if fresh[t] is not None or not parity:
                cur = fresh[t] if fresh[t] is not None else base
            out.append(cur)
        return out

    first = sweep(base)
    steady = sweep(first[-1]) if parity else first
    cells = np.zeros((nphi, ndom, 9))
    cells_first = np.zeros((nphi, ndom, 9))
    for target, src in ((cells, steady), (cells_first, first)):
        for t in range(nphi):
            ap, bp, cp = src[t]
            for m in range(ndom):
                if mosaic_spread > 0.0:
                    u = umats[m]
                    vecs = (rotate_umat(ap, u), rotate_umat(bp, u), rotate_umat(cp, u))
                else:
                    vecs = (ap, bp, cp)
                target[t, m, :] = np.concatenate(vecs)
    return cells, cells_first
