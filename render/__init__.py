"""render: Gaussians, model files, cameras and rasterizers. No GUI, no threads.

The names below are loaded on first use (PEP 562), so that importing a torch-free part
of the package (`render.io.summary`, which `mipview info` runs) does not import torch:
that import alone takes 1-2 s, most of `mipview info` on a large file.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from render.camera import Camera
    from render.gaussians import Gaussians
    from render.options import RenderOptions
    from render.rasterize import RenderResult, render

# exported name -> module that defines it
_EXPORTS = {
    "Camera": "render.camera",
    "Gaussians": "render.gaussians",
    "RenderOptions": "render.options",
    "RenderResult": "render.rasterize",
    "render": "render.rasterize",
}

__all__ = ["Camera", "Gaussians", "RenderOptions", "RenderResult", "render"]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
