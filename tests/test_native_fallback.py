"""Choosing the CPU kernel where the native library cannot be used (no C compiler needed)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import triclinic_config

from nbnumba.engine import render_flat
from nbnumba.errors import ConfigError
from nbnumba.kernels import native
from nbnumba.prepare import prepare


@pytest.fixture
def fresh_loader(monkeypatch, tmp_path):
    monkeypatch.setattr(native, "_loaded", {})
    monkeypatch.setenv("NBNUMBA_CACHE_DIR", str(tmp_path))
    return tmp_path


def test_unsupported_platform_uses_the_jit_kernel_quietly(monkeypatch, fresh_loader):
    monkeypatch.setattr(native, "supported", lambda: False)
    monkeypatch.setenv("NBNUMBA_CPU_KERNEL", "auto")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert native.load("render", "float64", "float32") is None
        img, _ = render_flat(prepare(triclinic_config()), "cpu")
    assert img.max() > 0.0
    assert not any(fresh_loader.iterdir()), "nothing is written to the cache"


def test_unsupported_platform_refuses_native_when_asked(monkeypatch, fresh_loader):
    monkeypatch.setattr(native, "supported", lambda: False)
    monkeypatch.setenv("NBNUMBA_CPU_KERNEL", "native")
    with pytest.raises(ConfigError, match="Linux only"):
        native.load("render", "float64", "float32")


def test_jit_choice_never_touches_the_cache(monkeypatch, fresh_loader):
    monkeypatch.setenv("NBNUMBA_CPU_KERNEL", "jit")
    img, _ = render_flat(prepare(triclinic_config("parity")), "cpu")
    assert np.count_nonzero(img) > 0
    assert not any(fresh_loader.iterdir())


def test_kernel_choice_is_case_and_space_tolerant(monkeypatch):
    monkeypatch.setenv("NBNUMBA_CPU_KERNEL", "  JIT ")
    assert native.kernel_choice() == "jit"
    monkeypatch.setenv("NBNUMBA_CPU_KERNEL", "")
    assert native.kernel_choice() == "auto"


def test_compiling_is_announced_once_on_a_terminal_only(monkeypatch):
    import io

    from nbnumba.kernels import native

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    tty, pipe = Terminal(), io.StringIO()
    monkeypatch.setattr(native, "_told_compiling", False)
    native._say_compiling(pipe)  # a pipe or a log file: nothing, so scripts see clean stderr
    assert pipe.getvalue() == ""
    monkeypatch.setattr(native, "_told_compiling", False)
    native._say_compiling(tty)
    native._say_compiling(tty)  # once a process
    assert tty.getvalue().count("compiling the kernels for this CPU") == 1
