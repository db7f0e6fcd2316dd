"""``nbnumba refine-f``: refine the structure factors of the reflections on an image."""

from __future__ import annotations

import json

import click

from .gradients_cmd import _refine_inputs, _weights_file, fit_input_options
from .scan_cmd import fail


def mtz_bytes(result, cell) -> bytes:
    """The refined ``F``/``SIGF`` of ``result`` as the bytes of an MTZ file (gemmi)."""
    import os
    import tempfile

    import gemmi
    import numpy as np

    mtz = gemmi.Mtz(with_base=True)
    mtz.spacegroup = gemmi.SpaceGroup(result.spacegroup or "P 1")
    mtz.set_cell_for_all(gemmi.UnitCell(*cell))
    mtz.add_dataset("nbnumba")
    mtz.add_column("F", "F")
    mtz.add_column("SIGF", "Q")
    data = np.column_stack([result.hkl.astype(np.float64), result.F, result.sigma]).astype(np.float32)
    mtz.set_data(data)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "F.mtz")
        mtz.write_to_file(path)
        with open(path, "rb") as fh:
            return fh.read()


def _cell_of(cfg) -> tuple:
    """a, b, c (Angstrom), alpha, beta, gamma (degrees) of the crystal: ``-cell``, or B of the ``-mat`` matrix."""
    import math

    from nbnumba.stages.crystal import split_orientation_matrix

    if cfg.cell_angstrom is None and cfg.a_matrix is not None:
        cfg = split_orientation_matrix(cfg)
    return (*(float(v) for v in cfg.cell_angstrom), *(math.degrees(float(v)) for v in cfg.cell_angles))


@click.command(name="refine-f", context_settings=dict(help_option_names=["-h", "--help"]))
@click.option("--observed", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Image to fit, in photons: float image (raw float32) or SMV file (its ADC offset is removed).")
@click.option("--out", "out_file", required=True, type=click.Path(dir_okay=False),
              help="Refined structure factors: an MTZ file (name ending .mtz: H K L F SIGF) or a text file of "
                   "'h k l F SIGF' lines.")
@click.option("--spacegroup", default=None, metavar="NAME",
              help="Tie symmetry-equivalent reflections and Friedel mates (e.g. 'P 21 21 21'); one F per "
                   "reciprocal-ASU reflection.")
@click.option("--restraint", type=click.FloatRange(min=0.0), default=0.0, show_default=True,
              help="Weight w of a restraint w (F - F_start)^2 added to the chi-square for each F.")
@fit_input_options
@click.option("--max-evals", type=click.IntRange(min=1), default=100, show_default=True,
              help="Most model evaluations.")
@click.option("--no-scale", is_flag=True, help="Do not fit an overall scale factor.")
@click.option("--json", "json_file", default=None, type=click.Path(dir_okay=False),
              help="Also write the fit (start, value and sigma of each F and the scale, chi2/dof, status) as JSON.")
@click.argument("nanobragg_args", nargs=-1, type=click.UNPROCESSED)
def refine_f(observed, out_file, spacegroup, restraint, weights, mask_file, loss, max_evals, adc_offset, no_scale,
             json_file, nanobragg_args):
    """Refine the structure factors of the reflections on an image (geometry held fixed).

    The command line after `--` is the starting model (its -hkl table gives
    the starting F; nearest-neighbour F, i.e. no -interpolate):

    \b
      nbnumba refine-f --observed obs.img --spacegroup 'P 21 21 21' --out F.mtz \\
        -- -hkl P1.hkl -cell 50 60 70 90 90 90 -N 6 -detpixels 40 -distance 60 -water 0.02
    """
    from nbnumba.errors import NbnumbaError

    if not nanobragg_args:
        fail("refine-f", "no nanoBragg flags: give them after `--`")
    try:
        from nbnumba.cargs import config_from_args
        from nbnumba.io.outputs import OutputSet, check_outputs
        from nbnumba.reflection_fit import refine_structure_factors
        from nbnumba.runner import run_inputs

        cfg, run = config_from_args(list(nanobragg_args), fdump_cache=True)
        inputs = [*run_inputs(run), observed] + [p for p in (mask_file, _weights_file(weights)) if p]
        outputs = [out_file] + ([json_file] if json_file else [])
        check_outputs(outputs, inputs)
        obs, mask, w = _refine_inputs(cfg, run, observed, mask_file, weights, adc_offset)

        def report(nfev, chi2, _F):
            click.echo(f"evaluation {nfev}: chi2 {chi2:.6g}")

        click.echo(f"refining the structure factors on {observed}")
        res = refine_structure_factors(cfg, obs, spacegroup=spacegroup, restraint=restraint, mask=mask, weights=w,
                                       fit_scale=not no_scale, loss=loss, max_nfev=max_evals, callback=report)
        if out_file.lower().endswith(".mtz"):
            content = mtz_bytes(res, _cell_of(cfg))
        else:
            content = res.table_text().encode()
        with OutputSet(inputs=inputs) as out:
            out.add(out_file, content)
            if json_file:
                out.add(json_file, json.dumps(res.as_dict(), indent=1).encode())
            out.commit()
    except NbnumbaError as exc:
        fail("refine-f", str(exc))
    click.echo(f"status: {res.status}: {res.message}")
    click.echo(f"chi2/dof {res.chi2_per_dof:.4g} ({res.dof} degrees of freedom, {res.weights} weights); "
               f"{res.nfev} evaluations; {len(res.hkl)} structure factors")
    if "scale" in res.parameters:
        p = res.parameters["scale"]
        click.echo(f"scale {p.value:.8g} +/- {p.sigma:.3g}")
    moved = sum(abs(v - s) > e for v, s, e in zip(res.F, res.start, res.sigma))
    click.echo(f"{moved} structure factors moved by more than their sigma; written to {out_file}")
