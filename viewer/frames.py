"""Rendering off the GL thread.

The window's loop never waits for the rasterizer: it posts the view it wants
(:meth:`RenderWorker.request`, newest wins) and shows the newest finished frame
(:meth:`RenderWorker.latest`). One background thread renders; it only touches torch and
numpy, never GL. Screenshots are jobs of their own (:meth:`RenderWorker.capture`) that run
before the next view and are never dropped.

Frames leave the thread as BGRA uint8 images [H, W, 4] (Frame.images): the byte order
of GL_BGRA uploads, which Mesa's software GL stores and copies to the screen as they are.
On the CPU path a numpy array (rows stored bottom first, as GL wants them): the colour
as the blending kernel wrote it for a display (RenderOptions.bgra8: no float images),
depth and alpha packed from the float render by whoever first asks for them; on the CUDA
path a CUDA tensor (so the display can copy it GPU-to-GPU into the texture).
"""

from __future__ import annotations

import logging
import math
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from render.camera import Camera
from render.jit import njit
from render.options import RenderOptions
from render.rasterize import render
from render.rasterize.cpu_project import numpy_f32
from viewer.compare import Source

log = logging.getLogger("mipview.viewer")


@dataclass(frozen=True)
class FrameRequest:
    """What to render.

    Attributes:
        seq: increasing request number.
        cameras: one render camera per source (pane), at the render resolution. [P]
        sources: the sources to draw, same order. [P]
        options: the UI's render options (each source applies its overrides).
        full_res: False while the camera moves on the CPU path (reduced resolution).
        view_camera: the full-resolution view, for the zoom readout.
        tag: anything the caller wants back with the frame (mode, divider, ...).
        proxy: the sources draw the model's navigation proxy (adapt.proxy), not the
            full set: a moving view's frame, never the final one.
    """

    seq: int
    cameras: tuple[Camera, ...]
    sources: tuple[Source, ...]
    options: RenderOptions
    full_res: bool = True
    view_camera: Camera | None = None
    tag: dict = field(default_factory=dict)
    proxy: bool = False


@dataclass
class Frame:
    """A finished frame.

    Attributes:
        request: what was asked for.
        panes: per pane, its BGRA image, or (RenderResult, output) of a CPU render that
            :attr:`images` packs on first use.
        render_ms: wall time of all panes' renders (and, on CUDA, conversions).
        n_drawn: Gaussians drawn, per pane.
        backend: backend that ran.
        error: the exception text when rendering failed (no panes then).
    """

    request: FrameRequest
    panes: list
    render_ms: float
    n_drawn: list[int]
    backend: str = ""
    error: str | None = None

    @property
    def images(self) -> list:
        """BGRA uint8 per pane, [H, W, 4]: numpy (CPU) or a CUDA tensor. CPU renders become
        images here, on first use (a view of the colour the kernel packed; alpha and
        depth get packed), by the UI thread while the render thread is on the next view:
        packing on that thread put 0.3-0.9 ms a frame of serial work between renders."""
        for i, pane in enumerate(self.panes):
            if isinstance(pane, tuple):
                self.panes[i] = to_bgra8(*pane)
        return self.panes


def timing_key(backend: str, proxy: bool) -> str:
    """RenderWorker.full_ms's key: full-size frames of the full set and of the proxy are
    timed apart (the proxy's decide the resolution while moving)."""
    return f"{backend}/proxy" if proxy else backend


def to_bgra8(result, output: str) -> torch.Tensor | np.ndarray:
    """RenderResult -> BGRA uint8 [H, W, 4]: a CUDA tensor on the GPU, a numpy array on
    the CPU.

    depth is shown as normalised inverse depth (near bright), alpha as grey. On the CPU
    the colour usually comes packed by the blending kernel (RenderResult.bgra8_gl, which
    render_panes asks for); else the packing is one compiled pass (:func:`pack_bgra8`):
    the same arithmetic as torch's clamp / scale / round / cat, at a twentieth of its
    time. Either way the rows are stored bottom first, GL's order, and returned as a view
    that reads top row first: the display's upload then needs no copy (see
    FrameTexture.put).
    """
    if output == "rgb" and result.bgra8_gl is not None:
        return result.bgra8_gl.numpy()[::-1]  # packed by the blending kernel
    if output == "depth" and result.depth is not None:
        d = result.depth[..., 0]
        a = result.alpha[..., 0]
        inv = torch.where(a > 1e-3, 1.0 / d.clamp_min(1e-6), torch.zeros_like(d))
        valid = inv[a > 1e-3]
        if valid.numel() > 0:
            lo = torch.quantile(valid[:: max(1, valid.numel() // 100_000)].float(),
                                torch.tensor([0.02, 0.98], device=valid.device))
            inv = ((inv - lo[0]) / (lo[1] - lo[0]).clamp_min(1e-12)).clamp(0, 1) * (a > 1e-3)
        img = inv[..., None]
    elif output == "alpha":
        img = result.alpha
    else:
        img = result.rgb
    if img.device.type == "cpu":
        # numpy_f32: no detach() (it lets go of the GIL) for a frame outside autograd.
        src = numpy_f32(img)
        h, w, c = src.shape
        out = np.empty((h, w, 4), np.uint8)
        pack_bgra8(src.reshape(h, w * c), c, out.reshape(h, w * 4))
        return out[::-1]
    img = (img.detach().float().clamp(0.0, 1.0) * 255.0 + 0.5).to(torch.uint8)
    img = img.expand(-1, -1, 3)
    alpha = torch.full_like(img[..., :1], 255)
    return torch.cat([img.flip(-1), alpha], dim=-1).contiguous()


@njit(nogil=True, cache=True)
def pack_bgra8(src: np.ndarray, channels: int, out: np.ndarray) -> None:
    """Float colours in [0, 1] to opaque BGRA8, rounded to nearest, clamped (NaN -> 0),
    rows upside down: src row y goes to out row H - 1 - y (~0.3 ms at 640 x 480).

    src: float32 [H, W * channels] (channels 3: RGB, 1: grey); out: uint8 [H, W * 4].
    One branch-free loop per layout, so that the loops vectorise.
    """
    zero, one = np.float32(0.0), np.float32(1.0)
    h = src.shape[0]
    for y in range(h):
        s, o = src[y], out[h - 1 - y]
        if channels == 1:
            for i in range(s.shape[0]):
                g = np.uint8(min(max(s[i], zero), one) * np.float32(255.0) + np.float32(0.5))
                o[4 * i] = g
                o[4 * i + 1] = g
                o[4 * i + 2] = g
                o[4 * i + 3] = 255
        else:
            for i in range(s.shape[0] // 3):
                for k in range(3):
                    o[4 * i + 2 - k] = np.uint8(min(max(s[3 * i + k], zero), one)
                                                * np.float32(255.0) + np.float32(0.5))
                o[4 * i + 3] = 255


def render_panes(request: FrameRequest, keep_on_device: bool) -> Frame:
    """Render every pane of a request (synchronously, on the calling thread)."""
    t0 = time.perf_counter()
    panes, drawn, backend = [], [], ""
    for cam, src in zip(request.cameras, request.sources):
        opts = src.options(request.options)
        # The colour comes packed for the display from the blending kernel (cpu backend),
        # which then skips the float images.
        opts = replace(opts, bgra8=opts.output == "rgb")
        result = render(src.gaussians, cam, opts)
        if result.bgra8_gl is not None or result.rgb.device.type == "cpu":
            panes.append((result, opts.output))  # packed on first use (Frame.images)
        elif keep_on_device:
            panes.append(to_bgra8(result, opts.output))
        else:  # flipped on the GPU, so that the upload needs no copy (see to_bgra8)
            panes.append(to_bgra8(result, opts.output).flip(0).cpu().numpy()[::-1])
        drawn.append(int(result.meta.get("n_drawn", 0)))
        backend = result.meta.get("backend", "")
    if panes and torch.is_tensor(panes[0]):
        torch.cuda.current_stream().synchronize()
    return Frame(request, panes, (time.perf_counter() - t0) * 1e3, drawn, backend)


def render_panes_tiled(request: FrameRequest) -> Frame:
    """A large still's panes as 8-bit RGB [H, W, 3], each rendered in tiles (viewer.capture.
    render_still): only the 8-bit images are held whole, never a full render's float
    buffers. The colour output only (depth and alpha are normalised over the whole view)."""
    from render.io import limits
    from viewer.capture import render_still

    t0 = time.perf_counter()
    panes, backend = [], ""
    for cam, src in zip(request.cameras, request.sources):
        opts = replace(src.options(request.options), bgra8=False, output="rgb")

        def one(c, g=src.gaussians, o=opts):
            nonlocal backend
            result = render(g, c, o)
            backend = result.meta.get("backend", backend)
            return result.rgb.detach().cpu().numpy()

        panes.append(render_still(one, cam, tile=limits.TILE_SIDE))
    return Frame(request, panes, (time.perf_counter() - t0) * 1e3,
                 [0] * len(panes), backend)


class RenderWorker:
    """One background thread that renders the newest requested view.

    Attributes:
        keep_on_device: leave CUDA frames on the GPU (the display copies them GPU-to-GPU).
    """

    def __init__(self, keep_on_device: bool = False,
                 scale_fn=None, scale_interval_s: float = 0.2, on_event=None) -> None:
        self.keep_on_device = keep_on_device
        # Called (on the render thread) when a view is taken up and when a frame is
        # done, e.g. glfw.post_empty_event to wake a sleeping UI loop.
        self._on_event = on_event or (lambda: None)
        self._cond = threading.Condition()
        self._pending: FrameRequest | None = None
        self._captures: deque[FrameRequest] = deque()
        self._captured: deque[Frame] = deque()
        self._latest: Frame | None = None
        self._started_seq = -1
        self._stop = False
        self.busy = False
        # The zoom readout: scale_fn(camera) -> float, run here (not on the GL thread)
        # after a frame is published: at most every scale_interval_s while further
        # views wait (a stream of frames: it would cost each frame ~5-10 ms of CPU), and
        # always for the view the thread settles on (no request waiting).
        self._scale_fn = scale_fn
        self._scale_interval = scale_interval_s
        self._scale_t = -math.inf
        self._scale_cost = 0.0  # seconds the last readout took
        self._scale_key = None
        self.scale: float | None = None
        self.scale_error: str | None = None
        # timing_key(backend, proxy) -> last full-resolution render time
        self.full_ms: dict[str, float] = {}
        self._thread = threading.Thread(target=self._run, name="mipview-render", daemon=True)
        self._thread.start()

    # -- GL thread side ------------------------------------------------------------------
    def request(self, req: FrameRequest) -> None:
        """Ask for a view; a request not yet started is replaced (newest wins)."""
        with self._cond:
            self._pending = req
            self._cond.notify()

    def capture(self, req: FrameRequest) -> None:
        """Queue a screenshot render; runs before the next view, never dropped."""
        with self._cond:
            self._captures.append(req)
            self._cond.notify()

    def latest(self) -> Frame | None:
        with self._cond:
            return self._latest

    def take_captures(self) -> list[Frame]:
        with self._cond:
            out = list(self._captured)
            self._captured.clear()
            return out

    @property
    def started_seq(self) -> int:
        """The seq of the newest view request the thread has taken up."""
        with self._cond:
            return self._started_seq

    def idle(self) -> bool:
        with self._cond:
            return not self._work_waiting() and not self.busy

    def set_scale_fn(self, fn) -> None:
        with self._cond:
            self._scale_fn = fn
            self._scale_key = None
            self._scale_t = -math.inf
            self.scale = None

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join(timeout=30)

    def _work_waiting(self) -> bool:
        """A view or a screenshot waits to be rendered (call with the lock held)."""
        return self._pending is not None or bool(self._captures)

    # -- render thread -----------------------------------------------------------------
    def _run(self) -> None:
        torch.set_grad_enabled(False)
        while True:
            with self._cond:
                while not self._stop and not self._work_waiting():
                    self._cond.wait()
                if self._stop:
                    return
                is_capture = bool(self._captures)
                req = self._captures.popleft() if is_capture else self._pending
                if not is_capture:
                    self._pending = None
                    self._started_seq = req.seq
                self.busy = True
            self._notify()
            frame = self._render(req, keep=self.keep_on_device and not is_capture)
            with self._cond:
                if is_capture:
                    self._captured.append(frame)
                elif self._latest is None or req.seq >= self._latest.request.seq:
                    self._latest = frame
                more = self._work_waiting()
            # With more to do, the next take-up wakes the UI moments from now (after the
            # readout, ~1 ms every scale_interval_s), for both: two wake-ups were two UI
            # steps per streamed frame.
            if not more:
                self._notify()
            if not is_capture:  # after publishing: the readout never delays a frame
                self._update_scale(req)
            with self._cond:
                self.busy = False
                more = self._work_waiting()
            if not more:  # else the next view's take-up wakes the UI (one wake-up less)
                self._notify()

    def _notify(self) -> None:
        try:
            self._on_event()
        except Exception as exc:  # waking the UI early is an optimisation only
            log.debug("wake-up failed: %s", exc)

    def _render(self, req: FrameRequest, keep: bool) -> Frame:
        try:
            with torch.no_grad():
                frame = (render_panes_tiled(req) if req.tag.get("tiled")
                         else render_panes(req, keep))
            if req.full_res and frame.backend:
                self.full_ms[timing_key(frame.backend, req.proxy)] = frame.render_ms
            return frame
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()  # the failed frame's cached blocks go back to the GPU
            cam = req.cameras[0] if req.cameras else None
            n = max((len(s.gaussians) for s in req.sources), default=0)
            size = f" at {cam.width} x {cam.height}" if cam is not None else ""
            msg = (f"the GPU ran out of memory rendering {n:,} Gaussians{size}; lower the "
                   "resolution, close other GPU programs or use --backend cpu")
            log.error("%s", msg)
            return Frame(req, [], 0.0, [], error=msg)
        except Exception as exc:  # a bad frame is shown as an error, never fatal
            log.error("render failed: %s", traceback.format_exc())
            return Frame(req, [], 0.0, [], error=f"{type(exc).__name__}: {exc}")

    def _update_scale(self, req: FrameRequest) -> None:
        fn = self._scale_fn
        if fn is None or req.view_camera is None or not req.sources:
            return
        now = time.perf_counter()
        with self._cond:
            settled = self._pending is None
        # While views stream, the readout takes at most ~2 % of the thread's time.
        interval = max(self._scale_interval, 50.0 * self._scale_cost)
        if now - self._scale_t < interval and not settled:
            return  # checked first: this runs between every two frames of a stream
        cam = req.view_camera
        key = (tuple(np.round(cam.viewmat.numpy().ravel(), 7)), round(cam.fy, 5), cam.height,
               id(req.sources[0].gaussians))
        if key == self._scale_key:
            return
        try:
            with torch.no_grad():
                s = float(fn(req.sources[0].gaussians, cam))
            self.scale, self.scale_error = s, None
        except Exception as exc:
            self.scale, self.scale_error = None, f"{type(exc).__name__}: {exc}"
        self._scale_cost = time.perf_counter() - now
        self._scale_key, self._scale_t = key, now
