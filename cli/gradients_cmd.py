"""``nbnumba gradients`` and ``nbnumba refine``: finite differences and fitting."""

from __future__ import annotations

import json
import os
import re

import click

from .scan_cmd import fail, open_executor


def make_folder(path: str) -> None:
    """Create an output folder, or fail with one line."""
    from nbnumba.errors import OutputFileError

    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise OutputFileError(f"cannot create the folder {path}: {exc.strerror or exc}") from None


def _parse_steps(items) -> dict:
    steps = {}
    for item in items:
        name, eq, value = item.partition("=")
        if not eq:
            raise click.BadParameter(f"{item!r}: expected NAME=VALUE", param_hint="--step")
        try:
            steps[name.strip()] = float(value)
        except ValueError:
            raise click.BadParameter(f"{item!r}: {value!r} is not a number", param_hint="--step") from None
    return steps


def file_stem(param: str) -> str:
    """A file-name-safe form of a parameter name: ``misset[0]`` -> ``misset_0``."""
    return re.sub(r"[^A-Za-z0-9_]+", "_", param).strip("_")


@click.command(name="gradients", context_settings=dict(help_option_names=["-h", "--help"]))
@click.option("--param", "params", multiple=True, required=True, metavar="NAME",
              help="Parameter: a SimConfig field (distance, lambda0, Na, phi0, ...) or component (misset[0]). "
                   "Repeatable.")
@click.option("--step", "step_items", multiple=True, metavar="NAME=VALUE",
              help="Finite-difference step in the parameter's units (SI; Angstrom for cell_angstrom).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Folder for grad_<param>.bin images (float32), image.bin and gradients.json.")
@click.option("--dask", default=None, metavar="ADDRESS",
              help="Render the differences on a Dask cluster (address, or 'local').")
@click.option("--backend", type=click.Choice(("cpu", "cuda", "auto")), default=None, help="Kernel backend.")
@click.argument("nanobragg_args", nargs=-1, type=click.UNPROCESSED)
def gradients(params, step_items, out_dir, dask, backend, nanobragg_args):
    """Finite-difference image gradients with respect to configuration fields.

    Give the nanoBragg flags after `--`:

    \b
      nbnumba gradients --param distance --param misset[0] --out grads \\
        -- -cell 50 50 50 90 90 90 -default_F 100 -N 5 -detpixels 32

    Writes OUT/grad_distance.bin, OUT/grad_misset_0.bin (photons per SI unit, float32, slow x fast),
    OUT/image.bin and OUT/gradients.json, and prints per-parameter norms.
    """
    from nbnumba.errors import NbnumbaError

    if not nanobragg_args:
        fail("gradients", "no nanoBragg flags: give them after `--`")
    steps = _parse_steps(step_items)
    try:
        import numpy as np

        from nbnumba.cargs import config_from_args
        from nbnumba.gradients import difference_plan, gradient, render_image, resolve_config
        from nbnumba.io.floatimage import float_bytes
        from nbnumba.io.outputs import OutputSet, check_outputs
        from nbnumba.runner import run_inputs

        cfg, run = config_from_args(list(nanobragg_args))
        inputs = run_inputs(run)
        backend = backend or run.backend
        base = resolve_config(cfg, params)
        plan = {p[0]: p for p in difference_plan(base, list(params), steps)}
        make_folder(out_dir)
        grad_paths = {name: os.path.join(out_dir, f"grad_{file_stem(name)}.bin") for name in params}
        image_path = os.path.join(out_dir, "image.bin")
        summary_path = os.path.join(out_dir, "gradients.json")
        check_outputs([image_path, *grad_paths.values(), summary_path], inputs)
        with open_executor("gradients", dask) as executor:
            grads = gradient(base, list(params), steps=steps, backend=backend, executor=executor,
                             resolve=False)
        image = render_image(base, backend=backend)
        summary = {"shape": list(image.shape), "parameters": {}}
        rows = []
        with OutputSet(inputs=inputs) as out:
            out.add(image_path, float_bytes(image))
            for name in params:
                g = grads[name]
                path = grad_paths[name]
                out.add(path, float_bytes(g))
                _n, value, _h, lo, hi, den = plan[name]
                row = {"value": value, "step": den / 2.0, "one_sided": lo == value,
                       "l2_norm": float(np.linalg.norm(g)), "max_abs": float(np.abs(g).max()),
                       "d_total": float(g.sum()), "file": path}
                summary["parameters"][name] = row
                rows.append((name, row))
            out.add(summary_path, (json.dumps(summary, indent=1)).encode())
            out.commit()
        click.echo(f"{'parameter':<20} {'value':>14} {'step':>11} {'L2 norm':>12} {'max |dI/dp|':>12} "
                   f"{'d(sum I)/dp':>12}  file")
        for name, row in rows:
            click.echo(f"{name:<20} {row['value']:>14.8g} {row['step']:>11.3g} {row['l2_norm']:>12.5g} "
                       f"{row['max_abs']:>12.5g} {row['d_total']:>12.5g}  {row['file']}")
    except NbnumbaError as exc:
        fail("gradients", str(exc))


@click.command(name="refine", context_settings=dict(help_option_names=["-h", "--help"]))
@click.option("--observed", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Image to fit: float image (raw float32) or SMV file.")
@click.option("--param", "params", multiple=True, required=True, metavar="NAME",
              help="Parameter to refine (repeatable); its start is the command line's value.")
@click.option("--step", "step_items", multiple=True, metavar="NAME=VALUE", help="Finite-difference step.")
@click.option("--iterations", type=int, default=10, show_default=True, help="Maximum iterations.")
@click.option("--no-scale", is_flag=True, help="Do not fit an overall scale factor.")
@click.option("--backend", type=click.Choice(("cpu", "cuda", "auto")), default=None, help="Kernel backend.")
@click.option("--out", "out_file", default=None, type=click.Path(dir_okay=False),
              help="Write the refined values and loss history as JSON.")
@click.argument("nanobragg_args", nargs=-1, type=click.UNPROCESSED)
def refine(observed, params, step_items, iterations, no_scale, backend, out_file, nanobragg_args):
    """Refine parameters so the simulated image fits an observed one.

    The command line after `--` is the starting model; the image size comes from it:

    \b
      nbnumba refine --observed obs.bin --param distance \\
        -- -cell 50 50 50 90 90 90 -default_F 100 -N 5 -detpixels 32 -distance 100.5
    """
    from nbnumba.errors import NbnumbaError

    if not nanobragg_args:
        fail("refine", "no nanoBragg flags: give them after `--`")
    steps = _parse_steps(step_items)
    try:
        from nbnumba.cargs import config_from_args
        from nbnumba.compare import load_image
        from nbnumba.gradients import refine as do_refine
        from nbnumba.io.outputs import check_outputs
        from nbnumba.prepare import prepare
        from nbnumba.runner import run_inputs

        cfg, run = config_from_args(list(nanobragg_args))
        inputs = [*run_inputs(run), observed]
        if out_file:
            check_outputs([out_file], inputs)
        prep = prepare(cfg)
        obs, _hdr = load_image(observed, prep.fpixels, prep.spixels)

        def report(it, loss, values):
            vals = " ".join(f"{k}={v:.10g}" for k, v in values.items())
            click.echo(f"iteration {it}: loss {loss:.6g}  {vals}")

        click.echo(f"refining {', '.join(params)} against {observed}")
        res = do_refine(cfg, obs, list(params), n_iter=iterations, steps=steps, backend=backend or run.backend,
                        fit_scale=not no_scale, callback=report)
    except NbnumbaError as exc:
        fail("refine", str(exc))
    click.echo(f"stopped: {res.message}; {res.iterations} iterations, {res.renders} renders")
    click.echo(f"loss {res.history[0]:.6g} -> {res.loss:.6g}; scale {res.scale:.8g}")
    for k in params:
        click.echo(f"  {k}: {res.initial_values[k]:.10g} -> {res.values[k]:.10g}")
    if out_file:
        from nbnumba.io.outputs import atomic_write

        doc = {"values": res.values, "initial_values": res.initial_values, "scale": res.scale,
               "history": res.history, "converged": res.converged, "message": res.message}
        try:
            atomic_write(out_file, json.dumps(doc, indent=1).encode(), inputs=inputs)
        except NbnumbaError as exc:
            fail("refine", str(exc))
