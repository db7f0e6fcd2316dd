"""Structure factors from the files crystallographers hold: MTZ, mmCIF, models.

nanoBragg wants a P1 list of amplitudes covering the whole sphere of
reflections (``h k l F``, every symmetry mate and Friedel mate written out).
Data usually arrive instead as an MTZ or an mmCIF structure-factor file in
the crystal's space group (one asymmetric unit), or only as a model.  This
module reads those with `gemmi <https://gemmi.readthedocs.io>`_ and expands
them to the table nanoBragg uses:

* :func:`read_reflection_file` -- MTZ (``*.mtz``) or mmCIF structure factors
  (``*.cif``, ``*.ent``, ``*-sf.cif``); the amplitude column is chosen
  automatically or by label.  Files that hold intensities only are refused,
  with the list of the columns they have.
* :func:`model_structure_factors` -- amplitudes computed from a PDB or mmCIF
  model (gemmi's X-ray form factors, FFT of the model density) to a given
  resolution.
* :func:`expand_to_p1` -- every symmetry mate and Friedel mate of a list of
  reflections (amplitudes, so ``F(-h) = F(h)``).
* :func:`grid_from_reflections` -- the dense table (:class:`HKLGrid`) exactly
  as :func:`nbnumba.io.hkl.read_hkl` builds it from the same list in a text
  file, so both give the same image bit for bit.
"""

from __future__ import annotations

import os

import numpy as np

from nbnumba.errors import InputFileError
from nbnumba.io.hkl import HKLGrid, dense_grid

__all__ = [
    "ReflectionList",
    "expand_to_p1",
    "grid_from_reflections",
    "is_reflection_file",
    "model_structure_factors",
    "read_model_cell",
    "read_reflection_file",
]

_MTZ_MAGIC = b"MTZ "
# preferred amplitude labels, best first (observed, then model amplitudes)
_PREFERRED_F = ("F", "FP", "FOBS", "F-obs", "F_meas_au", "F-obs-filtered", "FMEAN", "F_meas", "FC", "F-model",
                "F_calc", "FCALC", "F_calc_au")
_CIF_F_TAGS = ("F_meas_au", "F_meas", "F_calc_au", "F_calc", "pdbx_F_plus", "pdbx_F_minus")
_CIF_I_TAGS = ("intensity_meas", "intensity_calc", "F_squared_meas", "F_squared_calc", "pdbx_I_plus")


class ReflectionList:
    """Miller indices with amplitudes, and the symmetry they belong to.

    Attributes
    ----------
    hkl : ndarray of int64, shape (n, 3)
    F : ndarray of float64, shape (n,)
    spacegroup : str
        Hermann-Mauguin name (``"P 1"`` once expanded).
    cell : tuple of float
        a, b, c (Angstrom), alpha, beta, gamma (degrees) from the file, or None.
    source : str
        What the amplitudes are: ``"<file> column <label>"``.
    """

    def __init__(self, hkl, F, spacegroup: str, cell=None, source: str = ""):
        self.hkl = np.ascontiguousarray(hkl, dtype=np.int64).reshape(-1, 3)
        self.F = np.ascontiguousarray(F, dtype=np.float64).reshape(-1)
        self.spacegroup = spacegroup
        self.cell = cell
        self.source = source

    def __len__(self) -> int:
        return int(self.F.size)


def is_reflection_file(path) -> bool:
    """True for files :func:`read_reflection_file` reads (MTZ by its magic bytes, mmCIF by its name)."""
    name = os.fspath(path).lower()
    if name.endswith((".mtz", ".cif", ".mmcif", ".ent", ".cif.gz", ".mtz.gz")):
        return True
    try:
        with open(path, "rb") as handle:
            return handle.read(4) == _MTZ_MAGIC
    except OSError:
        return False


def _gemmi():
    try:
        import gemmi
    except ImportError as exc:  # pragma: no cover - gemmi is a dependency
        raise InputFileError("reading MTZ/mmCIF files needs the gemmi package (pip install gemmi)") from exc
    return gemmi


def read_reflection_file(path, column: str | None = None) -> ReflectionList:
    """Amplitudes from an MTZ or mmCIF structure-factor file, as in the file (not expanded).

    Parameters
    ----------
    path : str or os.PathLike
    column : str, optional
        Label of the amplitude column (MTZ label, or mmCIF ``_refln`` tag
        without the prefix); default: the first amplitude column found,
        preferring observed amplitudes.

    Raises
    ------
    InputFileError
        Unreadable file, no amplitude column (the message lists the columns),
        an unknown ``column``, or non-finite amplitudes in use.
    """
    fname = os.fspath(path)
    if not os.path.isfile(fname):
        raise InputFileError(f"{fname}: cannot read structure factors: no such file")
    try:
        with open(fname, "rb") as handle:
            magic = handle.read(4)
    except OSError as exc:
        raise InputFileError(f"{fname}: cannot read structure factors: {exc.strerror or exc}") from exc
    if magic == _MTZ_MAGIC or fname.lower().endswith((".mtz", ".mtz.gz")):
        return _read_mtz(fname, column)
    return _read_cif(fname, column)


def _pick(labels_types, column, fname, amplitude_types=("F",)):
    """Choose the amplitude column among ``(label, type)`` pairs."""
    if column is not None:
        for label, kind in labels_types:
            if label == column:
                if kind not in amplitude_types:
                    raise InputFileError(f"{fname}: column {column} holds type {kind}, not amplitudes")
                return label
        listing = ", ".join(f"{label}({kind})" for label, kind in labels_types)
        raise InputFileError(f"{fname}: no column {column!r}; columns: {listing}")
    amplitudes = [label for label, kind in labels_types if kind in amplitude_types]
    if not amplitudes:
        listing = ", ".join(f"{label}({kind})" for label, kind in labels_types)
        raise InputFileError(
            f"{fname}: no structure-factor amplitude column (intensities are not converted); columns: {listing}")
    for label in _PREFERRED_F:
        if label in amplitudes:
            return label
    return amplitudes[0]


def _finite(F, mask, fname, label):
    F = np.asarray(F, dtype=np.float64)
    bad = ~np.isfinite(F) & mask
    if np.any(bad):
        raise InputFileError(f"{fname}: column {label} has {int(bad.sum())} non-finite amplitudes")
    return F


def _read_mtz(fname, column) -> ReflectionList:
    gemmi = _gemmi()
    try:
        mtz = gemmi.read_mtz_file(fname)
    except (RuntimeError, ValueError, OSError) as exc:
        raise InputFileError(f"{fname}: not a readable MTZ file ({exc})") from exc
    labels_types = [(c.label, c.type) for c in mtz.columns if c.label not in ("H", "K", "L")]
    label = _pick(labels_types, column, fname)
    data = np.asarray(mtz.array, dtype=np.float64)
    hkl = data[:, :3].astype(np.int64)
    F = data[:, mtz.column_labels().index(label)]
    keep = ~np.isnan(F)  # MTZ marks missing values with NaN
    F = _finite(F, keep, fname, label)
    c = mtz.cell
    return ReflectionList(hkl[keep], F[keep], mtz.spacegroup.hm,
                          (c.a, c.b, c.c, c.alpha, c.beta, c.gamma), f"{fname} column {label}")


def _read_cif(fname, column) -> ReflectionList:
    gemmi = _gemmi()
    try:
        blocks = gemmi.as_refln_blocks(gemmi.cif.read(fname))
    except (RuntimeError, ValueError, OSError) as exc:
        raise InputFileError(f"{fname}: not a readable mmCIF structure-factor file ({exc})") from exc
    blocks = [b for b in blocks if b.default_loop is not None]
    if not blocks:
        raise InputFileError(f"{fname}: no _refln loop (not an mmCIF structure-factor file)")
    block = blocks[0]
    tags = [t for t in block.column_labels() if t not in ("index_h", "index_k", "index_l")]
    kinds = [(t, "F" if t in _CIF_F_TAGS else ("J" if t in _CIF_I_TAGS else "?")) for t in tags]
    label = _pick(kinds, column, fname)
    hkl = np.asarray(block.make_miller_array(), dtype=np.int64)
    F = np.asarray(block.make_float_array(label), dtype=np.float64)
    keep = ~np.isnan(F)  # '?' and '.' read as NaN
    F = _finite(F, keep, fname, label)
    sg = block.spacegroup.hm if block.spacegroup is not None else "P 1"
    c = block.cell
    return ReflectionList(hkl[keep], F[keep], sg, (c.a, c.b, c.c, c.alpha, c.beta, c.gamma),
                          f"{fname} column {label}")


def expand_to_p1(refl: ReflectionList) -> ReflectionList:
    """Every symmetry mate and Friedel mate of the reflections (amplitudes).

    Each reflection ``h`` of the list gives ``h R`` for every rotation ``R``
    of the space group, and their negatives; where a reflection is reached
    from two entries of the list, the entry that comes first wins.

    Raises
    ------
    InputFileError
        If two symmetry-related entries of the list disagree on F (the file
        was not in the space group it names), by more than 1e-6 relative.
    """
    gemmi = _gemmi()
    try:
        ops = gemmi.SpaceGroup(refl.spacegroup).operations()
    except (RuntimeError, ValueError) as exc:
        raise InputFileError(f"{refl.source}: unknown space group {refl.spacegroup!r}") from exc
    rots = [np.array(op.rot, dtype=np.int64) // op.DEN for op in ops.sym_ops]
    mates = [refl.hkl @ r for r in rots]
    hkl = np.concatenate(mates + [-m for m in mates])
    F = np.tile(refl.F, 2 * len(rots))
    order = np.tile(np.arange(len(refl)), 2 * len(rots))
    keys = hkl - hkl.min(axis=0)
    flat = np.ravel_multi_index(tuple(keys.T), tuple(keys.max(axis=0) + 1))
    # first entry of the list wins: sort by key, then by the entry's position
    idx = np.lexsort((order, flat))
    first = np.ones(idx.size, dtype=bool)
    first[1:] = flat[idx][1:] != flat[idx][:-1]
    group = np.cumsum(first) - 1
    winner = F[idx][first]
    spread = np.abs(F[idx] - winner[group])
    if np.any(spread > 1e-6 * np.maximum(np.abs(winner[group]), 1.0)):
        raise InputFileError(f"{refl.source}: symmetry-related reflections disagree on F "
                             f"(is the space group {refl.spacegroup} right?)")
    keep = np.sort(idx[first])  # stable output order: the list's own order, operator by operator
    return ReflectionList(hkl[keep], F[keep], "P 1", refl.cell, refl.source)


def grid_from_reflections(refl: ReflectionList, default_F: float = 0.0) -> HKLGrid:
    """The dense structure-factor table of a P1 list, as :func:`~nbnumba.io.hkl.read_hkl` builds it.

    Parameters
    ----------
    refl : ReflectionList
        P1 reflections without repeats (see :func:`expand_to_p1`).
    default_F : float
        C's ``-default_F``: the value of every reflection of the table's box
        not in the list.
    """
    if len(refl) == 0:
        raise InputFileError(f"{refl.source}: no reflections")
    grid = dense_grid(refl.source, refl.hkl, refl.F, default_F)
    if grid is None:
        raise InputFileError(f"{refl.source}: a reflection is listed twice (expand with expand_to_p1 first)")
    return grid


def _read_model(fname: str):
    gemmi = _gemmi()
    try:
        st = gemmi.read_structure(fname)
    except (RuntimeError, ValueError, OSError) as exc:
        raise InputFileError(f"{fname}: not a readable PDB/mmCIF model ({exc})") from exc
    if len(st) == 0 or st[0].count_atom_sites() == 0:
        raise InputFileError(f"{fname}: the model has no atoms")
    if not st.cell.is_crystal():
        raise InputFileError(f"{fname}: the model has no unit cell (CRYST1 / _cell)")
    return st


def read_model_cell(path) -> tuple:
    """The unit cell of a PDB or mmCIF model: a, b, c (Angstrom), alpha, beta, gamma (degrees)."""
    c = _read_model(os.fspath(path)).cell
    return (c.a, c.b, c.c, c.alpha, c.beta, c.gamma)


def model_structure_factors(path, d_min: float, rate: float = 3.0) -> ReflectionList:
    """Amplitudes |F(hkl)| of a PDB or mmCIF model to resolution ``d_min`` (Angstrom).

    The model's electron density (gemmi's X-ray form factors, isotropic or
    anisotropic B factors, occupancies, hydrogens as in the file) is sampled
    on a grid of ``rate`` points per ``d_min / 2`` and Fourier transformed,
    as gemmi's ``sfcalc`` does.  Returns one asymmetric unit in the model's
    space group, with the model's cell.

    Raises
    ------
    InputFileError
        Unreadable model, no atoms, no unit cell, or ``d_min`` not positive.
    """
    gemmi = _gemmi()
    fname = os.fspath(path)
    if not d_min > 0.0:
        raise InputFileError(f"{fname}: resolution limit must be positive, got {d_min:g} A")
    st = _read_model(fname)
    st.setup_entities()
    sg = st.find_spacegroup() or gemmi.SpaceGroup("P 1")
    calc = gemmi.DensityCalculatorX()
    calc.d_min = d_min
    calc.rate = rate
    calc.set_grid_cell_and_spacegroup(st)
    calc.put_model_density_on_grid(st[0])
    grid = gemmi.transform_map_to_f_phi(calc.grid)
    asu = grid.prepare_asu_data(dmin=d_min, with_000=False)
    hkl = np.asarray(asu.miller_array, dtype=np.int64)
    F = np.abs(np.asarray(asu.value_array)).astype(np.float64)
    c = st.cell
    return ReflectionList(hkl, F, sg.hm, (c.a, c.b, c.c, c.alpha, c.beta, c.gamma),
                          f"{fname} (model, d_min {d_min:g} A)")
