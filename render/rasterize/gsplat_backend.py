"""The `cuda` backend: gsplat's CUDA rasterizer with the same semantics as the `cpu` one.

gsplat 1.5.3 ships its CUDA kernels as sources and compiles them the first time they
are used (several minutes, once per machine); :func:`available` says so on the console
before it tries. The translation from (Gaussians, Camera, RenderOptions) to the
arguments of `gsplat.rasterization` is the pure function :func:`gsplat_arguments`, so it
is tested on machines without a GPU.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from typing import Any

import torch
from torch import Tensor

from render.camera import Camera
from render.gaussians import Gaussians
from render.options import RenderOptions
from render.rasterize.types import RenderResult

_available: tuple[bool, str] | None = None


class BackendUnavailable(RuntimeError):
    """The `cuda` backend was asked for where it cannot run; the message says why and
    what to install (README, "GPU")."""


_probe_lock = threading.Lock()


def available() -> tuple[bool, str]:
    """(True, why) when torch sees a CUDA GPU and gsplat's CUDA kernels load and run;
    else (False, the reason). Decided once per process: a failed build is not tried
    again (gsplat's own import would rebuild on every call). Threads asking meanwhile
    wait for the one probe."""
    global _available
    with _probe_lock:
        if _available is None:
            _available = _probe()
    return _available


class ProbeInBackground:
    """:func:`available` in a daemon thread: the first build of gsplat's kernels takes
    minutes, which must not freeze a window. Poll :meth:`done`, then ask available()."""

    STATUS = ("building gsplat's CUDA kernels (the first time on this machine: a few "
              "minutes); rendering on the CPU meanwhile")

    def __init__(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mipview-gsplat-probe",
                                        daemon=True)
        self._thread.start()

    @staticmethod
    def _run() -> None:
        try:
            available()
        except BaseException:  # available() catches the build's failures; never a traceback
            pass

    def done(self) -> bool:
        return not self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return self.done()


def decided() -> bool:
    """Whether :func:`available` would answer at once (no build or test render left)."""
    return _available is not None


def torch_cuda_problem() -> str | None:
    """Why this torch cannot use a GPU at all (cheap: no kernels built), or None."""
    if torch.version.cuda is None:
        return ("this torch is a CPU-only build (torch.version.cuda is None); install a "
                "CUDA build of torch, see README \"GPU\"")
    if not torch.cuda.is_available():
        return (f"torch (CUDA {torch.version.cuda}) sees no CUDA GPU: no NVIDIA GPU, or its "
                "driver is missing or older than that CUDA version needs")
    return None


def require() -> None:
    """Raise BackendUnavailable with the reason unless the `cuda` backend works here."""
    ok, why = available()
    if not ok:
        raise BackendUnavailable(f"the cuda backend is not available here: {why}")


def _load_kernels():
    """gsplat's compiled extension, building it on first use. gsplat prints its build
    messages on stdout, which carries the JSON of `mipview train/eval/adapt`: they go to
    stderr. Returns gsplat's `_C` (None when it found no CUDA toolkit)."""
    with contextlib.redirect_stdout(sys.stderr):
        from gsplat.cuda import _backend
    return _backend._C


def _probe() -> tuple[bool, str]:
    problem = torch_cuda_problem()
    if problem is not None:
        return False, problem
    print("mipview: loading gsplat's CUDA kernels (the first time on a machine they compile, "
          "which takes several minutes)...", file=sys.stderr, flush=True)
    try:
        kernels = _load_kernels()
    except Exception as e:  # a failed build: use the CPU backend, and say why
        return False, (f"gsplat's CUDA kernels failed to build or load ({type(e).__name__}: "
                       f"{e}); the CUDA toolkit (nvcc) must match torch's CUDA "
                       f"{torch.version.cuda}, see README \"GPU\"")
    if kernels is None:
        return False, ("gsplat's CUDA kernels are not built and no CUDA toolkit (nvcc) was "
                       "found to build them; see README \"GPU\"")
    try:
        _smoke_test()
    except Exception as e:
        return False, (f"gsplat's CUDA kernels loaded but a test render failed: "
                       f"{type(e).__name__}: {e}")
    return True, f"gsplat CUDA kernels on {torch.cuda.get_device_name(0)}"


def _smoke_test() -> None:
    """Render one Gaussian: building the kernels is not enough, they must also run."""
    dev = torch.device("cuda")
    g = Gaussians.from_colors(torch.tensor([[0.0, 0.0, 2.0]]), torch.tensor([[1.0, 0.5, 0.2]]),
                              torch.full((1, 3), 0.1), torch.tensor([0.9])).to(dev)
    cam = Camera.look_at((0.0, 0.0, 0.0), (0.0, 0.0, 2.0), width=16, height=16)
    res = _render(g, cam, RenderOptions(backend="cuda"))
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
    options.absgrad, .absgrad after a backward, radii [N, 2]. Raises BackendUnavailable
    (at once, every later call too) where the kernels do not build or run.
    """
    require()
    return _render(gaussians, camera, options)


def _render(gaussians: Gaussians, camera: Camera, options: RenderOptions) -> RenderResult:
    from gsplat import rasterization

    if gaussians.device.type != "cuda":
        gaussians = gaussians.to("cuda")
    wants_grad = torch.is_grad_enabled() and any(
        t.requires_grad for t in gaussians.tensors().values())
    colors, alphas, meta = rasterization(
        **gsplat_arguments(gaussians, camera, options, absgrad=wants_grad and options.absgrad))
    return result_from_gsplat(colors, alphas, meta, options.output == "depth")
