"""Brute-force Gaussian Blending in torch: the oracle of render/rasterize/cpu_blend.py.

Same rule (see cpu_blend's docstring), but every integral over the transmittance window
is a sum over sub-samples instead of a closed form: per pixel a GRID x GRID lattice of
points spread over the window's Gaussian (mean m, covariance S, out to RANGE standard
deviations), weighted by its density. From the sums of alpha, alpha (x - m) and
alpha (x - m)(x - m)^T the remainder window's mass, mean and covariance follow as the
moments of window x (1 - alpha). Every pixel against every visible splat, in depth order;
no tiles, no bounding boxes. Slow: small scenes only.
"""

from __future__ import annotations

import torch
from torch import Tensor

from render.rasterize.cpu_blend import PIXEL_WINDOW, S_FLOOR
from render.rasterize.reference import ALPHA_MAX, ALPHA_MIN, T_MIN
from render.rasterize.types import Projection

GRID = 48
RANGE = 6.0


def _lattice(grid: int, extent: float) -> tuple[Tensor, Tensor]:
    """Standard-normal sub-samples: points z [G*G, 2] (midpoints of a grid over
    [-extent, extent]^2) and weights [G*G] proportional to the density, summing to 1."""
    h = 2.0 * extent / grid
    u = torch.arange(grid, dtype=torch.float64) * h - extent + 0.5 * h
    zy, zx = torch.meshgrid(u, u, indexing="ij")
    z = torch.stack([zx.reshape(-1), zy.reshape(-1)], dim=1)
    w = torch.exp(-0.5 * (z * z).sum(1))
    return z, w / w.sum()


def rasterize_blend_reference(
    proj: Projection, width: int, height: int, background: Tensor, with_depth: bool = False,
    pixel_window: float = PIXEL_WINDOW, grid: int = GRID,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Gaussian Blending by sub-sample integration (float64 inside).

    Returns rgb [H, W, 3] over the background, alpha [H, W, 1], depth [H, W, 1] or None.
    """
    f64 = torch.float64
    vis = proj.visible.nonzero().squeeze(1)
    order = vis[torch.argsort(proj.depths.detach()[vis], stable=True)]
    m2d = proj.means2d.detach()[order].to(f64)
    con = proj.conics.detach()[order].to(f64)
    opa = proj.opacities.detach()[order].to(f64)
    col = proj.colors.detach()[order].to(f64)
    dep = proj.depths.detach()[order].to(f64)
    z, wz = _lattice(grid, RANGE)  # [Q, 2], [Q]

    ys, xs = torch.meshgrid(torch.arange(height, dtype=f64), torch.arange(width, dtype=f64),
                            indexing="ij")
    centre = torch.stack([xs, ys], -1).reshape(-1, 2) + 0.5  # [P, 2]
    p = centre.shape[0]
    t = torch.ones(p, dtype=f64)
    mean = centre.clone()
    cov = torch.zeros(p, 2, 2, dtype=f64)
    cov[:, 0, 0] = cov[:, 1, 1] = pixel_window
    live = torch.ones(p, dtype=torch.bool)
    rgb = torch.zeros(p, 3, dtype=f64)
    zsum = torch.zeros(p, dtype=f64)
    for i in range(order.shape[0]):
        # sub-samples x = m + L z of each pixel's window, L L^T = S
        L = torch.linalg.cholesky(cov)  # [P, 2, 2]
        off = torch.einsum("pij,qj->pqi", L, z)  # [P, Q, 2] = x - m
        d = mean[:, None, :] + off - m2d[i]
        sig = 0.5 * (con[i, 0] * d[..., 0] ** 2 + con[i, 2] * d[..., 1] ** 2) \
            + con[i, 1] * d[..., 0] * d[..., 1]
        alpha = opa[i] * torch.exp(-sig) * wz  # [P, Q], density-weighted
        a0 = alpha.sum(1)
        a = a0.clamp_max(ALPHA_MAX)
        e = (alpha[..., None] * off).sum(1) / a0.clamp_min(1e-300)[:, None]  # E[x - m | alpha]
        m2 = torch.einsum("pq,pqi,pqj->pij", alpha, off, off) / a0.clamp_min(1e-300)[:, None, None]
        t_next = t * (1.0 - a)
        take = live & (a >= ALPHA_MIN) & (t_next > T_MIN)
        stop = live & (a >= ALPHA_MIN) & (t_next <= T_MIN)
        w = torch.where(take, a * t, torch.zeros_like(a))
        rgb += w[:, None] * col[i]
        zsum += w * dep[i]
        # remainder window: moments of window x (1 - alpha), about the old mean
        keep = 1.0 - a
        e_new = -(a / keep)[:, None] * e
        cov_new = (cov - a[:, None, None] * m2) / keep[:, None, None] \
            - e_new[:, :, None] * e_new[:, None, :]
        cov_new[:, 0, 0] = cov_new[:, 0, 0].clamp_min(S_FLOOR)
        cov_new[:, 1, 1] = cov_new[:, 1, 1].clamp_min(S_FLOOR)
        lim = 0.999 * torch.sqrt(cov_new[:, 0, 0] * cov_new[:, 1, 1])
        xy = torch.maximum(torch.minimum(cov_new[:, 0, 1], lim), -lim)
        cov_new[:, 0, 1] = cov_new[:, 1, 0] = xy
        t = torch.where(take, t_next, t)
        mean = torch.where(take[:, None], mean + e_new, mean)
        cov = torch.where(take[:, None, None], cov_new, cov)
        live = live & ~stop
    alpha_px = (1.0 - t).reshape(height, width, 1)
    out = (rgb.reshape(height, width, 3) + t.reshape(height, width, 1)
           * background.to(f64)).float()
    depth = None
    if with_depth:
        depth = (zsum.reshape(height, width, 1) / alpha_px.clamp_min(1e-10)).float()
    return out, alpha_px.float(), depth
