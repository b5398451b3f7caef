"""Compiled numba kernels of the CPU rasterizer: tile binning, the blending's adjoint, and
what the kernels share (record columns, the inline exp, tiles). The records are packed in
:mod:`cpu_pack`, the forward blending is :mod:`cpu_forward`'s.

Data layout (all float32 / int32, C-contiguous):

- The visible Gaussians are sorted by depth once; from then on a Gaussian is named by
  its rank `r` in that order. `rec[r]` packs everything the blending loop reads about
  it into one 64-byte row (one cache line): see the column constants below.
- `box[r]` is its pixel bounding box (x0, x1, y0, y1, inclusive) of the region where it
  can reach alpha >= 1/255 (sigma <= log(255 o)), much tighter than the 3.33-sigma box
  for faint Gaussians; empty boxes have x1 < x0. Binning keeps, per row of tiles, only
  the tiles the ellipse itself reaches (thin diagonal splats skip most of their box).
- Tiles of TILE x TILE pixels, row-major. `tile_start[t] : tile_start[t + 1]` indexes
  `pairs`, the ranks touching tile t in front-to-back order.
- Per tile the pixel state (transmittance, colour sums, ...) lives in one small local
  array, one field per quantity (structure of arrays), and the blending loops run
  Gaussian-major: for each Gaussian of the tile, each pixel row of its box with live
  pixels, the whole tile row (LANES pixels, one vector; the forward works on 4 x 4
  blocks instead, see cpu_forward), evaluated branch-free so that it vectorises (exp
  is an inline polynomial for the same reason). Narrowing each row
  to the ellipse's own span cost more in per-row square roots and mispredicted branches
  than it saved in pixels (measured: the forward kernel 20 % and the backward 13 %
  slower), so every pixel of the row gets the exact per-pixel test, which rejects those
  with alpha < 1/255. A pixel stops like gsplat's (the Gaussian that would take T to
  <= 1e-4 is not blended); rows and whole tiles stop once all their pixels have
  (noticed by a recount of the live pixels every LIVE_EVERY pairs).

The backward pass walks each tile's list back to front from the saved final
transmittance and the per-pixel count of processed Gaussians (as gsplat does), writing
one gradient row per (Gaussian, tile) pair it reaches; a final pass sums them per
Gaussian in a fixed order (no atomics, deterministic). Every kernel is cut into n_chunks
chunks that the calls of it on several threads share out (a ticket, see
:mod:`render.rasterize.cpu_threads`; the kernels are nogil).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from render.jit import njit
from render.rasterize.cpu_threads import next_chunk

TILE = 16
_TILE_SHIFT = 4  # TILE = 1 << _TILE_SHIFT
_U1, _U2 = np.uint64(1), np.uint64(2)
ALPHA_MIN = np.float32(1.0 / 255.0)
ALPHA_MAX = np.float32(0.999)
T_MIN = np.float32(1e-4)

# Columns of rec [M, REC_COLS]
MX, MY, CA, CB, CC, OP, SMAX, CR, CG, CBL, DZ = range(11)
REC_COLS = 16
BOX = 12  # spare columns 12-15: the box, as int32, while records are packed unsorted
# Columns of the per-pair and per-Gaussian gradient rows [*, GRAD_COLS]
G_MX, G_MY, G_CA, G_CB, G_CC, G_OP, G_R, G_G, G_B, G_Z, G_ABSX, G_ABSY = range(12)
GRAD_COLS = 12

# No nnan/ninf: the kernels compare against thresholds and must see infinities as such.
_FM = {"nsz", "arcp", "contract", "afn", "reassoc"}
_JIT = {"nogil": True, "cache": True, "fastmath": _FM, "error_model": "numpy"}


@njit(inline="always", **_JIT)
def chunk_range(n, chunk, n_chunks):
    """The contiguous run [lo, hi) of range(n) that one chunk of a kernel does. Runs, not
    interleaved items: neighbouring tiles share Gaussians (a thread finds their records
    in its cache), neighbouring ranks share cache lines of `box` (two threads would write
    the same lines), and a chunk's ranks stay in depth order for binning.
    (cpu_project uses it too: numba's cache does not see edits here from there.)"""
    return chunk * n // n_chunks, (chunk + 1) * n // n_chunks


@njit(**_JIT)
def _count_tiles(rec, box, tiles_x, row_start, band, edges, ticket, n_chunks):
    """Which tiles each rank of this chunk reaches.

    The bounding box alone takes every tile of the rectangle; a thin diagonal splat
    touches only a band of them. Per tile row ty of rank r's box (slot j = row_start[r] +
    ty - ty0, top to bottom), band[j] = (tx0, tx1): the tile columns its ellipse reaches
    (tx1 < tx0 when none). The chunk's tiles are counted as run edges,
    edges[chunk, ty, tx0] += 1 and edges[chunk, ty, tx1 + 1] -= 1 (a prefix sum along
    each row gives the per-tile counts): O(1) per band, not per tile.
    """
    one = np.float32(1.0)
    stride = np.int64(tiles_x + 1)
    chunk = next_chunk(ticket)
    while chunk < n_chunks:
        r0, r1 = chunk_range(box.shape[0], chunk, n_chunks)
        # Flat, with unsigned offsets and shifts for the (non-negative) tile coordinates:
        # numba's negative-index and floor-division code was ~25 % of this loop.
        ed = edges[chunk].reshape(-1)
        bf = band.reshape(-1)
        for r in range(r0, r1):
            u = np.uint64(r)
            j0 = np.uint64(row_start[u])
            n_rows = np.int64(row_start[u + _U1]) - np.int64(j0)
            if n_rows == 0:
                continue
            bx0, bx1 = np.int64(box[u, 0]), np.int64(box[u, 1])
            by0, by1 = np.int64(box[u, 2]), np.int64(box[u, 3])
            ty0 = by0 >> _TILE_SHIFT
            tx0 = bx0 >> _TILE_SHIFT
            if tx0 == bx1 >> _TILE_SHIFT:
                # One tile column: every row of the box is reached (it bounds the ellipse).
                e = np.uint64(ty0 * stride + tx0)
                for i in range(n_rows):
                    jj = _U2 * (j0 + np.uint64(i))
                    bf[jj] = tx0
                    bf[jj + _U1] = tx0
                    ed[e] += 1
                    ed[e + _U1] -= 1
                    e += np.uint64(stride)
                continue
            mx, my = rec[u, MX], rec[u, MY]
            a, b, c, smax = rec[u, CA], rec[u, CB], rec[u, CC], rec[u, SMAX]
            inv_a = one / a
            # Row dy of the ellipse sigma <= smax spans centre(dy) +- half(dy), centre = mx - b
            # dy / a, half = sqrt((2 smax - det dy^2 / a) / a). Its right end is concave in
            # dy, so over the rows of a tile row it peaks at the row nearest to the ellipse's
            # rightmost point, dy = -b ext / c with ext its half height (the left end
            # mirrors it).
            det = a * c - b * b
            dy_right = -b * math.sqrt(np.float32(2.0) * smax * c / det) / c
            k2 = -det * inv_a
            s2 = np.float32(2.0) * smax
            for i in range(n_rows):
                ty = ty0 + i
                jj = _U2 * (j0 + np.uint64(i))
                dy_lo = np.float32(max(ty * TILE, by0)) + np.float32(0.5) - my
                dy_hi = np.float32(min(ty * TILE + TILE - 1, by1)) + np.float32(0.5) - my
                dyr = min(max(dy_right, dy_lo), dy_hi)
                dyl = min(max(-dy_right, dy_lo), dy_hi)
                half_r = math.sqrt(max(k2 * dyr * dyr + s2, np.float32(0.0)) * inv_a)
                half_l = math.sqrt(max(k2 * dyl * dyl + s2, np.float32(0.0)) * inv_a)
                # Widened a little so float rounding never drops a tile the blend reaches;
                # pixel x has its centre at x + 0.5.
                x_hi = mx - b * dyr * inv_a + half_r * np.float32(1.001) + np.float32(0.01)
                x_lo = mx - b * dyl * inv_a - half_l * np.float32(1.001) - np.float32(0.01)
                lo = max(x_lo - np.float32(0.5), np.float32(bx0))
                hi = min(x_hi - np.float32(0.5), np.float32(bx1))
                if hi < lo:
                    bf[jj] = 1
                    bf[jj + _U1] = 0
                    continue
                t0 = np.int64(lo) >> _TILE_SHIFT
                t1 = np.int64(hi) >> _TILE_SHIFT
                bf[jj] = t0
                bf[jj + _U1] = t1
                e = np.uint64(ty * stride)
                ed[e + np.uint64(t0)] += 1
                ed[e + np.uint64(t1 + 1)] -= 1
        chunk = next_chunk(ticket)


@njit(**_JIT)
def _fill_tiles(box, row_start, band, tiles_x, cursor, pairs, ticket, n_chunks):
    """Write the ranks of this chunk into their tiles' lists, in rank order, from
    cursor[chunk, t] on (the chunk's first slot in tile t): every list comes out front to
    back without a sort."""
    chunk = next_chunk(ticket)
    while chunk < n_chunks:
        r0, r1 = chunk_range(box.shape[0], chunk, n_chunks)
        cur = cursor[chunk]
        bf = band.reshape(-1)
        for r in range(r0, r1):
            fill_one(np.uint64(r), r, box, row_start, bf, tiles_x, cur, pairs)
        chunk = next_chunk(ticket)


@njit(inline="always", **_JIT)
def fill_one(u, value, box, row_start, bf, tiles_x, cur, pairs):
    """Append `value` to the list of every tile that item u (uint64) reaches: its band
    rows (bf: band flat) from cur[t] on, advancing cur. Flat, with unsigned offsets: as
    _count_tiles."""
    row = np.uint64((np.int64(box[u, 2]) >> _TILE_SHIFT) * tiles_x)
    for j in range(np.uint64(row_start[u]), np.uint64(row_start[u + _U1])):
        for tx in range(bf[_U2 * j], bf[_U2 * j + _U1] + 1):
            t = row + np.uint64(tx)
            slot = cur[t]
            pairs[slot] = value
            cur[t] = slot + 1
        row += np.uint64(tiles_x)


@dataclass
class Bins:
    """The tile lists (see :func:`bin_tiles`): tile_start [T + 1] and pairs [P] int32
    ranks; pair k belongs to the tile t with tile_start[t] <= k < tile_start[t + 1]."""

    tile_start: np.ndarray
    pairs: np.ndarray


@njit(**_JIT)
def _offsets(counts):
    """[0, c0, c0 + c1, ...]: where each item's run starts, and the total. [len + 1]
    (numpy's cumsum is not vectorised: 4 ns an item, ~10x this loop.)"""
    out = np.empty(counts.shape[0] + 1, np.int64)
    total = 0
    for i in range(counts.shape[0]):
        out[i] = total
        total += counts[i]
    out[counts.shape[0]] = total
    return out


def count_tiles(rec, box, n_rows, tiles_x, tiles_y, n_chunks, run_chunks, scratch=None):
    """The first pass of :func:`bin_tiles`: (row_start [M + 1], band [rows, 2], tile_start
    [T + 1], cursor [n_chunks, T], each chunk's first slot in every tile's list). With
    `scratch` (cpu_sort.Scratch), band is its buffer."""
    m = box.shape[0]
    row_start = _offsets(n_rows)
    rows = int(row_start[m])
    band = (scratch.get("band", rows, (2,), np.int32) if scratch is not None
            else np.empty((rows, 2), np.int32))
    edges = np.zeros((n_chunks, tiles_y, tiles_x + 1), np.int64)
    run_chunks(_count_tiles, n_chunks, rec, box, tiles_x, row_start, band, edges)
    counts = np.cumsum(edges[:, :, :tiles_x], axis=2).reshape(n_chunks, tiles_x * tiles_y)
    n_tiles = tiles_x * tiles_y
    tile_start = np.zeros(n_tiles + 1, np.int64)
    np.cumsum(counts.sum(axis=0), out=tile_start[1:])
    cursor = tile_start[:n_tiles] + np.cumsum(counts, axis=0) - counts
    return row_start, band, tile_start, cursor


def bin_tiles(rec, box, n_rows, tiles_x, tiles_y, n_chunks, run_chunks,
              scratch=None) -> Bins:
    """Per-tile front-to-back lists of ranks.

    Both passes (ellipse-versus-tile tests with counts, then the fill) split the ranks
    into contiguous runs, one per chunk; each chunk writes its run after the runs before
    it in every tile, so every list is in depth order without a sort. With `scratch`
    (cpu_sort.Scratch), the lists live in its buffers (valid until its next frame).
    """
    row_start, band, tile_start, cursor = count_tiles(rec, box, n_rows, tiles_x, tiles_y,
                                                      n_chunks, run_chunks, scratch)
    n_pairs = int(tile_start[-1])
    pairs = (scratch.get("pairs", n_pairs, (), np.int32) if scratch is not None
             else np.empty(n_pairs, np.int32))
    run_chunks(_fill_tiles, n_chunks, box, row_start, band, tiles_x, cursor, pairs)
    return Bins(tile_start, pairs)


@intrinsic
def _prefetch_row(typingctx, arr, row):
    """Ask the cache for row `row` of a 2D C-contiguous array (llvm.prefetch, for reading):
    the blending loops know their next Gaussians before they need their records, and a
    record fetched from memory on demand stalled the forward loop ~9 % of its time."""
    sig = types.void(arr, types.intp)

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        zero = context.get_constant(types.intp, 0)
        ptr = cgutils.get_item_pointer(context, builder, signature.args[0], ary,
                                       [args[1], zero])
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
            "llvm.prefetch.p0i8")
        builder.call(fn, [builder.bitcast(ptr, i8p), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return sig, codegen


def _bitcast(src, dst, llvm_type, doc: str):
    """An intrinsic that reinterprets a `src` scalar's bits as a `dst` (numba types)."""

    @intrinsic
    def cast(typingctx, x):
        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], llvm_type)

        return dst(src), codegen

    cast.__doc__ = doc
    return cast


# For building 2^n without a libm call (_exp_neg), and the packing's inline log (cpu_pack).
_bits_to_f32 = _bitcast(types.int32, types.float32, ir.FloatType(), "int32 bits as float32")
_f64_bits = _bitcast(types.float64, types.int64, ir.IntType(64), "float64 as its int64 bits")
_bits_f64 = _bitcast(types.int64, types.float64, ir.DoubleType(), "int64 bits as float64")


_SIGMA_CAP = 16.0  # exp(-16) * 0.999 < 1/255: always rejected, never overflows
# exp(x) on |x| <= ln2 / 2 as a degree-5 polynomial (a Chebyshev fit weighted for relative
# error: 8e-8 in exact arithmetic, 2.5e-7 evaluated in float32), times exp(-ln2 / 2) (see
# _exp_neg), lowest degree first.
_EXP_POLY = np.array([1.0000000710297017, 0.9999996661619783, 0.49998899075795783,
                      0.16667662837729866, 0.041915028542138376, 0.008291716684988421])
_EXP_POLY = _EXP_POLY * np.sqrt(0.5)
# The constants of the pixel loops, handed to the kernels as an array and read into locals
# once per call. As literals, numba puts them in a constant pool that x86 code reaches
# through 64-bit absolute addresses, and LLVM re-fetched them (movabs + broadcast) in every
# window, a third of the forward loop's instructions; runtime values stay in registers.
# Layout: _exp_neg's 14 (floor 0, cap, log2 e, ln 2, centre ln2 / 2, the 6 coefficients,
# 127, 2^23, 1), then ALPHA_MAX, ALPHA_MIN, T_MIN.
CONSTS = np.array([0.0, _SIGMA_CAP, 1.4426950408889634, 0.6931471805599453,
                   0.34657359027997264, *_EXP_POLY, 127.0, 8388608.0, 1.0,
                   ALPHA_MAX, ALPHA_MIN, T_MIN], np.float32)
C_ALPHA_MAX, C_ALPHA_MIN, C_T_MIN = 14, 15, 16


@njit(inline="always", **_JIT)
def _exp_consts(kc):
    """The first 14 entries of CONSTS as a tuple of scalars (for :func:`_exp_neg`)."""
    return (kc[0], kc[1], kc[2], kc[3], kc[4], kc[5], kc[6], kc[7], kc[8], kc[9], kc[10],
            kc[11], kc[12], kc[13])


@njit(inline="always", **_JIT)
def _exp_neg(sigma, ec):
    """exp(-sigma) for sigma >= 0 (values below 0 and above 16 are clamped), float32,
    relative error < 3e-7; ec = _exp_consts(CONSTS). Inline arithmetic, so the pixel loop
    vectorises (no libm call), with a short dependency chain: the loop is latency-bound.
    """
    s = min(max(sigma, ec[0]), ec[1])
    nf = np.float32(np.int32(s * ec[2]))  # s >= 0, so truncation is floor
    r = s - nf * ec[3]  # in [0, ln 2)
    x = ec[4] - r  # exp(-r) = exp(-ln2/2) exp(x), |x| <= ln2 / 2
    # Estrin's scheme: three independent pairs, then two levels, not a chain of five.
    x2 = x * x
    p = (ec[5] + ec[6] * x) + x2 * ((ec[7] + ec[8] * x) + x2 * (ec[9] + ec[10] * x))
    # 2^-n from its bit pattern (127 - n) << 23, formed in float32 (exact): numba would
    # widen int32 arithmetic to int64, and 64-bit lanes halve the vector width.
    return p * _bits_to_f32(np.int32((ec[11] - nf) * ec[12]))


# Per-tile pixel state lives in one float32 array of NF fields x QN slots (row-major
# pixels of the tile; cpu_forward's in 4 x 4 blocks): one base pointer, so the compiler
# sees that the fields never overlap and can vectorise the pixel windows. The backward
# evaluates whole tile rows, LANES = TILE = 16 pixels: one 512-bit vector where the CPU
# has AVX-512 (see render/jit.py). Measured on the 2-core machine: the row forward 24 %
# faster than windows of 8 over the box's columns; backward 3-4x faster than 8 lanes,
# 30 % faster than 32.
LANES = TILE
QN = TILE * TILE
# Pairs between recounts of a tile's live pixels. Counting the stops inside the window
# loop put two horizontal sums on its loop-carried path (measured: the forward kernel
# ~12 % slower); a late recount only costs a few extra pairs whose pixels are all masked.
LIVE_EVERY = 8
# How many pairs ahead the blending loops prefetch Gaussian records (and, forward, boxes:
# the box row is a second random miss per pair; prefetching it took the 1.2 M scene's
# blend from ~115 to ~66 ms, outside at 1280 x 720; 8 ahead rather than 4: ~60 ms).
PREFETCH_AHEAD = 8
# Lane offsets as float32 constants: converting the int64 loop counter to float would
# make LLVM size the vectors for 64-bit lanes (half the width).
_LANE_X = np.arange(LANES, dtype=np.float32)
# forward fields (unsigned, so that numba emits no negative-index wraparound code in the
# hot loop). T holds the transmittance of a live pixel and minus it once the pixel stopped;
# N counts the Gaussians blended into the pixel (a statistic).
F_T, F_R, F_G, F_B, F_Z, F_LAST, F_N = (np.uint64(i * QN) for i in range(7))
F_FIELDS = 7
# backward fields
B_T, B_S, B_GR, B_GG, B_GB, B_GA, B_GZ, B_LAST = (np.uint64(i * QN) for i in range(8))
B_FIELDS = 8
# The backward sums each pair's gradient per lane in a small separate array (acc, A_N
# fields of LANES, in the column order of the gradient rows) and across lanes once per
# pair: scalar sums in the window loop became horizontal reductions on its loop-carried
# path in every window (measured: the backward kernel ~20 % slower). It must be its own
# array: inside `st` the compiler cannot prove it apart from the pixel fields and does
# not vectorise at all (3x slower).
A_MX, A_MY, A_A, A_BB, A_C, A_O, A_R, A_G, A_B, A_Z, A_AX, A_AY = (
    np.uint64(i * LANES) for i in range(12))
A_N = 12


@njit(inline="always", **_JIT)
def _tile_box(t, tiles_x, width, height):
    """Tile t's pixel origin (x0, y0) and size (w, h): TILE x TILE, less at the image's
    right and bottom edges."""
    x0 = (t % tiles_x) * TILE
    y0 = (t // tiles_x) * TILE
    return x0, y0, min(TILE, width - x0), min(TILE, height - y0)


@njit(inline="always", **_JIT)
def _byte(v):
    """A colour in [0, 1] as uint32 0..255, rounded to nearest, clamped (NaN -> 0): as
    viewer.frames.pack_bgra8."""
    # Through int32: x86 has no vector float -> uint32 conversion.
    return np.uint32(np.int32(min(max(v, np.float32(0.0)), np.float32(1.0))
                              * np.float32(255.0) + np.float32(0.5)))


@njit(inline="always", **_JIT)
def _bgra8(r, g, b):
    """An opaque pixel of colour (r, g, b) in [0, 1] as one uint32 whose bytes are B, G,
    R, A in memory on a little-endian CPU (see :func:`_byte`)."""
    return (_byte(b) | (_byte(g) << np.uint32(8)) | (_byte(r) << np.uint32(16))
            | np.uint32(0xFF000000))


@njit(inline="always", **_JIT)
def _pack_tile(st, out_bgra32, tx0, ty0, tw, th, height, background):
    """A blended tile's colour over the background as opaque BGRA8 into out_bgra32
    [H, W] uint32 (bytes B, G, R, A in memory on a little-endian CPU), rows upside down
    (GL's order), rounded and clamped as viewer.frames.pack_bgra8. Straight from the
    tile's colour planes, contiguous per channel: the loop vectorises."""
    b0, b1, b2 = background[0], background[1], background[2]
    for ly in range(th):
        dst = out_bgra32[height - 1 - ty0 - ly]
        for lx in range(tw):
            q = np.uint64(ly * TILE + lx)
            T = abs(st[F_T + q])
            dst[tx0 + lx] = _bgra8(st[F_R + q] + T * b0, st[F_G + q] + T * b1,
                                   st[F_B + q] + T * b2)


@njit(inline="always", **_JIT)
def _backward_tiles(rec, box, tile_start, pairs, width, height, tiles_x, background,
                    with_depth, kc, img_T, img_last, img_depth, v_rgb, v_alpha, v_depth,
                    pair_grad, tile_done, ticket, n_chunks, absgrad):
    """Adjoint of :func:`forward`: one gradient row per pair into pair_grad [P, C] (C =
    GRAD_COLS with `absgrad`, else GRAD_COLS - 2: no |dL/d means2d| columns), row k for
    pair k of the tile lists. Only the pairs up to the last that a pixel of the tile
    went through get one (often a minority): tile t's are the first tile_done[t] of its
    list; the other rows are left as they are.

    kc is CONSTS; v_rgb [H, W, 3], v_alpha [H, W], v_depth [H, W] are dL/d(output).
    Rows: dL/d means2d (x, y), conic (a, b, c), opacity, colour (r, g, b), depth, and,
    when `absgrad` (a compile-time constant, see :func:`backward`), the per-pixel sums of
    |dL/d means2d| (x, y), else 0.

    Per pixel, with w_i = alpha_i T_i and phi_i = v_rgb . (c_i - bg) + v_alpha + v_depth
    (z_i - depth) / A, L = sum_i w_i phi_i, so dL/d alpha_i = T_i phi_i - S_i / (1 -
    alpha_i) where S_i sums w_j phi_j over the Gaussians behind i: walked back to front.
    """
    ec = _exp_consts(kc)
    zero, one = ec[0], ec[13]
    amax, amin = kc[C_ALPHA_MAX], kc[C_ALPHA_MIN]
    acc = np.zeros(A_N * LANES, np.float32)
    chunk = next_chunk(ticket)
    while chunk < n_chunks:
        t_lo, t_hi = chunk_range(tile_start.shape[0] - 1, chunk, n_chunks)
        for t in range(t_lo, t_hi):
            tx0, ty0, tw, th = _tile_box(t, tiles_x, width, height)
            st = np.zeros(B_FIELDS * QN, np.float32)
            max_last = 0
            row_last = np.zeros(TILE, np.float32)  # per row, the largest pixel `last`
            for ly in range(TILE):
                for lx in range(TILE):
                    st[B_T + np.uint64(ly * TILE + lx)] = 1.0
            for ly in range(th):
                for lx in range(tw):
                    q = np.uint64(ly * TILE + lx)
                    y, x = ty0 + ly, tx0 + lx
                    st[B_T + q] = img_T[y, x]
                    st[B_LAST + q] = np.float32(img_last[y, x])
                    max_last = max(max_last, img_last[y, x])
                    row_last[ly] = max(row_last[ly], np.float32(img_last[y, x]))
                    st[B_GR + q] = v_rgb[y, x, 0]
                    st[B_GG + q] = v_rgb[y, x, 1]
                    st[B_GB + q] = v_rgb[y, x, 2]
                    # rgb = sum w c + (1 - A) bg, so every w also carries -bg . v_rgb.
                    g_alpha = (v_alpha[y, x] - v_rgb[y, x, 0] * background[0]
                               - v_rgb[y, x, 1] * background[1] - v_rgb[y, x, 2] * background[2])
                    if with_depth:
                        a_px = np.float32(1.0) - img_T[y, x]
                        a_safe = max(a_px, np.float32(1e-10))
                        st[B_GZ + q] = v_depth[y, x] / a_safe
                        if a_px > 1e-10:  # depth = sum w z / A: A's own share
                            g_alpha -= v_depth[y, x] * img_depth[y, x] / a_safe
                    st[B_GA + q] = g_alpha
            s0 = tile_start[t]
            tile_done[t] = max_last
            for k in range(s0 + max_last - 1, s0 - 1, -1):
                if k - PREFETCH_AHEAD >= s0:
                    behind = np.intp(pairs[k - PREFETCH_AHEAD])
                    _prefetch_row(rec, behind)
                    _prefetch_row(box, behind)
                r = pairs[k]
                kf = np.float32(k - s0)
                mx, my = rec[r, MX], rec[r, MY]
                a, b, c, o = rec[r, CA], rec[r, CB], rec[r, CC], rec[r, OP]
                ha, hc = np.float32(0.5) * a, np.float32(0.5) * c
                cr, cg, cb, cz = rec[r, CR], rec[r, CG], rec[r, CBL], rec[r, DZ]
                acc[:] = 0.0
                dx0 = np.float32(tx0) + np.float32(0.5) - mx
                for ly in range(max(box[r, 2], ty0) - ty0, min(box[r, 3], ty0 + th - 1) - ty0 + 1):
                    if kf >= row_last[ly]:  # every pixel of the row stopped before this one
                        continue
                    dy = np.float32(ty0 + ly) + np.float32(0.5) - my
                    hcdy2 = hc * dy * dy
                    bdy = b * dy
                    dy2 = dy * dy
                    # The whole tile row is one window (LANES = TILE).
                    base = np.uint64(ly * TILE)
                    for j in range(LANES):
                        q = base + np.uint64(j)
                        u = np.uint64(j)
                        dx = dx0 + _LANE_X[j]
                        sigma = ha * dx * dx + bdy * dx + hcdy2
                        vis = _exp_neg(sigma, ec)
                        raw = o * vis
                        alpha = min(amax, raw)
                        last = st[B_LAST + q]
                        t_after = st[B_T + q]
                        gcr, gcg, gcb, gcz = st[B_GR + q], st[B_GG + q], st[B_GB + q], st[B_GZ + q]
                        g_a = st[B_GA + q]
                        s_behind = st[B_S + q]
                        ok = (sigma >= zero) & (alpha >= amin) & (kf < last)
                        alpha = alpha if ok else zero
                        inv_om = one / (one - alpha)
                        t_i = t_after * inv_om
                        w = alpha * t_i
                        phi = gcr * cr + gcg * cg + gcb * cb + g_a + gcz * cz
                        v_al = t_i * phi - s_behind * inv_om
                        st[B_S + q] = s_behind + w * phi
                        st[B_T + q] = t_i
                        acc[u + A_R] += w * gcr
                        acc[u + A_G] += w * gcg
                        acc[u + A_B] += w * gcb
                        acc[u + A_Z] += w * gcz
                        # The clamp at 0.999 passes no gradient to opacity or shape.
                        v_al = v_al if (ok & (raw <= amax)) else zero
                        acc[u + A_O] += vis * v_al
                        v_s = -alpha * v_al
                        dxvs = dx * v_s
                        acc[u + A_A] += dx * dxvs
                        acc[u + A_BB] += dy * dxvs
                        acc[u + A_C] += dy2 * v_s
                        # dL/d mean = -(a dx + b dy, b dx + c dy) v_s summed over the pixels:
                        # sum the moments dx v_s and dy v_s and apply the conic once per pair.
                        acc[u + A_MX] += dxvs
                        acc[u + A_MY] += dy * v_s
                        if absgrad:  # AbsGS needs each pixel's own |dL/d mean|
                            acc[u + A_AX] += abs((a * dx + bdy) * v_s)
                            acc[u + A_AY] += abs((b * dx + c * dy) * v_s)
                for i in range(A_N if absgrad else A_N - 2):
                    sm = np.float32(0.0)
                    for j in range(LANES):
                        sm += acc[i * LANES + j]
                    pair_grad[k, i] = sm
                # sigma = 0.5 a dx^2 + b dx dy + 0.5 c dy^2: the halves of a and c.
                pair_grad[k, G_CA] *= np.float32(0.5)
                pair_grad[k, G_CC] *= np.float32(0.5)
                sx, sy = pair_grad[k, G_MX], pair_grad[k, G_MY]
                pair_grad[k, G_MX] = -(a * sx + b * sy)
                pair_grad[k, G_MY] = -(b * sx + c * sy)
        chunk = next_chunk(ticket)


@njit(**_JIT)
def backward(rec, box, tile_start, pairs, width, height, tiles_x, background, with_depth, kc,
             img_T, img_last, img_depth, v_rgb, v_alpha, v_depth, pair_grad, tile_done, ticket,
             n_chunks):
    """:func:`_backward_tiles` without the |dL/d means2d| sums (their per-pixel work was
    ~9 % of this kernel; only AbsGS densification asks for them)."""
    _backward_tiles(rec, box, tile_start, pairs, width, height, tiles_x, background,
                    with_depth, kc, img_T, img_last, img_depth, v_rgb, v_alpha, v_depth,
                    pair_grad, tile_done, ticket, n_chunks, False)


@njit(**_JIT)
def backward_absgrad(rec, box, tile_start, pairs, width, height, tiles_x, background,
                     with_depth, kc, img_T, img_last, img_depth, v_rgb, v_alpha, v_depth,
                     pair_grad, tile_done, ticket, n_chunks):
    """:func:`_backward_tiles` with the |dL/d means2d| sums (AbsGS)."""
    _backward_tiles(rec, box, tile_start, pairs, width, height, tiles_x, background,
                    with_depth, kc, img_T, img_last, img_depth, v_rgb, v_alpha, v_depth,
                    pair_grad, tile_done, ticket, n_chunks, True)


@njit(**_JIT)
def gather_grads(order, tile_start, tile_done, pairs, pair_grad, out, ticket, n_chunks):
    """Sum the pair rows of the backward into their Gaussians' rows of out [N, GRAD_COLS]
    (zeroed; pair_grad [P, C] fills its first C columns): tile t's first tile_done[t]
    pairs. A chunk is a run of ranks (chunk_range), found in every tile's list by
    bisection (a list is in rank order); a Gaussian's rows are added tile by tile, in
    the same order whichever thread runs its chunk. Read straight from the tile lists,
    the rows the backward never wrote need no zeroing and no pass. (Rank-major rows, as
    before, needed both, and the backward's writes scattered over a large zeroed array:
    measured on the donut, its kernel took 10-15 ms longer.)"""
    cols = pair_grad.shape[1]
    chunk = next_chunk(ticket)
    while chunk < n_chunks:
        r0, r1 = chunk_range(order.shape[0], chunk, n_chunks)
        for t in range(tile_start.shape[0] - 1):
            s0 = tile_start[t]
            s1 = s0 + tile_done[t]
            k = s0 + np.searchsorted(pairs[s0:s1], r0)
            while k < s1 and pairs[k] < r1:
                g = order[pairs[k]]
                for col in range(cols):
                    out[g, col] += pair_grad[k, col]
                k += 1
        chunk = next_chunk(ticket)
