"""render: Gaussians, model files, cameras and rasterizers. No GUI, no threads.

The names below are loaded on first use (PEP 562), so that importing a torch-free part
of the package (`render.io.summary`, which `mipview info` runs) does not import torch:
that import alone takes 1-2 s, most of `mipview info` on a large file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from render.lazy import lazy_exports

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


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
