"""The native kernel cache cannot be poisoned or crash a run.

Each case starts from a cache holding a genuine library (built once for the
module), tampers with it the way another user or a crashed run could, and
renders in a subprocess (a library that should not be loaded may crash the
process that loads it).  In every case the image is the JIT kernel's, bit
for bit, the native kernel is used (rebuilt where needed, by a stand-in
build that copies the genuine library), and no foreign file is mapped.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import triclinic_config

from nbnumba.kernels import native, native_build

pytestmark = pytest.mark.skipif(
    not native.supported() or native_build.find_linker() is None,
    reason="native kernels need Linux and a C compiler (cc, gcc or clang) to link them",
)

KIND = ("render", "float64", "float32")
TESTS_DIR = Path(__file__).resolve().parent
FOREIGN_UID = 54321

PROBE = r"""
import json, os, shutil, sys, warnings
sys.path.insert(0, os.environ["TESTS_DIR"])
import numpy as np
from nbnumba.kernels import native, native_build

seed = os.environ["SEED_DIR"]
builds = []


def copy_build(kind, dtype, out_dtype, target):
    # stands in for the real build: the genuine library of this key
    key = os.path.basename(target)[:-3]
    tmp = target + ".copy"
    shutil.copyfile(os.path.join(seed, key + ".so"), tmp)
    os.chmod(tmp, 0o755)
    os.replace(tmp, target)
    builds.append(kind)
    with open(os.path.join(seed, key + ".json")) as handle:
        return json.load(handle)["symbol"]


native_build.build = copy_build
from conftest import triclinic_config
from nbnumba.engine import render_flat
from nbnumba.prepare import prepare

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    image, _ = render_flat(prepare(triclinic_config("spec")), "cpu")
np.save(os.environ["IMAGE_OUT"], image)
inodes = set()
with open("/proc/self/maps") as maps:
    for line in maps:
        parts = line.split()
        if len(parts) >= 6:
            inodes.add(int(parts[4]))
print("RESULT " + json.dumps({"builds": builds, "native": native._loaded.get(("render", "float64", "float32"))
                                is not None, "inodes": sorted(inodes), "warnings": [str(w.message) for w in caught]}))
"""


@pytest.fixture(scope="module")
def seed(tmp_path_factory):
    """A cache folder with the genuine render library, and the JIT kernel's image."""
    from nbnumba.engine import render_flat
    from nbnumba.prepare import prepare

    folder = tmp_path_factory.mktemp("seed")
    saved = {k: os.environ.get(k) for k in ("NBNUMBA_CACHE_DIR", "NBNUMBA_CPU_KERNEL")}
    saved_loaded = dict(native._loaded)
    try:
        os.environ["NBNUMBA_CACHE_DIR"] = str(folder)
        os.environ["NBNUMBA_CPU_KERNEL"] = "native"
        native._loaded.clear()
        assert native.load(*KIND) is not None
        os.environ["NBNUMBA_CPU_KERNEL"] = "jit"
        reference, _ = render_flat(prepare(triclinic_config("spec")), "cpu")
    finally:
        native._loaded.clear()
        native._loaded.update(saved_loaded)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    assert reference.max() > 0.0
    return folder, reference


@pytest.fixture
def cache(seed, tmp_path):
    """A private copy of the seeded cache: (folder, key)."""
    folder = tmp_path / "cache"
    folder.mkdir(mode=0o700)
    for path in seed[0].iterdir():
        if path.suffix in (".so", ".json"):
            shutil.copy2(path, folder / path.name)
    key = native.library_key(*KIND)
    assert (folder / f"{key}.so").exists()
    return folder, key


def _render(seed, tmp_path, folder):
    """Render in a subprocess with the cache at ``folder``; check the image; return its report."""
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir(exist_ok=True, mode=0o700)
    image_out = tmp_path / "image.npy"
    env = dict(os.environ, NBNUMBA_CACHE_DIR=str(folder), NBNUMBA_CPU_KERNEL="auto", TMPDIR=str(tmpdir),
               SEED_DIR=str(seed[0]), TESTS_DIR=str(TESTS_DIR), IMAGE_OUT=str(image_out), NUMBA_NUM_THREADS="2")
    proc = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    report = json.loads(line[len("RESULT "):])
    assert np.array_equal(np.load(image_out), seed[1]), "not the JIT kernel's image"
    assert report["native"], "the native kernel was not used"
    return report


def _inode(path: Path) -> int:
    return os.lstat(path).st_ino


def test_intact_cache_is_loaded_without_a_build(seed, cache, tmp_path):
    folder, key = cache
    report = _render(seed, tmp_path, folder)
    assert report["builds"] == []
    assert _inode(folder / f"{key}.so") in report["inodes"]
    assert report["warnings"] == []


def test_truncated_library_is_rebuilt_not_loaded(seed, cache, tmp_path):
    folder, key = cache
    lib = folder / f"{key}.so"
    with open(lib, "r+b") as handle:
        handle.truncate(lib.stat().st_size // 3)
    bad = _inode(lib)
    report = _render(seed, tmp_path, folder)
    assert report["builds"] == ["render"]
    assert bad not in report["inodes"]


def test_library_swapped_from_another_key_is_rebuilt(seed, cache, tmp_path):
    folder, key = cache
    # the noise library (another key, another symbol) put in place of the render library
    noise_key = native.library_key("noise", "float32", "uint16")
    saved = os.environ.get("NBNUMBA_CACHE_DIR")
    os.environ["NBNUMBA_CACHE_DIR"] = str(seed[0])
    try:
        native._loaded.pop(("noise", "float32", "uint16"), None)
        prev = os.environ.get("NBNUMBA_CPU_KERNEL")
        os.environ["NBNUMBA_CPU_KERNEL"] = "native"
        assert native.load("noise", "float32", "uint16") is not None
    finally:
        native._loaded.pop(("noise", "float32", "uint16"), None)
        os.environ.pop("NBNUMBA_CACHE_DIR") if saved is None else os.environ.__setitem__("NBNUMBA_CACHE_DIR", saved)
        os.environ.pop("NBNUMBA_CPU_KERNEL") if prev is None else os.environ.__setitem__("NBNUMBA_CPU_KERNEL", prev)
    shutil.copyfile(seed[0] / f"{noise_key}.so", folder / f"{key}.so")
    foreign = _inode(folder / f"{key}.so")
    report = _render(seed, tmp_path, folder)
    assert report["builds"] == ["render"]
    assert foreign not in report["inodes"]
    # the record swapped too (a consistent pair from another key): still refused
    shutil.copyfile(seed[0] / f"{noise_key}.so", folder / f"{key}.so")
    shutil.copyfile(seed[0] / f"{noise_key}.json", folder / f"{key}.json")
    foreign = _inode(folder / f"{key}.so")
    report = _render(seed, tmp_path, folder)
    assert report["builds"] == ["render"]
    assert foreign not in report["inodes"]


@pytest.mark.parametrize("damage", ["garbage", "not-an-object", "wrong-sha", "other-numba", "bad-symbol", "huge"])
def test_corrupt_record_means_a_rebuild(seed, cache, tmp_path, damage):
    folder, key = cache
    record_path = folder / f"{key}.json"
    record = json.loads(record_path.read_text())
    text = {
        "garbage": "{not json",
        "not-an-object": "[1, 2, 3]",
        "wrong-sha": json.dumps(dict(record, sha256="0" * 64)),
        "other-numba": json.dumps(dict(record, numba="0.1.0")),
        "bad-symbol": json.dumps(dict(record, symbol="x y; rm -rf /")),
        "huge": json.dumps(dict(record, pad="x" * (native.RECORD_LIMIT + 10))),
    }[damage]
    record_path.write_text(text)
    old = _inode(folder / f"{key}.so")
    report = _render(seed, tmp_path, folder)
    assert report["builds"] == ["render"]
    assert old not in report["inodes"]
    assert json.loads(record_path.read_text())["sha256"] == record["sha256"]


def test_group_writable_folder_is_not_used(seed, cache, tmp_path):
    folder, key = cache
    folder.chmod(0o777)
    planted = _inode(folder / f"{key}.so")
    report = _render(seed, tmp_path, folder)
    assert planted not in report["inodes"]
    assert report["builds"] == ["render"], "built in the private folder"
    private = tmp_path / "tmpdir" / f"nbnumba-kernels-{os.geteuid()}"
    assert (private / f"{key}.so").exists()
    assert private.stat().st_mode & 0o077 == 0
    assert any("writable by group or others" in w and str(private) in w for w in report["warnings"])
    # the second run uses the private folder without building again
    report = _render(seed, tmp_path, folder)
    assert report["builds"] == []


def test_private_fallback_taken_by_someone_else_means_the_jit_kernel(seed, cache, tmp_path):
    folder, _ = cache
    folder.chmod(0o775)
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir(mode=0o700)
    (tmpdir / f"nbnumba-kernels-{os.geteuid()}").mkdir(mode=0o777)
    (tmpdir / f"nbnumba-kernels-{os.geteuid()}").chmod(0o777)
    image_out = tmp_path / "image.npy"
    env = dict(os.environ, NBNUMBA_CACHE_DIR=str(folder), NBNUMBA_CPU_KERNEL="auto", TMPDIR=str(tmpdir),
               SEED_DIR=str(seed[0]), TESTS_DIR=str(TESTS_DIR), IMAGE_OUT=str(image_out))
    proc = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))[7:])
    assert not report["native"]
    assert np.array_equal(np.load(image_out), seed[1])
    assert sum("using the Numba JIT kernel" in w and "no safe kernel cache" in w for w in report["warnings"]) == 1


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root (chown)")


@needs_root
@pytest.mark.parametrize("which", [".so", ".json"])
def test_foreign_owned_file_is_not_trusted(seed, cache, tmp_path, which):
    folder, key = cache
    os.chown(folder / f"{key}{which}", FOREIGN_UID, FOREIGN_UID)
    old = _inode(folder / f"{key}.so")
    report = _render(seed, tmp_path, folder)
    assert report["builds"] == ["render"]
    assert old not in report["inodes"]
    assert (folder / f"{key}.so").stat().st_uid == os.geteuid()


@needs_root
def test_foreign_owned_folder_is_not_used(seed, cache, tmp_path):
    folder, key = cache
    os.chown(folder, FOREIGN_UID, FOREIGN_UID)
    planted = _inode(folder / f"{key}.so")
    report = _render(seed, tmp_path, folder)
    assert planted not in report["inodes"]
    assert any("belongs to another user" in w for w in report["warnings"])


def test_symlinked_lock_and_note_are_not_followed(seed, cache, tmp_path):
    folder, key = cache
    (folder / f"{key}.so").unlink()  # forces a build, which takes the lock
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (folder / f"{key}.lock").symlink_to(victim)
    (folder / f"{key}.failed").symlink_to(victim)
    report = _render(seed, tmp_path, folder)
    assert report["builds"] == ["render"]
    assert victim.read_text() == "precious\n"
    assert not (folder / f"{key}.lock").is_symlink()
    assert not os.path.lexists(folder / f"{key}.failed")


def test_existing_lock_is_never_truncated(seed, cache, tmp_path):
    folder, key = cache
    (folder / f"{key}.so").unlink()
    (folder / f"{key}.lock").write_text("keep me\n")
    _render(seed, tmp_path, folder)
    assert (folder / f"{key}.lock").read_text() == "keep me\n"


def _note(**changes):
    fields = native._note_fields()
    fields.update(error="RuntimeError: linking the native kernel failed", transient=False)
    fields.update(changes)
    return json.dumps(fields)


@pytest.mark.parametrize("stale", [{"numba": "0.1.0"}, {"llvmlite": "0.1.0"}, {"interface": "old"},
                                   {"linker": "/nonexistent/cc"}, {"transient": True}])
def test_stale_failed_note_expires(seed, cache, tmp_path, stale):
    folder, key = cache
    (folder / f"{key}.so").unlink()
    (folder / f"{key}.failed").write_text(_note(**stale))
    report = _render(seed, tmp_path, folder)
    assert report["builds"] == ["render"]
    assert not (folder / f"{key}.failed").exists()


def test_valid_failed_note_falls_back_once_with_the_reason(seed, cache, tmp_path):
    folder, key = cache
    (folder / f"{key}.so").unlink()
    (folder / f"{key}.failed").write_text(_note())
    image_out = tmp_path / "image.npy"
    env = dict(os.environ, NBNUMBA_CACHE_DIR=str(folder), NBNUMBA_CPU_KERNEL="auto", SEED_DIR=str(seed[0]),
               TESTS_DIR=str(TESTS_DIR), IMAGE_OUT=str(image_out))
    proc = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))[7:])
    assert not report["native"] and report["builds"] == []
    assert np.array_equal(np.load(image_out), seed[1])
    fallbacks = [w for w in report["warnings"] if "using the Numba JIT kernel" in w]
    assert len(fallbacks) == 1 and "linking the native kernel failed" in fallbacks[0]


def test_transient_failure_is_not_remembered(tmp_path):
    exc = OSError(28, "No space left on device")
    note = tmp_path / "x.failed"
    native._write_failed_note(str(note), exc)
    assert json.loads(note.read_text())["transient"] is True
    assert native._failed_note(str(note)) is None
    assert not note.exists()
    native._write_failed_note(str(note), RuntimeError("no C compiler"))
    assert native._failed_note(str(note)) == "RuntimeError: no C compiler"


def test_leftovers_of_killed_builds_are_removed(seed, cache, tmp_path):
    folder, key = cache
    (folder / f"{key}.so").unlink()
    dead = 999_999_999  # above any pid_max
    (folder / f".build-{dead}-abc").mkdir()
    (folder / f".build-{dead}-abc" / "kernel.o").write_bytes(b"x")
    (folder / f"{key}.json.{dead}.tmp").write_text("{")
    (folder / f".build-{os.getpid()}-live").mkdir()  # a build that is still running: kept
    report = _render(seed, tmp_path, folder)
    assert report["builds"] == ["render"]
    assert not (folder / f".build-{dead}-abc").exists()
    assert not (folder / f"{key}.json.{dead}.tmp").exists()
    assert (folder / f".build-{os.getpid()}-live").exists()


def test_fifo_in_place_of_the_library_does_not_hang(seed, cache, tmp_path):
    folder, key = cache
    (folder / f"{key}.so").unlink()
    os.mkfifo(folder / f"{key}.so")
    report = _render(seed, tmp_path, folder)
    assert report["builds"] == ["render"]
    assert (folder / f"{key}.so").is_file()
