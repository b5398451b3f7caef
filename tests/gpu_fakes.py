"""Stand-ins that let the CUDA path run on a machine without a GPU.

- :class:`FakeCuda` (a TorchFunctionMode) and :class:`CudaTensor` (a tensor subclass):
  tensors that live in host memory but report ``cuda:0``, follow CUDA's device rules
  (no mixing with CPU tensors of more than 0 dims, no CPU index into ...) and refuse host
  conversions (``.numpy()``, ``__array__``, ``.tolist()``); ``.cpu()`` / ``.to("cpu")``
  is the explicit copy back and gives a plain tensor. ``torch.cuda``'s calls the project
  makes (is_available, synchronize, streams, empty_cache, ...) are patched to match.
- :class:`FakeGsplatC`: gsplat 1.5.3's compiled extension (``gsplat.cuda._backend._C``)
  written in torch for small scenes, following the semantics of its CUDA sources
  (ProjectionEWA3DGSFused.cu with the opacity cull and opacity-aware radii,
  IntersectTile.cu, RasterizeToPixels3DGSFwd/Bwd.cu, SphericalHarmonicsCUDA.cu); the
  backward passes are the vector-Jacobian products of the forward ones (autograd on a
  recomputation), absgrad per pixel as the CUDA kernel sums it.
"""

from __future__ import annotations

import contextlib
import math
import threading
from types import SimpleNamespace

import torch
from torch import Tensor
from torch.overrides import TorchFunctionMode

CUDA = torch.device("cuda", 0)


class HostConversionError(AssertionError):
    """A CUDA tensor was read into host memory implicitly (a real GPU would fail or sync)."""


class DeviceMixError(RuntimeError):
    """CUDA and CPU tensors met in one operation ("Expected all tensors to be on the same
    device")."""


class CudaTensor(torch.Tensor):
    """A host tensor that says it lives on cuda:0 (see the module docstring)."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if _is_getter(func, "device"):
            return CUDA
        if _is_getter(func, "is_cuda"):
            return True
        if func in _REFUSED:
            raise HostConversionError(
                f"{getattr(func, '__name__', func)} on a CUDA tensor: copy it with .cpu() "
                "first (on a GPU this fails or copies implicitly)")
        if func is Tensor.cpu or (func is Tensor.to and _target_device(args[1:], kwargs) == "cpu"):
            with torch._C.DisableTorchFunctionSubclass():
                out = func(*args, **kwargs)
            return _unwrap(out)
        _check_devices(func, args, kwargs)
        with torch._C.DisableTorchFunctionSubclass():
            out = func(*args, **kwargs)
        if func in _KEEP_PLAIN:
            return out
        return _wrap(out)


def _is_getter(func, name: str) -> bool:
    """func is the getter of Tensor's property `name` (a new method-wrapper each access,
    so compared by its descriptor)."""
    return getattr(func, "__name__", "") == "__get__" and func == getattr(Tensor, name).__get__


_REFUSED = {Tensor.numpy, Tensor.__array__, Tensor.tolist}
_KEEP_PLAIN = {Tensor.__repr__, Tensor.__format__, Tensor.item, Tensor.__bool__,
               Tensor.__float__, Tensor.__int__, Tensor.__len__, Tensor.dim, Tensor.size,
               Tensor.numel, Tensor.data_ptr, Tensor.element_size}
_INDEXING = {Tensor.__getitem__, Tensor.__setitem__, torch.index_select, Tensor.index_select}


def _is_fake(t) -> bool:
    return isinstance(t, CudaTensor)


def _wrap(out):
    if isinstance(out, Tensor) and not _is_fake(out):
        return out.as_subclass(CudaTensor)
    if isinstance(out, tuple) and not hasattr(out, "_fields"):
        return tuple(_wrap(o) for o in out)
    if isinstance(out, list):
        return [_wrap(o) for o in out]
    if hasattr(out, "_fields"):  # torch.return_types: keep the named tuple
        return type(out)(tuple(_wrap(o) for o in out))
    return out


def _unwrap(out):
    if _is_fake(out):
        return out.as_subclass(torch.Tensor)
    if isinstance(out, (tuple, list)):
        return type(out)(_unwrap(o) for o in out)
    return out


def _tensors(obj, found: list) -> list:
    if isinstance(obj, Tensor):
        found.append(obj)
    elif isinstance(obj, (tuple, list)):
        for o in obj:
            _tensors(o, found)
    elif isinstance(obj, dict):
        for o in obj.values():
            _tensors(o, found)
    return found


def _check_devices(func, args, kwargs) -> None:
    """CUDA's rule: a CUDA tensor meets CPU tensors only as 0-dim scalars (and, indexing
    a CUDA tensor, as CPU indices)."""
    ts = _tensors(list(args) + list(kwargs.values()), [])
    if not any(_is_fake(t) for t in ts):
        return
    if func in _INDEXING and args and _is_fake(args[0]):
        ts = [args[0]] + ([args[2]] if func is Tensor.__setitem__ and len(args) > 2 else [])
    for t in ts:
        if not _is_fake(t) and t.dim() > 0 and t.device.type == "cpu":
            raise DeviceMixError(
                f"{getattr(func, '__name__', func)}: Expected all tensors to be on the same "
                f"device, but found a CPU tensor {tuple(t.shape)} beside a CUDA one")


def _target_device(args, kwargs) -> str | None:
    dev = kwargs.get("device")
    if dev is None:
        for a in args:
            if isinstance(a, (str, torch.device)):
                dev = a
                break
            if isinstance(a, Tensor):
                dev = a.device
                break
    if dev is None:
        return None
    if isinstance(dev, int):
        return "cuda"
    return torch.device(dev).type


class FakeCuda(TorchFunctionMode):
    """Within this mode tensors made for (or moved to) "cuda" become :class:`CudaTensor`.

    Use :func:`fake_cuda` (it also patches torch.cuda); the mode alone only maps devices.
    `uploads` lists the shape of every host-to-device copy.
    """

    def __init__(self, uploads: list | None = None) -> None:
        super().__init__()
        self.uploads = uploads if uploads is not None else []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func in (Tensor.cuda, Tensor.to) and args:
            src = args[0]
            target = "cuda" if func is Tensor.cuda else _target_device(args[1:], kwargs)
            if target == "cuda":
                rest = [a for a in args[1:] if not isinstance(a, (str, torch.device, int))]
                kwargs.pop("device", None)
                kwargs.pop("non_blocking", None)
                plain = _unwrap(src)
                if not _is_fake(src):
                    self.uploads.append(tuple(src.shape))
                out = plain.to(*rest, **kwargs) if (rest or kwargs) else plain
                if out is plain and not _is_fake(src):
                    out = plain  # .to() of a CPU tensor to CUDA copies on a GPU
                return _wrap(out.clone() if out is plain and not _is_fake(src) else out)
        dev = kwargs.get("device")
        if dev is not None and not isinstance(dev, Tensor) and torch.device(
                dev if not isinstance(dev, int) else "cuda").type == "cuda":
            kwargs["device"] = "cpu"
            return _wrap(func(*args, **kwargs))
        return func(*args, **kwargs)


class _Stream:
    """torch.cuda.Stream's surface the project uses."""

    _handles = iter(range(0x1000, 1 << 30, 0x10))

    def __init__(self, device=None, priority: int = 0, default: bool = False) -> None:
        self.device = CUDA
        self.priority = priority
        self.waited: list = []
        self.cuda_stream = 0 if default else next(self._handles)  # cudaStream_t, as an int

    def synchronize(self) -> None:
        pass

    def wait_stream(self, other) -> None:
        self.waited.append(other)

    def query(self) -> bool:
        return True

    def record_event(self, event=None):
        return event or SimpleNamespace(synchronize=lambda: None, query=lambda: True)


@contextlib.contextmanager
def fake_cuda(monkeypatch, device_name: str = "Fake GPU (CPU stand-in)"):
    """A CUDA device on the CPU for the duration: the mode plus torch.cuda's functions.

    Yields a namespace: `uploads` the shapes of host-to-device copies, `streams` the
    streams made, `current_stream()` is the
    calling thread's (torch.cuda.stream(s) sets it; else `default`), `empty_cache` and
    `synchronize` count calls.
    """
    state = SimpleNamespace(streams=[], empty_cache=0, synchronize=0,
                            default=_Stream(default=True))
    local = threading.local()  # like CUDA, the current stream is per thread

    def current_stream(*a):
        return getattr(local, "stream", None) or state.default

    state.current_stream = current_stream

    def make_stream(*a, **k):
        s = _Stream(*a, **k)
        state.streams.append(s)
        return s

    @contextlib.contextmanager
    def use_stream(s):
        prev = getattr(local, "stream", None)
        local.stream = s
        try:
            yield s
        finally:
            local.stream = prev

    def empty_cache():
        state.empty_cache += 1

    def synchronize(*a, **k):
        state.synchronize += 1

    cuda = torch.cuda
    monkeypatch.setattr(torch.version, "cuda", "12.8")  # a CUDA build of torch (cu128)
    monkeypatch.setattr(cuda, "is_available", lambda: True)
    monkeypatch.setattr(cuda, "device_count", lambda: 1)
    monkeypatch.setattr(cuda, "get_device_name", lambda *a: device_name)
    monkeypatch.setattr(cuda, "synchronize", synchronize)
    monkeypatch.setattr(cuda, "empty_cache", empty_cache)
    monkeypatch.setattr(cuda, "Stream", make_stream)
    monkeypatch.setattr(cuda, "stream", use_stream)
    monkeypatch.setattr(cuda, "current_stream", current_stream)
    monkeypatch.setattr(cuda, "memory_allocated", lambda *a: 0)
    monkeypatch.setattr(cuda, "mem_get_info", lambda *a: (8 << 30, 16 << 30))
    # torch's mode stack is per thread: threads started meanwhile (the render and
    # adaptation workers) enter the mode too.
    thread_run = threading.Thread.run

    state.uploads = []

    def run_in_mode(self):
        with FakeCuda(state.uploads):
            thread_run(self)

    monkeypatch.setattr(threading.Thread, "run", run_in_mode)
    with FakeCuda(state.uploads):
        yield state


def as_cuda(t: Tensor) -> Tensor:
    """A host tensor seen as a CUDA one (shares memory; keeps requires_grad)."""
    return t.as_subclass(CudaTensor)


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


# -- cuda-python's runtime, recorded ------------------------------------------------------------
class RecordingCudart:
    """cuda-python's `cuda.bindings.runtime` for the interop calls viewer/display.py makes:
    records each call (name, args) in `log` and answers (cudaSuccess, value).

    `fail` names a call that answers an error code instead. With `real` (the installed
    bindings module) every call is also made there first, so its argument conversion is
    checked (a wrong type raises TypeError there); what the real call answers (no driver
    here: cudaErrorInsufficientDriver) is recorded in `real_errors` and replaced by success
    so the sequence goes on.
    """

    class cudaGraphicsRegisterFlags:  # noqa: N801 (the binding's names)
        cudaGraphicsRegisterFlagsWriteDiscard = 2

    class cudaMemcpyKind:  # noqa: N801
        cudaMemcpyDeviceToDevice = 3

    def __init__(self, log: list, fail: str | None = None, real=None) -> None:
        self.log, self.fail, self.real = log, fail, real
        self.real_errors: dict[str, str] = {}
        if real is not None:
            self.cudaGraphicsRegisterFlags = real.cudaGraphicsRegisterFlags
            self.cudaMemcpyKind = real.cudaMemcpyKind
        self._n = 0

    def _call(self, name: str, args: tuple, value=None):
        self.log.append((name, args))
        if self.real is not None:
            err, *rest = getattr(self.real, name)(*args)
            self.real_errors[name] = getattr(err, "name", str(err))
            if value is not None and rest and rest[0] is not None:
                value = rest[0]
        if name == self.fail:
            return (999, None) if value is not None else (999,)
        return (0, value) if value is not None else (0,)

    def _handle(self, kind: str):
        if self.real is not None:
            return getattr(self.real, kind)()
        self._n += 1
        return f"{kind}#{self._n}"

    def cudaGraphicsGLRegisterImage(self, image, target, flags):  # noqa: N802
        return self._call("cudaGraphicsGLRegisterImage", (image, target, flags),
                          self._handle("cudaGraphicsResource_t"))

    def cudaGraphicsMapResources(self, count, resources, stream):  # noqa: N802
        return self._call("cudaGraphicsMapResources", (count, resources, stream))

    def cudaGraphicsSubResourceGetMappedArray(self, resource, index, level):  # noqa: N802
        return self._call("cudaGraphicsSubResourceGetMappedArray", (resource, index, level),
                          self._handle("cudaArray_t"))

    def cudaMemcpy2DToArrayAsync(self, dst, w_off, h_off, src, spitch, width, height,  # noqa: N802
                                 kind, stream):
        return self._call("cudaMemcpy2DToArrayAsync",
                          (dst, w_off, h_off, src, spitch, width, height, kind, stream))

    def cudaGraphicsUnmapResources(self, count, resources, stream):  # noqa: N802
        return self._call("cudaGraphicsUnmapResources", (count, resources, stream))

    def cudaGraphicsUnregisterResource(self, resource):  # noqa: N802
        return self._call("cudaGraphicsUnregisterResource", (resource,))
