"""Frames to the screen: GL textures, the CUDA-GL interop copy, and the present pass.

Two ways a frame reaches its texture:

- CPU upload: a BGRA uint8 numpy image [H, W, 4] (viewer.frames' frame format) is written
  with glTexSubImage, into BGRA storage where it can be had (see :class:`BGRAStorage`).
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
import math

import moderngl
import numpy as np

from viewer.compare import DIVIDER_HALF_WIDTH, DIVIDER_RGB, divider_px, pane_sizes

log = logging.getLogger("mipview.viewer")

GL_TEXTURE_2D = 0x0DE1
GL_TEXTURE0 = 0x84C0
GL_UNPACK_ALIGNMENT = 0x0CF5
GL_RGBA = 0x1908
GL_BGRA = 0x80E1
GL_UNSIGNED_BYTE = 0x1401


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


class BGRAStorage:
    """BGRA texture storage and uploads, which moderngl cannot ask for (it always uploads
    GL_RGBA).

    Why: Mesa's software GL (llvmpipe: CI, headless machines, VMs) stores a texture
    specified with GL_BGRA data as B8G8R8A8, the layout of its window buffers. Sampled as
    is (no swizzle) by the present pass's texture-only shader, such a texture reaches the
    screen by a row copy: a 640 x 480 frame with the panels costs llvmpipe's threads
    ~1 ms of CPU where swizzled storage cost ~2.5 and RGBA storage with a full shader
    ~5, CPU the render thread needs. Frames come as BGRA (viewer.frames), so the upload
    is a plain copy too.

    The entry points come from the current GL context (glfwGetProcAddress); the calls
    release the GIL, so the render thread runs meanwhile.
    """

    def __init__(self, ctx: moderngl.Context) -> None:
        import glfw

        def entry(name: str, *argtypes):
            address = glfw.get_proc_address(name)
            if not address:
                raise RuntimeError(f"{name} is not available")
            return ctypes.CFUNCTYPE(None, *argtypes)(address)

        u, i, p = ctypes.c_uint, ctypes.c_int, ctypes.c_void_p
        self.ctx = ctx
        self._active_texture = entry("glActiveTexture", u)
        self._bind_texture = entry("glBindTexture", u, u)
        self._pixel_store = entry("glPixelStorei", u, i)
        self._tex_image = entry("glTexImage2D", u, i, i, i, i, i, u, u, p)
        self._tex_sub_image = entry("glTexSubImage2D", u, i, i, i, i, i, u, u, p)

    @classmethod
    def load(cls, ctx: moderngl.Context) -> BGRAStorage | None:
        """The entry points of the current context, or None (then textures stay RGBA)."""
        try:
            return cls(ctx)
        except Exception as exc:  # no glfw context: a slower texture format, nothing else
            log.info("BGRA textures unavailable (%s): RGBA textures", exc)
            return None

    def _bind(self, texture: moderngl.Texture) -> None:
        # moderngl's own unit for uploads: it re-binds textures before every use.
        self._active_texture(GL_TEXTURE0 + self.ctx.default_texture_unit)
        self._bind_texture(GL_TEXTURE_2D, texture.glo)

    def texture(self, size: tuple[int, int]) -> moderngl.Texture:
        """A moderngl texture of this size with BGRA8 storage (contents undefined)."""
        texture = self.ctx.texture(size, 4, dtype="f1")
        self._bind(texture)
        self._tex_image(GL_TEXTURE_2D, 0, GL_RGBA, size[0], size[1], 0, GL_BGRA,
                        GL_UNSIGNED_BYTE, None)
        return texture

    def upload(self, texture: moderngl.Texture, image: np.ndarray) -> None:
        """image: C-contiguous BGRA uint8 [H, W, 4] of the texture's size, in GL's row
        order (bottom first)."""
        self._bind(texture)
        self._pixel_store(GL_UNPACK_ALIGNMENT, 1)
        w, h = texture.size
        self._tex_sub_image(GL_TEXTURE_2D, 0, 0, 0, w, h, GL_BGRA, GL_UNSIGNED_BYTE,
                            image.ctypes.data)


class CudaGLTexture:
    """A CUDA registration of one GL texture; copies CUDA uint8 [H, W, 4] tensors into
    it, bytes as they are."""

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
    """One 8-bit texture that follows the size of the BGRA frames put into it.

    CPU frames go into BGRA storage when `bgra` is given (see BGRAStorage). CUDA frames go
    into plain RGBA8 storage, as interop copies raw bytes and the driver's layout of a
    BGRA-specified texture is its own business: that storage holds the frame's bytes as
    they are, and the texture's swizzle gives them back as RGBA when sampled (free on a
    GPU).
    """

    def __init__(self, ctx: moderngl.Context, allow_interop: bool = True,
                 bgra: BGRAStorage | None = None) -> None:
        self.ctx = ctx
        self.texture: moderngl.Texture | None = None
        self.interop: CudaGLTexture | None = None
        self.allow_interop = allow_interop
        self.bgra = bgra
        self.is_bgra = False  # BGRA storage; else RGBA8 storage holding BGRA bytes
        self.path = "cpu-upload"
        self.reason = "frames are rendered on the CPU"

    def _ensure(self, w: int, h: int, bgra: bool) -> bool:
        """(Re)create the texture for a w x h frame; True when it was (re)created."""
        if self.texture is not None and self.texture.size == (w, h) and self.is_bgra == bgra:
            return False
        self.release()
        self.texture = _texture(self.ctx, (w, h), self.bgra if bgra else None)
        if not bgra:
            self.texture.swizzle = "BGRA"
        self.is_bgra = bgra
        return True

    def put(self, image) -> None:
        """image: BGRA uint8 [H, W, 4], top row first, numpy or a CUDA tensor. The texture
        holds it bottom row first, GL's order, as gl_FragCoord counts. The render thread's
        images are views of bottom-first memory (viewer.frames.to_bgra8): flipping those
        back is free, where a copy here cost the UI thread 0.2-1.4 ms a frame, holding the
        GIL the render thread needs."""
        h, w = int(image.shape[0]), int(image.shape[1])
        if hasattr(image, "is_cuda") and image.is_cuda:
            if self.allow_interop:
                try:
                    if self._ensure(w, h, bgra=False) or self.interop is None:
                        self.interop = CudaGLTexture(self.texture)
                    self.interop.copy_from(image.flip(0).contiguous())
                    self.path, self.reason = "cuda-gl", "CUDA-GL interop, no host copy"
                    return
                except Exception as exc:
                    self.allow_interop = False
                    # unregister before the texture can be deleted (resize, release):
                    # deleting a registered texture is undefined behaviour in CUDA
                    _release(self.interop)
                    self.interop = None
                    self.reason = f"CUDA-GL interop unavailable ({exc}); uploading from the CPU"
                    log.warning(self.reason)
            image = image.cpu().numpy()
        self.path = "cpu-upload"
        self._ensure(w, h, bgra=self.bgra is not None)
        rows = np.ascontiguousarray(image[::-1])
        if self.is_bgra:
            self.bgra.upload(self.texture, rows)
        else:
            self.texture.write(rows)

    def read(self) -> np.ndarray:
        """What the texture holds, as put() was given it: BGRA uint8 [H, W, 4], top row
        first."""
        w, h = self.texture.size
        # GL reads BGRA storage back as RGBA; RGBA8 storage gives the bytes it was given.
        data = np.frombuffer(self.texture.read(), np.uint8).reshape(h, w, 4)[::-1]
        return data[..., [2, 1, 0, 3]] if self.is_bgra else data.copy()

    def use_filter(self, exact: bool) -> None:
        """Nearest sampling when the texture has its pane's size (exact pixels), bilinear
        when it does not (a reduced resolution while moving)."""
        f = moderngl.NEAREST if exact else moderngl.LINEAR
        if self.texture.filter != (f, f):
            self.texture.filter = (f, f)

    def release(self) -> None:
        _release(self.interop, self.texture)
        self.interop = self.texture = None


class RectPainter:
    """Screen-aligned rectangles of a texture, or of the divider line's colour, into the
    bound framebuffer's viewport: the one shader of the present pass (shaders/present.*),
    shared by the Presenter and the UILayer. Programs are compiled on first use."""

    def __init__(self, ctx: moderngl.Context) -> None:
        self.ctx = ctx
        self._vertex = shader_source("present.vert")
        self._fragment = shader_source("present.frag")
        # The vertices of every rectangle list drawn lately, each at an offset of its own:
        # frame after frame the same lists come back (the panes, the panel regions), and
        # are drawn from what is there without being built or written again.
        self._buffer = ctx.buffer(reserve=VERTEX_BYTES * 6 * 256)  # grows on demand
        self._used = 0  # bytes of the buffer holding lists of _slots
        self._slots: dict[tuple, tuple[int, int]] = {}  # (size, rects) -> (first, count)
        self._programs: dict[bool, tuple[moderngl.Program, moderngl.VertexArray]] = {}

    def _program(self, solid: bool) -> tuple[moderngl.Program, moderngl.VertexArray]:
        if solid not in self._programs:
            head, _, body = self._fragment.partition("\n")  # after the #version line
            defines = "#define SOLID\n" if solid else ""
            prog = self.ctx.program(vertex_shader=self._vertex,
                                    fragment_shader=f"{head}\n{defines}{body}")
            _set(prog, "tex", 0)
            _set(prog, "line_rgb", tuple(c / 255.0 for c in DIVIDER_RGB))
            # The divider's program has no texture coordinates: skip their bytes.
            layout, names = ("2f 2f", ["pos", "uv"]) if "uv" in prog else ("2f 2x4", ["pos"])
            self._programs[solid] = (prog, self.ctx.vertex_array(
                prog, [(self._buffer, layout, *names)]))
        return self._programs[solid]

    def draw(self, rects: list[Rect], size: tuple[int, int],
             texture: moderngl.Texture | None) -> None:
        """rects in a viewport of `size` (width, height); texture None: the divider's
        colour. Blending is the caller's."""
        if not rects:
            return
        first, count = self._vertices(rects, size)
        _, vao = self._program(texture is None)
        if texture is not None:
            texture.use(0)
        vao.render(moderngl.TRIANGLES, vertices=count, first=first)

    def _vertices(self, rects: list[Rect], size: tuple[int, int]) -> tuple[int, int]:
        """(first vertex, vertex count) of these rectangles in the buffer, written there
        unless they already are."""
        key = (size, tuple(rects))
        slot = self._slots.get(key)
        if slot is not None:
            return slot
        data = rect_vertices(rects, *size)
        if self._used + data.nbytes > self._buffer.size:  # full: start over
            self._slots.clear()
            self._used = 0
            if data.nbytes > self._buffer.size:
                self._buffer.orphan(2 * data.nbytes)
        self._buffer.write(data, offset=self._used)
        slot = self._slots[key] = (self._used // VERTEX_BYTES, data.shape[0])
        self._used += data.nbytes
        return slot


class Presenter:
    """The present pass: the frame texture(s) into a viewport, split or side by side:
    each pane, and the split's divider line, is a rectangle of its own (pane_rects)."""

    def __init__(self, ctx: moderngl.Context, allow_interop: bool = True) -> None:
        self.ctx = ctx
        self.painter = RectPainter(ctx)
        self.bgra = BGRAStorage.load(ctx)
        self.textures = [FrameTexture(ctx, allow_interop, self.bgra) for _ in range(2)]
        self.mode = "single"
        self.has_frame = False

    @property
    def interop_possible(self) -> bool:
        """Whether CUDA frames can still go GPU-to-GPU (no texture has given up on it):
        when not, the render thread should hand over host images (RenderWorker's
        keep_on_device), so the device-to-host copy is not made on the GL thread."""
        return all(t.allow_interop for t in self.textures)

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
             hidden: list[Rect] = ()) -> None:
        """Draw into viewport (x, y, w, h) of the framebuffer (the screen by default),
        except the `hidden` rectangles (viewport pixels; what opaque panels will cover)."""
        fbo = framebuffer or self.ctx.screen
        fbo.use()
        fbo.viewport = viewport
        if self.has_frame:
            self._present(self.mode, self.textures, viewport[2:], divider, hidden)

    def _present(self, mode: str, textures: list[FrameTexture], size: tuple[int, int],
                 divider: float, hidden: list[Rect] = ()) -> None:
        """The pane rectangles with textures [A, B] into the bound framebuffer's viewport
        of this size, less the `hidden` rectangles."""
        w, h = size
        for tex, pane in zip(textures, pane_sizes(mode, w, h)):
            tex.use_filter(tex.texture.size == pane)
        self.ctx.disable(moderngl.BLEND | moderngl.DEPTH_TEST)
        for pane, rect in pane_rects(mode, w, h, divider):
            texture = textures[pane].texture if pane >= 0 else None
            self.painter.draw(_cut(rect, hidden) if hidden else [rect], size, texture)

    def render_offscreen(self, images: list, mode: str, divider: float,
                         width: int, height: int) -> np.ndarray:
        """Present pane images into an offscreen width x height target and read it back,
        with textures of its own (the window's stay as they are). [H, W, 3] uint8"""
        texs = [FrameTexture(self.ctx, allow_interop=False, bgra=self.bgra) for _ in images]
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
            self._present(mode if len(images) > 1 else "single", texs, (width, height),
                          divider)
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
    rounding). Only the boxes the panels drew in are composited (set_regions): with a
    software GL, blending a whole 640 x 480 window cost ~1 ms of CPU a frame. Windows
    with an opaque background are copied, not blended, and the present pass leaves
    them out (Presenter.draw's `hidden`): with llvmpipe, upload, present, panels and swap
    of a 640 x 480 window with the side panel open took its threads 0.8 ms of CPU this
    way against 1.3 blending it.
    BGRA storage where it can be had (see BGRAStorage).
    """

    def __init__(self, ctx: moderngl.Context, painter: RectPainter,
                 bgra: BGRAStorage | None = None) -> None:
        self.ctx = ctx
        self.painter = painter
        self.bgra = bgra
        self.texture: moderngl.Texture | None = None
        self.fbo: moderngl.Framebuffer | None = None
        self.valid = False  # holds the panels as they are now
        # Disjoint rectangles (GL pixels, y up; see rect_vertices) that hold everything
        # the panels drew: those to blend, and those the panels cover opaquely.
        self.regions: list[Rect] = []
        self.opaque: list[Rect] = []
        # The window less the opaque rectangles (x0, y0, x1, y1; GL pixels): what a new
        # frame under these panels changes on screen.
        self.uncovered: list[tuple[int, int, int, int]] = []
        self.generation = 0  # counts the refreshes: which panels a draw put on screen

    def usable(self, size: tuple[int, int]) -> bool:
        """Whether the layer holds current panels for a window of this size."""
        return self.valid and self.texture is not None and self.texture.size == size

    def begin(self, size: tuple[int, int]) -> None:
        """Bind the layer (cleared) as the target of the next ImGui render; until
        set_regions says otherwise, all of it is composited."""
        if self.texture is None or self.texture.size != size:
            self.release()
            self.texture = _texture(self.ctx, size, self.bgra)
            self.fbo = self.ctx.framebuffer(color_attachments=[self.texture])
        self.fbo.use()
        self.fbo.viewport = (0, 0, *size)
        self.fbo.clear(0.0, 0.0, 0.0, 0.0)
        self.valid = True
        self.generation += 1
        w, h = size
        self.regions = [(0, 0, w, h, 0.0, 0.0, 1.0, 1.0)]
        self.opaque = []
        self.uncovered = [(0, 0, w, h)]

    def set_regions(self, boxes: list[Box], opaque: list[Box] = ()) -> None:
        """What the panels covered: boxes (x0, y0, x1, y1) in window pixels, y down (as
        ImGui's), made whole-pixel, clipped to the layer and cut into disjoint
        rectangles (a pixel blended twice would darken). Of the `opaque` boxes (windows
        with an opaque background), the whole pixels inside are copied instead."""
        w, h = self.texture.size
        solid = _disjoint([[max(math.ceil(x0), 0), max(math.ceil(y0), 0), min(int(x1), w),
                            min(int(y1), h)] for x0, y0, x1, y1 in opaque], [])
        # -1/+1: antialiased edges reach a little past the vertices
        blend = _disjoint([[max(int(x0) - 1, 0), max(int(y0) - 1, 0), min(math.ceil(x1) + 1, w),
                            min(math.ceil(y1) + 1, h)] for x0, y0, x1, y1 in boxes], solid)

        def gl(r: list[int]) -> Rect:  # y up, and the layer's texture coordinates
            x0, y0, x1, y1 = r
            return (x0, h - y1, x1, h - y0, x0 / w, (h - y1) / h, x1 / w, (h - y0) / h)

        self.regions = [gl(r) for r in blend]
        self.opaque = [gl(r) for r in solid]
        self.uncovered = [tuple(r) for r in _disjoint([[0, 0, w, h]],
                                                       [list(o[:4]) for o in self.opaque])]

    def composite(self, opaque: bool = True) -> None:
        """Put the layer over the screen's back buffer: the opaque part copied (unless
        `opaque` is False: the back buffer holds it from before), the rest blended."""
        screen = self.ctx.screen
        screen.use()
        screen.viewport = (0, 0, *self.texture.size)
        self.ctx.disable(moderngl.BLEND)
        if opaque:
            self.painter.draw(self.opaque, self.texture.size, self.texture)
        self.ctx.enable(moderngl.BLEND)
        self.ctx.blend_equation = moderngl.FUNC_ADD
        self.ctx.blend_func = moderngl.ONE, moderngl.ONE_MINUS_SRC_ALPHA
        self.painter.draw(self.regions, self.texture.size, self.texture)
        self.ctx.disable(moderngl.BLEND)

    def release(self) -> None:
        _release(self.fbo, self.texture)
        self.fbo = self.texture = None
        self.valid = False


class SubBufferCopy:
    """Puts rectangles of the window's back buffer on screen (GLX_MESA_copy_sub_buffer)
    in place of a swap: Mesa's software GL on X11 only.

    Why: with a software GL every pixel put on screen costs CPU, the GL's threads drawing
    it into the back buffer and the X server copying it out, CPU that the rasterizer's
    threads want. A new frame under unchanged panels changes only what lies outside the
    opaque panels (UILayer.uncovered), and only that needs drawing and copying out again:
    for a 640 x 480 window with the side panel open, upload, present, panels and putting
    on screen took the UI thread, the GL's threads and the X server ~2.3 ms of CPU a
    frame with a swap of the whole, ~1.3 ms this way. A copy, unlike a swap, leaves the
    back buffer as it is, so it keeps what was drawn into it: the panels stay there, and
    reading it back (ViewerApp.read_window) gives what is on screen. GPU drivers keep the
    swap (vsync, the compositor's own paths).

    Mesa's X11 software GL takes the window's size again only after a swap: the caller
    swaps whenever the window's size changed, and when the X server refuses a copy (its
    rectangle outside that size, as a resize under way can make it): see show().
    """

    def __init__(self, window) -> None:
        import ctypes.util

        import glfw

        address = glfw.get_proc_address("glXCopySubBufferMESA")
        if not address:
            raise RuntimeError("glXCopySubBufferMESA is not available")
        self.display = glfw.get_x11_display()
        self.drawable = glfw.get_glx_window(window)
        if not self.display or not self.drawable:
            raise RuntimeError("no X11 display or GLX window")
        i, p = ctypes.c_int, ctypes.c_void_p
        self._copy = ctypes.CFUNCTYPE(None, p, ctypes.c_ulong, i, i, i, i)(address)
        x11 = ctypes.CDLL(ctypes.util.find_library("X11") or "libX11.so.6")
        x11.XSetErrorHandler.restype = p
        x11.XSetErrorHandler.argtypes = [p]
        x11.XSync.argtypes = [p, i]
        self._x11 = x11
        self._refused = False
        # An X error of a copy, caught instead of Xlib's default handler (which exits).
        self._on_error = ctypes.CFUNCTYPE(i, p, p)(self._note_error)
        self._on_error_address = ctypes.cast(self._on_error, p)

    def _note_error(self, _display, _event) -> int:
        self._refused = True
        return 0

    @classmethod
    def load(cls, window, ctx: moderngl.Context) -> SubBufferCopy | None:
        """The copy for this window when its context is Mesa's software GL on GLX, else
        None (swap)."""
        import glfw

        renderer = ctx.info.get("GL_RENDERER", "").lower()
        if not any(name in renderer for name in ("llvmpipe", "softpipe", "swrast")):
            return None
        try:
            if not glfw.extension_supported("GLX_MESA_copy_sub_buffer"):
                return None
            return cls(window)
        except Exception as exc:  # not X11 / GLX (Wayland, EGL): swap the whole
            log.info("partial presentation unavailable (%s): swapping buffers", exc)
            return None

    def show(self, rects: list[tuple[int, int, int, int]]) -> bool:
        """Put these rectangles of the back buffer on screen: (x0, y0, x1, y1), GL window
        pixels (y up, ends open). Returns False when the X server refused a copy: the
        caller must swap (the picture is then the back buffer as it is)."""
        self._refused = False
        previous = self._x11.XSetErrorHandler(self._on_error_address)
        try:
            for x0, y0, x1, y1 in rects:  # each flushes the GL first
                self._copy(self.display, self.drawable, int(x0), int(y0), int(x1 - x0),
                           int(y1 - y0))
            self._x11.XSync(self.display, 0)  # any error arrives while the handler is ours
        finally:
            self._x11.XSetErrorHandler(previous)
        return not self._refused


VERTEX_BYTES = 4 * 4  # one vertex of rect_vertices: x, y, u, v float32

Box = tuple[float, float, float, float]  # (x0, y0, x1, y1), window pixels, y down (ImGui's)

# A rectangle of a draw: (x0, y0, x1, y1) in viewport pixels (GL's: y up, ends open),
# showing texture coordinates (u0, v0) at its corner (x0, y0) to (u1, v1) at (x1, y1).
Rect = tuple[float, float, float, float, float, float, float, float]


def rect_vertices(rects: list[Rect], width: int, height: int) -> np.ndarray:
    """Two triangles per rectangle for present.vert: corners in clip space and their
    texture coordinates. [6 * len(rects), 4] float32 (x, y, u, v)"""
    # Plain floats: a draw has a handful of rectangles, and numpy's per-call overhead
    # made this ~0.3 ms of the UI thread's time per draw.
    sx, sy = 2.0 / width, 2.0 / height
    out: list[float] = []
    for x0, y0, x1, y1, u0, v0, u1, v1 in rects:
        a, b, c, d = x0 * sx - 1.0, y0 * sy - 1.0, x1 * sx - 1.0, y1 * sy - 1.0
        out += (a, b, u0, v0, c, b, u1, v0, a, d, u0, v1,
                a, d, u0, v1, c, b, u1, v0, c, d, u1, v1)
    return np.array(out, np.float32).reshape(-1, 4)


def _disjoint(boxes: list[list[int]], taken: list[list[int]]) -> list[list[int]]:
    """The pixels of `boxes` ([x0, y0, x1, y1], ends open) outside `taken`, as disjoint
    boxes."""
    out: list[list[int]] = []
    for r in boxes:
        if r[2] <= r[0] or r[3] <= r[1]:
            continue
        pieces = [r]
        for o in taken + out:
            pieces = [p for q in pieces for p in _subtract(q, o)]
        out += pieces
    return out


def _cut(rect: Rect, holes: list[Rect]) -> list[Rect]:
    """A rectangle of a draw without the holes (in the same pixels), as disjoint
    rectangles that show the same texture coordinates where they are."""
    x0, y0, x1, y1, u0, v0, u1, v1 = rect
    pieces = _disjoint([[x0, y0, x1, y1]], [list(hole[:4]) for hole in holes])
    su, sv = (u1 - u0) / (x1 - x0), (v1 - v0) / (y1 - y0)
    return [(a, b, c, d, u0 + (a - x0) * su, v0 + (b - y0) * sv, u0 + (c - x0) * su,
             v0 + (d - y0) * sv) for a, b, c, d in pieces]


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


def _texture(ctx: moderngl.Context, size: tuple[int, int],
             bgra: BGRAStorage | None) -> moderngl.Texture:
    """An 8-bit four-channel texture of this size: BGRA storage when `bgra` is given,
    else RGBA8; nearest sampling, clamped at the edges (what llvmpipe's copy path takes)."""
    texture = bgra.texture(size) if bgra is not None else ctx.texture(size, 4, dtype="f1")
    texture.filter = (moderngl.NEAREST, moderngl.NEAREST)
    texture.repeat_x = texture.repeat_y = False
    return texture


def _release(*resources) -> None:
    """Release each of the GL (or CUDA) objects given that exists (None: never made)."""
    for r in resources:
        if r is not None:
            r.release()


def pane_rects(mode: str, width: int, height: int, divider: float) -> list[tuple[int, Rect]]:
    """The rectangles of the present pass in a width x height viewport, in drawing order:
    (pane, rect) with pane 0 (A), 1 (B) or -1 (the divider line), each rect over columns
    [x0, x1) and the full height, showing its texture from u = u0 to u1. The layout is
    viewer.compare.compose's."""
    if mode == "side_by_side":
        left = pane_sizes(mode, width, height)[0][0]
        rects = [(0, 0, left, 0.0, 1.0), (1, left, width, 0.0, 1.0)]
    elif mode == "split":
        d = divider_px(divider, width)
        rects = [(0, 0, d, 0.0, d / width), (1, d, width, d / width, 1.0)]
        # The line: the columns whose centres lie within DIVIDER_HALF_WIDTH of d.
        x0 = max(math.floor(d - DIVIDER_HALF_WIDTH - 0.5) + 1, 0)
        x1 = min(math.ceil(d + DIVIDER_HALF_WIDTH - 0.5), width)
        rects.append((-1, x0, x1, 0.0, 0.0))
    else:
        rects = [(0, 0, width, 0.0, 1.0)]
    return [(pane, (x0, 0, x1, height, u0, 0.0, u1, 1.0))
            for pane, x0, x1, u0, u1 in rects if x1 > x0]


def _set(program: moderngl.Program, name: str, value) -> None:
    """Set a uniform if this shader variant uses it (the compiler drops unused ones)."""
    if name in program:
        program[name] = value


def read_screen(ctx: moderngl.Context, width: int, height: int) -> np.ndarray:
    """The window's back buffer, top row first. [H, W, 3] uint8"""
    data = ctx.screen.read(viewport=(0, 0, width, height), components=3, alignment=1)
    return np.ascontiguousarray(np.frombuffer(data, np.uint8).reshape(height, width, 3)[::-1])
