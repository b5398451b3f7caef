"""Effective scale, levels, labels, virtual base cameras, and the level tracker."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from adapt.scale import (
    BaseSampling,
    LevelTracker,
    effective_scale,
    level_band,
    level_for_scale,
    level_label,
    parse_level,
    scale_label,
    virtual_base_cameras,
)
from render.camera import Camera
from render.gaussians import Gaussians


def _card(n: int = 400) -> Gaussians:
    """Splats on a 2 x 2 card in the plane z = 0."""
    g = torch.Generator().manual_seed(1)
    xy = torch.rand(n, 2, generator=g) * 2 - 1
    means = torch.cat([xy, torch.zeros(n, 1)], 1)
    return Gaussians.from_colors(means, torch.rand(n, 3, generator=g),
                                 torch.full((n, 3), 0.01), torch.full((n,), 0.9))


def _front(dist: float = 3.0, fov: float = 50.0, size: int = 200) -> Camera:
    return Camera.look_at((0, 0, -dist), (0, 0, 0), fov_y_deg=fov, width=size, height=size)


def test_base_view_is_scale_one_and_resolution_dolly_fov_all_count():
    g, cam = _card(), _front()
    base = BaseSampling.from_cameras(g, [cam])
    assert effective_scale(base, g, cam) == pytest.approx(1.0, rel=1e-5)
    assert effective_scale(base, g, cam.scaled(0.25)) == pytest.approx(0.25, rel=1e-3)
    assert effective_scale(base, g, cam.scaled(2.0)) == pytest.approx(2.0, rel=1e-3)
    # Dolly out to twice the distance: every splat is sampled half as finely.
    assert effective_scale(base, g, _front(dist=6.0)) == pytest.approx(0.5, rel=0.02)
    # Narrower field of view at the same resolution = zoom in.
    narrow = _front(fov=2 * math.degrees(math.atan(math.tan(math.radians(25)) / 2)))
    assert effective_scale(base, g, narrow) == pytest.approx(2.0, rel=0.02)


def test_base_rate_takes_the_finest_camera_and_unseen_get_the_median():
    g = _card()
    far_away = Gaussians.from_colors(torch.tensor([[50.0, 0, 0]]), torch.ones(1, 3),
                                     torch.full((1, 3), 0.01), torch.ones(1) * 0.5)
    both = Gaussians.concat([g, far_away])
    near, far = _front(dist=3.0), _front(dist=6.0)
    base = BaseSampling.from_cameras(both, [far, near])
    rate_near = BaseSampling.from_cameras(g, [near]).rate
    assert torch.allclose(base.rate[:-1], rate_near)
    assert float(base.rate[-1]) == pytest.approx(float(base.rate[:-1].median()))


def test_effective_scale_rejects_other_sets_and_is_nan_when_nothing_is_seen():
    g, cam = _card(), _front()
    base = BaseSampling.from_cameras(g, [cam])
    with pytest.raises(ValueError, match="base set"):
        effective_scale(base, _card(10), cam)
    away = Camera.look_at((0, 0, -3), (0, 0, -6), width=100, height=100)
    assert math.isnan(effective_scale(base, g, away))


def test_levels_bands_and_labels():
    assert [level_for_scale(s) for s in (1 / 9, 1 / 8, 0.3, 0.7, 1, 1.45, 3, 100)] == \
        [-3, -3, -2, -1, 0, 1, 2, 3]
    lo, hi = level_band(-2)
    assert lo == pytest.approx(0.25 / math.sqrt(2)) and hi == pytest.approx(0.25 * math.sqrt(2))
    assert scale_label(1 / 4.3) == "×1/4.3" and scale_label(2.0) == "×2.0"
    assert [level_label(v) for v in (-3, -2, 0, 1, 3)] == ["1/8", "1/4", "1", "x2", "x8"]


@pytest.mark.parametrize("text,level", [("1/4", -2), ("1/8", -3), ("x4", 2), ("X2", 1),
                                        ("4", 2), ("1", 0), (" 1 / 2 ", -1), ("×8", 3)])
def test_parse_level(text, level):
    assert parse_level(text) == level
    assert parse_level(level_label(level)) == level


@pytest.mark.parametrize("text", ["1/3", "x16", "1/16", "zoom", "", "x0", "-2"])
def test_parse_level_rejects_bad_text_clearly(text):
    with pytest.raises(ValueError, match="bad level"):
        parse_level(text)


def test_virtual_base_cameras_frame_the_model_from_all_sides():
    g = _card()
    cams = virtual_base_cameras(g, width=320, height=240, n=12)
    assert len(cams) == 12 and all((c.width, c.height) == (320, 240) for c in cams)
    dirs = []
    for c in cams:
        pc = g.means @ c.viewmat[:3, :3].T + c.viewmat[:3, 3]
        u = c.fx * pc[:, 0] / pc[:, 2] + c.cx
        v = c.fy * pc[:, 1] / pc[:, 2] + c.cy
        assert bool((pc[:, 2] > c.near).all())
        assert bool(((u >= 0) & (u <= c.width) & (v >= 0) & (v <= c.height)).all())
        dirs.append(c.position.numpy() / np.linalg.norm(c.position.numpy()))
    assert np.abs(np.mean(dirs, axis=0)).max() < 0.2  # spread all around


def test_level_tracker_waits_half_a_second_outside_the_band():
    tr = LevelTracker()
    assert tr.update(0.0, 1.2) is None  # inside the band of level 0
    assert tr.update(0.1, 0.3) is None  # leaves the band: timer starts
    assert tr.update(0.5, 0.3) is None  # 0.4 s
    assert tr.update(0.7, 1.0) is None  # came back: timer resets
    assert tr.update(0.8, 0.24) is None
    assert tr.update(1.29, 0.26) is None
    assert tr.update(1.31, 0.26) == -2  # 0.51 s out of band -> level of the latest scale
    assert tr.level == -2
    assert tr.update(5.0, 0.3) is None  # now inside the band of 1/4
    assert tr.update(6.0, float("nan")) is None  # nothing visible: ignored
    assert tr.update(7.0, 100.0) is None and tr.update(7.6, 100.0) == 3
    assert tr.update(9.0, 1000.0) is None  # beyond x8 there is no further level
