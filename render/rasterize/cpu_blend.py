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
the footprint Sigma + BIN_WINDOW I, which holds any window the pixel's moves leave it
(a window only shrinks from I / 12 or moves by a fraction of a pixel).

The backward is a surrogate (straight-through): the image is Gaussian Blending's, its
gradient that of scalar blending with each splat's alpha integrated over the pixel window
(the `cpu` classic kernels on Sigma + S0, opacity o sqrt(det Sigma / det(Sigma + S0))),
which is the rule exactly for the first splat a pixel meets and ignores how the window
then moves. Enough to finetune a level under this mode; not the exact adjoint.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from render.jit import njit
from render.rasterize import cpu_kernels as K
from render.rasterize.cpu_project import numpy_f32
from render.rasterize.cpu_threads import TILE_CHUNKS, chunk_count, run_chunks
from render.rasterize.types import Projection

# The pixel window's variance per axis (pixels^2): a uniform square of side 1.
PIXEL_WINDOW = 1.0 / 12.0
# The footprint splats are binned with: Sigma + BIN_WINDOW I (pixels^2). The windows
# start at I / 12 and their means stay within about half a pixel of the centre; 0.5
# covers both (the reference, which bins nothing, checks that no pixel is lost).
BIN_WINDOW = 0.5
# Extra columns of the sorted record rows, written after _bin (columns 11..15 are free
# once binned: the box is in its own array): the splat's own covariance Sigma (xx, xy,
# yy) and o sqrt(det Sigma).
SXX, SXY, SYY, OSD = 11, 12, 13, 14
# The window's variance never goes below this (pixels^2): keeps C invertible when a
# window has collapsed onto an edge.
S_FLOOR = 1e-6

_FM = {"nsz", "arcp", "contract", "afn", "reassoc"}
_JIT = {"nogil": True, "cache": True, "fastmath": _FM, "error_model": "numpy"}

# Per-tile state fields (structure of arrays, QN pixels each).
F_T, F_MX, F_MY, F_SXX, F_SXY, F_SYY, F_R, F_G, F_B, F_Z = (i * K.QN for i in range(10))
NF = 10


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


@njit(**_JIT)
def forward_blend(rec, box, tile_start, pairs, width, height, tiles_x, background, s0, kc,
                  out_rgb, out_alpha, out_depth, ticket, n_chunks):
    """Blend every tile front to back with transmittance windows.

    rec [M, REC_COLS] (with the SXX..OSD columns), box [M, 4], tile_start, pairs: the
    classic binning. s0: the pixel window's variance (pixels^2); kc: cpu_kernels.CONSTS.
    Writes out_rgb [H, W, 3]
    over the background, out_alpha [H, W] = 1 - t, out_depth [H, W] (expected depth).
    """
    ec = K._exp_consts(kc)
    amax, amin, tmin = kc[K.C_ALPHA_MAX], kc[K.C_ALPHA_MIN], kc[K.C_T_MIN]
    chunk = K.next_chunk(ticket)
    while chunk < n_chunks:
        t_lo, t_hi = K.chunk_range(tile_start.shape[0] - 1, chunk, n_chunks)
        for t in range(t_lo, t_hi):
            tx0, ty0, tw, th = K._tile_box(t, tiles_x, width, height)
            st = np.zeros(NF * K.QN, np.float32)
            for q in range(K.QN):
                st[F_T + q] = 1.0
                st[F_SXX + q] = s0
                st[F_SYY + q] = s0
            live = tw * th
            for k in range(tile_start[t], tile_start[t + 1]):
                if live == 0:
                    break
                r = pairs[k]
                gx0, gy0 = rec[r, K.MX], rec[r, K.MY]
                vxx, vxy, vyy, osd = rec[r, SXX], rec[r, SXY], rec[r, SYY], rec[r, OSD]
                gr, gg, gb, gz = rec[r, K.CR], rec[r, K.CG], rec[r, K.CBL], rec[r, K.DZ]
                ya = max(box[r, 2], ty0) - ty0
                yb = min(box[r, 3], ty0 + th - 1) - ty0
                xa = max(box[r, 0], tx0) - tx0
                xb = min(box[r, 1], tx0 + tw - 1) - tx0
                for ly in range(ya, yb + 1):
                    # splat mean relative to the pixel centres of this row
                    gy = gy0 - (np.float32(ty0 + ly) + np.float32(0.5))
                    for lx in range(xa, xb + 1):
                        q = ly * K.TILE + lx
                        tn = st[F_T + q]
                        if tn <= 0.0:
                            continue
                        gx = gx0 - (np.float32(tx0 + lx) + np.float32(0.5))
                        sxx, sxy, syy = st[F_SXX + q], st[F_SXY + q], st[F_SYY + q]
                        a, dx, dy, cxx, cxy, cyy, inv = window_alpha(
                            st[F_MX + q], st[F_MY + q], sxx, sxy, syy, gx, gy, vxx, vxy, vyy,
                            osd, amax, ec)
                        if a < amin:  # most pairs: no blend, no update
                            continue
                        t_next = tn * (np.float32(1.0) - a)
                        if t_next <= tmin:
                            st[F_T + q] = -tn  # stopped; keeps |t|
                            live -= 1
                            continue
                        mx, my, sxx, sxy, syy = window_update(a, dx, dy, cxx, cxy, cyy, inv,
                                                              sxx, sxy, syy)
                        w = a * tn
                        st[F_R + q] += w * gr
                        st[F_G + q] += w * gg
                        st[F_B + q] += w * gb
                        st[F_Z + q] += w * gz
                        st[F_T + q] = t_next
                        st[F_MX + q] += mx
                        st[F_MY + q] += my
                        st[F_SXX + q] = sxx
                        st[F_SXY + q] = sxy
                        st[F_SYY + q] = syy
            for ly in range(th):
                for lx in range(tw):
                    q = ly * K.TILE + lx
                    y, x = ty0 + ly, tx0 + lx
                    T = abs(st[F_T + q])
                    a_px = np.float32(1.0) - T
                    out_rgb[y, x, 0] = st[F_R + q] + T * background[0]
                    out_rgb[y, x, 1] = st[F_G + q] + T * background[1]
                    out_rgb[y, x, 2] = st[F_B + q] + T * background[2]
                    out_alpha[y, x] = a_px
                    out_depth[y, x] = st[F_Z + q] / max(a_px, np.float32(1e-10))
        chunk = K.next_chunk(ticket)


def splat_covariances(conics: np.ndarray) -> np.ndarray:
    """The projected (dilated) 2D covariances from their conics. [N, 3] -> [N, 3]
    (xx, xy, yy), pixels^2; a degenerate conic gives zeros (its splat is culled)."""
    a, b, c = (conics[:, i].astype(np.float64) for i in range(3))
    det = a * c - b * b
    ok = det > 0
    inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
    return np.stack([c * inv, -b * inv, a * inv], axis=1).astype(np.float32)


def rasterize_blend_cpu(proj: Projection, width: int, height: int, background: Tensor,
                        with_depth: bool = False, pixel_window: float = PIXEL_WINDOW,
                        absgrad: bool = False) -> tuple[Tensor, Tensor, Tensor | None, dict]:
    """Gaussian Blending of a projection with the numba kernel; differentiable through the
    straight-through surrogate (see the module docstring; absgrad as rasterize_cpu's).

    Returns rgb [H, W, 3], alpha [H, W, 1], depth [H, W, 1] or None, stats (as
    :func:`render.rasterize.cpu.rasterize_cpu`).
    """
    inputs = (proj.means2d, proj.conics, proj.opacities, proj.colors, proj.depths)
    if not (torch.is_grad_enabled() and any(t.requires_grad for t in inputs)):
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
                   with_depth: bool, pixel_window: float):
    from render.rasterize.cpu import _bin

    radii = proj.radii.numpy()
    visible = (radii[:, 0] > 0) & (radii[:, 1] > 0)
    cov = splat_covariances(numpy_f32(proj.conics))
    wide = cov.astype(np.float64)
    wide[:, 0] += BIN_WINDOW
    wide[:, 2] += BIN_WINDOW
    det = wide[:, 0] * wide[:, 2] - wide[:, 1] ** 2
    det = np.where(det > 0, det, 1.0)
    bin_conics = np.stack([wide[:, 2] / det, -wide[:, 1] / det, wide[:, 0] / det], 1)
    order, rec, box, bins, tiles_x = _bin(
        proj.means2d, torch.from_numpy(bin_conics.astype(np.float32)), proj.opacities,
        proj.colors, proj.depths, visible, int(width), int(height))
    c = cov[order]
    rec[:, SXX], rec[:, SXY], rec[:, SYY] = c[:, 0], c[:, 1], c[:, 2]
    sdet = np.clip(c[:, 0].astype(np.float64) * c[:, 2] - c[:, 1].astype(np.float64) ** 2,
                   0.0, None)
    rec[:, OSD] = (rec[:, K.OP] * np.sqrt(sdet)).astype(np.float32)
    rgb = np.empty((height, width, 3), np.float32)
    alpha = np.empty((height, width), np.float32)
    depth = np.empty((height, width), np.float32)
    run_chunks(forward_blend, chunk_count(TILE_CHUNKS), rec, box, bins.tile_start, bins.pairs,
               int(width), int(height), tiles_x, numpy_f32(background),
               np.float32(pixel_window), K.CONSTS, rgb, alpha, depth)
    stats = {"n_tile_pairs": int(bins.pairs.shape[0]), "n_drawn": int(order.shape[0])}
    return (torch.from_numpy(rgb), torch.from_numpy(alpha)[..., None],
            torch.from_numpy(depth)[..., None] if with_depth else None, stats)
