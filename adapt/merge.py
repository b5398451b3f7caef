"""Merging neighbouring Gaussians that a coarser level cannot tell apart.

At a zoom-out level 1/N every base splat covers about 1/N^2 of a target pixel, so two
Gaussians much closer than a target pixel are one blob to that level's pixel grid. This
replaces such pairs by one Gaussian that matches the pair's moments (mass, centre and
covariance, the standard moment-preserving reduction of a Gaussian mixture), so the
level's renders barely change and the finetune starts from a set that is already
smaller; pruning by importance instead (adapt.importance) removes whole thin structures
of the same low weight and the finetune must rebuild them.

Pairs are found in linear-logarithmic time without a k-d tree: the centres are sorted
along a Z-order (Morton) curve on a grid of the merge radius, and consecutive entries
(0-1, 2-3, ...) are paired when they lie within both members' merge radius; a second
sort on a grid shifted by half a cell pairs what the first one split.
"""

from __future__ import annotations

import torch
from torch import Tensor

from render.gaussians import Gaussians
from render.rasterize.project import quat_to_rotmat


def _spread_bits(v: Tensor) -> Tensor:
    """Interleave two zero bits after each of the low 21 bits of v (int64)."""
    v = v & 0x1FFFFF
    v = (v | (v << 32)) & 0x1F00000000FFFF
    v = (v | (v << 16)) & 0x1F0000FF0000FF
    v = (v | (v << 8)) & 0x100F00F00F00F00F
    v = (v | (v << 4)) & 0x10C30C30C30C30C3
    v = (v | (v << 2)) & 0x1249249249249249
    return v


def morton_order(points: Tensor, cell: float, shift: float = 0.0) -> Tensor:
    """Indices that sort points [N, 3] along a Z-order curve on a grid of side `cell`
    (offset by shift * cell). -> [N] int64"""
    q = torch.floor((points - points.min(dim=0).values) / cell + shift).long().clamp(0, 2**21 - 1)
    code = _spread_bits(q[:, 0]) | (_spread_bits(q[:, 1]) << 1) | (_spread_bits(q[:, 2]) << 2)
    return torch.argsort(code, stable=True)


def rotmat_to_quat(r: Tensor) -> Tensor:
    """Unit quaternions (w, x, y, z) of rotation matrices [N, 3, 3] -> [N, 4]
    (the largest of the four candidate components is divided by, for stability)."""
    m = r
    t = m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2]
    cands = torch.stack([
        torch.stack([1 + t, m[:, 2, 1] - m[:, 1, 2], m[:, 0, 2] - m[:, 2, 0],
                     m[:, 1, 0] - m[:, 0, 1]], -1),
        torch.stack([m[:, 2, 1] - m[:, 1, 2], 1 + m[:, 0, 0] - m[:, 1, 1] - m[:, 2, 2],
                     m[:, 0, 1] + m[:, 1, 0], m[:, 0, 2] + m[:, 2, 0]], -1),
        torch.stack([m[:, 0, 2] - m[:, 2, 0], m[:, 0, 1] + m[:, 1, 0],
                     1 - m[:, 0, 0] + m[:, 1, 1] - m[:, 2, 2], m[:, 1, 2] + m[:, 2, 1]], -1),
        torch.stack([m[:, 1, 0] - m[:, 0, 1], m[:, 0, 2] + m[:, 2, 0], m[:, 1, 2] + m[:, 2, 1],
                     1 - m[:, 0, 0] - m[:, 1, 1] + m[:, 2, 2]], -1),
    ], 1)  # [N, 4 candidates, 4]; candidate k has component k = 4 q_k^2 (times a sign)
    diag = torch.stack([1 + t, 1 + m[:, 0, 0] - m[:, 1, 1] - m[:, 2, 2],
                        1 - m[:, 0, 0] + m[:, 1, 1] - m[:, 2, 2],
                        1 - m[:, 0, 0] - m[:, 1, 1] + m[:, 2, 2]], -1)
    best = diag.argmax(-1)
    q = cands[torch.arange(len(m)), best]
    q = torch.nn.functional.normalize(q, dim=-1)
    return torch.where(q[:, :1] < 0, -q, q)


def footprint_mass(g: Gaussians) -> Tensor:
    """Opacity times the area of the two largest axes (sigma_1 sigma_2, world units^2):
    what a splat adds to an area-filtered render, up to the view's projection. [N]"""
    s = torch.sort(torch.exp(g.log_scales), dim=-1, descending=True).values
    return torch.sigmoid(g.opacity_logits) * s[:, 0] * s[:, 1]


def merge_pairs(g: Gaussians, i: Tensor, j: Tensor, max_opacity: float = 0.99) -> Gaussians:
    """Replace each pair (i[k], j[k]) by its moment-matched Gaussian; the others stay.

    Masses m = footprint_mass; the merged centre is the mass-weighted mean, its
    covariance sum_k m_k (Sigma_k + d_k d_k^T) / M (d_k: member centre minus merged
    centre), its SH the mass-weighted mean, and its opacity M / (sigma_1 sigma_2) of the
    merged axes (the pair's mass on the new footprint), at most max_opacity.
    i, j: disjoint index tensors [P]. Returns N - P Gaussians (merged ones last).
    """
    g = g.detach()
    m = footprint_mass(g)
    mi, mj = m[i][:, None], m[j][:, None]
    tot = (mi + mj).clamp_min(1e-30)
    wi, wj = mi / tot, mj / tot  # [P, 1]
    mu = wi * g.means[i] + wj * g.means[j]
    rot = quat_to_rotmat(g.quats)
    sig = torch.exp(g.log_scales)
    cov = rot @ torch.diag_embed(sig**2) @ rot.transpose(1, 2)  # [N, 3, 3]
    di, dj = g.means[i] - mu, g.means[j] - mu
    c = (wi[..., None] * (cov[i] + di[:, :, None] * di[:, None, :])
         + wj[..., None] * (cov[j] + dj[:, :, None] * dj[:, None, :]))
    evals, evecs = torch.linalg.eigh(c.double())
    evecs = evecs.float()
    flip = torch.linalg.det(evecs) < 0  # a rotation, not a reflection
    evecs[flip, :, 0] = -evecs[flip, :, 0]
    scales = torch.sqrt(evals.float().clamp_min(1e-20))  # [P, 3]
    top = torch.sort(scales, dim=-1, descending=True).values
    o = (tot[:, 0] / (top[:, 0] * top[:, 1]).clamp_min(1e-30)).clamp(1e-4, max_opacity)
    sh = wi[..., None] * g.sh[i] + wj[..., None] * g.sh[j]
    keep = torch.ones(len(g), dtype=torch.bool)
    keep[i] = False
    keep[j] = False
    return Gaussians(
        means=torch.cat([g.means[keep], mu]),
        quats=torch.cat([g.quats[keep], rotmat_to_quat(evecs)]),
        log_scales=torch.cat([g.log_scales[keep], torch.log(scales)]),
        opacity_logits=torch.cat([g.opacity_logits[keep], torch.log(o / (1 - o))]),
        sh=torch.cat([g.sh[keep], sh]),
    )


def find_pairs(means: Tensor, radius: Tensor, shift: float = 0.0) -> tuple[Tensor, Tensor]:
    """Disjoint pairs of Gaussians closer than both members' radius, found among
    neighbours on a Z-order curve (grid side: the median radius, offset shift cells).

    means [N, 3], radius [N] world units -> (i [P], j [P]) int64
    """
    if len(means) < 2:
        empty = torch.zeros(0, dtype=torch.long)
        return empty, empty
    cell = float(radius.median().clamp_min(1e-12))
    order = morton_order(means, cell, shift)
    a, b = order[0:-1:2], order[1::2]
    d = torch.linalg.norm(means[a] - means[b], dim=-1)
    ok = d < torch.minimum(radius[a], radius[b])
    return a[ok], b[ok]


def merge_neighbours(g: Gaussians, radius: Tensor, passes: int = 2) -> Gaussians:
    """Merge pairs of Gaussians closer than their radius, `passes` times (each pass sorts
    twice, on grids offset by half a cell, so up to about half the set goes per pass).

    radius: per-Gaussian merge distance in world units [N] (e.g. half a target pixel
    at the Gaussian's depth). A merged Gaussian takes the smaller radius of its pair.
    """
    g = g.detach().to("cpu")
    radius = radius.detach().float().cpu()
    for _ in range(passes):
        merged_any = False
        for shift in (0.0, 0.5):
            i, j = find_pairs(g.means, radius, shift)
            if len(i) == 0:
                continue
            keep = torch.ones(len(g), dtype=torch.bool)
            keep[i] = False
            keep[j] = False
            radius = torch.cat([radius[keep], torch.minimum(radius[i], radius[j])])
            g = merge_pairs(g, i, j)
            merged_any = True
        if not merged_any:
            break
    return g
