"""The `cpu` backend's 2D part: a differentiable tile rasterizer (`RasterizeCPU`, a
torch.autograd.Function) whose forward and backward run the compiled numba kernels of
:mod:`render.rasterize.cpu_kernels` on the threads of :mod:`render.rasterize.cpu_threads`.

It blends projected splats (from :mod:`render.rasterize.cpu_project`, the numba
projection) and gives dL/d(means2d, conics, opacities, colours, depths) back; autograd
carries those on to every Gaussian parameter.
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from torch import Tensor

from render.rasterize import cpu_forward, cpu_pack, cpu_tile_sort
from render.rasterize import cpu_kernels as K
from render.rasterize.cpu_project import numpy_f32
from render.rasterize.cpu_sort import SCRATCH, aligned_empty, radix_sort_pairs
from render.rasterize.cpu_threads import GAUSSIAN_CHUNKS, TILE_CHUNKS, chunk_count, run_chunks
from render.rasterize.types import Projection


def depth_order(visible: np.ndarray, depths: np.ndarray) -> np.ndarray:
    """Indices of the visible Gaussians front to back, equal depths in index order
    (as the reference's stable argsort). visible [N] bool, depths [N] -> [M] int64

    numpy's sort on one thread: the plain form of the order that :func:`_bin` gets from
    the threaded radix sort (tests hold the two equal)."""
    vis = np.flatnonzero(visible)
    d = np.ascontiguousarray(depths[vis], dtype=np.float32)
    if d.size and d.min() > 0.0:
        # Positive floats order like their bit patterns: sorting (bits << 32 | index) as
        # int64 is a stable sort, and numpy's SIMD integer sort is ~5x its stable argsort.
        key = (d.view(np.int32).astype(np.int64) << 32) | np.arange(d.size, dtype=np.int64)
        return vis[np.sort(key) & 0xFFFFFFFF]
    return vis[np.argsort(d, kind="stable")].astype(np.int64)


class _State:
    """What the forward pass leaves for the backward pass (numpy arrays)."""

    __slots__ = ("order", "rec", "box", "bins", "absgrad",
                 "T", "last", "depth", "tiles_x", "width", "height", "background",
                 "with_depth", "n")


def visible_mask(radii: Tensor) -> np.ndarray:
    """Projection.visible as numpy bool [N] (radii [N, 2]), on the rasterizer's threads:
    torch spreads the two small ops over its OpenMP threads (waking threads that then
    compete with the rasterizer's for the cores), and numpy's took 1.2 ms of one thread
    for 1.2 M Gaussians."""
    r = radii.numpy()  # int, never in a graph
    visible = np.empty(r.shape[0], np.bool_)
    run_chunks(cpu_pack.visible_mask, chunk_count(GAUSSIAN_CHUNKS) if r.shape[0] > 100_000
               else 1, r.reshape(-1), visible)
    return visible


def _bin(means2d: Tensor, conics: Tensor, opacities: Tensor, colors: Tensor,
         depths: Tensor, visible: np.ndarray, width: int, height: int, reuse: bool = False):
    """Sort the visible Gaussians front to back and bin them into tiles (visible [N]
    bool). Returns (order [M] int64, rec [M, REC_COLS], box [M, 4], bins, tiles_x).

    The records are packed in index order (a pass in memory order), sorted by depth on
    the threads (cpu_sort) and moved into depth order: the same ranks as
    :func:`depth_order` gives. With `reuse`, rec and box are this thread's scratch
    buffers (valid until its next frame), for a caller that keeps nothing; such a frame
    with few tiles a Gaussian leaves the records in index order and sorts each tile's
    list instead (cpu_tile_sort: the same lists with indices for ranks; order is None).
    """
    vis = np.flatnonzero(visible)
    m = vis.shape[0]
    chunks = chunk_count(GAUSSIAN_CHUNKS)
    sc = SCRATCH
    rec_u = sc.get("rec_u", m, (K.REC_COLS,), np.float32)
    keys = [sc.get(f"keys{i}", m, (), np.uint32) for i in range(2)]
    idx = [sc.get(f"idx{i}", m, (), np.int32) for i in range(2)]
    box_u = sc.get("box_u", m, (4,), np.int32)
    rows_u = sc.get("rows_u", m, (), np.int64)
    box_tiles = np.zeros(chunks, np.int64)
    d = numpy_f32(depths)
    flat = [numpy_f32(t).reshape(-1) for t in (means2d, conics, opacities, colors)]
    run_chunks(cpu_pack.prepare_keys, chunks, vis, *flat, d, d.view(np.uint32), width,
               height, rec_u.reshape(-1), rec_u.view(np.int32).reshape(-1), keys[0], idx[0],
               box_u.reshape(-1), rows_u, box_tiles)
    tiles_x = (width + K.TILE - 1) // K.TILE
    tiles_y = (height + K.TILE - 1) // K.TILE
    if reuse and cpu_tile_sort.pays(int(box_tiles.sum()), m):
        bins = cpu_tile_sort.bin_tile_sorted(rec_u, box_u, rows_u, keys[0], tiles_x, tiles_y,
                                             chunks, chunk_count(TILE_CHUNKS), run_chunks)
        return None, rec_u, box_u, bins, tiles_x
    perm = radix_sort_pairs(keys[0], idx[0], keys[1], idx[1], chunks, run_chunks)
    if reuse:
        rec = sc.get("rec", m, (K.REC_COLS,), np.float32)
        box = sc.get("box", m, (4,), np.int32)
    else:
        rec = aligned_empty((m, K.REC_COLS), np.float32)
        box = np.empty((m, 4), np.int32)
    n_rows = sc.get("rows", m, (), np.int64)
    run_chunks(cpu_pack.permute_rows, chunks, perm, rec_u, rec_u.view(np.int32), rec, box,
               n_rows)
    order = None if reuse else vis[perm]  # the display frame does not need it
    bins = K.bin_tiles(rec, box, n_rows, tiles_x, tiles_y, chunks, run_chunks,
                       sc if reuse else None)
    return order, rec, box, bins, tiles_x


def _forward(means2d: Tensor, conics: Tensor, opacities: Tensor, colors: Tensor,
             depths: Tensor, visible: np.ndarray, width: int, height: int,
             background: np.ndarray, with_depth: bool, count_pairs: bool):
    """Run the forward kernels (visible [N] bool). Returns (rgb [H,W,3], alpha [H,W],
    depth [H,W], state, stats)."""
    order, rec, box, bins, tiles_x = _bin(means2d, conics, opacities, colors, depths,
                                          visible, width, height)
    rgb = np.empty((height, width, 3), np.float32)
    alpha = np.empty((height, width), np.float32)
    depth = np.zeros((height, width), np.float32)
    T = np.empty((height, width), np.float32)
    last = np.empty((height, width), np.int32)
    blended = np.zeros(bins.tile_start.shape[0] - 1, np.int64)
    # Depth and the blended count cost the blending loop ~5 %: a kernel of their own.
    extras = with_depth or count_pairs
    kernel = cpu_forward.forward_extras if extras else cpu_forward.forward
    run_chunks(kernel, chunk_count(TILE_CHUNKS), rec, box, bins.tile_start, bins.pairs, width,
               height, tiles_x, background, K.CONSTS, rgb, alpha, depth, T, last, blended)
    st = _State()
    st.order, st.rec, st.box = order, rec, box
    st.bins = bins
    st.T, st.last, st.depth = T, last, depth
    st.tiles_x, st.width, st.height = tiles_x, width, height
    st.background, st.with_depth, st.n = background, with_depth, means2d.shape[0]
    stats = {"n_tile_pairs": int(bins.pairs.shape[0]), "n_drawn": order.shape[0]}
    if extras:
        stats["n_pairs"] = int(blended.sum())
    return rgb, alpha, depth, st, stats


def _forward_bgra8(means2d: Tensor, conics: Tensor, opacities: Tensor, colors: Tensor,
                   depths: Tensor, visible: np.ndarray, width: int, height: int,
                   background: np.ndarray) -> tuple[np.ndarray, dict]:
    """The colour alone, as a display uploads it (see RenderResult.bgra8_gl): BGRA uint8
    [H, W, 4], rows bottom first, and the stats."""
    _, rec, box, bins, tiles_x = _bin(means2d, conics, opacities, colors, depths, visible,
                                      width, height, reuse=True)
    packed = SCRATCH.unshared("bgra8", height, (width, 4), np.uint8)  # handed out
    # The kernel stores a pixel's four bytes as one uint32 (little-endian: B, G, R, A).
    run_chunks(cpu_forward.forward_bgra8, chunk_count(TILE_CHUNKS), rec, box, bins.tile_start,
               bins.pairs, width, height, tiles_x, background, K.CONSTS,
               packed.view(np.uint32)[..., 0])
    return packed, {"n_tile_pairs": int(bins.pairs.shape[0]), "n_drawn": rec.shape[0]}


def _backward(st: _State, v_rgb: np.ndarray, v_alpha: np.ndarray, v_depth: np.ndarray):
    """Run the backward kernels. Returns grads [N, GRAD_COLS] (see cpu_kernels G_*)."""
    b = st.bins
    cols = K.GRAD_COLS if st.absgrad else K.G_ABSX  # the |dL/d means2d| columns are last
    # Not zeroed: the kernel says per tile how many rows it wrote (tile_done).
    pair_grad = np.empty((b.pairs.shape[0], cols), np.float32)
    tile_done = np.empty(b.tile_start.shape[0] - 1, np.int64)
    kernel = K.backward_absgrad if st.absgrad else K.backward
    run_chunks(kernel, chunk_count(TILE_CHUNKS), st.rec, st.box, b.tile_start, b.pairs,
               st.width, st.height, st.tiles_x, st.background, st.with_depth, K.CONSTS, st.T,
               st.last, st.depth, v_rgb, v_alpha, v_depth, pair_grad, tile_done)
    out = np.zeros((st.n, K.GRAD_COLS), np.float32)
    run_chunks(K.gather_grads, chunk_count(GAUSSIAN_CHUNKS), st.order, b.tile_start, tile_done,
               b.pairs, pair_grad, out)
    return out


class RasterizeCPU(torch.autograd.Function):
    """Blend projected 2D Gaussians; differentiable in means2d, conics, opacities, colours
    and depths. With `absgrad` the backward also sets `means2d.absgrad` [N, 2]: per
    Gaussian the sum over pixels of |dL/d means2d| (AbsGS densification)."""

    @staticmethod
    def forward(ctx, means2d, conics, opacities, colors, depths, visible, width, height,
                background, with_depth, count_pairs, absgrad, stats_out):
        rgb, alpha, depth, st, stats = _forward(means2d, conics, opacities, colors, depths,
                                                visible, width, height, background, with_depth,
                                                count_pairs)
        st.absgrad = absgrad
        ctx.state = st
        stats_out.update(stats)
        # Kept as a plain attribute (not saved_tensors) so the backward can hang the
        # absgrad on the very tensor object the caller holds.
        ctx.means2d = means2d
        out_depth = torch.from_numpy(depth)[..., None] if with_depth else torch.empty(0)
        if not with_depth:
            ctx.mark_non_differentiable(out_depth)
        return torch.from_numpy(rgb), torch.from_numpy(alpha)[..., None], out_depth

    @staticmethod
    def backward(ctx, v_rgb, v_alpha, v_depth):
        st: _State = ctx.state
        h, w = st.height, st.width
        zeros = np.zeros((h, w), np.float32)
        g_rgb = numpy_f32(v_rgb) if v_rgb is not None else np.zeros((h, w, 3), np.float32)
        g_alpha = numpy_f32(v_alpha[..., 0]) if v_alpha is not None else zeros
        g_depth = (numpy_f32(v_depth[..., 0]) if (st.with_depth and v_depth is not None
                                              and v_depth.numel()) else zeros)
        grads = torch.from_numpy(_backward(st, g_rgb, g_alpha, g_depth))
        if st.absgrad:
            ctx.means2d.absgrad = grads[:, K.G_ABSX:K.G_ABSY + 1]
        need = ctx.needs_input_grad
        return (
            grads[:, K.G_MX:K.G_MY + 1] if need[0] else None,
            grads[:, K.G_CA:K.G_CC + 1] if need[1] else None,
            grads[:, K.G_OP] if need[2] else None,
            grads[:, K.G_R:K.G_B + 1] if need[3] else None,
            grads[:, K.G_Z] if need[4] else None,
            None, None, None, None, None, None, None, None,
        )


def rasterize_cpu(
    proj: Projection, width: int, height: int, background: Tensor, with_depth: bool = False,
    absgrad: bool = False, count_pairs: bool = False, bgra8: bool = False,
) -> tuple[Tensor | None, Tensor | None, Tensor | None, dict]:
    """Blend a projection with the numba kernels.

    Args:
        proj: the projected Gaussians (CPU tensors, float32).
        width, height: image size in pixels.
        background: RGB [3] composited as rgb + (1 - alpha) * bg.
        with_depth: also compute the expected depth sum(w z) / alpha.
        absgrad: the backward also sets proj.means2d.absgrad (see RasterizeCPU).
        count_pairs: also count the Gaussian-pixel pairs blended (stats `n_pairs`).
        bgra8: for a display, when nothing is differentiated and no depth or pair count
            is asked for: the colour comes packed as BGRA8 (stats `bgra8_gl`, see
            RenderResult.bgra8_gl) instead of as float images (rgb and alpha are None).

    Returns:
        rgb [H, W, 3], alpha [H, W, 1], depth [H, W, 1] or None, and stats
        (`n_drawn`: Gaussians that touch the image; `n_tile_pairs`: Gaussian-tile pairs;
        `n_pairs`: Gaussian-pixel pairs blended, with count_pairs or with_depth).
    """
    bg = numpy_f32(background)
    visible = visible_mask(proj.radii)
    inputs = (proj.means2d, proj.conics, proj.opacities, proj.colors, proj.depths)
    stats: dict = {}
    if torch.is_grad_enabled() and any(t.requires_grad for t in inputs):
        rgb, alpha, depth = RasterizeCPU.apply(*inputs, visible, int(width), int(height), bg,
                                               bool(with_depth), bool(count_pairs),
                                               bool(absgrad), stats)
        return rgb, alpha, (depth if with_depth else None), stats
    # Nothing to differentiate (viewer frames): skip the autograd node and its saved state.
    if bgra8 and not (with_depth or count_pairs) and sys.byteorder == "little":
        packed, stats = _forward_bgra8(*inputs, visible, int(width), int(height), bg)
        stats["bgra8_gl"] = torch.from_numpy(packed)
        return None, None, None, stats
    rgb_np, alpha_np, depth_np, _, stats = _forward(*inputs, visible, int(width), int(height),
                                                    bg, bool(with_depth), bool(count_pairs))
    depth = torch.from_numpy(depth_np)[..., None] if with_depth else None
    return torch.from_numpy(rgb_np), torch.from_numpy(alpha_np)[..., None], depth, stats
