"""Fewer Gaussians for zoom-out levels: blend-weight importance and neighbour merging."""

from __future__ import annotations

import math

import pytest
import torch

from adapt.densify import DensifyConfig
from adapt.finetune import FinetuneConfig, finetune
from adapt.importance import ImportancePrune, blend_weights, negligible
from adapt.merge import footprint_mass, merge_neighbours, merge_pairs, rotmat_to_quat
from adapt.metrics import psnr
from adapt.optimize import OptimizeConfig, optimize
from adapt.views import at_level
from render import RenderOptions, render
from render.camera import Camera
from render.gaussians import Gaussians
from render.rasterize.project import quat_to_rotmat

REF = RenderOptions(backend="reference")
CPU = RenderOptions(backend="cpu")


def _cam(size: int = 24, x: float = 0.0) -> Camera:
    return Camera.look_at((x, 0, -3), (0, 0, 0), fov_y_deg=40, width=size, height=size)


def _grid(n_side: int, spacing: float, seed: int = 0) -> Gaussians:
    """A flat card of n_side^2 small opaque splats in z = 0, random colours."""
    g = torch.Generator().manual_seed(seed)
    ax = (torch.arange(n_side) - (n_side - 1) / 2) * spacing
    yy, xx = torch.meshgrid(ax, ax, indexing="ij")
    means = torch.stack([xx.flatten(), yy.flatten(), torch.zeros(n_side * n_side)], 1)
    scales = torch.tensor([spacing * 0.5, spacing * 0.5, spacing * 0.05]).repeat(len(means), 1)
    return Gaussians.from_colors(means, torch.rand(len(means), 3, generator=g), scales,
                                 torch.full((len(means),), 0.95))


def test_blend_weights_add_up_to_the_rendered_alpha_and_see_occlusion():
    # Two splats on the axis: the big opaque front one hides the small back one.
    means = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 0.5], [0.6, 0.3, 0.2]])
    scales = torch.tensor([[0.2, 0.2, 0.2], [0.03, 0.03, 0.03], [0.15, 0.15, 0.15]])
    g = Gaussians.from_colors(means, torch.rand(3, 3), scales, torch.tensor([0.99, 0.9, 0.5]))
    cams = [_cam(), _cam(x=0.3)]
    w, seen = blend_weights(g, cams, REF)
    alpha = sum(float(render(g, c, REF).alpha.sum()) for c in cams)
    assert float(w.sum()) == pytest.approx(alpha, rel=1e-4)
    assert bool(seen.all())
    assert w[1] < 0.05 * w[0]  # the hidden one adds almost nothing


def test_blend_weights_are_independent_of_the_colours():
    g = _grid(5, 0.2)
    w1, _ = blend_weights(g, [_cam()], REF)
    g.sh = torch.randn_like(g.sh) * 3  # some colours clamp at 0: the weights must not care
    w2, _ = blend_weights(g, [_cam()], REF)
    assert torch.allclose(w1, w2, rtol=1e-4, atol=1e-6)


def test_negligible_drops_the_least_weight_up_to_the_budget_and_keeps_the_unseen():
    w = torch.tensor([5.0, 0.1, 0.2, 0.0, 3.0, 0.05])
    seen = torch.tensor([True, True, True, False, True, True])
    drop = negligible(w, seen, weight_fraction=0.045)  # budget 0.376 of 8.35
    assert drop.tolist() == [False, True, True, False, False, True]
    assert not negligible(w, seen, 0.0).any()
    assert int(negligible(w, seen, 0.9, max_fraction=0.34).sum()) == 2


def test_rotmat_to_quat_inverts_quat_to_rotmat():
    q = torch.nn.functional.normalize(torch.randn(500, 4,
                                      generator=torch.Generator().manual_seed(3)), dim=-1)
    q = torch.where(q[:, :1] < 0, -q, q)
    assert torch.allclose(rotmat_to_quat(quat_to_rotmat(q)), q, atol=1e-5)


def test_merged_pair_matches_the_pairs_moments():
    means = torch.tensor([[0.0, 0.0, 0.0], [0.1, 0.05, 0.0], [2.0, 0.0, 0.0]])
    quats = torch.nn.functional.normalize(torch.tensor([[1.0, 0.2, 0, 0], [1.0, 0, 0.3, 0.1],
                                                        [1.0, 0, 0, 0]]), dim=-1)
    g = Gaussians.from_colors(means, torch.tensor([[1.0, 0, 0], [0, 0, 1.0], [0, 1.0, 0]]),
                              torch.tensor([[0.1, 0.05, 0.01], [0.08, 0.08, 0.01],
                                            [0.1, 0.1, 0.1]]),
                              torch.tensor([0.3, 0.6, 0.5]), quats=quats)
    out = merge_pairs(g, torch.tensor([0]), torch.tensor([1]))
    assert len(out) == 2
    assert torch.equal(out.means[0], g.means[2])  # the unpaired one is untouched
    m = footprint_mass(g)[:2]
    w = m / m.sum()
    mu = (w[:, None] * g.means[:2]).sum(0)
    assert torch.allclose(out.means[1], mu, atol=1e-6)
    rot = quat_to_rotmat(g.quats[:2])
    cov = rot @ torch.diag_embed(torch.exp(g.log_scales[:2]) ** 2) @ rot.transpose(1, 2)
    d = g.means[:2] - mu
    want = (w[:, None, None] * (cov + d[:, :, None] * d[:, None, :])).sum(0)
    r = quat_to_rotmat(out.quats[1:])[0]
    got = r @ torch.diag(torch.exp(out.log_scales[1]) ** 2) @ r.T
    assert torch.allclose(got, want, atol=1e-6)
    # The mass is kept (the opacity stays below its cap here).
    assert float(footprint_mass(out)[1]) == pytest.approx(float(m.sum()), rel=1e-4)


def test_merging_a_fine_card_keeps_its_coarse_render():
    # 24 x 24 splats one base pixel apart (0.0227 world units at depth 3 under a 96 px
    # camera), so a quarter of a pixel apart at level 1/4.
    g = _grid(24, 0.0227)
    cam = _cam(96)
    coarse = at_level(cam, -2)
    ref = render(g, coarse, REF.replace(antialias="mip")).rgb
    rate = torch.full((len(g),), cam.fx / 3.0)  # base pixels per world unit at depth 3
    out = merge_neighbours(g, 0.5 / (rate * 0.25), passes=2)
    assert len(out) <= 0.4 * len(g)
    after = render(out, coarse, REF.replace(antialias="mip")).rgb
    assert psnr(after, ref) > 28.0
    # Nothing is merged where the splats are a target pixel or more apart.
    assert len(merge_neighbours(g, 0.5 / (rate * 4.0), passes=2)) == len(g)


def test_importance_prune_in_optimize_removes_hidden_gaussians_and_caps_growth():
    front = _grid(6, 0.15)
    back = _grid(6, 0.15, seed=1)
    back.means = back.means + torch.tensor([0.0, 0.0, 0.5])  # right behind the card
    g = Gaussians.concat([front, back])
    cams = [_cam(32), _cam(32, x=0.2)]
    views = [(c, render(front, c, REF).rgb.detach()) for c in cams]
    cfg = OptimizeConfig(iters=12, options=REF,
                         importance=ImportancePrune(at=(4,), weight_fraction=0.02),
                         densify=DensifyConfig(interval=6, start_iter=6, grad_threshold=0.0,
                                               max_gaussians=10 * len(g)))
    counts: list[int] = []
    out = optimize(g, views, cfg, progress=lambda it, loss, n: counts.append(n))
    assert counts[:3] == [len(g)] * 3 and counts[3] < len(g)  # the prune at iteration 4
    # What went is behind the card; growth (every Gaussian is 'hot' at threshold 0)
    # never goes past what the prune left.
    assert int((out.means[:, 2] < 0.25).sum()) >= 36
    assert int((out.means[:, 2] > 0.25).sum()) < 36
    assert max(counts[3:]) == counts[3]


def test_zoom_out_finetune_merges_and_zoom_in_does_not():
    g = _grid(16, 0.02)
    cam = _cam(96)
    rate = torch.full((len(g),), cam.fx / 3.0)
    cfg = FinetuneConfig(iters=3, backend="cpu")
    assert cfg.importance_prune(2) is None
    for level in (-2, 1):
        view = at_level(cam, level)
        target = render(g, view, CPU).rgb.detach()
        out = finetune(g, level, [view], [target], cfg, base_rate=rate)
        if level < 0:
            assert len(out) < 0.5 * len(g)
        else:
            assert len(out) >= len(g)
    off = FinetuneConfig(iters=3, backend="cpu", zoom_out_merge_px=0.0)
    view = at_level(cam, -2)
    out = finetune(g, -2, [view], [render(g, view, CPU).rgb.detach()], off, base_rate=rate)
    assert len(out) == len(g)
    assert math.isfinite(float(out.means.sum()))


def test_a_zoom_out_level_of_a_large_base_takes_the_steps_its_budget_allows():
    """zoom_out_budget caps the Gaussian-steps of a zoom-out finetune (base size x steps),
    down to zoom_out_min_iters; zoom-in levels and small bases take `iters`."""
    g = _grid(16, 0.02)
    cam = _cam(96)
    rate = torch.full((len(g),), cam.fx / 3.0)
    n = len(g)
    cfg = FinetuneConfig(iters=12, backend="cpu", zoom_out_budget=5 * n, zoom_out_min_iters=3)
    assert cfg.iters_for(-2, n) == 5 and cfg.iters_for(1, n) == 12
    assert cfg.iters_for(-2, n // 10) == 12  # a small base: its full count
    assert cfg.iters_for(-2, 100 * n) == 3  # never under the floor
    assert FinetuneConfig(iters=12, zoom_out_budget=0).iters_for(-2, 100 * n) == 12
    for level, want in ((-2, 5), (1, 12)):
        view = at_level(cam, level)
        steps: list[int] = []
        finetune(g, level, [view], [render(g, view, CPU).rgb.detach()], cfg,
                 progress=lambda it, loss, k, steps=steps: steps.append(it), base_rate=rate)
        assert steps == list(range(1, want + 1)), level
