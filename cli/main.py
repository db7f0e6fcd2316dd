"""Console scripts ``nanoBragg`` and ``nbnumba``.

Heavy imports (numpy, numba) happen inside the commands, so ``-h`` is fast.
"""

from __future__ import annotations

import os
import sys

import click

CONTEXT = dict(ignore_unknown_options=True, allow_extra_args=True, help_option_names=[])


def _fail(message: str) -> None:
    click.echo(f"nanoBragg: error: {message}", err=True)
    sys.exit(2)


def _print_help() -> None:
    from nbnumba.flags import help_text

    click.echo(
        "usage: nanoBragg [flags]   (the C nanoBragg command line, verbatim)\n\n"
        "Renders the diffraction image of a nanocrystal on a pixel detector.\n"
        "Units: lengths in mm unless noted, angles in degrees, wavelength in Angstrom.\n"
    )
    click.echo(help_text())


def _lean_startup() -> None:
    """Start-up trims for the one-shot nanoBragg process.

    Numba probes SciPy's BLAS when it loads compiled code (about 0.2 s); the
    renderer uses no linear algebra, so the probe is answered "absent" here.
    OpenBLAS threads would only compete with the kernel's threads.
    """
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    if "scipy" not in sys.modules:
        sys.modules.setdefault("scipy.linalg.cython_blas", None)
        sys.modules.setdefault("scipy.linalg.cython_lapack", None)


def run_command_line(args) -> None:
    """Run a nanoBragg command line; errors become one line and exit 2."""
    args = list(args)
    if not args or any(a in ("-h", "--help", "-help") for a in args):
        _print_help()
        if not args:
            sys.exit(1)
        return
    _lean_startup()
    from nbnumba.errors import NbnumbaError

    try:
        from nbnumba.runner import run_nanobragg

        code = run_nanobragg(args)
    except NbnumbaError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        _fail("interrupted")
    sys.exit(code)


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


def nanobragg_main():  # pragma: no cover - entry point
    nanobragg()
from .bench_cmd import bench as _bench
nbnumba.add_command(_bench)
from .scan_cmd import scan as _scan  # noqa: E402
nbnumba.add_command(_scan)
from .gradients_cmd import gradients as _gradients  # noqa: E402
nbnumba.add_command(_gradients)
from .gradients_cmd import refine as _refine  # noqa: E402
nbnumba.add_command(_refine)
from .compare_cmd import compare as _compare  # noqa: E402
nbnumba.add_command(_compare)
