"""Helper threads kept for the life of a process, shared by the native kernel and the statistics.

A process that renders many images (a scan, a fitting loop, the command
server's forked child) starts them once.  Threads do not survive a fork: a
pool created before one notices the new pid and starts its own; the command
server calls :func:`stop` before forking so that it holds no threads.
"""

from __future__ import annotations

import os
import queue
import threading


class WorkerPool:
    """Daemon threads running submitted callables, in submission order per thread."""

    def __init__(self):
        self.pid = os.getpid()
        self.tasks = queue.SimpleQueue()
        self.threads: list[threading.Thread] = []

    def _loop(self):
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


def map_ordered(fn, items, threads: int) -> list:
    """``[fn(x) for x in items]`` on up to ``threads`` threads (this one included), results in order.

    For work that releases the GIL (NumPy on large arrays).  The first
    exception is raised once every started call has returned.
    """
    items = list(items)
    helpers = min(int(threads), len(items)) - 1
    if helpers <= 0:
        return [fn(x) for x in items]
    results = [None] * len(items)
    errors = []
    lock = threading.Lock()
    counter = iter(range(len(items)))
    done = queue.SimpleQueue()

    def take():
        with lock:
            return next(counter, None)

    def work():
        try:
            for i in iter(take, None):
                results[i] = fn(items[i])
        except BaseException as exc:  # noqa: BLE001 - raised by the caller
            errors.append(exc)
            with lock:  # the others stop taking work
                for _ in counter:
                    pass

    def helper():
        try:
            work()
        finally:
            done.put(None)

    p = pool()
    p.ensure(helpers)
    for _ in range(helpers):
        p.submit(helper)
    try:
        work()
    finally:
        for _ in range(helpers):
            done.get()
    if errors:
        raise errors[0]
    return results
