"""The Mipmap-GS finetune: a copy of the base set fitted to a level's pseudo-GT.

L2 loss, Adam with the 3DGS learning rates, positions adapting (the official code froze
them by accident: its position rate was 0), densification every 100 iterations with the
3DGS gradient threshold 2e-4 (AbsGS optional), opacity pruning below 0.005 every 100
iterations, 1,000 iterations by default.

Zoom-out levels also get fewer Gaussians than the base (not in the paper, whose sets at
zoom-out shrink only by the opacity prune): neighbours closer than half a target pixel
are merged into one moment-matched Gaussian before the finetune (adapt.merge), and the
densification of a zoom-out level never grows past the merged set. An importance prune
by blend weight (adapt.importance, LightGaussian-style) is there too, off by default:
on the demo chart it cost more PSNR per Gaussian removed than merging (removing the
Gaussians that carry the lowest 2 % of the blend weight at 1/4 took 34 % of them and
5.4 dB after 100 iterations; merging took 46 % for 2.6 dB), because thin structures
whose splats all weigh little go whole and must be rebuilt.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from adapt.densify import DensifyConfig
from adapt.importance import ImportancePrune
from adapt.merge import merge_neighbours
from adapt.optimize import OptimizeConfig, Progress, l2_loss, optimize
from adapt.params import LearningRates
from render.camera import Camera
from render.gaussians import Gaussians
from render.options import RenderOptions


@dataclass(frozen=True)
class FinetuneConfig:
    """Settings of one level's finetune.

    Attributes:
        iters: optimisation steps (paper: 1,000); see zoom_out_budget.
        views: how many adaptation views the caller should build (see adapt.views).
        seed: seeds view order and splits.
        densify_interval: densify and prune every this many iterations (paper code: 100).
        grad_threshold: 3DGS NDC gradient threshold (2e-4).
        absgrad: use AbsGS absolute gradients (threshold abs_grad_threshold).
        prune_opacity: drop Gaussians below this opacity (0.005).
        densify_until: stop densifying at this fraction of the iterations (pruning goes
            on), so the last steps tune what exists.
        max_growth: at zoom-in, never grow beyond this multiple of the base set's size.
        zoom_out_max_growth: the same at zoom-out, as a multiple of the set after the
            merge (1.0: densification may only refill what pruning removed; a coarser
            level needs no more Gaussians than it started with).
        position_lr_final_ratio: the position rate decays over the run from 1.6e-4 x
            extent down by this ratio (3DGS decays 100x over 30k iterations; over a
            1k-iteration finetune we decay 10x).
        background: RGB behind the splats (must match the pseudo-GT's).
        backend: render backend.
        antialias: the rasterizer mode the adapted set is finetuned in and must be shown
            with: `classic` (vanilla 3DGS dilation, as the paper's code), `mip` (the
            Mip-Splatting 2D filter) or `auto` = `mip` for zoom-out levels and `classic`
            for zoom-in. At zoom-out the classic 0.3 px dilation puts a floor under every
            splat's blur that the finetune cannot take away (the ideal reference's box
            filter is 1/12 px^2); the mip filter starts the finetune from its analytic
            fix, so a level converges several times faster and ends sharper.
        zoom_out_merge_px: at zoom-out levels, before the finetune, merge pairs of
            Gaussians closer than this many target pixels into one moment-matched
            Gaussian (adapt.merge; 0 = off, zoom-in never merges). A coarser level
            needs far fewer splats than the base: at 1/4 a base splat covers about
            1/16 of a target pixel, and splats well inside one target pixel are one
            blob to it. Needs the base sampling rates (pixels per world unit).
        zoom_out_merge_passes: merge passes (each can halve the set).
        zoom_out_prune_weight: importance pruning at zoom-out levels (0 = off; zoom-in
            levels never use it). A coarser level needs far fewer splats than the base:
            at 1/4 a base splat covers about 1/16 of a target pixel, and most of them add
            almost nothing that their neighbours cannot carry. At each point of
            `zoom_out_prune_at`, the Gaussians are weighed by their total blend weight
            sum(alpha T) over the whole adaptation views at the target scale
            (adapt.importance), and the least-contributing ones that together carry at
            most this fraction of all the weight are removed (LightGaussian's global
            significance, with a weight budget instead of its fixed 66 % count); the
            iterations after each prune let the neighbours take over. The opacity prune
            alone never thins an opaque set such as the demo chart.
        zoom_out_prune_at: when to prune, as fractions of `iters` (early enough that at
            least half of the run is left to recover).
        zoom_out_prune_max: at most this fraction of the Gaussians goes at one prune.
        zoom_out_budget: how many Gaussian-steps (base Gaussians x steps) a zoom-out
            level may take: a level of a base larger than zoom_out_budget / iters takes
            fewer steps than `iters`, never fewer than zoom_out_min_iters (0 = off). Each
            zoom-out step draws the whole merged set, so a level's time grows with the
            base; its quality gains little past a few hundred steps on large sets (README,
            "Large models").
        zoom_out_min_iters: the fewest steps zoom_out_budget leaves a level.
        warm_start: (classic only) before the finetune, move each Gaussian to where the vanilla
            rasterizer at the target scale draws it with the footprint the base render
            had (see :func:`warm_start`); needs the base sampling rates. Not in the
            paper: it only shortens the way the finetune has to go.
    """

    iters: int = 1000
    views: int = 24
    seed: int = 0
    densify_interval: int = 100
    grad_threshold: float = 2e-4
    absgrad: bool = False
    abs_grad_threshold: float = 8e-4
    prune_opacity: float = 0.005
    densify_until: float = 0.5
    max_growth: float = 1.5
    zoom_out_max_growth: float = 1.0
    position_lr_final_ratio: float = 0.1
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)
    backend: str = "auto"
    antialias: str = "auto"
    zoom_out_merge_px: float = 0.5
    zoom_out_merge_passes: int = 2
    zoom_out_prune_weight: float = 0.0
    zoom_out_prune_at: tuple[float, ...] = (0.2, 0.4)
    zoom_out_prune_max: float = 0.5
    zoom_out_budget: float = 6e8
    zoom_out_min_iters: int = 300
    warm_start: bool = True
    lrs: LearningRates = field(default_factory=LearningRates)

    def base_options(self) -> RenderOptions:
        """How the base set is rendered for the pseudo-GT: the vanilla 3DGS rasterizer."""
        return RenderOptions(background=self.background, antialias="classic",
                             backend=self.backend)

    def antialias_for(self, level: int) -> str:
        if self.antialias == "auto":
            return "mip" if level < 0 else "classic"
        return self.antialias

    def render_options(self, level: int) -> RenderOptions:
        """How a level's adapted set is rendered (finetune, measurement, viewer); zoom is
        the level's scale (only the `adaptive` and `blend` modes read it)."""
        return RenderOptions(background=self.background, antialias=self.antialias_for(level),
                             backend=self.backend, absgrad=self.absgrad, zoom=2.0**level)

    def iters_for(self, level: int, n_base: int) -> int:
        """The steps of a level's finetune from a base of n_base Gaussians: `iters`, at
        zoom-out cut to the zoom_out_budget."""
        if level >= 0 or self.zoom_out_budget <= 0 or n_base <= 0:
            return self.iters
        fit = int(self.zoom_out_budget // n_base)
        return min(self.iters, max(fit, self.zoom_out_min_iters))

    def optimize_config(self, n_base: int, level: int = 1,
                        iters: int | None = None) -> OptimizeConfig:
        """n_base: the count densification may grow from; iters: the steps (`iters`)."""
        iters = self.iters if iters is None else iters
        growth = self.zoom_out_max_growth if level < 0 else self.max_growth
        lrs = LearningRates(
            means_init=self.lrs.means_init,
            means_final=self.lrs.means_init * self.position_lr_final_ratio,
            means_decay_iters=iters, sh_dc=self.lrs.sh_dc, sh_rest=self.lrs.sh_rest,
            opacity=self.lrs.opacity, scales=self.lrs.scales, rotations=self.lrs.rotations)
        densify = DensifyConfig(
            densify=True, interval=self.densify_interval, start_iter=self.densify_interval,
            stop_iter=int(iters * self.densify_until) + 1,
            grad_threshold=self.grad_threshold, absgrad=self.absgrad,
            abs_grad_threshold=self.abs_grad_threshold, prune_opacity=self.prune_opacity,
            max_gaussians=int(n_base * growth))
        return OptimizeConfig(iters=iters, seed=self.seed, lrs=lrs, densify=densify,
                              loss=l2_loss, batch=1, options=self.render_options(level),
                              importance=self.importance_prune(level, iters))

    def importance_prune(self, level: int, iters: int | None = None) -> ImportancePrune | None:
        """The blend-weight prune schedule of a level (zoom-out only) of `iters` steps
        (default `iters`), or None."""
        iters = self.iters if iters is None else iters
        if level >= 0 or self.zoom_out_prune_weight <= 0 or not self.zoom_out_prune_at:
            return None
        at = tuple(sorted({min(iters, max(1, round(f * iters)))
                           for f in self.zoom_out_prune_at}))
        return ImportancePrune(at=at, weight_fraction=self.zoom_out_prune_weight,
                               max_fraction=self.zoom_out_prune_max)


def warm_start(base: Gaussians, base_rate: Tensor, level: int, eps2d: float = 0.3) -> Gaussians:
    """A copy of `base` that the vanilla rasterizer (dilation eps2d px^2) draws at scale
    s = 2^level roughly as the base render looks at that scale.

    Per Gaussian, its two largest axes in target pixels have variances
    v = (sigma * rate * s)^2; the base render drew them with v + eps2d * s^2 (its own
    dilation, seen at the target scale), the vanilla target render draws v + eps2d.
    - Zoom-out (s < 1): area downsampling keeps each splat's mass (opacity x footprint
      area), so opacity is scaled by sqrt(prod(v + eps2d s^2) / prod(v + eps2d)) (< 1),
      the analytic fix the Mip-Splatting 2D filter also makes.
    - Zoom-in (s > 1): the base dilation is larger than the target's in target pixels;
      the difference is baked into all three scales as an isotropic 3D variance
      (sigma^2 += eps2d (s^2 - 1) / (rate s)^2), which projects to an isotropic 2D one
      (R diag(sigma^2 + c) R^T = R diag(sigma^2) R^T + c I): the vanilla render of the
      copy is then the SA-GS-style adaptive render (the finetune starts where that
      training-free mode is). Baked into the two largest scales only, a flat splat seen
      edge-on kept its needle: on lego that start scored 0.8-1.2 dB under the adaptive
      render at x2-x8, all three 0.0-0.1 dB above it (5 test views).
    base_rate: pixels per world unit at the base, per Gaussian. [N]
    """
    s = 2.0**level
    g = base.clone()
    rate = base_rate.to(g.means.device, torch.float32).clamp_min(1e-12)[:, None]
    scales = torch.exp(g.log_scales)
    order = torch.argsort(scales, dim=1, descending=True)
    top2 = order[:, :2]
    sig = torch.gather(scales, 1, top2)  # [N, 2] world units
    var = (sig * rate * s) ** 2  # [N, 2] target px^2
    if level < 0:
        ratio = torch.sqrt(torch.prod(var + eps2d * s * s, 1) / torch.prod(var + eps2d, 1))
        o = (torch.sigmoid(g.opacity_logits) * ratio).clamp(1e-6, 1 - 1e-6)
        g.opacity_logits = torch.log(o / (1 - o))
    elif level > 0:
        extra = eps2d * (s * s - 1.0) / (rate * s) ** 2  # [N, 1] world^2
        g.log_scales = 0.5 * torch.log(scales**2 + extra)
    return g


CHAIN_FROM_LEVEL = 1
"""Zoom-in levels finer than this one are derived from it (see :func:`derive_zoom_in`)."""


def derive_zoom_in(parent: Gaussians, parent_rate: Tensor, steps: int,
                   eps2d: float = 0.3) -> Gaussians:
    """A zoom-in level `steps` levels finer than an adapted `parent` level, with no
    finetune of its own: the parent with the extra dilation of the finer grid baked into
    its scales (:func:`warm_start`), so the vanilla rasterizer draws it at 2^steps x the
    parent's scale as the parent looked at its own.

    Why not a finetune per level: a level's finetune only gains where its pseudo-GT is
    better than its start. From x2 on, the SR of the x2 level's render is not, while
    what the x2 finetune learnt from all views carries over to the finer grids (lego:
    docs/stmt_table.md, row "every level finetuned").
    parent_rate: pixels per world unit of each parent Gaussian at the parent's scale. [N]
    """
    if steps < 1:
        raise ValueError(f"derive_zoom_in: steps must be >= 1, got {steps}")
    return warm_start(parent, parent_rate, steps, eps2d)


def finetune(
    base: Gaussians, level: int, views: list[Camera], pseudo_gt: list[Tensor],
    config: FinetuneConfig | None = None, progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None, base_rate: Tensor | None = None,
    whole_views: list[Camera] | None = None,
) -> Gaussians:
    """Adapt a copy of `base` to one level.

    Args:
        base: the base set (not modified).
        level: the level (for messages; the views carry the scale).
        views: cameras at the target scale.
        pseudo_gt: one target [H, W, 3] per view, at that camera's size.
        config, progress, should_stop: see FinetuneConfig and adapt.optimize.optimize
            (raises adapt.optimize.Cancelled when stopped).
        base_rate: per-Gaussian base sampling rate [N] (BaseSampling.rate) for the warm
            start; without it the finetune starts from the base set itself.
    Returns the adapted set (detached).
    """
    config = config or FinetuneConfig()
    if len(views) != len(pseudo_gt):
        raise ValueError(f"finetune at level {level}: {len(views)} views but "
                         f"{len(pseudo_gt)} pseudo-GT images")
    if level == 0:
        raise ValueError("level 0 is the base set; it is never adapted")
    start = base
    if config.warm_start and base_rate is not None and config.antialias_for(level) == "classic":
        start = warm_start(start, base_rate, level, config.render_options(level).eps2d)
    if level < 0 and config.zoom_out_merge_px > 0 and base_rate is not None:
        radius = config.zoom_out_merge_px / (base_rate.float().cpu().clamp_min(1e-12) * 2.0**level)
        start = merge_neighbours(start, radius, config.zoom_out_merge_passes)
    # At zoom-out, densification may refill what the importance prune takes, never grow
    # past the merged set (zoom_out_max_growth x its size).
    n_cap = len(start) if level < 0 else len(base)
    return optimize(start, list(zip(views, pseudo_gt)),
                    config.optimize_config(n_cap, level, config.iters_for(level, len(base))),
                    progress=progress,
                    should_stop=should_stop, prune_views=whole_views)
