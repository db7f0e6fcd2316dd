"""``nbnumba compare``: compare images, or nbnumba against the C nanoBragg."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

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
@click.option("--outdir", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="Save the comparison there: float images, program output, PNG previews of both images and "
                   "their difference (diff.png: red where the first/nbnumba is larger), and summary.json.")
@click.option("--roi", type=int, nargs=4, default=None, metavar="XMIN XMAX YMIN YMAX",
              help="Compare only these pixels (inclusive, 0-based; x fast, y slow), as nanoBragg's -roi.")
@click.option("--threshold", type=float, default=None, metavar="T",
              help="Judge by correlation instead of the golden tolerance: exit 3 when it is below T.")
@click.option("--png-scale", type=click.Choice(("sqrt", "log", "linear")), default="sqrt", show_default=True,
              help="With --outdir: grey-level mapping of the previews.")
@click.option("--png-percentile", type=float, default=99.5, show_default=True,
              help="With --outdir: white level of the previews, this percentile of both images.")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def compare(fpixels, spixels, c_bin, keep, timeout, golden, golden_dir, reference, mode, outdir, roi, threshold,
            png_scale, png_percentile, args):
    """Compare two images, or nbnumba with the C nanoBragg.

    \b
    Two files (B is the reference):
      nbnumba compare A.bin B.bin --fpixels 1024 --spixels 1024
      nbnumba compare A.img B.img --roi 100 355 100 355 --outdir cmp/
    C against nbnumba (-mode parity) on one command line:
      nbnumba compare --c-bin ./nanoBragg --outdir cmp/ -- -cell 100 100 100 90 90 90 -default_F 100 -N 5
    The golden corpus:
      nbnumba compare --golden [CASE ...]

    Exit status 0 when within the golden tolerance (99.9% of float pixels
    within 1e-6 relative, none beyond 1e-3; relative to at least 1e-6 of
    the reference maximum), 1 when not, 2 on errors; with --threshold, 0
    when the correlation reaches it and 3 when not.
    """
    from nbnumba.errors import NbnumbaError

    args = list(args)
    opts = _Options(outdir=outdir, roi=tuple(roi) if roi else None, threshold=threshold, png_scale=png_scale,
                    png_percentile=png_percentile)
    try:
        if golden:
            from nbnumba.compare import run_golden

            ok = run_golden(args, golden_dir=golden_dir, mode=mode, reference=reference)
            sys.exit(0 if ok else 1)
        if len(args) == 2 and not any(a.startswith("-") for a in args):
            _compare_two(args[0], args[1], fpixels, spixels, opts)
            return
        if not args:
            fail("compare", "nothing to compare: give two image files, nanoBragg flags after `--` "
                            "(with --c-bin or NB_C_BIN), or --golden")
        if not any(a.startswith("-") for a in args):
            fail("compare", f"expected two image files, got {len(args)} arguments")
        c_bin = c_bin or os.environ.get("NB_C_BIN")
        if not c_bin:
            fail("compare", "no C nanoBragg binary: give --c-bin PATH or set NB_C_BIN")
        from nbnumba.compare import run_against_c, write_c_run_artifacts

        res = run_against_c(args, c_bin, keep=keep, timeout=timeout, roi=opts.roi)
        for line in res.lines:
            click.echo(line)
        click.echo(f"C runtime: {res.c_seconds:.3f} s")
        click.echo(f"Py runtime: {res.ours_seconds:.3f} s")
        if res.workdir:
            click.echo(f"run folders kept in {res.workdir}")
        if opts.outdir:
            write_c_run_artifacts(res, opts.outdir, args, c_bin, opts.png_scale, opts.png_percentile)
            click.echo(f"comparison saved in {opts.outdir}")
    except NbnumbaError as exc:
        fail("compare", str(exc))
    _verdict(res.ok, res.float_stats, opts.threshold, runs_ok=res.c_returncode == 0 and res.ours_returncode == 0)


@dataclass
class _Options:
    outdir: str | None
    roi: tuple | None
    threshold: float | None
    png_scale: str
    png_percentile: float


def _verdict(ok, stats, threshold, runs_ok=True):
    """Print the verdict line and exit: by the golden tolerance, or by correlation with --threshold."""
    if threshold is None or not runs_ok or stats is None:
        click.echo("verdict: " + ("MATCH (within the golden tolerance)" if ok else "MISMATCH"))
        sys.exit(0 if ok else 1)
    corr = stats.correlation
    good = corr == corr and corr >= threshold
    click.echo(f"verdict: correlation {corr:.9f} " + (f">= {threshold:g}: PASS" if good else f"< {threshold:g}: FAIL"))
    sys.exit(0 if good else 3)


def _compare_two(a, b, fpixels, spixels, opts):
    from nbnumba.compare import compare_files, load_image, write_artifacts

    res = compare_files(a, b, fpixels, spixels, roi=opts.roi)
    st = res.image
    where = f", ROI x {st.roi[0]}-{st.roi[1]}, y {st.roi[2]}-{st.roi[3]}" if st.roi else ""
    click.echo(f"{a} vs {b} ({res.kind}, {st.shape[1]} x {st.shape[0]} pixels{where})")
    click.echo(f"max abs diff:   {st.max_abs:.6g}")
    click.echo(f"max rel diff:   {st.max_rel:.6g} at (slow, fast) {st.worst}")
    click.echo(f"within {st.rtol:g} rel: {st.frac_within * 100:.4f}%")
    click.echo(f"correlation:    {st.correlation:.9f}")
    click.echo(f"rmse:           {st.rmse:.6g}")
    click.echo(f"sums:           {st.sum_a:.6g} / {st.sum_b:.6g} = {st.sum_ratio:.9f}")
    click.echo(f"pixels differ:  {st.n_differ}")
    if res.kind == "smv":
        click.echo(f"SMV: {res.smv_message}")
        for d in res.header_diffs:
            click.echo(f"  header: {d}")
    if opts.outdir:
        img_a, img_b = load_image(a, fpixels, spixels)[0], load_image(b, fpixels, spixels)[0]
        write_artifacts(opts.outdir, img_a, img_b, st, names=("a", "b"), args=[a, b],
                        extra=dict(a=os.path.abspath(a), b=os.path.abspath(b), kind=res.kind),
                        png_scale=opts.png_scale, png_percentile=opts.png_percentile, save_floats=False)
        click.echo(f"comparison saved in {opts.outdir}")
    _verdict(res.ok, st, opts.threshold)
