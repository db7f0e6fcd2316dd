"""Helper threads kept for the life of a process, shared by the native kernel and the statistics.

A process that renders many images (a scan, a fitting loop, the command
server's forked child) starts them once.  Threads do not survive a fork: a
pool created before one notices the new pid and starts its own; the command
server calls :func:`stop` before forking so that it holds no threads.
"""

from __future__ import annotations

import os
import queue
import signal
import threading

# Signals a process is stopped or told something with: the helpers leave them to the main thread, so a
# main thread blocked in a system call (writing to a FIFO, waiting for a lock) is the one interrupted.
_ASYNC_SIGNALS = {getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1",
                                                      "SIGUSR2", "SIGALRM", "SIGCHLD") if hasattr(signal, name)}


def block_signals() -> None:
    """Leave asynchronous signals to the main thread (call at the start of a helper thread)."""
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_BLOCK, _ASYNC_SIGNALS)


class WorkerPool:
    """Daemon threads running submitted callables, in submission order per thread."""

    def __init__(self):
        self.pid = os.getpid()
        self.tasks = queue.SimpleQueue()
        self.threads: list[threading.Thread] = []

    def _loop(self):
        block_signals()
        while True:
            task = self.tasks.get()
            if task is None:
                return
            task()

    def ensure(self, count: int) -> None:
        """At least ``count`` threads."""
        if self.pid != os.getpid():
            self.__init__()
        while len(self.threads) < count:
            thread = threading.Thread(target=self._loop, name="nbnumba-worker", daemon=True)
            thread.start()
            self.threads.append(thread)

    def submit(self, task) -> None:
        self.tasks.put(task)

    def shutdown(self) -> None:
        if self.pid != os.getpid():
            self.__init__()
            return
        for _ in self.threads:
            self.tasks.put(None)
        for thread in self.threads:
            thread.join()
        self.threads.clear()


_pool: WorkerPool | None = None


def pool() -> WorkerPool:
    """This process's pool (created on first use)."""
    global _pool
    if _pool is None:
        _pool = WorkerPool()
    return _pool


def stop() -> None:
    """End the pool's threads."""
    if _pool is not None:
        _pool.shutdown()


def run_chunks(fn, count: int, threads: int, on_done=None) -> list:
    """``[fn(i) for i in range(count)]`` on up to ``threads`` threads (this one included), results in order.

    Each thread takes the next index when it finishes one.  ``on_done(i)``,
    if given, is called in this thread for every finished ``i`` (progress).
    For work that releases the GIL (ctypes calls, NumPy on large arrays).

    No helper is still running ``fn`` when this returns or raises, even when
    interrupts (Ctrl-C, SIGTERM) keep arriving while it waits for them: a
    helper that starts after the end of the call does nothing.  The first
    exception (this thread's, else a helper's) is raised then.
    """
    results = [None] * count
    lock = threading.Condition()
    state = {"next": 0, "active": 0, "stop": False}
    errors = []
    finished = queue.SimpleQueue()  # indices the helpers finished; None when a helper ends

    def take():
        with lock:
            if state["stop"] or state["next"] >= count:
                return None
            i = state["next"]
            state["next"] += 1
            return i

    def helper():
        with lock:
            if state["stop"]:  # queued behind other work until the call was over
                return
            state["active"] += 1
        try:
            for i in iter(take, None):
                results[i] = fn(i)
                finished.put(i)
        except BaseException as exc:  # noqa: BLE001 - raised by the caller
            with lock:
                errors.append(exc)
                state["stop"] = True
        finally:
            with lock:
                state["active"] -= 1
                lock.notify_all()
            finished.put(None)

    helpers = min(int(threads), count) - 1
    if helpers <= 0:
        out = []
        for i in range(count):
            out.append(fn(i))
            if on_done is not None:
                on_done(i)
        return out
    failure = None
    try:
        p = pool()
        p.ensure(helpers)
        for _ in range(helpers):
            p.submit(helper)
        done = 0

        def account(item):
            nonlocal done
            if item is not None:
                done += 1
                if on_done is not None:
                    on_done(item)

        for i in iter(take, None):
            results[i] = fn(i)
            account(i)
            while True:  # what the helpers finished meanwhile
                try:
                    account(finished.get_nowait())
                except queue.Empty:
                    break
        while done < count and not errors:
            account(finished.get())
    except BaseException as exc:  # noqa: BLE001 - raised below, once no helper runs
        failure = exc
    late = None
    while True:  # stop the helpers and wait for them, whatever interrupts arrive meanwhile
        try:
            with lock:
                state["stop"] = True
                while state["active"] > 0:
                    lock.wait()
            break
        except BaseException as exc:  # noqa: BLE001 - a signal handler's exception, raised once they stopped
            late = late or exc
    if failure is not None:
        raise failure
    if errors:
        raise errors[0]
    if late is not None:
        raise late
    return results


def map_ordered(fn, items, threads: int) -> list:
    """``[fn(x) for x in items]`` on up to ``threads`` threads (see :func:`run_chunks`).

    Each call in flight holds its own temporaries, so passes over an image
    use :func:`pass_threads`, not every core."""
    items = list(items)
    return run_chunks(lambda i: fn(items[i]), len(items), threads)


PASS_THREADS = 4  # whole-image passes (statistics, integer image) are memory-bound: a few threads are enough


def pass_threads(requested: int | None = None) -> int:
    """Threads for a pass over an image: as asked (default: as the kernel), at most :data:`PASS_THREADS`,
    so that the blocks in flight (each a float64 copy of some rows) stay a small part of the image."""
    if requested:
        return max(1, min(int(requested), PASS_THREADS))
    from .kernels.native import default_threads

    return min(default_threads(), PASS_THREADS)
