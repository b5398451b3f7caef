"""Which views a level is adapted on, and which are held out to measure it.

Views are cameras at the TARGET scale of the level: a base camera at level L becomes
the same pose and field of view on a pixel grid 2^L times finer (zoom-in) or coarser
(zoom-out), which is the single-scale-train / multi-scale-test protocol of the paper.
Views around the user's current view (already at about the target scale) are added,
jittered by orbiting about the point the view looks at. Large targets are cut into
crops (cameras with a shifted principal point) so memory stays bounded.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
import torch

from render.camera import Camera
from render.gaussians import Gaussians


@dataclass(frozen=True)
class ViewSettings:
    """How many views to adapt on.

    Attributes:
        n_views: adaptation views in all (base cameras first, then jittered user views).
        n_user: how many of them are jittered copies of the user's view (when given).
        holdout_every: every k-th base camera is held out for measuring (never adapted on).
        jitter_deg: orbit jitter around the user's view, degrees.
        max_crop_pixels: a target larger than this is cut into crops.
        crop: crop side in pixels (a multiple of 8, so every level's factor divides it).
        crops_per_view: at most this many crops per large view (the ones with most
            content first, ties broken by the seed).
        seed: seeds the choice of views, jitter and crops.
        zoom_out_supersample: the zoom-out pseudo-GT renders the base at
            max(N, this) times the target resolution before area-downsampling. 1 gives
            exactly the base rate (the paper's mipmap level); the default 8 makes the
            pseudo-GT the ideal reference (the base's Gaussians area-sampled finely,
            without the base render's own 0.3 px dilation thickening them).
    """

    n_views: int = 24
    n_user: int = 8
    holdout_every: int = 4
    jitter_deg: float = 8.0
    max_crop_pixels: int = 320 * 320
    crop: int = 256
    crops_per_view: int = 4
    seed: int = 0
    zoom_out_supersample: int = 8


@dataclass
class ViewSplit:
    """Adaptation views and held-out views, all cameras at the target scale."""

    adapt: list[Camera]
    held_out: list[Camera]


def at_level(cam: Camera, level: int) -> Camera:
    """The camera on a pixel grid 2^level times finer, keeping the pose and the field of
    view: intrinsics scaled exactly, size rounded to whole pixels."""
    return cam.scaled(2.0**level)


def rescaled_exact(cam: Camera, factor: float) -> Camera:
    """The camera whose pixel grid is `factor` times finer, with the intrinsics scaled by
    exactly `factor` and the size ceil(w * factor) x ceil(h * factor), so that pixel
    (i, j) of the result covers exactly the target's pixels [i/f, (i+1)/f)."""
    w, h = math.ceil(cam.width * factor - 1e-6), math.ceil(cam.height * factor - 1e-6)
    return Camera(cam.viewmat, cam.fx * factor, cam.fy * factor, cam.cx * factor,
                  cam.cy * factor, w, h, cam.near, cam.far)


def _rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    axis = axis / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * (k @ k)


def pivot_depth(cam: Camera, gaussians: Gaussians | None) -> float:
    """Median depth of the Gaussian centres in front of the camera (1.0 if unknown)."""
    if gaussians is None or len(gaussians) == 0:
        return 1.0
    means = gaussians.means.detach().float().cpu()[:: max(1, len(gaussians) // 20_000)]
    vm = cam.viewmat
    z = means @ vm[2, :3] + vm[2, 3]
    z = z[z > cam.near]
    return float(z.median()) if len(z) else 1.0


def jittered(cam: Camera, n: int, jitter_deg: float, pivot: float, seed: int) -> list[Camera]:
    """n views orbiting `cam` about the point `pivot` units ahead of it, by random
    angles up to jitter_deg about the camera's x and y axes."""
    rng = random.Random(seed)
    c2w = cam.c2w.double().numpy()
    centre = c2w[:3, 3] + c2w[:3, 2] * pivot
    out = []
    for _ in range(n):
        a = math.radians(rng.uniform(-jitter_deg, jitter_deg))
        b = math.radians(rng.uniform(-jitter_deg, jitter_deg))
        rot = _rotation(c2w[:3, 1], a) @ _rotation(c2w[:3, 0], b)
        new = np.eye(4)
        new[:3, :3] = rot @ c2w[:3, :3]
        new[:3, 3] = centre + rot @ (c2w[:3, 3] - centre)
        vm = torch.from_numpy(np.linalg.inv(new)).float()
        out.append(cam.with_viewmat(vm))
    return out


def select_views(
    base_cameras: list[Camera], level: int, settings: ViewSettings,
    current_view: Camera | None = None, gaussians: Gaussians | None = None,
) -> ViewSplit:
    """The adaptation and held-out views for a level (cameras at the target scale).

    Every `holdout_every`-th base camera (by index, deterministic) is held out; the
    others, up to n_views - n_user, are adaptation views (evenly thinned when there are
    more, topped up with jittered copies when there are fewer); then jittered copies of
    the user's view (which is already at the target scale) fill the rest.
    """
    held = [c for i, c in enumerate(base_cameras)
            if settings.holdout_every and i % settings.holdout_every == settings.holdout_every - 1]
    train = [c for i, c in enumerate(base_cameras)
             if not (settings.holdout_every
                     and i % settings.holdout_every == settings.holdout_every - 1)]
    n_user = min(settings.n_user, settings.n_views) if current_view is not None else 0
    n_base = max(settings.n_views - n_user, 0 if n_user else 1)
    if len(train) > n_base:
        idx = np.linspace(0, len(train) - 1, n_base).round().astype(int)
        train = [train[i] for i in idx]
    elif train and len(train) < n_base:
        # Pseudo-GT can be rendered from any view, so few base cameras are topped up
        # with jittered copies of them (orbiting about what each looks at): the
        # adapted set then generalises to views between them.
        extra = []
        for k in range(n_base - len(train)):
            src = train[k % len(train)]
            extra += jittered(src, 1, settings.jitter_deg, pivot_depth(src, gaussians),
                              settings.seed * 7919 + k)
        train = train + extra
    adapt = [at_level(c, level) for c in train]
    if n_user:
        adapt += jittered(current_view, n_user, settings.jitter_deg,
                          pivot_depth(current_view, gaussians), settings.seed)
    return ViewSplit(adapt, [at_level(c, level) for c in held])


def crop_grid(cam: Camera, crop: int) -> list[Camera]:
    """The camera cut into crops of at most crop x crop pixels, covering it exactly."""
    out = []
    for y in range(0, cam.height, crop):
        for x in range(0, cam.width, crop):
            out.append(cam.crop(x, y, min(crop, cam.width - x), min(crop, cam.height - y)))
    return out


def needs_crops(cam: Camera, settings: ViewSettings) -> bool:
    return cam.width * cam.height > settings.max_crop_pixels
