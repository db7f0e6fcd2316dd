"""MTZ / mmCIF structure factors and model amplitudes (gemmi), expanded to P1."""

from __future__ import annotations

import math

import gemmi
import numpy as np
import pytest

from nbnumba.errors import InputFileError
from nbnumba.io.hkl import read_hkl
from nbnumba.io.reflections import (
    expand_to_p1,
    grid_from_reflections,
    model_structure_factors,
    read_reflection_file,
)

CELL = (31.0, 42.0, 57.0, 90.0, 90.0, 90.0)


def _asu_reflections(sg="P 21 21 21", d_min=6.0, seed=3):
    cell = gemmi.UnitCell(*CELL)
    hkl = np.asarray(gemmi.make_miller_array(cell, gemmi.SpaceGroup(sg), d_min), dtype=np.int64)
    rng = np.random.default_rng(seed)
    F = rng.uniform(1.0, 500.0, size=len(hkl)).astype(np.float32)
    return hkl, F


def _write_mtz(path, hkl, F, sg="P 21 21 21", columns=(("FP", "F"), ("SIGFP", "Q"))):
    mtz = gemmi.Mtz(with_base=True)
    mtz.spacegroup = gemmi.SpaceGroup(sg)
    mtz.set_cell_for_all(gemmi.UnitCell(*CELL))
    mtz.add_dataset("sim")
    for label, kind in columns:
        mtz.add_column(label, kind)
    data = np.zeros((len(hkl), 3 + len(columns)), dtype=np.float32)
    data[:, :3] = hkl
    data[:, 3] = F
    if len(columns) > 1:
        data[:, 4] = 0.1 * F
    mtz.set_data(data)
    mtz.write_to_file(str(path))


def _p1_text_by_hand(hkl, F, sg="P 21 21 21"):
    """Expand with gemmi's own operator application, one reflection at a time."""
    ops = gemmi.SpaceGroup(sg).operations()
    table = {}
    for (h, k, l), f in zip(hkl.tolist(), F.tolist()):
        for op in ops.sym_ops:
            for sign in (1, -1):
                mate = tuple(sign * v for v in op.apply_to_hkl([h, k, l]))
                table.setdefault(mate, f)
    return "".join(f"{h} {k} {l} {f!r}\n" for (h, k, l), f in table.items()), len(table)


def test_mtz_expands_to_the_same_table_as_a_p1_text_file(tmp_path):
    hkl, F = _asu_reflections()
    _write_mtz(tmp_path / "data.mtz", hkl, F)
    text, n_p1 = _p1_text_by_hand(hkl, F)
    (tmp_path / "p1.hkl").write_text(text)

    refl = read_reflection_file(tmp_path / "data.mtz")
    assert refl.spacegroup == "P 21 21 21"
    assert refl.source.endswith("column FP")
    assert len(refl) == len(hkl)
    grid = grid_from_reflections(expand_to_p1(refl))
    ref = read_hkl(tmp_path / "p1.hkl")
    assert grid.hkls == ref.hkls == n_p1
    assert (grid.h_min, grid.h_max, grid.k_min, grid.k_max, grid.l_min, grid.l_max) == (
        ref.h_min, ref.h_max, ref.k_min, ref.k_max, ref.l_min, ref.l_max)
    np.testing.assert_array_equal(grid.F, ref.F)
    # P 21 21 21 is not centrosymmetric: 8 mates (4 operators x Friedel) except on axes and planes
    assert len(hkl) * 2 < n_p1 <= len(hkl) * 8


def test_default_F_fills_the_box_like_the_text_reader(tmp_path):
    hkl, F = _asu_reflections(d_min=8.0)
    _write_mtz(tmp_path / "data.mtz", hkl, F)
    text, _ = _p1_text_by_hand(hkl, F)
    (tmp_path / "p1.hkl").write_text(text)
    grid = grid_from_reflections(expand_to_p1(read_reflection_file(tmp_path / "data.mtz")), default_F=7.5)
    np.testing.assert_array_equal(grid.F, read_hkl(tmp_path / "p1.hkl", default_F=7.5).F)


def test_column_choice_and_intensity_only_files(tmp_path):
    hkl, F = _asu_reflections(d_min=8.0)
    _write_mtz(tmp_path / "two.mtz", hkl, F, columns=(("FC", "F"), ("FOBS", "F")))
    assert read_reflection_file(tmp_path / "two.mtz").source.endswith("column FOBS")
    refl = read_reflection_file(tmp_path / "two.mtz", column="FC")
    np.testing.assert_array_equal(refl.F, F.astype(np.float64))
    with pytest.raises(InputFileError, match=r"no column 'FX'; columns: FC\(F\), FOBS\(F\)"):
        read_reflection_file(tmp_path / "two.mtz", column="FX")

    _write_mtz(tmp_path / "i.mtz", hkl, F, columns=(("IMEAN", "J"), ("SIGIMEAN", "Q")))
    with pytest.raises(InputFileError, match=r"no structure-factor amplitude column .*IMEAN\(J\), SIGIMEAN\(Q\)"):
        read_reflection_file(tmp_path / "i.mtz")
    with pytest.raises(InputFileError, match="holds type J, not amplitudes"):
        read_reflection_file(tmp_path / "i.mtz", column="IMEAN")


def test_mmcif_structure_factors_match_the_mtz(tmp_path):
    hkl, F = _asu_reflections(d_min=7.0)
    _write_mtz(tmp_path / "data.mtz", hkl, F)
    mtz = gemmi.read_mtz_file(str(tmp_path / "data.mtz"))
    converter = gemmi.MtzToCif()
    converter.spec_lines = ["H H index_h", "K H index_k", "L H index_l", "FP F F_meas_au", "SIGFP Q F_meas_sigma_au"]
    (tmp_path / "data-sf.cif").write_text(converter.write_cif_to_string(mtz))
    from_cif = grid_from_reflections(expand_to_p1(read_reflection_file(tmp_path / "data-sf.cif")))
    from_mtz = grid_from_reflections(expand_to_p1(read_reflection_file(tmp_path / "data.mtz")))
    assert from_cif.hkls == from_mtz.hkls
    # the mmCIF writer prints three decimals
    np.testing.assert_allclose(from_cif.F, from_mtz.F, rtol=0, atol=5e-4)


def test_inconsistent_symmetry_is_refused(tmp_path):
    hkl = np.array([[1, 2, 3], [-1, -2, 3]])  # mates under the 2-fold along z in P 21 21 21
    _write_mtz(tmp_path / "bad.mtz", hkl, np.array([10.0, 20.0], dtype=np.float32))
    with pytest.raises(InputFileError, match="symmetry-related reflections disagree"):
        expand_to_p1(read_reflection_file(tmp_path / "bad.mtz"))


def test_unreadable_files(tmp_path):
    (tmp_path / "junk.mtz").write_bytes(b"MTZ \x00\x01garbage")
    with pytest.raises(InputFileError, match="not a readable MTZ file"):
        read_reflection_file(tmp_path / "junk.mtz")
    with pytest.raises(InputFileError, match="no such file"):
        read_reflection_file(tmp_path / "missing.mtz")
    (tmp_path / "x.cif").write_text("data_x\n_cell.length_a 10\n")
    with pytest.raises(InputFileError, match="no _refln loop"):
        read_reflection_file(tmp_path / "x.cif")


def _model(path, n_atoms=30):
    st = gemmi.Structure()
    st.cell = gemmi.UnitCell(*CELL)
    st.spacegroup_hm = "P 21 21 21"
    model = gemmi.Model("1")
    chain = gemmi.Chain("A")
    rng = np.random.default_rng(7)
    for i in range(n_atoms):
        res = gemmi.Residue()
        res.name = "GLY"
        res.seqid = gemmi.SeqId(i + 1, " ")
        atom = gemmi.Atom()
        atom.name = "CA"
        atom.element = gemmi.Element("CNOS"[i % 4])
        atom.pos = gemmi.Position(*(rng.random(3) * CELL[:3]))
        atom.b_iso = 25.0
        atom.occ = 1.0
        res.add_atom(atom)
        chain.add_residue(res)
    model.add_chain(chain)
    st.add_model(model)
    st.setup_entities()
    st.write_pdb(str(path))


def test_model_amplitudes_match_direct_summation(tmp_path):
    _model(tmp_path / "m.pdb")
    refl = model_structure_factors(tmp_path / "m.pdb", d_min=4.0)
    assert refl.spacegroup == "P 21 21 21"
    st = gemmi.read_structure(str(tmp_path / "m.pdb"))
    calc = gemmi.StructureFactorCalculatorX(st.cell)
    direct = np.array([abs(calc.calculate_sf_from_model(st[0], [int(v) for v in h])) for h in refl.hkl])
    # FFT of the sampled density against the exact sum over atoms and symmetry mates
    assert np.max(np.abs(refl.F - direct)) < 1e-4 * direct.max()
    d = np.array([st.cell.calculate_d(list(map(int, h))) for h in refl.hkl])
    assert d.min() >= 4.0 - 1e-9
    p1 = expand_to_p1(refl)
    mates = {tuple(h): f for h, f in zip(p1.hkl.tolist(), p1.F.tolist())}
    for h in p1.hkl[::41].tolist():
        assert mates[tuple(h)] == pytest.approx(abs(calc.calculate_sf_from_model(st[0], h)), abs=1e-4 * direct.max())


def test_model_errors(tmp_path):
    (tmp_path / "empty.pdb").write_text("CRYST1   31.000   42.000   57.000  90.00  90.00  90.00 P 21 21 21\nEND\n")
    with pytest.raises(InputFileError, match="no atoms"):
        model_structure_factors(tmp_path / "empty.pdb", d_min=3.0)
    _model(tmp_path / "m.pdb", n_atoms=2)
    with pytest.raises(InputFileError, match="resolution limit must be positive"):
        model_structure_factors(tmp_path / "m.pdb", d_min=0.0)


# ---------------------------------------------------------------- through the command line
RUN = "-cell 31 42 57 90 90 90 -misset 5 10 15 -lambda 1.0 -N 3 -detpixels 48 -pixel 0.4 -distance 40 -oversample 1"


def _render(argv, tmp_path, mode="spec"):
    from nbnumba import config_from_args, simulate

    cfg, run = config_from_args(argv, mode=mode)
    return simulate(cfg).image, run


def test_mtz_run_is_bit_identical_to_the_hand_expanded_p1_run(tmp_path):
    hkl, F = _asu_reflections(d_min=4.0)
    _write_mtz(tmp_path / "data.mtz", hkl, F)
    text, _ = _p1_text_by_hand(hkl, F)
    (tmp_path / "p1.hkl").write_text(text)
    for mode in ("spec", "parity"):
        from_mtz, run = _render(RUN.split() + ["-hkl", str(tmp_path / "data.mtz")], tmp_path, mode)
        from_txt, _ = _render(RUN.split() + ["-hkl", str(tmp_path / "p1.hkl")], tmp_path, mode)
        assert from_mtz.max() > 0
        np.testing.assert_array_equal(from_mtz.view(np.uint32), from_txt.view(np.uint32))
        assert any("P 21 21 21" in n and "after expansion to P1" in n for n in run.notes)


def test_hkl_column_is_not_read_as_hkl_in_parity_mode(tmp_path):
    hkl, F = _asu_reflections(d_min=5.0)
    _write_mtz(tmp_path / "two.mtz", hkl, F, columns=(("FC", "F"), ("FOBS", "F")))
    from nbnumba import config_from_args

    for mode in ("spec", "parity"):
        _cfg, run = config_from_args(RUN.split() + ["-hkl", str(tmp_path / "two.mtz"), "-hkl_column", "FC"],
                                     mode=mode)
        assert run.hklfile == str(tmp_path / "two.mtz") and run.hkl_column == "FC"
        assert any("column FC" in n for n in run.notes)


def test_structure_factor_flag_errors(tmp_path):
    from nbnumba import config_from_args
    from nbnumba.errors import UsageError

    (tmp_path / "p1.hkl").write_text("1 2 3 10\n")
    _model(tmp_path / "m.pdb", n_atoms=3)
    with pytest.raises(UsageError, match="-hkl_column selects a column of an MTZ or mmCIF"):
        config_from_args(RUN.split() + ["-hkl", str(tmp_path / "p1.hkl"), "-hkl_column", "FP"])
    with pytest.raises(UsageError, match="-pdb and -hkl both give structure factors"):
        config_from_args(RUN.split() + ["-hkl", str(tmp_path / "p1.hkl"), "-pdb", str(tmp_path / "m.pdb")])


def test_pdb_model_run(tmp_path):
    from nbnumba import config_from_args, simulate
    from nbnumba.models import RESOLUTION_MARGIN, detector_d_min

    _model(tmp_path / "m.pdb")
    argv = "-misset 5 10 15 -lambda 1.0 -N 3 -detpixels 48 -pixel 0.4 -distance 40 -oversample 1".split()
    cfg, run = config_from_args(argv + ["-pdb", str(tmp_path / "m.pdb")])
    # the model's cell, as no -cell or -mat was given
    assert cfg.cell_angstrom == pytest.approx(CELL[:3])
    assert cfg.cell_angles == pytest.approx([math.pi / 2] * 3)
    d_min = detector_d_min(cfg)
    # 19.2 mm square detector at 40 mm; MOSFLM puts the beam at (19.2 + 0.4) / 2 + 0.2 = 10.0 mm
    # from the first pixel's corner along both axes, so that corner is the farthest
    two_theta = math.atan(math.hypot(10.0, 10.0) / 40.0)
    assert d_min == pytest.approx(1.0 / (2 * math.sin(two_theta / 2)), rel=1e-3)
    st = gemmi.read_structure(str(tmp_path / "m.pdb"))
    d_of = [st.cell.calculate_d([h, k, l]) for h in range(-20, 21) for k in range(-20, 21) for l in (0, 1)
            if (h, k, l) != (0, 0, 0) and cfg.hkl.h_min <= h <= cfg.hkl.h_max]
    assert min(d_of) < d_min  # the table reaches past what the detector sees
    assert any(f"to {d_min * RESOLUTION_MARGIN:.3g} A" in n for n in run.notes)
    image = simulate(cfg).image
    assert image.max() > 0 and np.isfinite(image).all()


def test_the_api_never_reads_a_stray_fdump(tmp_path, monkeypatch):
    from nbnumba import config_from_args
    from nbnumba.errors import InputFileError
    from nbnumba.io.hkl import write_fdump

    (tmp_path / "p1.hkl").write_text("1 2 3 10\n")
    write_fdump(tmp_path / "Fdump.bin", read_hkl(tmp_path / "p1.hkl"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputFileError, match="no structure factors"):
        config_from_args(RUN.split())
    cfg, run = config_from_args(RUN.split(), fdump_cache=True)  # what the nanoBragg command does
    assert cfg.hkl is not None and "reading Fs from Fdump.bin" in run.notes
