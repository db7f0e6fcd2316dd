"""Render W3 (Pilatus 6M, 10 phi steps) once in spec mode, float64 then float32, on the CUDA backend.

Meant to run under Nsight Compute (``bench/gpu_check.sh`` does that) so the
profile shows where the render kernel's time goes: occupancy, registers,
memory traffic of the structure-factor lookups, issue stalls.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--golden", default=str(HERE.parent.parent / "shared" / "golden"))
    ap.add_argument("--backend", default="cuda")
    ap.add_argument("--command", action="store_true",
                    help="profile the whole nanoBragg command (cProfile, CUDA backend, parity) instead")
    ns = ap.parse_args()
    golden = Path(ns.golden)
    from nbnumba import simulate
    from nbnumba.bench import COMMON, w3_args
    from nbnumba.cargs import config_from_args

    work = tempfile.mkdtemp(prefix="nbprof_")
    for f in ("A.mat", "scaled.hkl"):
        shutil.copy(golden / "inputs" / f, Path(work) / f)
    cwd = os.getcwd()
    os.chdir(work)
    try:
        cfg, _ = config_from_args(w3_args(golden) + COMMON + ["-mode", "spec"])
    finally:
        os.chdir(cwd)
    if ns.command:
        import cProfile
        import io
        import pstats
        from contextlib import redirect_stdout

        from nbnumba.runner import run_nanobragg

        argv = w3_args(golden) + COMMON + ["-mode", "parity", "-backend", ns.backend]
        os.chdir(work)
        with redirect_stdout(io.StringIO()):
            run_nanobragg(list(argv), out=io.StringIO())  # compile, warm caches
        prof = cProfile.Profile()
        with redirect_stdout(io.StringIO()):
            prof.runcall(run_nanobragg, list(argv), out=io.StringIO())
        os.chdir(cwd)
        pstats.Stats(prof).sort_stats("cumulative").print_stats(40)
        return
    for dtype in ("float64", "float32"):
        r = simulate(cfg, backend="cuda", dtype=dtype)
        print(dtype, r.timings, flush=True)


if __name__ == "__main__":
    main()
