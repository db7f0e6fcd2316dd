"""The helper threads shared by the native kernel and the statistics (nbnumba/_threads.py)."""

from __future__ import annotations

import threading
import time

import pytest

from nbnumba import _threads


def test_results_in_order_and_progress_in_the_calling_thread():
    seen = []
    caller = threading.get_ident()

    def on_done(i):
        assert threading.get_ident() == caller
        seen.append(i)

    out = _threads.run_chunks(lambda i: (time.sleep(0.001 * (i % 3)), i * i)[1], 40, 3, on_done=on_done)
    assert out == [i * i for i in range(40)]
    assert sorted(seen) == list(range(40))
    assert _threads.map_ordered(lambda x: x + 1, range(7), 4) == list(range(1, 8))


def test_a_helpers_error_is_raised_after_every_helper_stopped():
    running = []

    def fn(i):
        running.append(i)
        try:
            if i == 5:
                raise ValueError("chunk 5")
            time.sleep(0.01)
        finally:
            running.remove(i)

    with pytest.raises(ValueError, match="chunk 5"):
        _threads.run_chunks(fn, 60, 3)
    assert running == []


def test_an_interrupt_leaves_no_helper_writing():
    """Ctrl-C in the calling thread: the call raises only once no helper runs, and none starts later."""
    calls = []
    active = []

    def fn(i):
        calls.append(i)
        active.append(i)
        try:
            if threading.current_thread() is threading.main_thread() and len(calls) > 2:
                raise KeyboardInterrupt
            time.sleep(0.05)
        finally:
            active.remove(i)

    with pytest.raises(KeyboardInterrupt):
        _threads.run_chunks(fn, 200, 4)
    assert active == []
    n = len(calls)
    time.sleep(0.2)
    assert len(calls) == n < 200  # nothing ran after the call ended


def test_a_stale_helper_does_nothing():
    """A helper queued behind other work starts after its call ended: it must not touch anything."""
    pool = _threads.pool()
    pool.ensure(1)
    gate = threading.Event()
    pool.submit(gate.wait)  # keep the only helper busy
    try:
        touched = []
        out = _threads.run_chunks(lambda i: touched.append(i) or i, 5, 2)  # the calling thread does it all
        assert out == list(range(5))
    finally:
        gate.set()
    time.sleep(0.05)
    assert sorted(touched) == list(range(5))


def test_exceptions_from_signal_handlers_wait_for_the_helpers():
    """A signal handler raising (here SystemExit, every 50 ms) while the call waits for a helper: the call
    raises only once the helper's chunk returned (its output buffer may be freed right after)."""
    import signal

    ended = []

    def fn(i):
        if threading.current_thread() is not threading.main_thread():
            time.sleep(0.5)
            ended.append(time.monotonic())
        else:
            time.sleep(0.02)  # so that the helper takes the other chunk
        return i

    def handler(signum, frame):
        raise SystemExit(3)

    old = signal.signal(signal.SIGALRM, handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.1, 0.05)
        with pytest.raises(SystemExit):
            _threads.run_chunks(fn, 2, 2)
        raised = time.monotonic()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        signal.signal(signal.SIGALRM, old)
    assert ended and ended[0] <= raised


def test_image_passes_use_a_few_threads():
    assert _threads.pass_threads(1) == 1
    assert _threads.pass_threads(64) == _threads.PASS_THREADS
    assert 1 <= _threads.pass_threads() <= _threads.PASS_THREADS
