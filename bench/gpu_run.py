"""One-shot GPU check: golden corpus on the CUDA backend and W1-W3 timings.

Run on a machine with an NVIDIA GPU (``python bench/gpu_run.py --out DIR``);
``--quick`` shrinks everything so the script itself can be checked under
``NUMBA_ENABLE_CUDASIM=1``.  Writes ``gpu_results.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

# the workloads of nbnumba.bench (W1, W2; W3 from the golden case pilatus_roi), quiet
from nbnumba.bench import COMMON, W1, W2, set_flag, w3_args  # noqa: E402


def timed_kernel(cfg, backend, dtype, repeats):
    """First call (compilation included), then the medians of ``kernel_s`` and ``device_kernel_s``."""
    from nbnumba import simulate

    t = time.perf_counter()
    first = simulate(cfg, backend=backend, dtype=dtype)
    first_s = time.perf_counter() - t
    kernel, device = [], []
    for _ in range(repeats):
        r = simulate(cfg, backend=backend, dtype=dtype)
        kernel.append(r.timings["kernel_s"])
        device.append(r.timings.get("device_kernel_s", float("nan")))
    return first, first_s, float(np.median(kernel)), float(np.median(device))


def kernel_resources(backend_obj):
    """Registers and local (spill) memory per thread of the render kernel of a CudaBackend."""
    render, _ = backend_obj.kernels()
    out = {}
    def one(value):  # a dict by signature where the kernel has several
        return int(next(iter(value.values())) if isinstance(value, dict) else value)

    try:
        out["regs_per_thread"] = one(render.get_regs_per_thread())
        out["local_bytes_per_thread"] = one(render.get_local_mem_per_thread())
        out["shared_bytes_per_block"] = one(render.get_shared_mem_per_block())
    except Exception as exc:  # pragma: no cover - simulator or other numba-cuda versions
        out["resources_error"] = repr(exc)[:200]
    return out


def device_sweep(cfg, dtype, repeats, variants):
    """Device time of the render kernel for each ``(threads_per_block, max_registers)`` variant."""
    from nbnumba.kernels import driver
    from nbnumba.kernels.cuda import CudaBackend
    from nbnumba.prepare import prepare

    prep = prepare(cfg)
    rows = []
    for threads, max_regs in variants:
        backend = CudaBackend(dtype, threads_per_block=threads, max_registers=max_regs)
        row = {"threads": threads, "max_registers": max_regs}
        try:
            driver.render_flat(prep, backend, dtype)  # compile
            times = []
            for _ in range(repeats):
                backend.device_seconds = 0.0
                driver.render_flat(prep, backend, dtype)
                times.append(backend.device_seconds)
            row["device_kernel_s"] = float(np.median(times))
            row.update(kernel_resources(backend))
        except Exception as exc:  # a block too large for the kernel's registers, say
            row["error"] = str(exc).splitlines()[0][:200]
        rows.append(row)
        print("  sweep", dtype, json.dumps(row), flush=True)
    return rows


def end_to_end(argv, workdir, repeats):
    from nbnumba.runner import run_nanobragg

    times = []
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        for _ in range(repeats):
            buf = io.StringIO()
            t = time.perf_counter()
            with redirect_stdout(buf):
                run_nanobragg(list(argv), out=buf)
            times.append(time.perf_counter() - t)
    finally:
        os.chdir(cwd)
    return float(np.median(times))


def _without_hkl(cfg):
    """``cfg`` with the structure-factor table dropped (every F = 100, -default_F)."""
    import dataclasses

    return dataclasses.replace(cfg, hkl=None, default_F=100.0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="bench/results")
    ap.add_argument("--golden", default=str(HERE.parent.parent / "shared" / "golden"))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-golden", action="store_true", help="leave out the golden corpus")
    ns = ap.parse_args()
    out = Path(ns.out)
    out.mkdir(parents=True, exist_ok=True)
    golden = Path(ns.golden)

    from numba import cuda

    import nbnumba
    from nbnumba.cargs import config_from_args
    from nbnumba.golden import case_names, run_case

    info = {"python": platform.python_version(), "numba": __import__("numba").__version__,
            "nbnumba": nbnumba.__version__, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "simulator": bool(os.environ.get("NUMBA_ENABLE_CUDASIM"))}
    try:
        dev = cuda.get_current_device()
        info["gpu"] = dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name)
    except Exception as exc:  # pragma: no cover
        info["gpu"] = f"unknown ({exc})"
    try:
        import numba_cuda

        info["numba_cuda"] = numba_cuda.__version__
    except Exception:
        pass
    results = {"machine": info, "golden": {}, "workloads": {}}
    print(json.dumps(info), flush=True)

    # ---- golden corpus, parity mode, CUDA backend
    # whole frames only: --quick (the simulator) leaves the corpus out, a ROI cannot match C's frames
    names = [] if (ns.skip_golden or ns.quick) else case_names(golden)
    extra = []
    t0 = time.perf_counter()
    for name in names:
        try:
            rep = run_case(name, golden=golden, mode="parity", extra_args=["-backend", "cuda"] + extra)
            ok = rep.ok
            detail = rep.details
        except Exception as exc:
            ok, detail = False, [repr(exc)]
        results["golden"][name] = {"ok": bool(ok), "details": detail}
        print(("PASS" if ok else "FAIL"), name, " | ".join(detail), flush=True)
    results["golden_seconds"] = time.perf_counter() - t0
    passed = sum(v["ok"] for v in results["golden"].values())
    print(f"golden on cuda: {passed}/{len(names)} pass in {results['golden_seconds']:.1f} s", flush=True)

    # ---- workloads
    work = tempfile.mkdtemp(prefix="nbgpu_")
    for f in ("A.mat", "scaled.hkl"):
        shutil.copy(golden / "inputs" / f, Path(work) / f)
    loads = {"W1": W1, "W2": W2, "W3": w3_args(golden)}
    if ns.quick:
        loads = {"W1": set_flag(W1, "-detpixels", 24), "W2": set_flag(W2, "-detpixels", 16),
                 "W3": w3_args(golden, roi=["-roi", "1100", "1103", "1000", "1001"])}
    reps = 1 if ns.quick else ns.repeats
    cwd = os.getcwd()
    for wname, wargs in loads.items():
        argv = list(wargs) + COMMON
        os.chdir(work)
        try:
            cfg_p, _ = config_from_args(argv + ["-mode", "parity"])
            cfg_s, _ = config_from_args(argv + ["-mode", "spec"])
        finally:
            os.chdir(cwd)
        entry = {}
        ref_cpu = None
        cuda_spec64 = None
        for label, cfg, backend, dtype in (
            ("cpu_parity_f64", cfg_p, "cpu", "float64"),
            ("cuda_parity_f64", cfg_p, "cuda", "float64"),
            ("cuda_spec_f64", cfg_s, "cuda", "float64"),
            ("cuda_spec_f32", cfg_s, "cuda", "float32"),
        ):
            r, first_s, med, dev = timed_kernel(cfg, backend, dtype, reps)
            entry[label] = {"kernel_s": med, "first_call_s": first_s}
            if backend == "cuda":
                from nbnumba.kernels.cuda import CudaBackend

                entry[label]["device_kernel_s"] = dev
                entry[label].update(kernel_resources(CudaBackend(dtype)))
            if label == "cpu_parity_f64":
                ref_cpu = r.image.astype(np.float64)
            elif label == "cuda_parity_f64":
                diff = np.abs(r.image - ref_cpu)
                entry[label]["max_rel_vs_cpu"] = float((diff / np.maximum(np.abs(ref_cpu), 1e-30)).max())
                entry[label]["identical_fraction_vs_cpu"] = float(np.mean(r.image == ref_cpu))
            elif label == "cuda_spec_f32":
                ref64 = cuda_spec64.astype(np.float64)
                scale = max(float(np.abs(ref64).max()), 1e-30)
                entry[label]["max_abs_err_over_max"] = float(np.abs(r.image - ref64).max() / scale)
                rel = np.abs(r.image - ref64) / np.maximum(np.abs(ref64), 1e-30)
                entry[label]["frac_within_1e-4_rel"] = float(np.mean(rel <= 1e-4))
            if label == "cuda_spec_f64":
                cuda_spec64 = r.image
            print(wname, label, json.dumps(entry[label]), flush=True)
        entry["cuda_end_to_end_s"] = end_to_end(argv + ["-mode", "parity", "-backend", "cuda"], work, reps)
        entry["cpu_end_to_end_s"] = end_to_end(argv + ["-mode", "parity"], work, reps)
        print(wname, "end to end cuda %.3f s, cpu %.3f s" % (entry["cuda_end_to_end_s"], entry["cpu_end_to_end_s"]),
              flush=True)
        results["workloads"][wname] = entry
        if wname in ("W2", "W3"):
            sweep = [(128, 0), (128, 48), (128, 64), (128, 80), (128, 96), (256, 64), (512, 64)]
            if ns.quick:
                sweep = [(64, None), (128, 64)]
            entry["sweep_spec_f64"] = device_sweep(cfg_s, "float64", reps, sweep)
            entry["sweep_spec_f32"] = device_sweep(cfg_s, "float32", reps, sweep)
            entry["sweep_parity_f64"] = device_sweep(cfg_p, "float64", reps, [(128, 0), (128, 64), (128, 96)])
            # where the time goes: one phi step; no structure-factor table (default_F only)
            import dataclasses

            for tag, cfg_v in (("one_phi_step", dataclasses.replace(cfg_s, phisteps=1)),
                               ("no_hkl_table", _without_hkl(cfg_s))):
                if cfg_v is None:
                    continue
                _, _, med_v, dev_v = timed_kernel(cfg_v, "cuda", "float64", reps)
                entry[f"spec_f64_{tag}"] = {"kernel_s": med_v, "device_kernel_s": dev_v}
                print(wname, tag, json.dumps(entry[f"spec_f64_{tag}"]), flush=True)
    (out / "gpu_results.json").write_text(json.dumps(results, indent=2))
    print("wrote", out / "gpu_results.json")


if __name__ == "__main__":
    main()
