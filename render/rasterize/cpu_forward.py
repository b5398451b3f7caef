"""The classic forward blending of the cpu backend (numba), on 4 x 4 pixel blocks.

Tiles, lists and records are cpu_kernels' (TILE x TILE pixels, front-to-back lists of
ranks). Within a tile the pixel state is laid out by blocks of 4 x 4 pixels, 16 slots
each (one 512-bit vector of float32 with AVX-512): for each Gaussian of the tile's list,
each block of its box with live pixels is evaluated whole, branch-free. Most splats of a
large scene seen whole cover a few pixels: on the 1.2 M-Gaussian scene outside at 1280 x
720 their boxes meet 6.1 M blocks against 8.7 M tile rows (the layout the backward
keeps, cpu_kernels). The per-pixel arithmetic is the row layout's.
"""

from __future__ import annotations

import numpy as np

from render.jit import njit
from render.rasterize.cpu_kernels import (
    _JIT,
    C_ALPHA_MAX,
    C_ALPHA_MIN,
    C_T_MIN,
    CA,
    CB,
    CBL,
    CC,
    CG,
    CR,
    DZ,
    F_B,
    F_FIELDS,
    F_G,
    F_LAST,
    F_N,
    F_R,
    F_T,
    F_Z,
    LIVE_EVERY,
    MX,
    MY,
    OP,
    PREFETCH_AHEAD,
    QN,
    TILE,
    _bgra8,
    _exp_consts,
    _exp_neg,
    _prefetch_row,
    _tile_box,
    chunk_range,
)
from render.rasterize.cpu_threads import next_chunk

BLOCK = 4
BLOCKS = TILE // BLOCK  # per tile row and column
LANES = BLOCK * BLOCK
# Pairs between recounts of the blocks' live pixels: a recount reads the whole tile
# (16 blocks, each a horizontal sum), twice the work of the row layout's per row, so it
# runs half as often (measured, one thread, the 1.2 M scene at 1280 x 720: 80 -> 72 ms
# outside, 97 -> 80 ms inside, against every LIVE_EVERY = 8 pairs).
LIVE_EVERY_BLOCKS = 2 * LIVE_EVERY
# Slot of tile pixel (ly, lx): its block's 16 slots, then its place in the block (row-major).
_SLOT = np.array([((ly // BLOCK) * BLOCKS + lx // BLOCK) * LANES + (ly % BLOCK) * BLOCK
                  + lx % BLOCK for ly in range(TILE) for lx in range(TILE)], np.uint64)
# A slot's pixel column and row in the tile, as float32 (exact; int64 -> float would make
# LLVM size the vectors for 64-bit lanes).
_SLOT_X = np.zeros(QN, np.float32)
_SLOT_Y = np.zeros(QN, np.float32)
_SLOT_X[_SLOT] = np.tile(np.arange(TILE), TILE)
_SLOT_Y[_SLOT] = np.repeat(np.arange(TILE), TILE)


@njit(inline="always", **_JIT)
def _blend_block(st, base, dx0, ty0f, my, ha, b, hc, o, gr, gg, gb, gz, kf, kf1, ec, amax,
                 amin, tmin, extras, display):
    """Blend one Gaussian into the block of pixels st[.. + base + j]; with `extras` (a
    compile-time constant) also the depth sums and the count of Gaussians blended. With
    `display` (one too) the pixels' last entries, which only the backward reads, are
    left as they are (~10 % of the loop)."""
    zero = ec[0]
    one = ec[13]
    for j in range(LANES):
        q = base + np.uint64(j)
        dx = dx0 + _SLOT_X[q]
        dy = ty0f + _SLOT_Y[q] + np.float32(0.5) - my
        sigma = ha * dx * dx + (b * dy) * dx + (hc * dy) * dy
        alpha = min(amax, o * _exp_neg(sigma, ec))
        # Load everything first: selects between loaded values vectorise, branches
        # around loads do not.
        t_now = st[F_T + q]
        last = zero if display else st[F_LAST + q]
        # t_now <= 0: the pixel stopped (or is padding).
        ok = (sigma >= zero) & (alpha >= amin) & (t_now > zero)
        t_next = t_now * (one - alpha)
        stop = ok & (t_next <= tmin)
        blend = ok & (t_next > tmin)
        w = alpha * t_now if blend else zero
        st[F_R + q] += w * gr
        st[F_G + q] += w * gg
        st[F_B + q] += w * gb
        if extras:
            st[F_Z + q] += w * gz
            st[F_N + q] += one if blend else zero
        t_keep = -t_now if stop else t_now
        st[F_T + q] = t_next if blend else t_keep
        if not display:
            last = kf1 if blend else last
            st[F_LAST + q] = kf if stop else last


@njit(inline="always", **_JIT)
def _live_blocks(st, block_live):
    """Recount the live pixels of each block (T > 0) into block_live [BLOCKS^2]; returns
    the tile's total."""
    total = 0
    for k in range(BLOCKS * BLOCKS):
        cnt = np.float32(0.0)
        for j in range(LANES):
            cnt += np.float32(1.0) if st[F_T + np.uint64(k * LANES + j)] > 0.0 else \
                np.float32(0.0)
        block_live[k] = np.int64(cnt)
        total += np.int64(cnt)
    return total


@njit(inline="always", **_JIT)
def _forward_tiles(rec, box, tile_start, pairs, width, height, tiles_x, background, kc,
                   out_rgb, out_alpha, out_depth, out_T, out_last, tile_blended, out_bgra32,
                   ticket, n_chunks, extras, display):
    """Blend every tile front to back.

    kc is CONSTS. Writes out_rgb [H, W, 3] (over the background), out_alpha [H, W],
    out_T [H, W] final transmittance, out_last [H, W] how many entries of the tile list
    the pixel went through (the Gaussian that terminated it excluded), and with `extras`
    (a compile-time constant, see :func:`forward`) out_depth [H, W], the expected depth,
    and tile_blended [T], the pairs blended per tile. With `display` (a compile-time
    constant, see :func:`forward_bgra8`) it writes none of those but out_bgra32 alone.
    """
    ec = _exp_consts(kc)
    amax, amin, tmin = kc[C_ALPHA_MAX], kc[C_ALPHA_MIN], kc[C_T_MIN]
    block_live = np.zeros(BLOCKS * BLOCKS, np.int64)
    chunk = next_chunk(ticket)
    while chunk < n_chunks:
        t_lo, t_hi = chunk_range(tile_start.shape[0] - 1, chunk, n_chunks)
        for t in range(t_lo, t_hi):
            tx0, ty0, tw, th = _tile_box(t, tiles_x, width, height)
            if display and tile_start[t] == tile_start[t + 1]:
                _fill_tile(out_bgra32, tx0, ty0, tw, th, height, background)
                continue
            st = np.zeros(F_FIELDS * QN, np.float32)
            for ly in range(th):
                for lx in range(tw):
                    st[F_T + _SLOT[ly * TILE + lx]] = 1.0
            _live_blocks(st, block_live)
            ty0f = np.float32(ty0)
            s0 = tile_start[t]
            s1 = tile_start[t + 1]
            for k in range(s0, s1):
                if k > s0 and (k - s0) % LIVE_EVERY_BLOCKS == 0:
                    if _live_blocks(st, block_live) == 0:
                        break
                if k + PREFETCH_AHEAD < s1:
                    ahead = np.intp(pairs[k + PREFETCH_AHEAD])
                    _prefetch_row(rec, ahead)
                    _prefetch_row(box, ahead)
                r = pairs[k]
                mx, my = rec[r, MX], rec[r, MY]
                a, b, c, o = rec[r, CA], rec[r, CB], rec[r, CC], rec[r, OP]
                ha, hc = np.float32(0.5) * a, np.float32(0.5) * c
                gr, gg, gb, gz = rec[r, CR], rec[r, CG], rec[r, CBL], rec[r, DZ]
                kf = np.float32(k - s0)
                kf1 = kf + np.float32(1.0)
                xa = (max(box[r, 0], tx0) - tx0) // BLOCK
                xb = (min(box[r, 1], tx0 + tw - 1) - tx0) // BLOCK
                ya = (max(box[r, 2], ty0) - ty0) // BLOCK
                yb = (min(box[r, 3], ty0 + th - 1) - ty0) // BLOCK
                dx0 = np.float32(tx0) + np.float32(0.5) - mx
                for by in range(ya, yb + 1):
                    for bx in range(xa, xb + 1):
                        blk = by * BLOCKS + bx
                        if block_live[blk] == 0:
                            continue
                        _blend_block(st, np.uint64(blk * LANES), dx0, ty0f, my, ha, b, hc, o,
                                     gr, gg, gb, gz, kf, kf1, ec, amax, amin, tmin, extras,
                                     display)
            if display:
                _pack_tile(st, out_bgra32, tx0, ty0, tw, th, height, background)
                continue
            blended = 0
            for ly in range(th):
                for lx in range(tw):
                    q = _SLOT[ly * TILE + lx]
                    y, x = ty0 + ly, tx0 + lx
                    T = abs(st[F_T + q])
                    a_px = np.float32(1.0) - T
                    out_rgb[y, x, 0] = st[F_R + q] + T * background[0]
                    out_rgb[y, x, 1] = st[F_G + q] + T * background[1]
                    out_rgb[y, x, 2] = st[F_B + q] + T * background[2]
                    out_alpha[y, x] = a_px
                    out_T[y, x] = T
                    out_last[y, x] = np.int32(st[F_LAST + q])
                    if extras:
                        blended += np.int64(st[F_N + q])
                        out_depth[y, x] = st[F_Z + q] / max(a_px, np.float32(1e-10))
            if extras:
                tile_blended[t] = blended
        chunk = next_chunk(ticket)


@njit(inline="always", **_JIT)
def _pack_tile(st, out_bgra32, tx0, ty0, tw, th, height, background):
    """A blended tile's colour over the background as opaque BGRA8 into out_bgra32
    [H, W] uint32 (bytes B, G, R, A in memory on a little-endian CPU), rows upside down
    (GL's order), rounded and clamped as viewer.frames.pack_bgra8."""
    b0, b1, b2 = background[0], background[1], background[2]
    for ly in range(th):
        dst = out_bgra32[height - 1 - ty0 - ly]
        for lx in range(tw):
            q = _SLOT[ly * TILE + lx]
            T = abs(st[F_T + q])
            dst[tx0 + lx] = _bgra8(st[F_R + q] + T * b0, st[F_G + q] + T * b1,
                                   st[F_B + q] + T * b2)


@njit(inline="always", **_JIT)
def _fill_tile(out_bgra32, tx0, ty0, tw, th, height, background):
    """An empty tile: the background alone, as :func:`_pack_tile` would write it."""
    px = _bgra8(background[0], background[1], background[2])
    for ly in range(th):
        out_bgra32[height - 1 - ty0 - ly, tx0:tx0 + tw] = px


@njit(**_JIT)
def forward(rec, box, tile_start, pairs, width, height, tiles_x, background, kc, out_rgb,
            out_alpha, out_depth, out_T, out_last, tile_blended, ticket, n_chunks):
    """:func:`_forward_tiles` for colour alone (the depth and the blended count were ~5 %
    of its per-pixel work; out_depth and tile_blended are left as they are)."""
    _forward_tiles(rec, box, tile_start, pairs, width, height, tiles_x, background, kc,
                   out_rgb, out_alpha, out_depth, out_T, out_last, tile_blended,
                   np.empty((0, 0), np.uint32), ticket, n_chunks, False, False)


@njit(**_JIT)
def forward_extras(rec, box, tile_start, pairs, width, height, tiles_x, background, kc,
                   out_rgb, out_alpha, out_depth, out_T, out_last, tile_blended, ticket,
                   n_chunks):
    """:func:`_forward_tiles` with the expected depth and the count of pairs blended."""
    _forward_tiles(rec, box, tile_start, pairs, width, height, tiles_x, background, kc,
                   out_rgb, out_alpha, out_depth, out_T, out_last, tile_blended,
                   np.empty((0, 0), np.uint32), ticket, n_chunks, True, False)


@njit(**_JIT)
def forward_bgra8(rec, box, tile_start, pairs, width, height, tiles_x, background, kc,
                  out_bgra32, ticket, n_chunks):
    """:func:`_forward_tiles` for a display: the colour as BGRA8 alone, out_bgra32 [H, W]
    uint32 (see :func:`_pack_tile`). Without the float images, which nothing on screen
    reads, a 640 x 480 frame of the demo took one thread ~17 ms against ~22 (writing
    those [H, W, 3] and [H, W] arrays is most of the difference)."""
    f2, i2 = np.empty((0, 0), np.float32), np.empty((0, 0), np.int32)
    _forward_tiles(rec, box, tile_start, pairs, width, height, tiles_x, background, kc,
                   np.empty((0, 0, 3), np.float32), f2, f2, f2, i2, np.empty(0, np.int64),
                   out_bgra32, ticket, n_chunks, False, True)
