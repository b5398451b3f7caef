"""Projection of 3D Gaussians to 2D splats (EWA), in differentiable torch.

Follows gsplat's pinhole projection: the Jacobian is evaluated at the mean clamped to
1.3x the field of view, eps2d is added to the 2D covariance, radii are the 3.33-sigma box.
"""

from __future__ import annotations

import torch
from torch import Tensor

from render.camera import Camera
from render.gaussians import SH_C0, Gaussians
from render.options import RenderOptions
from render.rasterize.types import Projection
from render.sh import sh_to_rgb


def quat_to_rotmat(quats: Tensor) -> Tensor:
    """Rotation matrices from quaternions (w, x, y, z), normalised here. [N, 4] -> [N, 3, 3]"""
    w, x, y, z = torch.nn.functional.normalize(quats, dim=-1).unbind(-1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).reshape(-1, 3, 3)


def covariances3d(quats: Tensor, log_scales: Tensor) -> Tensor:
    """World-space covariances R S S^T R^T. [N, 4], [N, 3] -> [N, 3, 3]"""
    m = quat_to_rotmat(quats) * torch.exp(log_scales)[:, None, :]
    return m @ m.transpose(1, 2)


def project(g: Gaussians, cam: Camera, options: RenderOptions) -> Projection:
    """Project every Gaussian of g into cam. See :class:`Projection` for the shapes."""
    dev = g.means.device
    viewmat = cam.viewmat.to(dev)
    R, t = viewmat[:3, :3], viewmat[:3, 3]
    mc = g.means @ R.T + t  # [N, 3] camera space
    cov_c = R @ covariances3d(g.quats, g.log_scales) @ R.T  # [N, 3, 3]

    tx, ty, tz = mc.unbind(-1)
    tz_safe = torch.where(tz.abs() < 1e-8, torch.full_like(tz, 1e-8), tz)
    fx, fy, cx, cy, w, h = cam.fx, cam.fy, cam.cx, cam.cy, cam.width, cam.height
    lim_xp, lim_xn = (w - cx) / fx + 0.15 * w / fx, cx / fx + 0.15 * w / fx
    lim_yp, lim_yn = (h - cy) / fy + 0.15 * h / fy, cy / fy + 0.15 * h / fy
    txc = tz_safe * torch.clamp(tx / tz_safe, -lim_xn, lim_xp)
    tyc = tz_safe * torch.clamp(ty / tz_safe, -lim_yn, lim_yp)
    zero = torch.zeros_like(tz)
    J = torch.stack(
        [fx / tz_safe, zero, -fx * txc / tz_safe**2,
         zero, fy / tz_safe, -fy * tyc / tz_safe**2], dim=-1,
    ).reshape(-1, 2, 3)
    cov2d = J @ cov_c @ J.transpose(1, 2)  # [N, 2, 2]
    means2d = torch.stack([fx * tx / tz_safe + cx, fy * ty / tz_safe + cy], dim=-1)

    eps, compensate = options.dilation()
    a, b, c = cov2d[:, 0, 0], 0.5 * (cov2d[:, 0, 1] + cov2d[:, 1, 0]), cov2d[:, 1, 1]
    det_orig = a * c - b * b
    a, c = a + eps, c + eps
    det = torch.clamp_min(a * c - b * b, 1e-10)
    conics = torch.stack([c / det, -b / det, a / det], dim=-1)

    opacities = torch.sigmoid(g.opacity_logits)
    if compensate:
        opacities = opacities * torch.sqrt(torch.clamp_min(det_orig / det, 0.0))

    with torch.no_grad():
        radius = torch.stack([torch.ceil(3.33 * torch.sqrt(a.clamp_min(0))),
                              torch.ceil(3.33 * torch.sqrt(c.clamp_min(0)))], dim=-1)
        valid = (a * c - b * b > 0) & (tz > cam.near) & (tz < cam.far)
        mx, my = means2d[:, 0], means2d[:, 1]
        inside = ((mx + radius[:, 0] > 0) & (mx - radius[:, 0] < w)
                  & (my + radius[:, 1] > 0) & (my - radius[:, 1] < h))
        radius[~(valid & inside)] = 0
        radii = radius.to(torch.int32)

    degree = g.sh_degree if options.sh_degree is None else min(options.sh_degree, g.sh_degree)
    if degree > 0:
        campos = cam.position.to(dev)
        # Colour depends on the view direction, so the means get a (small) gradient
        # through it too, as in gsplat.
        dirs = torch.nn.functional.normalize(g.means - campos, dim=-1)
        colors = sh_to_rgb(g.sh, dirs, degree)
    else:
        colors = torch.clamp_min(g.sh[:, 0] * SH_C0 + 0.5, 0.0)
    return Projection(means2d, conics, tz, radii, opacities, colors)
