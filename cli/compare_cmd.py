"""``nbnumba compare``: compare images, or nbnumba against the C nanoBragg."""

from __future__ import annotations

import os
import sys

import click

from .scan_cmd import fail


@click.command(name="compare", context_settings=dict(help_option_names=["-h", "--help"]))
@click.option("--fpixels", type=int, default=None, help="Float images: fast-axis size (default: square).")
@click.option("--spixels", type=int, default=None, help="Float images: slow-axis size.")
@click.option("--c-bin", default=None, metavar="PATH",
              help="C nanoBragg executable (default $NB_C_BIN): run it and nbnumba on the flags after `--`.")
@click.option("--keep", is_flag=True, help="With --c-bin: keep the two run folders and print where they are.")
@click.option("--timeout", type=float, default=600.0, show_default=True, help="Seconds allowed for the C run.")
@click.option("--golden", is_flag=True, help="Run golden-corpus cases (names as arguments; none: all).")
@click.option("--golden-dir", type=click.Path(file_okay=False), default=None,
              help="Golden corpus folder (default ../shared/golden beside the checkout).")
@click.option("--reference", type=click.Path(file_okay=False), default=None,
              help="With --golden: folder of reference outputs (e.g. the spec-mode references).")
@click.option("--mode", type=click.Choice(("parity", "spec")), default="parity", show_default=True,
              help="With --golden: mode to run nbnumba in.")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def compare(fpixels, spixels, c_bin, keep, timeout, golden, golden_dir, reference, mode, args):
    """Compare two images, or nbnumba with the C nanoBragg.

    \b
    Two files (B is the reference):
      nbnumba compare A.bin B.bin --fpixels 1024 --spixels 1024
      nbnumba compare A.img B.img
    C against nbnumba (-mode parity) on one command line:
      nbnumba compare --c-bin ./nanoBragg -- -cell 100 100 100 90 90 90 -default_F 100 -N 5 -detpixels 64
    The golden corpus:
      nbnumba compare --golden [CASE ...]

    Exit status 0 when within the golden tolerance (99.9% of float pixels
    within 1e-6 relative, none beyond 1e-3), 1 when not, 2 on errors.
    """
    from nbnumba.errors import NbnumbaError

    args = list(args)
    try:
        if golden:
            from nbnumba.compare import run_golden

            ok = run_golden(args, golden_dir=golden_dir, mode=mode, reference=reference)
            sys.exit(0 if ok else 1)
        if len(args) == 2 and not any(a.startswith("-") for a in args):
            _compare_two(args[0], args[1], fpixels, spixels)
            return
        if not args:
            fail("compare", "nothing to compare: give two image files, nanoBragg flags after `--` "
                            "(with --c-bin or NB_C_BIN), or --golden")
        if not any(a.startswith("-") for a in args):
            fail("compare", f"expected two image files, got {len(args)} arguments")
        c_bin = c_bin or os.environ.get("NB_C_BIN")
        if not c_bin:
            fail("compare", "no C nanoBragg binary: give --c-bin PATH or set NB_C_BIN")
        from nbnumba.compare import run_against_c

        res = run_against_c(args, c_bin, keep=keep, timeout=timeout)
    except NbnumbaError as exc:
        fail("compare", str(exc))
    for line in res.lines:
        click.echo(line)
    if res.workdir:
        click.echo(f"run folders kept in {res.workdir}")
    click.echo("verdict: " + ("MATCH (within the golden tolerance)" if res.ok else "MISMATCH"))
    sys.exit(0 if res.ok else 1)


def _compare_two(a, b, fpixels, spixels):
    from nbnumba.compare import compare_files

    res = compare_files(a, b, fpixels, spixels)
    st = res.image
    click.echo(f"{a} vs {b} ({res.kind}, {st.shape[1]} x {st.shape[0]} pixels)")
    click.echo(f"max abs diff:   {st.max_abs:.6g}")
    click.echo(f"max rel diff:   {st.max_rel:.6g} at (slow, fast) {st.worst}")
    click.echo(f"within {st.rtol:g} rel: {st.frac_within * 100:.4f}%")
    click.echo(f"correlation:    {st.correlation:.9f}")
    click.echo(f"pixels differ:  {st.n_differ}")
    if res.kind == "smv":
        click.echo(f"SMV: {res.smv_message}")
        for d in res.header_diffs:
            click.echo(f"  header: {d}")
    click.echo("verdict: " + ("MATCH (within the golden tolerance)" if res.ok else "MISMATCH"))
    sys.exit(0 if res.ok else 1)
