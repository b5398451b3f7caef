"""Running the nogil numba kernels of the cpu backend on several threads.

The kernels are plain `@njit(nogil=True)` functions cut into n_chunks chunks of work;
this module runs one call of a kernel on each thread of a small pool of Python threads,
and the calls share the chunks out among themselves (:func:`next_chunk`) without the
GIL. Why not numba's `parallel=True`: on a machine whose few cores are shared, the
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

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from render.jit import njit

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


# Chunks per thread (see run_chunks). Tiles differ most in cost (the busy part of the
# image), so tile loops get more; the per-Gaussian loops are even, and the binning runs
# of their chunks (cpu_kernels.bin_tiles) grow with their count.
TILE_CHUNKS, GAUSSIAN_CHUNKS = 6, 3


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


@intrinsic
def _fetch_add_one(typingctx, counter):
    """counter[0] += 1 as one atomic step (int64 array); the value before."""
    if not (isinstance(counter, types.Array) and counter.dtype == types.int64):
        return None
    sig = types.int64(counter)

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, signature.args[0], ary,
                                       [context.get_constant(types.intp, 0)])
        return builder.atomic_rmw("add", ptr, ir.Constant(ir.IntType(64), 1), "monotonic")

    return sig, codegen


@njit(inline="always", nogil=True, cache=True)
def next_chunk(ticket):
    """The next chunk for the calling thread to do: ticket [1] int64 counts the chunks
    handed out so far (atomically, so that any number of threads may draw from one
    ticket); every chunk from n_chunks on means that none are left. A kernel runs

        chunk = next_chunk(ticket)
        while chunk < n_chunks:
            ...  # its share number `chunk`
            chunk = next_chunk(ticket)

    (Inlined into the kernels of cpu_kernels and cpu_project: numba's cache does not see
    edits here from there.)
    """
    return _fetch_add_one(ticket)


def run_chunks(kernel: Callable, n_chunks: int, *args) -> None:
    """Call kernel(*args, ticket, n_chunks) on the calling thread and on num_threads() - 1
    pool threads at once, and wait: the calls draw the chunks from one ticket
    (:func:`next_chunk`) until none are left.

    A thread held up by another program, or by the viewer's UI (shared cores), leaves
    its chunks to the others instead of holding the whole call up, as a fixed split did.
    Taking a chunk needs no GIL: with the chunks handed out by Python, every thread went
    back for the GIL between two chunks and waited there for as long as another thread
    ran Python, as the viewer's UI does (measured on 2 cores, the demo at 640 x 480 with
    a thread running Python 3.5 ms in every 24, medians of 4 runs: renders 17 % slower
    that way, 8 % this way). Which thread runs a chunk does not change what the chunk writes, so
    results stay deterministic. Any exception of any call is raised here, after every
    thread has stopped.
    """
    ticket = np.zeros(1, np.int64)
    helpers = min(num_threads(), n_chunks) - 1
    if helpers <= 0:
        kernel(*args, ticket, n_chunks)
        return
    pool = _get_pool()
    futures = [pool.submit(kernel, *args, ticket, n_chunks) for _ in range(helpers)]
    try:
        kernel(*args, ticket, n_chunks)
    finally:
        for f in futures:
            exc = f.exception()  # waits
            if exc is not None:
                raise exc
