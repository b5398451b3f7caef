"""render: Gaussians, model files, cameras and rasterizers. No GUI, no threads."""

from render.camera import Camera
from render.gaussians import Gaussians
from render.options import RenderOptions
from render.rasterize import RenderResult, render

__all__ = ["Camera", "Gaussians", "RenderOptions", "RenderResult", "render"]
