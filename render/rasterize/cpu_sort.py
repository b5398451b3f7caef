"""The depth order of the cpu backend: a stable LSD radix sort of 32-bit keys on the
rasterizer's threads (see :mod:`render.rasterize.cpu_threads`), and the scratch buffers
that the per-Gaussian stages reuse from frame to frame.

Why our own sort: numpy's sort runs on one thread (65 ms a frame for 1.2 M depths, a
fifth of the frame); three 11-bit passes over (key, index) pairs, each cut into chunks
that the threads share, take a few ms. The sort is stable and the input comes in index
order, so equal depths keep index order: the same order as numpy's stable argsort.
"""

from __future__ import annotations

import threading
import weakref

import numpy as np

from render.jit import njit
from render.rasterize.cpu_kernels import chunk_range
from render.rasterize.cpu_threads import next_chunk

RADIX_BITS = 11
BUCKETS = 1 << RADIX_BITS
PASSES = 3  # 3 x 11 bits cover the 32-bit keys

_JIT = {"nogil": True, "cache": True, "error_model": "numpy"}


@njit(**_JIT)
def _histogram(keys, shift, hist, ticket, n_chunks):
    """hist[chunk, digit]: how many keys of the chunk's run have that digit at `shift`.
    keys [M] uint32, hist [n_chunks, BUCKETS] int64."""
    mask = np.uint32(BUCKETS - 1)
    sh = np.uint32(shift)
    chunk = next_chunk(ticket)
    while chunk < n_chunks:
        i0, i1 = chunk_range(keys.shape[0], chunk, n_chunks)
        for b in range(BUCKETS):
            hist[chunk, b] = 0
        for i in range(i0, i1):
            hist[chunk, (keys[i] >> sh) & mask] += 1
        chunk = next_chunk(ticket)


@njit(**_JIT)
def _scatter(keys, vals, shift, start, keys_out, vals_out, ticket, n_chunks):
    """Move the chunk's (key, value) pairs to their places for this digit, in order:
    start[chunk, digit] is the chunk's first slot for that digit (advanced in place)."""
    mask = np.uint32(BUCKETS - 1)
    sh = np.uint32(shift)
    chunk = next_chunk(ticket)
    while chunk < n_chunks:
        i0, i1 = chunk_range(keys.shape[0], chunk, n_chunks)
        for i in range(i0, i1):
            k = keys[i]
            d = (k >> sh) & mask
            p = start[chunk, d]
            keys_out[p] = k
            vals_out[p] = vals[i]
            start[chunk, d] = p + 1
        chunk = next_chunk(ticket)


def radix_sort_pairs(keys: np.ndarray, vals: np.ndarray, keys_tmp: np.ndarray,
                     vals_tmp: np.ndarray, n_chunks: int, run_chunks) -> np.ndarray:
    """Sort (key, value) pairs by key, stably: keys [M] uint32, vals [M] int32, and two
    scratch arrays of the same shapes; all four are overwritten. Returns the sorted
    values (one of `vals` and `vals_tmp`)."""
    m = keys.shape[0]
    n_chunks = max(1, min(n_chunks, m // 4096 + 1))  # small inputs: fewer, larger chunks
    hist = np.empty((n_chunks, BUCKETS), np.int64)
    src_k, src_v, dst_k, dst_v = keys, vals, keys_tmp, vals_tmp
    for p in range(PASSES):
        shift = p * RADIX_BITS
        run_chunks(_histogram, n_chunks, src_k, shift, hist)
        if int(hist.sum(axis=0).max(initial=0)) == m:
            continue  # one digit for all: this pass would not move anything
        # Slots digit-major, chunk-minor: chunk c's keys with digit d follow those of the
        # chunks before it (stability across chunks).
        flat = hist.T.ravel()
        start = (np.cumsum(flat) - flat).reshape(BUCKETS, n_chunks).T.copy()
        run_chunks(_scatter, n_chunks, src_k, src_v, shift, start, dst_k, dst_v)
        src_k, src_v, dst_k, dst_v = dst_k, dst_v, src_k, src_v
    return src_v


HANDOUT_RING = 3  # handed-out buffers kept per name (see Scratch.unshared)


class Scratch(threading.local):
    """Per-thread buffers that grow to the largest frame seen and are reused: allocating
    tens of MB a frame costs a page fault per 4 kB touched (the viewer and a fine-tuning
    job may render at once, hence one set per thread)."""

    def __init__(self):
        self.buffers: dict[str, np.ndarray] = {}
        self.handed: dict[str, list[list]] = {}  # name -> [[flat buffer, weakref], ...]

    def get(self, name: str, rows: int, tail: tuple[int, ...], dtype) -> np.ndarray:
        """A C-contiguous [rows, *tail] array of `dtype`, contents undefined."""
        buf = self.buffers.get(name)
        if buf is None or buf.shape[0] < rows or buf.shape[1:] != tail or buf.dtype != dtype:
            buf = aligned_empty((max(rows, 1), *tail), dtype)
            self.buffers[name] = buf
        return buf[:rows]

    def unshared(self, name: str, rows: int, tail: tuple[int, ...], dtype) -> np.ndarray:
        """As :meth:`get` for an array that the frame hands out (wrapped by
        torch.from_numpy, which keeps that very array alive while any tensor on it
        lives): from one of the last HANDOUT_RING buffers of that name whose last
        handed-out array is gone and that is large enough, else a new one. (A viewer
        holds the frame on screen while it draws the next, of a size that changes while
        the view moves.) Past malloc's mmap threshold (32 MiB under viewer.memory's
        tame_malloc: means2d of 4.2 M Gaussians) a fresh array faults in every page each
        frame: at 6 M, the projection took 30 ms against 24, a culled frame 20 ms
        against 13."""
        shape = (rows, *tail)
        size = int(np.prod(shape))
        ring = self.handed.setdefault(name, [])
        for slot in ring:
            flat, last = slot
            if flat.size >= size and flat.dtype == dtype and last() is None:
                out = flat[:size].reshape(shape)
                slot[1] = weakref.ref(out)
                return out
        flat = aligned_empty((max(size, 1),), dtype)
        out = flat[:size].reshape(shape)
        ring.insert(0, [flat, weakref.ref(out)])
        del ring[HANDOUT_RING:]
        return out


def aligned_empty(shape: tuple[int, ...], dtype, align: int = 64) -> np.ndarray:
    """np.empty whose data starts on an `align`-byte boundary: a 64-byte record row then
    sits in one cache line (malloc gives 16-byte alignment: most rows would span two)."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    raw = np.empty(nbytes + align, np.uint8)
    skip = -raw.ctypes.data % align
    return raw[skip:skip + nbytes].view(dtype).reshape(shape)


SCRATCH = Scratch()
