"""The ``nanoBragg`` side of the command server (see :mod:`nbnumba_cli._server`).

A one-shot ``nanoBragg`` spends most of a small run starting Python and
importing NumPy and the engine.  When the user has started a server
(``nbnumba server start``), the command instead hands its arguments, its
environment, its working folder and its standard streams to that server,
which forks a copy of itself (everything imported, kernels loaded) to run
them.  The output is the same command's output: the same code runs, only
already loaded.

This module is imported before anything else by the ``nanoBragg`` script,
so it imports only small standard modules.  It decides whether to use a
server with the ``NBNUMBA_SERVER`` environment variable:

``auto`` (default)
    use a server when one of this installation is running, else run here;
``off``
    never use one;
``require``
    use one or fail (exit 2), saying why; for scripts and benchmarks that
    must know which path ran.

A server is trusted only when its socket lies in a folder owned by this
user and closed to everyone else, and when the process behind the socket
runs as this user (checked with ``SO_PEERCRED``).
"""

from __future__ import annotations

import os
import stat
import sys

ENV = "NBNUMBA_SERVER"
MODES = ("auto", "off", "require")
MAGIC = b"NBS1"
REQUEST_LIMIT = 1 << 22  # bytes of arguments and environment
# Resource limits that a run must keep: the server's child takes the client's values.
RLIMITS = ("RLIMIT_AS", "RLIMIT_DATA", "RLIMIT_FSIZE", "RLIMIT_CPU", "RLIMIT_NOFILE", "RLIMIT_CORE")


class ServerUnavailable(Exception):
    """No server can run this command; the message says why."""


def supported() -> bool:
    """Servers run on Linux (Unix sockets that pass descriptors and tell the peer's user)."""
    return sys.platform.startswith("linux")


def mode() -> str:
    """The ``NBNUMBA_SERVER`` setting; raises ValueError when it is not one of :data:`MODES`."""
    value = os.environ.get(ENV, "auto").strip().lower() or "auto"
    if value not in MODES:
        raise ValueError(f"{ENV} must be one of {', '.join(MODES)}, not {value!r}")
    return value


def private_dir_problem(path: str) -> str | None:
    """Why ``path`` is not a folder private to this user (None when it is)."""
    try:
        st = os.lstat(path)
    except OSError as exc:
        return f"{path}: {exc.strerror}"
    if not stat.S_ISDIR(st.st_mode):
        return f"{path} is not a folder"
    if st.st_uid != os.geteuid():
        return f"{path} belongs to another user"
    if st.st_mode & 0o077:
        return f"{path} is open to other users (mode {stat.S_IMODE(st.st_mode):o})"
    return None


def runtime_dir() -> str:
    """Folder of this user's server sockets: ``$XDG_RUNTIME_DIR/nbnumba``, else ``$TMPDIR/nbnumba-server-UID``."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isabs(xdg) and private_dir_problem(xdg) is None:
        return os.path.join(xdg, "nbnumba")
    tmp = os.environ.get("TMPDIR") or "/tmp"
    return os.path.join(tmp, f"nbnumba-server-{os.geteuid()}")


def installation_key() -> str:
    """Names the installation: its Python prefix and version and this package's folder.

    Two virtual environments, or two checkouts, never share a server.
    """
    text = "\0".join((sys.prefix, sys.version, os.path.dirname(os.path.abspath(__file__)))).encode()
    h = 0xCBF29CE484222325  # 64-bit FNV-1a: no module to import for it
    for byte in text:
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def socket_path() -> str:
    """Path of this installation's server socket."""
    return os.path.join(runtime_dir(), f"s-{installation_key()}")


def _recv_exact(sock, n: int) -> bytes:
    parts = []
    while n:
        chunk = sock.recv(min(n, 1 << 20))
        if not chunk:
            raise EOFError
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


def send_frame(sock, kind: bytes, body: bytes = b"") -> None:
    """One frame: a kind byte, the body's length (4 bytes), the body."""
    sock.sendall(kind + len(body).to_bytes(4, "little") + body)


def recv_frame(sock, limit: int = 1 << 16) -> tuple[bytes, bytes]:
    """The next frame as (kind, body); EOFError when the peer closed."""
    head = _recv_exact(sock, 5)
    size = int.from_bytes(head[1:], "little")
    if size > limit:
        raise EOFError
    return head[:1], _recv_exact(sock, size)


def peer_uid(sock) -> int:
    """User id of the process at the other end of a Unix socket (``SO_PEERCRED``: pid, uid, gid)."""
    import _socket

    creds = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12)
    return int.from_bytes(creds[4:8], sys.byteorder, signed=True)


def connect(timeout: float = 30.0):
    """A socket connected to this user's server; raises :class:`ServerUnavailable`.

    Uses the ``_socket`` extension directly: the ``socket`` module imports
    ``enum`` and ``selectors``, 15 ms of a 60 ms command.
    """
    if not supported():
        raise ServerUnavailable(f"the command server runs on Linux only, not {sys.platform}")
    folder = runtime_dir()
    problem = private_dir_problem(folder)
    if problem is not None:
        raise ServerUnavailable("no server is running" if not os.path.lexists(folder) else problem)
    path = socket_path()
    try:
        st = os.lstat(path)
    except OSError:
        raise ServerUnavailable("no server is running (start one with: nbnumba server start)") from None
    if not stat.S_ISSOCK(st.st_mode) or st.st_uid != os.geteuid():
        raise ServerUnavailable(f"{path} is not this user's server socket")
    import _socket

    for fd in (0, 1, 2):  # before the socket is made, which would take a closed stream's number
        try:
            os.fstat(fd)
        except OSError:
            raise ServerUnavailable(f"standard stream {fd} is closed") from None
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        _connect(sock, path, timeout)
        if peer_uid(sock) != os.geteuid():
            raise ServerUnavailable(f"the process behind {path} runs as another user")
    except OSError as exc:
        sock.close()
        raise ServerUnavailable(f"no server answers at {path} ({exc.strerror or exc})") from None
    except ServerUnavailable:
        sock.close()
        raise
    return sock


def _connect(sock, path: str, timeout: float) -> None:
    """Connect, retrying while the server's backlog is full (EAGAIN) for up to ``timeout`` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            sock.connect(path)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.005)


def send_with_fds(sock, data: bytes, fds: list[int]) -> None:
    """Send ``data`` and pass the descriptors ``fds`` along (``SCM_RIGHTS``), as ``socket.send_fds`` does."""
    import _socket

    rights = b"".join(fd.to_bytes(4, sys.byteorder, signed=True) for fd in fds)
    sent = sock.sendmsg([data], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, rights)])
    if sent < len(data):
        sock.sendall(data[sent:])


def _rlimits() -> dict:
    import resource

    return {name: resource.getrlimit(getattr(resource, name)) for name in RLIMITS if hasattr(resource, name)}


def _read_small(path: str) -> str:
    try:
        with open(path, "rb", buffering=0) as f:
            return f.read(1 << 16).decode("utf-8", "replace")
    except OSError:
        return ""


def _link(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


def namespaces() -> list:
    """This process's namespaces (mount, pid, network, user, IPC, host name), as the kernel names them."""
    return [_link(f"/proc/self/ns/{name}") for name in ("mnt", "pid", "net", "user", "ipc", "uts")]


def _stream_settings() -> list:
    out = []
    for stream in (sys.stdin, sys.stdout, sys.stderr):
        out.append((getattr(stream, "encoding", None) or "utf-8", getattr(stream, "errors", None) or "strict"))
    return out


def _request(argv: list[str]) -> bytes:
    """What the run must take over from this process, to run as this process would."""
    import marshal

    umask = os.umask(0o077)
    os.umask(umask)
    return marshal.dumps({
        "argv0": sys.argv[0] if sys.argv else "nanoBragg",
        "argv": [str(a) for a in argv],
        "env": dict(os.environ),
        "umask": umask,
        "uid": os.geteuid(),
        "gid": os.getegid(),
        "groups": sorted(os.getgroups()),
        "rlimits": _rlimits(),
        "affinity": sorted(os.sched_getaffinity(0)),
        "nice": os.getpriority(os.PRIO_PROCESS, 0),
        "streams": _stream_settings(),
        # a server in another cgroup (a batch job's limits) or another namespace (a container)
        # would run the command outside them: such a command is declined
        "cgroup": _read_small("/proc/self/cgroup"),
        "namespaces": namespaces(),
    })


# Signals a caller sends to stop the command; passed on to the run unless this process ignores them
# (nohup, a background job of a script), as a one-shot run would ignore them too.
FORWARDED = ("SIGINT", "SIGTERM", "SIGHUP")
WAIT_ACCEPTED = 60.0  # seconds for the server to take the command (a busy machine)


def send_request(sock, argv: list[str], streams=(0, 1, 2)) -> None:
    """Send the command ``argv``: "R", then the request with ``streams`` (stdin, stdout, stderr) and this
    process's working folder passed along, then the request's bytes."""
    payload = _request(argv)
    if len(payload) > REQUEST_LIMIT:
        raise ServerUnavailable("the arguments and environment are too large to send")
    cwd = os.open(".", getattr(os, "O_PATH", os.O_RDONLY) | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        sock.sendall(b"R")
        send_with_fds(sock, MAGIC + len(payload).to_bytes(8, "little"), [*streams, cwd])
    finally:
        os.close(cwd)
    sock.sendall(payload)


def _run_remote(sock, argv: list[str]) -> int:
    """Send the command; its exit status once the run ended (-1: the run ended without one).

    Two steps: the server's child answers "O" (it can run the command) and
    then waits for "G" from here.  Only after "G" has been sent may the run
    happen, and from then on this process never runs the command itself; a
    child that reads end-of-file instead of "G" (this side gave up waiting)
    exits without running anything.
    """
    import _signal  # not `signal`: that module imports enum, about 5 ms of a 60 ms command

    send_request(sock, argv)
    sock.settimeout(WAIT_ACCEPTED)
    kind, body = recv_frame(sock)
    if kind != b"O":
        raise ServerUnavailable(body.decode("utf-8", "replace") or "the server declined")

    def forward(signum, frame):
        try:
            sock.sendall(b"I")
        except OSError:
            pass

    for name in FORWARDED:
        number = getattr(_signal, name, None)
        if number is not None and _signal.getsignal(number) != _signal.SIG_IGN:
            _signal.signal(number, forward)
    sock.settimeout(None)
    try:
        sock.sendall(b"G")
    except OSError:
        return -1
    while True:
        try:
            kind, body = recv_frame(sock)
        except (EOFError, OSError):  # the run started: never run it a second time here
            return -1
        if kind == b"E" and len(body) == 4:
            return int.from_bytes(body, "little", signed=True)


def try_server(argv: list[str], prog: str = "nanoBragg") -> int | None:
    """Run ``argv`` on this user's server; its exit status, or None to run here.

    None means no server took the command (none running, or one that cannot
    run it exactly as this process would, e.g. another ``NUMBA_*`` setting);
    with ``NBNUMBA_SERVER=require`` that is an error instead (one line on
    stderr, status 2).
    """
    try:
        wanted = mode()
    except ValueError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    if wanted == "off" or (wanted == "auto" and not supported()):
        return None
    sock = None
    try:
        sock = connect()
        code = _run_remote(sock, argv)
    except KeyboardInterrupt:
        print(f"{prog}: error: interrupted", file=sys.stderr)
        return 2
    except (ServerUnavailable, OSError, EOFError) as exc:
        if wanted == "require":
            text = str(exc) if isinstance(exc, ServerUnavailable) else f"the server connection failed ({exc})"
            print(f"{prog}: error: {ENV}=require: {text}", file=sys.stderr)
            return 2
        return None
    finally:
        if sock is not None:
            sock.close()
    if code < 0:
        print(f"{prog}: error: the server's run ended without an exit status", file=sys.stderr)
        return 2
    return code
