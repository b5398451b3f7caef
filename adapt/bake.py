"""A mip-filter level baked for viewers that know no anti-aliasing tag.

Zoom-out levels are finetuned and drawn with the Mip-Splatting 2D filter (dilation
`mip_eps2d` px^2 with opacity compensation) and written tagged `antialiased`. A viewer that
ignores the tag draws them classic (dilation `classic_eps2d` px^2, no compensation):
brighter, thicker splats. `bake_mip_filter` makes a copy that the classic rasterizer draws
as the mip filter draws the level, at the pixel rate the level is meant for.
"""

from __future__ import annotations

import torch
from torch import Tensor

from render.gaussians import Gaussians

# An axis keeps at least this fraction of its variance when the extra classic dilation is
# taken out of it: a flat splat's thin axis must not vanish (or turn negative).
MIN_VARIANCE_KEPT = 0.01


def bake_mip_filter(g: Gaussians, rate: Tensor, mip_eps2d: float = 0.1,
                    classic_eps2d: float = 0.3) -> Gaussians:
    """A copy of `g` that classic rendering draws as the mip filter draws `g`.

    Per Gaussian, at `rate` pixels per world unit (the level's sampling rate):
    - the larger classic dilation is taken back out of all three scales as an isotropic
      3D variance, sigma^2 -= (classic_eps2d - mip_eps2d) / rate^2, which projects to an
      isotropic 2D one; floored at MIN_VARIANCE_KEPT of sigma^2 (a sub-pixel splat then
      stays wider than the filtered one);
    - opacity is scaled so that the splat's mass (opacity x footprint area) is what the
      mip filter gives, o sqrt(prod(v)): o' = o sqrt(prod(v) / prod(v' + classic_eps2d))
      over the two largest axes, v = (sigma * rate)^2 px^2 before, v' after.
    Exact for a splat seen at `rate` whose axes stay above the floor; mass-preserving
    otherwise.

    Args:
        g: the level (not modified).
        rate: pixels per world unit at which each Gaussian is meant to be seen. [N]
        mip_eps2d, classic_eps2d: the two dilations, px^2 (RenderOptions' defaults).
    Returns the baked copy (detached).
    """
    rate = rate.to(g.means.device, torch.float32).clamp_min(1e-12)[:, None]
    out = g.detach().clone()
    var = torch.exp(2.0 * out.log_scales)  # [N, 3] world^2
    shrunk = torch.maximum(var - (classic_eps2d - mip_eps2d) / rate**2, var * MIN_VARIANCE_KEPT)
    out.log_scales = 0.5 * torch.log(shrunk)
    v = torch.topk(var, 2, dim=1).values * rate**2  # [N, 2] px^2, as the level was drawn
    v_baked = torch.topk(shrunk, 2, dim=1).values * rate**2
    ratio = torch.sqrt(torch.prod(v, 1) / torch.prod(v_baked + classic_eps2d, 1))
    o = (torch.sigmoid(out.opacity_logits) * ratio).clamp(1e-6, 1 - 1e-6)
    out.opacity_logits = torch.log(o / (1 - o))
    return out
