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

import ctypes
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
        self.fbo: moderngl.Framebuffer | None = None
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
        """image: RGBA uint8 [H, W, 4], top row first, numpy or a CUDA tensor. The texture
        holds it bottom row first, GL's order, so that a plain blit shows it upright
        (see Presenter.draw; flipping the rows costs ~0.1 ms here, a flipped blit makes
        the software GL draw a quad)."""
        h, w = int(image.shape[0]), int(image.shape[1])
        created = self._ensure(w, h)
        if hasattr(image, "is_cuda") and image.is_cuda:
            if self.allow_interop:
                try:
                    if created or self.interop is None:
                        self.interop = CudaGLTexture(self.texture)
                    self.interop.copy_from(image.flip(0).contiguous())
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
        self.texture.write(np.ascontiguousarray(image[::-1]))

    def framebuffer(self) -> moderngl.Framebuffer:
        """A framebuffer over the texture, the source of Presenter.draw's blits."""
        if self.fbo is None:
            self.fbo = self.ctx.framebuffer(color_attachments=[self.texture])
        return self.fbo

    def release(self) -> None:
        _release(self.interop, self.fbo, self.texture)
        self.interop = self.fbo = self.texture = None


class Presenter:
    """The present pass: the frame texture(s) into a viewport, split or side by side.

    One shader source, compiled per (mode, sampling) on first use: `sampling` is "exact"
    when every texture has its pane's size (texelFetch only), "scaled" when none has
    (bilinear only), else "mixed" (chosen per pixel). See shaders/present.frag.
    """

    def __init__(self, ctx: moderngl.Context, allow_interop: bool = True) -> None:
        self.ctx = ctx
        self._vertex = shader_source("present.vert")
        self._fragment = shader_source("present.frag")
        self._variants: dict[tuple[str, str, bool], tuple[moderngl.Program,
                                                           moderngl.VertexArray]] = {}
        self.textures = [FrameTexture(ctx, allow_interop), FrameTexture(ctx, allow_interop)]
        self.mode = "single"
        self.has_frame = False

    def _variant(self, mode: str, sampling: str, ui: bool = False):
        """(program, vertex array) of one shader variant, compiled on first use."""
        key = (mode, sampling, ui)
        if key not in self._variants:
            defines = f"#define MODE {MODE_IDS[mode]}\n"
            if sampling != "mixed":
                defines += f"#define SAMPLE_{sampling.upper()}\n"
            if ui:
                defines += "#define UI_LAYER\n"
            head, _, body = self._fragment.partition("\n")  # after the #version line
            prog = self.ctx.program(vertex_shader=self._vertex,
                                    fragment_shader=f"{head}\n{defines}{body}")
            _set(prog, "tex_a", 0)
            _set(prog, "tex_b", 1)
            _set(prog, "ui", 2)
            _set(prog, "line_half", DIVIDER_HALF_WIDTH)
            _set(prog, "line_rgb", tuple(c / 255.0 for c in DIVIDER_RGB))
            self._variants[key] = (prog, self.ctx.vertex_array(prog, []))
        return self._variants[key]

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
             framebuffer: moderngl.Framebuffer | None = None,
             ui: UILayer | None = None) -> None:
        """Draw into viewport (x, y, w, h) of the framebuffer (the screen by default);
        with `ui` (a UILayer of the framebuffer's size), the cached panels over it."""
        fbo = framebuffer or self.ctx.screen
        fbo.use()
        fbo.viewport = viewport
        if not self.has_frame:
            return
        a = self.textures[0]
        if self.mode == "single" and viewport == (0, 0, *a.texture.size):
            # One full-resolution pane at the origin: a blit, then the panels' boxes. With
            # the software GL that is ~60 % of the shader pass's CPU (measured 3.0 against
            # 4.9 ms for a 640 x 480 frame with a panel).
            self.ctx.copy_framebuffer(fbo, a.framebuffer())
            fbo.use()
            if ui is not None:
                ui.composite(fbo)
            return
        self._present(self.mode, [a.texture, self.textures[1].texture or a.texture], viewport,
                      divider, ui.texture if ui is not None else None)

    def _present(self, mode: str, textures: list, viewport: tuple[int, int, int, int],
                 divider: float, ui: moderngl.Texture | None = None) -> None:
        """The fullscreen triangle with textures [A, B] (and the UI layer) into the
        bound framebuffer."""
        x, y, w, h = viewport
        n = 1 if mode == "single" else 2  # the textures this mode samples
        exact = [tex.size == pane for tex, pane in zip(textures[:n], pane_sizes(mode, w, h))]
        sampling = "exact" if all(exact) else "scaled" if not any(exact) else "mixed"
        prog, vao = self._variant(mode, sampling, ui is not None)
        self.ctx.disable(moderngl.BLEND | moderngl.DEPTH_TEST)
        _set(prog, "origin", (float(x), float(y)))
        _set(prog, "view_size", (float(w), float(h)))
        _set(prog, "divider_px", float(divider_px(divider, w)))
        textures[0].use(0)
        textures[-1].use(1)
        if ui is not None:
            ui.use(2)
        vao.render(moderngl.TRIANGLES, vertices=3)

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
            fbo.use()
            fbo.viewport = (0, 0, width, height)
            fbo.clear(0.0, 0.0, 0.0, 1.0)
            self._present(mode if len(images) > 1 else "single", [t.texture for t in texs],
                          (0, 0, width, height), divider)
            data = fbo.read(components=3, alignment=1)
            img = np.frombuffer(data, np.uint8).reshape(height, width, 3)
            return np.ascontiguousarray(img[::-1])
        finally:
            for t in texs:
                t.release()
            fbo.release()
            rbo.release()
            self.ctx.screen.use()


class UILayer:
    """The panels drawn once into a transparent texture of the window's size, to be put
    back over later frames without running ImGui again.

    ImGui's blending (src alpha, 1 - src alpha; alpha: one, 1 - src alpha) into a cleared
    target leaves premultiplied colours and the layer's coverage, so compositing with
    (one, 1 - src alpha) gives what drawing ImGui over the frame gives (to 8-bit
    rounding). With a software GL that costs about half of drawing the panels.
    """

    def __init__(self, ctx: moderngl.Context) -> None:
        self.ctx = ctx
        self.program = ctx.program(vertex_shader=shader_source("present.vert"),
                                   fragment_shader=shader_source("ui_layer.frag"))
        self.vao = ctx.vertex_array(self.program, [])
        self.texture: moderngl.Texture | None = None
        self.fbo: moderngl.Framebuffer | None = None
        self.valid = False  # holds the panels as they are now
        # Disjoint boxes (x, y, w, h; GL pixels, y up) that hold everything the panels
        # drew; None: the whole window. Compositing only these is ~half the cost.
        self.regions: list[tuple[int, int, int, int]] | None = None

    def usable(self, size: tuple[int, int]) -> bool:
        """Whether the layer holds current panels for a window of this size."""
        return self.valid and self.texture is not None and self.texture.size == size

    def begin(self, size: tuple[int, int]) -> None:
        """Bind the layer (cleared) as the target of the next ImGui render."""
        if self.texture is None or self.texture.size != size:
            self.release()
            self.texture = self.ctx.texture(size, 4, dtype="f1")
            self.fbo = self.ctx.framebuffer(color_attachments=[self.texture])
        self.fbo.use()
        self.fbo.viewport = (0, 0, *size)
        self.fbo.clear(0.0, 0.0, 0.0, 0.0)
        self.valid = True
        self.regions = None

    def set_regions(self, boxes: list[tuple[float, float, float, float]]) -> None:
        """What the panels covered: boxes (x0, y0, x1, y1) in window pixels, y down (as
        ImGui's), made whole-pixel, clipped to the layer and cut into disjoint boxes."""
        w, h = self.texture.size
        rects = []
        for x0, y0, x1, y1 in boxes:
            x0, y0 = max(int(x0) - 1, 0), max(int(y0) - 1, 0)  # -1/+1: antialiased edges
            x1, y1 = min(int(np.ceil(x1)) + 1, w), min(int(np.ceil(y1)) + 1, h)
            if x1 > x0 and y1 > y0:
                rects.append([x0, y0, x1, y1])
        disjoint: list[list[int]] = []  # a pixel must be composited exactly once
        for r in rects:
            pieces = [r]
            for o in disjoint:
                pieces = [p for q in pieces for p in _subtract(q, o)]
            disjoint += pieces
        rects = disjoint
        self.regions = [(x0, h - y1, x1 - x0, y1 - y0) for x0, y0, x1, y1 in rects]

    def composite(self, framebuffer: moderngl.Framebuffer | None = None) -> None:
        """Draw the layer over the framebuffer (the screen's back buffer by default)."""
        screen = framebuffer or self.ctx.screen
        screen.use()
        screen.viewport = (0, 0, *self.texture.size)
        self.ctx.enable(moderngl.BLEND)
        self.ctx.blend_equation = moderngl.FUNC_ADD
        self.ctx.blend_func = moderngl.ONE, moderngl.ONE_MINUS_SRC_ALPHA
        self.texture.use(0)
        if self.regions is None:
            self.vao.render(moderngl.TRIANGLES, vertices=3)
        else:
            for box in self.regions:
                self.ctx.scissor = box
                self.vao.render(moderngl.TRIANGLES, vertices=3)
            self.ctx.scissor = None
        self.ctx.disable(moderngl.BLEND)

    def release(self) -> None:
        _release(self.fbo, self.texture)
        self.fbo = self.texture = None
        self.valid = False


def _release(*resources) -> None:
    """Release each of the GL (or CUDA) objects given that exists (None: never made)."""
    for r in resources:
        if r is not None:
            r.release()


def _subtract(r: list[int], o: list[int]) -> list[list[int]]:
    """Box r minus box o, as up to four disjoint boxes ([x0, y0, x1, y1], ends open)."""
    if not (r[0] < o[2] and o[0] < r[2] and r[1] < o[3] and o[1] < r[3]):
        return [r]
    out = []
    if r[1] < o[1]:
        out.append([r[0], r[1], r[2], o[1]])  # above
    if o[3] < r[3]:
        out.append([r[0], o[3], r[2], r[3]])  # below
    y0, y1 = max(r[1], o[1]), min(r[3], o[3])
    if r[0] < o[0]:
        out.append([r[0], y0, o[0], y1])  # left
    if o[2] < r[2]:
        out.append([o[2], y0, r[2], y1])  # right
    return out


def imgui_boxes(draw_data) -> list[tuple[float, float, float, float]]:
    """Per ImGui draw list, the box (x0, y0, x1, y1; window pixels, y down) of its
    vertices within its widest clip rectangle: what that list can have drawn."""
    boxes = []
    for dl in draw_data.cmd_lists:
        n = dl.vtx_buffer.size()
        if n == 0:
            continue
        raw = (ctypes.c_char * (n * _DRAW_VERT.itemsize)).from_address(
            dl.vtx_buffer.data_address())
        pos = np.frombuffer(raw, dtype=_DRAW_VERT)["pos"]
        lo, hi = pos.min(axis=0), pos.max(axis=0)
        clips = [c.clip_rect for c in dl.cmd_buffer]
        cx0, cy0 = min(c.x for c in clips), min(c.y for c in clips)
        cx1, cy1 = max(c.z for c in clips), max(c.w for c in clips)
        boxes.append((max(lo[0], cx0), max(lo[1], cy0), min(hi[0], cx1), min(hi[1], cy1)))
    return boxes


# ImGui's ImDrawVert: position, texture coordinates, packed colour (20 bytes).
_DRAW_VERT = np.dtype([("pos", "<f4", 2), ("uv", "<f4", 2), ("col", "<u4")])


def pane_sizes(mode: str, width: int, height: int) -> list[tuple[int, int]]:
    """The (width, height) in pixels of the panes [A, B] in a width x height viewport,
    as the present shader lays them out."""
    if mode == "side_by_side":
        left = width // 2
        return [(left, height), (width - left, height)]
    return [(width, height), (width, height)]


def _set(program: moderngl.Program, name: str, value) -> None:
    """Set a uniform if this shader variant uses it (the compiler drops unused ones)."""
    if name in program:
        program[name] = value


def read_screen(ctx: moderngl.Context, width: int, height: int) -> np.ndarray:
    """The window's back buffer, top row first. [H, W, 3] uint8"""
    data = ctx.screen.read(viewport=(0, 0, width, height), components=3, alignment=1)
    return np.ascontiguousarray(np.frombuffer(data, np.uint8).reshape(height, width, 3)[::-1])
