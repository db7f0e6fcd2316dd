"""Text columns, matrix, PGM and float-image I/O."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from nbnumba.errors import InputFileError, OutputFileError
from nbnumba.io.cfmt import c_atof, c_strtod_prefix
from nbnumba.io.floatimage import read_float_image, write_float_image
from nbnumba.io.matrix import read_mosflm_matrix
from nbnumba.io.pgm import pgm_bytes, write_pgm
from nbnumba.io.textcols import read_text_columns

GOLDEN = Path(__file__).resolve().parents[1].parent / "shared" / "golden"
NAN = math.nan

# A mixed-delimiter file and the rows C's read_text_file (5 columns) gives.
TEXT_MIXED = "1 2 3\n\n  4,5;6:7!8 9\n   \nabc 1\n1e3x 2\n-1.5\t2.5"
TEXT_MIXED_C = [
    [1, 2, 3, NAN, NAN],
    [4, 5, 6, 7, 8],
    [0, 1, NAN, NAN, NAN],
    [1000, 2, NAN, NAN, NAN],
    [-1.5, 2.5, 0, 0, 0],
]
TEXT_CRLF = "1 2\r\n3 4\r\n"
TEXT_CRLF_C = [[1, 2, 0, 0, 0], [3, 4, 0, 0, 0]]

A_MAT = [
    [-0.02837711, -0.00305386, 0.02535816],
    [-0.02871390, 0.01019549, -0.01400049],
    [0.01050048, -0.03209440, -0.01036054],
]


def golden(*parts: str) -> Path:
    path = GOLDEN.joinpath(*parts)
    if not path.exists():
        pytest.skip("golden corpus ../shared/golden not found")
    return path


def same_with_nan(a: np.ndarray, b) -> bool:
    return np.array_equal(np.asarray(a), np.asarray(b, dtype=np.float64), equal_nan=True)


def test_text_columns_match_c(tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes(TEXT_MIXED.encode())
    with pytest.warns(UserWarning, match="line 7"):
        cols = read_text_columns(path, 5)
    assert cols.shape == (5, 5)
    assert same_with_nan(cols.T, TEXT_MIXED_C)


def test_text_columns_crlf_like_c(tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes(TEXT_CRLF.encode())
    with pytest.warns(UserWarning):
        cols = read_text_columns(path, 5)
    assert same_with_nan(cols.T, TEXT_CRLF_C)


def test_text_columns_sourcefile_and_stol(tmp_path):
    cols = read_text_columns(golden("inputs", "three.src"), 5)
    assert cols.shape == (5, 3)
    assert cols[:, 1].tolist() == [-10.0, 0.01, 0.0, 0.5, 6.3e-10]
    stol = tmp_path / "stol.txt"
    stol.write_text("0.0 10\n0.1 20 extra\n\n0.2\n")
    cols = read_text_columns(stol, 2)
    assert same_with_nan(cols, [[0.0, 0.1, 0.2], [10, 20, NAN]])


def test_text_columns_empty_and_missing(tmp_path):
    empty = tmp_path / "e.txt"
    empty.write_text("\n\n")
    assert read_text_columns(empty, 2).shape == (2, 0)
    with pytest.raises(InputFileError, match="gone.txt"):
        read_text_columns(tmp_path / "gone.txt", 2)


@pytest.mark.parametrize(
    ("text", "value", "end"),
    [
        ("  1.5e3x", 1500.0, 7),
        ("-.5", -0.5, 3),
        ("0x1.8p1", 3.0, 7),
        ("InFinity", math.inf, 8),
        ("abc", 0.0, 0),
        ("1e", 1.0, 1),
    ],
)
def test_strtod_prefix(text, value, end):
    assert c_strtod_prefix(text) == (value, end)
    assert c_atof(text) == value


def test_strtod_nan():
    assert math.isnan(c_atof("nan(123)"))


def test_mosflm_matrix():
    m = read_mosflm_matrix(golden("inputs", "A.mat"))
    assert m.tolist() == A_MAT


def test_mosflm_matrix_ignores_trailer(tmp_path):
    path = tmp_path / "m.mat"
    path.write_text("1 2 3 4\n5 6\n7 8 9\n 0.0 0.0 0.0\n100 100 100 90 90 90\n")
    assert read_mosflm_matrix(path).tolist() == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]


@pytest.mark.parametrize(
    ("content", "line"),
    [("1 2 3\n4 5 6\n7 8\n", 3), ("1 2 3\n4 x 6\n7 8 9\n", 2), ("", 1)],
)
def test_mosflm_matrix_malformed(tmp_path, content, line):
    path = tmp_path / "bad.mat"
    path.write_text(content)
    with pytest.raises(InputFileError, match=rf"bad\.mat, line {line}\b"):
        read_mosflm_matrix(path)


@pytest.mark.parametrize(("case", "scale"), [("cubic_outputs", 2.53538), ("cubic_scale_adc", 0.5)])
def test_pgm_matches_golden(case, scale, tmp_path):
    folder = golden(case)
    image = np.fromfile(folder / "float.bin", dtype="<f4").reshape(64, 64)
    out = tmp_path / "image.pgm"
    write_pgm(out, image, scale)
    assert out.read_bytes() == (folder / "image.pgm").read_bytes()


def test_pgm_roi_clip_and_truncation():
    image = np.array([[1.9, 300.0, -1.0], [np.nan, 254.99, 7.0]], dtype=np.float32)
    blob = pgm_bytes(image, 1.0, roi=(0, 1, 0, 1))
    head = b"P5\n3 2\n# pixels scaled by 1\n255\n"
    assert blob.startswith(head)
    assert list(blob[len(head) :]) == [1, 255, 0, 0, 254, 0]
    assert list(pgm_bytes(image, 1.0)[len(head) :]) == [1, 255, 255, 0, 254, 7]
    assert pgm_bytes(image.ravel(), 1.0, fpixels=3) == pgm_bytes(image, 1.0)


def test_float_image_roundtrip(tmp_path):
    image = np.linspace(-1, 1, 12, dtype=np.float64).reshape(3, 4)
    path = tmp_path / "f.bin"
    write_float_image(path, image)
    assert path.stat().st_size == 12 * 4
    back = read_float_image(path, 4, 3)
    assert back.dtype == np.float32 and back.shape == (3, 4)
    assert np.array_equal(back, image.astype(np.float32))
    with pytest.raises(InputFileError, match="f.bin"):
        read_float_image(path, 5, 3)
    with pytest.raises(InputFileError, match="nofile"):
        read_float_image(tmp_path / "nofile", 1, 1)
    with pytest.raises(OutputFileError):
        write_float_image(tmp_path / "no" / "f.bin", image)


def test_float_image_golden_roundtrip(tmp_path):
    src = golden("cubic_outputs", "float.bin")
    image = read_float_image(src, 64, 64)
    out = tmp_path / "float.bin"
    write_float_image(out, image)
    assert out.read_bytes() == src.read_bytes()
