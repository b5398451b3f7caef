"""A mip-filter level baked for viewers that know no anti-aliasing tag.

Zoom-out levels are finetuned and drawn with the Mip-Splatting 2D filter (dilation
`mip_eps2d` px^2 with opacity compensation) and written tagged `antialiased`. A viewer that
ignores the tag draws them classic (dilation `classic_eps2d` px^2, no compensation):
brighter, thicker splats. `bake_mip_filter` makes a copy that the classic rasterizer draws
as the mip filter draws the level, as seen from the level's views.
"""

from __future__ import annotations

import torch
from torch import Tensor

from render.camera import Camera
from render.gaussians import Gaussians
from render.options import RenderOptions
from render.rasterize.project import project

# An axis keeps at least this fraction of its variance when the extra classic dilation is
# taken out of it: a flat splat's thin axis must not vanish (or turn negative).
MIN_VARIANCE_KEPT = 0.01


def bake_mip_filter(g: Gaussians, views: list[Camera], mip_eps2d: float = 0.1,
                    classic_eps2d: float = 0.3) -> Gaussians:
    """A copy of `g` that classic rendering draws as the mip filter draws `g`.

    - Scales: the larger classic dilation is taken back out as an isotropic 3D variance,
      sigma^2 -= (classic_eps2d - mip_eps2d) / rate^2 (rate: the views' pixels per world
      unit at the Gaussian, adapt.scale.BaseSampling), which projects to an isotropic 2D
      one; floored at MIN_VARIANCE_KEPT of sigma^2 (a sub-pixel or flat splat then stays
      wider than the filtered one).
    - Opacity: the filter's compensation depends on the view; the baked splat keeps the
      mass (opacity x footprint area) the filter gives, o sqrt(det S), in the geometric
      mean over the views that see it: o' = o sqrt(det S / det(S' + classic_eps2d I)),
      S and S' the 2D covariances before and after, px^2.
    Exact for a splat seen at the views' scale whose axes stay above the floor.

    Args:
        g: the level (not modified).
        views: cameras at the level's scale (the base cameras rescaled by 2^level).
        mip_eps2d, classic_eps2d: the two dilations, px^2 (RenderOptions' defaults).
    Returns the baked copy (detached).
    """
    from adapt.scale import BaseSampling

    out = g.detach().clone()
    rate = BaseSampling.from_cameras(out, views).rate.to(out.means.device)[:, None]
    var = torch.exp(2.0 * out.log_scales)  # [N, 3] world^2
    shrunk = torch.maximum(var - (classic_eps2d - mip_eps2d) / rate**2, var * MIN_VARIANCE_KEPT)
    baked = Gaussians(out.means, out.quats, 0.5 * torch.log(shrunk), out.opacity_logits,
                      out.sh[:, :1])
    log_ratio, seen = torch.zeros(len(out)), torch.zeros(len(out))
    for cam in views:
        det, visible = _det2d(out, cam, 1e-6)
        det_b, _ = _det2d(baked, cam, classic_eps2d)
        log_ratio += torch.where(visible, 0.5 * torch.log(det / det_b), 0.0)
        seen += visible.float()
    ratio = torch.exp(log_ratio / seen.clamp_min(1.0))
    ratio = torch.where(seen > 0, ratio, 1.0)
    o = (torch.sigmoid(out.opacity_logits) * ratio).clamp(1e-6, 1 - 1e-6)
    out.opacity_logits = torch.log(o / (1 - o))
    out.log_scales = baked.log_scales
    return out


def bake_level(level_set: Gaussians, base_cameras: list[Camera], level: int,
               options: RenderOptions) -> Gaussians:
    """A zoom-out level baked as seen from the base cameras at the level's scale (2^level),
    with the dilations of `options` (mip_eps2d, eps2d)."""
    from adapt.views import rescaled_exact

    if not base_cameras:
        raise ValueError("the model's base cameras are not known yet")
    views = [rescaled_exact(c, 2.0**level) for c in base_cameras]
    return bake_mip_filter(level_set, views, options.mip_eps2d, options.eps2d)


def _det2d(g: Gaussians, cam: Camera, eps: float) -> tuple[Tensor, Tensor]:
    """(det of each splat's 2D covariance + eps I in px^4 [N], in view [N] bool)."""
    with torch.no_grad():
        p = project(g, cam, RenderOptions(antialias="classic", eps2d=eps, sh_degree=0))
        a, b, c = p.conics.unbind(-1)
        det = 1.0 / torch.clamp_min(a * c - b * b, 1e-30)  # det S = 1 / det(conic)
        visible = (p.radii > 0).all(-1) & (det > 0)
    return det.float().cpu(), visible.cpu()
