"""Real spherical harmonics up to degree 3, as 3DGS evaluates view-dependent colour."""

from __future__ import annotations

import torch
from torch import Tensor

from render.gaussians import SH_C0

SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005,
         -1.0925484305920792, 0.5462742152960396)
SH_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
         -0.4570457994644658, 1.445305721320277, -0.5900435899266435)


def sh_basis(degree: int, dirs: Tensor) -> Tensor:
    """SH basis functions at unit directions. dirs [N, 3] -> [N, (degree+1)^2]"""
    x, y, z = dirs.unbind(-1)
    out = [torch.full_like(x, SH_C0)]
    if degree >= 1:
        out += [-SH_C1 * y, SH_C1 * z, -SH_C1 * x]
    if degree >= 2:
        xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
        out += [SH_C2[0] * xy, SH_C2[1] * yz, SH_C2[2] * (2.0 * zz - xx - yy), SH_C2[3] * xz,
                SH_C2[4] * (xx - yy)]
    if degree >= 3:
        out += [
            SH_C3[0] * y * (3 * xx - yy),
            SH_C3[1] * xy * z,
            SH_C3[2] * y * (4 * zz - xx - yy),
            SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy),
            SH_C3[4] * x * (4 * zz - xx - yy),
            SH_C3[5] * z * (xx - yy),
            SH_C3[6] * x * (xx - 3 * yy),
        ]
    return torch.stack(out, dim=-1)


def sh_to_rgb(sh: Tensor, dirs: Tensor, degree: int) -> Tensor:
    """View-dependent colour: sum_k basis_k(dir) * sh_k + 0.5, clamped at 0.

    sh [N, K, 3] (only the first (degree+1)^2 used), dirs [N, 3] unit -> [N, 3]
    """
    k = (degree + 1) ** 2
    basis = sh_basis(degree, dirs)  # [N, k]
    rgb = (basis.unsqueeze(-1) * sh[:, :k]).sum(dim=1)
    return torch.clamp_min(rgb + 0.5, 0.0)
