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
    """Project every Gaussian of g into cam. See :class:`Projection` for the shapes.

    Written with elementwise ops on [N, 3] columns and one [3N, 3] x [3, 3] product:
    torch's batched 3x3 matmuls cost about 200 ns a matrix on the CPU, which made them
    the bulk of a render.
    """
    dev = g.means.device
    viewmat = cam.viewmat.to(dev)
    R, t = viewmat[:3, :3], viewmat[:3, 3]
    mc = g.means @ R.T + t  # [N, 3] camera space
    # Columns of R_cam = R @ R_quat scaled by the standard deviations: cov_c = M M^T.
    cols = quat_to_rotmat(g.quats).transpose(1, 2)  # [N, 3 (column), 3]
    m_cols = (cols.reshape(-1, 3) @ R.T).reshape(-1, 3, 3) * torch.exp(g.log_scales)[..., None]

    tx, ty, tz = mc.unbind(-1)
    tz_safe = torch.where(tz.abs() < 1e-8, torch.full_like(tz, 1e-8), tz)
    fx, fy, cx, cy, w, h = cam.fx, cam.fy, cam.cx, cam.cy, cam.width, cam.height
    lim_xp, lim_xn = (w - cx) / fx + 0.15 * w / fx, cx / fx + 0.15 * w / fx
    lim_yp, lim_yn = (h - cy) / fy + 0.15 * h / fy, cy / fy + 0.15 * h / fy
    inv_z = 1.0 / tz_safe
    # Jacobian of the pinhole at the mean clamped to 1.3x the field of view:
    # J = [[fx/z, 0, -fx xc/z^2], [0, fy/z, -fy yc/z^2]]; rows of J M, one per image axis.
    jx = -fx * torch.clamp(tx * inv_z, -lim_xn, lim_xp) * inv_z  # -fx xc / z^2
    jy = -fy * torch.clamp(ty * inv_z, -lim_yn, lim_yp) * inv_z
    u = (fx * inv_z)[:, None] * m_cols[..., 0] + jx[:, None] * m_cols[..., 2]  # [N, 3]
    v = (fy * inv_z)[:, None] * m_cols[..., 1] + jy[:, None] * m_cols[..., 2]
    a, b, c = (u * u).sum(-1), (u * v).sum(-1), (v * v).sum(-1)  # cov2d = [[a, b], [b, c]]
    means2d = torch.stack([fx * tx * inv_z + cx, fy * ty * inv_z + cy], dim=-1)

    eps, compensate = options.dilation()
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

    return Projection(means2d, conics, tz, radii, opacities, colors_from_sh(g, cam, options))


def sh_degree_used(g: Gaussians, options: RenderOptions) -> int:
    """The SH degree a render evaluates: the options' cap, at most the model's own."""
    return g.sh_degree if options.sh_degree is None else min(options.sh_degree, g.sh_degree)


def colors_from_sh(g: Gaussians, cam: Camera, options: RenderOptions) -> Tensor:
    """RGB seen from the camera centre: SH up to the options' degree, + 0.5, clamped at 0.
    [N, 3]"""
    degree = sh_degree_used(g, options)
    if degree == 0:
        return torch.clamp_min(g.sh[:, 0] * SH_C0 + 0.5, 0.0)
    campos = cam.position.to(g.means.device)
    # Colour depends on the view direction, so the means get a (small) gradient
    # through it too, as in gsplat.
    dirs = torch.nn.functional.normalize(g.means - campos, dim=-1)
    return sh_to_rgb(g.sh, dirs, degree)
