"""CPU kernel vs CUDA kernel (a real GPU, or numba's simulator with NUMBA_ENABLE_CUDASIM=1).

Tiny detectors with 1-2 mm pixels so that Bragg peaks fall on them;
``tile_pixels=7`` makes the CUDA side run several tiles, each of one
partial block, so tiling cannot hide an indexing error.
"""

from __future__ import annotations

import dataclasses
import math
import shutil

import numpy as np
import pytest
from conftest import GOLDEN_DIR, cuda_simulated, triclinic_config
from tolerances import CPU_CUDA_ATOL, CPU_CUDA_RTOL, FLOAT32_VS_FLOAT64_RTOL

from nbnumba.cargs import config_from_args
from nbnumba.engine import simulate
from nbnumba.golden import compare_float, load_case, read_output, run_case
from nbnumba.runner import run_nanobragg

DEG = math.pi / 180.0
TILE = 7
TRICLINIC = ["-cell", "70", "80", "90", "75", "85", "95"]
TINY = ["-detpixels_f", "6", "-detpixels_s", "5", "-pixel", "1", "-distance", "100"]


def _args_config(argv, mode, cwd):
    """SimConfig from a nanoBragg command line, files resolved in ``cwd``."""
    import os

    old = os.getcwd()
    try:
        os.chdir(cwd)
        cfg, _run = config_from_args(list(argv), mode=mode)
    finally:
        os.chdir(old)
    return cfg


def assert_backends_agree(cfg, cuda, dtype="float64"):
    """Render on both backends; compare images and statistics; return the CPU result."""
    cpu_res = simulate(cfg, backend="cpu", dtype=dtype)
    gpu_res = simulate(cfg, backend=cuda, dtype=dtype, tile_pixels=TILE)
    assert cpu_res.image.shape == gpu_res.image.shape
    assert cpu_res.image.max() > 0.0, "nothing rendered: the comparison would be vacuous"
    np.testing.assert_allclose(gpu_res.image, cpu_res.image, rtol=CPU_CUDA_RTOL, atol=CPU_CUDA_ATOL)
    a, b = cpu_res.stats, gpu_res.stats
    assert a.rendered == b.rendered
    for field in ("max_I", "mean", "rms", "rmsd", "omega_sum"):
        assert getattr(b, field) == pytest.approx(getattr(a, field), rel=CPU_CUDA_RTOL), field
    return cpu_res


def _cfg(mode="spec", **kw):
    return triclinic_config(mode, **kw)


MODES = ["spec", "parity"]


@pytest.mark.parametrize("mode", MODES)
def test_plain(mode, cuda_backend):
    assert_backends_agree(_cfg(mode), cuda_backend)


@pytest.mark.parametrize("mode", MODES)
def test_mosaic(mode, cuda_backend):
    cfg = _cfg(mode, mosaic_spread=0.8 * DEG, mosaic_domains=4, mosaic_seed=-42)
    res = assert_backends_agree(cfg, cuda_backend)
    flat = simulate(dataclasses.replace(cfg, mosaic_spread=0.0, mosaic_domains=1)).image
    assert not np.allclose(res.image, flat, rtol=1e-3), "mosaic spread had no effect"


def test_phi_carryover_parity(cuda_backend):
    """Parity mode: phi = 0 reuses the previous rotation (first pixel: unrotated cell)."""
    cfg = _cfg("parity", phi0=0.0, osc=1.0 * DEG, phisteps=3)
    res = assert_backends_agree(cfg, cuda_backend)
    spec = simulate(dataclasses.replace(cfg, mode="spec")).image
    assert not np.allclose(res.image, spec, rtol=1e-6), "carry-over quirk not exercised"


@pytest.mark.parametrize("mode", MODES)
def test_phi_steps_nonzero_start(mode, cuda_backend):
    assert_backends_agree(_cfg(mode, phi0=2.0 * DEG, osc=1.0 * DEG, phisteps=3), cuda_backend)


@pytest.mark.parametrize("mode", MODES)
def test_oversample_flags(mode, cuda_backend):
    cfg = _cfg(mode, oversample=2, oversample_omega=True, oversample_polar=True, oversample_thick=True,
               polarization=0.7, detector_thick=300e-6, detector_mu=1 / 200e-6, detector_thicksteps=2)
    res = assert_backends_agree(cfg, cuda_backend)
    plain = simulate(dataclasses.replace(cfg, oversample_omega=False, oversample_polar=False,
                                         oversample_thick=False)).image
    assert not np.allclose(res.image, plain, rtol=1e-6)


@pytest.mark.parametrize("mode", MODES)
def test_detector_thickness(mode, cuda_backend):
    cfg = _cfg(mode, detector_thick=450e-6, detector_mu=1 / 300e-6, detector_thicksteps=3,
               detector_rotx=20 * DEG)
    assert_backends_agree(cfg, cuda_backend)


@pytest.mark.parametrize("mode", MODES)
def test_shapes_and_background(mode, cuda_backend):
    for shape in ("round", "gauss", "tophat"):
        assert_backends_agree(_cfg(mode, xtal_shape=shape, fudge=1.5, water_size=20e-6), cuda_backend)


@pytest.mark.parametrize("mode", MODES)
def test_divergence_dispersion_dmin(mode, cuda_backend):
    cfg = _cfg(mode, hdivrange=2e-3, vdivrange=2e-3, hdivsteps=3, vdivsteps=3, dispersion=0.02,
               dispsteps=2, dmin=3e-10)
    assert_backends_agree(cfg, cuda_backend)


@pytest.mark.parametrize("mode", MODES)
def test_curved_point_pixel(mode, cuda_backend):
    assert_backends_agree(_cfg(mode, curved_detector=True, detector_rotx=3 * DEG), cuda_backend)
    assert_backends_agree(_cfg(mode, point_pixel=True, nopolar=True), cuda_backend)


@pytest.mark.parametrize("mode", MODES)
def test_roi(mode, cuda_backend):
    cfg = _cfg(mode, roi=(1, 4, 2, 3), phi0=0.0, osc=1.0 * DEG, phisteps=2)
    res = assert_backends_agree(cfg, cuda_backend)
    outside = np.ones(res.image.shape, dtype=bool)
    outside[2:4, 1:5] = False
    assert np.all(res.image[outside] == 0.0)
    assert np.all(res.image[~outside] > 0.0)
    assert res.stats.rendered == 8


@pytest.mark.parametrize("mode", MODES)
def test_mask(mode, cuda_backend):
    mask = np.ones((5, 6), dtype=np.uint16)
    mask[0, :3] = 0  # the first pixels: the first rendered pixel moves (parity carry-over)
    mask[3, 4] = 0
    cfg = _cfg(mode, mask=mask.reshape(-1), phi0=0.0, osc=1.0 * DEG, phisteps=2)
    res = assert_backends_agree(cfg, cuda_backend)
    assert np.all(res.image[mask == 0] == 0.0)
    assert np.all(res.image[mask != 0] > 0.0)
    assert res.stats.rendered == 26


def test_interpolation_switch_off_parity(cuda_backend, golden_inputs, tmp_path):
    """Parity: the first out-of-range stencil switches interpolation off for the rest of the run.

    The ROI starts on pixels whose stencils lie inside tiny3.hkl, so the switch
    happens part-way through the image, in another CUDA tile than the first.
    """
    shutil.copy(golden_inputs / "tiny3.hkl", tmp_path / "tiny3.hkl")
    argv = ["-hkl", "tiny3.hkl", "-default_F", "5", *TRICLINIC, "-N", "5", "-interpolate",
            "-detpixels_f", "6", "-detpixels_s", "5", "-pixel", "2", "-lambda", "4", "-distance", "100",
            "-roi", "2", "5", "1", "4"]
    cfg = _args_config(argv, "parity", tmp_path)
    res = assert_backends_agree(cfg, cuda_backend)
    never_off = simulate(dataclasses.replace(cfg, mode="spec")).image
    always_off = simulate(dataclasses.replace(cfg, interpolate=0)).image
    assert not np.allclose(res.image, never_off, rtol=1e-6)
    assert not np.allclose(res.image, always_off, rtol=1e-6)


def test_interpolation_spec(cuda_backend, golden_inputs, tmp_path):
    shutil.copy(golden_inputs / "tiny3.hkl", tmp_path / "tiny3.hkl")
    argv = ["-hkl", "tiny3.hkl", "-default_F", "5", *TRICLINIC, "-N", "2", *TINY, "-lambda", "3"]
    assert_backends_agree(_args_config(argv, "spec", tmp_path), cuda_backend)


def test_float32_spec(cuda_backend):
    """float32 kernels (spec mode only) agree with float64 to a single-precision tolerance,
    and the two backends agree with each other in float32."""
    cfg = _cfg("spec", mosaic_spread=0.5 * DEG, mosaic_domains=3, phi0=1 * DEG, osc=1 * DEG, phisteps=2)
    ref64 = simulate(cfg, backend="cpu").image.astype(np.float64)
    scale = float(ref64.max())
    for backend in ("cpu", cuda_backend):
        img32 = simulate(cfg, backend=backend, dtype="float32", tile_pixels=TILE).image.astype(np.float64)
        assert np.max(np.abs(img32 - ref64)) <= FLOAT32_VS_FLOAT64_RTOL * scale, backend
        assert not np.array_equal(img32, ref64), "float32 kernel gave float64 results"


def test_float32_refused_in_parity():
    from nbnumba.errors import ConfigError

    with pytest.raises(ConfigError, match="float64"):
        simulate(_cfg("parity"), dtype="float32")


def test_tiling_does_not_change_the_image(cuda_backend):
    cfg = _cfg("parity", phi0=0.0, osc=1.0 * DEG, phisteps=2)
    whole = simulate(cfg, backend=cuda_backend).image
    for tile in (1, 5, 29, 30, 1000):
        np.testing.assert_array_equal(simulate(cfg, backend=cuda_backend, tile_pixels=tile).image, whole)


# ---- golden cases rendered by the CUDA backend

@pytest.mark.gpu
@pytest.mark.parametrize("name", ["mosaic", "phi_carryover", "interp_outofrange"])
def test_golden_case_on_cuda(name, cuda_backend, golden_dir):
    """Whole golden cases on the device (bench/gpu_run.py runs all 50 there).

    Numba's simulator runs one Python thread per pixel: a whole 128 x 128 case
    takes about ten minutes, so under the simulator the ROI test below checks
    the same kernel against C's pixels instead.
    """
    import os

    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        pytest.skip("whole golden frames need a real GPU (the simulator takes minutes per frame); "
                    "test_golden_mosaic_roi_on_cuda covers the simulator")
    report = run_case(name, golden_dir, mode="parity", extra_args=["-backend", "cuda"])
    assert report.ok, "\n".join(report.details)


def test_golden_mosaic_roi_on_cuda(cuda_backend, golden_dir, tmp_path):
    """A 12x10 ROI of the mosaic case (no carry-over, no interpolation: the ROI
    pixels do not depend on the rest of the image) against C's float image."""
    import contextlib
    import io
    import os

    case = load_case(golden_dir, "mosaic")
    xmin, xmax, ymin, ymax = 40, 51, 80, 89
    argv = list(case["args"]) + ["-backend", "cuda", "-roi", str(xmin), str(xmax), str(ymin), str(ymax)]
    old = os.getcwd()
    try:
        os.chdir(tmp_path)
        with contextlib.redirect_stdout(io.StringIO()):
            run_nanobragg(argv, out=io.StringIO(), mode="parity")
    finally:
        os.chdir(old)
    f, s = case["fpixels"], case["spixels"]
    ours = np.fromfile(tmp_path / "float.bin", dtype="<f4").reshape(s, f)
    ref = np.frombuffer(read_output(golden_dir / "mosaic" / "float.bin"), "<f4").reshape(s, f)
    window = (slice(ymin, ymax + 1), slice(xmin, xmax + 1))
    assert ref[window].max() > 10 * np.median(ref), "ROI holds no Bragg peak"
    ok, msg = compare_float(ours[window], ref[window])
    assert ok, msg
    outside = np.ones_like(ours, dtype=bool)
    outside[window] = False
    assert np.all(ours[outside] == 0.0)


def test_simulator_flag_consistent():
    """cuda_simulated() reflects NUMBA_ENABLE_CUDASIM (guards the fixtures' skip logic)."""
    import os

    assert cuda_simulated() == (os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"))
    assert GOLDEN_DIR.name == "golden"


def test_backend_object_with_its_own_block_size(cuda_backend):
    """render_flat takes a backend object; a block of 32 threads (its own solid-angle reduction): the same frame."""
    from nbnumba.kernels.cuda import CudaBackend
    from nbnumba.kernels.driver import render_flat
    from nbnumba.prepare import prepare

    prep = prepare(_cfg("parity"))
    image, omega = render_flat(prep, "cuda")
    small = CudaBackend("float64", threads_per_block=32)
    image32, omega32 = render_flat(prep, small)
    assert image.max() > 0.0
    np.testing.assert_array_equal(image32, image)
    assert omega32 == pytest.approx(omega, rel=1e-15)
