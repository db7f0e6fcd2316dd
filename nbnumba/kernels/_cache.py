"""Numba on-disk cache keyed on the physics as well as the kernel file.

Numba invalidates a cached kernel when the kernel's own source file changes,
not when a function it calls changes.  The kernels here call the physics of
:mod:`nbnumba.physics` (compiled by :mod:`nbnumba.compile`), so an edit there
-- or a ``git pull`` on an editable install -- would otherwise run a stale
kernel.  :func:`install` puts, in front of Numba's cache locators, variants
that add a hash of those two files to the source stamp of files in this
folder; other functions keep Numba's usual behaviour.
"""

from __future__ import annotations

import hashlib
import os

_KERNEL_DIR = os.path.dirname(os.path.abspath(__file__))
_PACKAGE_DIR = os.path.dirname(_KERNEL_DIR)
DEPENDENCIES = ("physics.py", "compile.py")
_EXCLUDED = {"IPythonCacheLocator", "_IPythonCacheLocator", "ZipCacheLocator", "_ZipCacheLocator"}


def dependency_hash() -> str:
    """SHA-256 of the physics source files the kernels are compiled from."""
    digest = hashlib.sha256()
    for name in DEPENDENCIES:
        with open(os.path.join(_PACKAGE_DIR, name), "rb") as handle:
            digest.update(handle.read())
    return digest.hexdigest()


def _accepts(py_file: str) -> bool:
    return os.path.dirname(os.path.abspath(py_file)) == _KERNEL_DIR


def install() -> None:
    """Register the physics-aware locators (idempotent)."""
    from . import _numba_internals

    _numba_internals.add_stamped_locators("PhysicsAware", dependency_hash, _accepts, exclude=_EXCLUDED)
