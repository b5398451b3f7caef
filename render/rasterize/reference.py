"""Brute-force rasterizer in plain torch: every pixel against every visible Gaussian.

Slow (memory O(pixels x Gaussians)), but obviously right and differentiable through
autograd, so it is the oracle the fast backends are tested against.
"""

from __future__ import annotations

import torch
from torch import Tensor

from render.rasterize.types import Projection

ALPHA_MIN = 1.0 / 255.0
ALPHA_MAX = 0.999
T_MIN = 1e-4


def rasterize_reference(
    proj: Projection, width: int, height: int, background: Tensor, with_depth: bool = False,
    chunk: int = 4096,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Blend the projected Gaussians front to back with gsplat's rules.

    Returns rgb [H, W, 3] over the background, alpha [H, W, 1], depth [H, W, 1] or None.
    """
    dev = proj.means2d.device
    vis = proj.visible.nonzero().squeeze(1)
    order = vis[torch.argsort(proj.depths.detach()[vis], stable=True)]
    m2d, con = proj.means2d[order], proj.conics[order]
    opa, col, dep = proj.opacities[order], proj.colors[order], proj.depths[order]

    ys, xs = torch.meshgrid(torch.arange(height, device=dev), torch.arange(width, device=dev),
                            indexing="ij")
    pix = torch.stack([xs, ys], dim=-1).reshape(-1, 2).float() + 0.5  # [P, 2]
    rgb_rows, alpha_rows, depth_rows = [], [], []
    for start in range(0, pix.shape[0], chunk):
        p = pix[start:start + chunk]
        d = p[:, None, :] - m2d[None, :, :]  # [P, M, 2]
        sigma = (0.5 * (con[None, :, 0] * d[..., 0] ** 2 + con[None, :, 2] * d[..., 1] ** 2)
                 + con[None, :, 1] * d[..., 0] * d[..., 1])
        alpha = torch.clamp_max(opa[None, :] * torch.exp(-sigma), ALPHA_MAX)
        keep = (sigma >= 0) & (alpha >= ALPHA_MIN)
        alpha = torch.where(keep, alpha, torch.zeros_like(alpha))
        one_minus = 1.0 - alpha
        T = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), one_minus[:, :-1]], 1), 1)
        # A Gaussian that would push transmittance to 1e-4 or below ends the pixel unblended.
        with torch.no_grad():
            blended = (T * one_minus) > T_MIN
        w = torch.where(blended, alpha * T, torch.zeros_like(alpha))  # [P, M]
        rgb_rows.append(w @ col)
        a = w.sum(dim=1, keepdim=True)
        alpha_rows.append(a)
        if with_depth:
            depth_rows.append((w @ dep[:, None]) / a.clamp_min(1e-10))
    alpha = torch.cat(alpha_rows).reshape(height, width, 1)
    rgb = torch.cat(rgb_rows).reshape(height, width, 3) + (1.0 - alpha) * background.to(dev)
    depth = torch.cat(depth_rows).reshape(height, width, 1) if with_depth else None
    return rgb, alpha, depth
