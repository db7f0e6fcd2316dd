"""Capture range of ``fit_coarse_to_fine`` on the real crystal (``A.mat`` + ``scaled.hkl``).

The ``pilatus_roi`` golden case's command line (Pilatus 6M geometry, 0.1 degree
wedge) without its ROI and ``-pix0_vector_mm`` (so that the distance places
the detector), a noisy truth (Poisson, brightest pixel about 2000 photons), and
a start 0.5 degrees off in orientation and 5 % off in distance::

    python bench/refine_capture.py                   # the full 2463 x 2527 frame (CPU: tens of minutes)
    python bench/refine_capture.py --roi 860 1627 860 1627

Prints the stages, the refined values against the truth in units of their
sigmas, and writes the fit as JSON with ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time

import numpy as np

GOLDEN = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "golden")
# the start's orientation error (degrees about x, y, z: 0.5 degrees in all) and relative distance error
MISSET_ERROR_DEG = (0.30, -0.30, 0.26)
DISTANCE_ERROR = 0.05


def pilatus_args(golden: str, roi=None) -> list:
    """The pilatus_roi case's flags, the detector placed by the distance, an optional ROI."""
    with open(os.path.join(golden, "pilatus_roi", "case.json")) as fh:
        args = json.load(fh)["args"]
    for flag, n in (("-pix0_vector_mm", 3), ("-roi", 4), ("-floatfile", 1)):
        i = args.index(flag)
        args = args[:i] + args[i + n + 1:]
    args = [os.path.join(golden, "inputs", a) if a in ("A.mat", "scaled.hkl") else a for a in args]
    return args + (["-roi", *map(str, roi)] if roi else [])


def main(argv=None) -> int:
    from nbnumba import config_from_args
    from nbnumba.fitting import FitStage, fit_coarse_to_fine
    from nbnumba.gradients import render_image
    from nbnumba.scan import apply_changes

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--roi", type=int, nargs=4, default=None, metavar=("XMIN", "XMAX", "YMIN", "YMAX"))
    ap.add_argument("--golden", default=GOLDEN)
    ap.add_argument("--starts", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default=None)
    ap.add_argument("--stages", default=None, help="e.g. '8:0.125:unit,4:0.25:unit,1:1:' (bin:n_factor:weights)")
    opts = ap.parse_args(argv)
    truth, _ = config_from_args(pilatus_args(opts.golden, opts.roi), mode="spec")
    t0 = time.time()
    image = render_image(truth)
    scale = 2000.0 / image.max()
    observed = np.random.default_rng(opts.seed).poisson(scale * image).astype(float)
    params = ["misset[0]", "misset[1]", "misset[2]", "distance"]
    start = apply_changes(truth, {**{f"misset[{i}]": math.radians(d) for i, d in enumerate(MISSET_ERROR_DEG)},
                                  "distance": truth.distance * (1 + DISTANCE_ERROR)})
    want = {"misset[0]": 0.0, "misset[1]": 0.0, "misset[2]": 0.0, "distance": truth.distance, "scale": scale}

    def progress(nfev, chi2, values):
        if nfev % 10 == 0:
            print(f"  evaluation {nfev}: chi2 {chi2:.6g}  {time.time() - t0:.0f} s", flush=True)

    stages = None
    if opts.stages:
        stages = [FitStage(bin=int(b), n_factor=float(n), weights=w or None)
                  for b, n, w in (item.split(":") for item in opts.stages.split(","))]
    res = fit_coarse_to_fine(start, observed, params, stages=stages, starts=opts.starts, callback=progress)
    print(f"{image.shape[1]} x {image.shape[0]} pixels, ROI {opts.roi}, {time.time() - t0:.0f} s")
    for st in res.stages:
        vals = " ".join(f"{k}={v:.6g}" for k, v in st["values"].items())
        print(f"stage bin {st['bin']} n_factor {st['n_factor']}: chi2/dof {st['chi2_per_dof']:.4g} "
              f"{st['status']}  {vals}")
    print(f"status {res.status}, chi2/dof {res.chi2_per_dof:.4f}")
    ok = True
    for name, p in res.parameters.items():
        z = (p.value - want[name]) / p.sigma
        ok &= abs(z) < 4
        print(f"  {name:<10} start {p.start:.8g}  value {p.value:.8g}  truth {want[name]:.8g}  "
              f"sigma {p.sigma:.3g}  z {z:+.2f}")
    if opts.out:
        with open(opts.out, "w") as fh:
            json.dump(res.as_dict(), fh, indent=1)
    print("recovered within 4 sigma" if ok else "NOT recovered")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
