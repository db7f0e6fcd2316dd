"""Exception types raised by nbnumba.

Every error that nbnumba raises on purpose derives from :class:`NbnumbaError`,
so callers (the command-line interface in particular) can catch one type and
print a clean message instead of a traceback.
"""

from __future__ import annotations

__all__ = ["ConfigError", "InputFileError", "NbnumbaError", "OutputFileError", "UsageError"]


class NbnumbaError(Exception):
    """Base class of all nbnumba errors."""


class InputFileError(NbnumbaError):
    """An input file is missing, unreadable, truncated or malformed.

    The message names the file and, for text files, the offending line.
    """


class ConfigError(NbnumbaError):
    """The requested simulation settings are invalid or inconsistent."""


class OutputFileError(NbnumbaError):
    """An output file could not be written."""


class UsageError(NbnumbaError):
    """The command line is malformed: unknown flag, missing or bad value."""
