"""Projection of 3D Gaussians to 2D splats.

- `project()` (torch) against gsplat's own pure-torch `_fully_fused_projection`, on the
  real garden cameras and COLMAP points;
- the numba projection of the cpu backend against `project()`, values and gradients.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import data_file

from render import Camera, Gaussians, RenderOptions
from render.rasterize.cpu_project import project_cpu
from render.rasterize.cpu_sh import sh_colors
from render.rasterize.cpu_threads import run_chunks
from render.rasterize.project import covariances3d, project


def garden():
    """The three real garden cameras and Gaussians on a subset of the COLMAP points."""
    d = np.load(data_file("gsplat_test_garden.npz"))
    gen = torch.Generator().manual_seed(0)
    pts = torch.from_numpy(d["means3d"][::7].copy())  # ~20k points
    n = pts.shape[0]
    g = Gaussians(
        means=pts,
        quats=torch.nn.functional.normalize(torch.randn(n, 4, generator=gen), dim=-1),
        log_scales=torch.log(0.002 + 0.03 * torch.rand(n, 3, generator=gen)),
        opacity_logits=torch.randn(n, generator=gen),
        sh=torch.randn(n, 1, 3, generator=gen),
    )
    w, h = int(d["width"]), int(d["height"])
    cams = []
    for vm, K in zip(d["viewmats"], d["Ks"], strict=True):
        cams.append(Camera(torch.from_numpy(vm), float(K[0, 0]), float(K[1, 1]),
                           float(K[0, 2]), float(K[1, 2]), w, h))
    return g, cams, torch.from_numpy(d["viewmats"]), torch.from_numpy(d["Ks"])


@pytest.mark.parametrize("aa", ["classic", "mip"])
def test_project_matches_gsplat_torch_impl(aa):
    from gsplat.cuda._torch_impl import _fully_fused_projection

    g, cams, viewmats, Ks = garden()
    opts = RenderOptions(antialias=aa)
    eps, compensate = opts.dilation()
    covars = covariances3d(g.quats, g.log_scales)
    radii, means2d, depths, conics, comp = _fully_fused_projection(
        g.means, covars, viewmats, Ks, cams[0].width, cams[0].height, eps2d=eps,
        calc_compensations=compensate)
    for i, cam in enumerate(cams):
        with torch.no_grad():
            p = project(g, cam, opts)
        vis = (radii[i] > 0).all(-1)
        assert int(vis.sum()) > 1000  # the cameras see a good part of the scene
        assert torch.equal((p.radii > 0).all(-1), vis)
        # Boxes agree up to a pixel where ceil() meets float rounding, and almost always.
        diff = (p.radii - radii[i]).abs()
        assert int(diff.max()) <= 1 and float((diff > 0).float().mean()) < 1e-3
        torch.testing.assert_close(p.means2d[vis], means2d[i][vis], rtol=1e-5, atol=1e-3)
        torch.testing.assert_close(p.depths, depths[i], rtol=1e-6, atol=1e-6)
        # Conics: compare relative to each conic's own size (they span many decades).
        scale = conics[i][vis].abs().amax(-1, keepdim=True)
        err = ((p.conics[vis] - conics[i][vis]).abs() / scale).max()
        assert float(err) < 1e-4
        if compensate:
            got = p.opacities / torch.sigmoid(g.opacity_logits)
            torch.testing.assert_close(got[vis], comp[i][vis], rtol=1e-4, atol=1e-6)
        else:
            torch.testing.assert_close(p.opacities, torch.sigmoid(g.opacity_logits))


def small_scene(seed: int = 0, n: int = 300) -> Gaussians:
    gen = torch.Generator().manual_seed(seed)
    means = torch.randn(n, 3, generator=gen) * 1.5
    means[:, 2] += 2.0  # some behind the camera, some far outside the field of view
    return Gaussians(
        means=means,
        quats=torch.randn(n, 4, generator=gen) * 3.0,  # unnormalised on purpose
        log_scales=torch.log(0.01 + 0.3 * torch.rand(n, 3, generator=gen)),
        opacity_logits=torch.randn(n, generator=gen) * 2,
        sh=torch.randn(n, 4, 3, generator=gen),
    )


def small_camera() -> Camera:
    cam = Camera.look_at((0.3, -0.2, -0.5), (0.0, 0.0, 2.0), fov_y_deg=60.0, width=80,
                         height=60)
    return cam.crop(10, -5, 80, 60)


@pytest.mark.parametrize("aa", ["classic", "mip", "adaptive"])
def test_numba_projection_matches_torch(aa):
    g, cam = small_scene(), small_camera()
    opts = RenderOptions(antialias=aa, zoom=2.0)
    with torch.no_grad():
        want = project(g, cam, opts)
        got = project_cpu(g, cam, opts)
    assert torch.equal(got.visible, want.visible)
    assert 50 < int(want.visible.sum()) < len(g)
    vis = want.visible
    torch.testing.assert_close(got.means2d[vis], want.means2d[vis], rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(got.depths, want.depths, rtol=1e-5, atol=1e-6)
    scale = want.conics[vis].abs().amax(-1, keepdim=True)
    assert float(((got.conics[vis] - want.conics[vis]).abs() / scale).max()) < 1e-4
    torch.testing.assert_close(got.opacities[vis], want.opacities[vis], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(got.colors[vis], want.colors[vis])


@pytest.mark.parametrize("degree,cap", [(0, None), (1, None), (2, None), (3, None), (3, 1)])
def test_numba_sh_colours_match_torch(degree, cap):
    """Frames without a gradient take their colours from the numba SH kernel: the same as
    torch's, at every degree, with the options' degree cap, and for a Gaussian exactly at
    the camera centre (no view direction)."""
    from render.rasterize.project import colors_from_sh

    g, cam = small_scene(1, 500), small_camera()
    gen = torch.Generator().manual_seed(2)
    g = Gaussians(g.means, g.quats, g.log_scales, g.opacity_logits,
                  torch.randn(len(g), (degree + 1) ** 2, 3, generator=gen))
    g.means[0] = cam.position
    opts = RenderOptions(sh_degree=cap)
    with torch.no_grad():
        proj = project_cpu(g, cam, opts)
        got, vis = proj.colors, proj.visible
        want = colors_from_sh(g, cam, opts)
    assert 0 < int(vis.sum()) < len(g)
    torch.testing.assert_close(got[vis], want[vis], rtol=1e-5, atol=1e-5)
    # Culled Gaussians (the one at the camera centre among them) skip their SH: 0.
    assert not bool(vis[0]) and bool((got[~vis] == 0).all())
    assert float(want.std()) > 0.1  # not all clamped to 0
    # Large models take several chunks on several threads: the same colours; with every
    # Gaussian counted in view, the one at the camera centre (no view direction) too.
    out = np.empty((len(g), 3), np.float32)
    every = np.ones((len(g), 2), np.int32)
    run_chunks(sh_colors, 7, g.means.numpy(), g.sh.numpy(), cam.position.double().numpy(),
               degree if cap is None else cap, every, True, out)
    torch.testing.assert_close(torch.from_numpy(out), want, rtol=1e-5, atol=1e-5)
    assert np.array_equal(out[vis.numpy()], got[vis].numpy())


def test_numba_sh_colours_of_a_real_degree_3_model():
    """The real INRIA degree-3 model seen from outside its bounds: numba's colours are
    torch's."""
    from render.io import load_model
    from render.rasterize.project import colors_from_sh

    g = load_model(data_file("inria_iter7000_sh3.ply")).gaussians
    assert g.sh_degree == 3
    lo, hi = g.bounds()
    centre = (lo + hi) / 2
    cam = Camera.look_at(tuple((centre + (hi - lo) * torch.tensor([0.3, -0.8, -1.2])).tolist()),
                         tuple(centre.tolist()), fov_y_deg=60.0, width=64, height=48)
    opts = RenderOptions()
    with torch.no_grad():
        proj = project_cpu(g, cam, opts)
        vis = proj.visible
        assert int(vis.sum()) > 100
        torch.testing.assert_close(proj.colors[vis], colors_from_sh(g, cam, opts)[vis],
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("degree,cap", [(0, None), (1, None), (2, None), (3, None), (3, 2)])
def test_numba_sh_colour_gradients_match_autograd(degree, cap):
    """A finetune's SH colours come from cpu_sh's kernels: the gradients of the SH and of
    the means (through the view direction) are torch's autograd of render.sh, at every
    degree and cap, with some channels clamped at 0; culled Gaussians get exactly 0."""
    from render.rasterize.cpu_sh import drawn_colors
    from render.rasterize.project import colors_from_sh

    g0, cam = small_scene(4, 400), small_camera()
    gen = torch.Generator().manual_seed(8)
    sh = torch.randn(len(g0), (degree + 1) ** 2, 3, generator=gen)
    radii = torch.randint(0, 3, (len(g0), 2), generator=gen, dtype=torch.int32)
    drawn = (radii > 0).all(-1)
    opts = RenderOptions(sh_degree=cap)
    weights = torch.randn(len(g0), 3, generator=gen)
    grads = []
    for colours in (lambda g: colors_from_sh(g, cam, opts) * drawn[:, None].float(),
                    lambda g: drawn_colors(g, cam, opts, radii)):
        means, s = g0.means.clone().requires_grad_(True), sh.clone().requires_grad_(True)
        rgb = colours(Gaussians(means, g0.quats, g0.log_scales, g0.opacity_logits, s))
        (rgb * weights).sum().backward()
        grads.append((rgb.detach(), means.grad, s.grad))
    (want_rgb, want_m, want_sh), (rgb, got_m, got_sh) = grads
    if want_m is None:  # degree 0: torch's colours never read the means
        want_m = torch.zeros_like(got_m)
    assert bool((want_rgb[drawn] == 0).any()) and bool((want_rgb[drawn] > 0).any())
    torch.testing.assert_close(rgb, want_rgb, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got_sh, want_sh, rtol=1e-5, atol=1e-6)
    if degree > 0 and cap != 0:
        assert float(want_m.norm()) > 0
    torch.testing.assert_close(got_m, want_m, rtol=1e-4, atol=1e-5)
    assert float(got_sh[~drawn].abs().max()) == 0 and float(got_m[~drawn].abs().max()) == 0


@pytest.mark.parametrize("aa", ["classic", "mip"])
def test_numba_projection_gradients_match_autograd(aa):
    g0, cam = small_scene(1), small_camera()
    opts = RenderOptions(antialias=aa)
    gen = torch.Generator().manual_seed(5)
    results = []
    for fn in (project, project_cpu):
        params = {k: v.clone().requires_grad_(True) for k, v in g0.tensors().items()}
        p = fn(Gaussians(**params), cam, opts)
        vis = p.visible.float()
        gen.manual_seed(5)
        # A loss on the drawn Gaussians only (the others' conics are meaningless).
        loss = sum(((t * vis.reshape(-1, *([1] * (t.dim() - 1))))
                    * torch.randn(t.shape, generator=gen)).sum()
                   for t in (p.means2d, p.conics, p.depths, p.opacities, p.colors))
        loss.backward()
        results.append({k: v.grad for k, v in params.items()})
    want, got = results
    for name in ("means", "quats", "log_scales", "opacity_logits", "sh"):
        rel = float((got[name] - want[name]).norm() / want[name].norm())
        assert rel < 1e-4, f"{name}: relative error {rel:.2e}"
