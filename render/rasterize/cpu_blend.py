"""Gaussian Blending (Koo, Jeong, Kim, AAAI 2026, arXiv 2511.15102) on the CPU: the
`blend` antialias mode's forward, in numba.

Scalar alpha blending takes one alpha and one transmittance per pixel, so a foreground
splat that covers half a pixel hides a background splat in the other half as if it
covered all of it. Gaussian Blending keeps, per pixel, the transmittance as a
distribution over the pixel's area, a *transmittance window*: its mass t (the scalar
transmittance), its mean m and its covariance S. It starts as the pixel's own uniform
window (t = 1, m = the pixel centre, S = diag(1/12, 1/12) pixels^2). Each splat, front
to back, with alpha(x) = o exp(-1/2 (x - mu)^T Sigma^-1 (x - mu)):

- contributes colour c times the transmittance it meets, t * a, where
  a = E_window[alpha] = the splat's alpha integrated over the window;
- removes that mass from the window: the remainder T(x) (1 - alpha(x)) keeps the mass
  t (1 - a), and its mean and covariance (the window's next m, S) follow from the
  zeroth, first and second moments of window x alpha, which are the splat's 2D Gaussian
  moments restricted to the window.

Choices where the paper leaves them open (each tested in tests/test_blend.py):

- The window's integrals take the window as a Gaussian of its mean and covariance (the
  uniform pixel square has covariance I / 12). Then window x alpha is a Gaussian again:
  a = o sqrt(det Sigma / det C) exp(-1/2 d^T C^-1 d) with C = Sigma + S, d = mu - m; its
  mean m + K d and covariance S - K S with K = S C^-1; all closed form, one exp and one
  sqrt a pair, and the updated window stays a valid (positive) covariance. A window
  that is exactly the square needs erf products that do not separate for a rotated
  splat. The test measures the coverage against the square's exact integral.
- The window shrinks to a point as S -> 0, and then the rule is exactly classic alpha
  blending at the pixel centre (tested): a = alpha(centre), the window never moves.
- The splats keep a scene-fixed footprint (SA-GS): the projection dilates by eps2d *
  zoom^2 pixels^2 (the classic 0.3 at the model's base scale, which is what a classic-
  trained model was fitted with), and the window then does the area integration that
  classic's fixed 0.3 pixel^2 dilation stood in for. See RenderOptions.dilation.
- Alpha clamps and stops as in gsplat: a < 1/255 is skipped (no blend, no update),
  a <= 0.999, a pixel stops before the splat that would take t to <= 1e-4.

Tiles and binning are the classic mode's (render/rasterize/cpu.py): a splat is binned with
the footprint Sigma + BIN_WINDOW I, which holds what the pixels' windows reach (they
start at I / 12 and move by a fraction of a pixel) up to contributions under 1/1000.

The backward is a surrogate (straight-through): the image is Gaussian Blending's, its
gradient that of scalar blending with each splat's alpha integrated over the pixel window
(the `cpu` classic kernels on Sigma + S0, opacity o sqrt(det Sigma / det(Sigma + S0))),
which is the rule exactly for the first splat a pixel meets and ignores how the window
then moves. Enough to finetune a level under this mode; not the exact adjoint.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import torch
from torch import Tensor

from render.jit import njit
from render.rasterize import cpu_kernels as K
from render.rasterize.cpu_project import numpy_f32
from render.rasterize.cpu_sort import SCRATCH
from render.rasterize.cpu_threads import GAUSSIAN_CHUNKS, TILE_CHUNKS, chunk_count, run_chunks
from render.rasterize.types import Projection

# The pixel window's variance per axis (pixels^2): a uniform square of side 1.
PIXEL_WINDOW = 1.0 / 12.0
# The footprint splats are binned with: Sigma + BIN_WINDOW I (pixels^2). The windows
# start at I / 12 and their means stay within about half a pixel of the centre. 0.5
# covered both with room; 0.25 bins 7 % fewer tile pairs on the 1.2 M scene (blend's
# display frame ~7 % faster) and moves its image by < 8e-4 (the donut's < 3.3e-4), no
# 8-bit pixel by half a level. Tested against a 4x wider binning on the real donut; the
# reference, which bins nothing, against the kernel on small scenes.
BIN_WINDOW = 0.25
# Extra columns of the sorted record rows, written after _bin (columns 11..15 are free
# once binned: the box is in its own array): the splat's own covariance Sigma (xx, xy,
# yy) and o sqrt(det Sigma).
SXX, SXY, SYY, OSD = 11, 12, 13, 14
# The window's variance never goes below this (pixels^2): keeps C invertible when a
# window has collapsed onto an edge.
S_FLOOR = 1e-6

_FM = {"nsz", "arcp", "contract", "afn", "reassoc"}
_JIT = {"nogil": True, "cache": True, "fastmath": _FM, "error_model": "numpy"}

# Per-tile pixel state: one float32 array of W_FIELDS fields x QN pixels (structure of
# arrays, as cpu_kernels'). Transmittance and colour sums where the classic kernel keeps
# them (its _pack_tile packs them), then the depth sum, the window's mean (offset from the
# pixel centre) and covariance. Unsigned, as cpu_kernels' (no wraparound code).
W_T, W_R, W_G, W_B, W_Z, W_MX, W_MY, W_SXX, W_SXY, W_SYY = (np.uint64(i * K.QN)
                                                           for i in range(10))
W_FIELDS = 10
assert (W_T, W_R, W_G, W_B) == (K.F_T, K.F_R, K.F_G, K.F_B)


@njit(inline="always", **_JIT)
def window_alpha(mx, my, sxx, sxy, syy, gx, gy, vxx, vxy, vyy, osd, amax, ec):
    """The splat's alpha averaged over the window (clamped to amax) and what the update
    reuses: (a, dx, dy, cxx, cxy, cyy, 1 / det C). Window mean (mx, my), covariance (sxx,
    sxy, syy); splat mean (gx, gy), covariance (vxx, vxy, vyy), osd = o sqrt(det Sigma);
    all float32, pixels. ec: cpu_kernels._exp_consts (the classic kernel's inline exp)."""
    cxx, cxy, cyy = vxx + sxx, vxy + sxy, vyy + syy
    inv = np.float32(1.0) / (cxx * cyy - cxy * cxy)
    dx, dy = gx - mx, gy - my
    q = (cyy * dx * dx - np.float32(2.0) * cxy * dx * dy + cxx * dy * dy) * inv
    a = min(osd * math.sqrt(inv) * K._exp_neg(np.float32(0.5) * q, ec), amax)
    return a, dx, dy, cxx, cxy, cyy, inv


@njit(inline="always", **_JIT)
def window_update(a, dx, dy, cxx, cxy, cyy, inv, sxx, sxy, syy):
    """The remainder window after a splat took the fraction a of it (see window_alpha):
    (mean offset dx, dy, covariance xx, xy, yy)."""
    # K = S C^-1; the window x alpha Gaussian has mean m + K d and covariance S - K S.
    k11 = (sxx * cyy - sxy * cxy) * inv
    k12 = (sxy * cxx - sxx * cxy) * inv
    k21 = (sxy * cyy - syy * cxy) * inv
    k22 = (syy * cxx - sxy * cxy) * inv
    ex = k11 * dx + k12 * dy
    ey = k21 * dx + k22 * dy
    ks11 = k11 * sxx + k12 * sxy
    ks12 = k11 * sxy + k12 * syy
    ks22 = k21 * sxy + k22 * syy
    # The remainder (1 - alpha) window: mass 1 - a, mean -a e / (1 - a), covariance
    # (S - a (S - K S)) / (1 - a) - a e e^T / (1 - a)^2  (moments about the old mean).
    r1 = a / (np.float32(1.0) - a)
    r2 = r1 / (np.float32(1.0) - a)
    nxx = max(sxx + r1 * ks11 - r2 * ex * ex, np.float32(S_FLOOR))
    nyy = max(syy + r1 * ks22 - r2 * ey * ey, np.float32(S_FLOOR))
    nxy = sxy + r1 * ks12 - r2 * ex * ey
    lim = np.float32(0.999) * math.sqrt(nxx * nyy)
    nxy = min(max(nxy, -lim), lim)
    return -r1 * ex, -r1 * ey, nxx, nxy, nyy


@njit(inline="always", **_JIT)
def blend_step(t, mx, my, sxx, sxy, syy, gx, gy, vxx, vxy, vyy, osd, amax):
    """One splat against one transmittance window (all float32 scalars, pixels): window
    mass t, mean (mx, my), covariance (sxx, sxy, syy); splat as in window_alpha.
    Returns (a, mean offset dx, dy of the remainder window, its covariance xx, xy, yy)."""
    a, dx, dy, cxx, cxy, cyy, inv = window_alpha(mx, my, sxx, sxy, syy, gx, gy, vxx, vxy,
                                                 vyy, osd, amax, K._exp_consts(K.CONSTS))
    ox, oy, nxx, nxy, nyy = window_update(a, dx, dy, cxx, cxy, cyy, inv, sxx, sxy, syy)
    return a, ox, oy, nxx, nxy, nyy


@njit(inline="always", **_JIT)
def _blend_row(st, base, gxr, gy, xa, xb, vxx, vxy, vyy, osd, gr, gg, gb, gz, ec, amax, amin,
               tmin, depth):
    """Blend one splat into the tile row of pixels st[.. + base + j] (see
    :func:`_blend_tiles`), all LANES pixels at once, branch-free (selects), so that the
    loop vectorises as the classic kernel's does: the window rule per pixel is ~4x the
    classic one's arithmetic, a scalar loop over the box was ~12x its time.

    gxr: the splat's x minus the tile row's first pixel centre; gy: its y minus the row's
    pixel centres; lanes xa..xb (float32, tile-relative) are the splat's box; `depth` (a
    compile-time constant) also sums the depth.
    """
    zero, one = ec[0], ec[13]
    for j in range(K.LANES):
        q = base + np.uint64(j)
        lx = K._LANE_X[j]
        t_now = st[W_T + q]
        mx, my = st[W_MX + q], st[W_MY + q]
        sxx, sxy, syy = st[W_SXX + q], st[W_SXY + q], st[W_SYY + q]
        a, dx, dy, cxx, cxy, cyy, inv = window_alpha(mx, my, sxx, sxy, syy, gxr - lx, gy,
                                                     vxx, vxy, vyy, osd, amax, ec)
        # t_now <= 0: the pixel stopped (or is padding); outside the box: not this
        # splat's pixel (the window may have grown past the binned footprint).
        ok = (lx >= xa) & (lx <= xb) & (a >= amin) & (t_now > zero)
        t_next = t_now * (one - a)
        stop = ok & (t_next <= tmin)
        blend = ok & (t_next > tmin)
        ox, oy, nxx, nxy, nyy = window_update(a, dx, dy, cxx, cxy, cyy, inv, sxx, sxy, syy)
        w = a * t_now if blend else zero
        st[W_R + q] += w * gr
        st[W_G + q] += w * gg
        st[W_B + q] += w * gb
        if depth:
            st[W_Z + q] += w * gz
        t_keep = -t_now if stop else t_now
        st[W_T + q] = t_next if blend else t_keep
        st[W_MX + q] = mx + ox if blend else mx
        st[W_MY + q] = my + oy if blend else my
        st[W_SXX + q] = nxx if blend else sxx
        st[W_SXY + q] = nxy if blend else sxy
        st[W_SYY + q] = nyy if blend else syy


@njit(inline="always", **_JIT)
def _blend_tiles(rec, box, tile_start, pairs, width, height, tiles_x, background, s0, kc,
                 out_rgb, out_alpha, out_depth, out_bgra32, ticket, n_chunks, depth, display):
    """Blend every tile front to back with transmittance windows.

    rec [M, REC_COLS] (with the SXX..OSD columns), box [M, 4], tile_start, pairs: the
    classic binning. s0: the pixel window's variance (pixels^2); kc: cpu_kernels.CONSTS.
    Writes out_rgb [H, W, 3] over the background, out_alpha [H, W] = 1 - t and, with
    `depth` (a compile-time constant), out_depth [H, W] (expected depth); with `display`
    (a compile-time constant) none of them but out_bgra32 [H, W] alone (as the classic
    forward_bgra8, cpu_kernels._pack_tile).
    """
    ec = K._exp_consts(kc)
    amax, amin, tmin = kc[K.C_ALPHA_MAX], kc[K.C_ALPHA_MIN], kc[K.C_T_MIN]
    half = np.float32(0.5)
    chunk = K.next_chunk(ticket)
    while chunk < n_chunks:
        t_lo, t_hi = K.chunk_range(tile_start.shape[0] - 1, chunk, n_chunks)
        for t in range(t_lo, t_hi):
            tx0, ty0, tw, th = K._tile_box(t, tiles_x, width, height)
            st = np.zeros(W_FIELDS * K.QN, np.float32)
            for i in range(K.QN):
                q = np.uint64(i)
                st[W_SXX + q] = s0
                st[W_SYY + q] = s0
            for ly in range(th):
                for lx in range(tw):
                    st[W_T + np.uint64(ly * K.TILE + lx)] = 1.0
            row_live = np.full(K.TILE, tw, np.int64)  # live pixels per row
            k0, k1 = tile_start[t], tile_start[t + 1]
            for k in range(k0, k1):
                if k > k0 and (k - k0) % K.LIVE_EVERY == 0:
                    # Recount the live pixels now and then (cpu_kernels.LIVE_EVERY).
                    n_live = 0
                    for ly in range(th):
                        cnt = np.float32(0.0)
                        for lx in range(K.TILE):
                            cnt += np.float32(1.0) if st[
                                W_T + np.uint64(ly * K.TILE + lx)] > 0.0 else np.float32(0.0)
                        row_live[ly] = np.int64(cnt)
                        n_live += np.int64(cnt)
                    if n_live == 0:
                        break
                if k + K.PREFETCH_AHEAD < k1:
                    K._prefetch_row(rec, np.intp(pairs[k + K.PREFETCH_AHEAD]))
                r = pairs[k]
                gxr = rec[r, K.MX] - np.float32(tx0) - half
                vxx, vxy, vyy, osd = rec[r, SXX], rec[r, SXY], rec[r, SYY], rec[r, OSD]
                gr, gg, gb, gz = rec[r, K.CR], rec[r, K.CG], rec[r, K.CBL], rec[r, K.DZ]
                xa = np.float32(max(box[r, 0], tx0) - tx0)
                xb = np.float32(min(box[r, 1], tx0 + tw - 1) - tx0)
                ya = max(box[r, 2], ty0) - ty0
                yb = min(box[r, 3], ty0 + th - 1) - ty0
                for ly in range(ya, yb + 1):
                    if row_live[ly] == 0:
                        continue
                    gy = rec[r, K.MY] - (np.float32(ty0 + ly) + half)
                    _blend_row(st, np.uint64(ly * K.TILE), gxr, gy, xa, xb, vxx, vxy, vyy, osd,
                               gr, gg, gb, gz, ec, amax, amin, tmin, depth)
            if display:
                K._pack_tile(st, out_bgra32, tx0, ty0, tw, th, height, background)
                continue
            for ly in range(th):
                for lx in range(tw):
                    q = np.uint64(ly * K.TILE + lx)
                    y, x = ty0 + ly, tx0 + lx
                    T = abs(st[W_T + q])
                    a_px = np.float32(1.0) - T
                    out_rgb[y, x, 0] = st[W_R + q] + T * background[0]
                    out_rgb[y, x, 1] = st[W_G + q] + T * background[1]
                    out_rgb[y, x, 2] = st[W_B + q] + T * background[2]
                    out_alpha[y, x] = a_px
                    if depth:
                        out_depth[y, x] = st[W_Z + q] / max(a_px, np.float32(1e-10))
        chunk = K.next_chunk(ticket)


@njit(**_JIT)
def forward_blend(rec, box, tile_start, pairs, width, height, tiles_x, background, s0, kc,
                  out_rgb, out_alpha, ticket, n_chunks):
    """:func:`_blend_tiles` for the colour and alpha (float images)."""
    _blend_tiles(rec, box, tile_start, pairs, width, height, tiles_x, background, s0, kc,
                 out_rgb, out_alpha, np.empty((0, 0), np.float32), np.empty((0, 0), np.uint32),
                 ticket, n_chunks, False, False)


@njit(**_JIT)
def forward_blend_depth(rec, box, tile_start, pairs, width, height, tiles_x, background, s0,
                        kc, out_rgb, out_alpha, out_depth, ticket, n_chunks):
    """:func:`_blend_tiles` with the expected depth too."""
    _blend_tiles(rec, box, tile_start, pairs, width, height, tiles_x, background, s0, kc,
                 out_rgb, out_alpha, out_depth, np.empty((0, 0), np.uint32), ticket, n_chunks,
                 True, False)


@njit(**_JIT)
def forward_blend_bgra8(rec, box, tile_start, pairs, width, height, tiles_x, background, s0,
                        kc, out_bgra32, ticket, n_chunks):
    """:func:`_blend_tiles` for a display: the colour as BGRA8 alone, out_bgra32 [H, W]
    uint32 (cpu_kernels._pack_tile), as the classic forward_bgra8."""
    f2 = np.empty((0, 0), np.float32)
    _blend_tiles(rec, box, tile_start, pairs, width, height, tiles_x, background, s0, kc,
                 np.empty((0, 0, 3), np.float32), f2, f2, out_bgra32, ticket, n_chunks, False,
                 True)


@njit(**_JIT)
def bin_conics(vis, conics, bin_window, wide, ticket, n_chunks):
    """wide[g] [N, 3]: the conic of Sigma + bin_window I, which the binning uses, for each
    visible Gaussian g = vis[i] (vis [M] int64), from its (dilated) conic [N, 3], in
    float64. A degenerate conic (not positive definite) counts as Sigma = 0."""
    chunk = K.next_chunk(ticket)
    while chunk < n_chunks:
        i0, i1 = K.chunk_range(vis.shape[0], chunk, n_chunks)
        for i in range(i0, i1):
            g = vis[i]
            a, b, c = np.float64(conics[g, 0]), np.float64(conics[g, 1]), np.float64(conics[g, 2])
            det = a * c - b * b
            inv = 1.0 / det if det > 0.0 else 0.0
            wxx, wxy, wyy = c * inv + bin_window, -b * inv, a * inv + bin_window
            wdet = wxx * wyy - wxy * wxy
            wide[g, 0] = wyy / wdet
            wide[g, 1] = -wxy / wdet
            wide[g, 2] = wxx / wdet
        chunk = K.next_chunk(ticket)


@njit(**_JIT)
def record_moments(rec, bin_window, ticket, n_chunks):
    """Per record r of the binning (rec [M, REC_COLS], its conic columns holding the
    conic of Sigma + bin_window I, see :func:`bin_conics`): rec[r, SXX..OSD] = Sigma (xx,
    xy, yy; pixels^2) and o sqrt(det Sigma), in float64. The records are read in their
    own (depth) order, one pass: a gather of per-Gaussian moments by rank was a random
    access per splat (~8 ms of a 1.2 M frame). Sigma comes back to ~1e-7 pixels^2."""
    chunk = K.next_chunk(ticket)
    while chunk < n_chunks:
        r0, r1 = K.chunk_range(rec.shape[0], chunk, n_chunks)
        for r in range(r0, r1):
            a, b = np.float64(rec[r, K.CA]), np.float64(rec[r, K.CB])
            c = np.float64(rec[r, K.CC])
            inv = 1.0 / (a * c - b * b)
            sxx, sxy, syy = c * inv - bin_window, -b * inv, a * inv - bin_window
            rec[r, SXX] = sxx
            rec[r, SXY] = sxy
            rec[r, SYY] = syy
            rec[r, OSD] = rec[r, K.OP] * math.sqrt(max(sxx * syy - sxy * sxy, 0.0))
        chunk = K.next_chunk(ticket)


def rasterize_blend_cpu(proj: Projection, width: int, height: int, background: Tensor,
                        with_depth: bool = False, pixel_window: float = PIXEL_WINDOW,
                        absgrad: bool = False, bgra8: bool = False,
                        ) -> tuple[Tensor | None, Tensor | None, Tensor | None, dict]:
    """Gaussian Blending of a projection with the numba kernel; differentiable through the
    straight-through surrogate (see the module docstring; absgrad as rasterize_cpu's).
    bgra8: as rasterize_cpu's (a display frame: when nothing is differentiated and no
    depth is asked for, the colour comes as stats `bgra8_gl` and rgb, alpha are None).

    Returns rgb [H, W, 3], alpha [H, W, 1], depth [H, W, 1] or None, stats (as
    :func:`render.rasterize.cpu.rasterize_cpu`).
    """
    inputs = (proj.means2d, proj.conics, proj.opacities, proj.colors, proj.depths)
    if not (torch.is_grad_enabled() and any(t.requires_grad for t in inputs)):
        if bgra8 and not with_depth and sys.byteorder == "little":
            return _blend_forward(proj, width, height, background, False, pixel_window, True)
        return _blend_forward(proj, width, height, background, with_depth, pixel_window)
    from render.rasterize.cpu import rasterize_cpu

    rgb_s, alpha_s, depth_s, _ = rasterize_cpu(window_surrogate(proj, pixel_window), width,
                                               height, background, with_depth, absgrad)
    with torch.no_grad():
        rgb, alpha, depth, stats = _blend_forward(proj, width, height, background, with_depth,
                                                  pixel_window)
    rgb = rgb_s + (rgb - rgb_s).detach()
    alpha = alpha_s + (alpha - alpha_s).detach()
    if with_depth:
        depth = depth_s + (depth - depth_s).detach()
    return rgb, alpha, depth, stats


def window_surrogate(proj: Projection, pixel_window: float) -> Projection:
    """The scalar-alpha stand-in the backward differentiates: each splat integrated over
    the pixel window alone (conic of Sigma + w I, opacity o sqrt(det Sigma / det(Sigma +
    w I))), in torch, in the graph. Same means2d tensor (absgrad lands on it)."""
    a, b, c = proj.conics.unbind(-1)
    det = torch.clamp_min(a * c - b * b, 1e-12)
    sxx, sxy, syy = c / det + pixel_window, -b / det, a / det + pixel_window
    det_c = torch.clamp_min(sxx * syy - sxy * sxy, 1e-12)
    conics = torch.stack([syy / det_c, -sxy / det_c, sxx / det_c], -1)
    opacities = proj.opacities * torch.rsqrt(det * det_c)
    return Projection(proj.means2d, conics, proj.depths, proj.radii, opacities, proj.colors)


def _blend_forward(proj: Projection, width: int, height: int, background: Tensor,
                   with_depth: bool, pixel_window: float, bgra8: bool = False):
    """The blend kernels on a projection, outside autograd: (rgb, alpha, depth, stats) as
    rasterize_blend_cpu's; with `bgra8` rgb, alpha and depth are None and the colour is
    stats["bgra8_gl"]. The binning's records and the moments live in this thread's
    scratch buffers (nothing here outlives the call)."""
    from render.rasterize.cpu import _bin, visible_mask

    w, h = int(width), int(height)
    visible = visible_mask(proj.radii)
    wide = SCRATCH.get("blend_wide", visible.shape[0], (3,), np.float32)
    run_chunks(bin_conics, chunk_count(GAUSSIAN_CHUNKS), np.flatnonzero(visible),
               numpy_f32(proj.conics), BIN_WINDOW, wide)
    _, rec, box, bins, tiles_x = _bin(proj.means2d, torch.from_numpy(wide), proj.opacities,
                                      proj.colors, proj.depths, visible, w, h, reuse=True)
    m = rec.shape[0]
    run_chunks(record_moments, chunk_count(GAUSSIAN_CHUNKS), rec, BIN_WINDOW)
    stats = {"n_tile_pairs": int(bins.pairs.shape[0]), "n_drawn": int(m)}
    args = (rec, box, bins.tile_start, bins.pairs, w, h, tiles_x, numpy_f32(background),
            np.float32(pixel_window), K.CONSTS)
    t_chunks = chunk_count(TILE_CHUNKS)
    if bgra8:
        packed = SCRATCH.unshared("bgra8", h, (w, 4), np.uint8)  # handed out
        # One uint32 a pixel, bytes B, G, R, A (little-endian), as the classic kernel.
        run_chunks(forward_blend_bgra8, t_chunks, *args, packed.view(np.uint32)[..., 0])
        stats["bgra8_gl"] = torch.from_numpy(packed)
        return None, None, None, stats
    rgb = np.empty((h, w, 3), np.float32)
    alpha = np.empty((h, w), np.float32)
    if with_depth:
        depth = np.empty((h, w), np.float32)
        run_chunks(forward_blend_depth, t_chunks, *args, rgb, alpha, depth)
    else:
        run_chunks(forward_blend, t_chunks, *args, rgb, alpha)
    return (torch.from_numpy(rgb), torch.from_numpy(alpha)[..., None],
            torch.from_numpy(depth)[..., None] if with_depth else None, stats)
