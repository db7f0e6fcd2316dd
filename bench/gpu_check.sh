#!/bin/bash
# One GPU session's checks, as one command on a lent machine (see bench/README.md):
#   bash bench/gpu_check.sh OUTDIR
# Expects the golden corpus in ../shared/golden (or .gpushared/golden, copied there)
# and any missing Python packages as wheels in .whl/.
# Writes: nvidia-smi.txt, gpu.log + gpu_results.json (golden on CUDA, W1-W3,
# sweeps), pytest.log (CUDA tests on the real GPU), ncu.txt (profile of W3).
set -u
OUTDIR=${1:?output folder}
mkdir -p "$OUTDIR"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || echo "wheels not installed"
fi
# the checkout itself on the path (nbnumba, and cli/ as nbnumba_cli), as an install would put it
mkdir -p /tmp/site && ln -sfn "$PWD/cli" /tmp/site/nbnumba_cli
export PYTHONPATH="$PWD:/tmp/site"
if [ ! -d ../shared/golden ] && [ -d .gpushared ]; then
  mkdir -p ../shared && cp -r .gpushared/* ../shared/
fi
export PYTHONUNBUFFERED=1
unset NUMBA_ENABLE_CUDASIM
nvidia-smi > "$OUTDIR/nvidia-smi.txt" 2>&1
python3 -c "import numba, numba_cuda, numpy; print('numba', numba.__version__, 'numba-cuda', numba_cuda.__version__, 'numpy', numpy.__version__)" | tee -a "$OUTDIR/nvidia-smi.txt"
echo "== gpu_run"
timeout ${GPU_RUN_TIMEOUT:-420} python3 bench/gpu_run.py --out "$OUTDIR" --repeats 5 ${GPU_RUN_ARGS:-} 2>&1 | tee "$OUTDIR/gpu.log"
[ -n "${ONLY_GPU_RUN:-}" ] && exit 0
echo "== pytest (CUDA on the GPU)"
timeout ${PYTEST_TIMEOUT:-200} python3 -m pytest -q -p no:cacheprovider -x tests/test_backends.py tests/test_kernel_interface.py 2>&1 | tail -25 | tee "$OUTDIR/pytest.log"
timeout 120 python3 -m pytest -q -p no:cacheprovider tests/test_cli_files.py tests/test_fuzz.py -k "cuda" 2>&1 | tail -8 | tee -a "$OUTDIR/pytest.log"
echo "== profile of the whole W3 command on CUDA"
timeout 120 python3 bench/gpu_profile.py --command > "$OUTDIR/w3_command_profile.txt" 2>&1
head -30 "$OUTDIR/w3_command_profile.txt"
echo "== ncu"
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
if [ -n "$NCU" ]; then
  timeout ${NCU_TIMEOUT:-150} "$NCU" --clock-control none --kernel-name regex:render_tile --launch-count 2 \
    --section SpeedOfLight --section Occupancy --section LaunchStats --section ComputeWorkloadAnalysis \
    --section MemoryWorkloadAnalysis --section WarpStateStats --section SchedulerStats \
    python3 bench/gpu_profile.py > "$OUTDIR/ncu.txt" 2>&1
  tail -5 "$OUTDIR/ncu.txt"
else
  echo "no ncu" | tee "$OUTDIR/ncu.txt"
fi
echo "== done"
