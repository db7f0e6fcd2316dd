"""``nbnumba server``: a warm process that runs ``nanoBragg`` commands without the start-up cost."""

from __future__ import annotations

import time

import click

from .scan_cmd import fail


@click.group(name="server", context_settings=dict(help_option_names=["-h", "--help"]))
def server():
    """Keep the engine loaded so that each nanoBragg command starts in milliseconds.

    While a server of this installation runs, every `nanoBragg` command of
    this user is run by a fork of it (same code, same output, same exit
    status) unless NBNUMBA_SERVER=off; NBNUMBA_SERVER=require makes a
    command fail when no server can take it.  Commands whose environment
    differs in what is read at start-up (NUMBA_*, NBNUMBA_CPU_KERNEL,
    NBNUMBA_CACHE_DIR, HOME, TMPDIR, ...) run in their own process.
    """


@server.command(name="start")
@click.option("--idle-timeout", type=click.FloatRange(min=0), default=3600.0, show_default=True, metavar="SECONDS",
              help="Exit after this long without a command (0: never).")
@click.option("--wait", type=click.FloatRange(min=1), default=300.0, show_default=True, metavar="SECONDS",
              help="How long to wait for the server to be ready (the very first start compiles the kernels).")
def start_cmd(idle_timeout, wait):
    """Start this user's server (nothing happens when one is running)."""
    from . import _server

    try:
        info, started = _server.start(idle_timeout, wait)
    except RuntimeError as exc:
        fail("server start", str(exc))
    word = "started" if started else "already running"
    click.echo(f"nbnumba server {word}: pid {info['pid']}, {info['kernel']} kernel, socket {info['socket']}")


@server.command(name="stop")
def stop_cmd():
    """Stop this user's server (runs in progress finish)."""
    from . import _server

    info = _server.stop()
    if info is None:
        click.echo("no nbnumba server is running")
        return
    click.echo(f"nbnumba server stopped: pid {info['pid']}, {info['served']} commands served")


@server.command(name="status")
def status_cmd():
    """Say whether a server runs, and what it did; exit 1 when none runs."""
    from . import _server

    info = _server.status()
    if info is None:
        click.echo("no nbnumba server is running")
        raise SystemExit(1)
    idle = "never" if not info["idle_timeout"] else f"{info['idle_timeout']:g} s"
    click.echo(f"nbnumba server: pid {info['pid']}, up {time.time() - info['started']:.0f} s "
               f"(warm in {info['warm_s']:.2f} s), {info['served']} commands served, {info['declined']} declined, "
               f"{info['kernel']} kernel, "
               f"idle timeout {idle}\nsocket {info['socket']}\nlog {_server.log_path()}")
