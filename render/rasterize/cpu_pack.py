"""Packing the visible Gaussians into the blending loop's records (numba kernels).

Per visible Gaussian one 64-byte row of `rec` (columns in :mod:`cpu_kernels`) holds what
the blending reads, and its pixel box: the region where alpha = o exp(-sigma) can reach
1/255, sigma <= log(255 o). :func:`prepare_keys` packs in index order with the depth
sort keys; :func:`permute_rows` then moves the rows into depth order. The loops are
branch-free and index with unsigned offsets so that LLVM vectorises them (8 Gaussians a
step with AVX-512; a libm call would keep them scalar, hence :func:`_log`).
"""

from __future__ import annotations

import math

import numpy as np

from render.jit import njit
from render.rasterize.cpu_kernels import (
    _JIT,
    ALPHA_MIN,
    BOX,
    CA,
    CB,
    CBL,
    CC,
    CG,
    CR,
    DZ,
    MX,
    MY,
    OP,
    REC_COLS,
    SMAX,
    TILE,
    _bits_f64,
    _bits_to_f32,
    _f64_bits,
    _prefetch_row,
    chunk_range,
)
from render.rasterize.cpu_threads import next_chunk

PERMUTE_AHEAD = 16  # ranks between a record's prefetch and its move (permute_rows)
_U1, _U2, _U3, _U4 = np.uint64(1), np.uint64(2), np.uint64(3), np.uint64(4)
_UREC = np.uint64(REC_COLS)
(_UMX, _UMY, _UCA, _UCB, _UCC, _UOP, _USMAX, _UCR, _UCG, _UCBL, _UDZ, _UBOX) = (
    np.uint64(c) for c in (MX, MY, CA, CB, CC, OP, SMAX, CR, CG, CBL, DZ, BOX))


@njit(inline="always", **_JIT)
def _log(x):
    """Natural log of a normal float64 x > 0, relative error < 1e-13, in inline arithmetic
    (libm's log is a call, which keeps a loop scalar). x = 2^e m with m in [sqrt(1/2),
    sqrt(2)), log m = 2 atanh(u), u = (m - 1) / (m + 1), |u| < 0.172: eight odd terms."""
    bits = _f64_bits(x)
    e = (bits >> 52) - 1023
    m = _bits_f64((bits & 0xFFFFFFFFFFFFF) | 0x3FF0000000000000)  # in [1, 2)
    big = m > 1.4142135623730951
    m = m * 0.5 if big else m
    e = e + 1 if big else e
    u = (m - 1.0) / (m + 1.0)
    u2 = u * u
    s = 1.0 + u2 * (1.0 / 3.0 + u2 * (1.0 / 5.0 + u2 * (1.0 / 7.0 + u2 * (1.0 / 9.0 + u2 * (
        1.0 / 11.0 + u2 * (1.0 / 13.0 + u2 * (1.0 / 15.0)))))))
    return np.float64(e) * 0.6931471805599453 + 2.0 * u * s


@njit(**_JIT)
def visible_mask(radii, visible, ticket, n_chunks):
    """visible [N] bool: both radii (flat [N * 2] int32) above 0, as Projection.visible."""
    chunk = next_chunk(ticket)
    while chunk < n_chunks:
        n0, n1 = chunk_range(visible.shape[0], chunk, n_chunks)
        for i in range(n0, n1):
            n = np.uint64(i)
            visible[n] = (radii[_U2 * n] > 0) & (radii[_U2 * n + _U1] > 0)
        chunk = next_chunk(ticket)


@njit(inline="always", **_JIT)
def depth_key(bits):
    """A uint32 that orders like the float32 whose bit pattern is `bits` (uint32) does in
    numpy's sort: -inf first, NaN last, -0.0 equal to 0.0. The sign bit is flipped for
    positive floats, all bits for negative ones. (Selects, no branches: it vectorises.)"""
    mag = bits & np.uint32(0x7FFFFFFF)
    key = ~bits if bits & np.uint32(0x80000000) else bits | np.uint32(0x80000000)
    key = np.uint32(0x80000000) if mag == np.uint32(0) else key  # -0.0 ties with 0.0
    return np.uint32(0xFFC00000) if mag > np.uint32(0x7F800000) else key  # NaN after +inf


@njit(inline="always", **_JIT)
def _lo(a, b):
    """min(a, b) as one select: in the packing loop numba's min and max stayed calls
    until after LLVM's vectoriser had given up on it."""
    return a if a < b else b


@njit(inline="always", **_JIT)
def _hi(a, b):
    """max(a, b), see :func:`_lo`."""
    return a if a > b else b


@njit(inline="always", **_JIT)
def _ceil(v):
    """ceil(v) for a float64 v in [-2^62, 2^62], without a libm call."""
    t = np.float64(np.int64(v))  # truncation: toward 0
    return t + 1.0 if t < v else t


@njit(inline="always", **_JIT)
def _floor(v):
    """floor(v), as :func:`_ceil`."""
    t = np.float64(np.int64(v))
    return t - 1.0 if t > v else t


@njit(inline="always", **_JIT)
def _pack(r, g, means2d, conics, opacities, colors, depths, width, height, rec):
    """Row r (uint64) of rec, flat [M * REC_COLS], from Gaussian g (uint64) of the flat
    per-Gaussian arrays (means2d [N * 2], conics [N * 3], ...); the box (x0, x1, y0, y1,
    inclusive, empty when x1 < x0) as the bits of int32s in the spare columns
    BOX..BOX+3 (one array written: two views of it would fail LLVM's overlap checks).
    Returns the rows of tiles the box spans (0 when empty)."""
    g2, g3, row = _U2 * g, _U3 * g, _UREC * r
    mx, my = means2d[g2], means2d[g2 + _U1]
    a, b, c = conics[g3], conics[g3 + _U1], conics[g3 + _U2]
    o = opacities[g]
    rec[row + _UMX] = mx
    rec[row + _UMY] = my
    rec[row + _UCA] = a
    rec[row + _UCB] = b
    rec[row + _UCC] = c
    rec[row + _UOP] = o
    rec[row + _UCR] = colors[g3]
    rec[row + _UCG] = colors[g3 + _U1]
    rec[row + _UCBL] = colors[g3 + _U2]
    rec[row + _UDZ] = depths[g]
    det = a * c - b * b
    # alpha = o exp(-sigma) >= 1/255 needs sigma <= log(255 o); nothing below 1/255.
    ok = (o >= ALPHA_MIN) & (det > 0.0) & (a > 0.0) & (c > 0.0) & (abs(mx) < 1e30) & (
        abs(my) < 1e30)
    smax = _log(_hi(o * 255.0, 1.0))
    rec[row + _USMAX] = smax if ok else -1.0
    # The ellipse sigma <= s spans sqrt(2 s Sigma_xx) in x; Sigma = conic^-1.
    # Widen a little so float rounding never drops a pixel the blend would keep.
    ex = math.sqrt(2.0 * smax * c / det) * 1.001 + 0.01 if ok else 0.0
    ey = math.sqrt(2.0 * smax * a / det) * 1.001 + 0.01 if ok else 0.0
    # Pixel x has its centre at x + 0.5. Clamped before rounding (integer bounds, so the
    # same box): no float too big for an int64 reaches the conversion.
    cx, cy = (mx if ok else 0.0), (my if ok else 0.0)
    fx0 = _hi(_ceil(_lo(_hi(cx - ex - 0.5, -1.0), width + 1.0)), 0.0)
    fx1 = _lo(_floor(_lo(_hi(cx + ex - 0.5, -1.0), width + 1.0)), width - 1.0)
    fy0 = _hi(_ceil(_lo(_hi(cy - ey - 0.5, -1.0), height + 1.0)), 0.0)
    fy1 = _lo(_floor(_lo(_hi(cy + ey - 0.5, -1.0), height + 1.0)), height - 1.0)
    inside = ok & (fx0 <= fx1) & (fy0 <= fy1)
    y0, y1 = np.int32(fy0), np.int32(fy1)
    rec[row + _UBOX] = _bits_to_f32(np.int32(fx0) if inside else np.int32(0))
    rec[row + _UBOX + _U1] = _bits_to_f32(np.int32(fx1) if inside else np.int32(-1))
    rec[row + _UBOX + _U2] = _bits_to_f32(y0 if inside else np.int32(0))
    rec[row + _UBOX + _U3] = _bits_to_f32(y1 if inside else np.int32(-1))
    return np.int64(y1 // TILE - y0 // TILE + 1) if inside else np.int64(0)


@njit(**_JIT)
def prepare(order, means2d, conics, opacities, colors, depths, width, height, rec, box,
            n_rows, ticket, n_chunks):
    """Pack the visible Gaussians in depth order and bound their alpha >= 1/255 region.

    order [M] int64 (original index of rank r), means2d [N, 2], conics [N, 3],
    opacities [N], colors [N, 3], depths [N] -> rec [M, REC_COLS], box [M, 4] int32,
    n_rows [M] int64: how many rows of tiles the box spans (0 when empty).
    A chunk is one contiguous run of ranks (see chunk_range). (The rasterizer packs in
    index order and sorts after, :func:`prepare_keys`; this is the plain form.)
    """
    m2, cn, cl = means2d.reshape(-1), conics.reshape(-1), colors.reshape(-1)
    rec_f, rec_i32 = rec.reshape(-1), rec.view(np.int32)
    chunk = next_chunk(ticket)
    while chunk < n_chunks:
        r0, r1 = chunk_range(order.shape[0], chunk, n_chunks)
        for r in range(r0, r1):
            n_rows[r] = _pack(np.uint64(r), np.uint64(order[r]), m2, cn, opacities, cl, depths,
                              width, height, rec_f)
            for k in range(4):
                box[r, k] = rec_i32[r, BOX + k]
        chunk = next_chunk(ticket)


# Visible Gaussians per staging block of prepare_keys.
STAGE = 64


@njit(**_JIT)
def prepare_keys(vis, means2d, conics, opacities, colors, depths, depth_bits, width, height,
                 rec, rec_i32, keys, idx, box, n_rows, box_tiles, ticket, n_chunks):
    """As :func:`prepare` for the visible Gaussians vis [M] int64, in index order, with
    their sort keys: keys [M] uint32, :func:`depth_key` of depth_bits [N] uint32 (the
    depths' bits), and idx [M] int32 = 0..M-1. The per-Gaussian arrays are flat as
    :func:`_pack` takes them; rec is flat [M * REC_COLS] (rec_i32: the same memory as
    int32), the box in its spare columns, so that :func:`permute_rows` moves one cache
    line per Gaussian into depth order. Also in index order: box flat [M * 4] int32,
    n_rows [M] int64, and box_tiles [n_chunks] int64, how many tiles the chunk's boxes
    cover (a bound on its tile pairs).

    STAGE visible Gaussians at a time are first copied into small local arrays, then
    packed from there: read through the list of indices, the arrays' addresses are no
    stride that LLVM can check for overlap with rec, and it would leave the packing
    scalar (3x slower); from the local copies it vectorises. A run of consecutive
    Gaussians is packed in place. Culled Gaussians cost nothing here."""
    l_means = np.empty(2 * STAGE, np.float32)
    l_conics = np.empty(3 * STAGE, np.float32)
    l_opac = np.empty(STAGE, np.float32)
    l_colors = np.empty(3 * STAGE, np.float32)
    l_depths = np.empty(STAGE, np.float32)
    chunk = next_chunk(ticket)
    while chunk < n_chunks:
        i0, i1 = chunk_range(vis.shape[0], chunk, n_chunks)
        tiles = np.int64(0)
        for s in range(i0, i1, STAGE):
            e = min(s + STAGE, i1)
            rec_s = rec[np.uint64(s) * _UREC:]
            g0 = np.uint64(vis[s])
            if vis[e - 1] - vis[s] == e - 1 - s:
                # Consecutive Gaussians (vis ascends): their rows are a stride LLVM sees,
                # packed without the copies (1.2 M, all in view: 16.4 -> 15.2 ms).
                for i in range(s, e):
                    keys[i] = depth_key(depth_bits[g0 + np.uint64(i - s)])
                    idx[i] = i
                for j in range(e - s):
                    u = np.uint64(j)
                    _pack(u, g0 + u, means2d, conics, opacities, colors, depths, width,
                          height, rec_s)
            else:
                for i in range(s, e):
                    g = np.uint64(vis[i])
                    j = np.uint64(i - s)
                    l_means[_U2 * j] = means2d[_U2 * g]
                    l_means[_U2 * j + _U1] = means2d[_U2 * g + _U1]
                    for k in range(3):
                        l_conics[_U3 * j + np.uint64(k)] = conics[_U3 * g + np.uint64(k)]
                        l_colors[_U3 * j + np.uint64(k)] = colors[_U3 * g + np.uint64(k)]
                    l_opac[j] = opacities[g]
                    l_depths[j] = depths[g]
                    keys[i] = depth_key(depth_bits[g])
                    idx[i] = i
                for j in range(e - s):
                    u = np.uint64(j)
                    _pack(u, u, l_means, l_conics, l_opac, l_colors, l_depths, width, height,
                          rec_s)
            for i in range(s, e):
                u = np.uint64(i)
                row = _UREC * u + _UBOX
                x0, x1 = rec_i32[row], rec_i32[row + _U1]
                y0, y1 = rec_i32[row + _U2], rec_i32[row + _U3]
                box[_U4 * u] = x0
                box[_U4 * u + _U1] = x1
                box[_U4 * u + _U2] = y0
                box[_U4 * u + _U3] = y1
                rows = np.int64(y1 // TILE - y0 // TILE + 1) if y0 <= y1 else np.int64(0)
                n_rows[u] = rows
                tiles += rows * np.int64(x1 // TILE - x0 // TILE + 1)
        box_tiles[chunk] = tiles
        chunk = next_chunk(ticket)


@njit(**_JIT)
def permute_rows(perm, rec_in, rec_in_i32, rec, box, n_rows, ticket, n_chunks):
    """Records into depth order: rec[r] = rec_in[perm[r]] (perm [M] int32), box[r] from
    the record's spare columns (rec_in_i32: rec_in viewed as int32, see
    :func:`prepare_keys`) and n_rows[r] from the box, as :func:`prepare` sets it."""
    cols = rec.shape[1]
    chunk = next_chunk(ticket)
    while chunk < n_chunks:
        r0, r1 = chunk_range(perm.shape[0], chunk, n_chunks)
        for r in range(r0, r1):
            # The rows come in random order: ask for one PERMUTE_AHEAD ranks on now.
            if r + PERMUTE_AHEAD < r1:
                _prefetch_row(rec_in, np.intp(perm[r + PERMUTE_AHEAD]))
            i = perm[r]
            for k in range(cols):
                rec[r, k] = rec_in[i, k]
            x0, x1 = rec_in_i32[i, BOX], rec_in_i32[i, BOX + 1]
            y0, y1 = rec_in_i32[i, BOX + 2], rec_in_i32[i, BOX + 3]
            box[r, 0] = x0
            box[r, 1] = x1
            box[r, 2] = y0
            box[r, 3] = y1
            n_rows[r] = np.int64(y1) // TILE - np.int64(y0) // TILE + 1 if (
                x0 <= x1 and y0 <= y1) else 0
        chunk = next_chunk(ticket)
