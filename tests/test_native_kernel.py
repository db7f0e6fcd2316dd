"""The native CPU kernel library against the Numba ``prange`` kernel.

Both compile the same physics with the same floating-point options, so the
images must be identical bit for bit, not merely close; the solid-angle sum
is added in a different order (per chunk), so it is compared to rounding.
Also: the thread pool, the fallback when no library can be built, and that
the ``nanoBragg`` command no longer imports Numba once the library exists.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import GOLDEN_DIR, triclinic_config
from tolerances import SOLID_ANGLE_RTOL

from nbnumba.cargs import config_from_args
from nbnumba.engine import render_flat, simulate
from nbnumba.errors import ConfigError
from nbnumba.kernels import native, native_build
from nbnumba.prepare import prepare

DEG = math.pi / 180.0

pytestmark = pytest.mark.skipif(
    not native.supported() or native_build.find_linker() is None,
    reason="native kernels need Linux and a C compiler (cc, gcc or clang) to link them",
)


def _cfg(mode="spec", **kw):
    """A 13 x 11 detector of 0.5 mm pixels: enough rows for several chunks per thread."""
    return triclinic_config(mode, **{"pixel_size": 0.5e-3, "fpixels": 13, "spixels": 11, **kw})


def _render(cfg, kernel, monkeypatch, dtype="float64", out_dtype=np.float32, nthreads=None):
    monkeypatch.setenv("NBNUMBA_CPU_KERNEL", kernel)
    prep = prepare(cfg)
    return render_flat(prep, "cpu", dtype, out_dtype=out_dtype, nthreads=nthreads)


CASES = {
    "parity-mosaic-phi-oversample": _cfg("parity", mosaic_spread=0.8 * DEG, mosaic_domains=4, mosaic_seed=-42,
                                         phi0=0.0, osc=2.0 * DEG, phisteps=3, oversample=2),
    "parity-thick-polar-flags": _cfg("parity", oversample=2, oversample_omega=True, oversample_polar=True,
                                     oversample_thick=True, polarization=0.7, detector_thick=300e-6,
                                     detector_mu=1 / 200e-6, detector_thicksteps=2),
    "parity-dmin-divergence": _cfg("parity", hdivrange=2e-3, vdivrange=2e-3, hdivsteps=3, vdivsteps=3,
                                   dispersion=0.02, dispsteps=2, dmin=3e-10, phi0=0.0, osc=1 * DEG,
                                   phisteps=2),
    "spec-shapes-roi": _cfg("spec", xtal_shape="gauss", fudge=1.5, water_size=20e-6, roi=(1, 9, 2, 8),
                            curved_detector=True),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_native_equals_jit_bit_for_bit(name, monkeypatch):
    cfg = CASES[name]
    jit_img, jit_omega = _render(cfg, "jit", monkeypatch)
    nat_img, nat_omega = _render(cfg, "native", monkeypatch)
    assert jit_img.max() > 0.0, "nothing rendered: the comparison would be vacuous"
    assert np.array_equal(nat_img, jit_img)
    assert nat_omega == pytest.approx(jit_omega, rel=SOLID_ANGLE_RTOL)


def test_float32_and_float64_output(monkeypatch):
    """Spec float32 kernel, and the float64 output used by the gradients."""
    cfg = CASES["parity-mosaic-phi-oversample"]
    spec = dataclasses.replace(cfg, mode="spec")
    for dtype, out_dtype, case in (("float32", np.float32, spec), ("float64", np.float64, cfg)):
        jit_img, _ = _render(case, "jit", monkeypatch, dtype=dtype, out_dtype=out_dtype)
        nat_img, _ = _render(case, "native", monkeypatch, dtype=dtype, out_dtype=out_dtype)
        assert nat_img.dtype == out_dtype
        assert np.array_equal(nat_img, jit_img), (dtype, out_dtype)


def test_interpolation_switch_off_parity(monkeypatch, tmp_path):
    """The out-of-range pre-pass runs natively too (parity interpolation switch-off)."""
    src = GOLDEN_DIR / "inputs" / "tiny3.hkl"
    if not src.exists():
        pytest.skip(f"golden input {src} not found")
    shutil.copy(src, tmp_path / "tiny3.hkl")
    argv = ["-hkl", "tiny3.hkl", "-default_F", "5", "-cell", "70", "80", "90", "75", "85", "95", "-N", "5",
            "-interpolate", "-detpixels_f", "6", "-detpixels_s", "5", "-pixel", "2", "-lambda", "4",
            "-distance", "100", "-roi", "2", "5", "1", "4"]
    monkeypatch.chdir(tmp_path)
    cfg, _ = config_from_args(argv, mode="parity")
    jit_img, _ = _render(cfg, "jit", monkeypatch)
    nat_img, _ = _render(cfg, "native", monkeypatch)
    assert np.array_equal(nat_img, jit_img)
    never_off, _ = _render(dataclasses.replace(cfg, mode="spec"), "native", monkeypatch)
    assert not np.allclose(nat_img, never_off, rtol=1e-6), "switch-off not exercised"


@pytest.mark.parametrize("nthreads", [1, 2, 3, 7])
def test_thread_count_does_not_change_the_image(nthreads, monkeypatch):
    cfg = CASES["parity-mosaic-phi-oversample"]
    one, omega_one = _render(cfg, "native", monkeypatch, nthreads=1)
    many, omega_many = _render(cfg, "native", monkeypatch, nthreads=nthreads)
    assert np.array_equal(one, many)
    assert omega_many == pytest.approx(omega_one, rel=SOLID_ANGLE_RTOL)


def test_progress_reaches_one(monkeypatch):
    monkeypatch.setenv("NBNUMBA_CPU_KERNEL", "native")
    seen = []
    simulate(CASES["spec-shapes-roi"], nthreads=2, progress=seen.append)
    assert seen and seen[-1] == 1.0 and seen == sorted(seen)


def test_bad_kernel_choice_is_a_config_error(monkeypatch):
    monkeypatch.setenv("NBNUMBA_CPU_KERNEL", "fortran")
    with pytest.raises(ConfigError, match="NBNUMBA_CPU_KERNEL"):
        simulate(CASES["spec-shapes-roi"])


def test_failed_build_falls_back_once_and_remembers(monkeypatch, tmp_path):
    """No linker: auto mode warns, renders with the JIT kernel and leaves a .failed note;
    native mode is an error."""
    real_build = native_build.build
    monkeypatch.setenv("NBNUMBA_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(native, "_loaded", {})
    monkeypatch.setattr(native_build, "find_linker", lambda: None)
    monkeypatch.setenv("NBNUMBA_CPU_KERNEL", "auto")
    cfg = CASES["spec-shapes-roi"]
    with pytest.warns(RuntimeWarning, match="no C compiler"):
        img, _ = render_flat(prepare(cfg), "cpu")
    assert img.max() > 0.0
    assert any(p.suffix == ".failed" for p in tmp_path.iterdir())
    assert not any(p.suffix == ".so" for p in tmp_path.iterdir())
    monkeypatch.setattr(native, "_loaded", {})
    # the note is honoured: no second build attempt, no warning
    monkeypatch.setattr(native_build, "build", lambda *a: pytest.fail("rebuilt after a failure"))
    assert native.load("render", "float64", "float32") is None
    # asked for explicitly, it tries again and reports why it cannot
    monkeypatch.setattr(native_build, "find_linker", lambda: None)
    monkeypatch.setattr(native_build, "build", real_build)
    monkeypatch.setenv("NBNUMBA_CPU_KERNEL", "native")
    monkeypatch.setattr(native, "_loaded", {})
    with pytest.raises(ConfigError, match="no C compiler"):
        native.load("render", "float64", "float32")


def test_noise_equals_jit_bit_for_bit():
    """C's Poisson loop: same image, photon sum, overloads and generator state after."""
    from nbnumba import rng

    gen = np.random.default_rng(3)
    image = gen.gamma(0.5, 40.0, 20000).astype(np.float32)
    image[::997] = 3e6  # Gaussian branch (mean above 1e6)
    image[11] = 2e5  # clipped at 65535: an overload
    mask = np.ones(image.size, dtype=bool)
    mask[::5] = False
    kernel = native.load("noise", "float32", "uint16")
    states = [(rng.new_ran1_state(-5), rng.new_poisson_state()) for _ in range(2)]
    nat = native.run_noise(kernel, image, mask, 40.0, *states[0])
    jit = rng.poisson_image_core(image, mask, 40.0, *states[1])
    assert np.array_equal(nat[0], jit[0])
    assert nat[1] == jit[1] and nat[2] == jit[2] and nat[2] > 0
    assert np.array_equal(states[0][0], states[1][0]) and np.array_equal(states[0][1], states[1][1])
    assert np.all(nat[0][~mask] == 0)


def test_noise_continues_a_shared_generator_state():
    """A state array handed in is advanced in place (C's shared shuffle table), also when not int64."""
    from nbnumba import rng

    image = np.full(300, 7.5, dtype=np.float32)
    kernel = native.load("noise", "float32", "uint16")
    shared = rng.new_ran1_state(5).astype(np.int32)  # a positive seed, in another integer type
    reference = rng.new_ran1_state(5)
    first = native.run_noise(kernel, image, np.ones(300, bool), 40.0, shared, rng.new_poisson_state())
    again = native.run_noise(kernel, image, np.ones(300, bool), 40.0, shared, rng.new_poisson_state())
    ref_first = rng.poisson_image_core(image, np.ones(300, bool), 40.0, reference, rng.new_poisson_state())
    ref_again = rng.poisson_image_core(image, np.ones(300, bool), 40.0, reference, rng.new_poisson_state())
    assert np.array_equal(first[0], ref_first[0]) and np.array_equal(again[0], ref_again[0])
    assert not np.array_equal(first[0], again[0])


def test_library_key_depends_on_variant():
    keys = {native.library_key(k, d, o) for k in ("render", "phi_loop") for d in ("float64", "float32")
            for o in ("float32", "int8")}
    assert len(keys) == 8


def test_command_does_not_import_numba(tmp_path):
    """With the libraries built, a default nanoBragg run (noise image included) loads neither Numba nor LLVM."""
    argv = ["-default_F", "100", "-cell", "100", "100", "100", "90", "90", "90", "-lambda", "6.2", "-N", "5",
            "-detpixels", "32", "-pixel", "0.1", "-distance", "100", "-seed", "3"]
    native.load("render", "float64", "float32")  # build them here if this is the first use
    native.load("noise", "float32", "uint16")
    probe = ("import sys\n"
             "from nbnumba_cli.nanobragg import run_command_line\n"
             "try:\n    run_command_line(sys.argv[1:])\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
             "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('numba', 'llvmlite'))\n"
             "print('IMPORTED', bad)\n")
    env = dict(os.environ, NBNUMBA_CPU_KERNEL="auto", NUMBA_NUM_THREADS="2")
    r = subprocess.run([sys.executable, "-c", probe, *argv], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "IMPORTED []" in r.stdout, r.stdout[-500:]
    assert (tmp_path / "floatimage.bin").stat().st_size == 32 * 32 * 4
    assert (tmp_path / "noiseimage.img").stat().st_size == 512 + 32 * 32 * 2
