"""Pseudo-GT: zoom-out area filter, zoom-in upsampling, crops, and view selection."""

from __future__ import annotations

import pytest
import torch

from adapt.pseudo_gt import (
    build_views,
    pseudo_gt,
    reference,
    render_tiled,
    zoom_in_target,
    zoom_out_target,
)
from adapt.upsample import AdaptiveRender, BicubicUpsampler, area_downsample, bicubic
from adapt.views import ViewSettings, at_level, crop_grid, jittered, rescaled_exact, select_views
from render import RenderOptions, render
from render.camera import Camera
from render.gaussians import Gaussians

OPTS = RenderOptions(background=(0.1, 0.1, 0.1))


def _scene(n: int = 300) -> Gaussians:
    g = torch.Generator().manual_seed(3)
    means = torch.cat([torch.rand(n, 2, generator=g) * 2 - 1, torch.zeros(n, 1)], 1)
    return Gaussians.from_colors(means, torch.rand(n, 3, generator=g),
                                 torch.full((n, 3), 0.02), torch.full((n,), 0.9))


def _cam(w: int = 48, h: int = 40) -> Camera:
    return Camera.look_at((0.1, 0.05, -3), (0, 0, 0), fov_y_deg=45, width=w, height=h)


def test_rescaled_exact_maps_pixel_blocks_exactly():
    cam = _cam(50, 30)
    fine = rescaled_exact(cam, 4.0)
    assert (fine.width, fine.height) == (200, 120)
    assert fine.fx == pytest.approx(cam.fx * 4) and fine.cx == pytest.approx(cam.cx * 4)
    coarse = rescaled_exact(cam, 1 / 8)
    assert (coarse.width, coarse.height) == (7, 4)  # ceil: covers the whole target


def test_zoom_out_is_the_area_mean_of_the_fine_render():
    g, cam = _scene(), _cam()
    target = zoom_out_target(g, cam, 4, OPTS)
    fine = render(g, rescaled_exact(cam, 4.0), OPTS).rgb.detach()
    assert target.shape == (40, 48, 3)
    assert torch.allclose(target, area_downsample(fine, 4), atol=1e-6)
    # The ideal reference supersamples 8x; close to the 4x pseudo-GT but not equal.
    ref = reference(g, cam, -2, BicubicUpsampler(), OPTS)
    assert ref.shape == target.shape and float((ref - target).abs().mean()) < 0.05


def test_tiled_render_equals_the_full_render():
    g, cam = _scene(), _cam(70, 50)
    full = render(g, cam, OPTS).rgb.detach()
    assert torch.allclose(render_tiled(g, cam, OPTS, tile=32), full, atol=1e-5)


def test_zoom_in_crop_matches_the_same_region_of_the_whole_target():
    g, cam = _scene(), _cam(64, 48)
    up = BicubicUpsampler()
    whole = zoom_in_target(g, cam, 2, up, OPTS, margin=8)
    coarse = render(g, rescaled_exact(cam, 0.5), OPTS).rgb.detach()
    # Aligned: away from the border (where the margin adds context) it is exactly the
    # bicubic enlargement of the render at half the resolution.
    assert torch.allclose(whole[4:-4, 4:-4], bicubic(coarse, 2)[4:-4, 4:-4], atol=1e-5)
    part = cam.crop(16, 16, 32, 24)
    crop_target = pseudo_gt(g, part, 1, up, OPTS)
    assert crop_target.shape == (24, 32, 3)
    # Context margin: the crop's edges agree with the whole image's interior.
    assert torch.allclose(crop_target, whole[16:40, 16:48], atol=1e-4)


def test_adaptive_pseudo_gt_draws_the_base_at_the_target_with_the_adaptive_dilation():
    g, cam = _scene(), _cam()
    target = zoom_in_target(g, cam, 4, AdaptiveRender(), OPTS)
    want = render(g, cam, OPTS.replace(antialias="adaptive", zoom=4.0)).rgb.detach()
    assert target.shape == (40, 48, 3) and torch.allclose(target, want, atol=1e-6)
    # wider splats than the vanilla rasterizer's at the same scale
    classic = render(g, cam, OPTS).rgb.detach()
    assert float((target - classic).abs().mean()) > 1e-3
    assert torch.allclose(pseudo_gt(g, cam, 2, AdaptiveRender(), OPTS), want, atol=1e-6)


def test_select_views_holds_out_base_cameras_and_adds_jittered_user_views():
    cams = [_cam() for _ in range(8)]
    user = _cam(100, 80)
    s = ViewSettings(n_views=6, n_user=2, holdout_every=4)
    split = select_views(cams, -2, s, current_view=user, gaussians=_scene())
    assert len(split.held_out) == 2 and len(split.adapt) == 6
    assert all((c.width, c.height) == (12, 10) for c in split.held_out)
    assert (split.adapt[-1].width, split.adapt[-1].height) == (100, 80)  # user view: as is
    again = select_views(cams, -2, s, current_view=user, gaussians=_scene())
    assert torch.equal(split.adapt[-1].viewmat, again.adapt[-1].viewmat)  # deterministic
    assert not torch.allclose(split.adapt[-1].viewmat, user.viewmat)


def test_jitter_orbits_about_the_pivot():
    cam = _cam()
    for j in jittered(cam, 5, 10.0, pivot=3.0, seed=1):
        centre = torch.tensor([0.0, 0.0, 0.0])  # the look-at target, 3 units ahead
        d_old = torch.linalg.norm(cam.position - centre)
        assert float(torch.linalg.norm(j.position - centre)) == pytest.approx(float(d_old),
                                                                           rel=0.01)


def test_large_targets_become_bounded_crops():
    cam = at_level(_cam(64, 48), 2)  # 256 x 192 target
    crops = crop_grid(cam, 64)
    assert len(crops) == 12 and sum(c.width * c.height for c in crops) == 256 * 192
    s = ViewSettings(max_crop_pixels=64 * 64, crop=64, crops_per_view=3)
    pairs = build_views(_scene(), [cam], 2, BicubicUpsampler(), s, OPTS)
    assert len(pairs) == 3
    for c, img in pairs:
        assert c.width * c.height <= 64 * 64 and img.shape == (c.height, c.width, 3)
        # The chosen crops have content, not only background.
        assert float(img.std()) > 0.01
