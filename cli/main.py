"""Console script ``nbnumba`` and the Click form of ``nanoBragg``.

Heavy imports (numpy, numba) happen inside the commands, so ``-h`` is fast.
The ``nanoBragg`` command itself is :func:`nbnumba_cli.nanobragg.main`, started by the script ``cli/bin/nanoBragg``.
"""

from __future__ import annotations

import click

from .nanobragg import run_command_line

CONTEXT = dict(ignore_unknown_options=True, allow_extra_args=True, help_option_names=[])


class SafeGroup(click.Group):
    """A Click group whose subcommands never end in a Python traceback.

    Errors of nbnumba (and any unexpected exception) become one line on
    stderr and exit status 2 (``NBNUMBA_TRACEBACK=1`` shows the traceback);
    an interrupt is one line too; a broken pipe on stdout is left to Click,
    which ends quietly.
    """

    def invoke(self, ctx):
        from ._safety import fail_line, report_unexpected

        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort, SystemExit):
            raise
        except BrokenPipeError:
            raise
        except KeyboardInterrupt:
            fail_line(_name(ctx), "interrupted")
            ctx.exit(2)
        except Exception as exc:  # noqa: BLE001 - the last line of defence
            from nbnumba.errors import NbnumbaError

            if isinstance(exc, NbnumbaError):
                fail_line(_name(ctx), str(exc))
                ctx.exit(2)
            ctx.exit(report_unexpected(_name(ctx), exc))


def _name(ctx) -> str:
    sub = ctx.invoked_subcommand
    return f"nbnumba {sub}" if sub else "nbnumba"


@click.command(name="nanoBragg", context_settings=CONTEXT, add_help_option=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def nanobragg(args):
    """Drop-in replacement for the C nanoBragg (-h lists every flag)."""
    run_command_line(args)


@click.group(name="nbnumba", cls=SafeGroup, context_settings=dict(help_option_names=["-h", "--help"]))
@click.version_option(package_name="nbnumba")
def nbnumba():
    """nbnumba: Numba-accelerated nanoBragg."""


@nbnumba.command(name="run", context_settings=CONTEXT, add_help_option=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def run_cmd(args):
    """Same as the nanoBragg command (nbnumba run -h lists every flag)."""
    run_command_line(args)


def main():  # pragma: no cover - entry point
    """Console script ``nbnumba`` (SIGTERM handled like SIGINT)."""
    from ._safety import handle_sigterm

    handle_sigterm()
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
from .refine_f_cmd import refine_f as _refine_f  # noqa: E402

nbnumba.add_command(_refine_f)
from .server_cmd import server as _server_group  # noqa: E402

nbnumba.add_command(_server_group)
