"""PLACEHOLDER until the numba kernels land: delegates to the reference rasterizer."""

from render.rasterize.reference import rasterize_reference


def rasterize_cpu(proj, width, height, background, with_depth=False):
    rgb, alpha, depth = rasterize_reference(proj, width, height, background, with_depth)
    return rgb, alpha, depth, {}
