"""The `blend` antialias mode (Gaussian Blending, render/rasterize/cpu_blend.py): the numba
kernel against the sub-sample torch reference, and the choices made where the paper is
silent (a Gaussian of the pixel square's moments as the window, the point-window limit,
the dilation, CUDA falling back to the CPU)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from test_rasterize import camera, random_scene

from render import Gaussians, RenderOptions, render
from render.rasterize.cpu_blend import blend_step
from render.rasterize.reference import rasterize_reference
from render.rasterize.reference_blend import rasterize_blend_reference
from render.rasterize.types import Projection

F = np.float32


@pytest.mark.parametrize("seed,zoom,bg", [(3, 1.0, (0.0, 0.0, 0.0)), (5, 0.3, (0.2, 0.5, 1.0))])
def test_kernel_matches_the_sub_sample_reference(seed, zoom, bg):
    g = random_scene(seed, n=48)
    cam = camera(21, 17)
    opts = RenderOptions(antialias="blend", background=bg, zoom=zoom, output="depth")
    with torch.no_grad():
        a = render(g, cam, opts.replace(backend="cpu"))
        b = render(g, cam, opts.replace(backend="reference"))
    assert a.alpha.max() > 0.5  # the scene is drawn, with occlusion
    assert torch.allclose(a.rgb, b.rgb, atol=1e-4)
    assert torch.allclose(a.alpha, b.alpha, atol=1e-4)
    drawn = b.alpha > 0.01
    assert torch.allclose(a.depth[drawn], b.depth[drawn], rtol=1e-3)


def test_a_point_window_is_classic_blending():
    """Window -> 0: the splat's alpha at the pixel centre, the window never moves."""
    g = random_scene(7, n=120)
    cam = camera(40, 30)
    with torch.no_grad():
        c = render(g, cam, RenderOptions(antialias="classic", eps2d=0.2, backend="cpu"))
        b = render(g, cam, RenderOptions(antialias="blend", eps2d=0.2, blend_window=1e-8,
                                         backend="cpu"))
        w = render(g, cam, RenderOptions(antialias="blend", eps2d=0.2, backend="cpu"))
    assert torch.allclose(c.rgb, b.rgb, atol=1e-4)
    assert (c.rgb - w.rgb).abs().max() > 0.02  # the pixel window does change the image


def _square_coverage(s: float, dx: float) -> float:
    """An isotropic splat (std s px, opacity 1, offset dx) averaged over the pixel square."""
    def axis(d):
        r = s * math.sqrt(2.0)
        return s * math.sqrt(math.pi / 2) * (math.erf((0.5 - d) / r) - math.erf((-0.5 - d) / r))
    return axis(dx) * axis(0.0)


def _coverage(s: float, dx: float, opacity: float = 1.0) -> float:
    w = F(1.0 / 12.0)
    return float(blend_step(F(1), F(0), F(0), w, F(0), w, F(dx), F(0), F(s * s), F(0),
                            F(s * s), F(opacity * s * s), F(1.0))[0])


@pytest.mark.parametrize("s", [0.55, 1.0, 2.0])
@pytest.mark.parametrize("dx", [0.0, 0.5, 1.0])
def test_the_gaussian_window_covers_like_the_pixel_square(s, dx):
    """The choice: the window as a Gaussian of the square's moments. For splats at least
    as wide as the classic dilation (std >= sqrt(0.3) px) a splat's coverage is within
    0.02 of its average over the exact pixel square."""
    assert _coverage(s, dx) == pytest.approx(_square_coverage(s, dx), abs=0.02)


def test_a_tiny_splat_keeps_its_mass_over_the_pixels_on_average():
    """Zoomed out, a splat smaller than a pixel spreads over the pixels it straddles: its
    summed coverage is its mass o 2 pi s^2 on average over sub-pixel positions (a point
    sample gives o or nearly 0). The price of the Gaussian window (see cpu_blend): the
    windows do not tile the plane exactly, so the sum ripples with the position, by up to
    2 exp(-2 pi^2 C) (C = s^2 + 1/12), where the exact square would not."""
    s, o = 0.1, 0.8
    mass = o * 2 * math.pi * s * s
    sums = []
    shifts = np.linspace(0.0, 1.0, 8, endpoint=False)
    for u in shifts:
        for v in shifts:
            sums.append(sum(_coverage(s, dx, o) * _coverage(s, dy, 1.0) / _coverage(s, 0, 1)
                            for dx in np.arange(-3, 4) + u for dy in np.arange(-3, 4) + v))
    assert np.mean(sums) == pytest.approx(mass, rel=0.01)
    ripple = 2 * math.exp(-2 * math.pi**2 * (s * s + 1 / 12))  # per axis
    assert np.max(np.abs(np.array(sums) / mass - 1)) <= (1 + 1.05 * ripple) ** 2 - 1


def _two_splats(front_x: float) -> Projection:
    """A narrow opaque red splat in front, just left of the middle pixel's centre, and a wide
    blue one behind, in a 3 x 3 image."""
    sig_f, sig_b = 0.06, 4.0
    return Projection(
        means2d=torch.tensor([[front_x, 1.5], [1.5, 1.5]]),
        conics=torch.tensor([[1 / sig_f, 0.0, 1 / 4.0], [1 / sig_b, 0.0, 1 / sig_b]]),
        depths=torch.tensor([1.0, 2.0]), radii=torch.full((2, 2), 9, dtype=torch.int32),
        opacities=torch.tensor([0.99, 0.99]), colors=torch.eye(3)[[0, 2]])


def test_a_background_splat_beside_a_foreground_one_still_shows():
    """The paper's point: a foreground splat over the left part of a pixel hides only
    that part. Against the pixel's true average (16 x 16 point samples of classic
    blending), Gaussian Blending's colour is much closer than one sample at the centre."""
    proj = _two_splats(1.4)
    bg = torch.zeros(3)
    blend = rasterize_blend_reference(proj, 3, 3, bg, grid=32)[0][1, 1]
    classic = rasterize_reference(proj, 3, 3, bg)[0][1, 1]
    k = 16
    fine = Projection(proj.means2d * k, proj.conics / k**2, proj.depths, proj.radii * k,
                      proj.opacities, proj.colors)
    truth = rasterize_reference(fine, 3 * k, 3 * k, bg)[0][k:2 * k, k:2 * k].mean((0, 1))
    assert truth[2] > 0.3  # blue shows beside the red strip
    assert classic[2] < 0.2  # one scalar transmittance: red hides it
    assert (blend - truth).abs().max() < 0.5 * (classic - truth).abs().max()


def test_blend_dilates_like_adaptive():
    o = RenderOptions(antialias="blend", zoom=0.25)
    assert o.dilation() == (pytest.approx(0.3 / 16), False)
    with pytest.raises(ValueError, match="blend_window"):
        RenderOptions(antialias="blend", blend_window=0.0)


def test_cuda_backend_renders_blend_on_the_cpu(monkeypatch):
    import render.rasterize as R

    monkeypatch.setattr(R, "resolve_backend", lambda name: "cuda")
    g = random_scene(2, n=30)
    with torch.no_grad():
        res = render(g, camera(16, 12), RenderOptions(antialias="blend", backend="cuda"))
        ref = render(g, camera(16, 12), RenderOptions(antialias="blend", backend="cpu"))
    assert res.meta["backend"] == "cpu"
    assert torch.equal(res.rgb, ref.rgb)


def test_gradients_flow_through_the_surrogate_and_the_image_is_blend():
    g = random_scene(4, n=40)
    cam = camera(20, 16)
    opts = RenderOptions(antialias="blend", backend="cpu", absgrad=True)
    with torch.no_grad():
        plain = render(g, cam, opts).rgb
    for t in (g.means, g.sh, g.opacity_logits, g.log_scales):
        t.requires_grad_(True)
    res = render(g, cam, opts)
    # straight-through: the value is blend's (up to the rounding of s + (b - s))
    assert torch.allclose(res.rgb.detach(), plain, atol=1e-5)
    (res.rgb * torch.linspace(0, 1, 3)).sum().backward()
    for t in (g.means, g.sh, g.opacity_logits, g.log_scales):
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0
    assert res.means2d.absgrad.shape == (40, 2)


def test_every_mode_is_offered_by_the_viewer_and_the_render_command():
    """`mipview --antialias blend` and `mipview render --aa blend` parse (the viewer's
    keys 1-4 take the same list)."""
    import argparse

    from render.options import ANTIALIAS_MODES
    from viewer.commands import render_cmd, view

    for module, flag in ((view, "--antialias"), (render_cmd, "--aa")):
        parser = argparse.ArgumentParser()
        module.add_arguments(parser)
        for mode in ANTIALIAS_MODES:
            argv = ["model.ply", flag, mode, "--out", "o", "--path", "p.json"]
            args, _ = parser.parse_known_args(argv)
            assert mode in (getattr(args, "antialias", None), getattr(args, "aa", None))


def test_the_display_frame_is_the_float_render_packed_for_gl():
    """RenderOptions(bgra8=True) in blend mode: the viewer's frame is the float render's
    colour rounded as viewer.frames.pack_bgra8 does, rows bottom first (the display
    kernel blends exactly as the float one); not made when differentiating."""
    from viewer.frames import pack_bgra8

    for seed, bg, (w, h) in ((7, (0.3, 1.0, 0.0), (45, 37)), (3, (0.0, 0.0, 0.0), (32, 24))):
        g, cam = random_scene(seed, n=80), camera(w, h)
        opts = RenderOptions(antialias="blend", backend="cpu", background=bg, bgra8=True)
        with torch.no_grad():
            res = render(g, cam, opts)
            rgb = render(g, cam, opts.replace(bgra8=False)).rgb.numpy()
        assert res.rgb is None and res.alpha is None
        want = np.empty((h, w, 4), np.uint8)
        pack_bgra8(rgb.reshape(h, -1), 3, want.reshape(h, -1))
        assert np.array_equal(res.bgra8_gl.numpy(), want)
        assert len(np.unique(want[..., :3])) > 20  # a drawn image, not the background
    params = {k: v.clone().requires_grad_(True) for k, v in g.tensors().items()}
    assert render(Gaussians(**params), cam, opts).bgra8_gl is None


@pytest.mark.parametrize("width", [160, 48])
def test_the_binned_footprint_loses_no_visible_contribution(monkeypatch, width):
    """cpu_blend.BIN_WINDOW (the footprint splats are binned with, tighter than any
    window could reach in theory, for speed) against a binning four times wider, on the
    real donut framed and zoomed out (sub-pixel splats): no pixel moves by 1/1000."""
    from conftest import data_file

    from render import Camera
    from render.io import load_model
    from render.rasterize import cpu_blend

    g = load_model(data_file("donut_mipsplat_sh0.ply"), find_cameras=False).gaussians
    centre = g.means.median(dim=0).values.double().numpy()
    cam = Camera.look_at(centre + np.array([0.0, -0.25, 0.25]), centre, up=(0.0, 0.0, 1.0),
                         fov_y_deg=50.0, width=width, height=width * 3 // 4)
    opts = RenderOptions(antialias="blend", backend="cpu")
    with torch.no_grad():
        tight = render(g, cam, opts).rgb
        monkeypatch.setattr(cpu_blend, "BIN_WINDOW", 4 * cpu_blend.BIN_WINDOW)
        wide = render(g, cam, opts)
    assert wide.alpha.mean() > 0.1  # the donut is in view
    assert (tight - wide.rgb).abs().max() < 1e-3
