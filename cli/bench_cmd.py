"""``nbnumba bench``: time our kernel and command against the C nanoBragg."""

from __future__ import annotations

import os
import sys

import click


def _workloads(ctx, param, value):
    from nbnumba.bench import WORKLOADS

    names = [w.strip() for w in value.split(",") if w.strip()]
    bad = [w for w in names if w not in WORKLOADS]
    if bad or not names:
        raise click.BadParameter(f"choose from {','.join(WORKLOADS)} (comma separated), not {value!r}")
    return tuple(names)


def _worker_counts(ctx, param, value):
    text = value.strip().lower()
    if text in ("none", "0", ""):
        return ()
    try:
        counts = tuple(int(w) for w in text.split(",") if w.strip())
    except ValueError:
        counts = ()
    if not counts or any(n < 1 for n in counts):
        raise click.BadParameter(f"comma-separated positive worker counts, or 'none', not {value!r}")
    return counts


@click.command(name="bench", context_settings=dict(help_option_names=["-h", "--help"]))
@click.option("--quick", is_flag=True, help="Small sizes, 1 repeat, W3 as a 64x64 ROI only (what CI runs).")
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True,
              help="Runs per measurement (medians are reported); --quick uses 1.")
@click.option("--w3-repeats", type=click.IntRange(min=1), default=None,
              help="Runs for W3 (default: --repeats).")
@click.option("--workloads", default="W1,W2,W3,scaling,startup", show_default=True, callback=_workloads,
              help="Comma-separated subset of W1,W2,W3,scaling,specA,scan,startup (scan: a 90-frame rotation "
                   "scan, local and on Dask, and the cost of gradients; written to scan-<date>.json when alone; "
                   "startup: the interpreter, NumPy, our modules and a 1-pixel run, each a fresh process).")
@click.option("--threads", type=click.IntRange(min=1), default=lambda: os.cpu_count() or 1,
              show_default="all cores", help="Threads for ours (NUMBA_NUM_THREADS) and C (OMP_NUM_THREADS).")
@click.option("--c-bin", type=click.Path(dir_okay=False), envvar="NB_C_BIN", default=None,
              show_default="$NB_C_BIN", help="The C nanoBragg program; without it C is not measured.")
@click.option("--backend", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=os.path.join("bench", "results"),
              show_default=True, help="Folder for <backend>-<date>.json and .png.")
@click.option("--no-compile", is_flag=True, help="Skip the cold-cache compile measurement.")
@click.option("--scan-workers", default="1,2", show_default=True, callback=_worker_counts,
              help="Dask worker counts of the scan workload (a local cluster each, one thread per worker); "
                   "'none': local runs only.")
@click.option("--server", is_flag=True,
              help="Also time our command through a command server (`nbnumba server`, started for each case "
                   "in a private folder): the `served` columns.")
def bench(quick, repeats, w3_repeats, workloads, threads, c_bin, backend, out_dir, no_compile, scan_workers, server):
    """Benchmark nbnumba (kernel and whole command) against the C nanoBragg.

    C and our command alternate run by run; medians and the ratio C time /
    our time (above 1: nbnumba is faster) are printed and saved as JSON, with
    a PNG plot when matplotlib is installed.
    """
    from nbnumba.bench import BenchError, Settings, markdown_report, output_stem, run_benchmarks, write_results

    settings = Settings(quick=quick, repeats=repeats, threads=threads, c_bin=c_bin or None, backend=backend,
                        workloads=workloads, w3_repeats=w3_repeats, compile=not no_compile,
                        scan_workers=scan_workers, server=server)
    try:
        result = run_benchmarks(settings, log=click.echo)
    except BenchError as exc:
        from ._safety import fail_line

        fail_line("nbnumba bench", exc)
        sys.exit(2)
    write_results(result, out_dir, output_stem(settings), log=click.echo)
    click.echo("")
    click.echo(markdown_report(result))
