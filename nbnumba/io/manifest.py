"""Scan manifests: which frames of a scan are complete, with sizes and checksums.

``nbnumba scan`` records every finished frame in ``<prefix>_scan.json``
(rewritten atomically after each batch of frames), with the size and sha256
of each of its files and a fingerprint of the scan's settings.  A resumed
scan (``--resume``) skips the frames whose files still match their record and
renders the others, so an interrupted scan resumed gives the same files as
an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os

import numpy as np

from nbnumba.errors import ConfigError

__all__ = ["MANIFEST_VERSION", "file_digest", "fingerprint", "frame_is_complete", "load_manifest"]

MANIFEST_VERSION = 1
_MAX_MANIFEST_BYTES = 256 * 1024 * 1024


def _feed(h, value) -> None:
    if isinstance(value, np.ndarray):
        h.update(f"ndarray{value.dtype.str}{value.shape}".encode())
        h.update(np.ascontiguousarray(value).tobytes())
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        h.update(type(value).__name__.encode())
        for f in dataclasses.fields(value):
            h.update(f.name.encode())
            _feed(h, getattr(value, f.name))
    elif isinstance(value, (list, tuple)):
        h.update(f"seq{len(value)}".encode())
        for item in value:
            _feed(h, item)
    elif isinstance(value, dict):
        h.update(f"map{len(value)}".encode())
        for key in sorted(value, key=repr):
            _feed(h, key)
            _feed(h, value[key])
    else:
        h.update(repr(value).encode())


def fingerprint(*values) -> str:
    """sha256 (hex) of configurations and settings, arrays included by value.

    Parameters
    ----------
    *values
        Dataclasses, arrays, sequences, dicts and plain values.

    Returns
    -------
    str
    """
    h = hashlib.sha256()
    for v in values:
        _feed(h, v)
    return h.hexdigest()


def file_digest(path) -> tuple[int, str] | None:
    """Size and sha256 of a regular file, or None when it is missing or not regular."""
    if not os.path.isfile(path):
        return None
    try:
        with open(path, "rb") as handle:
            h = hashlib.sha256()
            size = 0
            while True:
                block = handle.read(1 << 20)
                if not block:
                    break
                h.update(block)
                size += len(block)
    except OSError:
        return None
    return size, h.hexdigest()


def load_manifest(path, expected_fingerprint: str) -> dict[int, dict]:
    """The frame records of an existing manifest, by frame number.

    Parameters
    ----------
    path : str or os.PathLike
        ``<prefix>_scan.json``; a missing file gives ``{}``.
    expected_fingerprint : str
        The fingerprint of the scan being resumed.

    Returns
    -------
    dict of int to dict
        Frame number -> its JSON record.

    Raises
    ------
    ConfigError
        When the file is not a manifest of nbnumba, or was written by a scan
        with other settings.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        return {}
    try:
        if os.path.getsize(path) > _MAX_MANIFEST_BYTES:
            raise ValueError("file too large")
        with open(path, encoding="utf-8") as handle:
            doc = json.load(handle)
        frames = doc["frames"]
        records = {int(r["number"]): r for r in frames}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: not a scan manifest ({type(exc).__name__}); "
                          "cannot resume (remove it or choose another --out)") from None
    if doc.get("fingerprint") != expected_fingerprint:
        raise ConfigError(f"{path}: written by a scan with other settings; cannot resume "
                          "(run without --resume to render every frame again, or choose another --out)")
    return records


def frame_is_complete(record: dict | None, changes: dict, paths: dict) -> bool:
    """True when a recorded frame matches `changes` and its files are intact.

    Parameters
    ----------
    record : dict or None
        The frame's manifest record.
    changes : dict
        The frame's changes in this run (JSON-comparable).
    paths : dict
        Format -> path of the frame's files in this run.

    Returns
    -------
    bool
        Every file exists with the recorded size and sha256.
    """
    if not record or record.get("changes") != changes:
        return False
    files = record.get("files")
    if not isinstance(files, dict) or set(files) != set(paths):
        return False
    for fmt, path in paths.items():
        want = files[fmt]
        if not isinstance(want, dict) or want.get("name") != os.path.basename(path):
            return False
        got = file_digest(path)
        if got is None or got != (want.get("size"), want.get("sha256")):
            return False
    return True
