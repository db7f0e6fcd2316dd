"""A per-user command server that runs ``nanoBragg`` command lines already warm.

A one-shot ``nanoBragg`` spends about 0.3 s before its first pixel: the
interpreter, NumPy, the engine's modules and the kernel library.  For a
256x256 image that is ten times the C program's whole run.  ``nbnumba
server start`` starts one process that imports all of it and renders a
small image once (so that every lazily loaded piece is loaded), then waits
on a Unix socket.  Each ``nanoBragg`` command (see :mod:`._client`) sends it
its arguments, environment, working folder and standard streams; the
server forks, and the child runs the command with exactly the code a
one-shot process would run, then reports the exit status.  The parent never
runs a command, so nothing one run does can leak into the next.  The child
is forked ahead of its command (a spare, with the kernel's threads started),
and once the command before it has ended it runs one small render with its
output discarded, so that the copy-on-write cost of a fresh fork is paid
before its command arrives (:func:`_touch_ahead`).

Safety:

* the socket lives in a folder of this user's with mode 0700
  (``$XDG_RUNTIME_DIR/nbnumba`` or ``$TMPDIR/nbnumba-server-UID``); both
  ends check that the other runs as the same user (``SO_PEERCRED``);
* a server serves one installation (Python prefix and version, package
  folder); before each run it checks that none of the files it loaded
  changed on disk, and if one did it declines, exits and the command runs
  in its own process;
* a command is declined (and then runs in its own process) when its
  environment differs from the server's in anything read at start-up
  (``NUMBA_*``, ``NBNUMBA_CPU_KERNEL``, ``NBNUMBA_CACHE_DIR``, ``PYTHON*``,
  ``HOME``, ``TMPDIR``, thread settings, ...), or when its resource limits
  or groups cannot be taken over;
* an interrupt (Ctrl-C, SIGTERM, SIGHUP) of the command is passed on to the
  run, which stops as it would in its own process; if the command
  disappears, the run is stopped the same way;
* the server exits after ``--idle-timeout`` seconds without a command
  (default 3600).
"""

from __future__ import annotations

import os
import re
import resource
import signal
import socket
import stat
import sys
import threading
import time

from . import _client

IDLE_TIMEOUT = 3600.0
OWN_PACKAGES = frozenset({"nbnumba", "nbnumba_cli", "cli"})
MATCHED_PREFIXES = ("NUMBA_", "NBNUMBA_", "PYTHON", "OMP_", "OPENBLAS_", "MKL_", "LD_", "CUDA_", "XDG_CACHE")
MATCHED_KEYS = frozenset({"HOME", "TMPDIR", "TEMP", "TMP", "CC"})
# Read when a command runs, not at start-up: free to differ.
UNMATCHED_KEYS = frozenset({_client.ENV, "NBNUMBA_TRACEBACK", "NBNUMBA_MEMORY_LIMIT"})
WARM_UP_FLAGS = ("-cell", "50", "50", "50", "90", "90", "90", "-default_F", "100", "-lambda", "1",
                 "-distance", "100", "-detpixels", "24", "-N", "2", "-seed", "1", "-floatfile", "f.bin",
                 "-intfile", "i.img", "-noisefile", "n.img", "-pgmfile", "p.pgm")


class _Stop(Exception):
    pass


def _matched(env: dict) -> dict:
    return {k: v for k, v in env.items()
            if k not in UNMATCHED_KEYS and (k in MATCHED_KEYS or k.startswith(MATCHED_PREFIXES))}


def env_mismatch(server_env: dict, client_env: dict) -> str | None:
    """Why a command with ``client_env`` cannot run in a server started with ``server_env`` (None if it can)."""
    ours, theirs = _matched(server_env), _matched(client_env)
    for key in sorted(set(ours) | set(theirs)):
        if ours.get(key) != theirs.get(key):
            return f"the environment variable {key} differs from the server's"
    return None


def loaded_files() -> list[tuple[str, tuple]]:
    """The files to watch, with their identity (inode, size, modification time).

    Every module file of nbnumba and of this package, and the top file
    (``__init__``) of every other loaded package: reinstalling or upgrading
    a package replaces that file too.  (Statting all of them would cost
    about 2 ms per command.)
    """
    seen = {}
    for name, module in list(sys.modules.items()):
        top = name.partition(".")[0]
        if top not in OWN_PACKAGES and "." in name:
            continue
        path = getattr(module, "__file__", None)
        if not isinstance(path, str) or path in seen:
            continue
        try:
            st = os.stat(path)
        except OSError:
            continue
        seen[path] = (st.st_ino, st.st_size, st.st_mtime_ns)
    return sorted(seen.items())


def changed_file(files: list[tuple[str, tuple]]) -> str | None:
    """The first of ``files`` (from :func:`loaded_files`) that is no longer what was loaded."""
    for path, identity in files:
        try:
            st = os.stat(path)
        except OSError:
            return path
        if (st.st_ino, st.st_size, st.st_mtime_ns) != identity:
            return path
    return None


def _threads_started() -> bool:
    """True once Numba's parallel threads exist in this process (they do not survive a fork)."""
    numba = sys.modules.get("numba")
    if numba is None:
        return False
    try:
        numba.threading_layer()
    except ValueError:
        return False
    return True


WARM_UP_RUNS = (("spec", ["-hkl", "warm.hkl"]), ("parity", ["-hkl", "warm.hkl"]), ("spec", []), ("parity", []))
# what a spare runs ahead of its command (see _touch_ahead)
SPARE_RUNS = (("spec", []),)


def render_quietly(runs=WARM_UP_RUNS) -> None:
    """Run small commands in a temporary folder, their output discarded.

    By default: reading an HKL file (and writing Fdump.bin), then
    Fdump.bin, in both modes; ``runs`` is a sequence of (mode, extra flags).
    Raises RuntimeError when one fails.
    """
    import contextlib
    import io
    import tempfile
    import warnings

    from . import nanobragg

    here = os.getcwd()
    sink = io.StringIO()
    with warnings.catch_warnings(record=True) as caught, tempfile.TemporaryDirectory(prefix="nbnumba-warm-") as tmp:
        warnings.simplefilter("always")
        os.chdir(tmp)
        try:
            with open("warm.hkl", "w") as f:
                f.write("0 0 1 10.0\n1 0 0 20.5\n-1 2 3 30.25\n")
            for mode, extra in runs:
                with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                    try:
                        nanobragg.run_command_line(list(WARM_UP_FLAGS) + extra + ["-mode", mode])
                    except SystemExit as exc:
                        if exc.code not in (0, None):
                            raise RuntimeError(f"the warm-up run failed: {sink.getvalue()[-300:]}") from None
        finally:
            os.chdir(here)
    if caught:  # let each command meet (and report) these itself
        from nbnumba.kernels import native

        native._loaded.clear()
        native._warned.clear()


def warm_up() -> str:
    """Import and load what a command needs; render small images when the native kernel runs.

    Returns the CPU kernel in use (``native`` or ``jit``).  With the JIT
    kernel nothing is rendered here: Numba's parallel threads must be
    started by each child, never by the parent.
    """
    from . import nanobragg

    nanobragg._lean_startup()
    import nbnumba.io.outputs  # noqa: F401
    import nbnumba.runner  # noqa: F401
    from nbnumba.kernels import native

    kernel = native.load("render", "float64", "float32")
    if kernel is not None:
        render_quietly()
    native.stop_workers()  # each spare starts its own (threads do not survive a fork)
    if _threads_started() or threading.active_count() != 1:
        raise RuntimeError("the warm-up left threads running, which a forked run cannot use")
    return "native" if kernel is not None else "jit"


_lock_fd: int | None = None  # held by the server; closed in every child (flock locks follow forks)


def _in_child() -> None:
    """First thing in a forked child: default signal handling, unblocked, and no server lock."""
    global _lock_fd
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for name in ("SIGTERM", "SIGHUP", "SIGCHLD", "SIGUSR1"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
    if _lock_fd is not None:
        os.close(_lock_fd)
        _lock_fd = None


_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}


def _fork() -> int:
    """fork() with the server's stop signals held back, so that neither side acts on one half-way."""
    sys.stdout.flush()
    sys.stderr.flush()
    signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        pid = os.fork()
    except BaseException:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
        raise
    if pid:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
    else:
        _in_child()
    return pid


def _take_limits(limits: dict) -> str | None:
    for name, wanted in limits.items():
        res = getattr(resource, name, None)
        if res is None:
            continue
        wanted = tuple(wanted)
        if resource.getrlimit(res) == wanted:
            continue
        try:
            resource.setrlimit(res, wanted)
        except (ValueError, OSError):
            return f"the resource limit {name} {wanted} cannot be set in the server"
    return None


def _decline_reason(request: dict, base_env: dict) -> str | None:
    if request["uid"] != os.geteuid():
        return "the command runs as another user"
    if request["gid"] != os.getegid() or request["groups"] != sorted(os.getgroups()):
        return "the command runs with other groups than the server"
    if _cgroup_limits(request["cgroup"]) != _cgroup_limits(_client._read_small("/proc/self/cgroup")):
        return "the command runs in another control group (a batch job?) than the server"
    if request["namespaces"] != _client.namespaces():
        return "the command runs in other namespaces (a container?) than the server"
    return env_mismatch(base_env, request["env"])


def _cgroup_limits(text: str) -> list:
    """The control groups of ``/proc/self/cgroup`` whose limits a run must stay in.

    A login session's own scope (``.../user-UID.slice/session-3.scope``, one
    per ssh login or terminal) is read as the user's slice, whose limits all
    of that user's sessions share; anything else (a batch job's cgroup, a
    container's) must be the same.
    """
    out = []
    for line in text.splitlines():
        hierarchy, _, path = line.rpartition(":")
        match = _USER_SLICE.match(path)
        out.append((hierarchy, match.group(0) if match else path))
    return out


_USER_SLICE = re.compile(r"/user\.slice/user-\d+\.slice(?=/(?:session-[^/]+\.scope|user@\d+\.service/.*)$)")


_REQUEST_FIELDS = {"argv0": str, "argv": list, "env": dict, "umask": int, "uid": int, "gid": int, "groups": list,
                   "rlimits": dict, "affinity": list, "nice": int, "streams": list, "cgroup": str,
                   "namespaces": list}


def _well_formed(request) -> bool:
    if not isinstance(request, dict):
        return False
    for key, kind in _REQUEST_FIELDS.items():
        if not isinstance(request.get(key), kind):
            return False
    return (all(isinstance(a, str) for a in request["argv"])
            and all(isinstance(k, str) and isinstance(v, str) for k, v in request["env"].items())
            and all(isinstance(c, int) for c in request["affinity"])
            and len(request["streams"]) == 3
            and all(isinstance(e, str) and isinstance(r, str) for e, r in request["streams"]))


def _take_placement(request: dict) -> str | None:
    """The command's CPU affinity and nice value, for this thread and the kernel's helper threads."""
    from nbnumba import _threads

    pool = _threads._pool
    tids = [0] + [t.native_id for t in (pool.threads if pool is not None and pool.pid == os.getpid() else ())]
    try:
        for tid in tids:
            os.sched_setaffinity(tid, request["affinity"])
            if os.getpriority(os.PRIO_PROCESS, tid) != request["nice"]:
                os.setpriority(os.PRIO_PROCESS, tid, request["nice"])
    except (OSError, ValueError):
        return "the command's CPU affinity or nice value cannot be taken over by the server"
    return None


def _rebind_streams(settings) -> None:
    """Standard streams on descriptors 0-2 with the command's encodings and error handlers."""
    import io

    def text(fd: int, mode: str, line: bool, setting):
        encoding, errors = setting
        raw = io.FileIO(fd, mode, closefd=False)
        buffered = io.BufferedWriter(raw) if mode == "w" else io.BufferedReader(raw)
        return io.TextIOWrapper(buffered, encoding=encoding, errors=errors, line_buffering=line)

    sys.stdin = sys.__stdin__ = text(0, "r", False, settings[0])
    sys.stdout = sys.__stdout__ = text(1, "w", os.isatty(1), settings[1])
    sys.stderr = sys.__stderr__ = text(2, "w", True, settings[2])


def _recv_head(sock, size: int, max_fds: int) -> tuple[bytes, list[int]]:
    """The ``size``-byte head of a message and the descriptors passed with it (fewer bytes at end-of-file)."""
    head, fds, _, _ = socket.recv_fds(sock, size, max_fds)
    if head and len(head) < size:
        try:
            head += _client._recv_exact(sock, size - len(head))
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
    return head, fds


def read_request(conn) -> tuple[dict, list[int], bytes]:
    """A command's request: (its fields, its stdin/stdout/stderr/folder descriptors, the raw bytes).

    Raises ValueError (with no descriptor left open) when it is not one.
    """
    import marshal

    head, fds = _recv_head(conn, 12, 8)
    try:
        size = int.from_bytes(head[4:], "little")
        if head[:4] != _client.MAGIC or len(fds) != 4 or size > _client.REQUEST_LIMIT:
            raise ValueError("not a request")
        payload = _client._recv_exact(conn, size)
        request = marshal.loads(payload)
        if not _well_formed(request):
            raise ValueError("not a request")
    except Exception:  # noqa: BLE001 - whatever was sent, it is not a request
        for fd in fds:
            os.close(fd)
        raise ValueError("not a request") from None
    return request, fds, payload


def _child(conn, request: dict, fds: list[int]) -> None:
    """Run one command in this forked process; never returns."""
    code = 1
    accepted = False
    try:
        reason = _take_limits(request["rlimits"]) or _take_placement(request)
        if reason is not None:
            _client.send_frame(conn, b"N", reason.encode())
            os._exit(0)
        os.fchdir(fds[3])
        for target, fd in enumerate(fds[:3]):
            os.dup2(fd, target)
        for fd in fds:
            os.close(fd)
        os.umask(int(request["umask"]))
        os.environ.clear()
        os.environ.update(request["env"])
        argv = list(request["argv"])
        sys.argv = [request.get("argv0", "nanoBragg")] + argv
        try:
            _rebind_streams(request["streams"])
        except LookupError:  # an encoding or error handler this Python does not know
            _client.send_frame(conn, b"N", b"the command's standard streams use an unknown encoding")
            os._exit(0)
        conn.settimeout(_client.WAIT_ACCEPTED)
        _client.send_frame(conn, b"O")
        answer = conn.recv(1)
        if answer == b"I":  # interrupted between "O" and "G": as an interrupted run, before it started
            print("nanoBragg: error: interrupted", file=sys.stderr, flush=True)
            _client.send_frame(conn, b"E", (2).to_bytes(4, "little", signed=True))
            os._exit(0)
        if answer != b"G":  # the command gave up waiting (and may run itself): do nothing
            os._exit(0)
        conn.settimeout(None)
        accepted = True
        finished = threading.Event()

        def watch():
            from nbnumba._threads import block_signals

            block_signals()
            while True:
                try:
                    byte = conn.recv(1)
                except OSError:
                    byte = b""
                if finished.is_set():
                    return
                if byte == b"I":
                    os.kill(os.getpid(), signal.SIGINT)
                    continue
                if not byte:  # the command is gone: stop as an interrupted run
                    os.kill(os.getpid(), signal.SIGINT)
                    return

        threading.Thread(target=watch, daemon=True).start()
        from .nanobragg import command

        code = command(argv)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # an interrupt arriving now is too late: the run is over
        finished.set()
        _client.send_frame(conn, b"E", int(code).to_bytes(4, "little", signed=True))
        code = 0
    except BaseException as exc:  # noqa: BLE001 - a child never returns into the server's loop
        if isinstance(exc, KeyboardInterrupt) and accepted:  # interrupted before the command took over
            try:
                print("nanoBragg: error: interrupted", file=sys.stderr, flush=True)
                _client.send_frame(conn, b"E", (2).to_bytes(4, "little", signed=True))
            except BaseException:  # noqa: BLE001
                pass
    os._exit(code)


def _touch_ahead(channel, previous: int | None) -> None:
    """In a spare: run small commands before its own command comes, so that it starts faster.

    A forked child copies each page of the server's memory that it writes
    to, and Python writes to every object it uses (reference counts): a
    small command in a fresh child runs about twice as long as in a child
    that has run one before (10 ms against 5).  The spare pays this ahead,
    once the command before it (process ``previous``, its sibling) has ended,
    so that the two do not share the CPUs, and only while no command is
    waiting.  Output is discarded; a failure here is the command's to meet.
    """
    import select

    pidfd = None
    if previous is not None:
        try:
            pidfd = os.pidfd_open(previous)
        except ProcessLookupError:  # it has ended already
            pidfd = None
        except (AttributeError, OSError):  # no pidfd here (Linux < 5.3, a seccomp filter): no way to wait
            return
    try:
        if pidfd is not None:
            both = select.poll()  # poll, not select: no limit on descriptor numbers
            both.register(channel, select.POLLIN)
            both.register(pidfd, select.POLLIN)
            both.poll()
        waiting = select.poll()
        waiting.register(channel, select.POLLIN)
        if waiting.poll(0):
            return  # a command (or the server's end) is waiting
    except (OSError, ValueError):
        return
    finally:
        if pidfd is not None:
            os.close(pidfd)
    try:
        render_quietly(SPARE_RUNS)
    except Exception:  # noqa: BLE001 - the command will meet (and report) it
        pass


def _fork_spare(listener, touch: bool = False, previous: int | None = None):
    """A child forked ahead of the next command, waiting for it (so the fork is off the clock).

    With ``touch``, the child first runs small commands once the command
    ``previous`` has ended (:func:`_touch_ahead`).  Returns (pid, socket to
    hand it a command), or None if it cannot be made.
    """
    import marshal

    try:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    except OSError:
        return None
    try:
        pid = _fork()
    except OSError:
        ours.close()
        theirs.close()
        return None
    if pid == 0:
        try:
            listener.close()
            ours.close()
            try:  # the kernel's helper threads, ahead of the command
                from nbnumba.kernels import native

                native.start_workers()
            except Exception:  # noqa: BLE001 - the run will start them itself
                pass
            if touch:
                _touch_ahead(theirs, previous)
            head, fds = _recv_head(theirs, 8, 5)
            if len(fds) != 5:  # the server stopped: end quietly
                os._exit(0)
            request = marshal.loads(_client._recv_exact(theirs, int.from_bytes(head, "little")))
            theirs.close()
            os.set_inheritable(fds[0], False)  # passed descriptors arrive inheritable
            conn = socket.socket(fileno=fds[0])
        except BaseException:  # noqa: BLE001 - never back into the server's loop
            os._exit(0)
        _child(conn, request, fds[1:])
    theirs.close()
    return pid, ours


HAND_OVER_TIMEOUT = 5.0  # seconds a spare may take to read a command (it may be finishing its small run)


def _hand_over(spare, conn, fds: list[int], payload: bytes) -> bool:
    """Give the command (connection, descriptors, request) to the spare child; False when it is gone.

    A request larger than the socket's buffer waits for the spare to read
    it; a spare that does not within :data:`HAND_OVER_TIMEOUT` (stuck in its
    small run on a hung file system) counts as gone, so the server never
    hangs on one.
    """
    try:
        spare[1].settimeout(HAND_OVER_TIMEOUT)
        socket.send_fds(spare[1], [len(payload).to_bytes(8, "little")], [conn.fileno()] + fds)
        spare[1].sendall(payload)
    except OSError:  # TimeoutError included
        return False
    return True


def _close_spare(spare) -> None:
    if spare is not None:
        spare[1].close()  # a spare still waiting reads end-of-file and exits


def _bind(path: str) -> socket.socket:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    else:  # a socket left by a server that died (we hold the lock): replace it
        if not stat.S_ISSOCK(st.st_mode) or st.st_uid != os.geteuid():
            raise RuntimeError(f"{path} exists and is not a socket of this user's")
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(path)
    finally:
        os.umask(old)
    sock.listen(1024)
    return sock


def _lock_held(folder: str) -> bool:
    """True while a server of this installation holds its lock (running, or warming up)."""
    fd = _lock(folder)
    if fd is None:
        return True
    os.close(fd)
    return False


def _lock(folder: str):
    import fcntl

    fd = os.open(os.path.join(folder, f"s-{_client.installation_key()}.lock"),
                 os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def serve(idle_timeout: float = IDLE_TIMEOUT) -> int:
    """The server's main loop (``python -m nbnumba_cli._server``); returns an exit status."""
    base_env = dict(os.environ)
    folder = _client.runtime_dir()
    problem = _client.private_dir_problem(folder)
    if problem is not None:
        print(f"nbnumba server: error: {problem}", flush=True)
        return 2
    global _lock_fd
    lock = _lock_fd = _lock(folder)
    if lock is None:
        print("nbnumba server: another server of this installation is running", flush=True)
        return 0
    started = time.time()
    try:
        kernel = warm_up()
    except Exception as exc:  # noqa: BLE001 - reported in the log that `server start` shows
        print(f"nbnumba server: error: cannot warm up: {exc}", flush=True)
        return 2
    files = loaded_files()
    import gc

    gc.collect()
    gc.freeze()  # the collector of a forked child then leaves the server's objects (and their pages) alone
    path = _client.socket_path()
    sock = _bind(path)
    ident = os.stat(path).st_ino
    warm_s = time.time() - started

    def stop(signum, frame):
        raise _Stop

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, stop)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    served = declined = 0
    spare = None
    last = time.monotonic()
    reason = "stopped"
    try:
        print(f"nbnumba server: pid {os.getpid()} serving {path} ({kernel} kernel, warm in {warm_s:.2f} s)",
              flush=True)
        touch = kernel == "native"  # a JIT kernel's threads are started by the command itself
        spare = _fork_spare(sock, touch)
        while True:
            left = idle_timeout - (time.monotonic() - last) if idle_timeout > 0 else 60.0
            if left <= 0:
                reason = f"idle for {idle_timeout:g} s"
                break
            sock.settimeout(min(left, 60.0))
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            except OSError:  # out of descriptors, an aborted connection: try again shortly
                time.sleep(0.05)
                continue
            with conn:
                try:
                    if _client.peer_uid(conn) != os.geteuid():
                        continue
                    conn.settimeout(5.0)
                    command = conn.recv(1)
                    if command == b"R":
                        last = time.monotonic()  # only commands count as activity, not status requests
                        changed = changed_file(files)
                        if changed is not None:
                            _client.send_frame(conn, b"X", f"the server's code changed on disk ({changed}); "
                                                            "it has stopped".encode())
                            reason = f"{changed} changed"
                            break
                        try:
                            request, fds, payload = read_request(conn)
                        except ValueError:
                            declined += 1
                            continue
                        why = _decline_reason(request, base_env)
                        if why is not None:
                            for fd in fds:
                                os.close(fd)
                            _client.send_frame(conn, b"N", why.encode())
                            declined += 1
                            continue
                        try:
                            if spare is None or not _hand_over(spare, conn, fds, payload):
                                _close_spare(spare)
                                spare = None
                                running = _fork()
                                if running == 0:
                                    sock.close()
                                    _child(conn, request, fds)
                            else:
                                running = spare[0]
                                _close_spare(spare)
                                spare = None
                        finally:
                            for fd in fds:
                                os.close(fd)
                        served += 1
                        conn.close()  # before the next spare is forked, which must not hold this connection
                        spare = _fork_spare(sock, touch, running)
                    elif command == b"S":
                        import marshal

                        _client.send_frame(conn, b"S", marshal.dumps({
                            "pid": os.getpid(), "started": started, "warm_s": warm_s, "served": served,
                            "declined": declined, "idle_timeout": idle_timeout, "kernel": kernel, "socket": path,
                            "prefix": sys.prefix, "modules": len(files)}))
                    elif command == b"Q":
                        _client.send_frame(conn, b"Q")
                        break
                except (OSError, EOFError):
                    declined += 1
    except _Stop:
        pass
    finally:
        _close_spare(spare)
        try:
            if os.stat(path).st_ino == ident:
                os.unlink(path)
        except OSError:
            pass
        sock.close()
        os.close(lock)
    print(f"nbnumba server: exiting ({reason}) after {served} commands", flush=True)
    return 0


def _ask(command: bytes, timeout: float = 30.0):
    import marshal

    sock = _client.connect(timeout)
    try:
        sock.sendall(command)
        kind, body = _client.recv_frame(sock)
    finally:
        sock.close()
    return marshal.loads(body) if kind == b"S" else kind


def status() -> dict | None:
    """The running server's status (pid, socket, commands served, ...), or None when none answers."""
    try:
        return _ask(b"S")
    except (_client.ServerUnavailable, OSError, EOFError, ValueError):
        return None


def stop(timeout: float = 10.0) -> dict | None:
    """Stop the running server; its last status, or None when none was running."""
    info = status()
    if info is None:
        return None
    try:
        _ask(b"Q")
    except (_client.ServerUnavailable, OSError, EOFError):
        pass
    deadline = time.monotonic() + timeout
    while os.path.lexists(info["socket"]) and time.monotonic() < deadline:
        time.sleep(0.02)
    return info


def log_path() -> str:
    """The log of this installation's server (what it printed)."""
    return _client.socket_path() + ".log"


def start(idle_timeout: float = IDLE_TIMEOUT, wait: float = 300.0) -> tuple[dict, bool]:
    """Start a server unless one runs; returns (its status, whether this call started it).

    Raises RuntimeError (with the reason, e.g. from the server's log) when
    none is ready within ``wait`` seconds.
    """
    import subprocess

    if not _client.supported():
        raise RuntimeError(f"the command server runs on Linux only, not {sys.platform}")
    info = status()
    if info is not None:
        return info, False
    folder = _client.runtime_dir()
    try:
        os.mkdir(folder, 0o700)
    except FileExistsError:
        pass
    problem = _client.private_dir_problem(folder)
    if problem is not None:
        raise RuntimeError(f"cannot use {folder} for the server's socket: {problem}")
    deadline = time.monotonic() + wait
    if _lock_held(folder):  # a server is starting (warming up): wait for it, leave its log alone
        while time.monotonic() < deadline:
            info = status()
            if info is not None:
                return info, False
            if not _lock_held(folder):
                break
            time.sleep(0.05)
        else:
            raise RuntimeError(f"a server is starting but did not answer within {wait:g} s (see {log_path()})")
    log = os.open(log_path(), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        proc = subprocess.Popen([sys.executable, "-m", "nbnumba_cli._server", "--idle-timeout", repr(idle_timeout)],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=folder,
                                start_new_session=True, close_fds=True)
    finally:
        os.close(log)
    while time.monotonic() < deadline:
        info = status()
        if info is not None:
            return info, info["pid"] == proc.pid
        if proc.poll() is not None and status() is None:
            if proc.returncode == 0:  # another start won the race; wait for that server
                proc = None
                while time.monotonic() < deadline:
                    info = status()
                    if info is not None:
                        return info, False
                    time.sleep(0.05)
                break
            raise RuntimeError(_last_line(log_path()) or f"the server exited with status {proc.returncode}")
        time.sleep(0.05)
    raise RuntimeError(f"no server answered within {wait:g} s (see {log_path()})")


def _last_line(path: str) -> str:
    try:
        with open(path, "rb") as f:
            lines = f.read()[-4096:].decode("utf-8", "replace").strip().splitlines()
    except OSError:
        return ""
    text = lines[-1] if lines else ""
    return text.removeprefix("nbnumba server: error: ")


def _main(argv: list[str]) -> int:
    idle = IDLE_TIMEOUT
    if argv[:1] == ["--idle-timeout"] and len(argv) == 2:
        idle = float(argv[1])
    elif argv:
        print("usage: python -m nbnumba_cli._server [--idle-timeout SECONDS]", file=sys.stderr)
        return 2
    return serve(idle)


if __name__ == "__main__":  # pragma: no cover - the server process
    sys.exit(_main(sys.argv[1:]))
