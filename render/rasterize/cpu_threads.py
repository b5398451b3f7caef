"""Running the nogil numba kernels of the cpu backend on several threads.

The kernels are plain `@njit(nogil=True)` functions that take a (chunk, n_chunks) pair
and do their share of the work; this module runs the shares on a small pool of Python
threads. Why not numba's `parallel=True`: on a machine whose few cores are shared, the
OpenMP pools of numba and of torch spin-wait after every parallel region and steal
each other's cycles (measured: ~70 % more CPU time for the same render), the first
parallel call pays for starting the threading layer, and numba's lock-free `workqueue`
layer may not be entered from two threads at once (the viewer and a fine-tuning job
may well render at the same time). Releasing the GIL in the kernels gives the same
parallelism without any of that.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def _forget_pool_after_fork() -> None:
    # A forked child has none of the parent's threads: start a fresh pool when needed.
    global _pool, _lock
    _pool = None
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)


def num_threads() -> int:
    """Worker count: $MIPVIEW_CPU_THREADS, else the CPUs this process may use."""
    env = os.environ.get("MIPVIEW_CPU_THREADS")
    if env:
        return max(1, int(env))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def chunk_count(per_thread: int) -> int:
    """How many chunks to cut a kernel's work into: `per_thread` for every thread (see
    run_chunks: the spare chunks are what a thread that is ahead takes over), one when
    there is a single thread."""
    threads = num_threads()
    return 1 if threads == 1 else per_thread * threads


def _get_pool() -> ThreadPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=num_threads(),
                                       thread_name_prefix="mipview-raster")
        return _pool


def run_chunks(kernel: Callable, n_chunks: int, *args) -> None:
    """Call kernel(*args, chunk, n_chunks) for every chunk, and wait.

    The calling thread and num_threads() - 1 pool threads take chunks in turn from one
    shared queue until none are left: a thread held up by another program, or by the
    viewer's UI (shared cores), leaves its share to the others instead of holding the
    whole call up, as a fixed split did. Which thread runs a chunk does not change what
    the chunk writes, so results stay deterministic. Any exception of any chunk is
    raised here, after every thread has stopped.
    """
    helpers = min(num_threads(), n_chunks) - 1
    if helpers <= 0:
        for c in range(n_chunks):
            kernel(*args, c, n_chunks)
        return
    chunks = iter(range(n_chunks))  # next() on it is one atomic step under the GIL

    def take() -> None:
        for c in chunks:
            kernel(*args, c, n_chunks)

    pool = _get_pool()
    futures = [pool.submit(take) for _ in range(helpers)]
    try:
        take()
    finally:
        for f in futures:
            exc = f.exception()  # waits
            if exc is not None:
                raise exc
