"""Side by side: two installed versions of the nanoBragg command, alternating in one run (W1, W2, W3).

    python bench/compare_versions.py PREV_NANOBRAGG NEW_NANOBRAGG [REPEATS] [OUT.json]

Each is the path of a ``nanoBragg`` console script (for example the one of a
virtual environment holding an older checkout).  Every round runs each case
with each version once, in turn; the first round only warms the caches.
Prints the median whole-command time of each and their ratio, and whether
the two float images are identical.
"""
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from nbnumba.bench import W1, W2, golden_inputs_dir, w3_args

PREV, NEW = sys.argv[1], sys.argv[2]
env = dict(os.environ, NUMBA_NUM_THREADS="2", OMP_NUM_THREADS="2", OPENBLAS_NUM_THREADS="1")
cases = {"W1": list(W1), "W2": list(W2), "W3": w3_args()}
extra = ["-nonoise", "-nopgm", "-noprogress", "-mode", "parity", "-nthreads", "2"]
inputs = golden_inputs_dir()
repeats = int(sys.argv[3]) if len(sys.argv) > 3 else 5
out = {"prev": PREV, "new": NEW, "repeats": repeats, "threads": 2, "cases": {}}
for name, args in cases.items():
    times = {"prev": [], "new": []}
    with tempfile.TemporaryDirectory() as d:
        for f in ("A.mat", "scaled.hkl"):
            shutil.copy(inputs / f, d)
        for rep in range(repeats + 1):  # the first round warms the caches
            for label, exe in (("prev", PREV), ("new", NEW)):
                t = time.perf_counter()
                p = subprocess.run([exe, *args, *extra, "-floatfile", f"{label}.bin", "-intfile", f"{label}.img"],
                                   cwd=d, env=env, capture_output=True, text=True)
                dt = time.perf_counter() - t
                if p.returncode:
                    raise SystemExit(f"{label} {name}: {p.stderr[-300:]}")
                if rep:
                    times[label].append(dt)
        same = Path(d, "prev.bin").read_bytes() == Path(d, "new.bin").read_bytes()
    med = {k: statistics.median(v) for k, v in times.items()}
    out["cases"][name] = {"prev_s": med["prev"], "new_s": med["new"], "new_over_prev": med["new"] / med["prev"],
                          "times": times, "float_image_identical": same}
    print(name, f"prev {med['prev']:.3f} s  new {med['new']:.3f} s  new/prev {med['new'] / med['prev']:.3f}  "
          f"identical={same}", flush=True)
with open(sys.argv[4] if len(sys.argv) > 4 else "compare_versions.json", "w") as handle:
    json.dump(out, handle, indent=1)
