"""Benchmarks: our kernel, our ``nanoBragg`` command and the C program.

Used by ``nbnumba bench`` (see ``cli/bench_cmd.py``) and by the tests.  For each
case it measures

* **ours, kernel**: :func:`nbnumba.engine.simulate`'s ``timings['kernel_s']``,
  in this process, after one warm-up call (whose whole time is reported
  apart as ``first_call_s``: compilation or loading from Numba's cache);
* **ours, command**: ``nanoBragg -mode parity <flags>`` as a subprocess in a
  temporary folder (start-up, parsing, file output included), with
  ``NUMBA_NUM_THREADS`` set to the thread count;
* **C**: the C program (path from ``--c-bin`` / ``$NB_C_BIN``) as a
  subprocess with ``OMP_NUM_THREADS`` set to the same thread count.

C and our command alternate run by run (C, ours, C, ours ...); medians are
reported with the ratio ``C time / our time`` (above 1: we are faster).
It also measures the first-run compile time (our command with an empty
``NUMBA_CACHE_DIR``), peak resident memory (``/usr/bin/time -v`` or
``getrusage``), spec mode against parity mode and float32 against float64.

The ``scan`` workload (:func:`measure_scan`) renders a 90-frame rotation
scan with :func:`nbnumba.scan.run_scan`, locally and on local Dask clusters,
in frames per second, counts in every rendering process what is loaded,
compiled or read per frame (:func:`install_scan_probe`), and times one
finite-difference gradient per parameter against one forward render
(:func:`measure_gradients`).

Results go to a JSON file and, when matplotlib is installed, a PNG plot.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import io
import json
import math
import os
import platform
import shutil
import statistics as _stats
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

SCHEMA = "nbnumba-bench/1"
COMMON = ["-nonoise", "-nopgm", "-noprogress"]

W1 = ("-default_F 100 -cell 100 100 100 90 90 90 -lambda 6.2 -N 5 -detpixels 1024 -pixel 0.1 "
      "-distance 100").split()
W2 = ("-default_F 100 -cell 70 80 90 75 85 95 -lambda 1.0 -N 5 -detpixels 512 -pixel 0.1 -distance 100 "
      "-misset 10 20 30 -mosaic 0.5 -mosaic_dom 5 -phi 0 -osc 90 -phisteps 9 -oversample 2").split()
W3_CASE = "pilatus_roi"
W3_INPUTS = ("A.mat", "scaled.hkl")
# quick mode renders this 64 x 64 region of W3's Pilatus detector only
W3_QUICK_ROI = ["-roi", "1100", "1163", "1000", "1063"]

# "scan": a 90-frame rotation scan (local and Dask) and the cost of gradients (measure_scan)
# "startup": where a small job's time goes before any pixel (measure_startup)
WORKLOADS = ("W1", "W2", "W3", "scaling", "specA", "scan", "startup")

# Spec A's AT-PERF setups (written for the PyTorch port) as benchmark cases, not timed tests
# (docs/spec_a.md).  AT-PERF-001/003/005 are W1 and the detector series (256 ... 2048), with the
# float32/float64 and compile measurements; AT-PERF-002's thread counts are the threads series.
SPEC_A_PERF = {
    "AT-PERF-002": "-default_F 100 -cell 100 100 100 90 90 90 -lambda 1.0 -N 10 -detpixels 1024 -distance 100",
    "AT-PERF-004": "-default_F 100 -cell 70 80 90 85 95 105 -lambda 1.5 -N 8 -misset 10 5 3 -detpixels 512 "
                   "-distance 100",
    # -hdiv/-vdiv of the AT are not nanoBragg flags: -hdivrange/-vdivrange (Spec A's own note)
    "AT-PERF-006": "-default_F 100 -cell 100 100 100 90 90 90 -lambda 6.2 -N 5 -detpixels 256 -distance 100 "
                   "-oversample 2 -detector_thick 200 -detector_thicksteps 3 -hdivrange 0.1 -vdivrange 0.1 "
                   "-hdivstep 0.02 -vdivstep 0.02 -dispersion 0.05 -dispsteps 3",
}

# scaling series: (full, quick) parameter lists
DETECTOR_SIDES = ([256, 512, 1024, 2048], [32, 64])
PHI_STEPS = ([1, 4, 16, 64], [1, 2])
MOSAIC_DOMAINS = ([1, 10, 30, 100], [1, 2])
SERIES_DETECTOR = (256, 32)  # detector side of the W2-based series (full, quick)
MAIN_DETECTOR = 64  # detector side of W1 and W2 in quick mode


class BenchError(RuntimeError):
    """A benchmarked program failed or an input is missing."""


# --------------------------------------------------------------------------- cases


def set_flag(args: list[str], flag: str, *values) -> list[str]:
    """Return ``args`` with ``flag``'s values replaced (appended when absent)."""
    out = list(args)
    vals = [str(v) for v in values]
    if flag in out:
        i = out.index(flag)
        out[i + 1:i + 1 + len(vals)] = vals
    else:
        out += [flag, *vals]
    return out


def w3_args(golden_dir: Path | None = None, roi: list[str] | None = None) -> list[str]:
    """The golden case ``pilatus_roi``'s flags without ``-roi`` and ``-floatfile``."""
    from .golden import default_golden_dir, load_case

    golden = Path(golden_dir) if golden_dir else Path(os.environ.get("NB_GOLDEN_DIR") or default_golden_dir())
    args = load_case(golden, W3_CASE)["args"]
    out, i = [], 0
    while i < len(args):
        if args[i] == "-roi":
            i += 5
            continue
        if args[i] == "-floatfile":
            i += 2
            continue
        out.append(args[i])
        i += 1
    if roi:
        out += list(roi)
    return [a for a in out if a not in COMMON]


def golden_inputs_dir(golden_dir: Path | None = None) -> Path:
    from .golden import default_golden_dir

    golden = Path(golden_dir) if golden_dir else Path(os.environ.get("NB_GOLDEN_DIR") or default_golden_dir())
    return golden / "inputs"


@dataclass
class Case:
    """One benchmarked command line."""

    name: str
    group: str  # W1, W2, W3, detector, phisteps, mosaic, threads
    args: list  # C flags without COMMON
    threads: int
    param: float | None = None  # the varied quantity of a scaling series
    inputs: list = field(default_factory=list)  # files copied into the working folder
    repeats: int | None = None  # overrides the global repeat count

    @property
    def argv(self) -> list[str]:
        return list(self.args) + COMMON


def build_cases(workloads, quick: bool, threads: int, golden_dir: Path | None = None,
                w3_repeats: int | None = None) -> list[Case]:
    """The cases of the selected workloads."""
    q = 1 if quick else 0
    cases: list[Case] = []
    w1 = set_flag(W1, "-detpixels", MAIN_DETECTOR) if quick else list(W1)
    w2 = set_flag(W2, "-detpixels", MAIN_DETECTOR) if quick else list(W2)
    if "W1" in workloads:
        cases.append(Case("W1", "W1", w1, threads))
    if "W2" in workloads:
        cases.append(Case("W2", "W2", w2, threads))
    if "W3" in workloads:
        inputs = golden_inputs_dir(golden_dir)
        files = [inputs / f for f in W3_INPUTS]
        missing = [str(f) for f in files if not f.exists()]
        if missing:
            raise BenchError(f"W3 needs {', '.join(missing)} (set NB_GOLDEN_DIR to the golden folder)")
        args = w3_args(golden_dir, roi=W3_QUICK_ROI if quick else None)
        cases.append(Case("W3" + ("-roi64" if quick else ""), "W3", args, threads, inputs=files,
                          repeats=w3_repeats))
    if "specA" in workloads:
        for name, flags in SPEC_A_PERF.items():
            args = flags.split()
            cases.append(Case(name, "specA", set_flag(args, "-detpixels", MAIN_DETECTOR) if quick else args, threads))
    if "scaling" in workloads:
        for side in DETECTOR_SIDES[q]:
            cases.append(Case(f"detector-{side}", "detector", set_flag(W1, "-detpixels", side), threads,
                              param=side))
        small = set_flag(W2, "-detpixels", SERIES_DETECTOR[q])
        for n in PHI_STEPS[q]:
            cases.append(Case(f"phisteps-{n}", "phisteps", set_flag(small, "-phisteps", n), threads, param=n))
        one_phi = set_flag(small, "-phisteps", 1)
        for n in MOSAIC_DOMAINS[q]:
            cases.append(Case(f"mosaic-{n}", "mosaic", set_flag(one_phi, "-mosaic_dom", n), threads, param=n))
        tmax = max(2, threads)
        tlist = [1]
        while tlist[-1] * 2 <= tmax:
            tlist.append(tlist[-1] * 2)
        if tlist[-1] != tmax:
            tlist.append(tmax)
        for t in tlist:
            cases.append(Case(f"threads-{t}", "threads", small, t, param=t))
    return cases


# --------------------------------------------------------------------------- running programs


def our_command() -> list[str]:
    """How to start our ``nanoBragg`` command (the installed script if found)."""
    here = Path(sys.executable).parent / "nanoBragg"
    if here.exists():
        return [str(here)]
    found = shutil.which("nanoBragg")
    if found:
        return [found]
    return [sys.executable, "-m", "nbnumba"]


GNU_TIME = "/usr/bin/time"


def _has_gnu_time() -> bool:
    if not os.path.exists(GNU_TIME):
        return False
    try:
        r = subprocess.run([GNU_TIME, "-v", "-o", os.devnull, "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return r.returncode == 0


@dataclass
class Run:
    wall_s: float
    rss_kb: int | None


def run_program(argv: list[str], cwd: Path, env: dict, timeout: float | None = None) -> Run:
    """Run a program, return its wall time and peak resident memory; raise on failure."""
    full_env = dict(os.environ)
    full_env.update(env)
    use_time = _has_gnu_time()
    stats_file = Path(cwd) / ".bench_time.txt"
    if use_time:
        cmd = [GNU_TIME, "-v", "-o", str(stats_file)] + list(argv)
        t0 = time.perf_counter()
        r = subprocess.run(cmd, cwd=cwd, env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           timeout=timeout)
        wall = time.perf_counter() - t0
        rss = None
        if stats_file.exists():
            for line in stats_file.read_text().splitlines():
                if "Maximum resident set size" in line:
                    rss = int(line.split(":")[-1].strip())
            stats_file.unlink()
    else:
        # a fresh Python parent, so that RUSAGE_CHILDREN holds this program alone
        probe = ("import json, resource, subprocess, sys, time\n"
                 "t = time.perf_counter()\n"
                 "r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL)\n"
                 "w = time.perf_counter() - t\n"
                 "print(json.dumps([r.returncode, w, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss]))\n")
        r = subprocess.run([sys.executable, "-c", probe] + list(argv), cwd=cwd, env=full_env,
                           capture_output=True, text=False, timeout=timeout)
        wall = rss = None
        if r.returncode == 0:
            code, wall, rss = json.loads(r.stdout.decode().strip().splitlines()[-1])
            if code != 0:
                r = subprocess.CompletedProcess(r.args, code, r.stdout, r.stderr)
            if sys.platform == "darwin":
                rss //= 1024
    if r.returncode != 0:
        tail = (r.stderr or b"").decode(errors="replace").strip().splitlines()[-5:]
        raise BenchError(f"{' '.join(argv[:2])} ... failed (exit {r.returncode}): {' | '.join(tail)}")
    return Run(wall, rss)


@contextlib.contextmanager
def workdir(inputs=()):
    with tempfile.TemporaryDirectory(prefix="nbbench-") as tmp:
        for f in inputs:
            shutil.copy(f, tmp)
        yield Path(tmp)


def _load1() -> float | None:
    """One-minute load average (other programs running distort the timings)."""
    try:
        return os.getloadavg()[0]
    except OSError:  # pragma: no cover
        return None


def _median(xs):
    return float(_stats.median(xs)) if xs else None


def _ratio(a, b):
    return (a / b) if (a is not None and b) else None


class KernelTimer:
    """Times :func:`simulate` in this process for one configuration."""

    def __init__(self, argv, cwd: Path, mode: str, dtype: str, threads: int, backend: str):
        from .cargs import config_from_args

        with contextlib.chdir(cwd):
            self.cfg, _ = config_from_args(list(argv), mode=mode)
        self.dtype, self.threads, self.backend = dtype, threads, backend
        self.prepared = None

    def first(self) -> dict:
        from .engine import simulate

        t0 = time.perf_counter()
        res = simulate(self.cfg, backend=self.backend, dtype=self.dtype, nthreads=self.threads)
        total = time.perf_counter() - t0
        self.prepared = res.prepared
        return {"first_call_s": total, "first_kernel_s": res.timings["kernel_s"],
                "prepare_s": res.timings["prepare_s"]}

    def once(self) -> float:
        from .engine import simulate

        res = simulate(self.cfg, backend=self.backend, dtype=self.dtype, nthreads=self.threads,
                       prepared=self.prepared)
        return float(res.timings["kernel_s"])

    def work(self) -> dict:
        from .engine import rendered_mask

        prep = self.prepared
        pixels = int(rendered_mask(prep).sum())
        return {"pixels": pixels, "steps": int(prep.steps), "work": float(pixels) * int(prep.steps)}


# --------------------------------------------------------------------------- measurements


@dataclass
class Settings:
    quick: bool = False
    repeats: int = 3
    threads: int = 2
    c_bin: str | None = None
    backend: str = "cpu"
    workloads: tuple = WORKLOADS
    w3_repeats: int | None = None
    golden_dir: str | None = None
    compile: bool = True
    scan_workers: tuple = (1, 2)  # Dask worker counts of the scan workload
    server: bool = False  # also time our command through a command server (`nbnumba server`)


def _ours_env(threads: int) -> dict:
    return {"NUMBA_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}


def _c_env(threads: int) -> dict:
    return {"OMP_NUM_THREADS": str(threads)}


def _ours_argv(case_argv, mode="parity", dtype=None, backend="cpu") -> list[str]:
    argv = our_command() + ["-mode", mode] + list(case_argv)
    if dtype:
        argv += ["-dtype", dtype]
    if backend != "cpu":
        argv += ["-backend", backend]
    return argv


def our_admin_command() -> list[str]:
    """How to start our ``nbnumba`` command (the installed entry point if found)."""
    here = Path(sys.executable).parent / "nbnumba"
    if here.exists():
        return [str(here)]
    return [sys.executable, "-c", "from nbnumba_cli.main import main; main()"]


@contextlib.contextmanager
def command_server(env: dict):
    """A command server (``nbnumba server``) for commands run with ``env``, in a private runtime folder.

    Yields the extra environment that sends a command to it (and fails the
    command when the server cannot take it, so a timing is never silently a
    one-shot run).
    """
    script = our_command()
    if len(script) != 1 or Path(script[0]).name != "nanoBragg":
        raise BenchError("timing the command server needs the installed nanoBragg script (none found next to "
                         f"{sys.executable} or on PATH)")
    with tempfile.TemporaryDirectory(prefix="nbbench-server-") as runtime:
        os.chmod(runtime, 0o700)
        extra = dict(env, XDG_RUNTIME_DIR=runtime)
        full = dict(os.environ, **extra)
        full.pop("NBNUMBA_SERVER", None)
        r = subprocess.run(our_admin_command() + ["server", "start", "--idle-timeout", "3600"], env=full,
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise BenchError(f"cannot start a command server: {r.stderr.strip()[-300:]}")
        try:
            yield dict(extra, NBNUMBA_SERVER="require")
        finally:
            subprocess.run(our_admin_command() + ["server", "stop"], env=full, capture_output=True)


def measure_case(case: Case, s: Settings, log=print) -> dict:
    """Kernel, command and C timings of one case (C and ours alternating; with ``s.server`` also
    our command through a command server)."""
    repeats = case.repeats or s.repeats
    load = _load1()
    c_runs, cmd_runs, k_runs, srv_runs = [], [], [], []
    c_rss, our_rss = [], []
    with workdir(case.inputs) as wd, (command_server(_ours_env(case.threads)) if s.server
                                      else contextlib.nullcontext()) as srv_env:
        timer = KernelTimer(case.argv, wd, "parity", "float64", case.threads, s.backend)
        first = timer.first()
        work = timer.work()
        ours = _ours_argv(case.argv, backend=s.backend)
        for _ in range(repeats):
            if s.c_bin:
                r = run_program([s.c_bin] + case.argv, wd, _c_env(case.threads))
                c_runs.append(r.wall_s)
                if r.rss_kb:
                    c_rss.append(r.rss_kb)
            r = run_program(ours, wd, _ours_env(case.threads))
            cmd_runs.append(r.wall_s)
            if r.rss_kb:
                our_rss.append(r.rss_kb)
            if srv_env is not None:
                srv_runs.append(run_program(ours, wd, srv_env).wall_s)
            k_runs.append(timer.once())
    c_med, cmd_med, k_med = _median(c_runs), _median(cmd_runs), _median(k_runs)
    out = {
        "name": case.name, "group": case.group, "param": case.param, "threads": case.threads,
        "args": case.argv, "repeats": repeats, **work,
        "ours_kernel": {"median_s": k_med, "runs_s": k_runs, **first},
        "ours_command": {"median_s": cmd_med, "runs_s": cmd_runs,
                         "peak_rss_kb": max(our_rss) if our_rss else None},
        "c": ({"median_s": c_med, "runs_s": c_runs, "peak_rss_kb": max(c_rss) if c_rss else None}
              if s.c_bin else None),
        "ratio_command": _ratio(c_med, cmd_med),
        "ratio_kernel": _ratio(c_med, k_med),
        "load_avg_1m_before": load,
    }
    if srv_runs:
        out["ours_server"] = {"median_s": _median(srv_runs), "runs_s": srv_runs}
        out["ratio_server"] = _ratio(c_med, out["ours_server"]["median_s"])
    log(_case_line(out))
    return out


def measure_variant(case: Case, mode: str, dtype: str, s: Settings, log=print) -> dict:
    """Our kernel and command for one (mode, dtype) of a case."""
    repeats = case.repeats or s.repeats
    cmd_runs, k_runs = [], []
    with workdir(case.inputs) as wd:
        timer = KernelTimer(case.argv, wd, mode, dtype, case.threads, s.backend)
        first = timer.first()
        ours = _ours_argv(case.argv, mode=mode, dtype=dtype, backend=s.backend)
        for _ in range(repeats):
            cmd_runs.append(run_program(ours, wd, _ours_env(case.threads)).wall_s)
            k_runs.append(timer.once())
    out = {"workload": case.name, "mode": mode, "dtype": dtype, "threads": case.threads, "repeats": repeats,
           "ours_kernel": {"median_s": _median(k_runs), "runs_s": k_runs, **first},
           "ours_command": {"median_s": _median(cmd_runs), "runs_s": cmd_runs}}
    log(f"  {case.name:<14} {mode:>6} {dtype:>7}: kernel {_fmt(out['ours_kernel']['median_s'])}  "
        f"command {_fmt(out['ours_command']['median_s'])}")
    return out


COMPILE_PROBE = """
import json, sys, time
t = time.perf_counter()
from nbnumba.cargs import config_from_args
from nbnumba.engine import simulate
imp = time.perf_counter() - t
cfg, _ = config_from_args(sys.argv[1:], mode="parity")
out = {"import_s": imp}
for key in ("first", "second"):
    t = time.perf_counter()
    r = simulate(cfg, backend=BACKEND, nthreads=THREADS)
    out[key + "_call_s"] = time.perf_counter() - t
    out[key + "_kernel_s"] = r.timings["kernel_s"]
print(json.dumps(out))
"""


def measure_compile(s: Settings, log=print) -> dict:
    """First-run cost with empty kernel caches (Numba's and the native libraries')."""
    argv = set_flag(W1, "-detpixels", 64) + COMMON
    out = {"args": argv}
    with workdir() as wd:
        env = dict(_ours_env(s.threads), NUMBA_CACHE_DIR=str(wd / "numba-cache-cmd"),
                   NBNUMBA_CACHE_DIR=str(wd / "native-cache-cmd"))
        ours = _ours_argv(argv, backend=s.backend)
        cold = run_program(ours, wd, env)
        warm = run_program(ours, wd, env)
        out.update(command_cold_s=cold.wall_s, command_warm_s=warm.wall_s,
                   command_compile_s=cold.wall_s - warm.wall_s, command_cold_rss_kb=cold.rss_kb)
        if not s.quick:
            probe = COMPILE_PROBE.replace("BACKEND", repr(s.backend)).replace("THREADS", str(s.threads))
            full_env = dict(os.environ, **_ours_env(s.threads), NUMBA_CACHE_DIR=str(wd / "numba-cache-kernel"),
                            NBNUMBA_CACHE_DIR=str(wd / "native-cache-kernel"))
            r = subprocess.run([sys.executable, "-c", probe] + argv, cwd=wd, env=full_env, capture_output=True,
                               text=True)
            if r.returncode != 0:
                raise BenchError("compile probe failed: " + r.stderr.strip()[-500:])
            k = json.loads(r.stdout.strip().splitlines()[-1])
            out.update(kernel_import_s=k["import_s"], kernel_first_call_s=k["first_call_s"],
                       kernel_second_call_s=k["second_call_s"],
                       kernel_compile_s=k["first_call_s"] - k["second_call_s"])
    log(f"  compile: command cold {_fmt(out['command_cold_s'])} warm {_fmt(out['command_warm_s'])}"
        + (f"; kernel first call {_fmt(out['kernel_first_call_s'])} second {_fmt(out['kernel_second_call_s'])}"
           if "kernel_first_call_s" in out else ""))
    return out


# --------------------------------------------------------------------------- scans and gradients

# The scan workload: a W2-like crystal (triclinic cell, misset, 5 mosaic domains) with a structure-factor
# file, 90 one-degree frames of 2 phi steps each, on W2's 51.2 mm detector (512 x 512 pixels of 0.1 mm).
SCAN_ARGS = ("-cell 70 80 90 75 85 95 -lambda 1.0 -N 5 -detpixels 512 -pixel 0.1 -distance 100 "
             "-misset 10 20 30 -mosaic 0.5 -mosaic_dom 5 -phisteps 2 -oversample 1").split()
SCAN_FRAMES = (90, 6)  # (full, quick)
SCAN_DETECTOR = (512, 64)  # pixels on a side (full, quick); the detector stays 51.2 mm wide
SCAN_DETECTOR_MM = 51.2
SCAN_STEP_DEG = 1.0
SCAN_HKL_MAX = 15  # the synthetic P1 table holds -15..15 on each index
SCAN_WORKERS = (1, 2)  # Dask worker counts (local cluster, processes, one thread each)
SCAN_FORMATS = ("float", "smv")  # what `nbnumba scan` writes per frame by default
GRADIENT_PARAMS = ("distance", "cell_angstrom[0]", "misset[0]")


def write_scan_hkl(path, hmax: int = SCAN_HKL_MAX, seed: int = 0) -> int:
    """Write a P1 text structure-factor file ``h k l F`` for ``-hmax..hmax`` on each index.

    Parameters
    ----------
    path : str or path
        File to write.
    hmax : int
        Largest index magnitude.
    seed : int
        Seed of the (uniform, 10 to 200) amplitudes.

    Returns
    -------
    int
        Number of reflections written.
    """
    import numpy as np

    idx = np.arange(-hmax, hmax + 1)
    h, k, l = (a.ravel() for a in np.meshgrid(idx, idx, idx, indexing="ij"))  # noqa: E741
    F = np.random.default_rng(seed).uniform(10.0, 200.0, h.size)
    lines = [f"{a} {b} {c} {x:.2f}" for a, b, c, x in zip(h.tolist(), k.tolist(), l.tolist(), F.tolist())]
    Path(path).write_text("\n".join(lines) + "\n")
    return int(h.size)


def scan_args(quick: bool, hkl_path) -> list[str]:
    """The scan workload's flags (detector size by ``quick``), reading ``hkl_path``."""
    side = SCAN_DETECTOR[1 if quick else 0]
    args = set_flag(SCAN_ARGS, "-detpixels", side)
    args = set_flag(args, "-pixel", f"{SCAN_DETECTOR_MM / side:g}")
    return ["-hkl", os.fspath(hkl_path)] + args + COMMON


# What the probe counts, per process.  It answers "is anything compiled, loaded or read once per frame?":
# simulate and prepare run once per frame by design (each frame has its own spindle angle); kernel library
# loads, native builds and Numba compilations must not grow with the frames, and the input files must not
# be opened at all once the configuration is built.
_PROBE: dict = {"active": False, "installed": False, "inputs": frozenset(), "counts": {}, "saved": [],
                "listener": None, "hook": False}
PROBE_KEYS = ("simulate_calls", "prepare_calls", "kernel_library_loads", "native_builds", "numba_compiles",
              "input_opens")


def _probe_count(key: str, n: int = 1) -> None:
    if _PROBE["active"]:
        _PROBE["counts"][key] = _PROBE["counts"].get(key, 0) + n


def _probe_audit(event, args) -> None:
    # an audit hook must never raise: it would fail the open() it watches
    try:
        if event == "open" and _PROBE["active"] and args and isinstance(args[0], (str, bytes, os.PathLike)):
            path = os.path.abspath(os.fsdecode(args[0]))
            if path in _PROBE["inputs"]:
                _probe_count("input_opens")
    except Exception:  # noqa: BLE001
        pass


def _counting(key: str, fn, timed: bool = False):
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if not timed:
            _probe_count(key)
            return fn(*args, **kwargs)
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            _probe_count(key)
            if _PROBE["active"]:
                _PROBE["counts"].setdefault("simulate_s", []).append(time.perf_counter() - t0)

    wrapper._nbnumba_probe = fn
    return wrapper


def install_scan_probe(inputs=()) -> None:
    """Count, in this process, what a scan does per frame (see :func:`scan_probe_counts`).

    Wraps :func:`nbnumba.engine.simulate` (timed) and the ``prepare`` it
    calls, the native kernel library loader and builder, listens to Numba's
    ``numba:compile`` events and adds an audit hook counting opens of
    ``inputs``.  Calling it again resets the counts.  Run it on Dask workers
    with ``client.run``.

    Parameters
    ----------
    inputs : iterable of str
        Input files whose opens are counted.
    """
    from . import engine

    _PROBE["inputs"] = frozenset(os.path.abspath(os.fspath(p)) for p in inputs)
    _PROBE["counts"] = {k: 0 for k in PROBE_KEYS}
    _PROBE["active"] = True
    if _PROBE["installed"]:
        return
    targets = [(engine, "simulate", "simulate_calls", True), (engine, "prepare", "prepare_calls", False)]
    try:
        from .kernels import native, native_build

        targets += [(native, "_load_or_build", "kernel_library_loads", False),
                    (native_build, "build", "native_builds", False)]
    except ImportError:  # pragma: no cover - no native kernels in this build
        pass
    for module, name, key, timed in targets:
        fn = getattr(module, name, None)
        if fn is not None:
            _PROBE["saved"].append((module, name, fn))
            setattr(module, name, _counting(key, fn, timed))
    try:
        from numba.core import event

        class _Compiles(event.Listener):
            def on_start(self, ev):
                _probe_count("numba_compiles")

            def on_end(self, ev):
                pass

        _PROBE["listener"] = _Compiles()
        event.register("numba:compile", _PROBE["listener"])
    except ImportError:  # pragma: no cover - numba is a dependency
        pass
    if not _PROBE["hook"]:
        sys.addaudithook(_probe_audit)  # cannot be removed: it does nothing while the probe is off
        _PROBE["hook"] = True
    _PROBE["installed"] = True


def scan_probe_counts() -> dict:
    """The counts since :func:`install_scan_probe`, with the pid and each ``simulate`` call's seconds."""
    out = {k: int(_PROBE["counts"].get(k, 0)) for k in PROBE_KEYS}
    out["simulate_s"] = list(_PROBE["counts"].get("simulate_s", []))
    out["pid"] = os.getpid()
    return out


def remove_scan_probe() -> None:
    """Undo :func:`install_scan_probe` in this process (the audit hook stays, inactive)."""
    _PROBE["active"] = False
    for module, name, fn in reversed(_PROBE["saved"]):
        setattr(module, name, fn)
    _PROBE["saved"] = []
    if _PROBE["listener"] is not None:
        from numba.core import event

        event.unregister("numba:compile", _PROBE["listener"])
        _PROBE["listener"] = None
    _PROBE["installed"] = False


@contextlib.contextmanager
def scan_probe(inputs=()):
    """:func:`install_scan_probe` for the ``with`` block, then :func:`remove_scan_probe`."""
    install_scan_probe(inputs)
    try:
        yield
    finally:
        remove_scan_probe()


def _process_summary(counts: dict) -> dict:
    """One process's counts, with its first simulate call against the median of the others."""
    times = counts.get("simulate_s", [])
    rest = _median(times[1:])
    out = {k: counts[k] for k in PROBE_KEYS}
    out.update(pid=counts.get("pid"), first_frame_s=times[0] if times else None, rest_median_s=rest,
               first_over_rest=_ratio(times[0], rest) if times else None, max_s=max(times) if times else None)
    return out


def _run_scan_once(scan, executor, label: str, *, workers, nthreads, out_dir, formats, inputs, client=None,
                   log=print) -> tuple[dict, list]:
    """Render ``scan`` once on ``executor``; the row of the scan table and the records."""
    from .scan import run_scan

    load = _load1()
    if client is not None:
        client.run(install_scan_probe, list(inputs))
    else:
        install_scan_probe(inputs)
    t0 = time.perf_counter()
    try:
        records = run_scan(scan, executor=executor, out_dir=out_dir, formats=formats, nthreads=nthreads,
                           inputs=inputs)
    finally:
        wall = time.perf_counter() - t0
        if client is not None:
            per_process = list(client.run(scan_probe_counts).values())
        else:
            per_process = [scan_probe_counts()]
            remove_scan_probe()
    procs = [_process_summary(c) for c in per_process]
    frame_s = [r.timings.get("prepare_s", 0.0) + r.timings.get("kernel_s", 0.0) for r in records]
    row = {
        "run": label, "executor": executor.name, "workers": workers, "threads_per_render": nthreads,
        "writes_files": out_dir is not None, "formats": list(formats) if out_dir is not None else [],
        "frames": len(records), "wall_s": wall, "fps": len(records) / wall if wall > 0 else None,
        "frame_s": {"first_s": frame_s[0] if frame_s else None, "rest_median_s": _median(frame_s[1:]),
                    "kernel_median_s": _median([r.timings.get("kernel_s", 0.0) for r in records]),
                    "prepare_median_s": _median([r.timings.get("prepare_s", 0.0) for r in records])},
        "frame_times_s": frame_s,
        "processes": procs,
        "totals": {k: sum(p[k] for p in procs) for k in PROBE_KEYS},
        "load_avg_1m_before": load, "load_avg_1m_after": _load1(),
    }
    log(_scan_line(row))
    return row, records


def _file_digests(records) -> list:
    return [{fmt: f["sha256"] for fmt, f in sorted(r.files.items())} for r in records]


def measure_scan(s: Settings, log=print) -> dict:
    """The rotation-scan workload: frames per second, local and on local Dask clusters, and per-frame costs.

    The scan (``SCAN_FRAMES`` one-degree frames of :data:`SCAN_ARGS`, with a
    synthetic ``-hkl`` file) runs with :func:`nbnumba.scan.run_scan` writing
    the files ``nbnumba scan`` writes by default (float and SMV, and the
    manifest) into a temporary folder:

    * locally with ``s.threads`` threads per render, with and without files,
      and with one thread when ``s.threads`` > 1;
    * on a ``dask.distributed`` ``LocalCluster`` of ``n`` worker processes
      with one thread each, for each ``n`` of ``s.scan_workers`` (one render
      thread each); the cluster's start-up is timed apart.

    Each run counts, in every process that renders (:func:`install_scan_probe`),
    the renders, prepares, kernel library loads, native builds, Numba
    compilations and opens of the input file, and compares each process's
    first render with the median of its others.  The files written on Dask
    must be byte-identical to the local ones (sha256 of every file).

    Parameters
    ----------
    s : Settings
    log : callable

    Returns
    -------
    dict
        The ``scan`` section of the results.
    """
    import pickle

    from .cargs import config_from_args
    from .scan import _without_table, phi_scan

    q = 1 if s.quick else 0
    n_frames = SCAN_FRAMES[q]
    with workdir() as wd:
        hkl = wd / "scan.hkl"
        reflections = write_scan_hkl(hkl)
        argv = scan_args(s.quick, hkl)
        with scan_probe([hkl]), contextlib.chdir(wd):
            t0 = time.perf_counter()
            cfg, _run = config_from_args(argv)
            config_s = time.perf_counter() - t0
            opens_reading = scan_probe_counts()["input_opens"]
        scan = phi_scan(cfg, start_deg=0.0, step_deg=SCAN_STEP_DEG, n_frames=n_frames)
        inputs = [str(hkl)]
        out = {
            "args": argv, "frames": n_frames, "step_deg": SCAN_STEP_DEG,
            "detector_pixels": [int(cfg.spixels), int(cfg.fpixels)],
            "hkl_reflections": reflections, "config_s": config_s,
            "input_opens_while_reading_config": opens_reading,
            # what one frame's task carries (the table goes to each worker once: scan._without_table)
            "task_config_bytes": len(pickle.dumps(_without_table(scan.config(0), cfg.hkl))),
            "hkl_table_bytes": len(pickle.dumps(cfg.hkl)),
            "formats": list(SCAN_FORMATS), "threads": s.threads, "runs": [],
        }
        log(f"scan: {n_frames} frames of {SCAN_STEP_DEG:g} deg, {' '.join(argv[2:])}; files: "
            f"{', '.join(SCAN_FORMATS)} + manifest")
        log(_scan_header())
        # a warm-up frame in this process, so that the local runs do not pay for loading the kernel
        from .engine import simulate

        t0 = time.perf_counter()
        simulate(scan.config(0), nthreads=s.threads)
        out["warmup_s"] = time.perf_counter() - t0

        from .executors import LocalExecutor

        local_digests = None
        plan = [("local", s.threads, True)] + [("local, no files", s.threads, False)]
        if s.threads > 1:
            plan.append(("local, 1 thread", 1, True))
        for label, threads, files in plan:
            folder = wd / f"frames-{len(out['runs'])}" if files else None
            row, records = _run_scan_once(scan, LocalExecutor(), label, workers=None, nthreads=threads,
                                          out_dir=folder, formats=SCAN_FORMATS, inputs=inputs, log=log)
            if files and local_digests is None:
                local_digests = _file_digests(records)
            out["runs"].append(row)
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
        workers = tuple(s.scan_workers)
        if workers:
            try:
                import distributed  # noqa: F401
            except ImportError:
                out["dask"] = "not measured: dask.distributed is not installed (pip install 'nbnumba[dask]')"
                workers = ()
                log("  " + out["dask"])
        from .executors import DaskExecutor

        for n in workers:
            t0 = time.perf_counter()
            with DaskExecutor(n_workers=n, threads_per_worker=1, processes=True) as ex:
                ex.client.wait_for_workers(n)
                start_s = time.perf_counter() - t0
                folder = wd / f"frames-dask-{n}"
                row, records = _run_scan_once(scan, ex, f"dask, {n} worker{'s' if n > 1 else ''}", workers=n,
                                              nthreads=1, out_dir=folder, formats=SCAN_FORMATS, inputs=inputs,
                                              client=ex.client, log=log)
            row["cluster_start_s"] = start_s
            digests = _file_digests(records)
            row["identical_to_local"] = digests == local_digests
            row["frames_differing_from_local"] = sum(a != b for a, b in zip(digests, local_digests or []))
            out["runs"].append(row)
            shutil.rmtree(folder, ignore_errors=True)
        dask_fps = {str(r["workers"]): r["fps"] for r in out["runs"] if r["executor"] == "dask"}
        out["dask_fps_by_workers"] = dask_fps
        if "1" in dask_fps:
            out["dask_speedup_over_1_worker"] = {k: _ratio(v, dask_fps["1"]) for k, v in dask_fps.items()}
        out["per_frame"] = _per_frame_verdict(out["runs"], n_frames)
        log("  per frame: " + out["per_frame"]["summary"])
        out["gradients"] = measure_gradients(scan.config(0), s, log=log)
    return out


def _per_frame_verdict(runs: list, n_frames: int) -> dict:
    """Whether anything was compiled, loaded or read once per frame, from the probe counts of every run."""
    loads = max(p["kernel_library_loads"] for r in runs for p in r["processes"])
    builds = sum(r["totals"]["native_builds"] for r in runs)
    compiles = sum(r["totals"]["numba_compiles"] for r in runs)
    opens = sum(r["totals"]["input_opens"] for r in runs)
    renders_ok = all(r["totals"]["simulate_calls"] == n_frames for r in runs)
    per_frame = loads > 1 or builds > 1 or compiles > 1 or opens > 0 or not renders_ok
    summary = (f"{'SOMETHING IS REPEATED PER FRAME' if per_frame else 'nothing repeated per frame'}: "
               f"at most {loads} kernel library load(s) per process, {builds} native build(s) and "
               f"{compiles} Numba compilation(s) over all runs, {opens} open(s) of the input file after reading "
               f"the configuration; one render and one prepare per frame: {'yes' if renders_ok else 'NO'}")
    return {"repeated_per_frame": per_frame, "max_kernel_library_loads_per_process": loads,
            "native_builds": builds, "numba_compiles": compiles, "input_opens": opens,
            "one_render_per_frame": renders_ok, "summary": summary}


def measure_gradients(cfg, s: Settings, params=GRADIENT_PARAMS, log=print) -> dict:
    """The cost of one finite-difference gradient per parameter, against one forward render.

    Times :func:`nbnumba.gradients.render_image` (the forward render the
    gradients use, float64 image), then :func:`nbnumba.gradients.gradient`
    for each parameter alone (resolving the configuration and two renders:
    a central difference) and for all of them together, and
    :func:`nbnumba.reflection_fit.reflection_jacobian`: the exact derivative
    of the image with respect to every reflection's F^2 (the image is linear
    in F^2) in one pass.  Medians of ``s.repeats`` after a warm-up call; the
    reflection Jacobian is skipped in quick mode (its kernel takes about 20 s
    to compile the first time).

    Parameters
    ----------
    cfg : SimConfig
        The configuration to differentiate.
    s : Settings
    params : sequence of str
        Parameters (field names or components).
    log : callable

    Returns
    -------
    dict
        The ``gradients`` section of the results.
    """
    from .gradients import gradient, render_image

    repeats = 1 if s.quick else s.repeats
    threads = s.threads

    def timed(fn):
        t0 = time.perf_counter()
        value = fn()
        return time.perf_counter() - t0, value

    first_s, image = timed(lambda: render_image(cfg, nthreads=threads))
    forward = _median([timed(lambda: render_image(cfg, nthreads=threads))[0] for _ in range(repeats)])
    out = {"threads": threads, "repeats": repeats, "forward_first_s": first_s, "forward_s": forward,
           "pixels": int(image.size), "image_max": float(image.max()),
           "method": "central differences, gradients.gradient (default steps)",
           "parameters": []}
    log(f"gradients ({threads} threads, medians of {repeats}): forward render {_fmt(forward)}")
    for p in params:
        gradient(cfg, [p], nthreads=threads)  # warm-up
        runs = [timed(lambda p=p: gradient(cfg, [p], nthreads=threads)) for _ in range(repeats)]
        sec = _median([r[0] for r in runs])
        g = runs[-1][1][p]
        row = {"parameter": p, "seconds": sec, "forward_renders": _ratio(sec, forward),
               "nonzero_pixels": int((g != 0).sum()), "finite": bool(math.isfinite(float(g.sum())))}
        out["parameters"].append(row)
        log(f"  d image / d {p:<18} {_fmt(sec)}  = {_num(row['forward_renders'], 2)} forward renders")
    total = _median([timed(lambda: gradient(cfg, list(params), nthreads=threads))[0] for _ in range(repeats)])
    out["all_at_once"] = {"parameters": list(params), "seconds": total,
                          "seconds_per_parameter": total / len(params),
                          "forward_renders_per_parameter": _ratio(total / len(params), forward)}
    log(f"  all {len(params)} at once       {_fmt(total)}  = "
        f"{_num(out['all_at_once']['forward_renders_per_parameter'], 2)} forward renders per parameter")
    if s.quick:
        out["structure_factors"] = "not measured in quick mode (the reflection kernel compiles in about 20 s)"
        return out
    from .reflection_fit import reflection_jacobian

    first, jac = timed(lambda: reflection_jacobian(cfg, nthreads=threads))
    sec = _median([timed(lambda: reflection_jacobian(cfg, nthreads=threads))[0] for _ in range(repeats)])
    n_refl = int(jac.matrix.shape[1])
    out["structure_factors"] = {
        "method": "exact dI/dF^2 of every reflection on the image in one pass (reflection_fit.reflection_jacobian)",
        "first_call_s": first, "seconds": sec, "reflections": n_refl, "forward_renders": _ratio(sec, forward),
        "seconds_per_reflection": sec / n_refl if n_refl else None,
        "max_abs_image_difference": float(abs(jac.image() - image).max()),
        "finite_difference_equivalent_s": 2 * n_refl * forward,
    }
    log(f"  d image / d F^2, {n_refl} reflections at once: {_fmt(sec)} = "
        f"{_num(out['structure_factors']['forward_renders'], 2)} forward renders "
        f"(first call {_fmt(first)}); by finite differences it would take {2 * n_refl} renders")
    return out


def _scan_header() -> str:
    return (f"  {'run':<20} {'frames':>6} {'wall':>9} {'frames/s':>8} {'first':>8} {'median':>8} "
            f"{'loads':>5} {'builds':>6} {'compiles':>8} {'reads':>5}")


def _scan_line(r: dict) -> str:
    t = r["totals"]
    return (f"  {r['run']:<20} {r['frames']:>6} {_fmt(r['wall_s']):>9} {_num(r['fps'], 2):>8} "
            f"{_fmt(r['frame_s']['first_s']):>8} {_fmt(r['frame_s']['rest_median_s']):>8} "
            f"{t['kernel_library_loads']:>5} {t['native_builds']:>6} {t['numba_compiles']:>8} {t['input_opens']:>5}")


def machine_info(c_bin: str | None = None) -> dict:
    import numba
    import numpy

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        from importlib.metadata import version

        nb_version = version("nbnumba")
    except Exception:  # pragma: no cover
        nb_version = None
    info = {
        "cpu_model": cpu,
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "logical_cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numba": numba.__version__,
        "numpy": numpy.__version__,
        "nbnumba": nb_version,
        "numba_threading_layer_default": numba.config.THREADING_LAYER,
        "cpu_kernel": _cpu_kernel_in_use(),
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "c_bin": c_bin,
        "git_commit": _git_commit() or _installed_commit(),
        "git_modified": _git_modified(),
        # how nbnumba is installed, and the .pth files every Python start-up in this environment runs
        # (an editable install's finder and numba-cuda's redirector cost tens of ms per command)
        "install": _install_kind(),
        "startup_pth": _startup_pth(),
    }
    try:
        info["load_average_at_start"] = list(os.getloadavg())
    except OSError:  # pragma: no cover
        pass
    return info


def _cpu_kernel_in_use() -> str:
    """``native`` or ``jit``: which CPU kernel the runs use (see :mod:`nbnumba.kernels.native`)."""
    from .kernels import native

    try:
        return "native" if native.load("render", "float64", "float32") is not None else "jit"
    except Exception as exc:  # noqa: BLE001
        return f"error: {exc}"


STARTUP_STEPS = (
    ("python", ["-c", "pass"]),
    ("python + numpy", ["-c", "import numpy"]),
    ("python + nbnumba command modules", ["-c", "import nbnumba.runner, nbnumba.io.outputs, nbnumba.kernels.native"]),
)
TINY_RUN = "-default_F 100 -cell 100 100 100 90 90 90 -lambda 6.2 -N 5 -detpixels 1 -distance 100".split()


def measure_startup(s: Settings, log=print) -> dict:
    """Where a small job's time goes before any pixel: the interpreter, NumPy, our modules, a 1-pixel run.

    Each step is a fresh process (``sys.executable``), alternated with the
    others and with C's 1-pixel run, ``s.repeats`` times (at least 5);
    medians.  A small ``nanoBragg`` run cannot start faster than the
    ``python + numpy`` line.
    """
    repeats = max(5, s.repeats)
    steps = [(name, [sys.executable] + args) for name, args in STARTUP_STEPS]
    steps.append(("our nanoBragg, 1 pixel", _ours_argv(TINY_RUN + COMMON)))
    if s.c_bin:
        steps.append(("C nanoBragg, 1 pixel", [s.c_bin] + TINY_RUN + COMMON))
    served = "our nanoBragg through the command server, 1 pixel"
    if s.server:
        steps.append((served, _ours_argv(TINY_RUN + COMMON)))
    times = {name: [] for name, _ in steps}
    with workdir() as wd, (command_server(_ours_env(s.threads)) if s.server
                           else contextlib.nullcontext()) as srv_env:
        for _ in range(repeats):
            for name, argv in steps:
                env = (_c_env(s.threads) if name.startswith("C ") else srv_env if name == served
                       else _ours_env(s.threads))
                times[name].append(run_program(argv, wd, env).wall_s)
    rows = [{"step": name, "median_s": _median(ts), "runs_s": ts} for name, ts in times.items()]
    log("start-up (fresh processes, medians): " + "; ".join(f"{r['step']} {r['median_s']:.3f} s" for r in rows))
    return {"repeats": repeats, "steps": rows}


def precompile_bytecode() -> bool:
    """Byte-compile the installed packages, as ``pip install`` does for a wheel.

    An editable install writes its ``.pyc`` files on first import, unless
    ``PYTHONDONTWRITEBYTECODE`` is set; then every run would recompile the
    sources (about 20 ms), which is not how an installed program starts.
    Returns True when the byte code is in place.
    """
    import compileall
    import importlib.util

    # the command-line package is located, not imported: the library never imports it
    packages = [Path(__file__).resolve().parent]
    cli_spec = importlib.util.find_spec("nbnumba_cli")
    if cli_spec is not None and cli_spec.origin:
        packages.append(Path(cli_spec.origin).resolve().parent)
    ok = True
    for package in packages:
        with contextlib.redirect_stdout(io.StringIO()):
            ok &= bool(compileall.compile_dir(str(package), quiet=2))
    return ok


def _git_commit() -> str | None:
    try:
        r = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True,
                           text=True, timeout=10)
        return r.stdout.strip() or None if r.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def _direct_url() -> dict:
    """What pip recorded about where nbnumba was installed from (``direct_url.json``); {} when nothing."""
    try:
        from importlib.metadata import distribution

        text = distribution("nbnumba").read_text("direct_url.json")
        record = json.loads(text) if text else {}
    except Exception:  # noqa: BLE001 - not installed as a distribution, or an unreadable record
        return {}
    return record if isinstance(record, dict) else {}


def _installed_commit() -> str | None:
    """The commit pip recorded for an install from a git URL (``pip install git+file://...``)."""
    return (_direct_url().get("vcs_info") or {}).get("commit_id")


def _install_kind() -> str:
    """``editable`` (the package is read from a checkout) or ``installed`` (copied into site-packages)."""
    if (_direct_url().get("dir_info") or {}).get("editable"):
        return "editable"
    return "editable" if (Path(__file__).resolve().parents[1] / "setup.cfg").exists() else "installed"


def _startup_pth() -> list:
    import site

    names = set()
    for folder in site.getsitepackages() + [site.getusersitepackages()]:
        with contextlib.suppress(OSError):
            names.update(p.name for p in Path(folder).glob("*.pth"))
    return sorted(names)


def _git_modified() -> list | None:
    """Tracked files of the package changed since the commit (the numbers measure the working tree)."""
    try:
        r = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "."],
                           cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=10)
        return [line[3:] for line in r.stdout.splitlines()] if r.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def run_benchmarks(s: Settings, log=print) -> dict:
    """Run everything ``s`` selects; return the results dictionary."""
    if s.c_bin and not (os.path.isfile(s.c_bin) and os.access(s.c_bin, os.X_OK)):
        raise BenchError(f"C program {s.c_bin!r} is not an executable file")
    if s.backend not in ("cpu", "cuda"):
        raise BenchError(f"backend must be cpu or cuda, not {s.backend!r}")
    unknown = [w for w in s.workloads if w not in WORKLOADS]
    if unknown:
        raise BenchError(f"unknown workload(s) {', '.join(unknown)}; choose from {', '.join(WORKLOADS)}")
    repeats = 1 if s.quick else s.repeats
    s = Settings(**{**s.__dict__, "repeats": repeats})
    t_start = time.perf_counter()
    bytecode = precompile_bytecode()
    result = {"schema": SCHEMA, "machine": dict(machine_info(s.c_bin), bytecode_precompiled=bytecode),
              "settings": {"quick": s.quick, "repeats": s.repeats, "w3_repeats": s.w3_repeats,
                           "threads": s.threads, "backend": s.backend, "workloads": list(s.workloads),
                           "c_bin": s.c_bin, "command": our_command(), "scan_workers": list(s.scan_workers),
                           "server": s.server,
                           "peak_rss_tool": "/usr/bin/time -v" if _has_gnu_time() else "getrusage"}}
    cases = build_cases(s.workloads, s.quick, s.threads, s.golden_dir, s.w3_repeats)
    log(f"nbnumba bench: {len(cases)} cases, {s.repeats} repeat(s), {s.threads} thread(s), backend {s.backend}, "
        f"C: {s.c_bin or 'not measured'}")
    if cases:
        log(_header_line())
    result["results"] = [measure_case(c, s, log) for c in cases]
    if any(c.group in ("W1", "W2") for c in cases):
        log("spec vs parity, float32 vs float64 (ours):")
    result["variants"] = []
    for c in cases:
        if c.group in ("W1", "W2"):
            for mode, dtype in (("spec", "float64"), ("spec", "float32")):
                result["variants"].append(measure_variant(c, mode, dtype, s, log))
    if "scan" in s.workloads:
        if s.backend != "cpu":
            raise BenchError("the scan workload runs on the CPU backend only")
        result["scan"] = measure_scan(s, log)
        result["gradients"] = result["scan"].pop("gradients")
    if "startup" in s.workloads:
        result["startup"] = measure_startup(s, log)
    if s.compile:
        result["compile"] = measure_compile(s, log)
    ours_rss = [r["ours_command"]["peak_rss_kb"] for r in result["results"] if r["ours_command"]["peak_rss_kb"]]
    c_rss = [r["c"]["peak_rss_kb"] for r in result["results"] if r["c"] and r["c"]["peak_rss_kb"]]
    result["peak_rss_kb"] = {"ours_command": max(ours_rss) if ours_rss else None,
                             "c": max(c_rss) if c_rss else None}
    result["total_bench_s"] = time.perf_counter() - t_start
    with contextlib.suppress(OSError):
        result["machine"]["load_average_at_end"] = list(os.getloadavg())
    return result


# --------------------------------------------------------------------------- output


def _fmt(x, unit="s") -> str:
    if x is None:
        return "-"
    return f"{x:.3f} {unit}" if unit else f"{x:.2f}"


def _header_line() -> str:
    return (f"  {'case':<14} {'C':>10} {'ours cmd':>10} {'ours kern':>10} {'C/cmd':>7} {'C/kern':>7} "
            f"{'first call':>10}")


def _case_line(r: dict) -> str:
    c = r["c"]["median_s"] if r["c"] else None
    line = (f"  {r['name']:<14} {_fmt(c):>10} {_fmt(r['ours_command']['median_s']):>10} "
            f"{_fmt(r['ours_kernel']['median_s']):>10} {_fmt(r['ratio_command'], ''):>7} "
            f"{_fmt(r['ratio_kernel'], ''):>7} {_fmt(r['ours_kernel']['first_call_s']):>10}")
    if "ours_server" in r:
        line += f"  server {_fmt(r['ours_server']['median_s'])} (C/server {_fmt(r['ratio_server'], '')})"
    return line


def output_stem(s: Settings, when: _dt.date | None = None) -> str:
    """``<backend>-<date>[-quick]``, or ``scan-<date>[-quick]`` when the scan workload is all that runs."""
    when = when or _dt.date.today()
    kind = "scan" if tuple(s.workloads) == ("scan",) else s.backend
    return f"{kind}-{when.isoformat()}" + ("-quick" if s.quick else "")


def write_results(result: dict, out_dir: Path, stem: str, log=print) -> dict:
    """Write ``<stem>.json`` and (when matplotlib is present) ``<stem>.png``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / f"{stem}.json", "png": None}
    paths["json"].write_text(json.dumps(result, indent=1) + "\n")
    log(f"wrote {paths['json']}")
    png = out_dir / f"{stem}.png"
    if result.get("results") and plot_results(result, png, log):
        paths["png"] = png
        log(f"wrote {png}")
    return paths


def plot_results(result: dict, path: Path, log=print) -> bool:
    """Plot time against work, ours against C.  False (with a message) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is not installed: no plot (pip install 'nbnumba[bench]')")
        return False
    rows = result["results"]
    panels = [("main", "workloads", None), ("detector", "detector pixels (W1)", "pixels"),
              ("phisteps", "phi steps (W2, small detector)", "param"),
              ("mosaic", "mosaic domains (W2, 1 phi step)", "param"), ("threads", "threads (W2, small detector)",
                                                                        "param")]
    present = [p for p in panels if p[0] == "main" or any(r["group"] == p[0] for r in rows)]
    present.append(("all", "every case: time vs work", "work"))
    ncols = 3
    nrows = (len(present) + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.6 * nrows), squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax in flat[len(present):]:
        ax.set_visible(False)
    series = [("c", "C", "tab:red", "o"), ("ours_command", "ours (command)", "tab:blue", "s"),
              ("ours_kernel", "ours (kernel)", "tab:green", "^")]
    for ax, (group, title, xkey) in zip(flat, present):
        if group == "main":
            main = [r for r in rows if r["group"] in ("W1", "W2", "W3")]
            width = 0.27
            for j, (key, label, color, _m) in enumerate(series):
                vals = [r[key]["median_s"] if r.get(key) else None for r in main]
                xs = [i + (j - 1) * width for i in range(len(main))]
                ax.bar([x for x, v in zip(xs, vals) if v], [v for v in vals if v], width, label=label, color=color)
            ax.set_xticks(range(len(main)))
            ax.set_xticklabels([r["name"] for r in main])
            ax.set_yscale("log")
            ax.legend(fontsize=8)
        elif group == "all":
            for key, label, color, marker in series:
                pts = sorted((r["work"], r[key]["median_s"]) for r in rows if r.get(key) and r[key]["median_s"])
                if pts:
                    ax.scatter(*zip(*pts), marker=marker, color=color, label=label, s=18)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("work = rendered pixels x steps")
        else:
            sel = sorted((r for r in rows if r["group"] == group), key=lambda r: r["param"])
            xs = [r["pixels"] if xkey == "pixels" else r["param"] for r in sel]
            for key, label, color, marker in series:
                pts = [(x, r[key]["median_s"]) for x, r in zip(xs, sel) if r.get(key) and r[key]["median_s"]]
                if pts:
                    ax.plot(*zip(*pts), marker=marker, color=color, label=label)
            if group == "threads":
                ax.set_xticks([r["param"] for r in sel])
                ax.set_ylim(bottom=0)
            else:
                ax.set_xscale("log")
                ax.set_yscale("log")
            ax.set_xlabel("rendered pixels" if xkey == "pixels" else group)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("time (s)")
        ax.grid(True, which="both", alpha=0.3)
    m = result["machine"]
    fig.suptitle(f"nbnumba vs C nanoBragg: {m['cpu_model']}, {m['cores']} cores, "
                 f"{result['settings']['threads']} threads, {m['date'][:10]}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def markdown_table(result: dict) -> str:
    """The results as a Markdown table (what bench/README.md shows)."""
    m = result["machine"]
    machine = f"{m['cpu_model']}, {m['cores']} cores"
    served = any("ours_server" in r for r in result["results"])
    lines = ["| workload | threads | C (s) | ours, command (s) | ours, kernel (s) | C / ours command "
             "| C / ours kernel |" + (" ours, served command (s) | C / ours served |" if served else "")
             + " machine |",
             "|---|---|---|---|---|---|---|" + ("---|---|" if served else "") + "---|"]
    for r in result["results"]:
        c = r["c"]["median_s"] if r["c"] else None
        srv = ""
        if served:
            srv = (f" {_num(r['ours_server']['median_s'])} | {_num(r['ratio_server'], 2)} |" if "ours_server" in r
                   else " - | - |")
        lines.append(f"| {r['name']} | {r['threads']} | {_num(c)} | {_num(r['ours_command']['median_s'])} | "
                     f"{_num(r['ours_kernel']['median_s'])} | {_num(r['ratio_command'], 2)} | "
                     f"{_num(r['ratio_kernel'], 2)} |{srv} {machine} |")
    return "\n".join(lines)


def markdown_report(result: dict) -> str:
    """Main table, spec/parity and float32/float64 table, scan and gradient tables, compile time and memory."""
    out = [markdown_table(result)] if result.get("results") else []
    parity = {r["name"]: r for r in result["results"] if r["group"] in ("W1", "W2")}
    if result.get("variants"):
        out += ["", "| workload | mode | dtype | ours, kernel (s) | ours, command (s) |", "|---|---|---|---|---|"]
        for name, r in parity.items():
            out.append(f"| {name} | parity | float64 | {_num(r['ours_kernel']['median_s'])} | "
                       f"{_num(r['ours_command']['median_s'])} |")
            for v in result["variants"]:
                if v["workload"] == name:
                    out.append(f"| {name} | {v['mode']} | {v['dtype']} | {_num(v['ours_kernel']['median_s'])} | "
                               f"{_num(v['ours_command']['median_s'])} |")
    if result.get("scan"):
        out += ["", scan_markdown(result)]
    if result.get("gradients"):
        out += ["", gradients_markdown(result)]
    if result.get("startup"):
        out += ["", "| start-up step (fresh process) | median (s) |", "|---|---|"]
        out += [f"| {r['step']} | {_num(r['median_s'])} |" for r in result["startup"]["steps"]]
    comp = result.get("compile")
    if comp:
        line = (f"First run with empty kernel caches: command {_num(comp['command_cold_s'], 2)} s "
                f"(cached: {_num(comp['command_warm_s'], 2)} s, so about {_num(comp['command_compile_s'], 1)} s "
                "of compilation)")
        if "kernel_compile_s" in comp:
            line += (f"; first simulate() call {_num(comp['kernel_first_call_s'], 2)} s, second "
                     f"{_num(comp['kernel_second_call_s'], 3)} s")
        out += ["", line + "."]
    rss = result.get("peak_rss_kb") or {}
    if rss.get("ours_command"):
        out += ["", f"Peak resident memory (largest case): ours {rss['ours_command'] / 1024:.0f} MiB"
                + (f", C {rss['c'] / 1024:.0f} MiB." if rss.get("c") else ".")]
    return "\n".join(out)


def _num(x, digits=3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def scan_markdown(result: dict) -> str:
    """The scan workload as a Markdown table, with the per-frame verdict and the growth with workers."""
    sc = result["scan"]
    lines = [f"Rotation scan: {sc['frames']} frames of {sc['step_deg']:g} deg, "
             f"{sc['detector_pixels'][0]} x {sc['detector_pixels'][1]} pixels, {sc['hkl_reflections']} reflections "
             "in the -hkl file.", "",
             "| run | workers | threads per render | files written | frames | wall (s) | frames/s "
             "| first frame (s) | median frame (s) | kernel loads | native builds | Numba compiles "
             "| input file opens | identical to local |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sc["runs"]:
        t = r["totals"]
        files = "+".join(r["formats"]) if r["writes_files"] else "no"
        same = {True: "yes", False: "NO"}.get(r.get("identical_to_local"), "-")
        lines.append(f"| {r['run']} | {r['workers'] or '-'} | {r['threads_per_render']} | {files} | {r['frames']} "
                     f"| {_num(r['wall_s'], 2)} | {_num(r['fps'], 2)} | {_num(r['frame_s']['first_s'])} "
                     f"| {_num(r['frame_s']['rest_median_s'])} | {t['kernel_library_loads']} "
                     f"| {t['native_builds']} | {t['numba_compiles']} | {t['input_opens']} | {same} |")
    extra = []
    speed = sc.get("dask_speedup_over_1_worker")
    if speed:
        extra.append("Dask throughput against 1 worker: "
                     + ", ".join(f"{k} worker(s) {_num(v, 2)}x" for k, v in speed.items()) + ".")
    if sc.get("per_frame"):
        extra.append("Per frame: " + sc["per_frame"]["summary"] + ".")
    return "\n".join(lines + ([""] + extra if extra else []))


def gradients_markdown(result: dict) -> str:
    """The gradient costs as a Markdown table (seconds and forward renders per parameter)."""
    g = result["gradients"]
    lines = ["| derivative | seconds | forward renders |", "|---|---|---|",
             f"| forward render (float64 image) | {_num(g['forward_s'])} | 1 |"]
    for p in g["parameters"]:
        lines.append(f"| d image / d {p['parameter']} | {_num(p['seconds'])} | {_num(p['forward_renders'], 2)} |")
    a = g["all_at_once"]
    lines.append(f"| all {len(a['parameters'])} together, per parameter | {_num(a['seconds_per_parameter'])} "
                 f"| {_num(a['forward_renders_per_parameter'], 2)} |")
    sf = g.get("structure_factors")
    if isinstance(sf, dict):
        lines.append(f"| d image / d F^2, all {sf['reflections']} reflections (exact, one pass) | "
                     f"{_num(sf['seconds'])} | {_num(sf['forward_renders'], 2)} |")
    return "\n".join(lines)
