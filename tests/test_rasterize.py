"""The `cpu` backend (numba) against the brute-force torch reference, and on the real donut.

The reference evaluates every pixel against every Gaussian in plain torch with gsplat's
rules; the cpu backend bins tiles, bounds splats by their alpha >= 1/255 ellipse and
stops pixels early, so these tests are what shows those shortcuts change nothing.
"""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
import torch
from conftest import REPO, data_file

from render import Camera, Gaussians, RenderOptions, render
from render.gaussians import sh_coeffs_for_degree
from render.rasterize import cpu_forward, cpu_kernels, cpu_pack

TOL = 1e-4


def random_scene(seed: int, n: int = 160, sh_degree: int = 0) -> Gaussians:
    """Gaussians around z = 3 in front of a camera at the origin, with some behind it,
    some off-screen, a dense cluster of opaque ones (so pixels stop early) and some
    faint, large and thin ones."""
    gen = torch.Generator().manual_seed(seed)

    def rnd(*shape):
        return torch.rand(*shape, generator=gen)

    means = torch.randn(n, 3, generator=gen) * torch.tensor([1.0, 0.8, 0.6])
    means[:, 2] += 3.0
    means[: n // 10, 2] = -1.0 - rnd(n // 10)  # behind the camera
    means[n // 10: n // 5, 0] += 6.0  # far off to the side
    cluster = slice(n // 5, n // 5 + n // 4)
    means[cluster] = torch.tensor([0.2, -0.1, 2.5]) + 0.15 * torch.randn(
        n // 4, 3, generator=gen)
    scales = 0.02 + 0.25 * rnd(n, 3) ** 2
    scales[n - n // 10:, 0] *= 0.05  # thin needles
    opac = 0.05 + 0.9 * rnd(n)
    opac[cluster] = 0.9 + 0.0999 * rnd(n // 4)  # some reach the 0.999 clamp
    g = Gaussians.from_colors(means, rnd(n, 3), scales, opac,
                              torch.randn(n, 4, generator=gen), sh_degree=sh_degree)
    if sh_degree > 0:
        k = sh_coeffs_for_degree(sh_degree)
        g.sh[:, 1:k] = 0.3 * torch.randn(n, k - 1, 3, generator=gen)
    return g


def camera(width: int = 61, height: int = 45, shift: float = 0.0) -> Camera:
    cam = Camera.look_at((0.0, 0.0, 0.0), (0.0, 0.0, 3.0), fov_y_deg=55.0, width=width,
                         height=height)
    # A shifted principal point (off-centre crops do this).
    return cam.crop(int(shift * width), 0, width, height) if shift else cam


CASES = [
    # seed, sh degree, antialias mode, width, height, principal point shift, background
    (0, 0, "classic", 61, 45, 0.0, (0.0, 0.0, 0.0)),
    (1, 3, "classic", 48, 64, 0.3, (0.2, 0.5, 0.9)),
    (2, 0, "mip", 70, 33, -0.2, (1.0, 1.0, 1.0)),
    (3, 3, "mip", 40, 40, 0.0, (0.0, 0.0, 0.0)),
    (4, 0, "adaptive", 53, 47, 0.15, (0.3, 0.3, 0.3)),
    (5, 1, "adaptive", 32, 50, 0.0, (0.0, 0.0, 0.0)),
]


@pytest.mark.parametrize("seed,degree,aa,w,h,shift,bg", CASES)
def test_cpu_matches_reference(seed, degree, aa, w, h, shift, bg):
    g = random_scene(seed, sh_degree=degree)
    cam = camera(w, h, shift)
    opts = RenderOptions(antialias=aa, background=bg, output="depth", zoom=1.7)
    with torch.no_grad():
        ref = render(g, cam, opts.replace(backend="reference"))
        out = render(g, cam, opts.replace(backend="cpu"))
    assert out.rgb.shape == (h, w, 3) and out.alpha.shape == (h, w, 1)
    assert out.depth.shape == (h, w, 1)
    # The scene is not trivial: something is drawn, some pixels are saturated (so early
    # termination ran), some Gaussians are culled.
    assert float(ref.alpha.max()) > 0.999
    assert 0.05 < float((ref.alpha > 0.5).float().mean()) < 0.999
    assert int(out.meta["n_pairs"]) > w * h
    assert 0 < int(out.visible.sum()) < len(g)
    assert float((out.rgb - ref.rgb).abs().max()) < TOL
    assert float((out.alpha - ref.alpha).abs().max()) < TOL
    covered = ref.alpha > 0.05  # expected depth is ill-conditioned where nothing is drawn
    assert float(((out.depth - ref.depth).abs() * covered).max()) < TOL * 10
    # Same culling; box sizes may differ by a pixel where ceil() meets float rounding.
    assert torch.equal(out.visible, ref.visible)
    assert int((out.radii - ref.radii).abs().max()) <= 1


def test_depth_only_when_asked():
    g, cam = random_scene(7), camera()
    with torch.no_grad():
        out = render(g, cam, RenderOptions(backend="cpu"))
    assert out.depth is None


def _grads(backend: str, g0: Gaussians, cam: Camera, opts: RenderOptions):
    params = {k: v.clone().requires_grad_(True) for k, v in g0.tensors().items()}
    res = render(Gaussians(**params), cam, opts.replace(backend=backend))
    res.means2d.retain_grad()
    gen = torch.Generator().manual_seed(11)
    w_rgb = torch.rand(res.rgb.shape, generator=gen)
    loss = (res.rgb * w_rgb).sum() + 0.5 * (res.alpha**2).sum()
    if res.depth is not None:
        loss = loss + 0.1 * (res.depth * (res.alpha > 0.05)).sum()
    loss.backward()
    out = {k: v.grad for k, v in params.items()}
    out["means2d"] = res.means2d.grad
    return out, res


@pytest.mark.parametrize("aa,degree,output", [("classic", 3, "rgb"), ("mip", 0, "depth"),
                                              ("adaptive", 1, "rgb")])
def test_gradients_match_reference(aa, degree, output):
    g, cam = random_scene(21, n=90, sh_degree=degree), camera(36, 28, 0.1)
    opts = RenderOptions(antialias=aa, background=(0.3, 0.6, 0.1), output=output, zoom=1.4)
    got, res = _grads("cpu", g, cam, opts)
    want, _ = _grads("reference", g, cam, opts)
    for name in ("means", "quats", "log_scales", "opacity_logits", "sh", "means2d"):
        a, b = got[name], want[name]
        assert b is not None and float(b.norm()) > 0, name
        rel = float((a - b).norm() / b.norm())
        assert rel < 1e-3, f"{name}: relative error {rel:.2e}"
    # Gaussians that are not drawn get exactly zero.
    hidden = ~res.visible
    assert float(got["opacity_logits"][hidden].abs().max()) == 0.0


def test_a_crop_that_culls_most_gaussians_keeps_the_gradients():
    """Only the drawn Gaussians get their SH colour in the graph (cpu_project.drawn_colors):
    on a crop the gradients still match the reference, the culled get exactly zero."""
    g, cam = random_scene(23, n=120, sh_degree=3), camera(48, 36, 0.1).crop(4, 3, 14, 11)
    opts = RenderOptions(background=(0.3, 0.6, 0.1))
    got, res = _grads("cpu", g, cam, opts)
    want, _ = _grads("reference", g, cam, opts)
    hidden = ~res.visible
    assert int(hidden.sum()) > len(g) // 2  # most culled, some drawn
    for name in ("means", "sh", "opacity_logits"):
        a, b = got[name], want[name]
        assert float(b.norm()) > 0 and float((a - b).norm() / b.norm()) < 1e-3, name
    assert float(got["sh"][hidden].abs().max()) == 0.0
    assert float(got["means"][hidden].abs().max()) == 0.0


def test_absgrad_is_sum_of_per_pixel_magnitudes():
    """means2d.absgrad (AbsGS) = sum over pixels of |dL_pixel / d means2d|."""
    g = Gaussians.from_colors(
        torch.tensor([[0.0, 0.0, 3.0], [0.3, 0.1, 3.5], [-0.2, 0.2, 2.5]]),
        torch.tensor([[0.9, 0.2, 0.1], [0.1, 0.8, 0.3], [0.2, 0.3, 0.9]]),
        torch.tensor([[0.3, 0.2, 0.2], [0.4, 0.3, 0.2], [0.2, 0.3, 0.3]]),
        torch.tensor([0.7, 0.9, 0.5]), torch.randn(3, 4))
    cam = camera(14, 11)
    opts = RenderOptions(background=(0.5, 0.5, 0.5))
    params = {k: v.clone().requires_grad_(True) for k, v in g.tensors().items()}
    res = render(Gaussians(**params), cam, opts.replace(backend="cpu", absgrad=True))
    res.means2d.retain_grad()
    res.rgb.sum().backward()
    # Per-pixel gradients from the reference, one pixel at a time.
    want = torch.zeros(3, 2)
    ref = render(Gaussians(**params), cam, opts.replace(backend="reference"))
    for y in range(cam.height):
        for x in range(cam.width):
            (gm,) = torch.autograd.grad(ref.rgb[y, x].sum(), ref.means2d, retain_graph=True)
            want += gm.abs()
    assert res.means2d.absgrad.shape == (3, 2)
    assert torch.allclose(res.means2d.absgrad, want, rtol=1e-3, atol=1e-6)
    assert bool((res.means2d.absgrad >= res.means2d.grad.abs() - 1e-6).all())


def test_colour_only_kernel_matches_the_one_with_depth_and_counts():
    """The forward without depth and blended counts (the default) is a kernel of its own:
    same pixels, and n_pairs only when asked for."""
    g, cam = random_scene(6), camera(45, 37)
    with torch.no_grad():
        plain = render(g, cam, RenderOptions(backend="cpu"))
        counted = render(g, cam, RenderOptions(backend="cpu", count_pairs=True))
    assert torch.equal(plain.rgb, counted.rgb) and torch.equal(plain.alpha, counted.alpha)
    assert "n_pairs" not in plain.meta and counted.meta["n_pairs"] > 0


def test_bgra8_from_the_blending_kernel_is_the_colour_packed_for_gl():
    """RenderOptions.bgra8: the display kernel's BGRA8 is the float render's colour
    rounded and clamped (as the viewer's own packing), rows bottom first, in place of the
    float images; not made when differentiating, nor for another output."""
    from viewer.frames import pack_bgra8

    for seed, bg, (w, h) in ((7, (0.3, 1.0, 0.0), (61, 45)), (3, (0.0, 0.0, 0.0), (64, 48)),
                             (11, (1.0, 0.5, 0.25), (37, 70))):
        g, cam = random_scene(seed), camera(w, h)
        opts = RenderOptions(backend="cpu", background=bg, bgra8=True)
        with torch.no_grad():
            res = render(g, cam, opts)
            rgb = render(g, cam, RenderOptions(backend="cpu", background=bg)).rgb.numpy()
        assert res.rgb is None and res.alpha is None
        got = res.bgra8_gl.numpy()
        want = np.empty((h, w, 4), np.uint8)
        pack_bgra8(rgb.reshape(h, -1), 3, want.reshape(h, -1))
        assert np.array_equal(got, want)
        assert not np.array_equal(got, got[::-1])  # the flip is visible in this image
        top_first = np.floor(np.clip(rgb, 0, 1) * np.float32(255) + np.float32(0.5))
        assert np.array_equal(got[::-1, :, 2::-1], top_first.astype(np.uint8))  # B, G, R
        assert (got[..., 3] == 255).all()
    assert (got[..., 1] == 128).any() and (got[..., 0] == 64).any()  # the background shows
    away = Camera.look_at((50.0, 0.0, 0.0), (60.0, 0.0, 0.0), fov_y_deg=55.0, width=w,
                          height=h)  # every tile empty: the background alone
    with torch.no_grad():
        empty = render(g, away, opts).bgra8_gl.numpy()
    assert (empty == np.array([64, 128, 255, 255], np.uint8)).all()
    params = {k: v.clone().requires_grad_(True) for k, v in g.tensors().items()}
    assert render(Gaussians(**params), cam, opts).bgra8_gl is None
    assert render(g, cam, RenderOptions(backend="cpu")).bgra8_gl is None
    with torch.no_grad():
        alpha = render(g, cam, opts.replace(output="alpha"))
    assert alpha.bgra8_gl is None and alpha.alpha.shape == (h, w, 1)


def test_absgrad_off_gives_the_same_gradients_without_it():
    """The backward without the |dL/d means2d| sums (the default) is a separate kernel:
    it must give the same gradients and leave means2d.absgrad unset."""
    g, cam = random_scene(5), camera(45, 37)  # several tiles, partial ones at the edges
    grads = {}
    for absgrad in (False, True):
        params = {k: v.clone().requires_grad_(True) for k, v in g.tensors().items()}
        res = render(Gaussians(**params), cam, RenderOptions(backend="cpu", absgrad=absgrad))
        res.means2d.retain_grad()
        (res.rgb * torch.linspace(-1, 1, 3)).sum().backward()
        grads[absgrad] = {k: p.grad for k, p in params.items()}
        grads[absgrad]["means2d"] = res.means2d.grad
        assert hasattr(res.means2d, "absgrad") == absgrad
    for k, want in grads[True].items():
        torch.testing.assert_close(grads[False][k], want, rtol=1e-4, atol=1e-6, msg=k)


def test_no_recompilation_across_calls():
    """The finetune loop calls the rasterizer ~1000 times: sizes and options must not
    trigger new numba specialisations."""
    g = random_scene(3)
    for w, h, out, aa in [(40, 30, "rgb", "classic"), (33, 57, "depth", "mip"),
                          (64, 48, "rgb", "adaptive")]:
        params = {k: v.clone().requires_grad_(True) for k, v in g.tensors().items()}
        res = render(Gaussians(**params), camera(w, h),
                     RenderOptions(backend="cpu", output=out, antialias=aa))
        res.rgb.mean().backward()
        with torch.no_grad():
            render(g, camera(w, h), RenderOptions(backend="cpu", output=out))
    # one Gaussian in view and none (a tile of a tiled render can hold either)
    for keep in (slice(0, 1), slice(0, 0)):
        one = Gaussians(**{k: v[keep] for k, v in g.tensors().items()})
        with torch.no_grad():
            render(one, camera(40, 30), RenderOptions(backend="cpu"))
    from render.rasterize import cpu_sort

    for kernel in (cpu_pack.prepare_keys, cpu_pack.permute_rows, cpu_sort._histogram,
                   cpu_sort._scatter, cpu_kernels._offsets, cpu_kernels._count_tiles,
                   cpu_kernels._fill_tiles,
                   cpu_forward.forward, cpu_forward.forward_extras, cpu_kernels.backward,
                   cpu_kernels.gather_grads):
        assert len(kernel.signatures) == 1, kernel


def test_concurrent_renders_from_two_threads_agree():
    """The viewer and a fine-tuning job may render at the same time."""
    import threading

    g, cam = random_scene(4), camera()
    opts = RenderOptions(backend="cpu", output="depth")
    with torch.no_grad():
        want = render(g, cam, opts)
    got: list = [None] * 4

    def job(i: int) -> None:
        with torch.no_grad():
            got[i] = render(g, cam, opts)

    threads = [threading.Thread(target=job, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for res in got:
        assert torch.equal(res.rgb, want.rgb) and torch.equal(res.depth, want.depth)


def test_chunks_run_once_each_and_a_held_up_thread_leaves_its_share(monkeypatch):
    """run_chunks: every chunk exactly once; while one thread is held up (a core taken by
    another program), the other threads take the chunks it would have had; a chunk's
    exception reaches the caller."""
    import threading
    import time

    from render.rasterize import cpu_threads

    monkeypatch.setenv("MIPVIEW_CPU_THREADS", "2")
    done: list[tuple[int, str]] = []

    def kernel(out, ticket, n_chunks):
        while (chunk := cpu_threads.next_chunk(ticket)) < n_chunks:
            if chunk == 0:
                time.sleep(0.3)  # held up
            out.append((chunk, threading.current_thread().name))

    cpu_threads.run_chunks(kernel, 8, done)
    assert sorted(c for c, _ in done) == list(range(8))
    slow = next(name for c, name in done if c == 0)
    assert sum(name != slow for _, name in done) == 7  # the others took the rest

    def failing(ticket, n_chunks):
        while (chunk := cpu_threads.next_chunk(ticket)) < n_chunks:
            if chunk == 5:
                raise ValueError("chunk 5")

    with pytest.raises(ValueError, match="chunk 5"):
        cpu_threads.run_chunks(failing, 8)


def test_chunks_are_handed_out_once_among_compiled_threads(monkeypatch):
    """next_chunk under contention: two compiled (nogil) calls drawing 200,000 tiny chunks
    from one ticket at once take each chunk exactly once."""
    from render.jit import njit
    from render.rasterize import cpu_threads

    @njit(nogil=True)
    def mark(counts, ticket, n_chunks):
        chunk = cpu_threads.next_chunk(ticket)
        while chunk < n_chunks:
            counts[chunk] += 1
            chunk = cpu_threads.next_chunk(ticket)

    monkeypatch.setenv("MIPVIEW_CPU_THREADS", "2")
    counts = np.zeros(200_000, np.int64)
    cpu_threads.run_chunks(mark, counts.shape[0], counts)
    assert counts.min() == 1 and counts.max() == 1


def test_empty_and_all_culled_scenes():
    g = random_scene(0)
    g_behind = Gaussians(g.means * torch.tensor([1.0, 1.0, -1.0]), g.quats, g.log_scales,
                         g.opacity_logits, g.sh)
    g_behind.means[:, 2] = -5.0
    cam = camera()
    with torch.no_grad():
        out = render(g_behind, cam, RenderOptions(backend="cpu", background=(0.1, 0.2, 0.3),
                                                  count_pairs=True))
    assert float(out.alpha.abs().max()) == 0.0
    assert torch.allclose(out.rgb, torch.tensor([0.1, 0.2, 0.3]).expand(cam.height, cam.width, 3))
    assert out.meta["n_pairs"] == 0


# -- the real donut ----------------------------------------------------------------------


def _bench_module():
    spec = importlib.util.spec_from_file_location("bench_render", REPO / "benchmarks" / "render.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_real_donut_renders_as_a_donut(tmp_path_factory):
    bench = _bench_module()
    g = bench.load_gaussians(data_file("donut_mipsplat_sh0.ply"))
    assert len(g) == 45624
    cam = bench.framing_camera(g, 320, 240)
    with torch.no_grad():
        res = render(g, cam, RenderOptions(backend="cpu", antialias="mip"))
        white = render(g, cam, RenderOptions(backend="cpu", antialias="mip",
                                             background=(1.0, 1.0, 1.0)))
    rgb, alpha = res.rgb.numpy(), res.alpha[..., 0].numpy()
    from PIL import Image

    out = "/tmp/mipview_donut_cpu.png"
    Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8)).save(out)

    assert np.isfinite(rgb).all() and np.isfinite(alpha).all()
    assert rgb.min() >= 0.0 and alpha.max() <= 1.0
    solid = alpha > 0.5
    # The object fills about 70 % of the width (what the camera was framed for) ...
    cols = np.flatnonzero(solid.any(axis=0))
    span = (cols[-1] - cols[0] + 1) / cam.width
    assert 0.6 < span < 0.85, span
    # ... is centred, covers a plausible share of the frame, and is opaque inside.
    assert abs((cols[0] + cols[-1]) / 2 / cam.width - 0.5) < 0.1
    assert 0.25 < solid.mean() < 0.65, solid.mean()
    assert (alpha > 0.99).sum() > 0.8 * solid.sum()
    # Icing and dough: a bright, warm-to-pink object, not grey mush or a flat colour.
    mean = rgb[solid].mean(axis=0)
    assert 0.4 < mean.mean() < 0.95, mean
    assert mean[0] > mean[1], mean  # red above green: pink icing, golden dough
    assert rgb[solid].std(axis=0).min() > 0.05  # sprinkles and shading: texture
    # Background where nothing is: the corners are empty, and follow the background.
    corners = [alpha[:8, :8], alpha[:8, -8:], alpha[-8:, :8], alpha[-8:, -8:]]
    assert max(float(c.max()) for c in corners) < 0.01
    assert np.allclose(white.rgb.numpy()[:8, :8], 1.0, atol=0.01)
    # The hole in the middle: lower coverage than the ring around it.
    h, w = alpha.shape
    ring = alpha[h // 2 - 3:h // 2 + 3, w // 2 - 60:w // 2 - 40].mean()
    assert ring > 0.9


def test_real_donut_gradients_are_finite_and_reach_every_parameter():
    bench = _bench_module()
    g = bench.load_gaussians(data_file("donut_mipsplat_sh0.ply"))
    cam = bench.framing_camera(g, 160, 120)
    params = {k: v.clone().requires_grad_(True) for k, v in g.tensors().items()}
    res = render(Gaussians(**params), cam, RenderOptions(backend="cpu", absgrad=True))
    res.means2d.retain_grad()
    (res.rgb - 0.5).abs().mean().backward()
    for name, p in params.items():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert float(p.grad.abs().sum()) > 0, name
    drawn = res.visible
    assert bool((res.means2d.absgrad[~drawn] == 0).all())
    assert float(res.means2d.absgrad[drawn].sum()) > 0
    assert math.isfinite(float(res.means2d.grad.norm()))


def _numba_features(**env: str) -> str:
    import os
    import subprocess
    import sys

    code = "import render.jit, numba; print(numba.config.CPU_FEATURES)"
    clean = {k: v for k, v in os.environ.items()
             if k not in ("NUMBA_CPU_FEATURES", "NUMBA_CPU_NAME", "MIPVIEW_NUMBA_256")}
    out = subprocess.run([sys.executable, "-c", code], env={**clean, **env}, check=True,
                         capture_output=True, text=True)
    return out.stdout.strip()


def test_kernels_use_512_bit_vectors_only_where_the_cpu_has_them_and_the_user_agrees():
    import llvmlite.binding as ll

    host = ll.get_host_cpu_features().flatten()
    got = _numba_features()
    if "+avx512f" in host.split(","):
        assert got == host + ",-prefer-256-bit"
    else:
        assert got == "None"
    assert _numba_features(MIPVIEW_NUMBA_256="1") == "None"
    assert _numba_features(NUMBA_CPU_FEATURES="+avx2") == "+avx2"


def test_per_gaussian_loops_compile_to_vector_code():
    """The projection and the packing are written branch-free on flat rows so that LLVM
    vectorises them (render/jit.py raises its limits for that): a libm call, a load under
    a branch or numba's min() in their loops would leave them scalar, 3x slower, with
    the same images. Compiled afresh (the on-disk cache keeps no assembly)."""
    import subprocess
    import sys

    import llvmlite.binding as ll

    if "+avx2" not in ll.get_host_cpu_features().flatten().split(","):
        pytest.skip("no AVX2 on this CPU: nothing to vectorise with")
    code = """
import numpy as np
from render.rasterize import cpu_pack, cpu_project
from render.rasterize.cpu_kernels import REC_COLS
n = 256
f = np.linspace(0.5, 2.0, 4 * n).astype(np.float32)
ticket = np.zeros(1, np.int64)
cpu_project.project_forward(f[:3 * n], f, f[:3 * n], f[:n].astype(np.float64),
    np.linspace(0.1, 1.0, 20), 0.3, True, False, np.empty(2 * n, np.float32),
    np.empty(3 * n, np.float32), np.empty(n, np.float32), np.empty(n, np.float32),
    np.empty(2 * n, np.int32), ticket, 1)
ticket[0] = 0
rec = np.empty(n * REC_COLS, np.float32)
cpu_pack.prepare_keys(np.arange(n), f[:2 * n], f[:3 * n], f[:n], f[:3 * n], f[:n],
    f[:n].view(np.uint32), 64, 48, rec, rec.view(np.int32), np.empty(n, np.uint32),
    np.empty(n, np.int32), np.empty(4 * n, np.int32), np.empty(n, np.int64),
    np.zeros(1, np.int64), ticket, 1)
for kernel in (cpu_project.project_forward, cpu_project._project_block,
               cpu_pack.prepare_keys):
    asm = kernel.inspect_asm(kernel.signatures[0])
    print(kernel.__name__, sum(asm.count(f"%{r}mm") for r in "yz"))
"""
    import os
    import tempfile

    with tempfile.TemporaryDirectory() as cache:
        out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                             text=True, cwd=REPO, env={**os.environ, "NUMBA_CACHE_DIR": cache})
    lines = out.stdout.split("\n")[-4:-1]
    assert len(lines) == 3 and lines[1].startswith("_project_block"), out.stdout
    for line in lines:
        name, vector_operands = line.split()
        assert int(vector_operands) > 100, line
