"""Render options shared by every backend."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

AntialiasMode = Literal["classic", "mip", "adaptive", "blend"]
Output = Literal["rgb", "depth", "alpha"]
Backend = Literal["auto", "cpu", "cuda", "reference"]

ANTIALIAS_MODES: tuple[str, ...] = ("classic", "mip", "adaptive", "blend")
OUTPUTS: tuple[str, ...] = ("rgb", "depth", "alpha")
BACKENDS: tuple[str, ...] = ("auto", "cpu", "cuda", "reference")


@dataclass(frozen=True)
class RenderOptions:
    """How to turn Gaussians into pixels.

    Attributes:
        sh_degree: SH degree to evaluate; None uses the model's own.
        background: RGB in [0, 1] composited behind the splats.
        eps2d: the 2D dilation in pixels^2 added to every projected covariance (3DGS: 0.3).
        antialias: `classic` 3DGS dilation by eps2d; `mip` the Mip-Splatting 2D filter
            (dilation by mip_eps2d with opacity scaled by sqrt(det S / det(S + mip_eps2d I)));
            `adaptive` SA-GS-style: the dilation keeps its footprint in the scene, so in
            pixels it is eps2d * zoom^2; `blend` Gaussian Blending (Koo et al. 2026, see
            render/rasterize/cpu_blend.py): alpha and transmittance as distributions
            over the pixel's window, with the `adaptive` dilation. CPU only: the `cuda`
            backend renders it on the CPU.
        mip_eps2d: the Mip-Splatting filter's variance in pixels^2 (0.1 in its paper).
        blend_window: `blend`'s pixel window variance per axis in pixels^2 (1/12: the
            uniform pixel square; -> 0 is classic blending at the pixel centre).
        zoom: the view's effective scale against the model's base sampling rate (>1 finer,
            <1 coarser); only `adaptive` and `blend` use it.
        output: what the viewer shows; `depth` also makes the rasterizer compute depth.
        backend: `auto` (CUDA through gsplat when it works, else CPU), `cpu`, `cuda`, or
            `reference` (the brute-force torch rasterizer, for tests on small scenes).
        absgrad: the backward also sets `means2d.absgrad` [N, 2], per Gaussian the sum
            over pixels of |dL/d means2d| (AbsGS densification), as gsplat's option of
            that name; off, the `cpu` backward is ~9 % faster.
        count_pairs: the `cpu` backend also counts the Gaussian-pixel pairs it blends
            (RenderResult.meta["n_pairs"], a benchmark figure; ~4 % of its forward).
        bgra8: for a display: the `cpu` backend writes the colour as 8-bit BGRA, rows
            bottom first (RenderResult.bgra8_gl), in its blending kernel, instead of the
            float rgb and alpha (None then), when nothing is differentiated and output
            is `rgb`: what a display uploads, without a pass of its own, and about a quarter
            less blending work than the float images. Other backends ignore it.
    """

    sh_degree: int | None = None
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)
    eps2d: float = 0.3
    antialias: AntialiasMode = "classic"
    mip_eps2d: float = 0.1
    blend_window: float = 1.0 / 12.0
    zoom: float = 1.0
    output: Output = "rgb"
    backend: Backend = "auto"
    absgrad: bool = False
    count_pairs: bool = False
    bgra8: bool = False

    def __post_init__(self) -> None:
        if self.antialias not in ANTIALIAS_MODES:
            raise ValueError(f"antialias must be one of {ANTIALIAS_MODES}, got {self.antialias!r}")
        if self.output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {self.output!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.sh_degree is not None and not 0 <= self.sh_degree <= 3:
            raise ValueError(f"sh_degree must be 0..3, got {self.sh_degree}")
        if not self.blend_window > 0:
            raise ValueError(f"blend_window must be positive, got {self.blend_window}")
        if not self.zoom > 0:
            raise ValueError(f"zoom must be positive, got {self.zoom}")

    def dilation(self) -> tuple[float, bool]:
        """(variance added to the 2D covariance in pixels^2, whether opacity is compensated)."""
        if self.antialias == "mip":
            return self.mip_eps2d, True
        if self.antialias in ("adaptive", "blend"):
            return self.eps2d * self.zoom**2, False
        return self.eps2d, False

    def replace(self, **changes) -> RenderOptions:
        return replace(self, **changes)
