"""miniCBF, NeXus/NXmx, TIFF and EDF writers, read back by readers nobody on the project wrote."""

from __future__ import annotations

import math

import fabio
import numpy as np
import pytest

from nbnumba.errors import OutputFileError
from nbnumba.io.cbf import write_cbf
from nbnumba.io.floatformats import write_edf, write_tiff
from nbnumba.io.geometry import FrameGeometry
from nbnumba.io.nexus import write_nxmx


def _info(**kw):
    # MOSFLM-like axes, detector 100 mm away, beam 3.1 mm / 2.2 mm from the first pixel's corner
    base = dict(fpixels=7, spixels=5, pixel_size=172e-6, distance=0.1, close_distance=0.1,
                beam_center=(3.1e-3, 2.2e-3), wavelength=0.9795e-10, exposure=0.25,
                fdet=np.array([0.0, 0.0, 1.0]), sdet=np.array([0.0, -1.0, 0.0]),
                odet=np.array([1.0, 0.0, 0.0]), pix0=np.array([0.1, 2.2e-3, -3.1e-3]),
                beam=np.array([1.0, 0.0, 0.0]), polar=np.array([0.0, 0.0, 1.0]),
                spindle=np.array([0.0, 0.0, 1.0]), phi0=math.radians(12.5), osc=math.radians(0.1),
                thickness=450e-6)
    base.update(kw)
    return FrameGeometry(**base)


def _counts(info, seed=0, big=False):
    rng = np.random.default_rng(seed)
    hi = 900000 if big else 1000
    return rng.integers(0, hi, size=(info.spixels, info.fpixels)).astype(np.int32)


def _pilatus_header(text):
    out = {}
    for line in text.replace("\r", "").split("\n"):
        if line.startswith("# "):
            key, _, rest = line[2:].partition(" ")
            out[key.rstrip(":")] = rest
    return out


def test_cbf_counts_and_header_with_fabio(tmp_path):
    info = _info()
    counts = _counts(info, big=True)  # beyond 16 bits: no clipping
    write_cbf(tmp_path / "f.cbf", counts, info)
    img = fabio.open(str(tmp_path / "f.cbf"))
    assert img.data.dtype == np.int32
    np.testing.assert_array_equal(img.data, counts)
    assert "BYTE_OFFSET" in img.header["conversions"].upper()
    hdr = _pilatus_header(img.header["_array_data.header_contents"])
    assert hdr["Pixel_size"] == "0.000172 m x 0.000172 m"
    assert float(hdr["Exposure_time"].split()[0]) == pytest.approx(0.25)
    assert float(hdr["Wavelength"].split()[0]) == pytest.approx(0.9795)
    assert float(hdr["Detector_distance"].split()[0]) == pytest.approx(0.1)
    bx, by = (float(v) for v in hdr["Beam_xy"].split(")")[0].strip("(").split(","))
    assert (bx, by) == pytest.approx((3.1e-3 / 172e-6, 2.2e-3 / 172e-6), abs=0.006)
    assert float(hdr["Start_angle"].split()[0]) == pytest.approx(12.5)
    assert float(hdr["Angle_increment"].split()[0]) == pytest.approx(0.1)
    assert float(hdr["Phi"].split()[0]) == pytest.approx(12.5)
    assert hdr["Oscillation_axis"] == "X, CW"  # spindle along the fast axis


def test_cbf_with_pycbf(tmp_path):
    import pycbf
    info = _info()
    counts = _counts(info, seed=4)
    write_cbf(tmp_path / "f.cbf", counts, info)
    h = pycbf.cbf_handle_struct()
    h.read_file(str(tmp_path / "f.cbf").encode(), pycbf.MSG_DIGEST)
    h.rewind_datablock()
    h.find_category(b"array_data")
    h.find_column(b"data")
    params = h.get_integerarrayparameters_wdims_fs()
    # compression, binary id, element size, signed, unsigned, elements, ..., fast, slow
    assert params[0] == pycbf.CBF_BYTE_OFFSET
    assert params[5] == counts.size and (params[9], params[10]) == (info.fpixels, info.spixels)
    data = np.frombuffer(h.get_integerarray_as_string(), dtype=np.int32).reshape(info.spixels, info.fpixels)
    np.testing.assert_array_equal(data, counts)
    h.find_column(b"header_contents")
    assert b"# Beam_xy (18.02, 12.79) pixels" in h.get_value()


def test_cbf_rejects_what_it_cannot_hold(tmp_path):
    info = _info()
    with pytest.raises(OutputFileError, match="detector 5 x 7"):
        write_cbf(tmp_path / "f.cbf", np.zeros((3, 3), np.int32), info)
    with pytest.raises(OutputFileError, match="32-bit"):
        write_cbf(tmp_path / "f.cbf", np.full((5, 7), 2**33, np.int64), info)
    assert not (tmp_path / "f.cbf").exists()


@pytest.mark.parametrize("writer, ext", [(write_tiff, "tif"), (write_edf, "edf")])
def test_float_formats_keep_every_bit(tmp_path, writer, ext):
    info = _info()
    image = (np.random.default_rng(1).random((5, 7)) * 1e4).astype(np.float32)
    image[0, 0] = 1.2345678e-30  # tiny and huge values survive unchanged
    image[1, 1] = 3.4e38
    writer(tmp_path / f"f.{ext}", image, info)
    back = fabio.open(str(tmp_path / f"f.{ext}"))
    assert back.data.dtype == np.float32
    np.testing.assert_array_equal(back.data.view(np.uint32), image.view(np.uint32))
    if ext == "edf":
        assert float(back.header["PSize_1"]) == pytest.approx(172e-6)
        assert float(back.header["Center_1"]) == pytest.approx(3.1e-3 / 172e-6)
        assert float(back.header["WaveLength"]) == pytest.approx(0.9795e-10)


def _resolve_chain(f, path):
    """Apply an NXtransformations chain to the origin (translations only; the detector's)."""
    pos = np.zeros(3)
    while path != ".":
        ds = f[path]
        assert ds.attrs["transformation_type"] == "translation"
        vec = np.asarray(ds.attrs["vector"], float)
        off = np.asarray(ds.attrs.get("offset", np.zeros(3)), float)
        pos += off + float(np.asarray(ds[()]).reshape(-1)[0]) * vec
        path = ds.attrs["depends_on"]
        if isinstance(path, bytes):
            path = path.decode()
        if not path.startswith("/") and path != ".":
            path = ds.parent.name + "/" + path
    return pos


def test_nxmx_structure_and_geometry_with_h5py(tmp_path):
    import h5py
    info = _info()
    frames = np.stack([_counts(info, seed=s) for s in range(3)])
    write_nxmx(tmp_path / "scan.h5", frames, info)
    with h5py.File(tmp_path / "scan.h5", "r") as f:
        assert f["/entry"].attrs["NX_class"] == "NXentry"
        assert f["/entry/definition"][()].decode() == "NXmx"
        np.testing.assert_array_equal(f["/entry/data/data"][()], frames)
        assert f["/entry/data"].attrs["signal"] == "data"
        wl = f["/entry/instrument/beam/incident_wavelength"]
        assert wl[()] == pytest.approx(0.9795) and wl.attrs["units"] == "angstrom"
        det = f["/entry/instrument/detector"]
        assert det.attrs["NX_class"] == "NXdetector"
        assert det["x_pixel_size"][()] == det["y_pixel_size"][()] == pytest.approx(172e-6)
        assert det["distance"][()] == pytest.approx(0.1)
        bx, by = det["beam_center_x"][()], det["beam_center_y"][()]
        assert (bx, by) == pytest.approx((3.1e-3 / 172e-6, 2.2e-3 / 172e-6))
        # the chain puts the first pixel's corner, and the beam centre, where the run had them
        fast = f["/entry/instrument/detector/module/fast_pixel_direction"]
        slow = f["/entry/instrument/detector/module/slow_pixel_direction"]
        corner = _resolve_chain(f, fast.attrs["depends_on"])
        fvec = np.asarray(fast.attrs["vector"], float) * fast[()][0]
        svec = np.asarray(slow.attrs["vector"], float) * slow[()][0]
        hit = corner + bx * fvec + by * svec
        # McStas z is the beam: the beam centre lies on the z axis, at the distance
        np.testing.assert_allclose(hit, [0.0, 0.0, 0.1], atol=1e-12)
        omega = f["/entry/sample/transformations/omega"]
        assert omega.attrs["transformation_type"] == "rotation"
        np.testing.assert_allclose(omega[()], [12.5, 12.6, 12.7])
        assert f["/entry/sample/depends_on"][()].decode() == "/entry/sample/transformations/omega"
        # the spindle (lab z = polarisation direction) is McStas x
        np.testing.assert_allclose(omega.attrs["vector"], [1.0, 0.0, 0.0], atol=1e-12)


def test_nxmx_rejects_mismatched_frames(tmp_path):
    info = _info()
    with pytest.raises(OutputFileError, match="detector 5 x 7"):
        write_nxmx(tmp_path / "x.h5", np.zeros((2, 4, 4), np.int32), info)
    with pytest.raises(OutputFileError, match="2 angles for 3 frames"):
        write_nxmx(tmp_path / "x.h5", np.zeros((3, 5, 7), np.int32), info, angles=[0.0, 0.1])


# ---------------------------------------------------------------- through the nanoBragg command
RUN = ("-default_F 100 -cell 70 80 90 75 85 95 -lambda 1.2 -N 4 -detpixels_f 40 -detpixels_s 32 -pixel 0.3 "
       "-distance 80 -Xbeam 5.1 -Ybeam 6.3 -phi 3 -osc 0.5 -seed 5 -misset 10 20 30 -exposure 0.5")


def _run(tmp_path, extra=()):
    import contextlib
    import io

    from nbnumba.runner import run_nanobragg

    args = RUN.split() + ["-floatfile", str(tmp_path / "f.bin"), "-intfile", str(tmp_path / "i.img"),
                          "-noisefile", str(tmp_path / "n.img"), "-nopgm", "-cbffile", str(tmp_path / "f.cbf"),
                          "-h5file", str(tmp_path / "f.h5"), "-tifffile", str(tmp_path / "f.tif"),
                          "-edffile", str(tmp_path / "f.edf"), "-pngfile", str(tmp_path / "f.png"), *extra]
    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert run_nanobragg(args) == 0
    return out.getvalue()


def test_every_format_of_one_run_read_back(tmp_path):
    import h5py
    from PIL import Image

    text = _run(tmp_path)
    assert "writing " + str(tmp_path / "f.cbf") + " as a Pilatus-style miniCBF" in text
    floats = np.fromfile(tmp_path / "f.bin", dtype="<f4").reshape(32, 40)
    noise = fabio.open(str(tmp_path / "n.img")).data.astype(np.int64)
    cbf = fabio.open(str(tmp_path / "f.cbf"))
    # the same Poisson deviates as the noise image, without its ADC offset of 40 and its 16-bit clip
    assert cbf.data.shape == (32, 40) and cbf.data.sum() > 100
    np.testing.assert_array_equal(cbf.data, noise - 40)
    hdr = _pilatus_header(cbf.header["_array_data.header_contents"])
    # MOSFLM convention: Xbeam/Ybeam are the slow/fast beam position (+ half a pixel)
    assert hdr["Beam_xy"] == f"({(6.3 + 0.15) / 0.3:.2f}, {(5.1 + 0.15) / 0.3:.2f}) pixels"
    assert hdr["Wavelength"] == "1.200000 A" and hdr["Detector_distance"] == "0.080000 m"
    assert hdr["Start_angle"] == "3.0000 deg." and hdr["Angle_increment"] == "0.5000 deg."
    assert hdr["Exposure_time"] == "0.5000000 s"
    for ext in ("tif", "edf"):
        back = fabio.open(str(tmp_path / f"f.{ext}")).data
        np.testing.assert_array_equal(back.view(np.uint32), floats.view(np.uint32))
    with h5py.File(tmp_path / "f.h5", "r") as f:
        np.testing.assert_array_equal(f["/entry/data/data"][0], cbf.data)
        det = f["/entry/instrument/detector"]
        fast = f["/entry/instrument/detector/module/fast_pixel_direction"]
        slow = f["/entry/instrument/detector/module/slow_pixel_direction"]
        corner = _resolve_chain(f, fast.attrs["depends_on"])
        hit = (corner + det["beam_center_x"][()] * np.asarray(fast.attrs["vector"]) * fast[()][0]
               + det["beam_center_y"][()] * np.asarray(slow.attrs["vector"]) * slow[()][0])
        np.testing.assert_allclose(hit, [0.0, 0.0, 0.08], atol=1e-12)
        np.testing.assert_allclose(f["/entry/sample/transformations/omega"][()], [3.0])
    png = Image.open(tmp_path / "f.png")
    assert png.size == (40, 32) and png.mode == "L"
    assert png.text["nbnumba_scale"] == "sqrt" and float(png.text["nbnumba_white_level"]) > 0
    grey = np.asarray(png, dtype=float)
    # dark spots on white: the brightest pixel of the image is the darkest of the preview
    assert grey.reshape(-1)[np.argmax(floats)] == grey.min() == 0 and grey.max() >= 250


def test_counts_without_noise_are_the_rounded_photons(tmp_path):
    _run(tmp_path, ["-nonoise", "-png_scale", "log"])
    floats = np.fromfile(tmp_path / "f.bin", dtype="<f4").reshape(32, 40)
    counts = fabio.open(str(tmp_path / "f.cbf")).data
    np.testing.assert_array_equal(counts, np.floor(floats.astype(np.float64) + 0.5).astype(np.int32))
    assert not (tmp_path / "n.img").exists()


def test_scan_writes_frames_in_every_format_and_one_nexus_sweep(tmp_path):
    import h5py
    from click.testing import CliRunner

    from cli.main import nbnumba

    args = ["scan", "--frames", "3", "--phi-step", "0.5", "--out", str(tmp_path / "s"), "--prefix", "rot",
            "--format", "cbf", "--format", "nexus", "--format", "tiff", "--", *RUN.split()]
    res = CliRunner().invoke(nbnumba, args)
    assert res.exit_code == 0, res.output
    names = sorted(p.name for p in (tmp_path / "s").iterdir())
    assert names == ["rot.h5", "rot_0001.cbf", "rot_0001.tif", "rot_0002.cbf", "rot_0002.tif", "rot_0003.cbf",
                     "rot_0003.tif", "rot_scan.json"]
    cbfs = [fabio.open(str(tmp_path / "s" / f"rot_000{i}.cbf")).data for i in (1, 2, 3)]
    # each frame has its own noise (seeds one apart), the first one that of the nanoBragg command
    assert not np.array_equal(cbfs[0], cbfs[1])
    _run(tmp_path)
    np.testing.assert_array_equal(cbfs[0], fabio.open(str(tmp_path / "f.cbf")).data)
    with h5py.File(tmp_path / "s" / "rot.h5", "r") as f:
        np.testing.assert_array_equal(f["/entry/data/data"][()], np.stack(cbfs))
        np.testing.assert_allclose(f["/entry/sample/transformations/omega"][()], [3.0, 3.5, 4.0])
        assert f["/entry/sample/transformations/omega_increment_set"][()] == pytest.approx(0.5)
    # resumed: the frames are kept and the sweep is written again with the same counts
    res = CliRunner().invoke(nbnumba, args[:1] + ["--resume"] + args[1:])
    assert res.exit_code == 0, res.output
    assert res.output.count("(complete, kept)") == 3
    with h5py.File(tmp_path / "s" / "rot.h5", "r") as f:
        np.testing.assert_array_equal(f["/entry/data/data"][()], np.stack(cbfs))


def test_scan_counted_formats_need_a_seed(tmp_path):
    from nbnumba import config_from_args
    from nbnumba.errors import ConfigError
    from nbnumba.scan import phi_scan, run_scan

    cfg, _ = config_from_args(RUN.split())
    with pytest.raises(ConfigError, match="cbf, nexus format"):
        run_scan(phi_scan(cfg, 0.0, 1.0, 2), out_dir=tmp_path, formats=("cbf", "nexus"))
    with pytest.raises(ConfigError, match="unknown frame format 'jpeg'"):
        run_scan(phi_scan(cfg, 0.0, 1.0, 2), out_dir=tmp_path, formats=("jpeg",))
    assert list(tmp_path.iterdir()) == []


def test_long_smv_header_padded_in_spec_mode_c_bytes_in_parity(tmp_path, golden_dir):
    """A Pilatus-6M geometry needs a 518-byte SMV header: fabio reads spec mode's padded one."""
    import json
    import shutil

    args = json.loads((golden_dir / "pilatus_roi" / "case.json").read_text())["args"][:-2]
    i = args.index("-hkl")
    args[i:i + 2] = ["-default_F", "1"]
    i = args.index("-roi")
    args[i + 1:i + 5] = ["1100", "1115", "1000", "1015"]
    shutil.copy(golden_dir / "inputs" / "A.mat", tmp_path / "A.mat")
    from nbnumba.golden import run_command

    for mode in ("spec", "parity"):
        rc, _out, err = run_command(args + ["-intfile", f"{mode}.img", "-floatfile", f"{mode}.bin", "-nonoise"],
                                    tmp_path, mode=mode)
        assert rc == 0, err
    raw = (tmp_path / "spec.img").read_bytes()
    assert raw.startswith(b"{\nHEADER_BYTES=1024;") and len(raw) == 1024 + 2 * 2463 * 2527
    img = fabio.open(str(tmp_path / "spec.img"))
    assert img.data.shape == (2527, 2463) and int(img.header["HEADER_BYTES"]) == 1024
    floats = np.fromfile(tmp_path / "spec.bin", dtype="<f4").reshape(2527, 2463)
    assert img.data[1000:1016, 1100:1116].min() >= 40 and floats[1000:1016, 1100:1116].max() > 0
    # parity: C's bytes, the header unpadded behind a wrong HEADER_BYTES=512 (fabio cannot read it)
    raw = (tmp_path / "parity.img").read_bytes()
    assert raw.startswith(b"{\nHEADER_BYTES=512;") and len(raw) == 518 + 2 * 2463 * 2527
