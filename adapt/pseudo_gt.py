"""Mipmap pseudo ground truth: what the base set looks like at another scale.

- Zoom-out 1/N: render the base set at N times the target resolution (its own sampling
  rate) and area-downsample by N (an exact box filter: antialiased, unlike the bilinear
  resize without prefilter of the official code). By default (ViewSettings.
  zoom_out_supersample = 8) levels above 1/8 render finer still, at 8 x the target
  resolution: the base render's 0.3 px dilation is part of how it looks at the base rate,
  not of the scene, and at 1/2 or 1/4 it would otherwise be baked into the level.
- Zoom-in xN: render the base set at the base rate (1/N of the target resolution, plus a
  margin of context) and upsample by N with an :class:`~adapt.upsample.Upsampler`.

The same functions give the measuring reference: for zoom-out an 8x supersampled render
of the base, area-downsampled; for zoom-in the upsampled base render.
Images are [H, W, 3] float32 in [0, 1], composited over options.background.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import torch
from torch import Tensor

from adapt.metrics import psnr
from adapt.upsample import Upsampler, area_downsample
from adapt.views import ViewSettings, crop_grid, needs_crops, rescaled_exact
from render.camera import Camera
from render.gaussians import Gaussians
from render.options import RenderOptions
from render.rasterize import render

RENDER_TILE = 512
"""Renders larger than this on a side are done in crops of this size (bounded memory)."""
ZOOM_IN_MARGIN = 8
"""Base pixels of context rendered around a zoom-in crop so the upsampler sees across
the crop's edges."""
REFERENCE_SUPERSAMPLING = 8


@torch.no_grad()
def render_tiled(g: Gaussians, cam: Camera, options: RenderOptions,
                 tile: int = RENDER_TILE) -> Tensor:
    """Render cam's full image [H, W, 3] in crops of at most tile x tile pixels."""
    if cam.width <= tile and cam.height <= tile:
        return render(g, cam, options).rgb.detach().cpu()
    out = torch.empty(cam.height, cam.width, 3)
    for y in range(0, cam.height, tile):
        for x in range(0, cam.width, tile):
            w, h = min(tile, cam.width - x), min(tile, cam.height - y)
            out[y:y + h, x:x + w] = render(g, cam.crop(x, y, w, h), options).rgb.detach().cpu()
    return out


def zoom_out_target(base: Gaussians, cam: Camera, factor: int,
                    options: RenderOptions) -> Tensor:
    """Render at `factor` x the resolution of cam and area-downsample. [H, W, 3]"""
    fine = rescaled_exact(cam, float(factor))
    return area_downsample(render_tiled(base, fine, options), factor)


def zoom_in_target(base: Gaussians, cam: Camera, factor: int, upsampler: Upsampler,
                   options: RenderOptions, margin: int = ZOOM_IN_MARGIN) -> Tensor:
    """Render at 1/factor the resolution of cam (plus `margin` base pixels of context on
    every side), upsample by factor, cut out cam's pixels. [H, W, 3]
    An upsampler with `renders_at_target` (adapt.upsample.AdaptiveRender) instead draws
    the base at cam's own resolution with the adaptive dilation (zoom = factor)."""
    if getattr(upsampler, "renders_at_target", False):
        return render_tiled(base, cam, options.replace(antialias="adaptive", zoom=float(factor)))
    coarse = rescaled_exact(cam, 1.0 / factor)
    coarse = coarse.crop(-margin, -margin, coarse.width + 2 * margin,
                         coarse.height + 2 * margin)
    up = upsampler(render_tiled(base, coarse, options), factor)
    m = margin * factor
    return up[m:m + cam.height, m:m + cam.width].contiguous()


def pseudo_gt(base: Gaussians, cam: Camera, level: int, upsampler: Upsampler,
              options: RenderOptions, zoom_out_supersample: int = 1) -> Tensor:
    """The level's pseudo-GT for a camera at the target scale. [H, W, 3]

    Zoom-out renders at max(2^-level, zoom_out_supersample) x the target resolution
    (1: exactly the base rate)."""
    if level < 0:
        return zoom_out_target(base, cam, max(2 ** -level, zoom_out_supersample), options)
    if level > 0:
        return zoom_in_target(base, cam, 2 ** level, upsampler, options)
    return render_tiled(base, cam, options)


def reference(base: Gaussians, cam: Camera, level: int, upsampler: Upsampler,
              options: RenderOptions) -> Tensor:
    """What a level is measured against on held-out views: zoom-out, the base rendered
    8x supersampled and area-downsampled; zoom-in, the upsampled base render."""
    if level < 0:
        return zoom_out_target(base, cam, REFERENCE_SUPERSAMPLING, options)
    return pseudo_gt(base, cam, level, upsampler, options)


def _content(image: Tensor) -> float:
    """How much there is to learn in an image: its pixel standard deviation."""
    return float(image.float().std())


def pick_crops(base: Gaussians, cam: Camera, level: int, settings: ViewSettings,
               options: RenderOptions, rng: random.Random) -> list[Camera]:
    """The crops of a large view with the most content, at most settings.crops_per_view
    of them, judged on one cheap render of the whole view at the base rate."""
    crops = crop_grid(cam, settings.crop)
    if len(crops) <= settings.crops_per_view:
        return crops
    f = min(2.0 ** -level, 1.0)  # the base rate, never finer than the target
    preview = render_tiled(base, rescaled_exact(cam, f), options)
    scored = []
    for c in crops:
        x0, y0 = int((cam.cx - c.cx) * f), int((cam.cy - c.cy) * f)
        region = preview[y0:y0 + max(1, int(c.height * f)), x0:x0 + max(1, int(c.width * f))]
        scored.append((-_content(region), rng.random(), c))
    scored.sort(key=lambda s: (s[0], s[1]))
    return [s[2] for s in scored[: settings.crops_per_view]]


def build_views(
    base: Gaussians, cameras: list[Camera], level: int, upsampler: Upsampler,
    settings: ViewSettings, options: RenderOptions,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> list[tuple[Camera, Tensor]]:
    """(camera, pseudo-GT) pairs to finetune on; large views become their busiest crops.

    progress(done, total) is called per camera; should_stop() is polled between cameras
    and, when it says stop, the views done so far are returned (the caller checks)."""
    rng = random.Random(settings.seed)
    out: list[tuple[Camera, Tensor]] = []
    for i, cam in enumerate(cameras):
        if should_stop is not None and should_stop():
            break
        parts = (pick_crops(base, cam, level, settings, options, rng)
                 if needs_crops(cam, settings) else [cam])
        out += [(c, pseudo_gt(base, c, level, upsampler, options,
                              settings.zoom_out_supersample)) for c in parts]
        if progress is not None:
            progress(i + 1, len(cameras))
    return out


def measure_level(
    base: Gaussians, adapted: Gaussians | None, cameras: list[Camera], level: int,
    upsampler: Upsampler, options: RenderOptions, settings: ViewSettings | None = None,
    adapted_options: RenderOptions | None = None,
    others: dict[str, tuple[Gaussians, RenderOptions]] | None = None,
) -> dict[str, float]:
    """Mean PSNR (dB) against the level's reference over held-out cameras (target scale)
    of: the base set with the vanilla rasterizer (`vanilla`, 3DGS dilation), the
    training-free `mip`, `adaptive` and `blend` (zoom = 2^level) modes, the adapted set with
    `adapted_options` (default: the vanilla rasterizer) as `adapted`, when given, and each
    of `others` (name: set and how it is drawn). The pseudo-GT and references use `options`
    (classic). Large views are measured on their busiest crops, as they are adapted."""
    classic = options.replace(antialias="classic")
    adaptive = options.replace(antialias="adaptive", zoom=2.0**level)
    candidates = {"vanilla": (base, classic), "mip": (base, options.replace(antialias="mip")),
                  "adaptive": (base, adaptive),
                  "blend": (base, adaptive.replace(antialias="blend"))}
    if adapted is not None:
        candidates["adapted"] = (adapted, adapted_options or classic)
    candidates.update(others or {})
    return held_out_psnr(candidates, cameras, base, level, upsampler, options,
                         settings or ViewSettings())


def held_out_psnr(candidates: dict[str, tuple[Gaussians, RenderOptions]], cameras: list[Camera],
                  base: Gaussians, level: int, upsampler: Upsampler, options: RenderOptions,
                  settings: ViewSettings) -> dict[str, float]:
    """Mean PSNR (dB) of each candidate set (drawn with its options) against the level's
    reference (:func:`reference`, from `base` drawn with `options`) over held-out cameras
    at the target scale; large views on their busiest crops, as measure_level does."""
    rng = random.Random(settings.seed + 1)
    scores: dict[str, list[float]] = {k: [] for k in candidates}
    for cam in cameras:
        parts = (pick_crops(base, cam, level, settings, options, rng)
                 if needs_crops(cam, settings) else [cam])
        for c in parts:
            ref = reference(base, c, level, upsampler, options)
            for k, (g, o) in candidates.items():
                scores[k].append(psnr(render_tiled(g, c, o), ref))
    return {k: float(sum(v) / len(v)) if v else float("nan") for k, v in scores.items()}
