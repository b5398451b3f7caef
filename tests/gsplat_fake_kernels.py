"""gsplat 1.5.3's compiled extension (``gsplat.cuda._backend._C``) written in torch for
small scenes, following the semantics of its CUDA sources (ProjectionEWA3DGSFused.cu with
the opacity cull and opacity-aware radii, IntersectTile.cu, RasterizeToPixels3DGSFwd/
Bwd.cu, SphericalHarmonicsCUDA.cu). The backward passes are the vector-Jacobian products
of the forward ones (autograd on a recomputation), absgrad summed per pixel as the CUDA
kernel does. With tests/gpu_fakes.py's CUDA stand-in, `gsplat.rasterization` runs its
real Python layer on a machine without a GPU.
"""

from __future__ import annotations

import contextlib
import math
from types import SimpleNamespace

import torch
from gpu_fakes import _is_fake, _wrap
from torch import Tensor

# -- gsplat's compiled extension, in torch --------------------------------------------------
ALPHA_THRESHOLD = 1.0 / 255.0  # gsplat/cuda/include/Common.h
T_STOP = 1e-4


def _plain(t):
    return None if t is None else t.as_subclass(torch.Tensor)


def _on_host(fn):
    """Run a fake kernel on plain host tensors; hand CUDA-looking tensors back when any
    argument was one."""

    def call(*args):
        fake = any(_is_fake(a) for a in args)
        with torch._C.DisableTorchFunctionSubclass():
            out = fn(*[_plain(a) if isinstance(a, Tensor) else a for a in args])
        return _wrap(out) if fake else out

    call.__name__ = fn.__name__
    return call


def _project(means, quats, scales, opacities, viewmats, ks, width, height, eps2d, near, far,
             radius_clip, calc_comp):
    """Differentiable part and radii of ProjectionEWA3DGSFused.cu, one batch of cameras.

    means [N, 3], quats [N, 4], scales [N, 3], opacities [N] or None, viewmats [C, 4, 4],
    Ks [C, 3, 3]. Returns radii [C, N, 2] int32, means2d [C, N, 2], depths [C, N],
    conics [C, N, 3], compensations [C, N]; culled entries are 0.
    """
    from gsplat.cuda._torch_impl import _persp_proj, _quat_scale_to_covar_preci, _world_to_cam

    covars, _ = _quat_scale_to_covar_preci(quats, scales, compute_preci=False, triu=False)
    means_c, covars_c = _world_to_cam(means, covars, viewmats)  # [C, N, 3], [C, N, 3, 3]
    means2d, cov2d = _persp_proj(means_c, covars_c, ks, width, height)
    det_orig = cov2d[..., 0, 0] * cov2d[..., 1, 1] - cov2d[..., 0, 1] * cov2d[..., 1, 0]
    cov2d = cov2d + torch.eye(2, dtype=means.dtype) * eps2d
    det = cov2d[..., 0, 0] * cov2d[..., 1, 1] - cov2d[..., 0, 1] * cov2d[..., 1, 0]
    comp = torch.sqrt(torch.clamp(det_orig / det.clamp_min(1e-10), min=0.0))
    conics = torch.stack([cov2d[..., 1, 1], -0.5 * (cov2d[..., 0, 1] + cov2d[..., 1, 0]),
                          cov2d[..., 0, 0]], dim=-1) / det.clamp_min(1e-10)[..., None]
    depths = means_c[..., 2]
    with torch.no_grad():
        z = depths
        ok = (z >= near) & (z <= far) & (det > 0)
        extend = torch.full_like(z, 3.33)
        if opacities is not None:
            op = opacities.expand_as(z) * (comp if calc_comp else 1.0)
            ok &= op >= ALPHA_THRESHOLD
            extend = torch.minimum(extend, torch.sqrt(
                2.0 * torch.log(op.clamp_min(ALPHA_THRESHOLD) / ALPHA_THRESHOLD)))
        rx = torch.ceil(extend * torch.sqrt(cov2d[..., 0, 0].clamp_min(0)))
        ry = torch.ceil(extend * torch.sqrt(cov2d[..., 1, 1].clamp_min(0)))
        ok &= ~((rx <= radius_clip) & (ry <= radius_clip))
        mx, my = means2d[..., 0], means2d[..., 1]
        ok &= ~((mx + rx <= 0) | (mx - rx >= width) | (my + ry <= 0) | (my - ry >= height))
        radii = torch.stack([rx, ry], -1).to(torch.int32) * ok[..., None]
    keep = ok[..., None]
    zero = torch.zeros((), dtype=means.dtype)
    return (radii, torch.where(keep, means2d, zero), torch.where(ok, depths, zero),
            torch.where(keep, conics, zero), torch.where(ok, comp, zero))


def _blend_tile(pix, m2d, con, opa, col, bg):
    """Front-to-back blending of one tile as RasterizeToPixels3DGSFwd.cu does it.

    pix [P, 2] pixel centres, m2d [P, M, 2] (per pixel, so the backward can sum |grad| per
    pixel as gsplat's absgrad), con [M, 3], opa [M], col [M, D] in depth order.
    Returns colour [P, D] (over bg [D] or not), alpha [P].
    """
    d = pix[:, None, :] - m2d  # [P, M, 2]
    sigma = (0.5 * (con[None, :, 0] * d[..., 0] ** 2 + con[None, :, 2] * d[..., 1] ** 2)
             + con[None, :, 1] * d[..., 0] * d[..., 1])
    alpha = torch.clamp_max(opa[None, :] * torch.exp(-sigma), 0.999)
    alpha = torch.where((sigma >= 0) & (alpha >= ALPHA_THRESHOLD), alpha,
                        torch.zeros_like(alpha))
    one_minus = 1.0 - alpha
    t_before = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), one_minus[:, :-1]], 1), 1)
    with torch.no_grad():  # the Gaussian that would take T to 1e-4 or below ends the pixel
        blended = (t_before * one_minus) > T_STOP
    w = torch.where(blended, alpha * t_before, torch.zeros_like(alpha))
    a = w.sum(dim=1)
    out = torch.einsum("pm,md->pd", w, col)
    if bg is not None:
        out = out + (1.0 - a)[:, None] * bg[None, :]
    return out, a


class FakeGsplatC:
    """gsplat 1.5.3's `_C` functions that `gsplat.rasterization` (3DGS, pinhole,
    packed=False) and its autograd Functions call, in torch on the host."""

    CameraModelType = SimpleNamespace(PINHOLE="pinhole", ORTHO="ortho", FISHEYE="fisheye",
                                      FTHETA="ftheta")
    # gsplat's _make_lazy_cuda_obj looks "CameraModelType.PINHOLE" up part by part on _C
    # itself: the real module exports the enum's values at its top level too.
    PINHOLE, ORTHO, FISHEYE, FTHETA = "pinhole", "ortho", "fisheye", "ftheta"

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.streams: list = []  # torch.cuda.current_stream() at each rasterization
        for name in ("projection_ewa_3dgs_fused_fwd", "projection_ewa_3dgs_fused_bwd",
                     "spherical_harmonics_fwd", "spherical_harmonics_bwd", "intersect_tile",
                     "intersect_offset", "rasterize_to_pixels_3dgs_fwd",
                     "rasterize_to_pixels_3dgs_bwd"):
            setattr(self, name, self._counted(name, _on_host(getattr(self, "_" + name))))

    def _counted(self, name, fn):
        def call(*args):
            self.calls[name] = self.calls.get(name, 0) + 1
            if name == "rasterize_to_pixels_3dgs_fwd":
                self.streams.append(torch.cuda.current_stream())
            return fn(*args)

        return call

    # projection
    @staticmethod
    def _projection_ewa_3dgs_fused_fwd(means, covars, quats, scales, opacities, viewmats, ks,
                                       width, height, eps2d, near, far, radius_clip, calc_comp,
                                       camera_model):
        assert covars is None and camera_model == "pinhole", "fake: quats/scales, pinhole"
        assert means.dim() == 2, "fake: no batch dimensions"
        with torch.no_grad():
            return _project(means, quats, scales, opacities, viewmats, ks, width, height,
                            eps2d, near, far, radius_clip, calc_comp)[:5]

    @staticmethod
    def _projection_ewa_3dgs_fused_bwd(means, covars, quats, scales, viewmats, ks, width,
                                       height, eps2d, camera_model, radii, conics, comps,
                                       v_means2d, v_depths, v_conics, v_comps, viewmats_grad):
        leaves = [t.detach().clone().requires_grad_(True) for t in (means, quats, scales,
                                                                       viewmats)]
        with torch.enable_grad():
            _, m2d, dep, con, comp = _project(*leaves[:3], None, leaves[3], ks, width, height,
                                              eps2d, -math.inf, math.inf, -1.0,
                                              comps is not None)
            on = (radii > 0).all(-1)  # the kernel skips culled Gaussians
            loss = ((m2d * v_means2d)[on].sum() + (dep * v_depths)[on].sum()
                    + (con * v_conics)[on].sum())
            if v_comps is not None:
                loss = loss + (comp * v_comps)[on].sum()
            grads = torch.autograd.grad(loss, leaves, allow_unused=True)
        grads = [torch.zeros_like(x) if g is None else g for g, x in zip(grads, leaves)]
        return grads[0], None, grads[1], grads[2], grads[3] if viewmats_grad else None

    # spherical harmonics
    @staticmethod
    def _sh(degree, dirs, coeffs, masks):
        from gsplat.cuda._torch_impl import _spherical_harmonics

        out = _spherical_harmonics(degree, dirs, coeffs)
        if masks is not None:
            out = out * masks[..., None]
        return out

    @classmethod
    def _spherical_harmonics_fwd(cls, degree, dirs, coeffs, masks):
        with torch.no_grad():
            return cls._sh(degree, dirs, coeffs, masks)

    @classmethod
    def _spherical_harmonics_bwd(cls, num_bases, degree, dirs, coeffs, masks, v_colors,
                                 compute_v_dirs):
        d = dirs.detach().clone().requires_grad_(True)
        c = coeffs.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            out = cls._sh(degree, d, c, masks)
            v_c, v_d = torch.autograd.grad((out * v_colors).sum(), [c, d], allow_unused=True)
        v_c = torch.zeros_like(c) if v_c is None else v_c
        v_d = torch.zeros_like(d) if v_d is None else v_d
        return v_c, v_d

    # tiles
    @staticmethod
    def _intersect_tile(means2d, radii, depths, image_ids, gaussian_ids, n_images, tile_size,
                        tile_width, tile_height, sort, segmented):
        assert image_ids is None, "fake: packed=False only"
        n = means2d.shape[-2]
        m = means2d.reshape(-1, 2)
        r = radii.reshape(-1, 2).to(torch.float32)
        z = depths.reshape(-1).to(torch.float32).contiguous()
        tx, ty = m[:, 0] / tile_size, m[:, 1] / tile_size
        rx, ry = r[:, 0] / tile_size, r[:, 1] / tile_size
        x0 = torch.floor(tx - rx).clamp(0, tile_width).long()
        y0 = torch.floor(ty - ry).clamp(0, tile_height).long()
        x1 = torch.ceil(tx + rx).clamp(0, tile_width).long()
        y1 = torch.ceil(ty + ry).clamp(0, tile_height).long()
        on = (radii.reshape(-1, 2) > 0).all(-1)
        per = torch.where(on, (x1 - x0) * (y1 - y0), torch.zeros_like(x0))
        tile_bits = (tile_width * tile_height).bit_length()
        depth_bits = z.view(torch.int32).to(torch.int64) & 0xFFFFFFFF
        ids, flat = [], []
        for i in torch.nonzero(per).flatten().tolist():
            img = i // n
            ty_, tx_ = torch.meshgrid(torch.arange(int(y0[i]), int(y1[i])),
                                      torch.arange(int(x0[i]), int(x1[i])), indexing="ij")
            tile = (ty_ * tile_width + tx_).flatten()
            ids.append(((img << tile_bits) | tile) << 32 | depth_bits[i])
            flat.append(torch.full_like(tile, i))
        isect = torch.cat(ids) if ids else torch.zeros(0, dtype=torch.int64)
        flatten = (torch.cat(flat) if flat else torch.zeros(0, dtype=torch.int64)).to(
            torch.int32)
        if sort:
            isect, order = torch.sort(isect, stable=True)
            flatten = flatten[order]
        return per.reshape(radii.shape[:-1]).to(torch.int32), isect, flatten

    @staticmethod
    def _intersect_offset(isect_ids, n_images, tile_width, tile_height):
        tile_bits = (tile_width * tile_height).bit_length()
        key = isect_ids >> 32
        n_tiles = n_images * tile_width * tile_height
        img, tile = key >> tile_bits, key & ((1 << tile_bits) - 1)
        flat_key = img * tile_width * tile_height + tile
        starts = torch.searchsorted(flat_key.contiguous(), torch.arange(n_tiles))
        return starts.to(torch.int32).reshape(n_images, tile_height, tile_width)

    # rasterization
    @staticmethod
    def _raster(means2d, conics, colors, opacities, backgrounds, masks, width, height,
                tile_size, offsets, flatten_ids, per_pixel_means=None):
        """Colours [I, H, W, D], alphas [I, H, W, 1]; per_pixel_means, if given, collects
        the [P, M, 2] leaves of each tile (for absgrad)."""
        assert masks is None, "fake: no tile masks"
        n_img = offsets.shape[0]
        d = colors.shape[-1]
        th, tw = offsets.shape[-2:]
        m_flat, c_flat = means2d.reshape(-1, 2), conics.reshape(-1, 3)
        o_flat, col_flat = opacities.reshape(-1), colors.reshape(-1, d)
        ends = torch.cat([offsets.flatten()[1:].long(),
                          torch.tensor([flatten_ids.numel()])])
        starts = offsets.flatten().long()
        out_c = [torch.zeros(height, width, d) for _ in range(n_img)]
        out_a = [torch.zeros(height, width) for _ in range(n_img)]
        for t in range(n_img * th * tw):
            img, rest = divmod(t, th * tw)
            ty, tx = divmod(rest, tw)
            y0, x0 = ty * tile_size, tx * tile_size
            y1, x1 = min(y0 + tile_size, height), min(x0 + tile_size, width)
            ids = flatten_ids[int(starts[t]):int(ends[t])].long()
            bg = backgrounds[img] if backgrounds is not None else None
            if ids.numel() == 0:
                if bg is not None:
                    out_c[img][y0:y1, x0:x1] = bg
                continue
            ys, xs = torch.meshgrid(torch.arange(y0, y1), torch.arange(x0, x1), indexing="ij")
            pix = torch.stack([xs, ys], -1).reshape(-1, 2).float() + 0.5
            m = m_flat[ids][None].expand(pix.shape[0], -1, -1)
            if per_pixel_means is not None:
                m = m.detach().clone().requires_grad_(True)
                per_pixel_means.append((ids, m))
            c, a = _blend_tile(pix, m, c_flat[ids], o_flat[ids], col_flat[ids], bg)
            out_c[img] = out_c[img].index_put((ys.flatten(), xs.flatten()), c)
            out_a[img] = out_a[img].index_put((ys.flatten(), xs.flatten()), a)
        shape = means2d.shape[:-2]
        colors_out = torch.stack(out_c).reshape(*shape, height, width, d)
        alphas_out = torch.stack(out_a).reshape(*shape, height, width, 1)
        return colors_out, alphas_out

    @classmethod
    def _rasterize_to_pixels_3dgs_fwd(cls, means2d, conics, colors, opacities, backgrounds,
                                      masks, width, height, tile_size, offsets, flatten_ids):
        with torch.no_grad():
            c, a = cls._raster(means2d, conics, colors, opacities, backgrounds, masks, width,
                               height, tile_size, offsets, flatten_ids)
        last_ids = torch.zeros(a.shape[:-1], dtype=torch.int32)
        return c, a, last_ids

    @classmethod
    def _rasterize_to_pixels_3dgs_bwd(cls, means2d, conics, colors, opacities, backgrounds,
                                      masks, width, height, tile_size, offsets, flatten_ids,
                                      render_alphas, last_ids, v_colors, v_alphas, absgrad):
        leaves = [t.detach().clone().requires_grad_(True) for t in (conics, colors, opacities)]
        pairs: list = []
        with torch.enable_grad():
            c, a = cls._raster(means2d.detach(), *leaves[:1], leaves[1], leaves[2],
                               backgrounds, masks, width, height, tile_size, offsets,
                               flatten_ids, per_pixel_means=pairs)
            loss = (c * v_colors).sum() + (a * v_alphas).sum()
            inputs = leaves + [m for _, m in pairs]
            grads = torch.autograd.grad(loss, inputs, allow_unused=True)
        grads = [torch.zeros_like(x) if g is None else g for g, x in zip(grads, inputs)]
        v_m = torch.zeros_like(means2d).reshape(-1, 2)
        v_abs = torch.zeros_like(v_m)
        for (ids, _), g in zip(pairs, grads[3:]):
            v_m.index_add_(0, ids, g.sum(0))
            v_abs.index_add_(0, ids, g.abs().sum(0))
        v_m, v_abs = v_m.reshape(means2d.shape), v_abs.reshape(means2d.shape)
        return (v_abs if absgrad else torch.zeros(0)), v_m, grads[0], grads[1], grads[2]


@contextlib.contextmanager
def fake_gsplat_kernels(monkeypatch):
    """gsplat's `_C` is the CPU stand-in while the block runs; yields it (its `calls`
    count what gsplat's Python layer called). The real `gsplat.cuda._backend` is not
    imported: on import it builds the extension when it finds an nvcc."""
    import sys
    import types

    import gsplat.cuda

    fake = FakeGsplatC()
    module = types.ModuleType("gsplat.cuda._backend")
    module._C = fake
    monkeypatch.setitem(sys.modules, "gsplat.cuda._backend", module)
    monkeypatch.setattr(gsplat.cuda, "_backend", module, raising=False)
    yield fake
