"""Adaptive density control as in 3DGS: clone small Gaussians and split large ones where
the view-space positional gradient is high, prune transparent ones, reset opacity.

The gradient statistic is the one 3DGS thresholds at 2e-4: the norm of dL/d(mean2d) in
NDC units, averaged over the iterations in which the Gaussian was drawn. Our rasterizers
give dL/d(mean2d) in pixels; since pixel = (ndc + 1) * size / 2 - 0.5, the NDC gradient
is the pixel gradient times (W/2, H/2) (gsplat's default strategy does the same).
With `absgrad` (AbsGS) the per-pixel absolute gradients summed per Gaussian
(`means2d.absgrad`, set by the backward of the `cpu` and `cuda` backends) replace the
signed sum, so that opposite pixel gradients no longer cancel; AbsGS uses a higher
threshold (gsplat suggests 8e-4 with 2e-4 as the plain one).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from adapt.params import Trainable
from render.rasterize.project import quat_to_rotmat

log = logging.getLogger("mipview.adapt")


@dataclass(frozen=True)
class DensifyConfig:
    """When and how to densify and prune.

    Attributes:
        densify: clone / split at all.
        interval: densify (and prune) every this many iterations.
        start_iter, stop_iter: densify only for start_iter <= it < stop_iter
            (stop_iter None = until the end).
        grad_threshold: mean NDC gradient norm above which a Gaussian grows (3DGS 2e-4).
        absgrad: use AbsGS absolute gradients, compared with abs_grad_threshold.
        percent_dense: clone below, split above this fraction of the scene extent
            (largest axis of the Gaussian).
        split_n: Gaussians a split one becomes (3DGS 2), each scaled by 1 / (0.8 * split_n).
        prune_opacity: remove Gaussians with opacity below this (3DGS 0.005) at each
            densification step, and at every `prune_interval` iterations (None = same
            as interval) also outside the densification window.
        prune_until: stop pruning at this iteration (None = never stop).
        max_screen_size: also prune Gaussians whose 2D radius exceeded this in pixels
            (3DGS 20, after the first opacity reset); None = off.
        opacity_reset_interval: every this many iterations set opacities to at most
            `opacity_reset_value` (None = off; 3DGS uses 3000 in full training).
        max_gaussians: never grow beyond this many (the highest gradients win).
    """

    densify: bool = True
    interval: int = 100
    start_iter: int = 0
    stop_iter: int | None = None
    grad_threshold: float = 2e-4
    absgrad: bool = False
    abs_grad_threshold: float = 8e-4
    percent_dense: float = 0.01
    split_n: int = 2
    prune_opacity: float = 0.005
    prune_interval: int | None = None
    prune_until: int | None = None
    max_screen_size: float | None = None
    opacity_reset_interval: int | None = None
    opacity_reset_value: float = 0.01
    max_gaussians: int | None = None


class DensifyState:
    """Running gradient statistics per Gaussian between densification steps.

    Attributes:
        grad_sum: sum of NDC gradient norms over the iterations the Gaussian was drawn. [N]
        count: iterations in which it was drawn. [N]
        max_radii: largest 2D radius seen, pixels. [N]
    """

    def __init__(self, n: int, config: DensifyConfig,
                 generator: torch.Generator | None = None) -> None:
        self.config = config
        self.generator = generator or torch.Generator().manual_seed(0)
        self.grad_sum = torch.zeros(n)
        self.count = torch.zeros(n)
        self.max_radii = torch.zeros(n)
        self._cap: int | None = None  # set by cap(): below the config's max_gaussians
        self._warned_absgrad = False

    def reset(self, n: int) -> None:
        self.grad_sum = torch.zeros(n)
        self.count = torch.zeros(n)
        self.max_radii = torch.zeros(n)

    def accumulate(self, means2d: Tensor, radii: Tensor, width: int, height: int) -> None:
        """Add one rendered view's statistics; call after backward.

        means2d: the RenderResult's means2d [N, 2] on which retain_grad() was called;
        radii: [N, 2] (0 = not drawn); width, height: the rendered image size in pixels.
        """
        grad = None
        if self.config.absgrad:
            grad = getattr(means2d, "absgrad", None)
            if grad is None and not self._warned_absgrad:
                log.warning("this backend gives no absolute 2D gradients (absgrad); "
                            "AbsGS falls back to the signed gradient")
                self._warned_absgrad = True
        if grad is None:
            grad = means2d.grad
        if grad is None:
            return
        grad = grad.detach().float().cpu()
        drawn = (radii.detach().cpu() > 0).all(dim=-1)
        ndc = grad * torch.tensor([width / 2.0, height / 2.0])
        norm = torch.linalg.norm(ndc, dim=-1)
        self.grad_sum += torch.where(drawn, norm, torch.zeros_like(norm))
        self.count += drawn.float()
        r = radii.detach().cpu().float().max(dim=-1).values
        self.max_radii = torch.where(drawn, torch.maximum(self.max_radii, r), self.max_radii)

    def mean_grad(self) -> Tensor:
        """Mean NDC gradient norm per Gaussian (0 where never drawn). [N]"""
        return torch.where(self.count > 0, self.grad_sum / self.count.clamp_min(1),
                           torch.zeros_like(self.grad_sum))

    # -- the step ---------------------------------------------------------------------------
    def threshold(self) -> float:
        c = self.config
        if c.absgrad and not self._warned_absgrad:
            return c.abs_grad_threshold
        return c.grad_threshold

    def step(self, t: Trainable, it: int) -> dict[str, int]:
        """Run whatever is due at iteration `it` (1-based, after the optimizer step).

        Returns counts {"cloned", "split", "pruned"} of what was done."""
        c = self.config
        done = {"cloned": 0, "split": 0, "pruned": 0}
        in_window = c.start_iter <= it and (c.stop_iter is None or it < c.stop_iter)
        may_prune = c.prune_until is None or it <= c.prune_until
        if c.densify and in_window and it % c.interval == 0:
            done.update(self._grow(t))
            if may_prune:
                done["pruned"] = self._prune(t)
            self.reset(len(t))
        elif may_prune and it % (c.prune_interval or c.interval) == 0:
            done["pruned"] = self._prune(t)
        if c.opacity_reset_interval and it % c.opacity_reset_interval == 0:
            self._reset_opacity(t)
        return done

    def _grow(self, t: Trainable) -> dict[str, int]:
        c = self.config
        grads = self.mean_grad()
        hot = grads >= self.threshold()
        max_scale = torch.exp(t.params["log_scales"].detach().cpu()).max(dim=-1).values
        small = max_scale <= c.percent_dense * t.extent
        clone, split = hot & small, hot & ~small
        limit = self.max_gaussians()
        if limit is not None:
            room = limit - len(t)
            # A split adds split_n - 1 Gaussians, a clone 1; the highest gradients win.
            cost = torch.where(split, float(c.split_n - 1), 1.0) * (clone | split).float()
            if cost.sum() > room:
                order = torch.argsort(grads * (clone | split).float(), descending=True)
                keep_sel = torch.zeros_like(clone)
                budget = torch.cumsum(cost[order], 0) <= max(room, 0)
                keep_sel[order[budget]] = True
                clone, split = clone & keep_sel, split & keep_sel
        n_clone, n_split = int(clone.sum()), int(split.sum())
        if n_clone:
            sel = clone.to(t.device)
            t.append({n: t.params[n].detach()[sel] for n in t.params})
        if n_split:
            self._split(t, split)
        return {"cloned": n_clone, "split": n_split}

    def _split(self, t: Trainable, split: Tensor) -> None:
        """Replace each selected Gaussian by split_n samples drawn from it, with scales
        divided by 0.8 * split_n (3DGS). `split` is a mask [N0] over the Gaussians that
        existed before this step's clones were appended after them."""
        n_total = len(t)
        mask = torch.zeros(n_total, dtype=torch.bool)
        mask[: split.shape[0]] = split
        k = self.config.split_n
        p = {n: v.detach()[mask.to(t.device)] for n, v in t.params.items()}
        scales = torch.exp(p["log_scales"]).repeat(k, 1)
        noise = torch.randn(scales.shape, generator=self.generator).to(scales.device)
        samples = noise * scales
        rots = quat_to_rotmat(p["quats"]).repeat(k, 1, 1)
        new = {n: v.repeat(k, *([1] * (v.dim() - 1))) for n, v in p.items()}
        new["means"] = (rots @ samples.unsqueeze(-1)).squeeze(-1) + new["means"]
        new["log_scales"] = torch.log(scales / (0.8 * k))
        t.append(new)
        keep = torch.ones(len(t), dtype=torch.bool)
        keep[:n_total] = ~mask
        t.prune(keep)

    def _prune(self, t: Trainable) -> int:
        c = self.config
        op = torch.sigmoid(t.params["opacity_logits"].detach().cpu())
        drop = op < c.prune_opacity
        # Right after a growth step the statistics still describe the old set.
        stats_match = self.grad_sum.shape[0] == len(t)
        if c.max_screen_size is not None and stats_match:
            drop |= self.max_radii > c.max_screen_size
        n = int(drop.sum())
        if n == 0 or n == len(t):  # never prune the whole set away
            return 0
        self.keep(t, ~drop)
        return n

    def keep(self, t: Trainable, keep: Tensor) -> None:
        """Prune `t` to the Gaussians where keep [N] (bool) is True, keeping this state's
        statistics in step (or starting them afresh where they no longer describe the set,
        as right after a growth step, which resets them anyway)."""
        t.prune(keep)
        if self.grad_sum.shape[0] == keep.shape[0]:
            keep = keep.cpu()
            self.grad_sum, self.count = self.grad_sum[keep], self.count[keep]
            self.max_radii = self.max_radii[keep]
        else:
            self.reset(len(t))

    def cap(self, n: int) -> None:
        """Never grow beyond n Gaussians from now on (a lower cap than the config's)."""
        self._cap = n if self._cap is None else min(self._cap, n)

    def max_gaussians(self) -> int | None:
        """The growth limit now: the config's max_gaussians, lowered by cap()."""
        caps = [v for v in (self.config.max_gaussians, self._cap) if v is not None]
        return min(caps) if caps else None

    def _reset_opacity(self, t: Trainable) -> None:
        v = self.config.opacity_reset_value
        cap = math.log(v / (1.0 - v))
        t.set_tensor("opacity_logits", torch.clamp_max(t.params["opacity_logits"].detach(), cap))
