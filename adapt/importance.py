"""How much each Gaussian adds to a set of renders: its total blend weight.

Per Gaussian i, over the pixels p of some views, W_i = sum_p alpha_i(p) T_i(p): the
weight with which its colour enters the composited pixels (alpha-blending gives
pixel = sum_i c_i alpha_i T_i + T_final * background). A Gaussian with a small W_i
changes the renders by at most W_i in total, whatever its colour; LightGaussian
(Fan et al. 2023, "global significance") ranks Gaussians by the same sum, there over
the training views at full resolution, and prunes the least significant ~66% with a
small PSNR loss after a short recovery finetune.

W is obtained on any backend, without touching the rasterizer, as a gradient: render a
copy whose colours are all 0.5 (SH band 0 = 0, higher bands 0) and take the gradient of
the red channel's sum with respect to SH band 0: d(sum_p rgb_r) / d sh_dc_r,i =
SH_C0 * sum_p alpha_i T_i (the colour 0.5 is far from the clamp at 0, so the gradient
passes unchanged). Geometry and opacities are those of the set, so are the weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from render.camera import Camera
from render.gaussians import SH_C0, Gaussians
from render.options import RenderOptions
from render.rasterize import render


@dataclass(frozen=True)
class ImportancePrune:
    """When and how much to prune by blend weight during an optimisation.

    Attributes:
        at: iterations (1-based, after that step) at which to prune.
        weight_fraction: at each of them, remove the least-contributing Gaussians that
            together carry at most this fraction of the total blend weight over the
            views (so the renders lose at most that share of their splat mass before
            the remaining iterations recover it).
        max_fraction: never remove more than this fraction of the Gaussians at once.
    """

    at: tuple[int, ...] = ()
    weight_fraction: float = 0.02
    max_fraction: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.weight_fraction < 1.0:
            raise ValueError(f"weight_fraction must be in [0, 1), got {self.weight_fraction}")
        if not 0.0 <= self.max_fraction < 1.0:
            raise ValueError(f"max_fraction must be in [0, 1), got {self.max_fraction}")


def _tiles(cam: Camera, tile: int) -> list[Camera]:
    if cam.width <= tile and cam.height <= tile:
        return [cam]
    return [cam.crop(x, y, min(tile, cam.width - x), min(tile, cam.height - y))
            for y in range(0, cam.height, tile) for x in range(0, cam.width, tile)]


def blend_weights(gaussians: Gaussians, cameras: Sequence[Camera], options: RenderOptions,
                  tile: int = 512) -> tuple[Tensor, Tensor]:
    """Total blend weight per Gaussian over the views, in pixels of those views.

    Args:
        gaussians: the set (not modified; no gradient is kept).
        cameras: the views, each at its own pixel size; views larger than tile x tile
            are rendered in crops (bounded memory).
        options: how the set is rendered (antialias mode, backend); the background
            does not matter.
    Returns:
        W: sum over views and pixels of alpha_i T_i, >= 0. [N] float32 (CPU)
        seen: whether the Gaussian was inside at least one view (drawn). [N] bool (CPU)
    """
    g = gaussians.detach().clone()
    rest = torch.zeros_like(g.sh[:, 1:])
    dc = torch.zeros_like(g.sh[:, :1], requires_grad=True)  # [N, 1, 3]: colour 0.5
    total = torch.zeros(len(g))
    seen = torch.zeros(len(g), dtype=torch.bool)
    opts = options.replace(sh_degree=0, output="rgb")
    for cam in cameras:
        for part in _tiles(cam, tile):
            g.sh = torch.cat([dc, rest], dim=1)
            res = render(g, part, opts)
            (grad,) = torch.autograd.grad(res.rgb[..., 0].sum(), dc)
            total += grad[:, 0, 0].detach().float().cpu().clamp_min(0.0) / SH_C0
            seen |= (res.radii.detach().cpu() > 0).all(dim=-1)
    return total, seen


def negligible(weights: Tensor, seen: Tensor, weight_fraction: float,
               max_fraction: float = 0.5) -> Tensor:
    """The Gaussians to drop: the least-contributing ones among those seen, as many as
    together carry at most `weight_fraction` of the total weight, and at most
    `max_fraction` of all. Gaussians no view saw are kept (nothing is known about them).

    weights, seen: from :func:`blend_weights`. [N], [N] -> drop mask [N] bool
    """
    drop = torch.zeros_like(seen)
    total = float(weights[seen].sum())
    if weight_fraction <= 0 or total <= 0:
        return drop
    idx = torch.nonzero(seen).squeeze(1)
    order = idx[torch.argsort(weights[idx], stable=True)]
    cum = torch.cumsum(weights[order].double(), 0)
    n = int((cum <= weight_fraction * total).sum())
    n = min(n, int(max_fraction * len(weights)))
    drop[order[:n]] = True
    return drop
