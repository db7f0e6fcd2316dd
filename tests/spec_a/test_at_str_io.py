"""Spec A, Structure factors and File I/O: AT-STR-001..004, AT-IO-001..004.

Pixels are compared with ``r_e^2 fluence F_cell^2 F_latt^2 omega P``, the
corrections recomputed in numpy (:class:`speca_util.Geometry`).
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from speca_util import (  # noqa: F401
    R_E_SQR,
    Geometry,
    cli,
    defect,
    differs,
    first,
    golden_float,
    image,
    in_tmp,
    needs_golden,
    pinfo,
    read_float,
    sim,
    smv,
)

pytestmark = pytest.mark.usefixtures("in_tmp")

CUBIC = "-cell 100 100 100 90 90 90 -lambda 1"


def _write_hkl(path, table):
    with open(path, "w") as fh:
        for row in table:
            fh.write(" ".join(str(v) for v in row) + "\n")


def _corrections(r):
    """fluence r_e^2 omega P of each pixel (oversample 1, unpolarized)."""
    g = Geometry(r.prepared)
    return R_E_SQR * pinfo(r.prepared)["fluence"] * first(g.omega) * first(g.polar(0.0)), g


def _nearest(g):
    hkl = first(g.hkl())
    return np.ceil(hkl - 0.5).astype(int)


def test_at_str_001_nearest_neighbour_lookup():
    grid = [(h, k, l, 10 + h + 3 * k + 9 * l + 20) for h in range(-2, 3) for k in range(-2, 3) for l in range(-2, 3)]
    _write_hkl("grid.hkl", grid)
    r = sim(f"-hkl grid.hkl -default_F 7 {CUBIC} -N 1 -nointerpolate -detpixels 24 -pixel 0.5 -distance 20 "
            "-oversample 1")
    base, g = _corrections(r)
    h0 = _nearest(g)
    inside = np.all(np.abs(h0) <= 2, axis=-1)
    assert 0 < inside.sum() < inside.size
    F = np.where(inside, 30 + h0[..., 0] + 3 * h0[..., 1] + 9 * h0[..., 2], 7.0)
    np.testing.assert_allclose(r.image, base * F ** 2, rtol=1e-6)


def _lagrange(x, x0):
    """Weights of the 4-point polynomial through x0-1 .. x0+2 at x."""
    nodes = x0[..., None] + np.arange(-1, 3)
    w = np.ones(x.shape + (4,))
    for j in range(4):
        for m in range(4):
            if m != j:
                w[..., j] *= (x - nodes[..., m]) / (nodes[..., j] - nodes[..., m])
    return w


def _grid_file(lo, hi, seed=3):
    rng = np.random.default_rng(seed)
    values = {}
    rows = []
    for h in range(lo, hi + 1):
        for k in range(lo, hi + 1):
            for l in range(lo, hi + 1):
                values[h, k, l] = round(float(rng.uniform(10, 100)), 3)
                rows.append((h, k, l, values[h, k, l]))
    _write_hkl("grid.hkl", rows)
    return values


INTERP = f"-hkl grid.hkl {CUBIC} -N 1 -interpolate -detpixels 32 -pixel 0.2 -distance 100 -oversample 1"


def test_at_str_002_tricubic_interpolation_inside_the_grid():
    values = _grid_file(-6, 6)
    r = sim(INTERP)
    base, g = _corrections(r)
    hkl = first(g.hkl())
    x0 = np.floor(hkl).astype(int)
    assert np.all(x0 - 1 >= -6) and np.all(x0 + 2 <= 6)  # complete 4x4x4 neighbourhoods
    wh, wk, wl = (_lagrange(hkl[..., i], x0[..., i]) for i in range(3))
    F = np.zeros(hkl.shape[:2])
    for i in range(4):
        for j in range(4):
            for m in range(4):
                node = np.vectorize(lambda a, b, c: values[a, b, c])(
                    x0[..., 0] + i - 1, x0[..., 1] + j - 1, x0[..., 2] + m - 1)
                F += wh[..., i] * wk[..., j] * wl[..., m] * node
    np.testing.assert_allclose(r.image, base * F ** 2, rtol=1e-5)


def test_at_str_002_out_of_grid_warning_once():
    _grid_file(-2, 2)
    code, out, err = cli(f"{INTERP} -default_F 5 -nonoise -nopgm -floatfile f.bin")
    assert code == 0, err
    lines = [ln for ln in (out + err).splitlines() if re.search(r"(?i)warning.*interpolat|interpolat.*warning", ln)]
    assert len(lines) == 1, lines


@differs("Spec A: after the first out-of-grid stencil interpolation is off for the rest of the run; "
         "spec mode keeps it on for the other evaluations on purpose (docs/quirks.md row 3: C's switch-off "
         "depends on pixel order), parity mode switches off as C does")
def test_at_str_002_out_of_grid_disables_interpolation():
    values = _grid_file(-2, 2)
    r = sim(INTERP + " -default_F 5")
    base, g = _corrections(r)
    hkl = first(g.hkl())
    x0 = np.floor(hkl).astype(int)
    inside = np.all((x0 - 1 >= -2) & (x0 + 2 <= 2), axis=-1)
    assert not inside[0, 0] and inside.sum() > 0  # the first pixel in raster order leaves the grid
    h0 = _nearest(g)
    F = np.vectorize(lambda a, b, c: values.get((a, b, c), 5.0))(h0[..., 0], h0[..., 1], h0[..., 2])
    # every later in-grid evaluation takes the nearest-neighbour F
    np.testing.assert_allclose(r.image[inside], (base * F ** 2)[inside], rtol=1e-6)


def _sincg(x, n):
    return np.where(np.abs(np.sin(x)) < 1e-300, n, np.sin(n * x) / np.where(np.sin(x) == 0, 1, np.sin(x)))


@pytest.mark.parametrize("shape", ["square", "round", "gauss", "tophat"])
def test_at_str_003_lattice_shape_models(shape):
    flag = {"square": "-square_xtal", "round": "-round_xtal", "gauss": "-gauss_xtal", "tophat": "-tophat_spots"}
    r = sim(f"-default_F 100 {CUBIC} -N 5 -fudge 1.3 -nointerpolate {flag[shape]} -detpixels 48 -pixel 0.1 "
            "-distance 50 -oversample 1")
    base, g = _corrections(r)
    hkl = first(g.hkl())
    d = hkl - np.ceil(hkl - 0.5)
    N, fudge = 5.0, 1.3
    if shape == "square":
        F = np.prod(_sincg(np.pi * hkl, N), axis=-1)
    elif shape == "round":
        x = np.pi * np.sqrt(fudge * np.sum((d * N) ** 2, axis=-1))
        F = N ** 3 * 0.723601254558268 * np.where(x == 0, 1.0, 3 * (np.sin(x) / x - np.cos(x)) / x ** 2)
    else:
        info = pinfo(r.prepared)
        star = np.stack([np.asarray(info[k][:3], float) for k in ("a_star", "b_star", "c_star")])
        dr2 = np.sum((d @ star) ** 2, axis=-1) * N ** 6
        F = N ** 3 * (np.exp(-dr2 / 0.63 * fudge) if shape == "gauss" else (dr2 * fudge < 0.3969))
    expected = base * 100.0 ** 2 * F ** 2
    assert expected.max() > 10 * expected.min() or shape == "tophat"
    np.testing.assert_allclose(r.image, expected, rtol=1e-5, atol=1e-9 * expected.max())


SPARSE = [(0, 0, 0, 100.0), (2, 0, 0, 80.0), (0, 2, 0, 60.0)]


def test_at_str_004_sparse_hkl_and_default_f():
    _write_hkl("sparse.hkl", SPARSE)
    r = sim(f"-hkl sparse.hkl -default_F 10 {CUBIC} -N 1 -nointerpolate -detpixels 64 -pixel 0.1 -distance 30 "
            "-oversample 1")
    base, g = _corrections(r)
    h0 = _nearest(g)
    F2 = r.image / base
    table = {(h, k, l): F for h, k, l, F in SPARSE}
    seen = set()
    for key in {tuple(v) for v in h0.reshape(-1, 3)}:
        sel = np.all(h0 == key, axis=-1)
        np.testing.assert_allclose(F2[sel], table.get(key, 10.0) ** 2, rtol=1e-6)
        seen.add(key)
    # with the beam along a* (MOSFLM), the detector sees k and l: (0,1,0) is the missing neighbour
    assert {(0, 0, 0), (0, 1, 0), (0, 2, 0)} <= seen
    i000 = np.median(F2[np.all(h0 == (0, 0, 0), axis=-1)])
    i010 = np.median(F2[np.all(h0 == (0, 1, 0), axis=-1)])
    assert i000 / i010 == pytest.approx(100.0, rel=0.01)


@needs_golden
def test_at_str_004_missing_reflections_as_c():
    from nbnumba.golden import run_case

    for mode in ("parity", "spec"):
        report = run_case("hkl_sparse_defaultF", mode=mode)
        assert report.ok, (mode, report.details)


# ---------------------------------------------------------------- File I/O

SMV_KEYS = ("HEADER_BYTES DIM BYTE_ORDER TYPE SIZE1 SIZE2 PIXEL_SIZE DISTANCE WAVELENGTH BEAM_CENTER_X BEAM_CENTER_Y "
            "ADXV_CENTER_X ADXV_CENTER_Y MOSFLM_CENTER_X MOSFLM_CENTER_Y DENZO_X_BEAM DENZO_Y_BEAM DIALS_ORIGIN "
            "XDS_ORGX XDS_ORGY CLOSE_DISTANCE PHI OSC_START OSC_RANGE TWOTHETA DETECTOR_SN BEAMLINE").split()
SMALL = "-default_F 100 -cell 100 100 100 90 90 90 -lambda 6.2 -N 5 -distance 100 -pixel 0.1"


def test_at_io_001_smv_header_and_data_order(tmp_path):
    code, _out, err = cli(f"{SMALL} -detpixels_f 40 -detpixels_s 24 -floatfile f.bin -intfile i.img "
                          "-noisefile n.img -seed 7 -nopgm -scale 2.5")
    assert code == 0, err
    fl = read_float("f.bin", 40, 24)
    for name in ("i.img", "n.img"):
        raw = (tmp_path / name).read_bytes()
        head = raw[:512].decode("latin-1")
        assert head.startswith("{\nHEADER_BYTES=512;\n")
        end = head.index("}\f")
        assert head[end + 2:] == " " * (512 - end - 2)  # padded with spaces to 512 bytes
        header, data = smv(tmp_path / name)
        assert [k for k in SMV_KEYS if k not in header] == []
        assert header["DIM"] == "2" and header["TYPE"] == "unsigned_short"
        assert header["BYTE_ORDER"] == "little_endian"
        assert header["SIZE1"] == "40" and header["SIZE2"] == "24"
        assert header["DETECTOR_SN"] == "000" and header["BEAMLINE"] == "fake"
        assert len(raw) == 512 + 2 * 40 * 24
        assert data.shape == (24, 40)
    # fast-major: pixel index = slow * fpixels + fast
    flat = np.frombuffer((tmp_path / "i.img").read_bytes()[512:], "<u2")
    expected = np.floor(np.clip(fl * 2.5 + 40, 0, 65535) + 0.5)
    np.testing.assert_array_equal(flat, expected.reshape(-1))


@pytest.mark.parametrize("pgmscale", [None, 0.7])
def test_at_io_002_pgm(pgmscale, tmp_path):
    flag = f"-pgmscale {pgmscale}" if pgmscale else ""
    code, out, err = cli(f"{SMALL} -detpixels 32 -floatfile f.bin -pgmfile p.pgm {flag} -nonoise")
    assert code == 0, err
    fl = read_float("f.bin", 32, 32)
    scale = pgmscale or float(re.search(r"pgm_scale = (\S+)", out).group(1))
    if pgmscale is None:
        rmsd = float(re.search(r"rmsd= (\S+)", out).group(1))
        assert scale == pytest.approx(250.0 / (5.0 * rmsd), rel=1e-5)
    raw = (tmp_path / "p.pgm").read_bytes()
    head = f"P5\n32 32\n# pixels scaled by {scale:g}\n255\n".encode()
    assert raw.startswith(head) and len(raw) == len(head) + 32 * 32
    px = np.frombuffer(raw[len(head):], np.uint8).reshape(32, 32)
    expected = np.floor(np.minimum(255.0, fl * scale))
    assert np.sum(px != expected) == 0


def test_at_io_003_fdump_cache(tmp_path):
    _write_hkl("gap.hkl", [(-1, 0, 0, 30.0), (1, 0, 0, 20.0), (0, 1, 2, 50.0)])
    args = f"{CUBIC} -N 2 -default_F 7 -detpixels 24 -pixel 0.2 -distance 60 -nonoise -nopgm"
    code, _, err = cli(f"-hkl gap.hkl {args} -floatfile a.bin")
    assert code == 0, err
    raw = (tmp_path / "Fdump.bin").read_bytes()
    head_end = raw.index(b"\f") + 1
    assert raw[head_end - 2:head_end] == b"\n\f"
    assert [int(v) for v in raw[:head_end - 2].split()] == [-1, 1, 0, 1, 0, 2]
    grid = np.frombuffer(raw[head_end:], dtype=np.float64)
    # pages for h = 0..h_range, k = 0..k_range of l_range + 1 doubles, with range = max - min + 1
    assert grid.size == 4 * 3 * 4
    grid = grid.reshape(4, 3, 4)[:3, :2, :3]
    assert grid[0, 0, 0] == 30.0 and grid[2, 0, 0] == 20.0 and grid[1, 1, 2] == 50.0
    assert np.sum(grid == 7.0) == grid.size - 3  # unlisted points hold the prefilled default_F
    code, out, err = cli(f"{args} -floatfile b.bin")
    assert code == 0, err
    assert "Fdump.bin" in out
    assert (tmp_path / "a.bin").read_bytes() == (tmp_path / "b.bin").read_bytes()


HKL_FORMATS = [
    pytest.param("minimal", id="minimal"),
    pytest.param("negative", id="negative_indices"),
    pytest.param("with_phase", id="with_phase"),
    pytest.param("with_sigma", id="with_sigma"),
]


@pytest.mark.parametrize("fmt", HKL_FORMATS)
def test_at_io_004_hkl_formats(fmt, tmp_path):
    rows = [(h, k, l, 10.0 + abs(3 * h + 5 * k + 7 * l)) for h in range(-2, 3) for k in range(-2, 3)
            for l in range(-2, 3)]
    _write_hkl("minimal.hkl", rows)
    extra = {"minimal": lambda r: r, "negative": lambda r: r,
             "with_phase": lambda r: r + (37.5,), "with_sigma": lambda r: r + (1.25, 37.5)}[fmt]
    _write_hkl(f"{fmt}.hkl", [extra(r) for r in rows])
    args = f"{CUBIC} -N 3 -detpixels 24 -pixel 0.4 -distance 40 -nonoise -nopgm"
    (tmp_path / "ref").mkdir()
    (tmp_path / "run").mkdir()
    (tmp_path / "ref" / "minimal.hkl").write_bytes((tmp_path / "minimal.hkl").read_bytes())
    (tmp_path / "run" / f"{fmt}.hkl").write_bytes((tmp_path / f"{fmt}.hkl").read_bytes())
    import os

    os.chdir(tmp_path / "ref")
    assert cli(f"-hkl minimal.hkl {args} -floatfile f.bin")[0] == 0
    os.chdir(tmp_path / "run")
    code, _, err = cli(f"-hkl {fmt}.hkl {args} -floatfile f.bin")
    assert code == 0, err
    ref = (tmp_path / "ref" / "f.bin").read_bytes()
    assert (tmp_path / "run" / "f.bin").read_bytes() == ref
    if fmt == "negative":
        assert np.frombuffer(ref, "<f4").max() > 0
    # the cache written from each format gives the same image again
    assert (tmp_path / "run" / "Fdump.bin").read_bytes() == (tmp_path / "ref" / "Fdump.bin").read_bytes()
    code, _, err = cli(f"{args} -floatfile g.bin")
    assert code == 0, err
    assert (tmp_path / "run" / "g.bin").read_bytes() == ref
