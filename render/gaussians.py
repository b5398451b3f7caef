"""The Gaussian set: the one data structure every part of mipview passes around."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
from torch import Tensor

SH_C0 = 0.28209479177387814
"""Band-0 spherical harmonic constant: colour = 0.5 + SH_C0 * f_dc."""


def sh_coeffs_for_degree(degree: int) -> int:
    """Number of SH coefficients K for a degree: (degree + 1)^2."""
    return (degree + 1) ** 2


def sh_degree_for_coeffs(k: int) -> int:
    """Inverse of :func:`sh_coeffs_for_degree`; raises ValueError for a K that is no square."""
    d = int(round(math.sqrt(k))) - 1
    if d < 0 or (d + 1) ** 2 != k:
        raise ValueError(f"{k} SH coefficients is not (degree+1)^2 for any degree")
    return d


@dataclass
class Gaussians:
    """A set of N 3D Gaussians in the INRIA 3DGS parameterisation.

    Attributes:
        means: centres in world units. [N, 3]
        quats: rotations as quaternions (w, x, y, z), unit length. [N, 4]
        log_scales: log of the standard deviations along the local axes. [N, 3]
        opacity_logits: logit of the opacity in (0, 1). [N]
        sh: spherical-harmonic colour coefficients, K = (degree + 1)^2, band 0 first. [N, K, 3]
    """

    means: Tensor
    quats: Tensor
    log_scales: Tensor
    opacity_logits: Tensor
    sh: Tensor

    def __post_init__(self) -> None:
        n = self.means.shape[0]
        shapes = {
            "means": (n, 3),
            "quats": (n, 4),
            "log_scales": (n, 3),
            "opacity_logits": (n,),
        }
        for name, shape in shapes.items():
            got = tuple(getattr(self, name).shape)
            if got != shape:
                raise ValueError(f"Gaussians.{name} has shape {got}, expected {shape}")
        if self.sh.ndim != 3 or self.sh.shape[0] != n or self.sh.shape[2] != 3:
            raise ValueError(f"Gaussians.sh has shape {tuple(self.sh.shape)}, expected [N, K, 3]")
        sh_degree_for_coeffs(self.sh.shape[1])

    # -- derived quantities -------------------------------------------------------------
    def __len__(self) -> int:
        return self.means.shape[0]

    @property
    def sh_degree(self) -> int:
        return sh_degree_for_coeffs(self.sh.shape[1])

    @property
    def device(self) -> torch.device:
        return self.means.device

    @property
    def opacities(self) -> Tensor:
        """Opacity in (0, 1). [N]"""
        return torch.sigmoid(self.opacity_logits)

    @property
    def scales(self) -> Tensor:
        """Standard deviations in world units. [N, 3]"""
        return torch.exp(self.log_scales)

    def bounds(self, quantile: float = 0.0) -> tuple[Tensor, Tensor]:
        """Axis-aligned bounds of the means, ([3], [3]).

        With quantile > 0 the box spans the quantile..1-quantile range per axis, which
        ignores the few far floaters that real captures carry.
        """
        if len(self) == 0:
            z = torch.zeros(3, device=self.device)
            return z, z.clone()
        m = self.means.detach().float()
        if quantile > 0.0:
            # torch.quantile refuses inputs over 2^24 elements; a strided sample is plenty.
            sample = m[:: max(1, len(m) // 1_000_000)]
            q = torch.tensor([quantile, 1.0 - quantile], device=m.device)
            lo_hi = torch.quantile(sample, q, dim=0)
            return lo_hi[0], lo_hi[1]
        return m.min(dim=0).values, m.max(dim=0).values

    def extent(self) -> float:
        """Scene radius as 3DGS defines it for learning rates: half the robust bounding diagonal."""
        lo, hi = self.bounds(quantile=0.01)
        return max(float(torch.linalg.norm(hi - lo)) * 0.5, 1e-6)

    # -- copies and views ---------------------------------------------------------------
    def _map(self, fn) -> Gaussians:
        return Gaussians(**{f.name: fn(getattr(self, f.name)) for f in fields(self)})

    def to(self, device: torch.device | str) -> Gaussians:
        return self._map(lambda t: t.to(device))

    def clone(self) -> Gaussians:
        return self._map(lambda t: t.detach().clone())

    def detach(self) -> Gaussians:
        return self._map(lambda t: t.detach())

    def subset(self, mask: Tensor) -> Gaussians:
        """The Gaussians selected by a boolean mask [N] or an index tensor [M]."""
        return self._map(lambda t: t[mask])

    def with_sh_degree(self, degree: int) -> Gaussians:
        """A copy truncated (or zero-padded) to the given SH degree."""
        k = sh_coeffs_for_degree(degree)
        sh = self.sh[:, :k]
        if sh.shape[1] < k:
            pad = torch.zeros(len(self), k - sh.shape[1], 3, dtype=sh.dtype, device=sh.device)
            sh = torch.cat([sh, pad], dim=1)
        return Gaussians(self.means, self.quats, self.log_scales, self.opacity_logits, sh)

    def tensors(self) -> dict[str, Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @staticmethod
    def concat(parts: list[Gaussians]) -> Gaussians:
        """Concatenate sets of the same SH degree."""
        names = [f.name for f in fields(Gaussians)]
        return Gaussians(**{n: torch.cat([getattr(p, n) for p in parts]) for n in names})

    @staticmethod
    def from_colors(
        means: Tensor,
        colors: Tensor,
        scales: Tensor,
        opacities: Tensor,
        quats: Tensor | None = None,
        sh_degree: int = 0,
    ) -> Gaussians:
        """Build a set from plain values: RGB colours [N, 3] in [0, 1], scales [N, 3]
        (world units, standard deviations), opacities [N] in (0, 1), quats [N, 4] or identity.
        """
        n = means.shape[0]
        if quats is None:
            quats = torch.zeros(n, 4, dtype=torch.float32, device=means.device)
            quats[:, 0] = 1.0
        sh = torch.zeros(n, sh_coeffs_for_degree(sh_degree), 3, device=means.device)
        sh[:, 0] = (colors.float() - 0.5) / SH_C0
        eps = 1e-6
        o = opacities.float().clamp(eps, 1 - eps)
        return Gaussians(
            means=means.float().contiguous(),
            quats=torch.nn.functional.normalize(quats.float(), dim=-1),
            log_scales=torch.log(scales.float().clamp_min(1e-12)),
            opacity_logits=torch.log(o / (1 - o)),
            sh=sh,
        )
