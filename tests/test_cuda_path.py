"""The CUDA path without a GPU: gsplat's real Python layer over a CPU stand-in for its
compiled kernels (tests/gsplat_fake_kernels.py), on tensors that report cuda:0 and refuse host
conversions. Each test fails if a device defect of the CUDA path comes back."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from gpu_fakes import DeviceMixError, HostConversionError, fake_cuda
from gsplat_fake_kernels import fake_gsplat_kernels
from PIL import Image

from render import Camera, Gaussians, RenderOptions, render
from render.rasterize import gsplat_backend


def scene(n: int = 60, degree: int = 1, seed: int = 0) -> tuple[Gaussians, Camera]:
    gen = torch.Generator().manual_seed(seed)
    means = torch.randn(n, 3, generator=gen)
    means[:, 2] += 4.0
    g = Gaussians.from_colors(means, torch.rand(n, 3, generator=gen),
                              0.05 + 0.2 * torch.rand(n, 3, generator=gen),
                              torch.rand(n, generator=gen), torch.randn(n, 4, generator=gen),
                              sh_degree=degree)
    return g, Camera.look_at((0.0, 0.0, 0.0), (0.0, 0.0, 4.0), width=40, height=24)


@pytest.fixture
def gpu(monkeypatch):
    """A "GPU": cuda tensors on the host, gsplat's kernels in torch, `auto` -> cuda."""
    import render.rasterize as rz

    with fake_cuda(monkeypatch) as state, fake_gsplat_kernels(monkeypatch) as kernels:
        monkeypatch.setattr(gsplat_backend, "_available", (True, "fake GPU"))
        monkeypatch.setattr(rz, "_auto_choice", ("cuda", "fake GPU"))
        state.kernels = kernels
        yield state


def test_the_fake_device_refuses_host_conversions_and_device_mixes(gpu):
    x = torch.ones(3).to("cuda")
    assert x.device.type == "cuda" and x.is_cuda
    with pytest.raises(HostConversionError):
        x.numpy()
    with pytest.raises(HostConversionError):
        np.asarray(x)
    with pytest.raises(DeviceMixError):
        x + torch.ones(3)
    assert float(x.sum()) == 3.0  # .item() / float() are a sync, not a mistake
    assert (x + torch.tensor(1.0)).device.type == "cuda"  # 0-dim CPU scalars mix
    y = x.cpu()
    assert y.device.type == "cpu" and y.numpy().tolist() == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("aa", ["classic", "mip"])
def test_gsplat_through_the_fake_kernels_renders_like_the_cpu_backend(gpu, aa):
    g, cam = scene()
    opts = RenderOptions(antialias=aa, output="depth", sh_degree=1)
    with torch.no_grad():
        cpu = render(g, cam, opts.replace(backend="cpu"))
        cuda = render(g.to("cuda"), cam, opts.replace(backend="cuda"))
    assert cuda.rgb.device.type == "cuda" and cuda.meta["backend"] == "cuda"
    assert gpu.kernels.calls["rasterize_to_pixels_3dgs_fwd"] == 1
    torch.testing.assert_close(cuda.rgb.cpu(), cpu.rgb, atol=1e-5, rtol=0)
    torch.testing.assert_close(cuda.alpha.cpu(), cpu.alpha, atol=1e-5, rtol=0)
    torch.testing.assert_close(cuda.depth.cpu(), cpu.depth, atol=1e-3, rtol=1e-4)


def test_gsplat_gradients_through_the_fake_kernels_match_the_cpu_backend(gpu):
    g, cam = scene(n=40)
    grads = {}
    for backend in ("cpu", "cuda"):
        dev = "cuda" if backend == "cuda" else "cpu"
        params = {k: v.to(dev).clone().requires_grad_(True) for k, v in g.tensors().items()}
        res = render(Gaussians(**params), cam, RenderOptions(backend=backend, absgrad=True,
                                                             antialias="mip"))
        res.means2d.retain_grad()
        (res.rgb * torch.linspace(0, 1, 3, device=dev)).sum().backward()
        grads[backend] = ({k: p.grad.cpu() for k, p in params.items()},
                          res.means2d.absgrad.cpu())
    for k, gc in grads["cpu"][0].items():
        torch.testing.assert_close(grads["cuda"][0][k], gc, atol=2e-4, rtol=2e-3, msg=k)
    vis = grads["cpu"][1].abs().sum(-1) > 0
    torch.testing.assert_close(grads["cuda"][1][vis], grads["cpu"][1][vis], atol=2e-4,
                               rtol=2e-3)


# -- the probe and --backend cuda, with injected failures -----------------------------------
class _KernelImport:
    """A meta-path finder standing in for gsplat.cuda._backend's import: counts the
    attempts, prints on stdout as gsplat's build does, then raises `error` or hands back
    a module whose _C is `kernels`."""

    def __init__(self, error: Exception | None = None, kernels=None) -> None:
        self.error, self.kernels, self.attempts = error, kernels, 0

    def find_spec(self, name, path=None, target=None):
        import importlib.machinery

        if name != "gsplat.cuda._backend":
            return None
        return importlib.machinery.ModuleSpec(name, self)

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        self.attempts += 1
        print("gsplat: Setting up CUDA (This may take a few minutes the first time)")
        if self.error is not None:
            raise self.error
        module._C = self.kernels


@pytest.fixture
def fresh_probe(monkeypatch):
    """The probe undecided and `auto` unresolved, as at a process start."""
    import sys

    import gsplat.cuda

    import render.rasterize as rz

    monkeypatch.setattr(gsplat_backend, "_available", None)
    monkeypatch.setattr(rz, "_auto_choice", None)
    monkeypatch.delitem(sys.modules, "gsplat.cuda._backend", raising=False)
    monkeypatch.delattr(gsplat.cuda, "_backend", raising=False)

    def install(finder: _KernelImport) -> _KernelImport:
        monkeypatch.setattr(sys, "meta_path", [finder] + sys.meta_path)
        return finder

    return install


def _render_cuda(g, cam):
    return render(g, cam, RenderOptions(backend="cuda"))


@pytest.mark.fault
def test_cpu_only_torch_gives_a_clear_error_not_an_assertion(monkeypatch, fresh_probe):
    from render.rasterize import backend_device
    from render.rasterize.gsplat_backend import BackendUnavailable

    monkeypatch.setattr(torch.version, "cuda", None)
    g, cam = scene(n=10)
    with pytest.raises(BackendUnavailable, match="CPU-only build"):
        backend_device("cuda")
    with pytest.raises(BackendUnavailable, match="CPU-only build"):
        _render_cuda(g, cam)
    assert backend_device("auto").type == "cpu"


@pytest.mark.fault
def test_no_toolkit_ends_in_the_cpu_backend_or_a_clear_error(monkeypatch, fresh_probe, capsys):
    import render.rasterize as rz
    from render.rasterize.gsplat_backend import BackendUnavailable

    finder = fresh_probe(_KernelImport(kernels=None))  # gsplat: "No CUDA toolkit found"
    g, cam = scene(n=10)
    with fake_cuda(monkeypatch):
        assert rz.resolve_backend("auto") == "cpu"
        assert "no CUDA toolkit (nvcc)" in rz.auto_backend()[1]
        with pytest.raises(BackendUnavailable, match="no CUDA toolkit"):
            _render_cuda(g.to("cuda"), cam)
        assert render(g, cam, RenderOptions(backend="auto")).meta["backend"] == "cpu"
    assert finder.attempts == 1
    assert capsys.readouterr().out == ""  # gsplat's console output went to stderr


@pytest.mark.fault
def test_a_failed_build_is_tried_once_not_every_frame(monkeypatch, fresh_probe, capsys):
    from render.rasterize.gsplat_backend import BackendUnavailable

    finder = fresh_probe(_KernelImport(error=ImportError("gsplat_cuda.so: cannot open")))
    g, cam = scene(n=10)
    with fake_cuda(monkeypatch):
        gc = g.to("cuda")
        for _ in range(3):  # three frames
            with pytest.raises(BackendUnavailable, match="failed to build or load"):
                _render_cuda(gc, cam)
    assert finder.attempts == 1
    assert capsys.readouterr().out == ""


@pytest.mark.fault
def test_a_failed_smoke_render_is_reported_as_such(monkeypatch, fresh_probe):
    from gsplat_fake_kernels import FakeGsplatC

    kernels = FakeGsplatC()

    def broken(*args):
        raise RuntimeError("CUDA error: no kernel image is available for execution")

    kernels.rasterize_to_pixels_3dgs_fwd = broken
    fresh_probe(_KernelImport(kernels=kernels))
    with fake_cuda(monkeypatch):
        ok, why = gsplat_backend.available()
    assert not ok
    assert "loaded but a test render failed" in why and "no kernel image" in why
    assert "failed to load" not in why


def test_the_probe_succeeds_on_working_kernels(monkeypatch, fresh_probe):
    from gsplat_fake_kernels import FakeGsplatC

    finder = fresh_probe(_KernelImport(kernels=FakeGsplatC()))
    with fake_cuda(monkeypatch, device_name="Fake H200"):
        import render.rasterize as rz

        assert rz.auto_backend() == ("cuda", "gsplat CUDA kernels on Fake H200")
        assert rz.backend_device("auto").type == "cuda"
    assert finder.attempts == 1


# -- the adaptation, training and scoring on a "GPU" -----------------------------------------
def _flat_scene(n: int = 120) -> Gaussians:
    gen = torch.Generator().manual_seed(2)
    means = torch.cat([torch.rand(n, 2, generator=gen) * 1.6 - 0.8, torch.zeros(n, 1)], 1)
    return Gaussians.from_colors(means, torch.rand(n, 3, generator=gen),
                                 torch.full((n, 3), 0.02), torch.full((n,), 0.9))


def test_scale_readout_on_a_cuda_model_without_cameras(gpu):
    """A bare .ply: the viewer moves it to the GPU, then builds virtual base cameras and
    the zoom readout from it (the readout once called .numpy() on CUDA tensors)."""
    from adapt.scale import BaseSampling, ScaleProbe, effective_scale, virtual_base_cameras

    host = _flat_scene()
    g = host.to("cuda")
    cams = virtual_base_cameras(g, width=64, height=64, n=6)
    base = BaseSampling.from_cameras(g, cams)
    near = Camera.look_at(cams[0].position * 0.5, (0.0, 0.0, 0.0), width=64, height=64,
                          fov_y_deg=40.0, up=(0.0, -1.0, 0.0))
    s = ScaleProbe(base, g)(near)
    # what the same model gives on the host
    host_cams = virtual_base_cameras(host, width=64, height=64, n=6)
    host_base = BaseSampling.from_cameras(host, host_cams)
    assert s == pytest.approx(effective_scale(host_base, host, near), rel=1e-6)
    assert s > 1.2


def test_the_adaptation_worker_runs_on_its_own_stream(gpu, tmp_path):
    from adapt.cache import LevelCache
    from adapt.finetune import FinetuneConfig
    from adapt.views import ViewSettings
    from adapt.worker import AdaptSettings, AdaptWorker

    cams = [Camera.look_at((x, 0.1, -3.0), (0.0, 0.0, 0.0), fov_y_deg=40, width=32, height=32)
            for x in (-0.4, 0.0, 0.4)]
    settings = AdaptSettings(finetune=FinetuneConfig(iters=3, densify_interval=2),
                             views=ViewSettings(n_views=2, n_user=0, holdout_every=5))
    w = AdaptWorker(_flat_scene().to("cuda"), cams, LevelCache("h", "s", tmp_path / "c"),
                    settings, render_threads=1)
    try:
        w.request(-1)
        assert w.wait_idle(120)
        st = w.status()
        assert st.phase == "done" and st.error == "", st.error
        assert w.get(-1) is not None and len(w.get(-1)) > 0
    finally:
        w.shutdown()
    assert len(gpu.streams) == 1, "the worker makes one stream of its own"
    own = gpu.streams[0]
    assert gpu.kernels.streams and all(s is own for s in gpu.kernels.streams)
    assert gpu.default in own.waited  # ordered after what the viewer queued before


@pytest.mark.fault
def test_cuda_out_of_memory_in_a_job_frees_the_cache_and_says_gpu(gpu, tmp_path, monkeypatch):
    import adapt.worker as worker_mod
    from adapt.cache import LevelCache
    from adapt.worker import AdaptSettings, AdaptWorker

    def oom(*a, **k):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(worker_mod, "adapt_level", oom)
    cams = [Camera.look_at((0.0, 0.1, -3.0), (0.0, 0.0, 0.0), width=16, height=16)]
    w = AdaptWorker(_flat_scene(20).to("cuda"), cams, LevelCache("h", "s", tmp_path / "c"),
                    AdaptSettings(), render_threads=1)
    try:
        w.request(1)
        assert w.wait_idle(60)
        st = w.status()
    finally:
        w.shutdown()
    assert st.phase == "error" and "GPU ran out of memory" in st.error
    assert gpu.empty_cache >= 1


def _mini_nerf(root, size: int = 16):
    for split in ("train", "test"):
        (root / split).mkdir(parents=True)
        frames = []
        for i, x in enumerate((-0.3, 0.3)):
            rgba = np.zeros((size, size, 4), np.uint8)
            rgba[..., 0] = 200
            rgba[4:12, 4:12, 3] = 255
            Image.fromarray(rgba, "RGBA").save(root / split / f"r_{i}.png")
            m = np.eye(4)
            m[0, 3], m[2, 3] = x, 4.0
            frames.append({"file_path": f"./{split}/r_{i}", "transform_matrix": m.tolist()})
        (root / f"transforms_{split}.json").write_text(
            json.dumps({"camera_angle_x": 0.7, "frames": frames}))
    return root


def test_train_scores_cuda_renders_against_host_images(gpu, tmp_path):
    from viewer.commands.train_cmd import train_to_file

    data = _mini_nerf(tmp_path / "scene")
    out = tmp_path / "out" / "point_cloud.ply"
    summary = train_to_file(data, 1.0, 3, out, n_init=150, sh_degree=0, quiet=True)
    assert out.is_file() and summary["test_views"] == 2
    assert np.isfinite(summary["test_psnr"]) and summary["test_psnr"] > 5.0
    assert gpu.kernels.calls["rasterize_to_pixels_3dgs_bwd"] >= 3  # it trained on "cuda"


@pytest.mark.fault
def test_a_frame_out_of_gpu_memory_says_so_and_frees_the_cache(gpu, monkeypatch):
    from types import SimpleNamespace

    import viewer.frames as frames

    def oom(req, keep):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 3.00 GiB")

    monkeypatch.setattr(frames, "render_panes", oom)
    g, cam = scene(n=30)
    req = SimpleNamespace(cameras=(cam,), sources=(SimpleNamespace(gaussians=g),),
                          full_res=True, tag={})
    worker = frames.RenderWorker.__new__(frames.RenderWorker)  # no thread: one frame
    frame = worker._render(req, keep=True)
    assert frame.panes == [] and "GPU ran out of memory" in frame.error
    assert "30 Gaussians at 40 x 24" in frame.error
    assert gpu.empty_cache == 1


# -- the viewer's start: no kernel build on the GL thread -------------------------------------
class _SlowKernelImport(_KernelImport):
    """A first build that lasts until `release` is set."""

    def __init__(self, kernels) -> None:
        import threading

        super().__init__(kernels=kernels)
        self.release = threading.Event()

    def exec_module(self, module):
        assert self.release.wait(30), "the test never let the build finish"
        super().exec_module(module)


def test_the_viewer_starts_on_the_cpu_while_the_kernels_build(monkeypatch, fresh_probe):
    from gsplat_fake_kernels import FakeGsplatC

    from viewer.backend_start import start_backend

    finder = fresh_probe(_SlowKernelImport(FakeGsplatC()))
    with fake_cuda(monkeypatch):
        start = start_backend("auto")  # returns while the "build" is still running
        assert (start.name, start.render_backend, start.device.type) == ("cpu", "cpu", "cpu")
        assert "building gsplat's CUDA kernels" in start.reason
        assert start.probe is not None and not start.probe.done()
        finder.release.set()
        assert start.probe.wait(30)
        assert gsplat_backend.available()[0] is True
    assert finder.attempts == 1


@pytest.mark.fault
def test_the_viewer_with_cuda_where_it_cannot_run_is_a_clear_error(monkeypatch, fresh_probe):
    from render.rasterize.gsplat_backend import BackendUnavailable
    from viewer.backend_start import start_backend

    monkeypatch.setattr(torch.version, "cuda", None)
    with pytest.raises(BackendUnavailable, match="CPU-only build"):
        start_backend("cuda")
    assert start_backend("auto").name == "cpu"


@pytest.mark.fault
def test_the_viewer_after_a_failed_build_says_why(monkeypatch, fresh_probe):
    from render.rasterize.gsplat_backend import BackendUnavailable
    from viewer.backend_start import start_backend

    fresh_probe(_KernelImport(error=OSError("nvcc fatal: Unsupported gpu architecture")))
    with fake_cuda(monkeypatch):
        start = start_backend("cuda")
        assert start.probe is not None and start.probe.wait(30)
        ok, why = gsplat_backend.available()
        assert not ok and "Unsupported gpu architecture" in why
        with pytest.raises(BackendUnavailable, match="failed to build"):
            start_backend("cuda")  # a second window, or a restart of the viewer's state
        auto = start_backend("auto")
        assert auto.name == "cpu" and "failed to build" in auto.reason


def test_mipview_adapt_moves_a_host_base_to_the_gpu_once(gpu, tmp_path):
    """The base loaded from disk goes to the GPU once, not at each of the level's
    renders (pseudo-GT, finetune views)."""
    import argparse

    from render.io import save_ply
    from viewer.commands import adapt_cmd

    model = tmp_path / "base.ply"
    save_ply(_flat_scene(97), model)
    parser = argparse.ArgumentParser()
    adapt_cmd.add_arguments(parser)
    args = parser.parse_args([str(model), "--level", "1/2", "--out", str(tmp_path / "a.ply"),
                              "--iters", "3", "--views", "2", "--base-size", "32x32",
                              "--no-eval", "--quiet"])
    assert adapt_cmd.run(args) == 0
    renders = gpu.kernels.calls["rasterize_to_pixels_3dgs_fwd"]
    quats_copies = gpu.uploads.count((97, 4))  # one tensor of the base's five
    assert renders > 3 and quats_copies == 1, (renders, quats_copies)


def test_the_sr_upsampler_runs_on_the_models_device(gpu, tmp_path, monkeypatch):
    import adapt.upsample as upsample
    from adapt.cache import LevelCache
    from adapt.worker import AdaptSettings, AdaptWorker

    made = []

    class Recorder:
        def __init__(self, path, device="cpu", **kw):
            made.append(torch.device(device))
            raise RuntimeError("recorded")

    monkeypatch.setattr(upsample, "SpandrelUpsampler", Recorder)
    cams = [Camera.look_at((0.0, 0.1, -3.0), (0.0, 0.0, 0.0), width=16, height=16)]
    w = AdaptWorker(_flat_scene(20).to("cuda"), cams, LevelCache("h", "s", tmp_path / "c"),
                    AdaptSettings(sr_model=str(tmp_path / "x4.safetensors")),
                    render_threads=1)
    try:
        w.request(1)
        assert w.wait_idle(60)
    finally:
        w.shutdown()
    assert made and made[0].type == "cuda"


@pytest.mark.parametrize("output", ["rgb", "depth", "alpha"])
def test_frames_from_cuda_renders_stay_on_the_gpu_or_come_to_the_host_whole(gpu, output):
    """The render thread's frame conversion: with interop (keep_on_device) a CUDA BGRA
    tensor, else a host image made on that thread; both the cpu backend's bytes."""
    from viewer.compare import Source
    from viewer.frames import FrameRequest, render_panes

    g, cam = scene(n=40)
    opts = RenderOptions(output=output, sh_degree=1)
    host = render_panes(FrameRequest(1, (cam,), (Source(g, "A"),),
                                     opts.replace(backend="cpu")), False).images[0]
    req = FrameRequest(2, (cam,), (Source(g.to("cuda"), "A"),), opts.replace(backend="cuda"))
    on_gpu = render_panes(req, keep_on_device=True).images[0]
    assert on_gpu.device.type == "cuda" and on_gpu.dtype == torch.uint8
    to_host = render_panes(req, keep_on_device=False).images[0]
    assert isinstance(to_host, np.ndarray) and to_host.shape == (24, 40, 4)
    assert np.array_equal(to_host, on_gpu.cpu().numpy())
    assert np.abs(to_host.astype(int) - host.astype(int)).max() <= 1


@pytest.mark.slow
def test_mipview_eval_runs_on_the_gpu_and_moves_each_base_once(gpu, tmp_path):
    """`mipview eval` scored CUDA renders against host images (it stopped at its first
    base) and copied a host base to the GPU at each render."""
    import argparse

    from viewer.commands import eval_cmd

    data = _mini_nerf(tmp_path / "scene", size=32)
    parser = argparse.ArgumentParser()
    eval_cmd.add_arguments(parser)
    args = parser.parse_args([
        str(data), "--out", str(tmp_path / "report"), "--only", "zoom-out", "--out-scale",
        "1", "--out-tests", "1/2", "--train-iters", "2", "--train-init", "100",
        "--adapt-iters", "2", "--adapt-views", "1", "--methods", "3dgs,mip,mipmap_train",
        "--quiet"])
    assert eval_cmd.run(args) == 0
    results = json.loads((tmp_path / "report" / "results.json").read_text())
    assert "zoom-out" in json.dumps(results)
    # the trained base goes up once to train, the base read back from disk once to score
    assert gpu.uploads.count((100, 4)) <= 2, gpu.uploads.count((100, 4))


def test_the_window_moves_to_the_gpu_when_the_kernels_are_ready(monkeypatch, fresh_probe):
    """ViewerApp._poll_backend_probe (each UI frame): once the background build works,
    the model goes to the GPU, the adaptation follows, frames stay on the GPU for interop."""
    from types import SimpleNamespace

    from gsplat_fake_kernels import FakeGsplatC

    from viewer.app import ViewerApp
    from viewer.state import ModelState

    fresh_probe(_KernelImport(kernels=FakeGsplatC()))
    with fake_cuda(monkeypatch):
        probe = gsplat_backend.ProbeInBackground()
        assert probe.wait(30)
        g, _ = scene(n=20)
        app = ViewerApp.__new__(ViewerApp)  # the frame hook alone, no window
        app._backend_probe, app.backend = probe, "auto"
        app.backend_name, app.device = "cpu", torch.device("cpu")
        model = ModelState(gaussians=g, name="t")
        app.state = SimpleNamespace(model=model, render=SimpleNamespace(backend="cpu"),
                                    ui=SimpleNamespace(status=""))
        app.adaptation = SimpleNamespace(device=torch.device("cpu"))
        app.worker = SimpleNamespace(keep_on_device=False)
        app.presenter = SimpleNamespace(interop_possible=True)
        proxy_moves = []  # the navigation proxy follows the set to the GPU
        app.proxy = SimpleNamespace(moved=lambda g, path, dev: proxy_moves.append((g, dev)))
        app._poll_backend_probe()
        assert app.backend_name == "cuda" and app.device.type == "cuda"
        assert app.state.model is not model  # a new ModelState: the adaptation re-attaches
        assert app.state.model.gaussians.device.type == "cuda"
        assert app.adaptation.device.type == "cuda" and app.worker.keep_on_device
        assert len(proxy_moves) == 1 and proxy_moves[0][1].type == "cuda"
        assert proxy_moves[0][0] is app.state.model.gaussians
        assert app.state.render.backend == "auto" and "gsplat CUDA kernels" in app.backend_reason
        assert app._backend_probe is None
