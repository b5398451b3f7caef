"""The cpu backend's per-Gaussian stages at scale: the threaded radix sort of the depths,
packing in index order, and culling before the covariance and SH colours give exactly
what the plain path (numpy's stable sort, then packing in depth order) gives."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_rasterize import camera, random_scene

from render import Camera, Gaussians, RenderOptions, render
from render.jit import njit
from render.rasterize import cpu, cpu_kernels, cpu_pack, cpu_tile_sort
from render.rasterize.cpu import rasterize_cpu
from render.rasterize.cpu_project import ProjectCPU, camera_array, numpy_f32, project_cpu
from render.rasterize.cpu_sh import sh_colors
from render.rasterize.cpu_sort import radix_sort_pairs
from render.rasterize.cpu_threads import run_chunks
from render.rasterize.types import Projection


@njit(cache=False)
def _keys(bits):
    out = np.empty(bits.shape[0], np.uint32)
    for i in range(bits.shape[0]):
        out[i] = cpu_pack.depth_key(bits[i])
    return out


@njit(cache=False)
def _logs(x):
    out = np.empty(x.shape[0])
    for i in range(x.shape[0]):
        out[i] = cpu_pack._log(x[i])
    return out


def test_inline_log_matches_libm():
    """The packing's log (its boxes' sigma bound, log(255 o) for o in [1/255, 1]) without a
    libm call, so that the loop vectorises: as numpy's to 1e-13."""
    gen = np.random.default_rng(1)
    x = np.concatenate([np.linspace(1.0, 255.0, 100_001), 1.0 + gen.random(1000) * 1e-6,
                        np.exp(gen.uniform(-700, 700, 10_000)), [np.sqrt(2.0), 2.0, 0.5]])
    want = np.log(x)
    err = np.abs(_logs(x) - want) / np.maximum(np.abs(want), 1e-300)
    near_one = np.abs(want) < 1e-3  # log -> 0: the error stays absolute
    assert err[~near_one].max() < 1e-13
    assert np.abs(_logs(x) - want)[near_one].max() < 1e-16


def _radix_order(depths: np.ndarray, n_chunks: int) -> np.ndarray:
    m = depths.shape[0]
    keys = _keys(depths.view(np.uint32))
    tmp = np.empty_like(keys)
    idx = np.arange(m, dtype=np.int32)
    return radix_sort_pairs(keys, idx, tmp, np.empty_like(idx), n_chunks, run_chunks)


def test_radix_sort_is_numpys_stable_argsort_with_ties_and_odd_floats():
    """Many exact ties (which must keep index order across the threads' chunks), signs,
    -0.0 against 0.0, infinities and NaN: the same order as numpy's stable argsort."""
    gen = np.random.default_rng(0)
    values = np.array([3.0, 2.5, 1e-30, 0.0, -0.0, -1.0, -1e30, np.inf, -np.inf, np.nan,
                       1e38, 7.0], np.float32)
    depths = values[gen.integers(0, values.size, 60_000)]
    depths[::7] = gen.random(depths[::7].size).astype(np.float32) * 100  # distinct ones too
    for n_chunks in (1, 7):
        got = _radix_order(depths, n_chunks)
        want = np.argsort(depths, kind="stable")
        assert np.array_equal(got, want), n_chunks
    # One digit shared by every key (passes skipped) and the empty case.
    same = np.full(10_000, 2.0, np.float32)
    assert np.array_equal(_radix_order(same, 6), np.arange(10_000))
    assert _radix_order(np.empty(0, np.float32), 6).shape == (0,)


def _plain_bins(proj, width, height):
    """The path before the radix sort: numpy's stable order, packing in depth order."""
    radii = proj.radii.numpy()
    visible = (radii[:, 0] > 0) & (radii[:, 1] > 0)
    arrays = [numpy_f32(t) for t in (proj.means2d, proj.conics, proj.opacities, proj.colors,
                                     proj.depths)]
    order = cpu.depth_order(visible, arrays[-1])
    m = order.shape[0]
    rec = np.empty((m, cpu_kernels.REC_COLS), np.float32)
    box = np.empty((m, 4), np.int32)
    n_rows = np.empty(m, np.int64)
    run_chunks(cpu_pack.prepare, 5, order, *arrays, width, height, rec, box, n_rows)
    tiles_x, tiles_y = (width + 15) // 16, (height + 15) // 16
    bins = cpu_kernels.bin_tiles(rec, box, n_rows, tiles_x, tiles_y, 5, run_chunks)
    return visible, order, rec, box, bins


def test_binning_is_the_plain_paths_with_ties_in_depth():
    """Groups of Gaussians at exactly the same depth (ties broken by index), over many
    chunks: the same ranks, records, boxes and tile lists, so the same images."""
    g = random_scene(11, n=3000, sh_degree=1)
    g.means[::3, 2] = 3.0  # a third of them at one depth
    g.means[1::5, 2] = 2.25
    w, h = 97, 71
    with torch.no_grad():
        proj = project_cpu(g, camera(w, h), RenderOptions())
    visible, order, rec, box, bins = _plain_bins(proj, w, h)
    assert int(visible.sum()) > 1000
    for reuse in (False, True):
        got = cpu._bin(proj.means2d, proj.conics, proj.opacities, proj.colors, proj.depths,
                       visible, w, h, reuse=reuse)
        if not reuse:
            assert np.array_equal(got[0], order)
        used = cpu_kernels.DZ + 1  # the rest of the 64-byte row is padding, never read
        assert np.array_equal(got[1][:, :used], rec[:, :used])
        assert np.array_equal(got[2], box)
        assert np.array_equal(got[3].tile_start, bins.tile_start)
        assert np.array_equal(got[3].pairs, bins.pairs)


@pytest.mark.parametrize("n", [3000, 40])
def test_tile_sorted_lists_are_the_depth_ordered_ones(monkeypatch, n):
    """Display frames with few tiles a Gaussian keep the records in index order and sort
    each tile's list on its own (lists of one, of a few, of thousands, with ties in
    depth): the lists hold the same Gaussians in the same order as the depth-order
    path's, and the frame is the same whichever path a frame takes."""
    g = random_scene(16, n=n, sh_degree=1)
    g.means[::3, 2] = 3.0  # ties, broken by index in both paths
    g.means[1::5, 2] = 2.25
    w, h = 97, 71
    with torch.no_grad():
        proj = project_cpu(g, camera(w, h), RenderOptions())
    visible, order, _, _, bins = _plain_bins(proj, w, h)
    m = order.shape[0]
    monkeypatch.setattr(cpu_tile_sort, "MAX_TILES_PER_GAUSSIAN", float("inf"))
    got = cpu._bin(proj.means2d, proj.conics, proj.opacities, proj.colors, proj.depths,
                   visible, w, h, reuse=True)
    assert got[0] is None  # index order: no ranks
    vis = np.flatnonzero(visible)
    assert np.array_equal(got[3].tile_start, bins.tile_start)
    assert np.array_equal(vis[got[3].pairs], order[bins.pairs])
    lengths = np.diff(bins.tile_start)
    if n > 1000:
        assert lengths.max() > 1024 and ((lengths > 1) & (lengths <= 32)).any()
    assert int(bins.pairs.shape[0]) > m
    frames = []
    for limit in (float("inf"), 0.0):  # every frame by tile sorts, then none
        monkeypatch.setattr(cpu_tile_sort, "MAX_TILES_PER_GAUSSIAN", limit)
        with torch.no_grad():
            frames.append(render(g, camera(w, h), RenderOptions(bgra8=True)).bgra8_gl)
    assert torch.equal(frames[0], frames[1])


def _unculled_projection(g: Gaussians, cam: Camera, opts: RenderOptions) -> Projection:
    """The projection as before culling: every Gaussian's covariance and SH colour."""
    eps, compensate = opts.dilation()
    with torch.no_grad():  # the autograd Function never culls
        outs = ProjectCPU.apply(g.means, g.quats, g.log_scales, g.opacity_logits,
                                camera_array(cam), eps, compensate)
    means2d, conics, depths, opacities, radii = outs
    colors = np.empty((len(g), 3), np.float32)
    run_chunks(sh_colors, 3, g.means.numpy(), g.sh.numpy(), cam.position.double().numpy(),
               g.sh_degree, np.ones((len(g), 2), np.int32), True, colors)
    return Projection(means2d, conics, depths, radii, opacities, torch.from_numpy(colors))


def test_culling_before_the_covariance_keeps_frames_and_gradients():
    """A camera inside a scene, most Gaussians behind or beside it: with culled ones
    skipping their covariance and SH colour, the visible ones project the same and the
    frame is the same; the differentiable render (no culling) agrees and its gradient
    still reaches the visible Gaussians."""
    g = random_scene(12, n=2000, sh_degree=3)
    g.means[:, 2] -= 3.0  # the camera now stands in the middle of the cloud
    cam = Camera.look_at((0.0, 0.0, 0.0), (0.3, 0.0, 3.0), fov_y_deg=70.0, width=80,
                         height=60)
    opts = RenderOptions(backend="cpu")
    with torch.no_grad():
        culled = project_cpu(g, cam, opts)
    full = _unculled_projection(g, cam, opts)
    vis = culled.visible
    assert 200 < int(vis.sum()) < len(g) // 2
    assert torch.equal(culled.radii, full.radii)
    for name in ("means2d", "conics", "depths", "opacities", "colors"):
        assert torch.equal(getattr(culled, name)[vis], getattr(full, name)[vis]), name
    bg = torch.zeros(3)
    assert torch.equal(rasterize_cpu(culled, 80, 60, bg)[0], rasterize_cpu(full, 80, 60, bg)[0])
    with torch.no_grad():
        plain = render(g, cam, opts)
        shown = render(g, cam, opts.replace(bgra8=True))
    assert shown.meta["n_drawn"] == plain.meta["n_drawn"] == int(vis.sum())
    assert torch.equal(shown.bgra8_gl, render(g, cam, opts.replace(bgra8=True)).bgra8_gl)
    params = {k: v.clone().requires_grad_(True) for k, v in g.tensors().items()}
    res = render(Gaussians(**params), cam, opts)
    res.rgb.sum().backward()
    # torch's SH colours (with a gradient) against numba's: float rounding apart.
    torch.testing.assert_close(res.rgb.detach(), plain.rgb, rtol=1e-5, atol=1e-6)
    drawn = res.radii.gt(0).all(-1)
    assert torch.equal(drawn, vis)
    assert bool(params["means"].grad[~drawn].eq(0).all())
    assert int(params["means"].grad[drawn].ne(0).any(-1).sum()) > int(vis.sum()) // 2


def test_blocks_out_of_view_skip_the_projection_and_lose_no_splat():
    """Culling by blocks of CULL_BLOCK Gaussians: on a scene stored in spatial order, the
    blocks beside and behind the view skip their covariance, while a block whose only
    visible Gaussian is a huge one centred off-screen, or one just past the image's edge
    that its dilation carries in, is projected: every Gaussian gets the radii of the
    unculled projection, and the frame is the same."""
    from render.rasterize.cpu_project import CULL_BLOCK, _activations, _flat, project_forward

    g = random_scene(15, n=12 * CULL_BLOCK, sh_degree=1)
    g.means[:, 0] = torch.linspace(-24.0, 24.0, len(g))  # blocks sweep across the view
    g.means[:, 2] = torch.where(torch.arange(len(g)) < 3 * CULL_BLOCK, -2.0, 4.0)
    far_left = 4 * CULL_BLOCK + 7
    g.means[far_left] = torch.tensor([-7.0, 0.0, 4.0])  # off-screen, and 1.3 wide:
    g.log_scales[far_left] = torch.log(torch.tensor([1.3, 1.3, 1.3]))  # it reaches in
    cam = camera(80, 60)
    edge_x = 4.0 * (80 + 1.2 - cam.cx) / cam.fx  # 1.2 px past the right edge, tiny:
    g.means[9 * CULL_BLOCK + 3] = torch.tensor([edge_x, 0.0, 4.0])  # eps2d reaches in
    g.log_scales[9 * CULL_BLOCK + 3] = -12.0
    opts = RenderOptions(backend="cpu")
    full = _unculled_projection(g, cam, opts)
    assert bool((full.radii[far_left] > 0).all() & (full.radii[9 * CULL_BLOCK + 3] > 0).all())

    n = len(g)
    outs = [np.full(n * k, np.nan, np.float32) for k in (2, 3, 1, 1)]
    radii = np.full(2 * n, -1, np.int32)
    scales, sigmoids = _activations(g.log_scales.numpy(), g.opacity_logits.numpy())
    eps, compensate = opts.dilation()
    run_chunks(project_forward, 3, *_flat(g.means.numpy(), g.quats.numpy(), scales), sigmoids,
               camera_array(cam), eps, compensate, True, *outs, radii)
    assert np.array_equal(radii.reshape(n, 2), full.radii.numpy())
    skipped = np.isnan(outs[2])  # depths: left as they were in skipped blocks
    assert int(skipped.sum()) >= 8 * CULL_BLOCK  # behind, and beside on both sides
    assert not skipped[[far_left, 9 * CULL_BLOCK + 3]].any()
    assert not (radii.reshape(n, 2)[skipped] > 0).any()
    with torch.no_grad():
        culled = project_cpu(g, cam, opts)
        assert torch.equal(culled.radii, full.radii)
        shown = render(g, cam, opts.replace(bgra8=True)).bgra8_gl
    bg = torch.zeros(3)
    want = rasterize_cpu(full, 80, 60, bg)[0]
    assert torch.equal(rasterize_cpu(culled, 80, 60, bg)[0], want)
    rgb8 = shown.flip(0)[..., [2, 1, 0]].float()
    assert float((rgb8 - want.clamp(0, 1) * 255).abs().max()) <= 1.0


def test_display_frames_reusing_buffers_keep_each_result():
    """Display frames reuse per-thread buffers: a frame after a larger and a smaller one
    is the same as on its own, and what a result hands out (means2d, radii, the packed
    colour) is not overwritten by the next frame."""
    big, small = random_scene(13, n=2500, sh_degree=2), random_scene(14, n=400)
    opts = RenderOptions(backend="cpu", bgra8=True)
    cam = camera(64, 48)
    with torch.no_grad():
        first = render(small, cam, opts)
        kept = (first.means2d.clone(), first.radii.clone(), first.bgra8_gl.clone())
        render(big, camera(90, 70, shift=0.2), opts)
        again = render(small, cam, opts)
        plain = render(small, cam, opts.replace(bgra8=False))
    assert torch.equal(first.means2d, kept[0]) and torch.equal(first.radii, kept[1])
    assert torch.equal(first.bgra8_gl, kept[2])
    assert torch.equal(again.bgra8_gl, kept[2])
    rgb8 = again.bgra8_gl.flip(0)[..., [2, 1, 0]].float()
    assert float((rgb8 - plain.rgb.clamp(0, 1) * 255).abs().max()) <= 1.0
    # Once nothing holds a result, the next frame hands out the same memory again.
    with torch.no_grad():
        other = render(small, camera(64, 48, shift=0.3), opts)  # kept, `again` too
    assert not torch.equal(other.bgra8_gl, kept[2]) and torch.equal(again.bgra8_gl, kept[2])
    assert torch.equal(again.radii, kept[1]) and torch.equal(again.means2d, kept[0])
    ptrs = [t.data_ptr() for t in (other.means2d, other.radii, other.bgra8_gl)]
    del other
    with torch.no_grad():
        last = render(small, cam, opts)
    assert [t.data_ptr() for t in (last.means2d, last.radii, last.bgra8_gl)] == ptrs
    assert torch.equal(last.bgra8_gl, kept[2])
    # As a viewer: the frame on screen held while the next ones are drawn and dropped.
    shown, ptrs = last.bgra8_gl.numpy()[::-1], None
    del last
    with torch.no_grad():
        for _ in range(3):
            frame = render(small, camera(64, 48, shift=0.1), opts)
            assert ptrs is None or frame.bgra8_gl.data_ptr() == ptrs
            ptrs = frame.bgra8_gl.data_ptr()
            del frame
    assert np.array_equal(shown[::-1], kept[2].numpy())


def test_kept_activations_follow_edits_of_the_model():
    """Frames without a gradient reuse exp(log_scales) and sigmoid(opacity) across
    frames: a model edited in place, or another model, projects exactly as the
    differentiable path (which computes them afresh) does, never with stale values."""
    g = random_scene(13, n=1500, sh_degree=1)
    cam = Camera.look_at((0.0, 0.0, -3.0), (0.0, 0.0, 0.0), fov_y_deg=60.0, width=64,
                         height=48)
    opts = RenderOptions(backend="cpu")

    def assert_same():
        with torch.no_grad():
            got = project_cpu(g, cam, opts)
        want = _unculled_projection(g, cam, opts)
        for name in ("radii", "conics", "opacities"):
            assert torch.equal(getattr(got, name), getattr(want, name)), name

    assert_same()
    assert_same()  # the kept values
    g.log_scales[:100] += 0.5  # in place: the same tensor, a new version
    g.opacity_logits[100:200] -= 2.0
    assert_same()
    g = random_scene(14, n=1500, sh_degree=1)  # another model of the same size
    assert_same()
