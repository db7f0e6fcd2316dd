"""One declaration of the kernel arguments; every other form is derived from it and agrees with it."""

from __future__ import annotations

import ast
import ctypes

import numpy as np
import pytest
from conftest import triclinic_config

from nbnumba.kernels import _numba_internals, driver, interface
from nbnumba.prepare import prepare


def test_every_form_has_the_declared_parameters():
    names = interface.c_parameter_names()
    # pointer + one extent per dimension for each array, the scalars, start, count, out
    assert len(names) == sum(1 + a.ndim for a in interface.ARRAYS) + len(interface.SCALARS) + 3
    assert len(interface.ctypes_argtypes()) == len(names)
    assert len(interface.cfunc_signature("float64", "float32").args) == len(names)
    tree = ast.parse(interface.row_loop_source())
    assert [a.arg for a in tree.body[0].args.args] == names
    assert interface.ctypes_argtypes()[0] is ctypes.c_void_p
    assert len(interface.noise_ctypes_argtypes()) == len(interface.noise_signature().args) == 8


def test_pack_follows_the_declaration():
    prep = prepare(triclinic_config())
    arrays = interface.kernel_arrays(prep, "float32")
    assert arrays._fields == interface.ARRAY_NAMES
    for decl, arr in zip(interface.ARRAYS, arrays):
        assert arr.dtype == decl.numpy_dtype("float32") and arr.ndim == decl.ndim
    packed = interface.pack(arrays, 3, 17, 0.5)
    assert len(packed) == len(interface.c_parameter_names()) - 3  # all but start, count, out
    assert packed[0] == arrays.fp.ctypes.data and packed[1] == arrays.fp.size
    assert packed[-3:] == (3, 17, 0.5)
    interface.check_arrays(arrays, "float32")
    with pytest.raises(ValueError, match="fhkl"):
        interface.check_arrays(arrays._replace(fhkl=arrays.fhkl.astype(np.float64)), "float32")
    with pytest.raises(ValueError, match="cells"):
        interface.check_arrays(arrays._replace(cells=arrays.cells.astype(np.float32)), "float32")


def test_geometry_is_double_in_every_precision():
    """The single-precision kernels read the geometry in float64 (Miller indices need it) and F in float32."""
    prep = prepare(triclinic_config())
    arrays = interface.kernel_arrays(prep, "float32")
    for name in ("fp", "sources", "cells", "cells_first"):
        assert getattr(arrays, name).dtype == np.float64, name
    assert arrays.fhkl.dtype == np.float32


def test_double_precision_arrays_are_not_copied():
    prep = prepare(triclinic_config())
    arrays = interface.kernel_arrays(prep, "float64")
    assert arrays.fp is prep.fp or np.shares_memory(arrays.fp, prep.fp)
    assert np.shares_memory(arrays.cells, prep.cells)


def test_interface_hash_is_in_the_native_key(monkeypatch):
    from nbnumba.kernels import native

    before = native.library_key("render", "float64", "float32")
    monkeypatch.setattr(interface, "INTERFACE_HASH", "0" * 16)
    native._sources_and_cpu.cache_clear()
    try:
        assert native.library_key("render", "float64", "float32") != before
    finally:
        monkeypatch.undo()
        native._sources_and_cpu.cache_clear()
    assert native.library_key("render", "float64", "float32") == before


def test_roi_span():
    prep = prepare(triclinic_config(roi=(1, 3, 2, 4)))  # fast 1..3, slow 2..4 on 6 x 5 pixels
    assert driver.roi_span(prep) == (2 * 6 + 1, 4 * 6 + 3 + 1)
    assert driver.roi_span(prepare(triclinic_config())) == (0, 30)


def test_cpu_tiles():
    backend = driver.CpuBackend(row=10)
    tiles = backend.tiles(0, 1000, 70)
    assert tiles[0] == (0, 70) and tiles[-1] == (980, 1000)
    assert all(b == c for (_, b), (c, _) in zip(tiles, tiles[1:]))
    assert backend.tiles(5, 50, None) == [(5, 50)]


@pytest.mark.parametrize("kernel", ["jit", "auto"])
def test_tiles_and_progress_do_not_change_the_image(monkeypatch, kernel):
    monkeypatch.setenv("NBNUMBA_CPU_KERNEL", kernel)
    prep = prepare(triclinic_config("parity", fpixels=13, spixels=11, pixel_size=0.5e-3, roi=(1, 11, 2, 9)))
    whole, omega = driver.render_flat(prep, "cpu")
    seen = []
    tiled, omega_tiled = driver.render_flat(prep, "cpu", tile_pixels=9, progress=seen.append)
    assert whole.max() > 0.0
    assert np.array_equal(whole, tiled)
    assert omega_tiled == pytest.approx(omega, rel=1e-12)
    assert seen and seen == sorted(seen) and seen[-1] == 1.0
    roi = np.zeros((11, 13), bool)
    roi[2:10, 1:12] = True
    assert not whole.reshape(11, 13)[~roi].any()


def test_internals_version_check_fails_clearly(monkeypatch):
    import numba

    monkeypatch.setattr(numba, "__version__", "9.1.0")
    with pytest.raises(_numba_internals.NumbaInternalsError, match=r"numba 9\.1\.0 is outside"):
        _numba_internals.check.__wrapped__()


def test_installed_versions_without_importing(monkeypatch):
    versions = _numba_internals.installed_versions()
    import llvmlite
    import numba

    assert versions == {"numba": numba.__version__, "llvmlite": llvmlite.__version__}


def test_missing_internal_names_the_module():
    with pytest.raises(_numba_internals.NumbaInternalsError, match="_numba_internals.py"):
        _numba_internals.llvm_ir(object())


def test_cuda_numpy_alias_is_scoped(monkeypatch):
    """numba-cuda's numpy.row_stack exists only while it is imported or compiles, where numpy lacks it."""
    import numpy

    from nbnumba.kernels import cuda

    if "row_stack" in numpy.__dict__:
        monkeypatch.delattr(numpy, "row_stack")  # as in numpy >= 2.5
    with cuda._numpy_row_stack():
        assert numpy.row_stack is numpy.vstack
    assert "row_stack" not in numpy.__dict__
    monkeypatch.setattr(numpy, "row_stack", numpy.vstack, raising=False)
    kept = numpy.row_stack
    with cuda._numpy_row_stack():
        pass
    assert numpy.row_stack is kept  # an existing one is left alone


def test_every_kernel_takes_the_declared_arguments():
    """The prange, CUDA and native per-block functions are written out; they follow the declaration."""
    import inspect

    from nbnumba.kernels import cpu, cuda, native_build

    declared = list(interface.ARRAY_NAMES + interface.SCALAR_NAMES)
    for fn in (cpu.render_image, cpu.find_out_of_range, cpu.find_phi_loop_pixels, cuda.render_tile,
               cuda.out_of_range_tile):
        params = list(inspect.signature(fn).parameters)
        assert params[:len(declared) + 1] == declared + ["start"], fn.__name__
    for fn in native_build.KINDS.values():
        # the running total, the block (raster index, output index, length), the output
        assert list(inspect.signature(fn).parameters) == ["total", "idx", "i", "n", "out"] + declared, fn.__name__
    assert set(cpu.KERNEL_OF_KIND) == set(native_build.KINDS) == set(driver.KINDS)
