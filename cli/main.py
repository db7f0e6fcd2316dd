"""Console script ``nbnumba`` and the Click form of ``nanoBragg``.

Heavy imports (numpy, numba) happen inside the commands, so ``-h`` is fast.
The ``nanoBragg`` console script itself is :func:`nbnumba_cli.nanobragg.main`.
"""

from __future__ import annotations

import click

from .nanobragg import run_command_line

CONTEXT = dict(ignore_unknown_options=True, allow_extra_args=True, help_option_names=[])


@click.command(name="nanoBragg", context_settings=CONTEXT, add_help_option=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def nanobragg(args):
    """Drop-in replacement for the C nanoBragg (-h lists every flag)."""
    run_command_line(args)


@click.group(name="nbnumba")
@click.version_option(package_name="nbnumba")
def nbnumba():
    """nbnumba: Numba-accelerated nanoBragg."""


@nbnumba.command(name="run", context_settings=CONTEXT, add_help_option=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def run_cmd(args):
    """Same as the nanoBragg command (nbnumba run -h lists every flag)."""
    run_command_line(args)


def main():  # pragma: no cover - entry point
    nbnumba()


from .bench_cmd import bench as _bench  # noqa: E402

nbnumba.add_command(_bench)
from .scan_cmd import scan as _scan  # noqa: E402

nbnumba.add_command(_scan)
from .gradients_cmd import gradients as _gradients  # noqa: E402

nbnumba.add_command(_gradients)
from .gradients_cmd import refine as _refine  # noqa: E402

nbnumba.add_command(_refine)
from .compare_cmd import compare as _compare  # noqa: E402

nbnumba.add_command(_compare)
