"""View-dependent colour from SH in compiled numba, forward and backward.

The same mathematics as :func:`render.sh.sh_to_rgb` on the direction from the camera
centre to each mean: colour = sum_k basis_k(u) sh_k + 0.5, clamped at 0, u = unit(mean -
campos). torch spends ~40 elementwise ops on it at degree 3 and about as many on its
adjoint, each a pass over memory: on a 272k-Gaussian finetune step that was 90 of its
220 ms, where these kernels make one pass each way. The basis and its derivative stay in
scalars (registers). Gaussians the projection culled (radii [N, 2] zero) are skipped
both ways: their colour and gradients are 0, their SH (192 bytes at degree 3) unread.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from render.camera import Camera
from render.gaussians import Gaussians
from render.jit import njit
from render.options import RenderOptions
from render.rasterize.cpu_kernels import chunk_range
from render.rasterize.cpu_threads import GAUSSIAN_CHUNKS, chunk_count, next_chunk, run_chunks
from render.sh import SH_C0, SH_C1, SH_C2, SH_C3

_JIT = {"nogil": True, "cache": True, "fastmath": {"nsz", "arcp", "contract", "reassoc"},
        "error_model": "numpy"}


@njit(inline="always", **_JIT)
def _view_dir(means, n, campos):
    """unit(mean_n - campos) and 1 / |mean_n - campos|: (x, y, z, inv)."""
    x = means[n, 0] - campos[0]
    y = means[n, 1] - campos[1]
    z = means[n, 2] - campos[2]
    inv = 1.0 / max(math.sqrt(x * x + y * y + z * z), 1e-12)
    return x * inv, y * inv, z * inv, inv


# The forward in float32 (as the torch reference, render.sh): float64 coefficients
# made every one of the 48 SH values a conversion too (measured: 1.2 M Gaussians at
# degree 3, one thread, 36 -> 23 ms).
_F = np.float32
_C0, _C1 = _F(SH_C0), _F(SH_C1)
_C2, _C3 = tuple(_F(c) for c in SH_C2), tuple(_F(c) for c in SH_C3)
_HALF, _TWO, _THREE, _FOUR, _ZERO = _F(0.5), _F(2.0), _F(3.0), _F(4.0), _F(0.0)


@njit(**_JIT)
def sh_colors(means, sh, campos, degree, radii, zero_culled, colors, ticket, n_chunks):
    """means [N, 3], sh [N, K, 3] (the first (degree + 1)^2 used), campos [3] float64,
    radii [N, 2] int32 -> colors [N, 3]: 0 where culled with `zero_culled`, else left as
    they were there (a frame that draws and hands out none of them)."""
    cx, cy, cz = _F(campos[0]), _F(campos[1]), _F(campos[2])
    c2, c3 = _C2, _C3
    chunk = next_chunk(ticket)
    while chunk < n_chunks:
        n0, n1 = chunk_range(means.shape[0], chunk, n_chunks)
        for n in range(n0, n1):
            if radii[n, 0] == 0 or radii[n, 1] == 0:
                if zero_culled:
                    colors[n, 0] = 0.0
                    colors[n, 1] = 0.0
                    colors[n, 2] = 0.0
                continue
            x = y = z = _ZERO
            if degree > 0:
                x, y, z = means[n, 0] - cx, means[n, 1] - cy, means[n, 2] - cz
                inv = _F(1.0) / max(math.sqrt(x * x + y * y + z * z), _F(1e-12))
                x, y, z = x * inv, y * inv, z * inv
            xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
            for ch in range(3):
                v = _HALF + _C0 * sh[n, 0, ch]
                if degree > 0:
                    v += _C1 * (z * sh[n, 2, ch] - y * sh[n, 1, ch] - x * sh[n, 3, ch])
                if degree > 1:
                    v += (c2[0] * xy * sh[n, 4, ch] + c2[1] * yz * sh[n, 5, ch]
                          + c2[2] * (_TWO * zz - xx - yy) * sh[n, 6, ch]
                          + c2[3] * xz * sh[n, 7, ch] + c2[4] * (xx - yy) * sh[n, 8, ch])
                if degree > 2:
                    v += (c3[0] * y * (_THREE * xx - yy) * sh[n, 9, ch]
                          + c3[1] * xy * z * sh[n, 10, ch]
                          + c3[2] * y * (_FOUR * zz - xx - yy) * sh[n, 11, ch]
                          + c3[3] * z * (_TWO * zz - _THREE * xx - _THREE * yy) * sh[n, 12, ch]
                          + c3[4] * x * (_FOUR * zz - xx - yy) * sh[n, 13, ch]
                          + c3[5] * z * (xx - yy) * sh[n, 14, ch]
                          + c3[6] * x * (xx - _THREE * yy) * sh[n, 15, ch])
                colors[n, ch] = max(v, _ZERO)
        chunk = next_chunk(ticket)


@njit(**_JIT)
def sh_colors_backward(means, sh, campos, degree, radii, v_colors, v_means, v_sh, ticket,
                       n_chunks):
    """The adjoint of :func:`sh_colors`: v_colors [N, 3] -> v_means [N, 3] (through the
    view direction) and v_sh [N, K, 3] (0 past the degree used, and where culled)."""
    c1, c2, c3 = SH_C1, SH_C2, SH_C3
    chunk = next_chunk(ticket)
    while chunk < n_chunks:
        n0, n1 = chunk_range(means.shape[0], chunk, n_chunks)
        for n in range(n0, n1):
            v_means[n, 0] = 0.0
            v_means[n, 1] = 0.0
            v_means[n, 2] = 0.0
            culled = radii[n, 0] == 0 or radii[n, 1] == 0
            k_used = (degree + 1) ** 2
            for k in range(0 if culled else k_used, v_sh.shape[1]):
                for ch in range(3):
                    v_sh[n, k, ch] = 0.0
            if culled:
                continue
            x = y = z = inv = 0.0
            if degree > 0:
                x, y, z, inv = _view_dir(means, n, campos)
            xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
            # the basis, as render.sh.sh_basis
            b1, b2, b3 = -c1 * y, c1 * z, -c1 * x
            b4, b5, b6 = c2[0] * xy, c2[1] * yz, c2[2] * (2.0 * zz - xx - yy)
            b7, b8 = c2[3] * xz, c2[4] * (xx - yy)
            b9, b10 = c3[0] * y * (3.0 * xx - yy), c3[1] * xy * z
            b11 = c3[2] * y * (4.0 * zz - xx - yy)
            b12 = c3[3] * z * (2.0 * zz - 3.0 * xx - 3.0 * yy)
            b13 = c3[4] * x * (4.0 * zz - xx - yy)
            b14, b15 = c3[5] * z * (xx - yy), c3[6] * x * (xx - 3.0 * yy)
            gx = gy = gz = 0.0  # dL / d unit direction
            for ch in range(3):
                v = 0.5 + SH_C0 * sh[n, 0, ch]
                if degree > 0:
                    v += b1 * sh[n, 1, ch] + b2 * sh[n, 2, ch] + b3 * sh[n, 3, ch]
                if degree > 1:
                    v += (b4 * sh[n, 4, ch] + b5 * sh[n, 5, ch] + b6 * sh[n, 6, ch]
                          + b7 * sh[n, 7, ch] + b8 * sh[n, 8, ch])
                if degree > 2:
                    v += (b9 * sh[n, 9, ch] + b10 * sh[n, 10, ch] + b11 * sh[n, 11, ch]
                          + b12 * sh[n, 12, ch] + b13 * sh[n, 13, ch] + b14 * sh[n, 14, ch]
                          + b15 * sh[n, 15, ch])
                g = np.float64(v_colors[n, ch]) if v >= 0.0 else 0.0  # clamped: none
                v_sh[n, 0, ch] = SH_C0 * g
                if degree > 0:
                    v_sh[n, 1, ch], v_sh[n, 2, ch], v_sh[n, 3, ch] = b1 * g, b2 * g, b3 * g
                if degree > 1:
                    v_sh[n, 4, ch], v_sh[n, 5, ch], v_sh[n, 6, ch] = b4 * g, b5 * g, b6 * g
                    v_sh[n, 7, ch], v_sh[n, 8, ch] = b7 * g, b8 * g
                if degree > 2:
                    v_sh[n, 9, ch], v_sh[n, 10, ch], v_sh[n, 11, ch] = b9 * g, b10 * g, b11 * g
                    v_sh[n, 12, ch], v_sh[n, 13, ch] = b12 * g, b13 * g
                    v_sh[n, 14, ch], v_sh[n, 15, ch] = b14 * g, b15 * g
                if degree < 1 or g == 0.0:
                    continue
                dx = -c1 * sh[n, 3, ch]
                dy = -c1 * sh[n, 1, ch]
                dz = c1 * sh[n, 2, ch]
                if degree > 1:
                    s4, s5, s6, s7, s8 = (sh[n, 4, ch], sh[n, 5, ch], sh[n, 6, ch],
                                          sh[n, 7, ch], sh[n, 8, ch])
                    dx += (c2[0] * y * s4 - 2.0 * c2[2] * x * s6 + c2[3] * z * s7
                           + 2.0 * c2[4] * x * s8)
                    dy += (c2[0] * x * s4 + c2[1] * z * s5 - 2.0 * c2[2] * y * s6
                           - 2.0 * c2[4] * y * s8)
                    dz += c2[1] * y * s5 + 4.0 * c2[2] * z * s6 + c2[3] * x * s7
                if degree > 2:
                    s9, s10, s11, s12, s13, s14, s15 = (
                        sh[n, 9, ch], sh[n, 10, ch], sh[n, 11, ch], sh[n, 12, ch],
                        sh[n, 13, ch], sh[n, 14, ch], sh[n, 15, ch])
                    dx += (6.0 * c3[0] * xy * s9 + c3[1] * yz * s10 - 2.0 * c3[2] * xy * s11
                           - 6.0 * c3[3] * xz * s12 + c3[4] * (4.0 * zz - 3.0 * xx - yy) * s13
                           + 2.0 * c3[5] * xz * s14 + 3.0 * c3[6] * (xx - yy) * s15)
                    dy += (3.0 * c3[0] * (xx - yy) * s9 + c3[1] * xz * s10
                           + c3[2] * (4.0 * zz - xx - 3.0 * yy) * s11 - 6.0 * c3[3] * yz * s12
                           - 2.0 * c3[4] * xy * s13 - 2.0 * c3[5] * yz * s14
                           - 6.0 * c3[6] * xy * s15)
                    dz += (c3[1] * xy * s10 + 8.0 * c3[2] * yz * s11
                           + c3[3] * (6.0 * zz - 3.0 * xx - 3.0 * yy) * s12
                           + 8.0 * c3[4] * xz * s13 + c3[5] * (xx - yy) * s14)
                gx += g * dx
                gy += g * dy
                gz += g * dz
            if degree > 0:  # through u = d / |d|: (g - u (u . g)) / |d|
                dot = x * gx + y * gy + z * gz
                v_means[n, 0] = (gx - x * dot) * inv
                v_means[n, 1] = (gy - y * dot) * inv
                v_means[n, 2] = (gz - z * dot) * inv
        chunk = next_chunk(ticket)


def _f32(t: Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().to(torch.float32).numpy())


class ShColorsCPU(torch.autograd.Function):
    """(means [N, 3], sh [N, K, 3]) -> colors [N, 3], 0 where radii [N, 2] is 0;
    differentiable in means and sh."""

    @staticmethod
    def forward(ctx, means, sh, campos, degree, radii):
        n = means.shape[0]
        args = (_f32(means), _f32(sh), campos, int(degree),
                np.ascontiguousarray(radii.numpy()))
        out = np.empty((n, 3), np.float32)
        run_chunks(sh_colors, chunk_count(GAUSSIAN_CHUNKS), *args, True, out)
        ctx.args = args
        return torch.from_numpy(out)

    @staticmethod
    def backward(ctx, v_colors):
        means, sh = ctx.args[0], ctx.args[1]
        v_means = np.empty_like(means)
        v_sh = np.empty_like(sh)
        run_chunks(sh_colors_backward, chunk_count(GAUSSIAN_CHUNKS), *ctx.args,
                   _f32(v_colors), v_means, v_sh)
        return torch.from_numpy(v_means), torch.from_numpy(v_sh), None, None, None


def drawn_colors(g: Gaussians, cam: Camera, options: RenderOptions, radii: Tensor) -> Tensor:
    """Colours from SH in the autograd graph, for the Gaussians drawn (radii > 0), 0 for
    the culled, whose colour the rasterizer never reads (a finetune's crop culls most of
    a large set). radii [N, 2] -> [N, 3]"""
    from render.rasterize.project import sh_degree_used

    campos = cam.position.detach().cpu().double().numpy()
    return ShColorsCPU.apply(g.means, g.sh, campos, sh_degree_used(g, options), radii)
