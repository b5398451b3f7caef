"""Frames to the screen: GL textures, the CUDA-GL interop copy, and the present pass.

Two ways a frame reaches its texture:

- CPU upload: an RGBA uint8 numpy image [H, W, 4] is written with glTexSubImage.
- CUDA-GL interop (cuda-python): the texture is registered with CUDA once
  (cudaGraphicsGLRegisterImage), then per frame mapped, filled GPU-to-GPU with
  cudaMemcpy2DToArrayAsync from torch's tensor on torch's current stream, and unmapped;
  a resize re-creates and re-registers the texture. No host copy.

Interop is tried only when frames arrive as CUDA tensors; any failure (no cuda-python, GL
on another GPU than CUDA, a driver refusal) switches that texture to the CPU upload for
good and records why, which the stats panel shows.
"""

from __future__ import annotations

import importlib.resources
import logging

import moderngl
import numpy as np

from viewer.compare import DIVIDER_HALF_WIDTH, DIVIDER_RGB, divider_px

log = logging.getLogger("mipview.viewer")

GL_TEXTURE_2D = 0x0DE1
MODE_IDS = {"single": 0, "split": 1, "side_by_side": 2}


def shader_source(name: str) -> str:
    """A GLSL file of the `shaders` package."""
    return importlib.resources.files("shaders").joinpath(name).read_text(encoding="utf-8")


def _cudart():
    """cuda-python's runtime module (new and old package layouts)."""
    try:
        from cuda.bindings import runtime  # cuda-python >= 12.6
        return runtime
    except ImportError:
        from cuda import cudart  # older layout
        return cudart


def _check(result, what: str):
    """Unpack a cuda-python (err, *values) tuple, raising on an error code."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise RuntimeError(f"{what} failed: {err}")
    return values[0] if len(values) == 1 else values


class CudaGLTexture:
    """A CUDA registration of one GL texture; copies CUDA RGBA8 tensors into it."""

    def __init__(self, texture: moderngl.Texture) -> None:
        self.rt = _cudart()
        flags = self.rt.cudaGraphicsRegisterFlags.cudaGraphicsRegisterFlagsWriteDiscard
        self.resource = _check(
            self.rt.cudaGraphicsGLRegisterImage(texture.glo, GL_TEXTURE_2D, flags),
            "cudaGraphicsGLRegisterImage")
        self.size = texture.size

    def copy_from(self, tensor) -> None:
        """tensor: contiguous CUDA uint8 [H, W, 4] of this texture's size."""
        import torch

        h, w = int(tensor.shape[0]), int(tensor.shape[1])
        stream = torch.cuda.current_stream().cuda_stream
        rt = self.rt
        _check(rt.cudaGraphicsMapResources(1, self.resource, stream), "cudaGraphicsMapResources")
        try:
            array = _check(rt.cudaGraphicsSubResourceGetMappedArray(self.resource, 0, 0),
                           "cudaGraphicsSubResourceGetMappedArray")
            _check(rt.cudaMemcpy2DToArrayAsync(
                array, 0, 0, tensor.data_ptr(), w * 4, w * 4, h,
                rt.cudaMemcpyKind.cudaMemcpyDeviceToDevice, stream), "cudaMemcpy2DToArrayAsync")
        finally:
            _check(rt.cudaGraphicsUnmapResources(1, self.resource, stream),
                   "cudaGraphicsUnmapResources")

    def release(self) -> None:
        try:
            _check(self.rt.cudaGraphicsUnregisterResource(self.resource),
                   "cudaGraphicsUnregisterResource")
        except Exception as exc:  # the context may already be gone at exit
            log.debug("unregister failed: %s", exc)


class FrameTexture:
    """One RGBA8 texture that follows the size of the frames put into it."""

    def __init__(self, ctx: moderngl.Context, allow_interop: bool = True) -> None:
        self.ctx = ctx
        self.texture: moderngl.Texture | None = None
        self.interop: CudaGLTexture | None = None
        self.allow_interop = allow_interop
        self.path = "cpu-upload"
        self.reason = "frames are rendered on the CPU"

    def _ensure(self, w: int, h: int) -> bool:
        """(Re)create the texture for a w x h frame; True when it was (re)created."""
        if self.texture is not None and self.texture.size == (w, h):
            return False
        self.release()
        self.texture = self.ctx.texture((w, h), 4, dtype="f1")
        self.texture.filter = (moderngl.LINEAR, moderngl.LINEAR)
        self.texture.repeat_x = self.texture.repeat_y = False
        return True

    def put(self, image) -> None:
        """image: RGBA uint8 [H, W, 4], numpy or a CUDA tensor."""
        h, w = int(image.shape[0]), int(image.shape[1])
        created = self._ensure(w, h)
        if hasattr(image, "is_cuda") and image.is_cuda:
            if self.allow_interop:
                try:
                    if created or self.interop is None:
                        self.interop = CudaGLTexture(self.texture)
                    self.interop.copy_from(image)
                    self.path, self.reason = "cuda-gl", "CUDA-GL interop, no host copy"
                    return
                except Exception as exc:
                    self.allow_interop = False
                    self.interop = None
                    self.reason = f"CUDA-GL interop unavailable ({exc}); uploading from the CPU"
                    log.warning(self.reason)
            image = image.cpu().numpy()
            self.path = "cpu-upload"
        else:
            self.path = "cpu-upload"
        self.texture.write(np.ascontiguousarray(image))

    def release(self) -> None:
        if self.interop is not None:
            self.interop.release()
            self.interop = None
        if self.texture is not None:
            self.texture.release()
            self.texture = None


class Presenter:
    """The present pass: the frame texture(s) into a viewport, split or side by side."""

    def __init__(self, ctx: moderngl.Context, allow_interop: bool = True) -> None:
        self.ctx = ctx
        self.program = ctx.program(vertex_shader=shader_source("present.vert"),
                                   fragment_shader=shader_source("present.frag"))
        self.vao = ctx.vertex_array(self.program, [])
        self.textures = [FrameTexture(ctx, allow_interop), FrameTexture(ctx, allow_interop)]
        self.program["tex_a"] = 0
        self.program["tex_b"] = 1
        self.program["line_half"] = DIVIDER_HALF_WIDTH
        self.program["line_rgb"] = tuple(c / 255.0 for c in DIVIDER_RGB)
        self.mode = "single"
        self.has_frame = False

    @property
    def path(self) -> tuple[str, str]:
        """(frame path, why) of the texture filled last."""
        t = self.textures[0]
        return t.path, t.reason

    def set_frame(self, images: list, mode: str) -> None:
        """Put a frame's pane images into the textures."""
        for tex, img in zip(self.textures, images):
            tex.put(img)
        self.mode = mode if len(images) > 1 else "single"
        self.has_frame = bool(images)

    def draw(self, viewport: tuple[int, int, int, int], divider: float,
             framebuffer: moderngl.Framebuffer | None = None) -> None:
        """Draw into viewport (x, y, w, h) of the framebuffer (the screen by default)."""
        fbo = framebuffer or self.ctx.screen
        fbo.use()
        x, y, w, h = viewport
        fbo.viewport = viewport
        if not self.has_frame:
            return
        self.ctx.disable(moderngl.BLEND | moderngl.DEPTH_TEST)
        self.program["mode"] = MODE_IDS[self.mode]
        self.program["origin"] = (float(x), float(y))
        self.program["view_size"] = (float(w), float(h))
        self.program["divider_px"] = float(divider_px(divider, w))
        self.textures[0].texture.use(0)
        (self.textures[1].texture or self.textures[0].texture).use(1)
        self.vao.render(moderngl.TRIANGLES, vertices=3)

    def render_offscreen(self, images: list, mode: str, divider: float,
                         width: int, height: int) -> np.ndarray:
        """Present pane images into an offscreen width x height target and read it back,
        with textures of its own (the window's stay as they are). [H, W, 3] uint8"""
        texs = [FrameTexture(self.ctx, allow_interop=False) for _ in images]
        # An explicit renderbuffer: releasing a framebuffer does not release its
        # attachments, so simple_framebuffer() would leak one per screenshot.
        rbo = self.ctx.renderbuffer((width, height), components=4)
        fbo = self.ctx.framebuffer(color_attachments=[rbo])
        try:
            for t, img in zip(texs, images):
                t.put(img if not hasattr(img, "is_cuda") else img.cpu().numpy())
            self.ctx.disable(moderngl.BLEND | moderngl.DEPTH_TEST)
            fbo.use()
            fbo.viewport = (0, 0, width, height)
            fbo.clear(0.0, 0.0, 0.0, 1.0)
            self.program["mode"] = MODE_IDS[mode if len(images) > 1 else "single"]
            self.program["origin"] = (0.0, 0.0)
            self.program["view_size"] = (float(width), float(height))
            self.program["divider_px"] = float(divider_px(divider, width))
            texs[0].texture.use(0)
            texs[-1].texture.use(1)
            self.vao.render(moderngl.TRIANGLES, vertices=3)
            data = fbo.read(components=3, alignment=1)
            img = np.frombuffer(data, np.uint8).reshape(height, width, 3)
            return np.ascontiguousarray(img[::-1])
        finally:
            for t in texs:
                t.release()
            fbo.release()
            rbo.release()
            self.ctx.screen.use()


def read_screen(ctx: moderngl.Context, width: int, height: int) -> np.ndarray:
    """The window's back buffer, top row first. [H, W, 3] uint8"""
    data = ctx.screen.read(viewport=(0, 0, width, height), components=3, alignment=1)
    return np.ascontiguousarray(np.frombuffer(data, np.uint8).reshape(height, width, 3)[::-1])
