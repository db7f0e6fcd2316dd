"""What every command of the project does with errors, signals and broken pipes.

* An error is one line on stderr (``PROG: error: MESSAGE``) and exit status 2;
  text taken from the user's input is shown as a short escaped excerpt.
* An unexpected exception is reported the same way; set the environment
  variable ``NBNUMBA_TRACEBACK=1`` to see its Python traceback (for a bug
  report).
* SIGTERM is handled like SIGINT (Ctrl-C): the command stops, removes its
  temporaries and leaves every existing file as it was.
* A closed standard output (``nanoBragg -h | head``) ends the command quietly.
"""

from __future__ import annotations

import os
import re
import signal
import sys

TRACEBACK_ENV = "NBNUMBA_TRACEBACK"
EXCERPT = 60
LINE_LIMIT = 500
_QUOTED = re.compile(r"""'((?:[^'\\]|\\.){%d,})'|"((?:[^"\\]|\\.){%d,})\"""" % (EXCERPT + 1, EXCERPT + 1))


def traceback_wanted() -> bool:
    """True when ``NBNUMBA_TRACEBACK`` asks for tracebacks."""
    return os.environ.get(TRACEBACK_ENV, "").strip().lower() not in ("", "0", "no", "false", "off")


def _escape(text: str) -> str:
    out = []
    for ch in text:
        if ch.isprintable() or ch == " ":
            out.append(ch)
        else:
            out.append(ch.encode("unicode_escape").decode("ascii"))
    return "".join(out)


def _short(match: re.Match) -> str:
    body = match.group(1) if match.group(1) is not None else match.group(2)
    quote = "'" if match.group(1) is not None else '"'
    return f"{quote}{body[:EXCERPT - 3]}...{quote}"


def one_line(message) -> str:
    """`message` as one printable line: control and odd characters escaped,
    quoted excerpts cut to about 60 characters, the whole to 500."""
    text = _QUOTED.sub(_short, _escape(str(message)))
    if len(text) > LINE_LIMIT:
        text = text[:LINE_LIMIT - 3] + "..."
    return text


def fail_line(prog: str, message) -> None:
    """Print ``PROG: error: MESSAGE`` (one line) on stderr."""
    try:
        print(f"{prog}: error: {one_line(message)}", file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def report_unexpected(prog: str, exc: BaseException) -> int:
    """Report an exception nobody expected; returns the exit status (2)."""
    if isinstance(exc, MemoryError):
        fail_line(prog, "out of memory")
        return 2
    if traceback_wanted():
        import traceback

        traceback.print_exception(exc)
    name = type(exc).__name__
    detail = str(exc)
    fail_line(prog, f"internal error: {name}{': ' + detail if detail else ''} "
                    f"(set {TRACEBACK_ENV}=1 to see the traceback)")
    return 2


def _terminate(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def handle_sigterm() -> None:
    """Make SIGTERM raise KeyboardInterrupt, as SIGINT does (main thread only)."""
    try:
        signal.signal(signal.SIGTERM, _terminate)
    except (ValueError, OSError):  # not the main thread, or no such signal here
        pass


def quiet_broken_pipe() -> None:
    """After a broken pipe on stdout: send what is left to /dev/null."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass
