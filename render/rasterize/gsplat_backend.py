"""The `cuda` backend: gsplat's CUDA rasterizer with the same semantics as the `cpu` one.

gsplat 1.5.3 ships its CUDA kernels as sources and compiles them the first time they
are used (several minutes, once per machine); :func:`available` says so on the console
before it tries. The translation from (Gaussians, Camera, RenderOptions) to the
arguments of `gsplat.rasterization` is the pure function :func:`gsplat_arguments`, so it
is tested on machines without a GPU.
"""

from __future__ import annotations

import sys
from typing import Any

import torch
from torch import Tensor

from render.camera import Camera
from render.gaussians import Gaussians
from render.options import RenderOptions
from render.rasterize.types import RenderResult

_available: tuple[bool, str] | None = None


def available() -> tuple[bool, str]:
    """(True, why) when torch sees a CUDA GPU and gsplat's CUDA kernels load and run;
    else (False, the reason). Decided once per process."""
    global _available
    if _available is None:
        _available = _probe()
    return _available


def _probe() -> tuple[bool, str]:
    if not torch.cuda.is_available():
        return False, "torch sees no CUDA GPU"
    print("mipview: loading gsplat's CUDA kernels (the first time on a machine they compile, "
          "which takes several minutes)...", file=sys.stderr, flush=True)
    try:
        from gsplat.cuda import _backend

        if _backend._C is None:
            return False, "gsplat's CUDA kernels are not built and no CUDA toolkit to build them"
        _smoke_test()
    except Exception as e:  # any failure to build or run means: use the CPU backend
        return False, f"gsplat's CUDA kernels failed to load: {type(e).__name__}: {e}"
    return True, f"gsplat CUDA kernels on {torch.cuda.get_device_name(0)}"


def _smoke_test() -> None:
    """Render one Gaussian: building the kernels is not enough, they must also run."""
    dev = torch.device("cuda")
    g = Gaussians.from_colors(torch.tensor([[0.0, 0.0, 2.0]]), torch.tensor([[1.0, 0.5, 0.2]]),
                              torch.full((1, 3), 0.1), torch.tensor([0.9])).to(dev)
    cam = Camera.look_at((0.0, 0.0, 0.0), (0.0, 0.0, 2.0), width=16, height=16)
    res = render_gsplat(g, cam, RenderOptions(backend="cuda"))
    torch.cuda.synchronize()
    if not bool(torch.isfinite(res.rgb).all()) or float(res.alpha.max()) <= 0.0:
        raise RuntimeError("the smoke render came back empty or not finite")


def gsplat_arguments(g: Gaussians, camera: Camera, options: RenderOptions,
                     absgrad: bool = False) -> dict[str, Any]:
    """Keyword arguments of `gsplat.rasterization` that render g like the `cpu` backend.

    Gaussians stay on their device; camera and background tensors follow them.
    `packed=False` keeps means2d and radii per Gaussian ([1, N, 2]).
    """
    dev = g.means.device
    eps, compensate = options.dilation()
    degree = g.sh_degree if options.sh_degree is None else min(options.sh_degree, g.sh_degree)
    k = (degree + 1) ** 2
    return {
        "means": g.means,
        "quats": g.quats,
        "scales": torch.exp(g.log_scales),
        "opacities": torch.sigmoid(g.opacity_logits),
        "colors": g.sh[:, :k],  # [N, K, 3] SH coefficients
        "viewmats": camera.viewmat.to(dev)[None],
        "Ks": camera.K.to(dev)[None],
        "width": camera.width,
        "height": camera.height,
        "near_plane": camera.near,
        "far_plane": camera.far,
        "eps2d": eps,
        # "antialiased" is the Mip-Splatting 2D filter: dilation plus opacity compensation.
        "rasterize_mode": "antialiased" if compensate else "classic",
        "sh_degree": degree,
        "packed": False,
        "backgrounds": torch.tensor(options.background, dtype=torch.float32,
                                    device=dev)[None],
        "render_mode": "RGB+ED" if options.output == "depth" else "RGB",
        "absgrad": absgrad,
    }


def result_from_gsplat(colors: Tensor, alphas: Tensor, meta: dict,
                       with_depth: bool) -> RenderResult:
    """A RenderResult from what `gsplat.rasterization` returned for one camera.

    colors [1, H, W, 3 or 4] (RGB, + expected depth), alphas [1, H, W, 1],
    meta["means2d"] [1, N, 2], meta["radii"] [1, N, 2].
    """
    means2d = meta["means2d"][0]
    _mirror_grads(meta["means2d"], means2d)
    return RenderResult(
        rgb=colors[0, ..., :3],
        alpha=alphas[0],
        depth=colors[0, ..., 3:4] if with_depth else None,
        means2d=means2d,
        radii=meta["radii"][0],
        meta={"n_drawn": int((meta["radii"][0] > 0).all(dim=-1).sum())},
    )


def _mirror_grads(parent: Tensor, view: Tensor) -> None:
    """Make `view` (= parent[0]) report parent's gradient and absgrad after a backward.

    gsplat rasterizes from `parent`, so the loss does not depend on the view and its own
    .grad would stay empty; a hook on the parent copies both over when they are known
    (gsplat sets parent.absgrad in its backward, before the parent's hooks run).
    """
    if not parent.requires_grad:
        return

    def hook(grad: Tensor) -> None:
        g0 = grad[0].detach()
        view.grad = g0 if view.grad is None else view.grad + g0
        absgrad = getattr(parent, "absgrad", None)
        if absgrad is not None:
            view.absgrad = absgrad[0]

    parent.register_hook(hook)


def render_gsplat(gaussians: Gaussians, camera: Camera, options: RenderOptions) -> RenderResult:
    """Render one view with gsplat's CUDA kernels (the Gaussians are moved to the GPU).

    Returns the same RenderResult as the cpu backend: rgb [H, W, 3], alpha [H, W, 1],
    depth [H, W, 1] when asked, means2d [N, 2] with .grad (pixels) and, with
    options.absgrad, .absgrad after a backward, radii [N, 2].
    """
    from gsplat import rasterization

    if gaussians.device.type != "cuda":
        gaussians = gaussians.to("cuda")
    wants_grad = torch.is_grad_enabled() and any(
        t.requires_grad for t in gaussians.tensors().values())
    colors, alphas, meta = rasterization(
        **gsplat_arguments(gaussians, camera, options, absgrad=wants_grad and options.absgrad))
    return result_from_gsplat(colors, alphas, meta, options.output == "depth")
