"""``python -m nbnumba ARGS``: the nanoBragg command, run from the library alone.

The console scripts live in the separate ``nbnumba_cli`` package; this entry
point lets library code (the golden-corpus runner, the benchmark) start the
same command in a child process, with its own working folder, without
importing the command-line package.  Errors end in one line on stderr and
exit status 2, as with ``nanoBragg``.
"""

from __future__ import annotations

import sys


def main(argv=None) -> int:
    """Run a nanoBragg command line; return its exit status."""
    from .errors import NbnumbaError
    from .runner import run_nanobragg

    args = sys.argv[1:] if argv is None else list(argv)
    try:
        return run_nanobragg(args)
    except NbnumbaError as exc:
        print(f"nanoBragg: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nanoBragg: error: interrupted", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover - exercised through subprocesses
    sys.exit(main())
