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
    """

    index: int
    number: int
    changes: dict
    stats: dict
    paths: dict = field(default_factory=dict)
    image: np.ndarray | None = None
    timings: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        """The record without the image, with JSON-friendly values."""
        return {
            "index": self.index, "number": self.number,
            "changes": {k: _jsonable(v) for k, v in self.changes.items()},
            "stats": {k: _jsonable(v) for k, v in self.stats.items()},
            "paths": dict(self.paths), "timings": dict(self.timings),
        }


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


def frame_paths(out_dir, prefix: str, number: int, formats=FORMATS, digits: int = 4) -> dict:
    """File names of frame ``number``: ``{'float': .../prefix_0001.bin, 'smv': ....img}``."""
    ext = {"float": ".bin", "smv": ".img"}
    stem = f"{prefix}_{number:0{digits}d}"
    return {f: os.path.join(os.fspath(out_dir), stem + ext[f]) for f in formats}


def render_frame(task: _FrameTask) -> FrameRecord:
    """Render one frame and write its files (runs on the executor)."""
    from .engine import simulate

    result = simulate(task.config, backend=task.backend, dtype=task.dtype, nthreads=task.nthreads)
    stats = dataclasses.asdict(result.stats)
    paths = {}
    if task.out_dir is not None:
        paths = frame_paths(task.out_dir, task.prefix, task.number, task.formats, task.digits)
        if "float" in paths:
            from .io.floatimage import write_float_image

            write_float_image(paths["float"], result.image)
        if "smv" in paths:
            from .io.smv import write_smv
            from .runner import int_image, smv_header_values

            scale = task.intfile_scale
            if scale <= 0.0:
                scale = 55000.0 / result.stats.max_I if result.stats.max_I > 0.0 else 1.0
            stats["intfile_scale"] = scale
            write_smv(paths["smv"], int_image(result, scale, task.adc_offset), smv_header_values(result))
    keep = task.keep_image or task.out_dir is None
    return FrameRecord(index=task.index, number=task.number, changes=dict(task.changes), stats=stats,
                       paths=paths, image=result.image if keep else None, timings=dict(result.timings))


def run_scan(scan: Scan, executor=None, backend: str = "cpu", out_dir=None, prefix: str = "frame",
             formats=("float", "smv"), dtype: str = "float64", nthreads: int | None = None,
             intfile_scale: float = 0.0, adc_offset: float = 40.0, first_number: int = 1,
             keep_images: bool = False, manifest: bool = True) -> list[FrameRecord]:
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
        File-name stem: ``<prefix>_0001.bin``, ``<prefix>_0001.img``.
    formats : sequence of {'float', 'smv'}
        Which files to write per frame; each is written atomically.
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
        With ``out_dir``, also write ``<prefix>_scan.json`` (the records).

    Returns
    -------
    list of FrameRecord
        In frame order.

    Raises
    ------
    ConfigError
        For an unknown format, a bad field or value.
    OutputFileError
        When a file cannot be written.
    """
    from .executors import LocalExecutor

    formats = tuple(formats)
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise ConfigError(f"unknown frame format {bad[0]!r}; valid: {', '.join(FORMATS)}")
    if out_dir is not None:
        out_dir = os.fspath(out_dir)
        os.makedirs(out_dir, exist_ok=True)
    executor = executor or LocalExecutor()
    digits = max(4, len(str(first_number + len(scan) - 1)))
    tasks = [
        _FrameTask(config=scan.config(i), index=i, number=first_number + i, changes=dict(ch),
                   backend=backend, dtype=dtype, nthreads=nthreads, out_dir=out_dir, prefix=prefix,
                   formats=formats, digits=digits, intfile_scale=float(intfile_scale),
                   adc_offset=float(adc_offset), keep_image=keep_images)
        for i, ch in enumerate(scan.frames)
    ]
    records = executor.map(render_frame, tasks)
    records = sorted(records, key=lambda r: r.index)
    if out_dir is not None and manifest:
        from .io._atomic import atomic_write

        doc = {"name": scan.name, "frames": [r.to_json() for r in records]}
        atomic_write(os.path.join(out_dir, f"{prefix}_scan.json"),
                     (json.dumps(doc, indent=1) + "\n").encode())
    return records
