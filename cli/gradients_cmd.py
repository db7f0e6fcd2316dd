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


def fit_input_options(command):
    """``--weights``, ``--mask``, ``--loss`` and ``--adc-offset``: the pixel options every fitting command takes."""
    for option in reversed((
        click.option("--weights", default="poisson", show_default=True, metavar="poisson|unit|FILE",
                     help="Pixel weights: Poisson (from the model), all equal, or a float image of 1/variance."),
        click.option("--mask", "mask_file", default=None, type=click.Path(exists=True, dir_okay=False),
                     help="Pixels to fit: an SMV or float image, 0 = leave out (the run's -roi and -mask also "
                          "apply)."),
        click.option("--loss", type=click.Choice(("linear", "soft_l1", "huber", "cauchy", "arctan")),
                     default="linear", show_default=True, help="Robust loss of scipy's least_squares."),
        click.option("--adc-offset", type=float, default=None,
                     help="Offset subtracted from an SMV --observed image (default: the run's -adc, 40)."),
    )):
        command = option(command)
    return command


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
@click.option("--observed", "observed", multiple=True, required=True, type=click.Path(exists=True, dir_okay=False),
              help="Image to fit, in photons: float image (raw float32) or SMV file (its ADC offset is removed). "
                   "Repeat for several frames (with --phi or --manifest).")
@click.option("--param", "params", multiple=True, required=True, metavar="NAME",
              help="Parameter to refine (repeatable; names as for gradients); its start is the command line's value. "
                   "With several frames: shared by all frames.")
@click.option("--per-frame", "per_frame", multiple=True, metavar="NAME",
              help="With several frames: a parameter refined per frame (misset[0], ...; repeatable).")
@click.option("--phi", "phis", multiple=True, type=float, metavar="DEG",
              help="With several frames: each frame's spindle start phi0 in degrees (one per --observed).")
@click.option("--manifest", default=None, type=click.Path(exists=True, dir_okay=False),
              help="With several frames: a scan manifest (nbnumba scan's <prefix>_scan.json) whose frames' changes "
                   "apply to the starting model, one frame per --observed, in order.")
@click.option("--coarse-to-fine", "coarse", is_flag=True,
              help="Fit binned images with broadened spots first (4x4, 2x2), then the full model.")
@click.option("--starts", type=click.IntRange(min=1), default=1, show_default=True,
              help="Orientations tried in the first coarse stage (offsets of 0.5 degrees on the misset parameters).")
@click.option("--step", "step_items", multiple=True, metavar="NAME=VALUE", help="Finite-difference step.")
@fit_input_options
@click.option("--max-evals", type=click.IntRange(min=1), default=50, show_default=True,
              help="Most model evaluations.")
@click.option("--no-scale", is_flag=True, help="Do not fit an overall scale factor (per frame).")
@click.option("--backend", type=click.Choice(("cpu", "cuda", "auto")), default=None, help="Kernel backend.")
@click.option("--dask", default=None, metavar="ADDRESS", help="Render the differences on a Dask cluster.")
@click.option("--out", "out_file", default=None, type=click.Path(dir_okay=False),
              help="Write the fit (start, value and sigma of each parameter, correlations, chi2/dof, status; "
                   "per-frame entries with several frames) as JSON.")
@click.argument("nanobragg_args", nargs=-1, type=click.UNPROCESSED)
def refine(observed, params, per_frame, phis, manifest, coarse, starts, step_items, weights, mask_file, loss,
           max_evals, adc_offset, no_scale, backend, dask, out_file, nanobragg_args):
    """Refine parameters so the simulated image fits an observed one (least squares, with uncertainties).

    The command line after `--` is the starting model; the image size comes from it:

    \b
      nbnumba refine --observed obs.img --param distance --param 'misset[0]' --out fit.json \\
        -- -cell 50 50 50 90 90 90 -default_F 100 -N 5 -detpixels 32 -distance 100.5

    Several frames of a rotation scan, the distance shared and the orientation per frame:

    \b
      nbnumba refine --observed f1.img --observed f2.img --phi 0 --phi 5 --param distance \\
        --per-frame 'misset[0]' --per-frame 'misset[1]' --out fit.json -- ...
    """
    from nbnumba.errors import NbnumbaError

    if not nanobragg_args:
        fail("refine", "no nanoBragg flags: give them after `--`")
    steps = _parse_steps(step_items)
    several = len(observed) > 1 or bool(phis) or bool(manifest) or bool(per_frame)
    if several and coarse:
        fail("refine", "--coarse-to-fine fits one frame: give one --observed (no --phi, --manifest, --per-frame)")
    try:
        from nbnumba.cargs import config_from_args
        from nbnumba.io.outputs import check_outputs
        from nbnumba.runner import run_inputs

        cfg, run = config_from_args(list(nanobragg_args), fdump_cache=True)
        inputs = [*run_inputs(run), *observed] + [p for p in (mask_file, _weights_file(weights), manifest) if p]
        if out_file:
            check_outputs([out_file], inputs)
        configs = _frame_configs(cfg, len(observed), phis, manifest) if several else [cfg]
        frames = [_refine_inputs(c, run, path, mask_file, weights, adc_offset) for c, path in zip(configs, observed)]

        def report(nfev, chi2, values):
            vals = " ".join(f"{k}={v:.10g}" for k, v in values.items())
            click.echo(f"evaluation {nfev}: chi2 {chi2:.6g}  {vals}")

        click.echo(f"refining {', '.join([*params, *per_frame])} against {', '.join(observed)}")
        common = dict(steps=steps, loss=loss, max_nfev=max_evals, backend=backend or run.backend, callback=report)
        with open_executor("refine", dask) as executor:
            res = _run_fit(configs, frames, list(params), list(per_frame), several, coarse, starts, no_scale,
                           executor, common)
    except NbnumbaError as exc:
        fail("refine", str(exc))
    _print_fit(res)
    for line in res.warnings:
        click.echo(f"nbnumba refine: warning: {line}", err=True)
    if out_file:
        from nbnumba.io.outputs import atomic_write

        try:
            atomic_write(out_file, json.dumps(res.as_dict(), indent=1).encode(), inputs=inputs)
        except NbnumbaError as exc:
            fail("refine", str(exc))


def _run_fit(configs, frames, params, per_frame, several, coarse, starts, no_scale, executor, common):
    """The fit `nbnumba refine` asked for: one frame (plain or coarse-to-fine) or several."""
    from nbnumba.errors import ConfigError
    from nbnumba.fitting import fit, fit_coarse_to_fine, fit_frames

    if several:
        weights = frames[0][2] if isinstance(frames[0][2], str) else [f[2] for f in frames]
        return fit_frames(configs, [f[0] for f in frames], shared=params, per_frame=per_frame,
                          masks=[f[1] for f in frames], weights=weights, fit_scale=not no_scale, executor=executor,
                          **common)
    obs, mask, w = frames[0]
    if coarse or starts > 1:
        if starts > 1 and not coarse:
            raise ConfigError("--starts needs --coarse-to-fine")
        common = {k: v for k, v in common.items() if k != "max_nfev"}
        return fit_coarse_to_fine(configs[0], obs, params, starts=starts, mask=mask, weights=w,
                                  fit_scale=not no_scale, executor=executor, **common)
    return fit(configs[0], obs, params, mask=mask, weights=w, fit_scale=not no_scale, executor=executor, **common)


def _frame_configs(cfg, n_frames: int, phis, manifest) -> list:
    """Each frame's starting model: the command line with its --phi, or its manifest changes."""
    from nbnumba.errors import ConfigError
    from nbnumba.scan import apply_changes

    if phis and manifest:
        raise ConfigError("give --phi or --manifest, not both")
    if phis:
        if len(phis) != n_frames:
            raise ConfigError(f"{len(phis)} --phi values for {n_frames} --observed images")
        import math

        return [apply_changes(cfg, {"phi0": math.radians(p)}) for p in phis]
    if manifest:
        try:
            with open(manifest) as fh:
                doc = json.load(fh)
            changes = [dict(fr["changes"]) for fr in sorted(doc["frames"], key=lambda fr: fr["index"])]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{manifest}: not a scan manifest ({exc})") from None
        if len(changes) != n_frames:
            raise ConfigError(f"the manifest has {len(changes)} frames, --observed {n_frames}")
        return [apply_changes(cfg, ch) for ch in changes]
    return [cfg] * n_frames


def _weights_file(weights: str):
    return None if weights in ("poisson", "unit") else weights


def _refine_inputs(cfg, run, observed, mask_file, weights, adc_offset):
    """The observed image in photons, the mask and the weights of `nbnumba refine`."""
    import numpy as np

    from nbnumba.compare import load_image
    from nbnumba.prepare import prepare

    prep = prepare(cfg)
    obs, header = load_image(observed, prep.fpixels, prep.spixels)
    obs = np.asarray(obs, dtype=np.float64)
    if header is not None:  # SMV: integer counts on top of the ADC offset
        obs = obs - (run.adc_offset if adc_offset is None else adc_offset)
    mask = None
    if mask_file:
        mask = np.asarray(load_image(mask_file, prep.fpixels, prep.spixels)[0]) != 0
    w = weights
    if _weights_file(weights):
        w = np.asarray(load_image(weights, prep.fpixels, prep.spixels)[0], dtype=np.float64)
    return obs, mask, w


def _print_fit(res) -> None:
    click.echo(f"status: {res.status}: {res.message}")
    click.echo(f"chi2/dof {res.chi2_per_dof:.4g} ({res.dof} degrees of freedom, {res.weights} weights); "
               f"{res.nfev} evaluations, {res.njev} Jacobians")
    for st in getattr(res, "stages", []):
        if st["status"] == "skipped":
            click.echo(f"  stage: bin {st['bin']} skipped: {st['message']}")
            continue
        click.echo(f"  stage: bin {st['bin']}, crystal size x{st['n_factor']:g}: chi2/dof {st['chi2_per_dof']:.4g}"
                   + (f", best of {len(st['starts'])} starts" if st["starts"] else ""))
    click.echo(f"  {'parameter':<16} {'start':>16} {'value':>16} {'sigma':>12}")
    for name, p in res.parameters.items():
        note = "  (integer search)" if p.method != "least squares" else ""
        click.echo(f"  {name:<16} {p.start:>16.10g} {p.value:>16.10g} {p.sigma:>12.4g}{note}")
