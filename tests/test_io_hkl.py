"""hkl text files and Fdump.bin against the C program's files."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from nbnumba.errors import InputFileError
from nbnumba.io.hkl import HKLGrid, fdump_bytes, read_fdump, read_hkl, write_fdump

GOLDEN = Path(__file__).resolve().parents[1].parent / "shared" / "golden"

FDUMP_CASES = ["hkl_rand", "hkl_sparse_defaultF", "interp_auto", "interp_outofrange", "mat_scaled"]


def case_hkl(case: str) -> tuple[Path, float, Path]:
    folder = GOLDEN / case
    if not folder.is_dir():
        pytest.skip("golden corpus ../shared/golden not found")
    args = json.loads((folder / "case.json").read_text())["args"]
    hkl = GOLDEN / "inputs" / args[args.index("-hkl") + 1]
    default_f = float(args[args.index("-default_F") + 1]) if "-default_F" in args else 0.0
    return hkl, default_f, folder / "Fdump.bin"


@pytest.mark.parametrize("case", FDUMP_CASES)
def test_fdump_written_byte_identical(case, tmp_path):
    hkl, default_f, fdump = case_hkl(case)
    grid = read_hkl(hkl, default_F=default_f)
    assert grid.F.shape == (grid.h_range + 1, grid.k_range + 1, grid.l_range + 1)
    assert grid.hkls == sum(1 for line in hkl.read_text().splitlines() if line.strip())
    out = tmp_path / "Fdump.bin"
    write_fdump(out, grid)
    assert out.read_bytes() == fdump.read_bytes()


@pytest.mark.parametrize("case", ["hkl_rand", "hkl_sparse_defaultF"])
def test_read_fdump_matches_hkl(case):
    hkl, default_f, fdump = case_hkl(case)
    grid = read_hkl(hkl, default_F=default_f)
    back = read_fdump(fdump)
    ranges = ("h_min", "h_max", "k_min", "k_max", "l_min", "l_max")
    assert [getattr(back, n) for n in ranges] == [getattr(grid, n) for n in ranges]
    assert np.array_equal(back.F, grid.F)
    assert back.hkls == grid.h_range * grid.k_range * grid.l_range


def test_default_f_fill_excludes_extra_planes(tmp_path):
    path = tmp_path / "x.hkl"
    path.write_text("0 0 0 100\n2 1 -1 50\n")
    grid = read_hkl(path, default_F=10.0)
    assert (grid.h_min, grid.h_max, grid.k_min, grid.k_max, grid.l_min, grid.l_max) == (0, 2, 0, 1, -1, 0)
    assert grid.F.shape == (4, 3, 3)
    assert grid.F[0, 0, 1] == 100.0 and grid.F[2, 1, 0] == 50.0
    assert grid.F[1, 1, 1] == 10.0
    assert not grid.F[3].any() and not grid.F[:, 2].any() and not grid.F[:, :, 2].any()


def test_non_integer_index_misparses_like_c(tmp_path):
    # C's integer re-read stops at "1.5": the 2 0 -1 reflection is never stored
    # (checked against the C program's Fdump.bin).
    path = tmp_path / "x.hkl"
    path.write_text("0 0 0 10\n1.5 0 0 20\n2 0 -1 30\n")
    with pytest.warns(UserWarning, match="non-integer"):
        grid = read_hkl(path)
    assert grid.warnings[0] == "WARNING: non-integer value for h (1.5) at line 1"
    assert "line 2" in grid.warnings[1]
    assert (grid.h_min, grid.h_max, grid.l_min, grid.l_max) == (0, 2, -1, 0)
    expected = np.zeros((4, 2, 3))
    expected[0, 0, 1] = 10.0
    assert np.array_equal(grid.F, expected)
    assert grid.hkls == 3


@pytest.mark.parametrize(
    ("content", "line"),
    [
        ("1 2 3 4\n1 2 3\n", 2),
        ("1 2 3\n4 5 6 7\n", 1),
        ("1 2 3 4\nfoo bar\n", 2),
        ("1 2 3 4 1 2 3 5\n", 1),
        ("", 1),
        ("\n\n", 1),
        ("# h k l F\n1 2 3 4\n", 1),
        ("1 2 3 4\n2 2 3 4 extra\n", 2),
        ("inf 0 0 1\n", 1),
    ],
)
def test_malformed_hkl_raises_with_line(tmp_path, content, line):
    path = tmp_path / "bad.hkl"
    path.write_text(content)
    with pytest.raises(InputFileError, match=rf"bad\.hkl, line {line}\b"):
        read_hkl(path)


def test_missing_hkl_raises(tmp_path):
    with pytest.raises(InputFileError, match="none.hkl"):
        read_hkl(tmp_path / "none.hkl")


def test_fdump_whitespace_quirk(tmp_path):
    # First double's low byte is 0x20 (a space): C's "\n\f" format directive
    # swallows it and reads every double one byte late.
    first = struct.unpack("<d", b" " + struct.pack("<d", 5.0)[1:])[0]
    grid = HKLGrid(0, 0, 0, 0, 0, 0, np.array([[[first, 7.0], [0, 0]], [[0, 0], [0, 0]]], dtype=np.float64))
    path = tmp_path / "Fdump.bin"
    write_fdump(path, grid)
    raw = path.read_bytes()
    plain = read_fdump(path, c_whitespace_quirk=False)
    assert np.array_equal(plain.F, grid.F)
    with pytest.warns(UserWarning, match="shifted by 1"):
        quirky = read_fdump(path)
    data = raw[raw.index(b"\f") + 2 :] + bytes(1)
    expected = np.frombuffer(data[: 8 * 7], dtype="<f8")
    assert np.array_equal(quirky.F.reshape(-1)[:7], expected)
    assert quirky.F.reshape(-1)[7] == 0.0


@pytest.mark.parametrize(
    "content",
    [b"", b"1 2 3\n\f", b"0 0 0 0 0 0\n\f" + bytes(8 * 7), b"0 x 0 0 0 0\n\f"],
    ids=["empty", "five-ints", "truncated", "text"],
)
def test_malformed_fdump_raises(tmp_path, content):
    path = tmp_path / "Fdump.bin"
    path.write_bytes(content)
    with pytest.raises(InputFileError, match="Fdump.bin"):
        read_fdump(path)


def test_fdump_bytes_shape_check():
    grid = HKLGrid(0, 1, 0, 1, 0, 1, np.zeros((2, 2, 2)))
    with pytest.raises(ValueError):
        fdump_bytes(grid)


@pytest.mark.parametrize("case", ["hkl_rand", "mat_scaled"])
def test_fast_reader_equals_line_by_line_reader(case, monkeypatch):
    """The vectorised reader (line shapes checked once each) gives the C emulation's table bit for bit."""
    from nbnumba.io import hkl as hkl_module

    path, default_f, _ = case_hkl(case)
    text = path.read_text()
    assert hkl_module._read_plain_hkl(str(path), text, default_f) is not None, "fast path not taken"
    fast = read_hkl(path, default_F=default_f)
    monkeypatch.setattr(hkl_module, "_read_plain_hkl", lambda *a: None)
    slow = read_hkl(path, default_F=default_f)
    assert fast.F.dtype == slow.F.dtype and np.array_equal(fast.F, slow.F)
    assert (fast.h_min, fast.k_min, fast.l_min, fast.hkls) == (slow.h_min, slow.k_min, slow.l_min, slow.hkls)


@pytest.mark.parametrize("line", ["1 2 3.5 4", "1 2 3 4 5", "1 2 3 1e", "1 2 3 --4", "0x1 2 3 4", "1 2 3 4,"])
def test_fast_reader_leaves_other_lines_to_the_c_emulation(line):
    from nbnumba.io.hkl import _read_plain_hkl

    good = "0 0 1 10.5\n 0 1 1 3e2\n1 0 0 .5\n-1 2 3 7\n"
    assert _read_plain_hkl("x.hkl", good, 0.0) is not None  # the control: plain lines take the fast path
    assert _read_plain_hkl("x.hkl", good + line + "\n", 0.0) is None


def test_dense_grid_hands_repeated_reflections_back():
    """The vectorised table is built only when each reflection is listed once; a repeat (anywhere in
    the list) returns None, for C's line-by-line reading where the last value wins."""
    from nbnumba.io.hkl import dense_grid

    hkl = np.array([[0, 0, 0], [1, -2, 3], [-4, 5, 0], [2, 2, 2]], dtype=np.int64)
    F = np.array([1.0, 2.0, 3.0, 4.0])
    grid = dense_grid("x.hkl", hkl, F)
    assert grid.F[1 + 4, -2 + 2, 3] == 2.0 and grid.hkls == 4
    assert np.count_nonzero(grid.F) == 4
    for repeat in range(4):
        assert dense_grid("x.hkl", np.vstack([hkl, hkl[repeat]]), np.append(F, 9.0)) is None


def test_plain_hkl_repeated_reflection_last_one_wins(tmp_path):
    path = tmp_path / "rep.hkl"
    path.write_text("0 0 0 10\n1 1 1 5\n0 0 0 12\n")
    grid = read_hkl(path)
    assert grid.F[0, 0, 0] == 12.0 and grid.F[1, 1, 1] == 5.0 and grid.hkls == 3
