"""Which backend the viewer starts with, without building gsplat's kernels on the GL thread.

gsplat 1.5.3 compiles its CUDA kernels the first time they are used on a machine (a few
minutes). Where that build may still be ahead (`auto` or `cuda`, torch with a GPU, the
probe not decided), the viewer opens at once on the CPU backend and the probe runs in a
thread (gsplat_backend.ProbeInBackground); the window polls it each frame and moves the
model to the GPU when the kernels work (:meth:`ViewerApp._poll_backend_probe`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from render.rasterize import auto_backend, backend_device, gsplat_backend, resolve_backend


@dataclass
class BackendStart:
    """How the viewer renders from its first frame.

    Attributes:
        name: the backend frames come from now ("cpu" while the kernels build).
        reason: why, for the render panel (the probe's status line while it runs).
        device: where the model lives now.
        render_backend: RenderSettings.backend now ("cpu" while the kernels build).
        probe: the probe still running, or None.
    """

    name: str
    reason: str
    device: torch.device
    render_backend: str
    probe: gsplat_backend.ProbeInBackground | None = None


def start_backend(backend: str) -> BackendStart:
    """The viewer's backend at start. Returns at once (no kernel build on the caller's
    thread). Raises BackendUnavailable for `cuda` where torch has no GPU, or where the
    kernels are already known not to work (a clear error, not a failure every frame)."""
    if backend in ("auto", "cuda") and not gsplat_backend.decided() \
            and gsplat_backend.torch_cuda_problem() is None:
        return BackendStart("cpu", gsplat_backend.ProbeInBackground.STATUS,
                            torch.device("cpu"), "cpu", gsplat_backend.ProbeInBackground())
    if backend == "cuda":
        device = backend_device("cuda")  # CPU-only torch, no GPU: BackendUnavailable
        gsplat_backend.require()  # decided and failed: BackendUnavailable with the reason
        return BackendStart("cuda", "chosen", device, "cuda")
    name = resolve_backend(backend)
    reason = auto_backend()[1] if backend == "auto" else "chosen"
    return BackendStart(name, reason, backend_device(backend), backend)
