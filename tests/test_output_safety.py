"""What nbnumba never does to files: every output path a user can reach.

Devices, FIFOs and sockets are written through, symbolic links keep being
links, inputs and duplicate outputs are refused before rendering, and a run
that fails (full disk, I/O error, exception, SIGINT, SIGTERM) leaves the files
at the final names as they were and no temporary behind.
"""

from __future__ import annotations

import errno
import json
import os
import shlex
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from nbnumba_cli._safety import one_line
from nbnumba_cli.main import nanobragg, nbnumba

from nbnumba.errors import ConfigError, OutputFileError
from nbnumba.io import registry
from nbnumba.io.outputs import (
    Frame,
    OutputSet,
    atomic_write,
    check_outputs,
    format_names,
    get_writer,
    register_writer,
    remove_stale_temporaries,
)

BASE = ["-default_F", "100", "-cell", "50", "50", "50", "90", "90", "90", "-lambda", "1", "-N", "3",
        "-detpixels", "16", "-pixel", "0.5", "-distance", "50", "-noprogress", "-mode", "parity", "-seed", "7"]
SCAN = ["-cell", "50", "50", "50", "90", "90", "90", "-default_F", "100", "-N", "3", "-detpixels", "16",
        "-pixel", "0.5", "-distance", "50"]
TMP_MARK = ".nbnumba-"


def _run(folder: Path, args, monkeypatch):
    monkeypatch.chdir(folder)
    return CliRunner().invoke(nanobragg, BASE + list(args))


def _temporaries(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(TMP_MARK)]


def _child_env() -> dict:
    env = dict(os.environ)
    env.pop("NBNUMBA_TRACEBACK", None)
    return env


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """Bytes of the four outputs of BASE, written to ordinary files."""
    folder = tmp_path_factory.mktemp("ref")
    old = os.getcwd()
    os.chdir(folder)
    try:
        res = CliRunner().invoke(nanobragg, BASE + ["-noisefile", "noise.img", "-pgmfile", "image.pgm"])
    finally:
        os.chdir(old)
    assert res.exit_code == 0, res.output
    return {name: (folder / name).read_bytes()
            for name in ("floatimage.bin", "intimage.img", "image.pgm", "noise.img")}


# --- devices, FIFOs, sockets -------------------------------------------------------------------------------


def test_dev_null_stays_a_character_device(tmp_path, monkeypatch):
    before = os.stat("/dev/null")
    res = _run(tmp_path, ["-floatfile", "/dev/null", "-intfile", "/dev/null", "-noisefile", "/dev/null",
                          "-pgmfile", "/dev/null"], monkeypatch)
    assert res.exit_code == 0, res.output
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode)
    assert (after.st_rdev, after.st_ino) == (before.st_rdev, before.st_ino)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def _drain(path: Path, sink: list) -> threading.Thread:
    def read():
        with open(path, "rb") as handle:
            sink.append(handle.read())

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


def test_fifo_output_is_written_through(tmp_path, monkeypatch, reference):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list = []
    reader = _drain(fifo, got)
    res = _run(tmp_path, ["-floatfile", "pipe", "-intfile", "int.img", "-nopgm"], monkeypatch)
    reader.join(20)
    assert res.exit_code == 0, res.output
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert got == [reference["floatimage.bin"]]
    assert (tmp_path / "int.img").read_bytes() == reference["intimage.img"]


def test_socket_output_is_written_through(tmp_path, monkeypatch, reference):
    path = tmp_path / "sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    got: list = []

    def accept():
        conn, _ = server.accept()
        chunks = []
        while True:
            block = conn.recv(65536)
            if not block:
                break
            chunks.append(block)
        conn.close()
        got.append(b"".join(chunks))

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        res = _run(tmp_path, ["-intfile", "sock", "-nopgm"], monkeypatch)
        thread.join(20)
    finally:
        server.close()
    assert res.exit_code == 0, res.output
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    assert got == [reference["intimage.img"]]


def test_dev_stdout_is_written_through(tmp_path, reference):
    proc = _python_command(NANOBRAGG, *BASE, "-intfile", "/dev/stdout", "-nopgm", cwd=tmp_path)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    text, sep, image = out.partition(b"writing /dev/stdout as 2-byte integers\n")
    assert sep and reference["intimage.img"] in image
    assert sorted(p.name for p in tmp_path.iterdir()) == ["floatimage.bin", "noiseimage.img"]


def test_streams_and_links_as_an_ordinary_user(tmp_path):
    """The same rules without root's rights (a forked child drops to nobody)."""
    if os.geteuid() != 0:
        pytest.skip("the test drops root's rights, so it must start as root")
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="nbnumba-user-", dir="/tmp"))  # pytest's folders are root's only
    folder.chmod(0o777)
    os.mkfifo(folder / "pipe")
    (folder / "pipe").chmod(0o666)
    target = folder / "target.bin"
    target.write_bytes(b"old")
    target.chmod(0o666)
    (folder / "link.bin").symlink_to(target)
    got: list = []
    reader = _drain(folder / "pipe", got)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.setgid(65534)
            os.setuid(65534)
            with OutputSet() as out:
                out.add("/dev/null", b"x" * 10)
                out.add(folder / "pipe", b"through the pipe")
                out.add(folder / "link.bin", b"new")
                out.add(folder / "fresh.bin", b"fresh")
                out.commit()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    reader.join(20)
    assert os.waitstatus_to_exitcode(status) == 0
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert got == [b"through the pipe"]
    assert (folder / "link.bin").is_symlink() and target.read_bytes() == b"new"
    assert (folder / "fresh.bin").stat().st_uid == 65534
    assert _temporaries(folder) == []
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()


def test_block_device_is_refused(tmp_path):
    blocks = [os.path.join("/dev", n) for n in os.listdir("/dev")
              if stat.S_ISBLK(os.lstat(os.path.join("/dev", n)).st_mode)]
    if not blocks:
        pytest.skip("no block device in /dev")
    with pytest.raises(OutputFileError, match="block device"):
        check_outputs([blocks[0]])


# --- symbolic links ------------------------------------------------------------------------------------------


def test_symlink_output_replaces_its_target(tmp_path, monkeypatch, reference):
    store = tmp_path / "store"
    store.mkdir()
    target = store / "data.bin"
    target.write_bytes(b"old")
    target.chmod(0o640)
    (tmp_path / "link.bin").symlink_to(target)
    res = _run(tmp_path, ["-floatfile", "link.bin", "-nopgm"], monkeypatch)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "link.bin").is_symlink()
    assert os.readlink(tmp_path / "link.bin") == str(target)
    assert target.read_bytes() == reference["floatimage.bin"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert _temporaries(tmp_path) == [] and _temporaries(store) == []


def test_dangling_symlink_creates_its_target(tmp_path):
    (tmp_path / "link").symlink_to(tmp_path / "new.bin")
    atomic_write(tmp_path / "link", b"abc")
    assert (tmp_path / "link").is_symlink()
    assert (tmp_path / "new.bin").read_bytes() == b"abc"


def test_existing_file_keeps_its_permissions(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"x")
    path.chmod(0o600)
    atomic_write(path, b"new")
    assert path.read_bytes() == b"new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


# --- inputs and duplicates -------------------------------------------------------------------------------------


def _hkl(tmp_path: Path) -> Path:
    path = tmp_path / "in.hkl"
    path.write_text("0 0 0 100\n1 0 0 50\n0 1 0 50\n")
    return path


@pytest.mark.parametrize("how", ["same", "relative", "symlink", "hardlink"])
def test_output_that_is_the_hkl_input_is_refused(tmp_path, monkeypatch, how):
    hkl = _hkl(tmp_path)
    content = hkl.read_bytes()
    out = {"same": "in.hkl", "relative": "./sub/../in.hkl", "symlink": "link.hkl", "hardlink": "hard.hkl"}[how]
    (tmp_path / "sub").mkdir()
    if how == "symlink":
        (tmp_path / "link.hkl").symlink_to(hkl)
    if how == "hardlink":
        os.link(hkl, tmp_path / "hard.hkl")
    before = sorted(p.name for p in tmp_path.iterdir())
    res = _run(tmp_path, ["-hkl", "in.hkl", "-intfile", out, "-nopgm"], monkeypatch)
    assert res.exit_code == 2, res.output
    assert "is also an input of the run" in res.output
    assert "Traceback" not in res.output
    assert hkl.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_output_that_is_the_source_file_is_refused(tmp_path, monkeypatch):
    src = tmp_path / "beam.src"
    src.write_text("0 0 -10 1 1e-10\n")
    res = _run(tmp_path, ["-sourcefile", "beam.src", "-floatfile", "beam.src", "-nopgm"], monkeypatch)
    assert res.exit_code == 2 and "is also an input" in res.output
    assert src.read_text() == "0 0 -10 1 1e-10\n"


def test_output_that_is_the_fdump_being_read_is_refused(tmp_path, monkeypatch):
    _hkl(tmp_path)
    assert _run(tmp_path, ["-hkl", "in.hkl", "-nopgm"], monkeypatch).exit_code == 0
    dump = (tmp_path / "Fdump.bin").read_bytes()
    res = _run(tmp_path, ["-floatfile", "Fdump.bin", "-nopgm"], monkeypatch)
    assert res.exit_code == 2 and "Fdump.bin: output file is also an input" in res.output
    assert (tmp_path / "Fdump.bin").read_bytes() == dump


def test_output_that_is_the_img_header_input_is_refused(tmp_path, monkeypatch):
    assert _run(tmp_path, ["-nopgm"], monkeypatch).exit_code == 0
    img = (tmp_path / "intimage.img").read_bytes()
    res = _run(tmp_path, ["-img", "intimage.img", "-nopgm"], monkeypatch)
    assert res.exit_code == 2 and "intimage.img: output file is also an input" in res.output
    assert (tmp_path / "intimage.img").read_bytes() == img


def test_two_outputs_on_one_file_are_refused(tmp_path, monkeypatch):
    res = _run(tmp_path, ["-floatfile", "a.img", "-intfile", "./a.img", "-nopgm"], monkeypatch)
    assert res.exit_code == 2, res.output
    assert "two outputs of the run are the same file" in res.output
    assert list(tmp_path.iterdir()) == []


def test_fdump_cache_and_an_output_on_one_file_are_refused(tmp_path, monkeypatch):
    _hkl(tmp_path)
    res = _run(tmp_path, ["-hkl", "in.hkl", "-floatfile", "Fdump.bin", "-nopgm"], monkeypatch)
    assert res.exit_code == 2 and "same file" in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.hkl"]


def test_devices_may_repeat(tmp_path):
    targets = check_outputs(["/dev/null", "/dev/null"])
    assert [t.kind for t in targets] == ["stream", "stream"]


# --- all or nothing ----------------------------------------------------------------------------------------------


def _sentinels(folder: Path) -> dict:
    names = ("floatimage.bin", "intimage.img", "image.pgm", "noiseimage.img")
    for name in names:
        (folder / name).write_bytes(b"before " + name.encode())
    return {name: (folder / name).read_bytes() for name in names}


def _unchanged(folder: Path, before: dict) -> None:
    assert {name: (folder / name).read_bytes() for name in before} == before
    assert _temporaries(folder) == []


@pytest.mark.parametrize("failure", [OSError(errno.EIO, "Input/output error"), RuntimeError("boom"),
                                     KeyboardInterrupt()])
def test_a_failing_output_changes_no_file(tmp_path, monkeypatch, failure):
    before = _sentinels(tmp_path)
    real = registry.get_writer("noise")

    def broken(frame):
        yield b"partial"
        raise failure

    monkeypatch.setitem(registry._WRITERS, "noise", registry.Writer("noise", ".img", "", broken))
    try:
        res = _run(tmp_path, ["-noisefile", "noiseimage.img"], monkeypatch)
    finally:
        registry._WRITERS["noise"] = real
    assert res.exit_code == 2, res.output
    if isinstance(failure, OSError):
        assert "Input/output error" in res.output
    assert "Traceback" not in res.output
    _unchanged(tmp_path, before)


def test_output_set_removes_its_temporaries_on_interrupt(tmp_path):
    with pytest.raises(KeyboardInterrupt), OutputSet() as out:
        out.add(tmp_path / "a.bin", b"a")
        assert len(_temporaries(tmp_path)) == 1
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_output_set_without_commit_writes_nothing(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"old")
    with OutputSet() as out:
        out.add(tmp_path / "a.bin", b"new")
        out.add(tmp_path / "b.bin", b"new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]
    assert (tmp_path / "a.bin").read_bytes() == b"old"


def test_full_disk_leaves_earlier_files_intact(tmp_path, monkeypatch):
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(disk)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        before = _sentinels(disk)
        filler = disk / "filler"
        with open(filler, "wb", buffering=0) as handle:
            try:
                while True:
                    handle.write(b"\0" * 4096)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
        res = _run(disk, ["-detpixels", "64", "-noisefile", "noiseimage.img"], monkeypatch)
        assert res.exit_code == 2, res.output
        assert "No space left on device" in res.output
        _unchanged(disk, before)
    finally:
        monkeypatch.chdir(tmp_path)
        subprocess.run(["umount", str(disk)], check=False)


def test_temporaries_of_killed_runs_are_removed(tmp_path, monkeypatch, reference):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".nbnumba-{dead.pid}-0a1b2c3d-floatimage.bin.tmp"
    stale.write_bytes(b"left by SIGKILL")
    alive = tmp_path / f".nbnumba-{os.getppid()}-0a1b2c3d-other.bin.tmp"
    alive.write_bytes(b"someone is writing")
    res = _run(tmp_path, ["-nopgm"], monkeypatch)
    assert res.exit_code == 0, res.output
    assert not stale.exists()
    assert alive.exists()
    assert (tmp_path / "floatimage.bin").read_bytes() == reference["floatimage.bin"]


def test_remove_stale_temporaries_ignores_other_files(tmp_path):
    (tmp_path / ".nbnumba-notapid-x.tmp").write_bytes(b"")
    (tmp_path / "frame.bin").write_bytes(b"")
    assert remove_stale_temporaries(tmp_path) == []
    assert len(list(tmp_path.iterdir())) == 2


def _default_sigint():
    # a test run started in the background of a non-interactive shell inherits SIGINT ignored;
    # the commands here must see Ctrl-C as a user's terminal delivers it
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _python_command(code: str, *args, cwd, env=None, **kwargs):
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=cwd, env=env or _child_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=_default_sigint, **kwargs)


NANOBRAGG = "from nbnumba_cli.nanobragg import main; main()"
NBNUMBA = "import sys; sys.argv[0] = 'nbnumba'; from nbnumba_cli.main import main; main()"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_while_writing_removes_temporaries(tmp_path, signum):
    """Stop a run while its outputs are staged (blocked on a FIFO nobody reads)."""
    before = _sentinels(tmp_path)
    os.mkfifo(tmp_path / "pipe")
    proc = _python_command(NANOBRAGG, *BASE, "-floatfile", "pipe", "-noisefile", "noiseimage.img", cwd=tmp_path)
    deadline = time.monotonic() + 120
    while len(_temporaries(tmp_path)) < 3 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert len(_temporaries(tmp_path)) == 3, proc.communicate()
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    assert err.decode().strip() == "nanoBragg: error: interrupted"
    _unchanged(tmp_path, before)


# --- scan, gradients, refine -------------------------------------------------------------------------------------


def _scan(tmp_path, *opts):
    return CliRunner().invoke(nbnumba, ["scan", "--frames", "3", "--phi-step", "1", *opts, "--", *SCAN])


@pytest.mark.parametrize("prefix", ["../up", "a/b", "..", ""])
def test_scan_prefix_may_not_leave_out(tmp_path, prefix):
    res = _scan(tmp_path, "--out", str(tmp_path / "o"), "--prefix", prefix)
    assert res.exit_code == 2, res.output
    assert "--prefix" in res.output and "Traceback" not in res.output
    assert list(tmp_path.iterdir()) == []


def test_scan_frame_on_an_input_is_refused(tmp_path):
    hkl = _hkl(tmp_path)
    content = hkl.read_bytes()
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "frame_0002.bin").symlink_to(hkl)
    res = CliRunner().invoke(nbnumba, ["scan", "--frames", "3", "--phi-step", "1", "--out", str(tmp_path / "o"),
                                       "--", *SCAN, "-hkl", str(hkl)])
    assert res.exit_code == 2 and "is also an input" in res.output
    assert hkl.read_bytes() == content
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["frame_0002.bin"]


class _InterruptAfter:
    """A local executor interrupted (as by Ctrl-C) after some frames."""

    name = "local"

    def __init__(self, frames: int):
        from nbnumba.executors import LocalExecutor

        self.left = frames
        self.local = LocalExecutor()

    def map(self, fn, items):
        out = []
        for item in items:
            if self.left == 0:
                raise KeyboardInterrupt
            self.left -= 1
            out.append(fn(item))
        return out


def _phi_scan():
    from nbnumba.cargs import config_from_args
    from nbnumba.scan import phi_scan

    cfg, _ = config_from_args(SCAN + ["-seed", "1"])
    return phi_scan(cfg, start_deg=0.0, step_deg=1.0, n_frames=4)


def _files(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if not p.name.endswith(".json")}


def test_interrupted_scan_resumed_gives_the_same_files(tmp_path):
    from nbnumba.scan import run_scan

    scan = _phi_scan()
    full = tmp_path / "full"
    run_scan(scan, out_dir=full)
    part = tmp_path / "part"
    with pytest.raises(KeyboardInterrupt):
        run_scan(scan, out_dir=part, executor=_InterruptAfter(2))
    doc = json.loads((part / "frame_scan.json").read_text())
    assert [f["number"] for f in doc["frames"]] == [1, 2]
    assert sorted(_files(part)) == ["frame_0001.bin", "frame_0001.img", "frame_0002.bin", "frame_0002.img"]
    mtimes = {p.name: p.stat().st_mtime_ns for p in part.iterdir()}
    records = run_scan(scan, out_dir=part, resume=True)
    assert [r.resumed for r in records] == [True, True, False, False]
    assert _files(part) == _files(full)
    assert (part / "frame_0001.bin").stat().st_mtime_ns == mtimes["frame_0001.bin"]
    doc = json.loads((part / "frame_scan.json").read_text())
    assert [f["number"] for f in doc["frames"]] == [1, 2, 3, 4]
    for rec in doc["frames"]:
        for fmt, entry in rec["files"].items():
            data = (part / entry["name"]).read_bytes()
            assert entry["size"] == len(data)


def test_resume_renders_a_damaged_frame_again(tmp_path):
    from nbnumba.scan import run_scan

    scan = _phi_scan()
    run_scan(scan, out_dir=tmp_path)
    good = _files(tmp_path)
    damaged = bytearray(good["frame_0003.img"])
    damaged[600] ^= 0xFF
    (tmp_path / "frame_0003.img").write_bytes(bytes(damaged))
    (tmp_path / "frame_0004.bin").unlink()
    records = run_scan(scan, out_dir=tmp_path, resume=True)
    assert [r.resumed for r in records] == [True, True, False, False]
    assert _files(tmp_path) == good


def test_resume_refuses_a_manifest_of_another_scan(tmp_path):
    from nbnumba.scan import apply_changes, run_scan

    scan = _phi_scan()
    run_scan(scan, out_dir=tmp_path)
    scan.base = apply_changes(scan.base, {"distance": 0.06})
    with pytest.raises(ConfigError, match="other settings"):
        run_scan(scan, out_dir=tmp_path, resume=True)
    (tmp_path / "frame_scan.json").write_bytes(b"\x00garbage")
    with pytest.raises(ConfigError, match="not a scan manifest"):
        run_scan(scan, out_dir=tmp_path, resume=True)


def test_scan_cli_resume(tmp_path):
    out = tmp_path / "o"
    assert _scan(tmp_path, "--out", str(out)).exit_code == 0
    res = _scan(tmp_path, "--out", str(out), "--resume")
    assert res.exit_code == 0, res.output
    assert res.output.count("(complete, kept)") == 3


def test_gradients_outputs_are_one_set(tmp_path, monkeypatch):
    out = tmp_path / "g"
    out.mkdir()
    (out / "gradients.json").write_text("before")
    hkl = _hkl(tmp_path)
    (out / "image.bin").symlink_to(hkl)
    res = CliRunner().invoke(nbnumba, ["gradients", "--param", "distance", "--out", str(out), "--",
                                       *SCAN, "-hkl", str(hkl)])
    assert res.exit_code == 2 and "is also an input" in res.output
    assert (out / "gradients.json").read_text() == "before"
    assert sorted(p.name for p in out.iterdir()) == ["gradients.json", "image.bin"]
    (out / "image.bin").unlink()
    res = CliRunner().invoke(nbnumba, ["gradients", "--param", "distance", "--out", str(out), "--", *SCAN])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == ["grad_distance.bin", "gradients.json", "image.bin"]
    assert json.loads((out / "gradients.json").read_text())["shape"] == [16, 16]


def test_refine_out_may_not_be_the_observed_image(tmp_path):
    obs = tmp_path / "obs.bin"
    obs.write_bytes(np.ones((16, 16), dtype="<f4").tobytes())
    res = CliRunner().invoke(nbnumba, ["refine", "--observed", str(obs), "--param", "distance", "--out", str(obs),
                                       "--", *SCAN])
    assert res.exit_code == 2 and "is also an input" in res.output
    assert obs.read_bytes() == np.ones((16, 16), dtype="<f4").tobytes()


# --- the registry ---------------------------------------------------------------------------------------------------


def test_a_new_format_is_one_registration(tmp_path):
    from nbnumba.scan import run_scan

    @register_writer("test-sum", ".sum", "the pixel sum as text")
    def pixel_sum(frame):
        return f"{float(np.sum(frame.image, dtype=np.float64)):.6e}\n".encode()

    try:
        assert "test-sum" in format_names()
        records = run_scan(_phi_scan(), out_dir=tmp_path, formats=("test-sum", "float"))
        text = (tmp_path / "frame_0002.sum").read_text()
        image = np.frombuffer((tmp_path / "frame_0002.bin").read_bytes(), dtype="<f4")
        assert float(text) == pytest.approx(float(image.sum(dtype=np.float64)), rel=1e-6)
        assert records[1].files["test-sum"]["size"] == len(text)
    finally:
        registry._WRITERS.pop("test-sum", None)


def test_frame_scaling_matches_c_rules():
    image = np.array([[0.0, 1.0], [2.0, 4.0]], dtype=np.float32)
    frame = Frame(image=image, header={}, roi=None, rows=slice(0, 2), cols=slice(0, 2), max_I=4.0, rmsd=0.0)
    assert frame.int_scale == 55000.0 / 4.0
    assert frame.pgm_scale_used == frame.int_scale
    assert frame.int_image.tolist() == [[40, 13790], [27540, 55040]]
    assert get_writer("float")(frame).tobytes() == image.astype("<f4").tobytes()
    frame = Frame(image=image, header={}, roi=None, rows=slice(0, 1), cols=slice(1, 2), max_I=0.0, rmsd=2.0,
                  adc_offset=0.0)
    assert frame.int_scale == 1.0 and frame.pgm_scale_used == 25.0
    assert frame.int_image.tolist() == [[0, 1], [0, 0]]


# --- no tracebacks --------------------------------------------------------------------------------------------------


def test_unexpected_error_is_one_line_and_traceback_on_request(tmp_path):
    code = "import nbnumba.runner as r; r.run_nanobragg = lambda a: 1 / 0; " + NANOBRAGG
    proc = _python_command(code, *BASE, cwd=tmp_path)
    out, err = proc.communicate(timeout=120)
    lines = err.decode().strip().splitlines()
    assert proc.returncode == 2
    assert lines == ["nanoBragg: error: internal error: ZeroDivisionError: division by zero "
                     "(set NBNUMBA_TRACEBACK=1 to see the traceback)"]
    proc = _python_command(code, *BASE, cwd=tmp_path, env={**_child_env(), "NBNUMBA_TRACEBACK": "1"})
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert "Traceback (most recent call last)" in err.decode()


def test_unexpected_error_in_a_subcommand_is_one_line(tmp_path):
    code = ("import nbnumba.scan as s\ndef boom(*a, **k):\n    raise ValueError('bad thing')\n"
            "s.run_scan = boom\n" + NBNUMBA)
    proc = _python_command(code, "scan", "--frames", "2", "--phi-step", "1", "--out", "o", "--", *SCAN,
                           cwd=tmp_path)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert err.decode().strip().splitlines() == [
        "nbnumba scan: error: internal error: ValueError: bad thing (set NBNUMBA_TRACEBACK=1 to see the traceback)"]


@pytest.mark.parametrize("code, args", [
    (NANOBRAGG, ["-h"]),
    (NBNUMBA, ["scan", "-h"]),
    (NBNUMBA, ["bench", "-h"]),
    (NBNUMBA, ["-h"]),
    (NBNUMBA, ["scan", "--frames", "2", "--phi-step", "1", "--out", "o", "--", *SCAN]),
    (NANOBRAGG, BASE),
])
def test_closed_stdout_ends_quietly(tmp_path, code, args):
    proc = _python_command(code, *args, cwd=tmp_path)
    proc.stdout.close()  # as `| head` does once it has its lines
    err = proc.stderr.read()
    proc.wait(timeout=120)
    assert b"Traceback" not in err and b"Exception ignored" not in err, err.decode()
    assert err == b"", err.decode()


def test_head_of_help_is_quiet(tmp_path):
    for code, args in ((NANOBRAGG, "-h"), (NBNUMBA, "scan -h")):
        line = f"{shlex.quote(sys.executable)} -c {shlex.quote(code)} {args} | head -1"
        res = subprocess.run(line, shell=True, cwd=tmp_path, capture_output=True, text=True, env=_child_env(),
                             timeout=120)
        assert res.returncode == 0 and res.stderr == "" and res.stdout.count("\n") == 1


def test_version(tmp_path):
    res = subprocess.run([sys.executable, "-c", NANOBRAGG, "--version"], capture_output=True, text=True,
                         cwd=tmp_path, env=_child_env(), timeout=120)
    assert res.returncode == 0
    assert res.stdout.startswith("nanoBragg (nbnumba ")


def test_unreachable_dask_scheduler_is_one_line(tmp_path):
    pytest.importorskip("distributed")
    env = {**_child_env(), "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "1s"}
    proc = _python_command(NBNUMBA, "scan", "--frames", "2", "--phi-step", "1", "--out", "o",
                           "--dask", "tcp://127.0.0.1:9", "--", *SCAN, cwd=tmp_path, env=env)
    out, err = proc.communicate(timeout=120)
    lines = err.decode().strip().splitlines()
    assert proc.returncode == 2
    assert len(lines) == 1 and lines[0].startswith("nbnumba scan: error: cannot reach the Dask scheduler")


def test_unwritable_out_folder_is_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    res = _scan(tmp_path, "--out", str(tmp_path / "file" / "sub"))
    assert res.exit_code == 2
    assert "cannot create the folder" in res.output and "Traceback" not in res.output


def test_malformed_input_is_echoed_as_a_short_escaped_excerpt(tmp_path):
    garbage = b"1 2 3 " + b"\x1b[31m\x00\xff" * 100 + b"\n"
    (tmp_path / "bad.hkl").write_bytes(b"0 0 0 100\n" + garbage)
    proc = _python_command(NANOBRAGG, *BASE, "-hkl", "bad.hkl", cwd=tmp_path)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    text = err.decode("utf-8")
    assert text.count("\n") == 1 and text.startswith("nanoBragg: error: ")
    assert "\x1b" not in text and "\x00" not in text
    assert len(text) < 300


def test_one_line_escapes_and_cuts():
    msg = one_line("bad.hkl, line 2: '" + "\x1b" * 200 + "' is not a number\nsecond")
    assert "\n" not in msg and "\x1b" not in msg
    assert msg.startswith("bad.hkl, line 2: '\\x1b") and "...' is not a number\\nsecond" in msg
    assert len(msg) < 120


def test_output_set_records_sizes_and_checksums(tmp_path):
    import hashlib

    with OutputSet(digest=True) as out:
        out.add(tmp_path / "a", [b"ab", b"c"])
        out.commit()
    assert out.written[str(tmp_path / "a")].size == 3
    assert out.written[str(tmp_path / "a")].sha256 == hashlib.sha256(b"abc").hexdigest()


def test_output_folder_checks(tmp_path):
    with pytest.raises(OutputFileError, match="does not exist"):
        check_outputs([tmp_path / "no" / "a.bin"])
    with pytest.raises(OutputFileError, match="is a folder"):
        check_outputs([tmp_path])
