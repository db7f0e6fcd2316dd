"""pytest-benchmark suite: ``pytest bench/`` (not collected by a plain ``pytest``).

Kernel timings use ``benchmark.pedantic`` after a warm-up call, so JIT
compilation is excluded; the warm-up call's time is kept in ``extra_info``.
Compilation is measured apart (``test_compile_cold_cache``, marker
``compilation``) in a subprocess with an empty ``NUMBA_CACHE_DIR``.  With
``NB_C_BIN`` set, the C program is timed on the same command lines.

Sizes are moderate (seconds, not minutes); ``nbnumba bench`` runs the full
workloads.  Environment: ``NB_BENCH_THREADS`` (default: all cores),
``NB_BENCH_ROUNDS`` (default 3).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from nbnumba.bench import (
    COMMON,
    COMPILE_PROBE,
    W1,
    W2,
    KernelTimer,
    run_program,
    set_flag,
)

THREADS = int(os.environ.get("NB_BENCH_THREADS") or os.cpu_count() or 1)
ROUNDS = int(os.environ.get("NB_BENCH_ROUNDS") or 3)
C_BIN = os.environ.get("NB_C_BIN") or None

CASES = {
    "W1-512": set_flag(W1, "-detpixels", 512),
    "W1-1024": list(W1),
    "W2-128": set_flag(W2, "-detpixels", 128),
}
VARIANTS = [("parity", "float64"), ("spec", "float64"), ("spec", "float32")]


@pytest.fixture(scope="module")
def tmpdir_module(tmp_path_factory):
    return tmp_path_factory.mktemp("bench")


@pytest.mark.parametrize("mode,dtype", VARIANTS, ids=["-".join(v) for v in VARIANTS])
@pytest.mark.parametrize("case", list(CASES))
def test_kernel(benchmark, case, mode, dtype, tmpdir_module):
    """simulate()'s kernel time, compilation excluded."""
    timer = KernelTimer(CASES[case] + COMMON, tmpdir_module, mode, dtype, THREADS, "cpu")
    first = timer.first()  # warm-up: compiles (or loads the cache)
    benchmark.extra_info.update(first, threads=THREADS, mode=mode, dtype=dtype, **timer.work())
    benchmark.pedantic(timer.once, rounds=ROUNDS, iterations=1, warmup_rounds=0)


@pytest.mark.parametrize("case", list(CASES))
def test_command(benchmark, case, tmpdir_module):
    """Our whole ``nanoBragg -mode parity`` command (start-up included)."""
    from nbnumba.bench import _ours_argv, _ours_env

    argv = _ours_argv(CASES[case] + COMMON)
    benchmark.extra_info.update(threads=THREADS)
    benchmark.pedantic(lambda: run_program(argv, tmpdir_module, _ours_env(THREADS)), rounds=ROUNDS,
                       iterations=1, warmup_rounds=1)


@pytest.mark.skipif(C_BIN is None, reason="set NB_C_BIN to the C nanoBragg to time it")
@pytest.mark.parametrize("case", list(CASES))
def test_c_program(benchmark, case, tmpdir_module):
    """The C program on the same command line (OMP_NUM_THREADS = our threads)."""
    argv = [C_BIN] + CASES[case] + COMMON
    benchmark.extra_info.update(threads=THREADS)
    benchmark.pedantic(lambda: run_program(argv, tmpdir_module, {"OMP_NUM_THREADS": str(THREADS)}),
                       rounds=ROUNDS, iterations=1, warmup_rounds=0)


@pytest.mark.compilation
def test_compile_cold_cache(benchmark, tmp_path):
    """First simulate() call with empty kernel caches (Numba's and the native libraries'), in a fresh interpreter."""
    argv = set_flag(W1, "-detpixels", 64) + COMMON
    probe = COMPILE_PROBE.replace("BACKEND", repr("cpu")).replace("THREADS", str(THREADS))
    results = []

    def once():
        cache = tmp_path / f"cache{len(results)}"
        env = dict(os.environ, NUMBA_CACHE_DIR=str(cache), NBNUMBA_CACHE_DIR=str(cache / "native"),
                   NUMBA_NUM_THREADS=str(THREADS))
        r = subprocess.run([sys.executable, "-c", probe] + argv, cwd=tmp_path, env=env, capture_output=True,
                           text=True, check=True)
        results.append(json.loads(r.stdout.strip().splitlines()[-1]))

    benchmark.pedantic(once, rounds=1, iterations=1, warmup_rounds=0)
    k = results[-1]
    benchmark.extra_info.update(k, compile_s=k["first_call_s"] - k["second_call_s"])
    assert k["first_call_s"] > k["second_call_s"]
