"""The registry of output formats.

Each format is one module of :mod:`nbnumba.io` that registers a writer with
:func:`register_writer`: a function taking a :class:`~nbnumba.io.frame.Frame`
(the rendered image, its header values and the scaling options) and
returning the file's bytes, or an iterable of byte chunks.  Commands look a
format up by name with :func:`get_writer` and hand the bytes to an
:class:`~nbnumba.io.outputs.OutputSet`, which writes every output of a run
together.

Adding a format is one module that calls :func:`register_writer`, plus its
name in :data:`FORMAT_MODULES` (so that it is imported on first use).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from nbnumba.errors import ConfigError

__all__ = ["FORMAT_MODULES", "Writer", "format_names", "get_writer", "register_writer"]

FORMAT_MODULES = (
    "nbnumba.io.floatimage",
    "nbnumba.io.smv",
    "nbnumba.io.pgm",
    "nbnumba.io.noise",
    "nbnumba.io.cbf",
    "nbnumba.io.nexus",
    "nbnumba.io.floatformats",
    "nbnumba.io.png",
)
"""Modules that register the built-in formats (one entry per format module)."""


@dataclass(frozen=True)
class Writer:
    """One output format.

    Attributes
    ----------
    name : str
        Registry name (``'float'``, ``'smv'``, ``'pgm'``, ``'noise'``).
    extension : str
        File-name extension used by ``nbnumba scan`` (``'.bin'``).
    description : str
        One line for help texts (``'as 4-byte floats'``).
    encode : callable
        ``encode(frame) -> bytes or iterable of bytes``.
    """

    name: str
    extension: str
    description: str
    encode: Callable

    def __call__(self, frame):
        """The file content for `frame` (see :attr:`encode`)."""
        return self.encode(frame)


_WRITERS: dict[str, Writer] = {}
_loaded = False


def register_writer(name: str, extension: str, description: str = "") -> Callable:
    """Decorator: register ``encode(frame)`` as the writer of format `name`.

    Parameters
    ----------
    name : str
        Format name; registering a name twice replaces the first writer.
    extension : str
        File-name extension, with its dot.
    description : str, optional
        One line describing the file.

    Returns
    -------
    callable
        The decorator (it returns the function unchanged).
    """
    def decorate(encode: Callable) -> Callable:
        _WRITERS[name] = Writer(name, extension, description, encode)
        return encode

    return decorate


def _load() -> None:
    global _loaded
    if not _loaded:
        for module in FORMAT_MODULES:
            importlib.import_module(module)
        _loaded = True


def get_writer(name: str) -> Writer:
    """The writer registered as `name`.

    Raises
    ------
    ConfigError
        For an unknown format, listing the known ones.
    """
    _load()
    try:
        return _WRITERS[name]
    except KeyError:
        raise ConfigError(f"unknown output format {name!r}; known: {', '.join(format_names())}") from None


def format_names() -> tuple[str, ...]:
    """Names of every registered format, in registration order."""
    _load()
    return tuple(_WRITERS)
