"""Tile lists of Gaussians in index order, each list then sorted by depth on its own:
display frames of scenes where a Gaussian reaches few tiles bin this way.

The depth-order path (cpu.py's `_bin`) sorts every visible Gaussian and moves its 64-byte
record into depth order before binning. Here the records stay in index order: the fill
writes each pair as one uint64, (depth key << 32) | index, and every tile's list is
sorted where it lies, in cache, by a stable radix sort on the key. Ties keep index order,
so the lists are those of the depth-order path with indices for ranks, and the images
are the same. The sort's work grows with the pairs rather than the Gaussians: it wins
where the pairs per Gaussian are few (a scene seen whole: 1.6 a Gaussian) and loses
where they are many (a camera inside a scene: 6), see :func:`pays`.
"""

from __future__ import annotations

import numpy as np

from render.jit import njit
from render.rasterize.cpu_kernels import _JIT, Bins, chunk_range, count_tiles, fill_one
from render.rasterize.cpu_sort import SCRATCH
from render.rasterize.cpu_threads import next_chunk

# The box tiles per Gaussian (a bound on its pairs) under which the tile sort pays: on
# two threads it costs ~3.5 ns a pair, the depth sort and the records' move ~16 ns a
# Gaussian (the 1.2 M scene binned at 3.95 box tiles a Gaussian in 19.5 ms against 20.8,
# at 8.1 in 27.3 against 26.1).
MAX_TILES_PER_GAUSSIAN = 4.0
_INSERTION = 32  # lists up to this long: an insertion sort
_DIGIT = np.uint64(8)  # radix digit width (bits): 256 buckets stay in L1 beside a list
_BUCKETS = 256
_KEY = np.uint64(32)  # the depth key's place in a pair
_INDEX = np.uint64(0xFFFFFFFF)


def pays(box_tiles: int, n_gaussians: int) -> bool:
    """Whether to bin a display frame by tile sorts, from the tiles its boxes cover."""
    return box_tiles <= MAX_TILES_PER_GAUSSIAN * n_gaussians


@njit(**_JIT)
def _fill_keyed(box, row_start, band, tiles_x, cursor, keys, pairs, ticket, n_chunks):
    """As cpu_kernels._fill_tiles for Gaussians in index order, each pair written as the
    uint64 (keys[i] << 32) | i (keys [M] uint32; pairs [P] uint64)."""
    chunk = next_chunk(ticket)
    while chunk < n_chunks:
        i0, i1 = chunk_range(box.shape[0], chunk, n_chunks)
        cur = cursor[chunk]
        bf = band.reshape(-1)
        for i in range(i0, i1):
            u = np.uint64(i)
            fill_one(u, (np.uint64(keys[u]) << _KEY) | u, box, row_start, bf, tiles_x, cur,
                     pairs)
        chunk = next_chunk(ticket)


@njit(inline="always", **_JIT)
def _insertion_sort(pairs, s0, s1):
    """Sort pairs[s0:s1] in place (stable for equal keys: the index breaks the tie)."""
    for i in range(s0 + 1, s1):
        p = pairs[i]
        j = i - 1
        while j >= s0 and pairs[j] > p:
            pairs[j + 1] = pairs[j]
            j -= 1
        pairs[j + 1] = p


@njit(inline="always", **_JIT)
def _radix_sort_keys(src, dst, hist):
    """Sort src [n] uint64 by its upper 32 bits, stably (LSD, _DIGIT bits a pass; a
    pass in which every pair has the same digit is skipped), with dst [n] as scratch.
    Returns whichever of the two holds the result."""
    n = src.shape[0]
    mask = np.uint64(_BUCKETS - 1)
    for p in range(4):
        shift = _KEY + np.uint64(p) * _DIGIT
        hist[:] = 0
        for i in range(n):
            hist[(src[i] >> shift) & mask] += 1
        if hist[(src[0] >> shift) & mask] == n:
            continue
        total = 0
        for b in range(_BUCKETS):
            c = hist[b]
            hist[b] = total
            total += c
        for i in range(n):
            v = src[i]
            d = (v >> shift) & mask
            dst[hist[d]] = v
            hist[d] += 1
        src, dst = dst, src
    return src


@njit(**_JIT)
def _sort_tiles(tile_start, keyed, pairs, ticket, n_chunks):
    """Sort each tile's list of keyed [P] uint64 by depth and write its indices to pairs
    [P] int32."""
    scratch = np.empty(1024, np.uint64)
    hist = np.empty(_BUCKETS, np.int64)
    chunk = next_chunk(ticket)
    while chunk < n_chunks:
        t0, t1 = chunk_range(tile_start.shape[0] - 1, chunk, n_chunks)
        for t in range(t0, t1):
            s0, s1 = tile_start[t], tile_start[t + 1]
            n = s1 - s0
            if n <= _INSERTION:
                _insertion_sort(keyed, s0, s1)
                done = keyed[s0:s1]
            else:
                if n > scratch.shape[0]:
                    scratch = np.empty(2 * n, np.uint64)
                done = _radix_sort_keys(keyed[s0:s1], scratch[:n], hist)
            for i in range(n):
                pairs[s0 + i] = np.int32(done[i] & _INDEX)
        chunk = next_chunk(ticket)


def bin_tile_sorted(rec, box, n_rows, keys, tiles_x, tiles_y, n_chunks, tile_chunks,
                    run_chunks) -> Bins:
    """Per-tile front-to-back lists of indices into rec [M, REC_COLS] / box [M, 4] (index
    order; n_rows [M], keys [M] uint32 depth keys): the same lists as
    cpu_kernels.bin_tiles gives for the records in depth order, with indices for ranks.
    The pairs live in this thread's scratch buffers (valid until its next frame)."""
    row_start, band, tile_start, cursor = count_tiles(rec, box, n_rows, tiles_x, tiles_y,
                                                      n_chunks, run_chunks, SCRATCH)
    n_pairs = int(tile_start[-1])
    keyed = SCRATCH.get("keyed", n_pairs, (), np.uint64)
    run_chunks(_fill_keyed, n_chunks, box, row_start, band, tiles_x, cursor, keys, keyed)
    pairs = SCRATCH.get("pairs", n_pairs, (), np.int32)
    run_chunks(_sort_tiles, tile_chunks, tile_start, keyed, pairs)
    return Bins(tile_start, pairs)
