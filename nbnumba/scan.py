"""Scans: many frames from one configuration, each with a few fields changed.

A :class:`Scan` is a base :class:`~nbnumba.config.SimConfig` plus, for each
frame, a dict of changes (field name -> value, in the config's units: SI,
except ``cell_angstrom`` in Angstrom).  A field name may address one
component of a vector field: ``'misset[0]'``, ``'cell_angstrom[1]'``,
``'spindle_vector[2]'``.

:func:`run_scan` renders every frame with :func:`nbnumba.simulate` through an
:class:`~nbnumba.executors.Executor` (in this process, or on a Dask cluster)
and can write each frame as a raw float image and an SMV image, named
``<prefix>_0001.bin`` / ``<prefix>_0001.img`` and so on.

Examples
--------
>>> from nbnumba import config_from_args
>>> from nbnumba.scan import phi_scan, run_scan
>>> cfg, _ = config_from_args("-cell 100 100 100 90 90 90 -default_F 100 -N 5 "
...                           "-detpixels 64 -seed 1".split())
>>> scan = phi_scan(cfg, start_deg=0.0, step_deg=1.0, n_frames=3)
>>> records = run_scan(scan, out_dir=None)      # doctest: +SKIP
>>> [r.changes["phi0"] for r in records]        # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from dataclasses import dataclass, field

import numpy as np

from .config import FIELD_INFO, SimConfig, user_value
from .errors import ConfigError
from .io.cfmt import c_strtod_prefix

__all__ = [
    "FrameRecord",
    "Scan",
    "apply_changes",
    "check_field",
    "check_value",
    "describe_changes",
    "field_value",
    "parameter_scan",
    "parse_vary",
    "phi_scan",
    "run_scan",
    "variable_fields",
]

RTD = 180.0 / math.pi
FORMATS = ("float", "smv")
_FIELD_RE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\[\s*(\d+)\s*\])?\s*$")

# stored-value factor of each unit a --vary value may carry, by field kind (SI units)
_UNITS = {
    "length": {"m": 1.0, "mm": 1e-3, "um": 1e-6, "nm": 1e-9, "A": 1e-10, "Angstrom": 1e-10},
    "angle": {"rad": 1.0, "deg": math.pi / 180.0, "mrad": 1e-3, "urad": 1e-6},
    "fraction": {"%": 0.01},
    "time": {"s": 1.0, "ms": 1e-3},
}
_STORED_UNIT_SI = {"m": 1.0, "Angstrom": 1e-10, "rad": 1.0, "": 1.0, "s": 1.0}


def _field_types() -> dict:
    return {f.name: str(f.type) for f in dataclasses.fields(SimConfig)}


def variable_fields() -> list[str]:
    """Names of the SimConfig fields a scan or gradient may change.

    Returns
    -------
    list of str
        Scalar fields by name; vector fields as ``name[i]``.
    """
    out = []
    for name, info in FIELD_INFO.items():
        if not info.variable:
            continue
        out.append(f"{name}[0..{info.size - 1}]" if info.size else name)
    return out


def check_field(name: str) -> tuple[str, int | None]:
    """Split and validate a field name such as ``'distance'`` or ``'misset[0]'``.

    Parameters
    ----------
    name : str
        Field name, optionally with a component index.

    Returns
    -------
    tuple of (str, int or None)
        The field and the component index.

    Raises
    ------
    ConfigError
        Naming the field and listing the valid ones, when the field does not
        exist, cannot vary, is a vector given without an index (or a scalar
        given with one), or the index is out of range.
    """
    valid = "valid fields: " + ", ".join(variable_fields())
    m = _FIELD_RE.match(str(name))
    if not m:
        raise ConfigError(f"bad field name {name!r}: expected NAME or NAME[i]; {valid}")
    fname, idx = m.group(1), m.group(2)
    if fname not in FIELD_INFO:
        import difflib

        close = difflib.get_close_matches(fname, list(FIELD_INFO), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ConfigError(f"unknown SimConfig field {fname!r}{hint}; {valid}")
    info = FIELD_INFO[fname]
    if not info.variable:
        raise ConfigError(f"field {fname!r} cannot be varied (it holds file data or the mode); {valid}")
    if info.size:
        if idx is None:
            raise ConfigError(
                f"field {fname!r} is a vector: name one component, {fname}[0] to {fname}[{info.size - 1}]"
            )
        i = int(idx)
        if i >= info.size:
            raise ConfigError(f"{fname}[{i}]: index out of range (0 to {info.size - 1})")
        return fname, i
    if idx is not None:
        raise ConfigError(f"field {fname!r} is a scalar: no [index] allowed")
    return fname, None


def _vector_of(config: SimConfig, fname: str) -> list:
    vec = getattr(config, fname)
    if vec is None:
        if fname == "cell_angstrom":
            raise ConfigError("cell_angstrom is not set (the crystal comes from -mat): cannot change its components")
        return [0.0] * FIELD_INFO[fname].size
    return [v for v in np.asarray(vec).tolist()]


def field_value(config: SimConfig, name: str):
    """The value of a field or of one component (``'misset[0]'``).

    Parameters
    ----------
    config : SimConfig
    name : str

    Returns
    -------
    object
        The stored value (a missing ``misset`` reads as zeros).
    """
    fname, idx = check_field(name)
    if idx is None:
        return getattr(config, fname)
    return _vector_of(config, fname)[idx]


def _number(fname: str, value) -> float:
    """A number in the field's stored units; text may end in a unit (``'120mm'``, ``'10 deg'``)."""
    if not isinstance(value, str):
        return float(value)
    number, end = c_strtod_prefix(value)
    unit = value[end:].strip()
    if end == 0:
        raise ValueError(value)
    if not unit:
        return number
    info = FIELD_INFO[fname]
    si = _UNITS.get(info.kind, {})
    if unit in si and info.unit in _STORED_UNIT_SI:
        return number * si[unit] / _STORED_UNIT_SI[info.unit]
    if unit and unit == info.user_unit:
        return number / info.to_user
    if unit and unit == info.unit:
        return number
    known = sorted(set(si) | {u for u in (info.unit, info.user_unit) if u})
    raise ConfigError(f"{fname}: unknown unit {unit!r} in {value!r}"
                      + (f"; use one of {', '.join(known)}" if known else "; give a plain number"))


def _convert(fname: str, value, types: dict):
    kind = types[fname]
    info = FIELD_INFO[fname]
    if info.size:
        number = _number(fname, value)
        if info.continuous:
            return number
        if number != int(number):
            raise ConfigError(f"{fname}: expected an integer, got {value!r}")
        return int(number)
    if kind == "bool":
        if isinstance(value, str):
            low = value.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ConfigError(f"{fname}: expected true or false, got {value!r}")
        return bool(value)
    if kind == "int":
        as_float = _number(fname, value)
        if as_float != int(as_float):
            raise ConfigError(f"{fname}: expected an integer, got {value!r}")
        return int(as_float)
    if kind == "float":
        return _number(fname, value)
    return value if not isinstance(value, str) else value.strip()


def check_value(name: str, value):
    """Convert and validate one value for a field or component.

    Parameters
    ----------
    name : str
        Field or component (``'distance'``, ``'misset[0]'``).
    value : object
        A number in the field's stored units (SI; Angstrom for
        ``cell_angstrom``), or text: a number with an optional unit
        (``'120mm'``, ``'10 deg'``, ``'1.5A'``).

    Returns
    -------
    object
        The value in the field's stored units and type.

    Raises
    ------
    ConfigError
        Naming the field, for a bad number or unit, NaN or infinity, a
        value outside the field's bounds, or a choice it does not allow.
    """
    fname, _ = check_field(name)
    info = FIELD_INFO[fname]
    try:
        val = _convert(fname, value, _field_types())
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{name}: bad value {value!r}") from None
    if isinstance(val, float) and not math.isfinite(val):
        raise ConfigError(f"{name}: expected a finite number, got {value!r}")
    if info.choices and val not in info.choices:
        raise ConfigError(f"{name}: expected one of {', '.join(map(str, info.choices))}, got {value!r}")
    if isinstance(val, (int, float)) and not isinstance(val, bool) and not info.in_bounds(val):
        raise ConfigError(f"{name}: {value!r} is out of range ({info.bounds_text()})")
    return val


def apply_changes(config: SimConfig, changes: dict) -> SimConfig:
    """A copy of ``config`` with some fields (or components) changed.

    Parameters
    ----------
    config : SimConfig
        Left untouched.
    changes : dict
        Field name (``'distance'``, ``'misset[0]'``) -> value in the
        config's units.  Strings are converted to the field's type.

    Returns
    -------
    SimConfig

    Raises
    ------
    ConfigError
        For a field that does not exist or cannot vary, or a bad value.
    """
    types = _field_types()
    scalars: dict = {}
    vectors: dict = {}
    for name, value in changes.items():
        fname, idx = check_field(name)
        try:
            val = _convert(fname, value, types)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"{name}: bad value {value!r}") from None
        if isinstance(val, float) and math.isnan(val):
            raise ConfigError(f"{name}: expected a number, got {value!r}")
        if idx is None:
            scalars[fname] = val
        else:
            if fname not in vectors:
                vectors[fname] = _vector_of(config, fname)
            vectors[fname][idx] = val
    for fname, vec in vectors.items():
        old = getattr(config, fname)
        if isinstance(old, np.ndarray) or (old is None and fname.endswith("vector")):
            scalars[fname] = np.array(vec, dtype=np.float64)
        else:
            scalars[fname] = tuple(vec)
    return dataclasses.replace(config, **scalars)


@dataclass
class Scan:
    """A base configuration and the changes that make each frame.

    Attributes
    ----------
    base : SimConfig
        Configuration shared by all frames.
    frames : list of dict
        One dict per frame: field name -> value (config units).
    name : str
        Label for reports.
    """

    base: SimConfig
    frames: list = field(default_factory=list)
    name: str = "scan"

    def __post_init__(self):
        for changes in self.frames:
            for key, value in changes.items():
                check_value(key, value)

    def __len__(self) -> int:
        return len(self.frames)

    def config(self, i: int) -> SimConfig:
        """The configuration of frame ``i`` (0-based)."""
        return apply_changes(self.base, self.frames[i])

    def configs(self) -> list:
        """Every frame's configuration, in order."""
        return [self.config(i) for i in range(len(self))]


def phi_scan(base: SimConfig, start_deg: float | None = None, step_deg: float = 1.0,
             n_frames: int = 1, osc_deg: float | None = None) -> Scan:
    """A rotation scan: frame ``i`` covers the wedge starting at ``start + i*step``.

    Parameters
    ----------
    base : SimConfig
        Base configuration; its ``phisteps``/``phistep`` set the sampling of
        each wedge (as ``-phisteps`` would).
    start_deg : float, optional
        Spindle angle of the first frame (degrees); default the base ``phi0``.
    step_deg : float
        Spindle increment between frames (degrees).
    n_frames : int
        Number of frames (at least 1).
    osc_deg : float, optional
        Oscillation range of each frame (degrees); default ``step_deg``
        (contiguous wedges).  0 gives still frames.

    Returns
    -------
    Scan
        Frames that change ``phi0`` and ``osc`` (radians).
    """
    n_frames = int(n_frames)
    if n_frames < 1:
        raise ConfigError(f"a scan needs at least one frame, got {n_frames}")
    start = base.phi0 if start_deg is None else float(start_deg) / RTD
    step = float(step_deg) / RTD
    osc = step if osc_deg is None else float(osc_deg) / RTD
    if osc < 0:
        raise ConfigError(f"oscillation range must be >= 0 degrees, got {osc * RTD:g}")
    frames = [{"phi0": start + i * step, "osc": osc} for i in range(n_frames)]
    return Scan(base=base, frames=frames, name="phi")


def parameter_scan(base: SimConfig, field_name: str, values) -> Scan:
    """Frames that set one field to each of ``values`` in turn.

    Parameters
    ----------
    base : SimConfig
    field_name : str
        Field or component (``'distance'``, ``'misset[2]'``).
    values : iterable
        Values in the config's units (SI; Angstrom for ``cell_angstrom``).

    Returns
    -------
    Scan
    """
    check_field(field_name)
    values = list(values)
    if not values:
        raise ConfigError(f"no values to scan {field_name} over")
    return Scan(base=base, frames=[{field_name: v} for v in values], name=field_name)


def parse_vary(specs) -> list[dict]:
    """Frames from ``FIELD=v1,v2,...`` strings; several fields vary together.

    Every value is converted and checked here, before anything renders.

    Parameters
    ----------
    specs : iterable of str
        Each ``FIELD=v1,v2,...``; all must list the same number of values.
        A value is a number in the field's stored units (SI; Angstrom for
        ``cell_angstrom``) or a number with a unit: ``distance=100mm,120mm``,
        ``phi0=0deg,10deg``, ``lambda0=1.0A``, ``misset[0]=5deg``.

    Returns
    -------
    list of dict
        One dict of changes per frame, field -> value in stored units.

    Raises
    ------
    ConfigError
        For a malformed spec, an unknown field or index, a bad number or
        unit, NaN or infinity, a value outside the field's bounds, or
        unequal value counts.
    """
    columns = {}
    for spec in specs:
        if "=" not in spec:
            raise ConfigError(f"--vary {spec!r}: expected FIELD=v1,v2,...")
        name, _, vals = spec.partition("=")
        name = name.strip()
        try:
            check_field(name)
            items = [v.strip() for v in vals.split(",")]
            if not any(items):
                raise ConfigError(f"{name}: no values")
            if not all(items):
                raise ConfigError(f"{name}: empty value in {vals!r}")
            if name in columns:
                raise ConfigError(f"{name}: given twice")
            columns[name] = [check_value(name, v) for v in items]
        except ConfigError as exc:
            raise ConfigError(f"--vary {spec!r}: {exc}") from None
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        raise ConfigError("--vary: every field must list the same number of values "
                          + ", ".join(f"{k}: {len(v)}" for k, v in columns.items()))
    n = lengths.pop() if lengths else 0
    return [{k: v[i] for k, v in columns.items()} for i in range(n)]


def describe_changes(changes: dict) -> str:
    """A frame's changes in user units: ``'distance=120 mm phi0=10 deg'``.

    Parameters
    ----------
    changes : dict
        Field or component -> value in stored units (SI).

    Returns
    -------
    str
    """
    return " ".join(f"{k}={user_value(k, v)}" for k, v in changes.items())


@dataclass
class FrameRecord:
    """What :func:`run_scan` reports for one frame.

    Attributes
    ----------
    index : int
        Position in the scan (0-based).
    number : int
        Number in the file names (``index + first_number``).
    changes : dict
        The frame's changes (as given).
    stats : dict
        :class:`~nbnumba.engine.Statistics` as a dict, plus ``intfile_scale``.
    paths : dict
        Format (``'float'``, ``'smv'``) -> file written.
    image : ndarray or None
        float32 image, kept when no files were written (or when asked).
    timings : dict
        Seconds spent preparing and rendering.
    files : dict
        Format -> ``{'name', 'size', 'sha256'}`` of each file written.
    resumed : bool
        True when the frame was found complete by a resumed scan and not
        rendered again (its record is the earlier run's).
    """

    index: int
    number: int
    changes: dict
    stats: dict
    paths: dict = field(default_factory=dict)
    image: np.ndarray | None = None
    timings: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)
    resumed: bool = False
    counts: np.ndarray | None = None

    def to_json(self) -> dict:
        """The record without the image, with JSON-friendly values."""
        return {
            "index": self.index, "number": self.number,
            "changes": {k: _jsonable(v) for k, v in self.changes.items()},
            "stats": {k: _jsonable(v) for k, v in self.stats.items()},
            "paths": dict(self.paths), "timings": dict(self.timings),
            "files": {k: dict(v) for k, v in self.files.items()},
        }

    @classmethod
    def from_json(cls, doc: dict, index: int, paths: dict) -> FrameRecord:
        """The record of a frame a resumed scan found complete."""
        return cls(index=index, number=int(doc["number"]), changes=dict(doc.get("changes", {})),
                   stats=dict(doc.get("stats", {})), paths=dict(paths), timings=dict(doc.get("timings", {})),
                   files={k: dict(v) for k, v in doc.get("files", {}).items()}, resumed=True)


def _jsonable(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v


@dataclass
class _FrameTask:
    config: SimConfig
    index: int
    number: int
    changes: dict
    backend: str
    dtype: str
    nthreads: int | None
    out_dir: str | None
    prefix: str
    formats: tuple
    digits: int
    intfile_scale: float
    adc_offset: float
    keep_image: bool
    seed: int | None = None
    inputs: tuple = ()
    keep_counts: bool = False


def frame_paths(out_dir, prefix: str, number: int, formats=FORMATS, digits: int = 4) -> dict:
    """File names of frame ``number``: ``{'float': .../prefix_0001.bin, 'smv': ....img}``.

    The extension of each format comes from the output registry
    (:func:`nbnumba.io.registry.get_writer`).
    """
    from .io.registry import get_writer

    stem = f"{prefix}_{number:0{digits}d}"
    return {f: os.path.join(os.fspath(out_dir), stem + get_writer(f).extension) for f in formats}


def check_prefix(prefix: str) -> str:
    """Refuse a file-name prefix that could leave the output folder.

    Raises
    ------
    ConfigError
        For an empty prefix, or one holding a path separator, ``..`` or a NUL.
    """
    bad = [c for c in ("/", os.altsep, "\0") if c and c in prefix]
    if not prefix or bad or ".." in prefix:
        raise ConfigError(f"--prefix {prefix[:60]!r}: must be a plain file name (no '/', '..' or NUL), "
                          "so that every file stays in --out")
    return prefix


def _without_table(config: SimConfig, table) -> SimConfig:
    """``config`` without its structure-factor table when that is the scan's own ``table``.

    The table is the same for every frame and can be tens of megabytes: it
    goes to each worker once (``Executor.map(..., shared=table)``) instead
    of inside every frame's task.
    """
    if table is not None and config.hkl is table:
        return dataclasses.replace(config, hkl=None)
    return config


def _map_frames(executor, tasks: list, table) -> list:
    """:func:`render_frame` over ``tasks``; the table goes to each worker once where the executor can share it."""
    from .executors import Executor

    if isinstance(executor, Executor):
        return executor.map(render_frame, tasks, shared=table)
    import functools  # any object with map(fn, items): the table travels with each task

    return executor.map(functools.partial(render_frame, table=table), tasks)


def render_frame(task: _FrameTask, table=None) -> FrameRecord:
    """Render one frame and write its files together (runs on the executor).

    ``table`` is the scan's structure-factor table when the executor sends it
    apart (once per worker, see :func:`_without_table`); the task's
    configuration then holds none.
    """
    from .engine import simulate

    config = task.config if table is None else dataclasses.replace(task.config, hkl=table)
    result = simulate(config, backend=task.backend, dtype=task.dtype, nthreads=task.nthreads)
    stats = dataclasses.asdict(result.stats)
    paths = {}
    files = {}
    frame = None
    if task.out_dir is not None or task.keep_counts:
        from .io.outputs import Frame

        frame = Frame.from_result(result, intfile_scale=task.intfile_scale, adc_offset=task.adc_offset,
                                  seed=task.seed)
    if task.out_dir is not None:
        from .io.outputs import OutputSet

        paths = frame_paths(task.out_dir, task.prefix, task.number, task.formats, task.digits)
        with OutputSet(inputs=task.inputs, digest=True, sweep=False) as out:
            for fmt, path in paths.items():
                out.add_frame(path, fmt, frame)
            out.commit()
        if "smv" in paths:
            stats["intfile_scale"] = frame.int_scale
        files = {fmt: {"name": os.path.basename(path), "size": out.written[path].size,
                       "sha256": out.written[path].sha256} for fmt, path in paths.items()}
    keep = task.keep_image or task.out_dir is None
    return FrameRecord(index=task.index, number=task.number, changes=dict(task.changes), stats=stats,
                       paths=paths, image=result.image if keep else None, timings=dict(result.timings),
                       files=files, counts=frame.counts if task.keep_counts else None)


def frame_seed(seed: int | None, index: int) -> int | None:
    """The noise seed of frame ``index`` (0-based): C's stored seed, one apart per frame.

    Every frame gets its own Poisson deviates; frame 0 has the scan's seed,
    so a one-frame scan reproduces the ``nanoBragg`` command's noise.
    """
    return None if seed is None else int(seed) - int(index)


def write_sweep(path: str, scan: Scan, records: list, inputs=()) -> None:
    """One NeXus/NXmx file holding every frame's photon counts, one slice per frame, as a rotation sweep."""
    from .io.geometry import FrameGeometry
    from .io.nexus import nxmx_bytes
    from .io.outputs import atomic_write
    from .prepare import prepare

    ordered = sorted(records, key=lambda r: r.index)
    geometry = FrameGeometry.from_prepared(prepare(scan.config(ordered[0].index)))
    angles = [float(scan.config(r.index).phi0) for r in ordered]
    stack = np.stack([r.counts for r in ordered])
    atomic_write(path, nxmx_bytes(stack, geometry, angles, name=path), inputs=inputs)


def _batch_size(executor, n: int) -> int:
    """Frames handed to the executor at a time (the manifest is rewritten after each batch)."""
    client = getattr(executor, "client", None)
    if client is None:
        return 1
    try:
        return max(1, 2 * sum(client.nthreads().values()))
    except Exception:  # noqa: BLE001 - a client that cannot say: everything at once
        return max(1, n)


def _write_manifest(path: str, scan: Scan, fingerprint: str, records: list, inputs) -> None:
    from .io.outputs import atomic_write

    doc = {"name": scan.name, "version": 1, "fingerprint": fingerprint,
           "frames": [r.to_json() for r in sorted(records, key=lambda r: r.index)]}
    atomic_write(path, (json.dumps(doc, indent=1) + "\n").encode(), inputs=inputs)


def run_scan(scan: Scan, executor=None, backend: str = "cpu", out_dir=None, prefix: str = "frame",
             formats=("float", "smv"), dtype: str = "float64", nthreads: int | None = None,
             intfile_scale: float = 0.0, adc_offset: float = 40.0, first_number: int = 1,
             keep_images: bool = False, manifest: bool = True, resume: bool = False,
             seed: int | None = None, inputs=()) -> list[FrameRecord]:
    """Render every frame of a scan, optionally writing files.

    Parameters
    ----------
    scan : Scan
        Base configuration and per-frame changes.
    executor : Executor, optional
        Where frames render; default :class:`~nbnumba.executors.LocalExecutor`.
    backend : {'cpu', 'cuda', 'auto'}
        Kernel backend (on the workers, with Dask).
    out_dir : str or path, optional
        Folder for the frame files (created if missing).  None: write
        nothing and keep the images in the records.
    prefix : str
        File-name stem: ``<prefix>_0001.bin``, ``<prefix>_0001.img``; a
        plain name (no ``/`` or ``..``).
    formats : sequence of str
        Output formats per frame (registry names: ``'float'``, ``'smv'``,
        ``'pgm'``, ``'tiff'``, ``'edf'``, ``'png'``, and with a `seed`
        ``'noise'`` and ``'cbf'``); the files of one frame are written
        together, all or none.  ``'nexus'`` writes one NXmx file,
        ``<prefix>.h5``, with every frame's photon counts as a rotation
        sweep, once all frames are rendered.
    dtype : {'float64', 'float32'}
        Kernel precision.
    nthreads : int, optional
        CPU threads per render.
    intfile_scale : float
        SMV scale; 0 or less rescales each frame as C does (55000 / max_I).
    adc_offset : float
        SMV ADC offset (C's default 40).
    first_number : int
        Number of the first frame in the file names.
    keep_images : bool
        Keep images in the records even when files are written.
    manifest : bool
        With ``out_dir``, also write ``<prefix>_scan.json`` (the records,
        with each file's size and sha256), rewritten after every batch of
        frames.
    resume : bool
        With ``out_dir``, skip the frames that the manifest records as
        complete and whose files still match their size and sha256.
    seed : int, optional
        Noise seed as C stores it (negated), for the ``'noise'``, ``'cbf'``
        and ``'nexus'`` formats; frame ``i`` uses ``seed - i``
        (:func:`frame_seed`).
    inputs : iterable of str
        Files the scan reads; none may be an output.

    Returns
    -------
    list of FrameRecord
        In frame order.

    Raises
    ------
    ConfigError
        For an unknown format, a bad field or value, a bad prefix, or a
        manifest that cannot be resumed.
    OutputFileError
        When a file cannot be written; the frames completed before stay
        recorded in the manifest.
    """
    from .executors import LocalExecutor
    from .io.manifest import fingerprint, frame_is_complete, load_manifest
    from .io.outputs import check_outputs, format_names, remove_stale_temporaries

    formats = tuple(formats)
    bad = [f for f in formats if f not in format_names()]
    if bad:
        raise ConfigError(f"unknown frame format {bad[0]!r}; valid: {', '.join(format_names())}")
    counted = sorted(set(formats) & {"noise", "cbf", "nexus"})
    if counted and seed is None:
        raise ConfigError(f"the {', '.join(counted)} format(s) need a noise seed")
    if len(set(formats)) != len(formats):
        raise ConfigError("a format is listed twice")
    sweep = "nexus" in formats
    if sweep and out_dir is None:
        raise ConfigError("the nexus format writes one file for the scan: give an output folder")
    formats = tuple(f for f in formats if f != "nexus")
    inputs = tuple(os.fspath(p) for p in inputs if p is not None)
    executor = executor or LocalExecutor()
    digits = max(4, len(str(first_number + len(scan) - 1)))
    table = scan.base.hkl
    tasks = [
        _FrameTask(config=_without_table(scan.config(i), table), index=i, number=first_number + i, changes=dict(ch),
                   backend=backend, dtype=dtype, nthreads=nthreads, out_dir=None, prefix=prefix,
                   formats=formats, digits=digits, intfile_scale=float(intfile_scale),
                   adc_offset=float(adc_offset), keep_image=keep_images, seed=frame_seed(seed, i), inputs=inputs,
                   keep_counts=sweep)
        for i, ch in enumerate(scan.frames)
    ]
    if out_dir is None:
        return sorted(_map_frames(executor, tasks, table), key=lambda r: r.index)
    check_prefix(prefix)
    out_dir = os.fspath(out_dir)
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as exc:
        from .errors import OutputFileError

        raise OutputFileError(f"cannot create the folder {out_dir}: {exc.strerror or exc}") from None
    manifest_path = os.path.join(out_dir, f"{prefix}_scan.json")
    all_paths = [p for t in tasks for p in frame_paths(out_dir, prefix, t.number, formats, digits).values()]
    sweep_path = os.path.join(out_dir, f"{prefix}.h5")
    check_outputs(all_paths + ([manifest_path] if manifest else []) + ([sweep_path] if sweep else []), inputs)
    remove_stale_temporaries(out_dir)
    # what the files depend on: a clock-drawn seed that no frame uses must not block a resume
    base = scan.base if scan.base.misset_random else dataclasses.replace(scan.base, misset_seed=0)
    stamp = fingerprint(base, scan.name, formats + (("nexus",) if sweep else ()), prefix, first_number,
                        float(intfile_scale), float(adc_offset), dtype, backend, seed if counted else None)
    old = load_manifest(manifest_path, stamp) if (resume and manifest) else {}
    done, todo = [], []
    for task in tasks:
        task.out_dir = out_dir
        paths = frame_paths(out_dir, prefix, task.number, formats, digits)
        changes = json.loads(json.dumps({k: _jsonable(v) for k, v in task.changes.items()}))
        if resume and frame_is_complete(old.get(task.number), changes, paths):
            done.append(FrameRecord.from_json(old[task.number], task.index, paths))
        else:
            todo.append(task)
    step = _batch_size(executor, len(todo))
    records = list(done)
    for start in range(0, len(todo), step):
        records += _map_frames(executor, todo[start:start + step], table)
        if manifest:
            _write_manifest(manifest_path, scan, stamp, records, inputs)
    if manifest and not todo:
        _write_manifest(manifest_path, scan, stamp, records, inputs)
    if sweep:
        # frames kept from an earlier run render again for their counts (deterministic: same seeds)
        again = [dataclasses.replace(t, out_dir=None, keep_image=False) for t in tasks
                 if t.index in {r.index for r in records if r.counts is None}]
        counts = {r.index: r.counts for r in _map_frames(executor, again, table)} if again else {}
        for r in records:
            if r.counts is None:
                r.counts = counts[r.index]
        write_sweep(sweep_path, scan, records, inputs)
    return sorted(records, key=lambda r: r.index)
