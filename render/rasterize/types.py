"""What a rasterizer returns, and the projected 2D Gaussians it consumes."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor


@dataclass
class Projection:
    """N Gaussians projected into one camera; all tensors stay in the autograd graph.

    Attributes:
        means2d: pixel coordinates of the centres (pixel centres at +0.5). [N, 2]
        conics: inverse 2D covariance (a, b, c): sigma = 0.5 (a dx^2 + c dy^2) + b dx dy. [N, 3]
        depths: camera-space z in world units. [N]
        radii: half-extent of the 3.33-sigma box in whole pixels; 0 = culled. [N, 2] int32
        opacities: opacity after the antialias mode's compensation. [N]
        colors: RGB from SH, clamped at 0. [N, 3]
    """

    means2d: Tensor
    conics: Tensor
    depths: Tensor
    radii: Tensor
    opacities: Tensor
    colors: Tensor

    @property
    def visible(self) -> Tensor:
        """Boolean mask of Gaussians that touch the image. [N]"""
        return (self.radii > 0).all(dim=-1)


@dataclass
class RenderResult:
    """One rendered image.

    Attributes:
        rgb: colour composited over the background. [H, W, 3] float32 in [0, 1]; None
            when bgra8_gl holds the colour instead (RenderOptions.bgra8).
        alpha: accumulated opacity. [H, W, 1]; None with bgra8_gl.
        depth: expected camera-space depth (sum w z / alpha), when asked for. [H, W, 1]
        means2d: the projected centres, in the autograd graph, for densification. [N, 2]
        radii: per-Gaussian box half-extent in pixels (0 = not drawn). [N, 2]
        meta: backend name, Gaussians drawn, pairs blended, timings in ms.
        bgra8_gl: the colour as opaque uint8 BGRA (rounded, clamped), rows bottom first:
            GL's row order and the byte order of GL_BGRA uploads, when RenderOptions.bgra8
            asked the `cpu` backend for it. [H, W, 4]
    """

    rgb: Tensor | None
    alpha: Tensor | None
    depth: Tensor | None
    means2d: Tensor
    radii: Tensor
    meta: dict = field(default_factory=dict)
    bgra8_gl: Tensor | None = None

    @property
    def visible(self) -> Tensor:
        return (self.radii > 0).all(dim=-1)
