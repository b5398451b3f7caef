"""A generic optimisation loop: fit a Gaussian set to (camera, target image) pairs.

Used by the Mipmap-GS finetune (L2 against pseudo-GT) and by base-model training for the
evaluation (random initialisation, L1 + D-SSIM against real images): the loss, the
densification schedule, the learning rates and the render options are all settings.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from adapt.densify import DensifyConfig, DensifyState
from adapt.importance import ImportancePrune, blend_weights, negligible
from adapt.params import LearningRates, Trainable
from render.camera import Camera
from render.gaussians import Gaussians
from render.options import RenderOptions
from render.rasterize import backend_device, render

log = logging.getLogger("mipview.adapt")

Loss = Callable[[Tensor, Tensor], Tensor]
"""loss(rendered [H, W, 3], target [H, W, 3]) -> scalar tensor."""
Progress = Callable[[int, float, int], None]
"""progress(iteration (1-based), loss, number of Gaussians)."""


def l2_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Mean squared error (the Mipmap-GS loss)."""
    return torch.mean((pred - target) ** 2)


def l1_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Mean absolute error (the L1 part of the 3DGS loss)."""
    return torch.mean(torch.abs(pred - target))


class Cancelled(Exception):
    """Raised by :func:`optimize` when should_stop() said so between two steps.

    Attributes:
        gaussians: the set as it was when stopped (detached).
        iteration: the last completed iteration.
    """

    def __init__(self, gaussians: Gaussians, iteration: int) -> None:
        super().__init__(f"optimisation cancelled after {iteration} iterations")
        self.gaussians = gaussians
        self.iteration = iteration


@dataclass(frozen=True)
class OptimizeConfig:
    """Settings of one optimisation run.

    Attributes:
        iters: optimisation steps.
        seed: seeds the view order and the split samples (the run is deterministic for a
            given seed, backend and thread count).
        lrs: learning rates (3DGS defaults); the position rate decays over
            lrs.means_decay_iters.
        densify: densification / pruning schedule.
        loss: loss(rendered, target); L2 by default.
        batch: views rendered per step (their losses are averaged).
        options: render options for the optimised renders (background, antialias mode,
            backend); the background should match the targets'.
        sh_degree_interval: if set, start at SH degree 0 and add one every this many
            iterations up to the model's degree (3DGS uses 1000 when training from scratch).
        extent: scene radius for the learning rates and densification; None = measured
            from the initial set.
        importance: prune by blend weight over the views at the given iterations (see
            adapt.importance); None = off. After such a prune, densification may no
            longer grow the set past the count it left.
    """

    iters: int = 1000
    seed: int = 0
    lrs: LearningRates = field(default_factory=LearningRates)
    densify: DensifyConfig = field(default_factory=DensifyConfig)
    loss: Loss = l2_loss
    batch: int = 1
    options: RenderOptions = field(default_factory=RenderOptions)
    sh_degree_interval: int | None = None
    extent: float | None = None
    importance: ImportancePrune | None = None


def _sh_degree_at(it: int, config: OptimizeConfig, max_degree: int) -> int | None:
    if config.sh_degree_interval is None:
        return config.options.sh_degree
    return min(max_degree, (it - 1) // config.sh_degree_interval)


def optimize(
    model: Trainable | Gaussians,
    views: Sequence[tuple[Camera, Tensor]],
    config: OptimizeConfig | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    prune_views: Sequence[Camera] | None = None,
) -> Gaussians:
    """Fit `model` to the views and return the result (detached, quaternions normalised).

    Args:
        model: a Trainable (continued in place: its optimizer state carries on) or a set
            of Gaussians (copied; the input is not modified).
        views: (camera, target image [H, W, 3] in [0, 1] at the camera's size) pairs.
        config: settings; defaults if None.
        progress: called after every step with (iteration, loss, Gaussians).
        should_stop: polled before every step; when it returns True, raises Cancelled.
        prune_views: the views the importance prune weighs the Gaussians over (whole
            views rather than the crops trained on, so that a Gaussian outside the
            chosen crops is not taken for a useless one); None = the training cameras.
    """
    config = config or OptimizeConfig()
    if not views:
        raise ValueError("optimize needs at least one (camera, image) view")
    for i, (cam, img) in enumerate(views):
        if tuple(img.shape) != (cam.height, cam.width, 3):
            raise ValueError(f"view {i}: target is {tuple(img.shape)}, camera wants "
                             f"[{cam.height}, {cam.width}, 3]")
    device = backend_device(config.options.backend)
    if isinstance(model, Trainable):
        trainable = model
    else:
        trainable = Trainable(model.to(device), config.lrs, config.extent)
    targets = [img.to(device=device, dtype=torch.float32) for _, img in views]
    rng = random.Random(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    state = DensifyState(len(trainable), config.densify, generator=gen)
    max_degree = trainable.gaussians().sh_degree
    order: list[int] = []
    t0 = time.perf_counter()
    for it in range(1, config.iters + 1):
        if should_stop is not None and should_stop():
            raise Cancelled(trainable.snapshot(), it - 1)
        trainable.update_learning_rate(it - 1)
        options = config.options.replace(sh_degree=_sh_degree_at(it, config, max_degree))
        g = trainable.gaussians()
        losses, results = [], []
        for _ in range(config.batch):
            if not order:  # a fresh random pass over all views, like 3DGS's view stack
                order = list(range(len(views)))
                rng.shuffle(order)
            k = order.pop()
            cam = views[k][0]
            res = render(g, cam, options)
            res.means2d.retain_grad()
            losses.append(config.loss(res.rgb, targets[k]))
            results.append((res, cam))
        loss = torch.stack(losses).mean()
        trainable.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            for res, cam in results:
                state.accumulate(res.means2d, res.radii, cam.width, cam.height)
        trainable.optimizer.step()
        del g, results, res
        with torch.no_grad():
            state.step(trainable, it)
        if config.importance is not None and it in config.importance.at:
            _importance_prune(trainable, state, config,
                              prune_views or [cam for cam, _ in views], it)
        if progress is not None:
            progress(it, float(loss.detach()), len(trainable))
    log.debug("optimize: %d iterations in %.1f s, %d Gaussians", config.iters,
              time.perf_counter() - t0, len(trainable))
    return trainable.snapshot()


def _importance_prune(t: Trainable, state: DensifyState, config: OptimizeConfig,
                      cameras: Sequence[Camera], it: int) -> None:
    """Drop the Gaussians whose blend weight over `cameras` is negligible (see
    adapt.importance.negligible) and cap densification at what is left."""
    imp = config.importance
    weights, seen = blend_weights(t.snapshot(), cameras, config.options)
    drop = negligible(weights, seen, imp.weight_fraction, imp.max_fraction)
    n = int(drop.sum())
    if n:
        state.keep(t, ~drop)
    state.cap(len(t))
    log.debug("importance prune at %d: %d dropped, %d left", it, n, len(t))
