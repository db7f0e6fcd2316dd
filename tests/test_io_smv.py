"""SMV writing/reading against the C program's files."""

from __future__ import annotations

import gzip
import math
import os
from pathlib import Path

import numpy as np
import pytest

from nbnumba.errors import InputFileError, NbnumbaError, OutputFileError
from nbnumba.io.smv import SMV_HEADER_BYTES, SMVHeader, c_g, format_smv_header, read_smv, smv_value, write_smv

GOLDEN = Path(__file__).resolve().parents[1].parent / "shared" / "golden"

# Header keyword -> SMVHeader field, in the order C prints them.
KEY_TO_FIELD = {
    "PIXEL_SIZE": "pixel_size",
    "DISTANCE": "distance",
    "WAVELENGTH": "wavelength",
    "BEAM_CENTER_X": "beam_center_x",
    "BEAM_CENTER_Y": "beam_center_y",
    "ADXV_CENTER_X": "adxv_center_x",
    "ADXV_CENTER_Y": "adxv_center_y",
    "MOSFLM_CENTER_X": "mosflm_center_x",
    "MOSFLM_CENTER_Y": "mosflm_center_y",
    "DENZO_X_BEAM": "denzo_x_beam",
    "DENZO_Y_BEAM": "denzo_y_beam",
    "XDS_ORGX": "xds_orgx",
    "XDS_ORGY": "xds_orgy",
    "CLOSE_DISTANCE": "close_distance",
    "PHI": "phi",
    "OSC_START": "osc_start",
    "OSC_RANGE": "osc_range",
    "TWOTHETA": "twotheta",
}


def golden_root() -> Path:
    if not GOLDEN.is_dir():
        pytest.skip("golden corpus ../shared/golden not found")
    return GOLDEN


def golden_smv_files() -> list[Path]:
    if not GOLDEN.is_dir():
        return []
    return sorted(p for p in GOLDEN.glob("*/*.img") if p.parent.name != "inputs")


def header_from_dict(d: dict[str, str]) -> SMVHeader:
    kw = {field: float(d[key]) for key, field in KEY_TO_FIELD.items()}
    kw["dials_origin"] = tuple(float(v) for v in d["DIALS_ORIGIN"].split(","))
    return SMVHeader(**kw)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.1, "0.1"),
        (100.0, "100"),
        (-0.0, "-0"),
        (1e6, "1e+06"),
        (123456.5, "123456"),
        (1234567.0, "1.23457e+06"),
        (1e-5, "1e-05"),
        (0.0001, "0.0001"),
        (57.29577951308232, "57.2958"),
        (math.inf, "inf"),
        (-math.inf, "-inf"),
        (math.nan, "nan"),
        (-math.nan, "-nan"),
        (2.5e-300, "2.5e-300"),
    ],
)
def test_c_g_matches_glibc(value, text):
    assert c_g(value) == text


def test_golden_smv_files_found():
    golden_root()
    assert len(golden_smv_files()) > 10


@pytest.mark.parametrize("path", golden_smv_files(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_write_smv_reproduces_golden_bytes(path, tmp_path):
    text, d, data = read_smv(path)
    assert data.shape == (int(d["SIZE2"]), int(d["SIZE1"]))
    out = tmp_path / "out.img"
    write_smv(out, data, header_from_dict(d))
    assert out.read_bytes() == path.read_bytes()


def test_overlong_header_written_unpadded_like_c(tmp_path):
    src = golden_root() / "pilatus_roi" / "intimage.img.gz"
    raw = gzip.decompress(src.read_bytes())
    end = raw.index(b"}\f") + 2
    assert end > SMV_HEADER_BYTES
    text = raw[:end].decode("ascii")
    d = dict(line.rstrip(";").split("=", 1) for line in text.strip("{}\f\n").splitlines() if "=" in line)
    data = np.frombuffer(raw, dtype="<u2", offset=end).reshape(int(d["SIZE2"]), int(d["SIZE1"]))
    out = tmp_path / "big.img"
    with pytest.warns(UserWarning, match="unpadded"):
        write_smv(out, data, header_from_dict(d))
    assert out.read_bytes() == raw


def test_header_layout_and_dict_input():
    head = format_smv_header({"size1": 3, "size2": 2, "pixel_size": 0.172, "dials_origin": (1, -2.5, 300)})
    assert len(head) == SMV_HEADER_BYTES
    text = head.decode("ascii")
    assert text.startswith("{\nHEADER_BYTES=512;\nDIM=2;\nBYTE_ORDER=little_endian;\nTYPE=unsigned_short;\nSIZE1=3;\n")
    assert "\nDIALS_ORIGIN=1,-2.5,300\nXDS_ORGX=0;\n" in text
    assert text.rstrip(" ").endswith("DETECTOR_SN=000;\nBEAMLINE=fake;\n}\f")
    with pytest.raises(TypeError):
        format_smv_header({"size1": 3, "size2": 2, "bogus": 1})
    with pytest.raises(ValueError):
        format_smv_header({"pixel_size": 0.1})


def test_roundtrip_and_fabio(tmp_path):
    import fabio
    data = (np.arange(5 * 7, dtype=np.uint32) * 2003 % 65536).astype(np.uint16).reshape(5, 7)
    path = tmp_path / "x.img"
    write_smv(path, data, SMVHeader(pixel_size=0.1, distance=100, wavelength=1.0))
    text, d, back = read_smv(path)
    assert np.array_equal(back, data)
    assert d["SIZE1"] == "7" and d["SIZE2"] == "5" and d["DIALS_ORIGIN"] == "0,0,0"
    img = fabio.open(str(path))
    assert np.array_equal(np.asarray(img.data), data)
    assert [p.name for p in tmp_path.iterdir()] == ["x.img"]


def test_write_smv_shape_checks(tmp_path):
    with pytest.raises(ValueError):
        write_smv(tmp_path / "a.img", np.zeros(4, np.uint16), SMVHeader())
    with pytest.raises(ValueError):
        write_smv(tmp_path / "a.img", np.zeros((2, 3), np.uint16), SMVHeader(size1=2, size2=3))


def test_write_into_missing_directory_raises(tmp_path):
    with pytest.raises(OutputFileError, match="nodir"):
        write_smv(tmp_path / "nodir" / "a.img", np.zeros((2, 2), np.uint16), SMVHeader())


def test_smv_value_emulates_valueof():
    header = "{\nHEADER_BYTES=512;\nDISTANCE=100;\nXDS_ORGX=12.5;\nDISTANCE = 250.5mm;\nPHI\n}"
    assert smv_value(header, "DISTANCE") == 250.5
    assert smv_value(header, "ORGX") == 12.5
    assert math.isnan(smv_value(header, "TWOTHETA"))
    assert smv_value(header + "NOEQ", "NOEQ") == 0.0
    assert smv_value("A=x;", "A") == 0.0


def _custom_smv(header_bytes: int, order: str, data: np.ndarray, extra: str = "") -> bytes:
    text = (
        f"{{\nHEADER_BYTES={header_bytes:5d};\nDIM=2;\nBYTE_ORDER={order};\nTYPE=unsigned_short;\n"
        f"SIZE1={data.shape[1]};\nSIZE2={data.shape[0]};\n{extra}}}\f"
    ).encode()
    dtype = ">u2" if order == "big_endian" else "<u2"
    return text.ljust(header_bytes, b" ") + data.astype(dtype).tobytes()


def test_read_smv_big_header_and_byte_swap(tmp_path):
    data = np.array([[1, 2, 258], [65535, 0, 4096]], dtype=np.uint16)
    path = tmp_path / "big.img"
    path.write_bytes(_custom_smv(1024, "big_endian", data, extra="X" * 600 + "=1;\nDISTANCE=77;\n"))
    text, d, back = read_smv(path)
    assert np.array_equal(back, data)
    assert smv_value(text, "DISTANCE") == 77.0
    _, _, raw = read_smv(path, swap_bytes=False)
    assert np.array_equal(raw, data.byteswap())


def test_read_smv_detector_dimensions(tmp_path):
    data = np.arange(9, dtype=np.uint16).reshape(3, 3)
    blob = _custom_smv(512, "little_endian", data)
    head = blob[:512].replace(b"SIZE1=3;\nSIZE2=3;", b"DETECTOR_DIMENSIONS=3;")[:512]
    blob = head + blob[512:]
    path = tmp_path / "dd.img"
    path.write_bytes(blob)
    assert np.array_equal(read_smv(path)[2], data)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"P5\n3 3\n255\n" + bytes(600),
        b"{\nHEADER_BYTES=512;\nSIZE1=4;\nSIZE2=4;\n}".ljust(512, b" ") + bytes(10),
        b"{\nHEADER_BYTES=512;\nSIZE2=4;\n}".ljust(512, b" ") + bytes(32),
        b"{\nHEADER_BYTES=2048;\nSIZE1=1;\nSIZE2=1;\n}".ljust(600, b" "),
    ],
    ids=["empty", "not-smv", "truncated-data", "no-size1", "truncated-header"],
)
def test_read_smv_malformed(tmp_path, content):
    path = tmp_path / "bad.img"
    path.write_bytes(content)
    with pytest.raises(InputFileError, match="bad.img") as info:
        read_smv(path)
    assert isinstance(info.value, NbnumbaError)


def test_read_smv_missing_file(tmp_path):
    with pytest.raises(InputFileError, match="nothere.img"):
        read_smv(tmp_path / "nothere.img")


def test_written_file_permissions_follow_umask(tmp_path):
    path = tmp_path / "p.img"
    write_smv(path, np.zeros((1, 1), np.uint16), SMVHeader())
    mask = os.umask(0)
    os.umask(mask)
    assert (path.stat().st_mode & 0o777) == (0o666 & ~mask)


def test_smv_chunks_are_the_written_bytes(tmp_path):
    from nbnumba.io.smv import smv_chunks

    data = np.arange(12, dtype=np.uint16).reshape(3, 4)
    header = SMVHeader(pixel_size=0.1, distance=100.0, wavelength=1.0)
    write_smv(tmp_path / "a.img", data, header)
    head, body = smv_chunks(data, header)
    assert len(head) == SMV_HEADER_BYTES
    assert head + bytes(body) == (tmp_path / "a.img").read_bytes()


def test_smv_writer_is_registered():
    from nbnumba.io.frame import Frame
    from nbnumba.io.registry import get_writer

    image = np.array([[0.0, 2.0], [1.0, 4.0]], dtype=np.float32)
    frame = Frame(image=image, header={"distance": 100.0}, roi=None, rows=slice(0, 2), cols=slice(0, 2),
                  max_I=4.0, rmsd=1.0)
    writer = get_writer("smv")
    assert writer.extension == ".img"
    head, body = writer(frame)
    assert b"SIZE1=2;\nSIZE2=2;" in head
    assert np.frombuffer(bytes(body), dtype="<u2").tolist() == [40, 27540, 13790, 55040]
