"""One entry point, :func:`render`, over three backends.

- `cuda`: gsplat's CUDA kernels (render/rasterize/gsplat_backend.py).
- `cpu`: this project's numba kernels, differentiable (render/rasterize/cpu.py).
- `reference`: brute-force torch, for tests on small scenes (render/rasterize/reference.py).
"""

from __future__ import annotations

import logging
import sys
import time

import torch

from render.camera import Camera
from render.gaussians import Gaussians
from render.options import RenderOptions
from render.rasterize.project import project
from render.rasterize.types import Projection, RenderResult

log = logging.getLogger("mipview.render")

_auto_choice: tuple[str, str] | None = None


def auto_backend() -> tuple[str, str]:
    """(backend, reason) that `auto` resolves to; decided once per process and said once."""
    global _auto_choice
    if _auto_choice is None:
        from render.rasterize import gsplat_backend

        ok, why = gsplat_backend.available()
        _auto_choice = ("cuda", why) if ok else ("cpu", why)
        # stderr: stdout carries the JSON that some subcommands print
        print(f"mipview: rendering with the {_auto_choice[0]} backend ({why})", file=sys.stderr,
              flush=True)
    return _auto_choice


def resolve_backend(name: str) -> str:
    return auto_backend()[0] if name == "auto" else name


def validate_backend(name: str) -> None:
    """Raise BackendUnavailable (a RuntimeError with the reason) when `name` is "cuda" and
    this torch cannot reach a GPU at all: a CPU-only build, no GPU, no driver. Cheap: it
    builds no kernels (whether they build is :func:`gsplat_backend.available`'s)."""
    if name == "cuda":
        from render.rasterize import gsplat_backend

        problem = gsplat_backend.torch_cuda_problem()
        if problem is not None:
            raise gsplat_backend.BackendUnavailable(
                f"--backend cuda is not available here: {problem}")


def backend_device(name: str) -> torch.device:
    """Where a backend wants the Gaussians to live. Raises BackendUnavailable for "cuda"
    where torch has no GPU (not torch's AssertionError from a later .to("cuda"))."""
    validate_backend(name)
    return torch.device("cuda") if resolve_backend(name) == "cuda" else torch.device("cpu")


_said_blend_cpu = False


def _blend_on_cpu() -> str:
    """gsplat has no Gaussian Blending: the `blend` mode renders on the CPU backend (said
    once per process on stderr), rather than refusing a mode the viewer offers."""
    global _said_blend_cpu
    if not _said_blend_cpu:
        _said_blend_cpu = True
        print("mipview: antialias 'blend' (Gaussian Blending) has no CUDA kernel; "
              "rendering it with the cpu backend", file=sys.stderr, flush=True)
    return "cpu"


def render(
    gaussians: Gaussians, camera: Camera, options: RenderOptions | None = None
) -> RenderResult:
    """Render one view.

    Args:
        gaussians: the set to draw (moved to the backend's device if it is not there).
        camera: the view, OpenCV convention, with its pixel size.
        options: SH degree, background, antialias mode, backend; defaults if None.

    Returns:
        RenderResult with rgb [H, W, 3], alpha [H, W, 1] (or, for options.bgra8 on the
        `cpu` backend, the colour as BGRA8 in bgra8_gl instead), depth [H, W, 1] when
        options.output == "depth", the projected means [N, 2] (in the autograd graph)
        and radii [N, 2]. Gradients flow to every tensor of `gaussians` that requires them.
    """
    options = options or RenderOptions()
    backend = resolve_backend(options.backend)
    if backend == "cuda" and options.antialias == "blend":
        backend = _blend_on_cpu()
    t0 = time.perf_counter()
    if backend == "cuda":
        from render.rasterize.gsplat_backend import render_gsplat

        result = render_gsplat(gaussians, camera, options)
    else:
        if gaussians.device.type != "cpu":
            gaussians = gaussians.to("cpu")
        result = _render_projected(gaussians, camera, options, backend)
    result.meta["backend"] = backend
    result.meta["ms"] = (time.perf_counter() - t0) * 1e3
    return result


def _render_projected(g: Gaussians, cam: Camera, options: RenderOptions, backend: str):
    if backend == "cpu":
        from render.rasterize.cpu_project import project_cpu

        # A display frame is consumed before the thread's next: reuse its buffers.
        display = options.bgra8 and options.output == "rgb"
        proj = project_cpu(g, cam, options, reuse=display)
    else:
        proj = project(g, cam, options)
    bg = torch.tensor(options.background, dtype=torch.float32)
    with_depth = options.output == "depth"
    if options.antialias == "blend" and backend in ("cpu", "reference"):
        if backend == "cpu":
            from render.rasterize.cpu_blend import rasterize_blend_cpu

            rgb, alpha, depth, stats = rasterize_blend_cpu(
                proj, cam.width, cam.height, bg, with_depth, options.blend_window,
                options.absgrad, options.bgra8 and options.output == "rgb")
        else:
            from render.rasterize.reference_blend import rasterize_blend_reference

            rgb, alpha, depth = rasterize_blend_reference(proj, cam.width, cam.height, bg,
                                                          with_depth, options.blend_window)
            stats = {}
    elif backend == "reference":
        from render.rasterize.reference import rasterize_reference

        rgb, alpha, depth = rasterize_reference(proj, cam.width, cam.height, bg, with_depth)
        stats = {}
    elif backend == "cpu":
        from render.rasterize.cpu import rasterize_cpu

        rgb, alpha, depth, stats = rasterize_cpu(proj, cam.width, cam.height, bg, with_depth,
                                                 options.absgrad, options.count_pairs,
                                                 options.bgra8 and options.output == "rgb")
    else:
        raise ValueError(f"unknown backend {backend!r}")
    bgra8_gl = stats.pop("bgra8_gl", None)
    if "n_drawn" not in stats:  # the cpu backend counts them on the way
        stats["n_drawn"] = int(proj.visible.sum())
    return RenderResult(rgb, alpha, depth, proj.means2d, proj.radii, stats, bgra8_gl)


__all__ = ["render", "auto_backend", "resolve_backend", "backend_device", "validate_backend",
           "Projection",
           "RenderResult", "project"]
