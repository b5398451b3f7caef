"""Training a base model from posed images on CPU (NeRF-synthetic style, random init).

The protocol needs base models trained at ONE scale; this is the small piece that turns
a folder of posed images into one: random Gaussians in the scene box (as 3DGS does for
NeRF-synthetic, which ships no point cloud), the 3DGS photometric loss
(1 - lambda) L1 + lambda (1 - SSIM), and the generic optimiser of :mod:`adapt.optimize`
(3DGS learning rates, densification) to fit them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from render import Gaussians
from render.gaussians import SH_C0, sh_coeffs_for_degree


@dataclass
class TrainConfig:
    """How to train a base.

    Attributes:
        iters: optimisation steps (one random training view each).
        n_init: random Gaussians in the scene box at the start.
        init_opacity: their opacity (3DGS: 0.1).
        sh_degree: SH degree of the model (view-dependent colour); 0 is flat colour.
        ssim_weight: lambda of the D-SSIM term (3DGS: 0.2).
        seed: seeds the init and the view order; the same seed gives the same model.
        carve: drop init points that most views see over the plain background.
    """

    iters: int = 1500
    n_init: int = 30_000
    init_opacity: float = 0.1
    sh_degree: int = 1
    ssim_weight: float = 0.2
    seed: int = 0
    carve: bool = True


def nearest_neighbour_scale(points: np.ndarray, k: int = 3, chunk: int = 2048) -> np.ndarray:
    """Root-mean-square distance of each point to its k nearest others, as 3DGS sizes its
    initial Gaussians. [N, 3] -> [N] world units. A k-d tree when scipy is there (it
    usually is), else exact brute force in row chunks (seconds for 10^4 points)."""
    try:
        from scipy.spatial import cKDTree
    except ImportError:  # optional: the exact brute force below gives the same numbers
        cKDTree = None
    if cKDTree is not None and len(points) > k:
        d, _ = cKDTree(points).query(points, k=k + 1)
        return np.sqrt(np.maximum((d[:, 1:] ** 2).mean(axis=1), 1e-14))
    pts = torch.from_numpy(np.ascontiguousarray(points, dtype=np.float32))
    n = pts.shape[0]
    kk = min(k, max(n - 1, 1))
    out = torch.empty(n)
    for start in range(0, n, chunk):
        d2 = torch.cdist(pts[start:start + chunk], pts).square_()
        rows = torch.arange(d2.shape[0])
        d2[rows, rows + start] = float("inf")  # not its own neighbour
        near = torch.topk(d2, kk, dim=1, largest=False).values if n > 1 else d2[:, :0]
        out[start:start + chunk] = near.mean(dim=1) if n > 1 else 0.0
    return np.sqrt(np.maximum(out.numpy().astype(np.float64), 1e-14))


def random_init(lo: Tensor, hi: Tensor, n: int, sh_degree: int = 0, opacity: float = 0.1,
                seed: int = 0) -> Gaussians:
    """n Gaussians uniform in the box [lo, hi] ([3], [3] world units): random colours,
    isotropic, sized by their nearest neighbours, identity rotation, higher SH bands zero.
    """
    rng = np.random.default_rng(seed)
    lo_n, hi_n = lo.double().numpy(), hi.double().numpy()
    pts = (lo_n + rng.random((n, 3)) * (hi_n - lo_n)).astype(np.float32)
    colors = rng.random((n, 3)).astype(np.float32)
    scale = nearest_neighbour_scale(pts).astype(np.float32)
    sh = torch.zeros(n, sh_coeffs_for_degree(sh_degree), 3)
    sh[:, 0] = (torch.from_numpy(colors) - 0.5) / SH_C0
    quats = torch.zeros(n, 4)
    quats[:, 0] = 1.0
    logit = math.log(opacity / (1.0 - opacity))
    return Gaussians(
        means=torch.from_numpy(pts),
        quats=quats,
        log_scales=torch.log(torch.from_numpy(scale))[:, None].repeat(1, 3),
        opacity_logits=torch.full((n,), logit),
        sh=sh,
    )


def photometric_loss(rendered: Tensor, target: Tensor, ssim_weight: float = 0.2) -> Tensor:
    """The 3DGS training loss (1 - w) L1 + w (1 - SSIM), differentiable.

    [H, W, 3], [H, W, 3] in [0, 1] -> scalar
    """
    l1 = (rendered - target).abs().mean()
    if ssim_weight <= 0:
        return l1
    from pytorch_msssim import ssim

    x = rendered.permute(2, 0, 1)[None]
    y = target.permute(2, 0, 1)[None]
    win = min(11, min(x.shape[-2:]) - (1 - min(x.shape[-2:]) % 2))
    s = ssim(x, y, data_range=1.0, size_average=True, win_size=max(3, win))
    return (1.0 - ssim_weight) * l1 + ssim_weight * (1.0 - s)


def carve_to_foreground(points: Tensor, cameras, images: Tensor, min_fraction: float = 0.9,
                        background: tuple[float, float, float] = (1.0, 1.0, 1.0),
                        tol: float = 2.0 / 255.0, dilate: int = 1) -> Tensor:
    """Keep the points that most training views see on the object, not on the background.

    A visual hull from the images themselves: a point is kept when, in at least
    `min_fraction` of the views that see it, it projects onto a pixel (or next to one,
    `dilate` pixels) that differs from the plain background. Random points in empty space
    cost CPU time in every early step and teach nothing, so the box init is carved first.

    Args:
        points: candidate positions. [N, 3]
        cameras: the training cameras (their size must match the images).
        images: training images composited on `background`. [V, H, W, 3]
    Returns:
        boolean mask of the points to keep. [N]
    """
    bg = torch.tensor(background, dtype=torch.float32)
    fg = ((images - bg).abs().amax(dim=-1) > tol).float()  # [V, H, W]
    if dilate > 0:
        k = 2 * dilate + 1
        fg = torch.nn.functional.max_pool2d(fg[:, None], k, stride=1, padding=dilate)[:, 0]
    seen = torch.zeros(points.shape[0])
    hits = torch.zeros(points.shape[0])
    for cam, mask in zip(cameras, fg, strict=True):
        pc = points @ cam.viewmat[:3, :3].T + cam.viewmat[:3, 3]
        z = pc[:, 2]
        u = cam.fx * pc[:, 0] / z.clamp_min(1e-6) + cam.cx
        v = cam.fy * pc[:, 1] / z.clamp_min(1e-6) + cam.cy
        inside = (z > 0) & (u >= 0) & (u < cam.width) & (v >= 0) & (v < cam.height)
        ui = u.clamp(0, cam.width - 1).long()
        vi = v.clamp(0, cam.height - 1).long()
        on_fg = mask[vi, ui] > 0
        seen += inside.float()
        hits += (inside & on_fg).float()
    return (seen > 0) & (hits >= min_fraction * seen)


@dataclass
class TrainStats:
    """What a training run took and left."""

    seconds: float
    iters: int
    n_gaussians: int
    final_loss: float


ProgressFn = Callable[[int, int, float, int], None]  # (step, total, loss, n_gaussians)


def camera_extent(cameras) -> float:
    """3DGS's scene radius: 1.1 x the largest distance of a camera centre from their mean."""
    c = torch.stack([cam.position for cam in cameras])
    return 1.1 * float((c - c.mean(dim=0)).norm(dim=-1).max().clamp_min(1e-6))


def init_in_box(lo: Tensor, hi: Tensor, n: int, cameras, images: Tensor, sh_degree: int,
                opacity: float, seed: int, carve: bool = True) -> Gaussians:
    """n random Gaussians in the box, carved to the images' foreground when `carve`
    (candidates are drawn in rounds until n survive, or the box is exhausted)."""
    if not carve:
        return random_init(lo, hi, n, sh_degree, opacity, seed)
    gen = torch.Generator().manual_seed(seed)
    kept: list[Tensor] = []
    total = 0
    for _ in range(50):
        cand = lo + torch.rand(max(4 * n, 10_000), 3, generator=gen) * (hi - lo)
        pts = cand[carve_to_foreground(cand, cameras, images)]
        kept.append(pts)
        total += len(pts)
        if total >= n:
            break
    pts = torch.cat(kept)[:n]
    if len(pts) < 16:  # nothing in front of the background: fall back to the whole box
        return random_init(lo, hi, n, sh_degree, opacity, seed)
    g = random_init(torch.zeros(3), torch.ones(3), len(pts), sh_degree, opacity, seed)
    scale = torch.from_numpy(nearest_neighbour_scale(pts.numpy()).astype(np.float32))
    return Gaussians(pts.contiguous(), g.quats, torch.log(scale)[:, None].repeat(1, 3),
                     g.opacity_logits, g.sh)


def train_schedule(iters: int, extent: float, ssim_weight: float = 0.2,
                   max_gaussians: int = 300_000):
    """The 3DGS training recipe compressed into `iters` steps (an OptimizeConfig).

    3DGS densifies from step 500 to 15,000 of 30,000 every 100 steps and resets opacity
    every 3,000; here densification runs from 10 % to 60 % of the run, every 100 steps,
    with one opacity reset half-way (runs of 1,000 steps or more), and the position rate
    decays 100x over the run. SH bands are switched on one by one every quarter of the
    run up to the model's degree.
    """
    from adapt.densify import DensifyConfig
    from adapt.optimize import OptimizeConfig
    from adapt.params import LearningRates
    from render import RenderOptions

    densify = DensifyConfig(
        interval=100, start_iter=max(100, iters // 10), stop_iter=int(0.6 * iters),
        opacity_reset_interval=(iters // 2 + 1) if iters >= 1000 else None,
        max_gaussians=max_gaussians)
    return OptimizeConfig(
        iters=iters, lrs=LearningRates(means_decay_iters=iters), densify=densify,
        loss=lambda r, t: photometric_loss(r, t, ssim_weight),
        options=RenderOptions(background=(1.0, 1.0, 1.0)),
        sh_degree_interval=max(1, iters // 4), extent=extent)


def train_base(
    data,
    box: tuple[Tensor, Tensor],
    config: TrainConfig,
    progress: ProgressFn | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[Gaussians, TrainStats]:
    """Train a base model on posed images (a PosedImages: cameras and [V, H, W, 3] images)
    from a seeded random init in `box` with the 3DGS loss, through adapt.optimize.

    Returns (Gaussians, stats); stats.seconds includes the init. progress gets
    (step, total, loss, Gaussians); should_stop raises adapt.optimize.Cancelled.
    """
    from dataclasses import replace

    from adapt.optimize import optimize

    t0 = time.perf_counter()
    torch.manual_seed(config.seed)
    init = init_in_box(box[0], box[1], config.n_init, data.cameras, data.images,
                       config.sh_degree, config.init_opacity, config.seed, config.carve)
    extent = camera_extent(data.cameras)
    opt = replace(train_schedule(config.iters, extent, config.ssim_weight), seed=config.seed)
    last = {"loss": float("nan")}

    def report(it: int, loss: float, n: int) -> None:
        last["loss"] = loss
        if progress is not None:
            progress(it, config.iters, loss, n)

    g = optimize(init, list(zip(data.cameras, data.images, strict=True)), opt, report,
                 should_stop)
    return g, TrainStats(time.perf_counter() - t0, config.iters, len(g), last["loss"])
