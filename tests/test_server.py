"""The command server (`nbnumba server`, cli/_server.py) and the nanoBragg side of it (cli/_client.py).

Every test starts its servers in its own private runtime folder (XDG_RUNTIME_DIR), never the user's,
and stops them.  A command run by the server must be the same command: same files, bytes, modes,
output text and exit status as the one-shot process.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the command server is Linux-only")

BIN = Path(sys.executable).parent
NANOBRAGG = BIN / "nanoBragg"
NBNUMBA = BIN / "nbnumba"
SMALL = ("-default_F 100 -cell 70 80 90 75 85 95 -lambda 1.0 -N 3 -detpixels 48 -pixel 0.2 -distance 80 "
         "-misset 10 20 30 -mosaic 0.5 -mosaic_dom 3 -phi 0 -osc 5 -phisteps 2 -seed 7").split()
FILES = ["-floatfile", "f.bin", "-intfile", "i.img", "-noisefile", "n.img", "-pgmfile", "p.pgm"]


def _default_sigint():
    # a test run started in the background of a non-interactive shell inherits SIGINT ignored, which a
    # command keeps ignoring (as it should); the commands here must see Ctrl-C as from a terminal
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _env(runtime: Path, **extra) -> dict:
    env = dict(os.environ, XDG_RUNTIME_DIR=str(runtime))
    env.pop("NBNUMBA_SERVER", None)
    env.update(extra)
    return env


def _run(argv, cwd, env, timeout=120, **kw):
    return subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                          **kw)


def _status(env) -> str | None:
    r = _run([NBNUMBA, "server", "status"], "/", env)
    return r.stdout if r.returncode == 0 else None


def _served(env) -> int:
    text = _status(env)
    assert text is not None, "the server is not running"
    return int(text.split(" commands served")[0].rsplit(" ", 1)[1])


def _tree(folder: Path) -> dict:
    return {p.name: (p.read_bytes(), stat.S_IMODE(p.stat().st_mode)) for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A running server in a private runtime folder; yields the environment that reaches it."""
    runtime = tmp_path_factory.mktemp("runtime")
    runtime.chmod(0o700)
    env = _env(runtime)
    r = _run([NBNUMBA, "server", "start", "--idle-timeout", "600"], "/", env)
    assert r.returncode == 0, r.stderr
    assert "started" in r.stdout
    yield env
    _run([NBNUMBA, "server", "stop"], "/", env)


def test_served_command_equals_one_shot_command(server, tmp_path):
    """Same files (bytes and modes), same printed text, same exit status; and the server did run it."""
    served = _served(server)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    env_a = dict(server, NBNUMBA_SERVER="require")
    env_b = dict(server, NBNUMBA_SERVER="off")
    a = _run(["sh", "-c", 'umask 027; exec "$0" "$@"', NANOBRAGG] + SMALL + FILES, tmp_path / "a", env_a)
    b = _run(["sh", "-c", 'umask 027; exec "$0" "$@"', NANOBRAGG] + SMALL + FILES, tmp_path / "b", env_b)
    assert a.returncode == b.returncode == 0, a.stderr + b.stderr
    assert a.stdout == b.stdout and a.stderr == b.stderr
    tree_a, tree_b = _tree(tmp_path / "a"), _tree(tmp_path / "b")
    assert tree_a == tree_b
    assert {"f.bin", "i.img", "n.img", "p.pgm"} <= set(tree_a)
    assert all(mode == 0o640 for _, mode in tree_a.values())  # the command's umask, not the server's
    assert _served(server) == served + 1


def test_bad_flag_through_server_is_one_line_and_writes_nothing(server, tmp_path):
    served = _served(server)
    r = _run([NANOBRAGG] + SMALL + ["-distance", "nan"] + FILES, tmp_path, dict(server, NBNUMBA_SERVER="require"))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nanoBragg: error:") and "distance" in lines[0]
    assert list(tmp_path.iterdir()) == []
    assert _served(server) == served + 1


def test_stdin_and_relative_inputs_reach_the_run(server, tmp_path):
    """The run reads files relative to the command's folder (here an HKL file) and its standard input."""
    (tmp_path / "x.hkl").write_text("0 0 1 10\n1 2 3 20\n")
    env = dict(server, NBNUMBA_SERVER="require")
    args = [NANOBRAGG, "-hkl", "x.hkl", "-cell", "50", "50", "50", "90", "90", "90", "-lambda", "1",
            "-distance", "100", "-detpixels", "16", "-floatfile", "f.bin", "-nonoise", "-nopgm"]
    r = _run(args, tmp_path, env, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    assert "1 initialized hkls" in r.stdout or "2 initialized hkls" in r.stdout
    assert (tmp_path / "f.bin").stat().st_size == 16 * 16 * 4


def test_environment_read_at_start_up_is_not_served(server, tmp_path):
    """NUMBA_NUM_THREADS differs: `require` says why; `auto` runs the command in its own process."""
    served = _served(server)
    r = _run([NANOBRAGG] + SMALL + FILES, tmp_path, dict(server, NBNUMBA_SERVER="require", NUMBA_NUM_THREADS="1"))
    assert r.returncode == 2
    assert "NUMBA_NUM_THREADS" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []
    r = _run([NANOBRAGG] + SMALL + FILES, tmp_path, dict(server, NUMBA_NUM_THREADS="1"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "f.bin").stat().st_size == 48 * 48 * 4
    assert _served(server) == served


def test_interrupt_reaches_the_run(server, tmp_path):
    """Ctrl-C of the command stops the served run: exit 2, one line, no output file; the server lives on."""
    args = [NANOBRAGG, "-default_F", "100", "-cell", "70", "80", "90", "75", "85", "95", "-lambda", "1",
            "-N", "5", "-detpixels", "512", "-distance", "100", "-phisteps", "400", "-osc", "1",
            "-mosaic", "0.5", "-mosaic_dom", "20", "-floatfile", "f.bin", "-noprogress"]
    proc = subprocess.Popen([str(a) for a in args], cwd=tmp_path, env=dict(server, NBNUMBA_SERVER="require"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint)
    time.sleep(1.5)  # the run (tens of seconds) has started
    assert proc.poll() is None
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    assert err.strip().splitlines()[-1] == "nanoBragg: error: interrupted"
    assert [p.name for p in tmp_path.iterdir()] == []
    assert _status(server) is not None


def test_garbage_on_the_socket_does_not_stop_the_server(server):
    """A connection that sends nonsense (or nothing) is dropped; the server keeps serving."""
    import socket

    path = _socket_path(server)
    for payload in (b"", b"Z", b"R", b"R" + b"\0" * 64, b"S" * 3):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(path)
        s.sendall(payload)
        s.close()
    time.sleep(0.2)
    assert _status(server) is not None


def _socket_path(env) -> str:
    text = _status(env)
    return text.split("socket ", 1)[1].splitlines()[0].strip()


def test_unknown_mode_is_an_error(tmp_path):
    r = _run([NANOBRAGG, "-detpixels", "8"], tmp_path, dict(os.environ, NBNUMBA_SERVER="sometimes"))
    assert r.returncode == 2
    assert r.stderr.strip() == ("nanoBragg: error: NBNUMBA_SERVER must be one of auto, off, require, "
                                "not 'sometimes'")
    assert list(tmp_path.iterdir()) == []


def test_require_without_server_fails_and_auto_runs_here(tmp_path):
    runtime = tmp_path / "rt"
    runtime.mkdir(mode=0o700)
    work = tmp_path / "w"
    work.mkdir()
    r = _run([NANOBRAGG] + SMALL + FILES, work, _env(runtime, NBNUMBA_SERVER="require"))
    assert r.returncode == 2 and "no server is running" in r.stderr
    assert list(work.iterdir()) == []
    r = _run([NANOBRAGG] + SMALL + FILES, work, _env(runtime))
    assert r.returncode == 0, r.stderr
    assert (work / "f.bin").exists()


def test_folder_open_to_others_is_refused(tmp_path):
    """The socket folder must be this user's and closed to others: start refuses, commands ignore it."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    folder = tmp / f"nbnumba-server-{os.geteuid()}"
    folder.mkdir()
    folder.chmod(0o777)
    env = dict(os.environ, TMPDIR=str(tmp))
    env.pop("XDG_RUNTIME_DIR", None)
    env.pop("NBNUMBA_SERVER", None)
    r = _run([NBNUMBA, "server", "start"], "/", env)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "open to other users" in r.stderr
    r = _run([NANOBRAGG, "-detpixels", "8", "-default_F", "1"], tmp_path, dict(env, NBNUMBA_SERVER="require"))
    assert r.returncode == 2 and "open to other users" in r.stderr
    assert not any(p.suffix for p in folder.iterdir())


def test_changed_code_stops_the_server(tmp_path):
    """A file the server loaded changes: the next command runs in its own process and the server exits."""
    runtime = tmp_path / "rt"
    runtime.mkdir(mode=0o700)
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("# loaded by the server and by every command\n")
    env = _env(runtime, PYTHONPATH=str(site) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    assert _run([NBNUMBA, "server", "start"], "/", env).returncode == 0
    try:
        work = tmp_path / "w"
        work.mkdir()
        assert _run([NANOBRAGG] + SMALL + FILES, work, dict(env, NBNUMBA_SERVER="require")).returncode == 0
        assert _served(env) == 1
        time.sleep(0.01)
        (site / "sitecustomize.py").write_text("# changed: the server must not run commands any more\n")
        r = _run([NANOBRAGG] + SMALL + FILES, work, dict(env, NBNUMBA_SERVER="require"))
        assert r.returncode == 2 and "sitecustomize.py" in r.stderr and "changed" in r.stderr
        deadline = time.monotonic() + 10
        while _status(env) is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _status(env) is None
        r = _run([NANOBRAGG] + SMALL + FILES, work, env)
        assert r.returncode == 0, r.stderr
    finally:
        _run([NBNUMBA, "server", "stop"], "/", env)


def test_idle_server_exits_and_stop_stops(tmp_path):
    runtime = tmp_path / "rt"
    runtime.mkdir(mode=0o700)
    env = _env(runtime)
    assert _run([NBNUMBA, "server", "start", "--idle-timeout", "1"], "/", env).returncode == 0
    deadline = time.monotonic() + 20
    while _status(env) is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _status(env) is None
    left = [p for p in (runtime / "nbnumba").iterdir() if stat.S_ISSOCK(p.lstat().st_mode)]
    assert left == []  # the socket went with the server
    r = _run([NBNUMBA, "server", "start"], "/", env)
    assert r.returncode == 0 and "started" in r.stdout
    again = _run([NBNUMBA, "server", "start"], "/", env)
    assert again.returncode == 0 and "already running" in again.stdout
    r = _run([NBNUMBA, "server", "stop"], "/", env)
    assert r.returncode == 0 and "stopped" in r.stdout
    r = _run([NBNUMBA, "server", "status"], "/", env)
    assert r.returncode == 1 and "no nbnumba server is running" in r.stdout


def test_watch_list_notices_a_changed_file(tmp_path, monkeypatch):
    """The staleness check itself: a watched module file rewritten (or removed) is reported."""
    import types

    from nbnumba_cli import _server

    path = tmp_path / "fake.py"
    path.write_text("x = 1\n")
    fake = types.ModuleType("nbnumba._fake_for_test")
    fake.__file__ = str(path)
    monkeypatch.setitem(sys.modules, "nbnumba._fake_for_test", fake)
    files = _server.loaded_files()
    assert str(path) in dict(files)
    assert _server.changed_file(files) is None
    path.write_text("x = 22\n")
    assert _server.changed_file(files) == str(path)
    path.unlink()
    assert _server.changed_file(files) == str(path)


def test_environment_rule():
    from nbnumba_cli._server import env_mismatch

    base = {"HOME": "/h", "NUMBA_NUM_THREADS": "2", "PATH": "/bin", "NBNUMBA_SERVER": "auto"}
    assert env_mismatch(base, dict(base, PATH="/usr/bin", LANG="C", NBNUMBA_SERVER="require")) is None
    assert "NUMBA_NUM_THREADS" in env_mismatch(base, dict(base, NUMBA_NUM_THREADS="4"))
    assert "NBNUMBA_CPU_KERNEL" in env_mismatch(base, dict(base, NBNUMBA_CPU_KERNEL="jit"))
    assert "PYTHONPATH" in env_mismatch(base, dict(base, PYTHONPATH="/x"))
    assert "HOME" in env_mismatch(base, {k: v for k, v in base.items() if k != "HOME"})


LONG = ["-default_F", "100", "-cell", "70", "80", "90", "75", "85", "95", "-lambda", "1", "-N", "5",
        "-detpixels", "512", "-distance", "100", "-phisteps", "400", "-osc", "1", "-mosaic", "0.5",
        "-mosaic_dom", "20", "-floatfile", "f.bin", "-noprogress"]
TINY = ["-default_F", "1", "-cell", "50", "50", "50", "90", "90", "90", "-lambda", "1", "-distance", "100",
        "-detpixels", "4", "-floatfile", "x.bin"]


def test_closed_standard_output_is_never_the_socket(server, tmp_path):
    """stdout closed (`>&-`): the command must not hand its own socket over as the run's stdout;
    `require` says why, `auto` runs it here, and nothing ends in a traceback."""
    served = _served(server)
    cmd = ["sh", "-c", 'exec "$0" "$@" >&-', NANOBRAGG] + TINY
    r = _run(cmd, tmp_path, dict(server, NBNUMBA_SERVER="require"))
    assert r.returncode == 2 and r.stderr.strip() == ("nanoBragg: error: NBNUMBA_SERVER=require: "
                                                      "standard stream 1 is closed")
    r = _run(cmd, tmp_path, server)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert (tmp_path / "x.bin").stat().st_size == 4 * 4 * 4
    assert _served(server) == served


def test_an_ignored_signal_stays_ignored(server, tmp_path):
    """A command started with SIGINT ignored (a background job of a script) is not interrupted by it."""
    env = dict(server, NBNUMBA_SERVER="require")
    args = list(LONG)
    args[args.index("-detpixels") + 1] = "512"
    args[args.index("-phisteps") + 1] = "60"
    proc = subprocess.Popen(["sh", "-c", 'trap "" INT; exec "$0" "$@"', str(NANOBRAGG)] + args, cwd=tmp_path,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    assert proc.poll() is None, "the run ended before the signal: make it longer"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert (tmp_path / "f.bin").stat().st_size == 512 * 512 * 4


def test_undecodable_file_name_as_in_one_shot(server, tmp_path):
    """A file name that is not UTF-8 is printed as a one-shot process prints it (surrogateescape)."""
    name = b"\xff\xfe.bin"
    for mode in ("require", "off"):
        folder = tmp_path / mode
        folder.mkdir()
        argv = [os.fsencode(str(NANOBRAGG))] + [a.encode() for a in TINY[:-1]] + [name]
        r = subprocess.run(argv, cwd=folder, env=dict(server, NBNUMBA_SERVER=mode, LANG="C.UTF-8"),
                           capture_output=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert os.path.exists(os.path.join(os.fsencode(str(folder)), name))


def test_cpu_affinity_and_nice_are_the_commands(server, tmp_path):
    """The run takes the command's CPU set (so its thread count) and nice value, not the server's."""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two usable CPUs to restrict the command to one")
    cpu = min(os.sched_getaffinity(0))
    served = _served(server)

    def placed():
        os.sched_setaffinity(0, {cpu})
        os.nice(5)

    r = subprocess.run([str(NANOBRAGG)] + TINY, cwd=tmp_path, env=dict(server, NBNUMBA_SERVER="require"),
                       capture_output=True, text=True, timeout=120, preexec_fn=placed)
    assert r.returncode == 0, r.stderr
    assert "backend: cpu, dtype: float64, 1 thread\n" in r.stdout
    assert _served(server) == served + 1


def test_a_new_server_starts_while_runs_of_the_old_one_go_on(tmp_path):
    """Runs of a stopped server keep nothing of it: `server start` works at once (the lock is not theirs)."""
    runtime = tmp_path / "rt"
    runtime.mkdir(mode=0o700)
    env = _env(runtime)
    assert _run([NBNUMBA, "server", "start"], "/", env).returncode == 0
    work = tmp_path / "w"
    work.mkdir()
    proc = subprocess.Popen([str(NANOBRAGG)] + LONG, cwd=work, env=dict(env, NBNUMBA_SERVER="require"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint)
    try:
        time.sleep(1.0)
        assert _run([NBNUMBA, "server", "stop"], "/", env).returncode == 0
        r = _run([NBNUMBA, "server", "start", "--wait", "30"], "/", env)
        assert r.returncode == 0 and "started" in r.stdout, r.stderr
        assert proc.poll() is None  # the old run is still going
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
        _run([NBNUMBA, "server", "stop"], "/", env)
    assert proc.returncode == 2 and not (work / "f.bin").exists()


def test_no_run_without_the_go_ahead(server, tmp_path, monkeypatch):
    """The child answers "O", then runs only after the command's "G": a command that gave up waiting
    (and may run by itself) closes instead, and the child must run nothing."""
    from nbnumba_cli import _client

    for key, value in server.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    sock = _client.connect()
    _client.send_request(sock, TINY)
    assert _client.recv_frame(sock)[0] == b"O"
    sock.close()  # no "G"
    time.sleep(1.0)
    assert list(tmp_path.iterdir()) == []
    assert _status(server) is not None


def test_many_commands_at_once(server, tmp_path):
    """40 commands started together: every one is served (none times out or fails), each writes its file."""
    env = dict(server, NBNUMBA_SERVER="require")
    procs = []
    for i in range(40):
        folder = tmp_path / str(i)
        folder.mkdir()
        procs.append((folder, subprocess.Popen([str(NANOBRAGG)] + TINY, cwd=folder, env=env,
                                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)))
    for folder, proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        assert (folder / "x.bin").stat().st_size == 4 * 4 * 4


def test_interrupt_between_accept_and_go_is_an_interrupted_run(server, tmp_path, monkeypatch):
    """Ctrl-C after the child accepted but before "G": the run never starts, and the command is told
    "interrupted" (exit 2) as a one-shot run interrupted that early would be."""
    from nbnumba_cli import _client

    for key, value in server.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    sock = _client.connect()
    err_r, err_w = os.pipe()
    _client.send_request(sock, TINY, streams=(0, 1, err_w))
    os.close(err_w)
    assert _client.recv_frame(sock)[0] == b"O"
    sock.sendall(b"I")
    kind, body = _client.recv_frame(sock)
    sock.close()
    assert (kind, int.from_bytes(body, "little", signed=True)) == (b"E", 2)
    assert os.read(err_r, 1000) == b"nanoBragg: error: interrupted\n"
    os.close(err_r)
    assert list(tmp_path.iterdir()) == []


def test_a_command_does_not_wait_for_the_one_before(server, tmp_path):
    """A spare runs a small command ahead of its own, but only once the command before it has ended
    and only while none is waiting: a command sent while another is still running is served at once.

    The first command writes its float image into a FIFO that nobody reads yet, so it stays running
    (blocked at its commit) for as long as the test needs, whatever the machine's speed."""
    env = dict(server, NBNUMBA_SERVER="require")
    (tmp_path / "long").mkdir()
    (tmp_path / "short").mkdir()
    fifo = tmp_path / "long" / "f.fifo"
    os.mkfifo(fifo)
    served = _served(env)
    first = subprocess.Popen([str(NANOBRAGG)] + TINY[:-2] + ["-floatfile", str(fifo)], cwd=tmp_path / "long",
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while _served(env) == served and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _served(env) == served + 1, "the first command was not handed to the server"
        time.sleep(0.2)  # it is now blocked opening the FIFO
        assert first.poll() is None
        r = _run([NANOBRAGG] + TINY, tmp_path / "short", env, timeout=30)
        assert r.returncode == 0, r.stderr
        assert (tmp_path / "short" / "x.bin").stat().st_size == 4 * 4 * 4
        assert first.poll() is None, "the first command ended before the FIFO was read"
    finally:
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # lets the first command's open go on
        try:
            data = b""
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                ended = first.poll() is not None
                try:
                    chunk = os.read(fd, 65536)
                except BlockingIOError:  # the writer has the FIFO open and wrote nothing more yet
                    chunk = None
                if chunk:
                    data += chunk
                elif ended:  # gone, and the FIFO read to its end
                    break
                else:
                    time.sleep(0.01)
        finally:
            os.close(fd)
        _, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    assert len(data) == 4 * 4 * 4


SCRIPT = Path(__file__).resolve().parents[1] / "cli" / "bin" / "nanoBragg"
# what the script and the client may import beyond a bare interpreter's start-up
SCRIPT_IMPORTS = {"nbnumba_cli", "nbnumba_cli.nanobragg", "nbnumba_cli._client", "__future__", "_socket", "resource",
                  "marshal", "stat", "_stat"}


def _imports(argv, cwd, env) -> tuple[set, subprocess.CompletedProcess]:
    """Modules a Python run imports (``-X importtime``: a flag, so that a server still takes the command)."""
    r = _run([sys.executable, "-X", "importtime"] + argv, cwd, env)
    return {line.rsplit("|", 1)[1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}, r


def test_nanobragg_script_imports_almost_nothing(tmp_path):
    """The nanoBragg script and the client it starts import only small standard modules before a server
    takes the command: no re (12 ms; pip's entry-point wrapper imports it), no NumPy.  Here no server
    runs (NBNUMBA_SERVER=require: the client gives up after trying)."""
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    env = _env(runtime, NBNUMBA_SERVER="require")
    baseline, _ = _imports(["-c", "pass"], tmp_path, env)
    modules, r = _imports([str(SCRIPT)] + TINY, tmp_path, env)
    assert r.returncode == 2 and "no server" in r.stderr.splitlines()[-1], r.stderr[-500:]
    extra = modules - baseline
    assert "nbnumba_cli._client" in extra
    assert not extra & {"re", "enum", "numpy", "nbnumba", "warnings", "subprocess"}, sorted(extra)
    assert extra <= SCRIPT_IMPORTS, sorted(extra - SCRIPT_IMPORTS)


def test_served_command_imports_almost_nothing(server, tmp_path):
    """The same on the served path: the command runs (in the server) and the script imported only
    the client's small modules."""
    env = dict(server, NBNUMBA_SERVER="require")
    served = _served(env)
    baseline, _ = _imports(["-c", "pass"], tmp_path, env)
    modules, r = _imports([str(SCRIPT)] + TINY, tmp_path, env)
    assert r.returncode == 0, r.stderr[-500:]
    assert (tmp_path / "x.bin").stat().st_size == 4 * 4 * 4 and _served(env) == served + 1
    extra = modules - baseline
    assert "nbnumba_cli._client" in extra and "numpy" not in extra and "re" not in extra, sorted(extra)
    assert extra <= SCRIPT_IMPORTS, sorted(extra - SCRIPT_IMPORTS)


def test_cgroup_rule():
    """Commands from another login session of the same user are served; from a batch job's cgroup, not."""
    from nbnumba_cli._server import _cgroup_limits

    session = "0::/user.slice/user-1000.slice/session-3.scope\n"
    other = "0::/user.slice/user-1000.slice/session-8.scope\n"
    terminal = "0::/user.slice/user-1000.slice/user@1000.service/app.slice/vte-spawn-1.scope\n"
    job = "0::/system.slice/slurmstepd.scope/job_12/step_0/user/task_0\n"
    other_user = "0::/user.slice/user-1001.slice/session-3.scope\n"
    assert _cgroup_limits(session) == _cgroup_limits(other) == _cgroup_limits(terminal)
    assert _cgroup_limits(session) != _cgroup_limits(job)
    assert _cgroup_limits(session) != _cgroup_limits(other_user)
    assert _cgroup_limits(job) == _cgroup_limits(job)


def test_hand_over_to_a_stuck_spare_gives_up(monkeypatch):
    """A spare that does not read its command (stuck in its small run) counts as gone after the
    hand-over timeout, so the server runs the command in a fresh child instead of hanging."""
    import socket

    from nbnumba_cli import _server

    monkeypatch.setattr(_server, "HAND_OVER_TIMEOUT", 0.3)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    conn, other = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        import threading

        result = []
        worker = threading.Thread(target=lambda: result.append(
            _server._hand_over((0, ours), conn, [], b"x" * (8 << 20))), daemon=True)  # far more than a buffer
        worker.start()
        worker.join(10.0)
        stuck = worker.is_alive()
        theirs.close()  # releases a hand-over that never gave up
        worker.join(10.0)
        assert not stuck, "the hand-over waited for the stuck spare"
        assert result == [False]
        small_a, small_b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            assert _server._hand_over((0, small_a), conn, [], b"request") is True
        finally:
            small_a.close()
            small_b.close()
    finally:
        for end in (ours, theirs, conn, other):
            end.close()
