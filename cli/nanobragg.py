"""The ``nanoBragg`` command: the C program's command line, verbatim.

The Click command :func:`nbnumba_cli.main.nanobragg` (also ``nbnumba run``)
takes its arguments unprocessed and calls :func:`run_command_line`; this
module is the same command without importing Click, because a small render
takes a tenth of a second and every import shows in it.  Nothing here
imports numpy or the engine before the arguments are known.
"""

from __future__ import annotations

import os
import sys

PROG = "nanoBragg"


def _fail(message: str) -> None:
    from ._safety import fail_line

    fail_line(PROG, message)
    sys.exit(2)


def _print_version() -> None:
    try:
        from importlib.metadata import version

        text = version("nbnumba")
    except Exception:  # noqa: BLE001 - not installed as a distribution
        from nbnumba import __version__ as text
    print(f"nanoBragg (nbnumba {text})")


def _print_help() -> None:
    from nbnumba.flags import help_text

    print(
        "usage: nanoBragg [flags]   (the C nanoBragg command line, verbatim)\n\n"
        "Renders the diffraction image of a nanocrystal on a pixel detector.\n"
        "Units: lengths in mm unless noted, angles in degrees, wavelength in Angstrom.\n"
    )
    print(help_text())


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"nanoBragg: warning: {message}\n"


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
    """Run a nanoBragg command line; errors become one line and exit 2.

    Unexpected exceptions too (``NBNUMBA_TRACEBACK=1`` prints their
    traceback first); an interrupt (SIGINT, or SIGTERM once
    :func:`main` has installed its handler) stops the run with no output
    file changed; a closed standard output ends it quietly.
    """
    args = list(args)
    if args == ["--version"]:
        _print_version()
        return
    if not args or any(a in ("-h", "--help", "-help") for a in args):
        try:
            _print_help()
            sys.stdout.flush()
        except BrokenPipeError:
            from ._safety import quiet_broken_pipe

            quiet_broken_pipe()
            return
        if not args:
            sys.exit(1)
        return
    from nbnumba.errors import NbnumbaError

    from ._safety import quiet_broken_pipe, report_unexpected

    try:
        from nbnumba.runner import run_nanobragg

        code = run_nanobragg(args)
    except NbnumbaError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        _fail("interrupted")
    except BrokenPipeError:
        quiet_broken_pipe()
        sys.exit(1)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: no tracebacks
        sys.exit(report_unexpected(PROG, exc))
    sys.exit(code)


def command(argv) -> int:
    """Run the nanoBragg command line ``argv`` in this process; its exit status.

    What :func:`main` does once it knows that no server takes the command,
    and what the server's child runs (:mod:`nbnumba_cli._server`).
    """
    import warnings

    from ._safety import handle_sigterm

    warnings.formatwarning = _one_line_warning  # this process is only the command
    handle_sigterm()
    _lean_startup()  # here, not in run_command_line: in-process callers may still want SciPy
    try:
        run_command_line(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code
    except KeyboardInterrupt:  # a signal outside the run itself
        code = 2
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    if not _flush_streams():
        code = code or 1
    return code


def _flush_streams() -> bool:
    """Flush standard output and error; False when one of them could not be written."""
    ok = True
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:  # None: the descriptor was closed when Python started
                stream.flush()
        except (OSError, ValueError):
            ok = False
    return ok


def main() -> None:  # pragma: no cover - entry point
    """The ``nanoBragg`` command (script ``cli/bin/nanoBragg``; ``python -m nbnumba_cli.nanobragg`` too).

    First offers the command to this user's server, if one runs
    (:mod:`nbnumba_cli._client`, ``NBNUMBA_SERVER``); else runs it here.
    A one-shot render allocates large arrays and imports numpy; tearing
    those down costs about 20 ms, a tenth of a small run.  Every output file
    is complete (written and renamed into place) before the command returns,
    so once the exit status is known the process flushes its streams and
    ends without the teardown.
    """
    from ._client import try_server

    code = try_server(sys.argv[1:], PROG)
    if code is None:
        code = command(sys.argv[1:])
    else:
        _flush_streams()  # the served run's status stands
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover - python -m nbnumba_cli.nanobragg (where scripts do not run)
    main()
