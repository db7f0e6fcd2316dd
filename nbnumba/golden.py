"""Run cases of the golden corpus (C reference outputs) and compare.

Used by the tests and by ``nbnumba compare --golden``.  A case folder holds
``case.json`` (``args``, ``inputs``, ``outputs``), the C outputs and, beside
the cases, an ``inputs/`` folder.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# float images: at least this fraction of pixels within FLOAT_RTOL, none beyond FLOAT_RTOL_MAX
FLOAT_RTOL = 1e-6
FLOAT_RTOL_MAX = 1e-3
FLOAT_FRACTION = 0.999
# pixels this small (photons) are compared with an absolute tolerance instead
FLOAT_ATOL = 1e-30


@dataclass
class CaseReport:
    name: str
    ok: bool
    details: list = field(default_factory=list)
    stdout: str = ""


def default_golden_dir() -> Path:
    here = Path(__file__).resolve().parents[1]
    return here.parent / "shared" / "golden"


def load_case(golden: Path, name: str) -> dict:
    return json.loads((golden / name / "case.json").read_text())


def read_output(path: Path) -> bytes:
    if path.exists():
        return path.read_bytes()
    gz = path.with_name(path.name + ".gz")
    if gz.exists():
        return gzip.decompress(gz.read_bytes())
    raise FileNotFoundError(path)


def compare_float(ours: np.ndarray, ref: np.ndarray) -> tuple[bool, str]:
    if ours.shape != ref.shape:
        return False, f"shape {ours.shape} != {ref.shape}"
    a = ours.astype(np.float64)
    b = ref.astype(np.float64)
    diff = np.abs(a - b)
    rel = np.where(np.abs(b) > FLOAT_ATOL, diff / np.maximum(np.abs(b), FLOAT_ATOL), diff / FLOAT_ATOL)
    frac = float(np.mean(rel <= FLOAT_RTOL))
    worst = float(rel.max()) if rel.size else 0.0
    ok = frac >= FLOAT_FRACTION and worst <= FLOAT_RTOL_MAX
    return ok, f"float: {frac * 100:.4f}% within {FLOAT_RTOL:g}, worst rel {worst:.3g}"


def compare_smv(ours: bytes, ref: bytes, what: str) -> tuple[bool, str]:
    from .io.smv import smv_value

    oh, rh = ours[:512].decode("latin-1"), ref[:512].decode("latin-1")
    keys = [line.split("=")[0] for line in rh.split("\n") if "=" in line]
    bad = []
    for k in keys:
        a, b = smv_value(oh, k), smv_value(rh, k)
        if not (a == b or (np.isnan(a) and np.isnan(b)) or abs(a - b) <= 1e-6 * max(abs(b), 1e-9)):
            bad.append(f"{k}: {a:g} != {b:g}")
    da = np.frombuffer(ours[512:], dtype="<u2").astype(np.int64)
    db = np.frombuffer(ref[512:], dtype="<u2").astype(np.int64)
    if da.shape != db.shape:
        return False, f"{what}: data size {da.size} != {db.size}"
    ndiff = int(np.sum(da != db))
    maxdiff = int(np.abs(da - db).max()) if da.size else 0
    # noiseless integers may differ by one count where the float image differs in the last bit
    ok = not bad and (ndiff == 0 or (what != "noise" and maxdiff <= 1 and ndiff <= 0.001 * da.size + 1))
    msg = f"{what}: {ndiff} pixels differ (max {maxdiff}); header " + ("ok" if not bad else "; ".join(bad))
    return ok, msg


def run_command(argv, folder, mode: str | None = None, timeout: float | None = None) -> tuple[int, str, str]:
    """Run the ``nanoBragg`` command in a child process whose working folder is ``folder``.

    Relative file names on the command line (and C's default output names)
    then refer to ``folder``, without changing this process's working folder.

    Parameters
    ----------
    argv : list of str
        The command line, without the program name.
    folder : str or Path
        Working folder of the run.
    mode : {'spec', 'parity'}, optional
        Forced mode (``-mode``), else the command line's own.
    timeout : float, optional
        Seconds before the run is killed (``subprocess.TimeoutExpired``).

    Returns
    -------
    (int, str, str)
        Exit status, standard output and standard error.
    """
    args = list(argv) + (["-mode", mode] if mode else [])
    proc = subprocess.run([sys.executable, "-m", "nbnumba", *args], cwd=os.fspath(folder),
                          capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr


def run_case(name: str, golden: Path | None = None, mode: str = "parity", extra_args=(),
             reference: Path | None = None, workdir: Path | None = None) -> CaseReport:
    """Run one golden case through the nanoBragg command and compare its files."""
    golden = Path(golden or default_golden_dir())
    case = load_case(golden, name)
    refdir = Path(reference or golden) / name
    tmp = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix=f"nb_{name}_"))
    tmp.mkdir(parents=True, exist_ok=True)
    for inp in case.get("inputs", []):
        shutil.copy(golden / "inputs" / inp, tmp / inp)
    try:
        return _compare_case(name, case, refdir, tmp, list(extra_args), mode)
    finally:
        if workdir is None:
            shutil.rmtree(tmp, ignore_errors=True)


def _compare_case(name, case, refdir: Path, tmp: Path, extra_args: list, mode: str) -> CaseReport:
    rc, stdout, stderr = run_command(list(case["args"]) + extra_args, tmp, mode=mode)
    report = CaseReport(name=name, ok=rc == 0, stdout=stdout)
    if rc != 0:
        report.details.append(f"exit status {rc}: {stderr.strip()}")
        return report
    f, s = case["fpixels"], case["spixels"]
    for out in case["outputs"]:
        fname = out[:-3] if out.endswith(".gz") else out
        ref = read_output(refdir / fname)
        ours = (tmp / fname).read_bytes()
        if fname == "float.bin":
            ok, msg = compare_float(np.frombuffer(ours, "<f4").reshape(s, f),
                                    np.frombuffer(ref, "<f4").reshape(s, f))
        elif fname.endswith(".img"):
            ok, msg = compare_smv(ours, ref, "noise" if "noise" in fname else "int")
        else:
            ok = ours == ref
            msg = f"{fname}: " + ("identical" if ok else "differs")
        report.details.append(f"{fname}: {msg}")
        report.ok &= ok
    return report


def case_names(golden: Path | None = None) -> list[str]:
    golden = Path(golden or default_golden_dir())
    return sorted(p.name for p in golden.iterdir() if (p / "case.json").exists())
