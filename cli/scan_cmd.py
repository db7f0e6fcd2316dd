"""``nbnumba scan``: render a rotation scan or a parameter series to files."""

from __future__ import annotations

import sys

import click

DEFAULT_FORMATS = ("float", "smv")


def fail(command: str, message: str, code: int = 2) -> None:
    """Print ``nbnumba COMMAND: error: MESSAGE`` (one escaped line) on stderr and exit."""
    from ._safety import fail_line

    fail_line(f"nbnumba {command}", message)
    sys.exit(code)


def open_executor(command: str, address):
    """:func:`nbnumba.executors.make_executor`, with an unreachable scheduler as one error line."""
    from nbnumba.executors import make_executor

    try:
        return make_executor(address)
    except (OSError, TimeoutError) as exc:
        fail(command, f"cannot reach the Dask scheduler at {address!r}: {exc}")


@click.command(name="scan", context_settings=dict(help_option_names=["-h", "--help"]))
@click.option("--frames", "n_frames", type=int, default=None, help="Number of frames of a phi (rotation) scan.")
@click.option("--phi-step", type=float, default=None, help="Spindle increment between frames (degrees).")
@click.option("--phi-start", type=float, default=None,
              help="Spindle angle of the first frame (degrees); default the -phi of the command line.")
@click.option("--osc", "osc_deg", type=float, default=None,
              help="Oscillation range per frame (degrees); default the step.")
@click.option("--vary", multiple=True, metavar="FIELD=v1,v2,...",
              help="Vary a SimConfig field (misset[0] for a component): values in SI units (cell_angstrom in "
                   "Angstrom) or with a unit, e.g. distance=100mm,120mm or phi0=0deg,5deg. Every value is checked "
                   "(field, index, number, unit, bounds) before the first frame renders. "
                   "Repeat to vary several fields together.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Folder for the frames (created if missing).")
@click.option("--prefix", default="frame", show_default=True, help="File names: PREFIX_0001.bin/.img.")
@click.option("--format", "formats", multiple=True, metavar="FORMAT",
              help="Files per frame (repeatable; default float and smv): float, smv, pgm, noise, cbf (photon "
                   "counts), tiff, edf, png; nexus writes one NXmx file for the whole scan.")
@click.option("--dask", default=None, metavar="ADDRESS",
              help="Render on a Dask cluster: a scheduler address, or 'local' for a new local cluster.")
@click.option("--backend", type=click.Choice(("cpu", "cuda", "auto")), default=None,
              help="Kernel backend (default: -backend of the command line, else cpu).")
@click.option("--dtype", type=click.Choice(("float64", "float32")), default=None,
              help="Kernel precision (default: -dtype of the command line, else float64).")
@click.option("--intfile-scale", type=float, default=None,
              help="SMV scale for every frame (default: -scale of the command line, else per frame as C).")
@click.option("--resume", is_flag=True,
              help="Skip the frames that PREFIX_scan.json records as complete (size and sha256 checked); "
                   "render the others.")
@click.argument("nanobragg_args", nargs=-1, type=click.UNPROCESSED)
def scan(n_frames, phi_step, phi_start, osc_deg, vary, out_dir, prefix, formats, dask, backend, dtype,
         intfile_scale, resume, nanobragg_args):
    """Render a series of frames from one nanoBragg command line.

    Give the nanoBragg flags after `--`.  A rotation scan (frame i starts
    at phi + i*step and covers one step):

    \b
      nbnumba scan --frames 3 --phi-step 1 --out frames \\
        -- -cell 100 100 100 90 90 90 -default_F 100 -N 5 -detpixels 64

    A parameter series (values in SI units, or with a unit such as mm, deg, A):

    \b
      nbnumba scan --vary distance=100mm,120mm,140mm --out dist \\
        -- -cell 100 100 100 90 90 90 -default_F 100 -N 5

    Printed values are in user units (mm, degrees, Angstrom).

    Writes PREFIX_0001.bin (float32) and PREFIX_0001.img (SMV) per frame and PREFIX_scan.json.
    The files of a frame appear together or not at all; --resume continues an
    interrupted scan.
    """
    from nbnumba.errors import NbnumbaError

    if not nanobragg_args:
        fail("scan", "no nanoBragg flags: give them after `--` (e.g. -- -cell 100 100 100 90 90 90 -default_F 100)")
    if vary and (n_frames is not None or phi_step is not None):
        fail("scan", "give either --frames/--phi-step (rotation scan) or --vary (parameter series), not both")
    if not vary and (n_frames is None or phi_step is None):
        fail("scan", "a rotation scan needs --frames N and --phi-step DEG (or use --vary FIELD=v1,v2,...)")
    try:
        from nbnumba.cargs import config_from_args
        from nbnumba.runner import run_inputs
        from nbnumba.scan import Scan, check_prefix, describe_changes, parse_vary, phi_scan, run_scan

        check_prefix(prefix)
        frames = parse_vary(vary) if vary else None  # checked before the nanoBragg flags are read
        cfg, run = config_from_args(list(nanobragg_args))
        if vary:
            the_scan = Scan(base=cfg, frames=frames, name="vary")
        else:
            the_scan = phi_scan(cfg, start_deg=phi_start, step_deg=phi_step, n_frames=n_frames, osc_deg=osc_deg)
        scale = intfile_scale if intfile_scale is not None else run.intfile_scale
        with open_executor("scan", dask) as executor:
            click.echo(f"rendering {len(the_scan)} frames ({executor.name} executor) into {out_dir}")
            records = run_scan(the_scan, executor=executor, backend=backend or run.backend,
                               dtype=dtype or run.dtype, out_dir=out_dir, prefix=prefix,
                               formats=formats or DEFAULT_FORMATS, nthreads=run.nthreads,
                               intfile_scale=scale, adc_offset=run.adc_offset, resume=resume,
                               seed=run.seed, inputs=run_inputs(run))
    except NbnumbaError as exc:
        fail("scan", str(exc))
    for r in records:
        changes = describe_changes(r.changes)
        files = " ".join(r.paths.values()) + ("  (complete, kept)" if r.resumed else "")
        click.echo(f"frame {r.number:04d}: {changes}  max_I={r.stats['max_I']:.6g} mean={r.stats['mean']:.6g}  "
                   f"{files}")

