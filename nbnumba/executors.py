"""Where many independent renders run: in this process, or on a Dask cluster.

Scans and finite-difference gradients render many configurations that do
not depend on each other.  They hand the work to an :class:`Executor`, whose
one method, :meth:`Executor.map`, applies a function to a list of items and
returns the results in order.  The same function and items give the same
results whichever executor runs them.

* :class:`LocalExecutor` runs the items one after the other in this process
  (the CPU kernel already uses every core, so running renders side by side
  would only oversubscribe them).
* :class:`DaskExecutor` submits each item to a ``dask.distributed`` cluster;
  ``dask`` and ``distributed`` are optional dependencies
  (``pip install dask distributed``) imported only when one is created.

The function given to a Dask executor must be picklable: a module-level
function, or a :func:`functools.partial` of one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from .errors import ConfigError

__all__ = ["DaskExecutor", "Executor", "LocalExecutor", "make_executor"]

DASK_MISSING = (
    "the Dask executor needs dask.distributed, which is not installed "
    "(pip install dask distributed)"
)


class Executor:
    """Run a function over many items; subclasses decide where.

    Executors are context managers; leaving the ``with`` block releases
    whatever the executor started (a Dask client, for instance).
    """

    name = "executor"

    def map(self, fn: Callable, items: Iterable, shared=None) -> list:
        """Apply ``fn`` to every item.

        Parameters
        ----------
        fn : callable
            Function of one argument (two with ``shared``).
        items : iterable
            Arguments, one call each.
        shared : object, optional
            One read-only object every call receives as ``fn(item, shared)``
            (a structure-factor table, say): sent to each worker once, not
            with every item.

        Returns
        -------
        list
            ``[fn(item) for item in items]`` (or ``fn(item, shared)``), in
            the order of ``items``.
        """
        raise NotImplementedError

    def close(self) -> None:
        """Release resources (nothing to do by default)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class LocalExecutor(Executor):
    """Run items sequentially in this process.

    Examples
    --------
    >>> LocalExecutor().map(abs, [-1, 2, -3])
    [1, 2, 3]
    """

    name = "local"

    def map(self, fn: Callable, items: Iterable, shared=None) -> list:
        if shared is None:
            return [fn(item) for item in items]
        return [fn(item, shared) for item in items]


class DaskExecutor(Executor):
    """Submit items to a ``dask.distributed`` cluster.

    Parameters
    ----------
    address : str or distributed.Client, optional
        Scheduler address (``tcp://host:8786``), an existing client (used
        as is, never closed here), or None to start a local cluster of
        worker processes that is shut down by :meth:`close`.
    **cluster_kwargs
        With ``address=None``: arguments of ``distributed.LocalCluster``
        (``n_workers``, ``threads_per_worker``, ...).  The default is one
        thread per worker, because each render is itself multithreaded.

    Raises
    ------
    ConfigError
        If ``dask.distributed`` is not installed.

    Notes
    -----
    Workers import nbnumba and compile (or load from numba's cache) the
    kernel the first time they render.  Files that a function writes land on
    the worker's file system: with a remote cluster, use a shared folder.
    """

    name = "dask"

    def __init__(self, address=None, **cluster_kwargs):
        try:
            import distributed
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ConfigError(DASK_MISSING) from exc
        self._owned = False
        self._shared: dict = {}  # id -> (object, its scattered future)
        if isinstance(address, distributed.Client):
            self.client = address
        elif address is None:
            cluster_kwargs.setdefault("threads_per_worker", 1)
            cluster_kwargs.setdefault("processes", True)
            cluster_kwargs.setdefault("dashboard_address", ":0")  # any free port
            self.client = distributed.Client(**cluster_kwargs)
            self._owned = True
        else:
            self.client = distributed.Client(str(address))
            self._owned = True

    def map(self, fn: Callable, items: Iterable, shared=None) -> list:
        items = list(items)
        if not items:
            return []
        if shared is None:
            futures = self.client.map(fn, items, pure=False)
        else:
            handle = self._scattered(shared)
            futures = self.client.map(fn, items, [handle] * len(items), pure=False)
        return self.client.gather(futures)

    def _scattered(self, obj):
        """A future of ``obj`` held by every worker, scattered once per object and executor."""
        key = id(obj)
        held = self._shared.get(key)
        if held is None or held[0] is not obj:
            held = self._shared[key] = (obj, self.client.scatter(obj, broadcast=True, hash=False))
        return held[1]

    def close(self) -> None:
        self._shared.clear()
        if self._owned and self.client is not None:
            cluster = getattr(self.client, "cluster", None)
            self.client.close()
            if cluster is not None:
                cluster.close()
            self.client = None

    def __repr__(self) -> str:
        return f"DaskExecutor({self.client!r})"


def make_executor(dask: str | None = None) -> Executor:
    """An executor from a command-line choice.

    Parameters
    ----------
    dask : str, optional
        None: :class:`LocalExecutor`; ``"local"``: a :class:`DaskExecutor`
        on a new local cluster; anything else: a scheduler address.

    Returns
    -------
    Executor
    """
    if dask is None:
        return LocalExecutor()
    if dask == "local":
        return DaskExecutor(None)
    return DaskExecutor(dask)
