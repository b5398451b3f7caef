"""The generic optimisation loop: parameters, Adam bookkeeping, densification, loop."""

from __future__ import annotations

import math

import pytest
import torch

from adapt.densify import DensifyConfig, DensifyState
from adapt.optimize import Cancelled, OptimizeConfig, l1_loss, optimize
from adapt.params import LearningRates, Trainable, exp_decay
from render import RenderOptions, render
from render.camera import Camera
from render.gaussians import Gaussians


def _scene(n: int = 120, seed: int = 0) -> Gaussians:
    g = torch.Generator().manual_seed(seed)
    means = torch.cat([torch.rand(n, 2, generator=g) * 1.6 - 0.8, torch.zeros(n, 1)], 1)
    return Gaussians.from_colors(means, torch.rand(n, 3, generator=g),
                                 torch.full((n, 3), 0.05), torch.full((n,), 0.8))


def _cam(x: float = 0.0) -> Camera:
    return Camera.look_at((x, 0, -3), (0, 0, 0), fov_y_deg=40, width=32, height=32)


def _views(g: Gaussians) -> list[tuple[Camera, torch.Tensor]]:
    return [(c, render(g, c).rgb.detach()) for c in (_cam(-0.4), _cam(0.0), _cam(0.4))]


def test_learning_rates_follow_3dgs():
    t = Trainable(_scene(), extent=2.0)
    lrs = {gr["name"]: gr["lr"] for gr in t.optimizer.param_groups}
    assert lrs["means"] == pytest.approx(1.6e-4 * 2.0)
    assert lrs["sh_dc"] == pytest.approx(2.5e-3) and lrs["sh_rest"] == pytest.approx(1.25e-4)
    assert (lrs["opacity_logits"], lrs["log_scales"], lrs["quats"]) == (0.05, 0.005, 0.001)
    assert t.update_learning_rate(30_000) == pytest.approx(1.6e-6 * 2.0)
    assert exp_decay(15_000, 1e-4, 1e-6, 30_000) == pytest.approx(1e-5)


def test_the_sh_of_a_trainable_set_joins_its_two_bands_with_their_gradients():
    """Trainable.gaussians() joins sh_dc and sh_rest (one learning rate each) into sh
    [N, K, 3]: the values and gradients of torch.cat, each part's gradient contiguous."""
    gen = torch.Generator().manual_seed(3)
    g = _scene(12)
    g.sh = torch.randn(12, 16, 3, generator=gen)
    t = Trainable(g)
    sh = t.gaussians().sh
    assert torch.equal(sh, g.sh)
    weights = torch.randn(12, 16, 3, generator=gen)
    (sh * weights).sum().backward()
    assert torch.equal(t.params["sh_dc"].grad, weights[:, :1])
    assert torch.equal(t.params["sh_rest"].grad, weights[:, 1:])
    assert t.params["sh_rest"].grad.is_contiguous()


def test_prune_and_append_keep_adam_state_in_step():
    g = _scene(10)
    t = Trainable(g)
    loss = sum((p.float() ** 2).sum() for p in t.params.values())
    loss.backward()
    t.optimizer.step()
    before = t.optimizer.state[t.params["means"]]["exp_avg"].clone()
    keep = torch.tensor([True, False] * 5)
    t.prune(keep)
    assert len(t) == 5
    after = t.optimizer.state[t.params["means"]]["exp_avg"]
    assert torch.equal(after, before[keep])
    t.append({n: v.detach()[:2] for n, v in t.params.items()})
    assert len(t) == 7
    state = t.optimizer.state[t.params["means"]]
    assert torch.equal(state["exp_avg"][:5], before[keep])
    assert torch.count_nonzero(state["exp_avg"][5:]) == 0
    # The optimizer still steps every parameter it holds.
    assert all(gr["params"][0] is t.params[gr["name"]] for gr in t.optimizer.param_groups)
    t.optimizer.zero_grad()
    sum((p.float() ** 2).sum() for p in t.params.values()).backward()
    t.optimizer.step()


def test_optimize_fits_a_perturbed_scene_and_leaves_the_input_alone():
    target = _scene()
    views = _views(target)
    start = target.clone()
    start.means = start.means + 0.05 * torch.randn(start.means.shape,
                                                   generator=torch.Generator().manual_seed(1))
    start.sh = start.sh * 0.5
    original = start.clone()
    err0 = sum(float(((render(start, c).rgb - img) ** 2).mean()) for c, img in views)
    losses = []
    cfg = OptimizeConfig(iters=80, densify=DensifyConfig(densify=False),
                         lrs=LearningRates(sh_dc=0.01, means_init=5e-3))
    out = optimize(start, views, cfg, progress=lambda it, loss, n: losses.append(loss))
    err1 = sum(float(((render(out, c).rgb - img) ** 2).mean()) for c, img in views)
    assert err1 < 0.3 * err0
    assert len(losses) == 80 and all(math.isfinite(v) for v in losses)
    assert torch.equal(start.means, original.means)  # input untouched
    assert torch.allclose(out.quats.norm(dim=-1), torch.ones(len(out)), atol=1e-5)


def test_optimize_is_deterministic_for_a_seed_and_takes_any_loss():
    target = _scene()
    views = _views(target)
    start = target.clone()
    start.sh = start.sh * 0.5
    cfg = OptimizeConfig(iters=10, seed=3, loss=l1_loss, densify=DensifyConfig(densify=False))
    a, b = optimize(start, views, cfg), optimize(start, views, cfg)
    assert torch.equal(a.sh, b.sh)


def test_should_stop_cancels_between_steps_with_the_partial_result():
    views = _views(_scene())
    steps = []
    with pytest.raises(Cancelled) as info:
        optimize(_scene(), views, OptimizeConfig(iters=50),
                 progress=lambda it, loss, n: steps.append(it),
                 should_stop=lambda: len(steps) >= 3)
    assert info.value.iteration == 3 and steps == [1, 2, 3]
    assert len(info.value.gaussians) == 120


def test_gradients_are_measured_in_ndc_units():
    st = DensifyState(2, DensifyConfig())
    means2d = torch.zeros(2, 2, requires_grad=True)
    (means2d[:, 0] * torch.tensor([1e-6, 0.0])).sum().backward()
    radii = torch.tensor([[3, 3], [0, 0]])
    st.accumulate(means2d, radii, width=400, height=300)
    # d/dx_pixel = 1e-6 -> d/dx_ndc = 1e-6 * W/2 = 2e-4; the undrawn one is not counted.
    assert st.mean_grad()[0] == pytest.approx(2e-4)
    assert st.count.tolist() == [1.0, 0.0]


def _stats(t: Trainable, grads: list[float]) -> DensifyState:
    st = DensifyState(len(t), DensifyConfig(interval=1, percent_dense=0.01))
    st.grad_sum = torch.tensor(grads)
    st.count = torch.ones(len(grads))
    return st


def test_densify_clones_small_splits_large_and_prunes_transparent():
    means = torch.zeros(4, 3)
    scales = torch.tensor([[0.001] * 3, [0.5] * 3, [0.001] * 3, [0.001] * 3])
    g = Gaussians.from_colors(means, torch.rand(4, 3), scales,
                              torch.tensor([0.9, 0.9, 0.9, 0.001]))
    t = Trainable(g, extent=1.0)
    st = _stats(t, [3e-4, 3e-4, 1e-4, 1e-5])
    done = st.step(t, 1)
    # 0: small + hot -> cloned; 1: large + hot -> split into 2 at 1/1.6 the size;
    # 2: cold -> kept; 3: opacity 0.001 -> pruned.
    assert done == {"cloned": 1, "split": 1, "pruned": 1}
    assert len(t) == 4 - 1 + 1 + 1  # 4, minus the pruned, plus a clone, plus one from split
    s = torch.exp(t.params["log_scales"].detach()).max(dim=1).values
    assert int((s > 0.2).sum()) == 2 and torch.allclose(s[s > 0.2], torch.tensor(0.5 / 1.6))


def test_max_gaussians_caps_growth_and_absgrad_uses_its_threshold():
    g = Gaussians.from_colors(torch.zeros(4, 3), torch.rand(4, 3), torch.full((4, 3), 1e-3),
                              torch.full((4,), 0.9))
    t = Trainable(g, extent=1.0)
    st = _stats(t, [5e-4, 4e-4, 3e-4, 1e-5])
    st.config = DensifyConfig(interval=1, max_gaussians=6)
    st.step(t, 1)
    assert len(t) == 6
    st = DensifyState(1, DensifyConfig(absgrad=True))
    m2d = torch.zeros(1, 2, requires_grad=True)
    (m2d.sum() * 1e-6).backward()
    m2d.absgrad = torch.tensor([[1e-5, 0.0]])
    st.accumulate(m2d, torch.tensor([[2, 2]]), 200, 200)
    assert st.mean_grad()[0] == pytest.approx(1e-3) and st.threshold() == 8e-4


def test_opacity_reset_caps_opacity():
    g = _scene(5)
    t = Trainable(g)
    st = DensifyState(5, DensifyConfig(densify=False, opacity_reset_interval=10))
    st.step(t, 10)
    assert float(torch.sigmoid(t.params["opacity_logits"].detach()).max()) == pytest.approx(0.01)


def test_optimize_grows_under_densification_on_a_too_sparse_start():
    target = _scene(200)
    views = _views(target)
    sparse = target.subset(torch.arange(0, 200, 8))
    cfg = OptimizeConfig(iters=40, densify=DensifyConfig(interval=20, grad_threshold=1e-5),
                         options=RenderOptions())
    out = optimize(sparse, views, cfg)
    assert len(out) > len(sparse)
