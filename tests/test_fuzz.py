"""Property-based fuzzing of every input parser and of the flag parser.

Whatever the bytes of an HKL, Fdump, matrix, source, stol or SMV file, and
whatever the tokens of a command line, nbnumba gives a result or raises one
:class:`~nbnumba.errors.NbnumbaError` subclass: never another exception, a
hang or unbounded memory.  The examples are few (a few seconds in all);
the ``slow`` versions run many more.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nbnumba.errors import NbnumbaError
from nbnumba.io.hkl import HKLGrid, read_fdump, read_hkl
from nbnumba.io.matrix import read_mosflm_matrix
from nbnumba.io.smv import read_smv, smv_value
from nbnumba.io.textcols import check_numeric_columns, read_text_columns

QUICK = settings(max_examples=40, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture],
                 derandomize=True)
LONG = settings(max_examples=300, deadline=5000, suppress_health_check=[HealthCheck.function_scoped_fixture])

# a bound on every table the fuzzed files may ask for: refusing is fine, swapping is not
MEMORY_LIMIT = "256M"

NUMBER_TEXT = st.one_of(
    st.integers(-5, 5).map(str),
    st.integers(-(2**40), 2**40).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["nan", "inf", "-inf", "1e999", "0x1p3", "1.5", ".5", "-0", "+3", "1e", "e5", "--1", "."]),
)
SEPARATORS = st.sampled_from([" ", "  ", "\t", "\n", "\r\n", ",", ";", ":", "!", "\v", "\f", "\0"])
TEXT_TOKEN = st.one_of(NUMBER_TEXT, st.text(alphabet="abcxyz#-+.eE0123456789", min_size=1, max_size=6))


@st.composite
def number_files(draw, columns=4, max_lines=12):
    """Text built from numbers and junk, mostly with `columns` fields per line."""
    lines = []
    for _ in range(draw(st.integers(0, max_lines))):
        n = draw(st.one_of(st.just(columns), st.integers(0, columns + 3)))
        fields = draw(st.lists(st.one_of(NUMBER_TEXT, TEXT_TOKEN) if draw(st.booleans()) else NUMBER_TEXT,
                               min_size=n, max_size=n))
        sep = draw(SEPARATORS)
        lines.append((sep if sep not in "\n\r\n" else " ").join(fields))
    end = draw(st.sampled_from(["\n", "\r\n", ""]))
    return ("\n".join(lines) + end).encode("latin-1", errors="replace")


RAW_BYTES = st.binary(max_size=600)


def _call(fn, *args, **kwargs):
    """Result or a clean nbnumba error; anything else fails the property."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return fn(*args, **kwargs)
        except NbnumbaError as exc:
            text = str(exc)
            assert text and "\n" not in text, repr(text)
            return None


@pytest.fixture
def fuzz_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NBNUMBA_MEMORY_LIMIT", MEMORY_LIMIT)
    return tmp_path


def _write(folder, name, data: bytes):
    path = folder / name
    path.write_bytes(data)
    return path


# ---------------------------------------------------------------- HKL text

def _check_hkl(folder, data):
    path = _write(folder, "f.hkl", data)
    for mode in ("spec", "parity"):
        grid = _call(read_hkl, path, default_F=1.0, mode=mode)
        if grid is not None:
            assert isinstance(grid, HKLGrid)
            assert grid.F.shape == (grid.h_range + 1, grid.k_range + 1, grid.l_range + 1)
            assert np.isfinite(grid.F).all()


@QUICK
@given(data=st.one_of(number_files(4), number_files(5), number_files(6), RAW_BYTES))
def test_fuzz_hkl(fuzz_dir, data):
    _check_hkl(fuzz_dir, data)


@pytest.mark.slow
@LONG
@given(data=st.one_of(number_files(4, 40), number_files(5, 40), number_files(6), RAW_BYTES))
def test_fuzz_hkl_long(fuzz_dir, data):
    _check_hkl(fuzz_dir, data)


# ---------------------------------------------------------------- Fdump.bin

@st.composite
def fdump_files(draw):
    ranges = draw(st.lists(st.integers(-3, 3), min_size=6, max_size=6))
    if draw(st.booleans()):
        ranges = draw(st.lists(st.integers(-(2**31), 2**31 - 1), min_size=6, max_size=6))
    head = " ".join(map(str, ranges)).encode() + draw(st.sampled_from([b"\n\f", b"\n", b" \n\f ", b""]))
    body = draw(st.binary(max_size=800))
    if draw(st.booleans()):
        count = 1
        for lo, hi in zip(ranges[::2], ranges[1::2]):
            count *= max(hi - lo + 2, 0)
        if 0 < count < 400:
            values = draw(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=count, max_size=count))
            body = np.array(values, dtype="<f8").tobytes()
    return head + body


def _check_fdump(folder, data):
    path = _write(folder, "Fdump.bin", data)
    for quirk in (True, False):
        grid = _call(read_fdump, path, c_whitespace_quirk=quirk)
        if grid is not None:
            assert grid.F.shape == (grid.h_range + 1, grid.k_range + 1, grid.l_range + 1)
            assert np.isfinite(grid.F).all()


@QUICK
@given(data=st.one_of(fdump_files(), RAW_BYTES))
def test_fuzz_fdump(fuzz_dir, data):
    _check_fdump(fuzz_dir, data)


@pytest.mark.slow
@LONG
@given(data=st.one_of(fdump_files(), RAW_BYTES))
def test_fuzz_fdump_long(fuzz_dir, data):
    _check_fdump(fuzz_dir, data)


# ---------------------------------------------------------------- matrix, source, stol

def _check_columns(folder, data):
    path = _write(folder, "m.txt", data)
    matrix = _call(read_mosflm_matrix, path)
    if matrix is not None:
        assert matrix.shape == (3, 3) and np.isfinite(matrix).all()
    for ncols, what in ((5, "source file"), (2, "stol file")):
        table = _call(read_text_columns, path, ncols)
        if table is not None:
            assert table.shape[0] == ncols and not np.isinf(table).any()
        _call(check_numeric_columns, path, ncols, what)


@QUICK
@given(data=st.one_of(number_files(3, 6), number_files(5), number_files(2), RAW_BYTES))
def test_fuzz_matrix_source_stol(fuzz_dir, data):
    _check_columns(fuzz_dir, data)


@pytest.mark.slow
@LONG
@given(data=st.one_of(number_files(3, 6), number_files(5, 30), number_files(2, 30), RAW_BYTES))
def test_fuzz_matrix_source_stol_long(fuzz_dir, data):
    _check_columns(fuzz_dir, data)


# ---------------------------------------------------------------- SMV header

SMV_KEYS = st.sampled_from(["HEADER_BYTES", "SIZE1", "SIZE2", "DETECTOR_DIMENSIONS", "BYTE_ORDER", "PIXEL_SIZE",
                            "DISTANCE", "WAVELENGTH", "BEAM_CENTER_X", "ORGX", "TYPE", ""])
SMV_VALUES = st.one_of(NUMBER_TEXT, st.sampled_from(["512", "1024", "4", "8", "0", "-1", "big_endian",
                                                     "little_endian", "unsigned_short", "100000"]))


@st.composite
def smv_files(draw):
    entries = draw(st.lists(st.tuples(SMV_KEYS, SMV_VALUES), max_size=8))
    head = "{\nHEADER_BYTES=" + draw(SMV_VALUES) + ";\n"
    head += "".join(f"{k}={v};\n" for k, v in entries) + "}\f"
    raw = head.encode("latin-1", errors="replace")
    pad = draw(st.integers(0, 600))
    return raw.ljust(max(len(raw), pad), b" ") + draw(st.binary(max_size=300))


def _check_smv(folder, data):
    path = _write(folder, "x.img", data)
    out = _call(read_smv, path)
    if out is not None:
        text, header, pixels = out
        assert isinstance(text, str) and isinstance(header, dict)
        assert pixels.dtype == np.uint16 and pixels.ndim == 2
        for key in ("SIZE1", "PIXEL_SIZE", "DISTANCE", "ORGX"):
            value = smv_value(text, key)
            assert isinstance(value, float)


@QUICK
@given(data=st.one_of(smv_files(), RAW_BYTES))
def test_fuzz_smv(fuzz_dir, data):
    _check_smv(fuzz_dir, data)


@pytest.mark.slow
@LONG
@given(data=st.one_of(smv_files(), RAW_BYTES))
def test_fuzz_smv_long(fuzz_dir, data):
    _check_smv(fuzz_dir, data)


# ---------------------------------------------------------------- the flag parser

def _flag_spellings():
    from nbnumba.flags import FLAGS

    names = []
    for flag in FLAGS:
        names.append(flag.name)
        names.extend(flag.aliases)
    return sorted(set(names))


FLAG_NAMES = st.sampled_from(_flag_spellings())
VALUE_TOKENS = st.one_of(
    NUMBER_TEXT,
    st.sampled_from(["random", "beam", "sample", "spec", "parity", "cpu", "cuda", "float32", "float64", "x",
                     "", "-", "-1", "0", "1", "2", "1000000000", "99999999999999999999", "missing.hkl"]),
    st.text(alphabet="abc-_.0123456789 ", max_size=8),
)
ARGV = st.lists(st.one_of(FLAG_NAMES, FLAG_NAMES, VALUE_TOKENS), max_size=14)


def _check_argv(argv):
    from nbnumba.cargs import config_from_args
    from nbnumba.validate import check_config

    for mode in ("spec", "parity", None):
        out = _call(config_from_args, list(argv), mode=mode, load_files=False)
        if out is not None:
            cfg, _run = out
            _call(check_config, cfg)


@QUICK
@given(argv=ARGV)
def test_fuzz_flag_parser(fuzz_dir, argv):
    _check_argv(argv)


@pytest.mark.slow
@LONG
@given(argv=ARGV)
def test_fuzz_flag_parser_long(fuzz_dir, argv):
    _check_argv(argv)


@QUICK
@given(argv=ARGV)
def test_fuzz_flag_parser_reads_files(fuzz_dir, monkeypatch, argv):
    """With file reading on, in an empty folder: only missing-file or other clean errors."""
    from nbnumba.cargs import config_from_args

    monkeypatch.chdir(fuzz_dir)
    _call(config_from_args, [a for a in argv if not a.startswith("/")], load_files=True)
