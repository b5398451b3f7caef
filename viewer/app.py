"""The viewer window: glfw + moderngl + Dear ImGui (imgui-bundle's native GLFW/OpenGL3
backends), and the main loop.

One UI frame (:meth:`ViewerApp.step`): poll input -> move the camera -> post the view to
the render thread (viewer.frames) -> put the newest finished frame into the textures
(viewer.display) -> present pass -> panels (viewer.panels) -> swap. The loop never waits
for a render, so the panels and the mouse stay responsive behind a slow CPU frame.

Input arrives through the glfw callbacks `on_*`; they forward every event to ImGui and
act on it only when ImGui does not want it. Tests drive the real window by calling the
same methods.
"""

from __future__ import annotations

import ctypes
import dataclasses
import json
import logging
import math
import os
import shutil
import threading
import time
from dataclasses import dataclass
from dataclasses import replace as dataclass_replace
from pathlib import Path

import numpy as np
import torch

# imgui_bundle first: it points pyGLFW at the libglfw its native backend is linked to,
# so both talk to one GLFW (see imgui_bundle/_glfw_set_search_path.py).
from imgui_bundle import imgui  # isort: skip
import glfw  # noqa: E402  isort: skip
import moderngl  # noqa: E402

from render.camera import Camera  # noqa: E402
from render.gaussians import Gaussians  # noqa: E402
from render.options import ANTIALIAS_MODES  # noqa: E402
from render.rasterize import gsplat_backend  # noqa: E402
from viewer import controls as C  # noqa: E402
from viewer import panels  # noqa: E402
from viewer.backend_start import start_backend  # noqa: E402
from viewer.compare import Source, compose, divider_px, pane_cameras  # noqa: E402
from viewer.display import (  # noqa: E402
    Presenter,
    SubBufferCopy,
    UILayer,
    imgui_boxes,
    read_screen,
)
from viewer.frames import Frame, FrameRequest, RenderWorker, timing_key  # noqa: E402
from viewer.memory import memory_text, release_free, tame_malloc  # noqa: E402
from viewer.models import ModelLoader, demo_model, scale_function  # noqa: E402
from viewer.proxy_builder import ProxyBuilder  # noqa: E402
from viewer.state import (  # noqa: E402
    ModelState,
    NavState,
    RenderSettings,
    ViewerState,
    load_recent,
    push_recent,
    save_recent,
)

log = logging.getLogger("mipview.viewer")

# While the camera moves, the CPU path renders at a resolution whose frame should take
# about this long, and refines to full resolution once the view has been still this long.
MOVING_TARGET_MS = 40.0
STILL_AFTER_S = 0.15
MIN_MOVING_SCALE = 0.25
DIVIDER_GRAB_PX = 6.0
IDLE_REDRAW_S = 0.25  # redraw at least this often (stats, loading text)
STREAMING_REDRAW_S = 1.0  # the same while the render thread works (each costs it CPU)
READOUT_REDRAW_S = 0.2  # sooner when the zoom readout changed (scrolling, say)
IDLE_WAIT_S = 0.02  # longest sleep between UI frames when nothing happens
BUSY_WAIT_S = 0.1  # the same while the render thread works (it wakes the loop itself)
RELEASE_AFTER_S = 2.0  # without new frames for this long, free heap goes back to the OS
# UI frames that no new rendered frame asks for (input, hover, held keys) are paced to
# these rates, measured from the start of the previous draw: with a software GL a draw
# costs ~5-10 ms of CPU, and unpaced input (a mouse sends 100+ events a second) would
# take a core from the rasterizer while a CPU frame renders. A new frame is drawn at once.
UI_FPS_RENDERING = 40.0  # while the render thread works
UI_FPS_IDLE = 60.0  # otherwise
# Why a UI frame is drawn, by precedence. INPUT: ImGui runs and draws onto the screen.
# PANELS (the periodic refresh): ImGui runs and draws into the cached UI layer
# (viewer.display.UILayer), which is put over the frame. FRAME (only a new rendered
# frame): the cached layer is put over it without running ImGui, as the panels
# cannot have changed (no input, no refresh due). With llvmpipe this halves the CPU a
# streamed frame costs the UI thread.
DRAW_NONE, DRAW_FRAME, DRAW_PANELS, DRAW_INPUT = 0, 1, 2, 3
FLY_KEYS = frozenset((glfw.KEY_W, glfw.KEY_A, glfw.KEY_S, glfw.KEY_D, glfw.KEY_Q, glfw.KEY_E))


@dataclass
class Drag:
    """A mouse drag in progress: which button, what it does, where the mouse was."""

    button: int
    action: str  # orbit, look, pan, divider
    x: float
    y: float


class ViewerApp:
    """The viewer window and its loop.

    Args:
        model: what to show first; None builds the demo scene.
        size: window size in pixels (width, height).
        backend: RenderOptions backend ("auto", "cpu", "cuda", "reference").
        visible: show the window (tests and --snapshot under Xvfb keep it visible too).
        vsync: swap interval 1; off for benchmarks.
    """

    def __init__(self, model: ModelState | None = None, size: tuple[int, int] = (1280, 800),
                 backend: str = "auto", visible: bool = True, vsync: bool = True,
                 title: str = "mipview", allow_interop: bool = True) -> None:
        tame_malloc()
        if not glfw.init():
            raise RuntimeError("glfw could not initialise (no display? set DISPLAY or run "
                               "under xvfb-run)")
        glfw.window_hint(glfw.CONTEXT_VERSION_MAJOR, 3)
        glfw.window_hint(glfw.CONTEXT_VERSION_MINOR, 3)
        glfw.window_hint(glfw.OPENGL_PROFILE, glfw.OPENGL_CORE_PROFILE)
        glfw.window_hint(glfw.OPENGL_FORWARD_COMPAT, True)
        glfw.window_hint(glfw.VISIBLE, bool(visible))
        # Nothing here is depth-tested, and a window without depth and stencil buffers is
        # what lets Mesa's software GL present frames by copying rows (shaders/present.frag).
        glfw.window_hint(glfw.DEPTH_BITS, 0)
        glfw.window_hint(glfw.STENCIL_BITS, 0)
        self.window = glfw.create_window(int(size[0]), int(size[1]), title, None, None)
        if not self.window:
            glfw.terminate()
            raise RuntimeError("glfw could not create an OpenGL 3.3 window")
        glfw.make_context_current(self.window)
        glfw.swap_interval(1 if vsync else 0)
        self.ctx = moderngl.create_context()
        self.title = title
        self._fb_size = (1, 1)
        self._win_size = (1, 1)
        self.on_framebuffer_size(None, *glfw.get_framebuffer_size(self.window))
        self.on_window_size(None, *glfw.get_window_size(self.window))

        imgui.create_context()
        io = imgui.get_io()
        io.set_ini_filename("")  # layout is not persisted: no imgui.ini in the cwd
        self._addr = ctypes.cast(self.window, ctypes.c_void_p).value
        imgui.backends.glfw_init_for_opengl(self._addr, False)
        imgui.backends.opengl3_init("#version 330")
        self._install_callbacks()

        self.backend = backend
        # gsplat's first kernel build (minutes) runs in a thread, the window on the CPU
        # backend meanwhile (viewer.backend_start); `cuda` where it cannot run: an error.
        start = start_backend(backend)
        self.backend_name, self.backend_reason = start.name, start.reason
        self.device = start.device
        self._backend_probe = start.probe
        self.presenter = Presenter(self.ctx, allow_interop=allow_interop)
        self.ui_layer = UILayer(self.ctx, self.presenter.painter, self.presenter.bgra)
        # With a software GL, what changed is put on screen instead of swapping the whole.
        self.sub_buffer = SubBufferCopy.load(self.window, self.ctx)
        self._canvas_layer: int | None = None  # the UILayer generation the back buffer holds
        self._swapped_size: tuple[int, int] | None = None  # the window's at the last swap
        # The render thread wakes the loop (see _wait) when it takes a view up and when a
        # frame is done.
        self._woken = threading.Event()
        self._in_event_wait = False  # the loop sleeps in glfw (only an event wakes it)
        self.worker = RenderWorker(keep_on_device=self.device.type == "cuda" and allow_interop,
                                   on_event=self._wake_up)
        self.loader = ModelLoader()

        from viewer.path_panel import PathEditorState

        self.path_editor = PathEditorState()
        if model is None:
            model = demo_model()
        model.gaussians = model.gaussians.to(self.device)
        nav = NavState(pose=None, home=None, up=np.zeros(3))
        try:
            self._take_up(nav, model)
            nav.pose = nav.home = self._initial_pose(model, nav.up)
            nav.fly_speed = self._fly_speed(model)
        except Exception:  # a model the view cannot frame: no window left behind
            self._release_window()
            raise
        self.state = ViewerState(model=model, render=RenderSettings(backend=start.render_backend),
                                 nav=nav)
        self.state.ui.recent = load_recent()
        self._set_scale_fn(model)
        self.proxy = ProxyBuilder()  # the coarse set drawn while the camera moves
        self.proxy.start(model.gaussians, model.path, self.device)
        from viewer.adaptation import AdaptController  # live Mipmap-GS: source B

        self.adaptation = AdaptController(self.device)

        self.held: set[int] = set()
        self.drag: Drag | None = None
        self.mouse = (0.0, 0.0)
        self._seq = 0
        self._last_key = None
        self._last_change = -math.inf
        self._last_request_full = True
        self._shown_seq = -1
        self._last_view_seq = -2
        self._upload_ms = 0.0
        self._events = self._events_seen = 0
        self._draw_frames_left = 0
        self._draw_start = -math.inf  # when the last UI frame's draw started
        self._drawn_divider = math.nan  # the split divider the last draw showed
        self._draw_owed = DRAW_NONE  # a draw that pacing postponed (its DRAW_* reason)
        self._last_panels_draw = -math.inf  # when ImGui last ran
        self._shown: Frame | None = None
        self._frame_t = -math.inf  # when the newest frame was shown
        self._heap_released = True  # no frame since the free heap last went back
        self._last_t = time.perf_counter()
        self._file_dialog = None
        self.captured: list[tuple[Path, np.ndarray]] = []  # screenshots written, newest last
        self.frame_count = 0
        self.should_close = False
        self._fps_t0 = time.perf_counter()
        self._fps_n = 0
        self._update_title()

    # -- setup helpers ---------------------------------------------------------------------
    def _install_callbacks(self) -> None:
        w = self.window
        glfw.set_key_callback(w, self.on_key)
        glfw.set_char_callback(w, self.on_char)
        glfw.set_mouse_button_callback(w, self.on_mouse_button)
        glfw.set_cursor_pos_callback(w, self.on_cursor_pos)
        glfw.set_scroll_callback(w, self.on_scroll)
        glfw.set_drop_callback(w, self.on_drop)
        glfw.set_framebuffer_size_callback(w, self.on_framebuffer_size)
        glfw.set_window_size_callback(w, self.on_window_size)
        glfw.set_window_focus_callback(w, self.on_focus)
        glfw.set_cursor_enter_callback(w, self.on_cursor_enter)
        glfw.set_window_refresh_callback(w, self.on_refresh)

    def on_focus(self, _window, focused: int) -> None:
        imgui.backends.glfw_window_focus_callback(self._addr, int(focused))
        self._events += 1

    def on_cursor_enter(self, _window, entered: int) -> None:
        imgui.backends.glfw_cursor_enter_callback(self._addr, int(entered))
        self._events += 1

    def on_refresh(self, _window) -> None:
        self._events += 1  # the window was uncovered: draw it again

    def _fly_speed(self, model: ModelState) -> float:
        """WASD speed: half the scene's radius per second. Also sets the near plane (the
        scene's extent is a robust-quantile computation: once per model, not per frame)."""
        extent = model.gaussians.extent()
        self._near = max(extent * 1e-4, 1e-5)
        return 0.5 * extent

    def _initial_pose(self, model: ModelState, up: np.ndarray) -> C.ViewPose:
        lo, hi = (t.double().cpu().numpy() for t in model.gaussians.bounds(quantile=0.01))
        centre = (lo + hi) / 2.0
        if model.initial is not None:
            cam = model.initial
            c2w = np.linalg.inv(cam.viewmat.double().numpy())
            depth = float(np.dot(centre - c2w[:3, 3], c2w[:3, 2]))
            radius = float(np.linalg.norm(hi - lo)) / 2.0
            return C.pose_from_camera(cam, depth if depth > 1e-3 else max(radius, 1e-3))
        radius = max(float(np.linalg.norm(hi - lo)) / 2.0, 1e-3)
        # Look along the horizontal axis least aligned with up, from 3 radii away and
        # 30 degrees above it: a model lying flat (a table top, a donut) shows its top.
        axes = np.eye(3)
        up_n = np.asarray(up, dtype=np.float64) / max(float(np.linalg.norm(up)), 1e-12)
        level_fwd = axes[int(np.argmin(np.abs(axes @ up_n)))]
        level_fwd = level_fwd - np.dot(level_fwd, up_n) * up_n
        level_fwd /= max(float(np.linalg.norm(level_fwd)), 1e-12)
        fwd = np.cos(np.radians(30.0)) * level_fwd - np.sin(np.radians(30.0)) * up_n
        cam = Camera.look_at(centre - fwd * 3 * radius, centre, up=tuple(up), fov_y_deg=50.0)
        pose = C.pose_from_camera(cam, 3 * radius)
        w, h = self.framebuffer_size
        return C.frame_bounds(pose, lo, hi, w / max(h, 1))

    def _set_scale_fn(self, model: ModelState, fn=None) -> None:
        self._scale_setup_error = None
        if fn is None:
            try:
                fn = scale_function(model, self.state.nav.up)
            except Exception as exc:
                self._scale_setup_error = f"no zoom readout: {type(exc).__name__}: {exc}"
        self.worker.set_scale_fn(fn)

    def _update_title(self) -> None:
        glfw.set_window_title(self.window, f"{self.title} - {self.state.model.name}")

    # -- geometry ----------------------------------------------------------------------------
    @property
    def framebuffer_size(self) -> tuple[int, int]:
        """Framebuffer size in pixels, as last reported by glfw (cached: every glfw call
        is a round trip to the X server)."""
        return self._fb_size

    @property
    def window_size(self) -> tuple[int, int]:
        """Window size in screen coordinates (mouse positions use these)."""
        return self._win_size

    def on_framebuffer_size(self, _window, w: int, h: int) -> None:
        self._fb_size = (max(int(w), 1), max(int(h), 1))
        self._events = getattr(self, "_events", 0) + 1

    def on_window_size(self, _window, w: int, h: int) -> None:
        self._win_size = (max(int(w), 1), max(int(h), 1))

    def _pixel_ratio(self) -> float:
        return self.framebuffer_size[0] / self.window_size[0]

    def view_camera(self, width: int | None = None, height: int | None = None) -> Camera:
        """The full-resolution camera of the current view (resolution scale applied)."""
        fw, fh = self.framebuffer_size
        s = self.state.render.resolution_scale
        w = width or max(1, int(round(fw * s)))
        h = height or max(1, int(round(fh * s)))
        return self.state.nav.pose.camera(w, h, near=self._near)

    # -- sources -------------------------------------------------------------------------------
    def source_a(self) -> Source:
        return Source(self.state.model.gaussians,
                      self.state.compare.a_label or self.state.model.name)

    def set_source_b(self, source: Source | None) -> None:
        """Plug a source in as B (the adaptation integration: "Mipmap-GS (level in use)")."""
        self.state.compare.set_source_b(source)

    def ui_options(self):
        """The UI's RenderOptions; `adaptive` and `blend` get the view's scale (1 while
        unknown, e.g. when the camera sees no Gaussian and the scale is NaN)."""
        s = self.state.scale
        ok = s is not None and math.isfinite(s) and s > 0
        return self.state.render.options(zoom=s if ok else 1.0)

    def build_request(self, camera: Camera, full_res: bool, seq: int, view_camera: Camera,
                      tag: dict | None = None, proxy: Gaussians | None = None) -> FrameRequest:
        """The frame of `camera`; with `proxy`, the sources showing the model's set draw
        that navigation proxy instead (a moving view)."""
        cmp = self.state.compare
        opts = self.ui_options()
        sources = cmp.visible_sources(self.source_a(), opts)
        if proxy is not None:
            full_set = self.state.model.gaussians
            if not any(src.gaussians is full_set for src in sources):
                proxy = None  # e.g. B alone, an adapted set: nothing to stand in for
            sources = [dataclasses.replace(src, gaussians=proxy)
                       if src.gaussians is full_set and proxy is not None else src
                       for src in sources]
        mode = cmp.mode if len(sources) > 1 else "single"
        cams = pane_cameras(mode, camera)
        t = {"mode": mode, "divider": cmp.divider, "labels": [s.label for s in sources]}
        t.update(tag or {})
        return FrameRequest(seq, tuple(cams), tuple(sources), opts, full_res, view_camera, t,
                            proxy=proxy is not None)

    # -- input: glfw callbacks (also called directly by tests) --------------------------------
    def _ui_wants_mouse(self) -> bool:
        return bool(imgui.get_io().want_capture_mouse)

    def on_key(self, _window, key: int, scancode: int, action: int, mods: int) -> None:
        imgui.backends.glfw_key_callback(self._addr, key, scancode, action, mods)
        self._events += 1
        if action == glfw.PRESS:
            self.held.add(key)
        elif action == glfw.RELEASE:
            self.held.discard(key)
            return
        if action != glfw.PRESS or imgui.get_io().want_text_input:
            return
        self.handle_shortcut(key, mods)

    def _ctrl(self, mods: int) -> bool:
        return bool(mods & glfw.MOD_CONTROL) or bool(
            self.held & {glfw.KEY_LEFT_CONTROL, glfw.KEY_RIGHT_CONTROL})

    def handle_shortcut(self, key: int, mods: int) -> None:
        """One key press; the bindings are listed in KEYBOARD_HELP."""
        s = self.state
        ctrl = self._ctrl(mods)
        if ctrl and key == glfw.KEY_O:
            self.open_file_dialog()
        elif ctrl and key == glfw.KEY_S or key == glfw.KEY_F12:
            self.screenshot()
        elif ctrl:
            return
        elif key == glfw.KEY_R:
            self.reset_view()
        elif key == glfw.KEY_F:
            self.frame_model()
        elif key == glfw.KEY_TAB:
            s.nav.fly = not s.nav.fly
        elif key == glfw.KEY_ESCAPE:
            s.nav.fly = False
            s.ui.error_text = ""
        elif key == glfw.KEY_C:
            s.compare.cycle_mode()
        elif key == glfw.KEY_X:
            s.compare.flip()
        elif key in (glfw.KEY_PERIOD, glfw.KEY_PAGE_DOWN):
            self.jump_to_camera(s.nav.camera_index + 1)
        elif key in (glfw.KEY_COMMA, glfw.KEY_PAGE_UP):
            self.jump_to_camera(s.nav.camera_index - 1)
        elif key in (glfw.KEY_1, glfw.KEY_2, glfw.KEY_3, glfw.KEY_4):
            self.set_antialias(ANTIALIAS_MODES[key - glfw.KEY_1])
        elif key == glfw.KEY_H:
            s.ui.show_panels = not s.ui.show_panels
        elif key == glfw.KEY_F1:
            s.ui.show_help = not s.ui.show_help

    def on_char(self, _window, char: int) -> None:
        imgui.backends.glfw_char_callback(self._addr, char)
        self._events += 1

    def on_mouse_button(self, _window, button: int, action: int, mods: int) -> None:
        imgui.backends.glfw_mouse_button_callback(self._addr, button, action, mods)
        self._events += 1
        if action == glfw.RELEASE:
            if self.drag is not None and self.drag.button == button:
                self.drag = None
            return
        if action != glfw.PRESS or self.drag is not None or self._ui_wants_mouse():
            return
        x, y = self.mouse
        if button == glfw.MOUSE_BUTTON_LEFT:
            if self._near_divider(x):
                act = "divider"
            else:
                act = "look" if self.state.nav.fly else "orbit"
        elif button in (glfw.MOUSE_BUTTON_RIGHT, glfw.MOUSE_BUTTON_MIDDLE):
            act = "pan"
        else:
            return
        self.drag = Drag(button, act, x, y)

    def _near_divider(self, x_window: float) -> bool:
        if self.state.compare.mode != "split":
            return False
        fw, _ = self.framebuffer_size
        d = divider_px(self.state.compare.divider, fw) / self._pixel_ratio()
        return abs(x_window - d) <= DIVIDER_GRAB_PX

    def on_cursor_pos(self, _window, x: float, y: float) -> None:
        imgui.backends.glfw_cursor_pos_callback(self._addr, x, y)
        self.mouse = (float(x), float(y))
        d = self.drag
        if d is None or d.action == "divider":  # hover; the split's labels follow the divider
            self._events += 1
        if d is None:
            return
        dx, dy = x - d.x, y - d.y
        d.x, d.y = x, y
        nav = self.state.nav
        if d.action == "orbit":
            nav.pose = C.orbit(nav.pose, nav.up, dx, dy)
        elif d.action == "look":
            nav.pose = C.look(nav.pose, nav.up, dx, dy)
        elif d.action == "pan":
            nav.pose = C.pan(nav.pose, dx, dy, self.window_size[1])
        elif d.action == "divider":
            ww = self.window_size[0]
            self.state.compare.divider = float(min(max(x / ww, 0.0), 1.0))

    def on_scroll(self, _window, dx: float, dy: float) -> None:
        imgui.backends.glfw_scroll_callback(self._addr, dx, dy)
        if self._ui_wants_mouse() or dy == 0:
            self._events += 1
            return
        nav = self.state.nav
        fov_keys = {glfw.KEY_LEFT_CONTROL, glfw.KEY_RIGHT_CONTROL, glfw.KEY_LEFT_ALT,
                    glfw.KEY_RIGHT_ALT}
        if self.held & fov_keys:
            nav.pose = C.zoom_fov(nav.pose, dy)
        else:
            nav.pose = C.dolly(nav.pose, dy)

    def on_drop(self, _window, paths: list[str]) -> None:
        self._events += 1
        if paths:
            self.open_model(paths[0])

    # -- actions (panels and keys call these) -----------------------------------------------
    def reset_view(self) -> None:
        self.state.nav.pose = self.state.nav.home

    def frame_model(self) -> None:
        lo, hi = (t.double().cpu().numpy()
                  for t in self.state.model.gaussians.bounds(quantile=0.01))
        w, h = self.framebuffer_size
        self.state.nav.pose = C.frame_bounds(self.state.nav.pose, lo, hi, w / h)

    def set_antialias(self, mode: str) -> None:
        """The antialias mode of source A (and of B where B follows the UI's options). A
        single view that shows a B with a mode of its own (an adapted level) turns to A,
        the source the choice changes."""
        s = self.state
        cmp = s.compare
        b_fixed = cmp.custom_b is not None and "antialias" in cmp.custom_b.overrides
        if mode != s.render.antialias and cmp.mode == "single" and cmp.shown == "B" \
                and b_fixed:
            cmp.shown = "A"
        s.render.antialias = mode

    def jump_to_camera(self, index: int) -> None:
        cams = self.state.model.cameras
        if not cams:
            return
        index %= len(cams)
        cam = cams[index]
        lo, hi = (t.double().cpu().numpy()
                  for t in self.state.model.gaussians.bounds(quantile=0.01))
        c2w = np.linalg.inv(cam.viewmat.double().numpy())
        depth = float(np.dot((lo + hi) / 2 - c2w[:3, 3], c2w[:3, 2]))
        self.state.nav.pose = C.pose_from_camera(
            cam, depth if depth > 1e-3 else self.state.nav.pose.distance)
        self.state.nav.camera_index = index

    @staticmethod
    def _take_up(nav: NavState, model: ModelState) -> None:
        """World up for a model: its cameras', else the guess from its shape, else the
        menu's current choice (the last one the user made)."""
        nav.up_from_cameras = model.up is not None
        nav.up_guessed = model.up is None and model.up_guess is not None
        if model.up is not None:
            nav.up = np.array(model.up, dtype=np.float64)
            return
        if model.up_guess is not None:
            nav.up_choice = model.up_guess
        nav.up = np.array(C.UP_CHOICES[nav.up_choice], dtype=np.float64)

    def set_up(self, choice: str) -> None:
        self.state.nav.up_choice = choice
        self.state.nav.up = np.array(C.UP_CHOICES[choice], dtype=np.float64)
        self.state.nav.up_from_cameras = False
        self.state.nav.up_guessed = False
        self.state.nav.pose = C.level(self.state.nav.pose, self.state.nav.up)

    def set_fov_deg(self, deg: float) -> None:
        self.state.nav.pose = C.set_fov(self.state.nav.pose, math.radians(deg))

    def open_model(self, path: str | Path | None) -> bool:
        """Load a model file (None = the demo) in the background; False if one is loading."""
        ok = self.loader.start(path, self.device, tuple(self.state.nav.up))
        if ok:
            self.state.ui.loading = self.loader.loading
        return ok

    def _dialogs_available(self) -> bool:
        if os.name == "posix" and not (shutil.which("zenity") or shutil.which("kdialog")):
            self.show_error("No file dialog",
                            "Neither zenity nor kdialog is installed, so the native file "
                            "dialog cannot open. Type the path in the panel instead (or drop "
                            "a model file on the window).")
            return False
        return self._file_dialog is None

    def open_file_dialog(self) -> None:
        """The native file dialog (portable-file-dialogs; zenity or kdialog on Linux). It
        runs as its own process; the loop polls it, so the window keeps drawing."""
        if not self._dialogs_available():
            return
        from imgui_bundle import portable_file_dialogs as pfd

        start = str(self.state.model.path.parent) if self.state.model.path else os.getcwd()
        self._file_dialog = ("model", pfd.open_file(
            "Open a Gaussian model", start,
            ["Gaussian models", "*.ply *.splat *.spz *.sog meta.json", "All files", "*"]))

    def choose_screenshot_folder(self) -> None:
        if not self._dialogs_available():
            return
        from imgui_bundle import portable_file_dialogs as pfd

        self._file_dialog = ("folder", pfd.select_folder("Screenshot folder",
                                                         self.state.shot.folder))

    def _poll_file_dialog(self) -> None:
        if self._file_dialog is None or not self._file_dialog[1].ready(0):
            return
        kind, dialog = self._file_dialog
        self._file_dialog = None
        result = dialog.result()
        if kind == "model" and result:
            self.open_model(result[0])
        elif kind == "folder" and result:
            self.state.shot.folder = result

    def _poll_backend_probe(self) -> None:
        """gsplat's kernels, built in a thread since the start, are ready (or not): move
        the model to the GPU and render there, or say why the CPU stays."""
        probe = self._backend_probe
        if probe is None or not probe.done():
            return
        self._backend_probe = None
        ok, why = gsplat_backend.available()
        self.backend_reason = why
        s = self.state
        if not ok:
            if self.backend == "cuda":
                self.show_error("The cuda backend is not available", f"{why}. Rendering on "
                                "the CPU.")
            return
        self.device = torch.device("cuda")
        self.backend_name = "cuda"
        # a new ModelState: the adaptation re-attaches to the set on the GPU
        s.model = dataclass_replace(s.model, gaussians=s.model.gaussians.to(self.device))
        self.adaptation.device = self.device
        self.proxy.moved(s.model.gaussians, s.model.path, self.device)
        self.worker.keep_on_device = self.presenter.interop_possible
        s.render.backend = self.backend
        s.ui.status = f"rendering on the GPU ({why})"

    def show_error(self, title: str, text: str) -> None:
        self.state.ui.error_title, self.state.ui.error_text = title, text

    def _poll_loader(self) -> None:
        res = self.loader.poll()
        if res is None:
            if self.loader.busy():
                self.state.ui.loading_phase = self.loader.phase
            return
        self.state.ui.loading = ""
        self.state.ui.loading_phase = ""
        if res.error:
            self.show_error(f"Could not open {Path(res.source).name}", res.error)
            return
        model = res.model
        s = self.state
        nav = dataclass_replace(s.nav)
        near = self._near
        try:  # what the view needs of the model, before it replaces the current one
            self._take_up(nav, model)
            nav.pose = nav.home = self._initial_pose(model, nav.up)
            nav.fly_speed = self._fly_speed(model)
        except Exception as exc:  # a model the view cannot frame: keep the current one
            log.exception("opening %s failed", res.source)
            self._near = near
            self.show_error(f"Could not open {Path(res.source).name}",
                            f"{type(exc).__name__}: {exc}")
            return
        s.model = model
        s.nav.__dict__.update(nav.__dict__)  # the same NavState object: others hold it
        s.nav.camera_index = -1
        s.compare.set_source_b(None)  # a plugged-in B belonged to the old model
        self.set_antialias(model.antialias)  # drawn as its file's tag asks; the panel overrides
        s.scale = None
        self._set_scale_fn(model, res.scale_fn)
        self.proxy.start(model.gaussians, model.path, self.device)
        if model.path is not None:
            s.ui.recent = push_recent(s.ui.recent, model.path)
            try:
                save_recent(s.ui.recent)
            except OSError as exc:
                log.warning("could not save the recent-files list: %s", exc)
        s.ui.status = f"opened {model.name}"
        self._update_title()

    # -- screenshots -----------------------------------------------------------------------------
    def screenshot(self, width: int | None = None, height: int | None = None,
                   folder: str | None = None) -> None:
        """Queue a PNG of the scene as shown (split included), re-rendered at full
        resolution at the window's size or at width x height; written when it is done."""
        from render.io.limits import needs_tiles
        from viewer.capture import screenshot_size_problem

        shot = self.state.shot
        if width is None and not shot.window_size:
            width, height = shot.width, shot.height
        # A large colour still is rendered in tiles and composed in 8-bit on the CPU.
        tiled = (width is not None and self.state.render.output == "rgb"
                 and needs_tiles(int(width), int(height)))
        if width is not None:
            problem = screenshot_size_problem(width, height, tiled=tiled)
            if problem:  # said in the panel; nothing is allocated, the viewer runs on
                shot.last_error = problem
                return
        if width is None:
            cam = self.view_camera()
        else:
            cam = self.view_camera(int(width), int(height))
        self._seq += 1
        req = self.build_request(cam, True, self._seq, cam,
                                 {"kind": "screenshot", "folder": folder or shot.folder,
                                  "tiled": tiled})
        self.worker.capture(req)
        shot.last_error = ""

    def _finish_captures(self) -> None:
        from viewer.capture import save_png, timestamped_path

        for frame in self.worker.take_captures():
            tag = frame.request.tag
            shot = self.state.shot
            if frame.error:
                shot.last_error = f"screenshot failed: {frame.error}"
                continue
            cam = frame.request.view_camera
            try:
                if tag.get("tiled"):  # 8-bit panes, possibly beyond GL's texture size
                    panes = frame.images
                    img = compose(panes[0], panes[1] if len(panes) > 1 else None,
                                  tag["mode"], tag["divider"])
                else:
                    img = self.presenter.render_offscreen(frame.images, tag["mode"],
                                                          tag["divider"], cam.width,
                                                          cam.height)
                path = save_png(timestamped_path(tag["folder"]), img,
                                self._metadata(frame))
            except Exception as exc:
                shot.last_error = f"screenshot failed: {type(exc).__name__}: {exc}"
                continue
            shot.last_path = str(path)
            self.captured.append((path, img))
            del self.captured[:-4]

    def _metadata(self, frame: Frame) -> dict[str, str]:
        from adapt.scale import scale_label

        req = frame.request
        s = self.state
        sources = [{"label": src.label, "options": src.options(req.options).__dict__}
                   for src in req.sources]
        meta = {
            "Software": "mipview",
            "mipview.model": s.model.name,
            "mipview.model_path": str(s.model.path) if s.model.path else "(built-in demo)",
            "mipview.camera": json.dumps(req.view_camera.to_dict()),
            "mipview.sources": json.dumps(sources, default=str),
            "mipview.mode": req.tag["mode"],
            "mipview.divider": f"{req.tag['divider']:.4f}",
            "mipview.backend": frame.backend,
        }
        if s.scale is not None and math.isfinite(s.scale):
            meta["mipview.scale"] = f"{s.scale:.6g}"
            meta["mipview.scale_label"] = scale_label(s.scale)
        return meta

    # -- the frame loop -------------------------------------------------------------------------
    def _apply_held_keys(self, dt: float) -> None:
        keys = self.held
        if not keys & FLY_KEYS or imgui.get_io().want_text_input or self._ctrl(0):
            return
        speed = self.state.nav.fly_speed * dt
        if keys & {glfw.KEY_LEFT_SHIFT, glfw.KEY_RIGHT_SHIFT}:
            speed *= 4.0
        fwd = (glfw.KEY_W in keys) - (glfw.KEY_S in keys)
        right = (glfw.KEY_D in keys) - (glfw.KEY_A in keys)
        rise = (glfw.KEY_E in keys) - (glfw.KEY_Q in keys)
        nav = self.state.nav
        nav.pose = C.fly(nav.pose, nav.up, fwd * speed, right * speed, rise * speed)

    def _view_key(self):
        s = self.state
        r = s.render
        scale = (round(math.log2(s.scale), 2) if r.antialias in ("adaptive", "blend") and s.scale
                 and s.scale > 0 and math.isfinite(s.scale) else None)
        custom = s.compare.custom_b
        return (s.nav.pose.key(), self.framebuffer_size, r.backend, r.sh_degree,
                tuple(r.background), r.antialias, r.output, r.resolution_scale,
                s.compare.mode if s.compare.mode != "single" else s.compare.shown,
                id(s.model.gaussians), None if custom is None else id(custom), scale)

    def _moving_scale(self, proxy: bool = False) -> float:
        """Render-size factor while the camera moves (CPU path only, else 1), from the
        last full-size frame of what is drawn (the full set, or the proxy)."""
        r = self.state.render
        if not r.adaptive_resolution or self.worker.keep_on_device:
            return 1.0
        backend = self._shown.backend if self._shown else ""
        ms = self.worker.full_ms.get(timing_key(backend, proxy), None)
        if ms is None or ms <= MOVING_TARGET_MS:
            return 1.0
        return max(MIN_MOVING_SCALE, math.sqrt(MOVING_TARGET_MS / ms))

    def _request_view(self, now: float) -> None:
        key = self._view_key()
        changed = key != self._last_key
        if changed:
            self._last_change = now
        still = now - self._last_change >= STILL_AFTER_S
        if not changed and (self._last_request_full or not still):
            return
        view = self.view_camera()
        # Moving on a large model: its navigation proxy, once built (adapt.proxy).
        proxy = None if still else self.proxy.get(self.state.model.gaussians)
        f = 1.0 if still else self._moving_scale(proxy is not None)
        full = f >= 1.0
        cam = view if full else view.scaled(f)
        self._seq += 1
        self.worker.request(self.build_request(cam, full, self._seq, view, proxy=proxy))
        self._last_view_seq = self._seq
        self._last_key = key
        self._last_request_full = full and proxy is None

    def _show_newest(self) -> bool:
        frame = self.worker.latest()
        s = self.state
        s.scale = self.worker.scale
        s.scale_error = self.worker.scale_error or self._scale_setup_error
        self._upload_ms = 0.0
        if frame is None or frame.request.seq == self._shown_seq:
            return False
        self._shown_seq = frame.request.seq
        st = s.stats
        if frame.error:
            st.render_error = frame.error
            return True
        t0 = time.perf_counter()
        self.presenter.set_frame(frame.images, frame.request.tag["mode"])
        self._upload_ms = (time.perf_counter() - t0) * 1e3
        self._shown = frame
        self._frame_t, self._heap_released = t0, False
        st.render_error = None
        st.render_ms = frame.render_ms
        st.n_drawn = frame.n_drawn
        st.backend = frame.backend
        st.frame_path, st.frame_path_reason = self.presenter.path
        if self.worker.keep_on_device and not self.presenter.interop_possible:
            self.worker.keep_on_device = False  # host copies on the render thread from now
        st.render_size = (frame.request.cameras[0].width, frame.request.cameras[0].height)
        st.full_res = frame.request.full_res
        st.drawn_set = "proxy" if frame.request.proxy else "full"
        st.frames_shown += 1
        return True

    @property
    def shown_frame(self) -> Frame | None:
        """The frame on screen now."""
        return self._shown

    def frame_is_current(self) -> bool:
        """Whether the frame on screen is the full-resolution render of the current view."""
        return (self._shown is not None and self._shown.request.full_res
                and not self._shown.request.proxy
                and self._last_key == self._view_key() and self._last_request_full
                and self._shown_seq == self._last_view_seq)

    def _idle_wait_s(self, now: float) -> float:
        """How long the loop may sleep with nothing to draw. IDLE_WAIT_S polls what has no
        wake-up of its own (a model loading, the adaptation worker's progress). While the
        render thread works, its take-ups and finished frames wake the loop: then it
        sleeps until the panels' next refresh (at most BUSY_WAIT_S), as a 20 ms poll
        added a UI step to every streamed frame."""
        if self.held & FLY_KEYS:  # moving: at the UI frame rate
            return 1.0 / UI_FPS_RENDERING
        if not self.worker.busy:
            return IDLE_WAIT_S
        due = self._last_panels_draw + STREAMING_REDRAW_S - now
        return min(max(due, 0.001), BUSY_WAIT_S)

    def _release_heap_when_idle(self, now: float) -> None:
        """Once no frame has come for RELEASE_AFTER_S, hand the free heap back to the OS:
        streaming frames keep reusing it (viewer/memory.py), an idle viewer need not."""
        if (not self._heap_released and now - self._frame_t >= RELEASE_AFTER_S
                and self.worker.idle()):
            release_free()
            self._heap_released = True

    def _draw_reason(self, new_frame: bool, now: float) -> int:
        """Why this UI frame must be drawn, if at all (DRAW_*). The loop draws on input,
        while keys are held, a path plays, an error shows or ImGui edits text (INPUT); at
        least every IDLE_REDRAW_S (STREAMING_REDRAW_S while the render thread works), so
        the stats and readouts stay live (PANELS); on a new rendered frame (FRAME);
        otherwise it sleeps until the next event, which leaves the CPU to the render
        thread."""
        if self._events != self._events_seen:
            self._events_seen = self._events
            self._draw_frames_left = 3  # ImGui needs a few frames to settle hover states
        if self._draw_frames_left > 0:
            self._draw_frames_left -= 1
            return DRAW_INPUT
        if self._animating():
            return DRAW_INPUT
        refresh = STREAMING_REDRAW_S if self.worker.busy else IDLE_REDRAW_S
        since = now - self._last_panels_draw
        if since >= refresh or (since >= READOUT_REDRAW_S and self._readout_stale()):
            return DRAW_PANELS
        return DRAW_FRAME if new_frame else DRAW_NONE

    def _readout_stale(self) -> bool:
        """Whether the zoom readout on screen is not the view's (e.g. while scrolling)."""
        return panels.zoom_readout(self.state) != self.state.ui.readout_shown

    def _animating(self) -> bool:
        """Whether ImGui must run on every UI frame whatever happens: a path playing, an
        error shown, ImGui editing text."""
        return bool(self.path_editor.playing or self.state.ui.error_text
                    or imgui.get_io().want_text_input)

    def _next_draw_at(self, new_frame: bool) -> float:
        """When the owed UI frame may be drawn: at once for a newly rendered frame (it
        counts once it is on screen), else paced from the start of the last draw."""
        if new_frame:
            return -math.inf
        fps = UI_FPS_IDLE if self.worker.idle() else UI_FPS_RENDERING
        return self._draw_start + 1.0 / fps

    def step(self, force_draw: bool = False) -> bool:
        """One UI frame: input, view requests, newest frame; then draw it, or, when nothing
        changed, wait for the next event instead. Returns whether it drew."""
        t0 = time.perf_counter()
        dt = min(t0 - self._last_t, 0.25)
        self._last_t = t0
        self._woken.clear()  # before the newest frame is looked at: no wake-up is lost
        glfw.poll_events()
        if glfw.window_should_close(self.window):
            self.should_close = True
        self._poll_backend_probe()
        self._apply_held_keys(dt)
        from viewer.path_panel import advance

        cam = advance(self.path_editor, dt)
        if cam is not None:
            self.show_camera(cam)
        self._poll_loader()
        self._poll_file_dialog()
        self.adaptation.update(self)  # before the view request: B swaps at this boundary
        self._request_view(t0)
        new_frame = self._show_newest()
        # The split divider is drawn by the present pass, not rendered: a moved divider
        # (dragged, or set by a script) needs a draw like a new frame does.
        if self.state.compare.divider != self._drawn_divider:
            new_frame = True
        self._finish_captures()
        self._draw_owed = max(self._draw_reason(new_frame, t0), self._draw_owed)
        if not force_draw:
            if not self._draw_owed:
                self._release_heap_when_idle(t0)
                self._wait(self._idle_wait_s(t0))
                return False
            early = self._next_draw_at(new_frame) - time.perf_counter()
            if early > 0:  # paced: the draw stays owed
                self._wait(min(early, IDLE_WAIT_S))
                return False
        reason = DRAW_INPUT if force_draw else self._draw_owed
        self._draw_owed = DRAW_NONE

        size = self.framebuffer_size
        t1 = self._draw_start = time.perf_counter()
        self._drawn_divider = self.state.compare.divider
        present_s, changed = self._draw_window(reason, size)
        t2 = time.perf_counter()
        self._after_draw()
        self._show_back_buffer(changed, size)
        self._update_stats(t0, present_s, (t2 - t1) - present_s)
        self.frame_count += 1
        if not force_draw and not self._draw_frames_left and not self._animating():
            # Nothing asks for the next UI frame yet: sleep here until an event (input,
            # the render thread's next frame) rather than in a step of its own, which
            # cost every streamed frame a second pass through the loop.
            self._wait(self._idle_wait_s(time.perf_counter()))
        return True

    def _show_back_buffer(self, changed: list[tuple[int, int, int, int]],
                          size: tuple[int, int]) -> None:
        """Put what a draw changed on screen: copied (SubBufferCopy), or a swap when there
        is no copy, when the window's size changed (Mesa's software GL takes the new size
        at the draw after a swap) or when the X server refused the copy."""
        copier = self.sub_buffer
        if copier is not None and size == self._swapped_size and copier.show(changed):
            return
        glfw.swap_buffers(self.window)
        self._swapped_size = size
        self._canvas_layer = None  # a swap leaves the back buffer undefined

    def _wake_up(self) -> None:
        """The render thread's events (a view taken up, a frame done): wake the loop.

        An empty glfw event only when the loop sleeps in glfw: it cost the render thread
        ~0.3 ms between two frames of a stream (X calls, against the UI thread's), and
        while frames stream the loop mostly waits on `_woken` instead. No wake-up is lost:
        this sets `_woken` before it reads `_in_event_wait`, and _wait sets that before it
        reads `_woken`."""
        self._woken.set()
        if self._in_event_wait:
            glfw.post_empty_event()

    def _wait(self, timeout_s: float) -> None:
        """Sleep for up to timeout_s, until input or the render thread's next event. While
        the render thread works, input gathers for one UI frame (1 / UI_FPS_RENDERING
        from the start of this step) before it may wake the loop: a mouse reports ~125
        moves a second, and a step for each held the GIL so often that a CPU frame of a
        640 x 480 drag took 33 ms against 21."""
        deadline = time.perf_counter() + timeout_s
        if self.worker.busy:
            gather = min(self._last_t + 1.0 / UI_FPS_RENDERING, deadline) - time.perf_counter()
            if self._woken.wait(max(gather, 0.0)):
                return
        rest = deadline - time.perf_counter()
        if rest <= 0:
            return
        self._in_event_wait = True
        try:
            if not self._woken.is_set():
                glfw.wait_events_timeout(rest)
        finally:
            self._in_event_wait = False

    def _draw_window(self, reason: int, size: tuple[int, int]
                     ) -> tuple[float, list[tuple[int, int, int, int]]]:
        """The frame and the panels into the back buffer: ImGui onto it (input), or the
        cached UI layer put over it, refreshed first when due (PANELS) or unusable.
        Returns the seconds the present pass took and the rectangles of the window it
        changed (x0, y0, x1, y1; GL pixels)."""
        # The layer's refresh comes first, as a software GL draws each target's queued
        # work in one go when the target changes.
        composite = reason != DRAW_INPUT
        if composite and (reason == DRAW_PANELS or not self.ui_layer.usable(size)):
            self._refresh_layer(size)
        # With SubBufferCopy the back buffer keeps what was drawn: a new frame under the
        # panels it already holds leaves their opaque part as it is.
        keep = (composite and self.sub_buffer is not None and self.presenter.has_frame
                and self._canvas_layer == self.ui_layer.generation)
        t0 = time.perf_counter()
        self.ctx.screen.use()
        self.ctx.screen.viewport = (0, 0, *size)
        if not self.presenter.has_frame:  # else the present pass covers every pixel
            bg = self.state.render.background
            self.ctx.clear(bg[0], bg[1], bg[2], 1.0)
        # What the layer's opaque windows cover needs no frame under it.
        hidden = self.ui_layer.opaque if composite else []
        self.presenter.draw((0, 0, *size), self.state.compare.divider, hidden=hidden)
        present_s = time.perf_counter() - t0
        if composite:
            self.ui_layer.composite(opaque=not keep)
            self._canvas_layer = self.ui_layer.generation
        else:
            self.ui_layer.valid = False  # input may change what the panels show
            self._canvas_layer = None
            self._imgui_frame()
        return present_s, self.ui_layer.uncovered if keep else [(0, 0, *size)]

    def _refresh_layer(self, size: tuple[int, int]) -> None:
        """Run ImGui into the cached UI layer."""
        self.ui_layer.begin(size)
        opaque = self._imgui_frame()
        self.ui_layer.set_regions(imgui_boxes(imgui.get_draw_data()), opaque)

    def _imgui_frame(self) -> list:
        """Run ImGui (input, every panel) and draw it into the bound framebuffer. Returns
        the boxes of the windows it drew opaque (panels.draw_all)."""
        imgui.backends.opengl3_new_frame()
        imgui.backends.glfw_new_frame()
        imgui.new_frame()
        opaque = panels.draw_all(self)
        imgui.render()
        imgui.backends.opengl3_render_draw_data(imgui.get_draw_data())
        self._last_panels_draw = time.perf_counter()
        return opaque

    def _after_draw(self) -> None:
        """Hook between drawing and the swap (the back buffer holds the finished frame)."""

    def show_camera(self, cam: Camera) -> None:
        """Make a camera (e.g. from the path editor) the current view."""
        nav = self.state.nav
        nav.pose = C.pose_from_camera(cam, nav.pose.distance)

    def _update_stats(self, t0: float, present_s: float, ui_s: float) -> None:
        st = self.state.stats
        now = time.perf_counter()
        st.frame_ms = (now - t0) * 1e3
        st.ui_ms = ui_s * 1e3
        st.display_ms = self._upload_ms + present_s * 1e3
        self._fps_n += 1
        if now - self._fps_t0 >= 0.5:
            st.fps = self._fps_n / (now - self._fps_t0)
            self._fps_t0, self._fps_n = now, 0
            st.memory = memory_text(self.device)
        st.backend_reason = self.backend_reason

    def read_window(self) -> np.ndarray:
        """The back buffer's pixels, UI included: the last drawn frame where it is put on
        screen by a copy (Mesa's X11 GL); after a swap it may hold an older frame, so a
        caller that needs the frame itself reads it in the draw hook (run_snapshot).
        [H, W, 3] uint8"""
        fw, fh = self.framebuffer_size
        return read_screen(self.ctx, fw, fh)

    def run(self, max_frames: int | None = None) -> int:
        """The loop, until the window closes (or max_frames UI frames)."""
        try:
            while not self.should_close and (max_frames is None or self.frame_count < max_frames):
                self.step()
        finally:
            self.close()
        return 0

    def run_snapshot(self, out: str | Path, timeout_s: float = 600.0) -> int:
        """Show the first full-resolution frame of the view, save the window's pixels
        (UI included) to `out` as PNG, exit 0. 1 if no full frame came within timeout_s."""
        from viewer.capture import save_png

        t_end = time.perf_counter() + timeout_s
        settled = 0
        grabbed: list[np.ndarray] = []
        self._after_draw = lambda: grabbed.append(self.read_window()) if settled >= 3 else None
        try:
            while time.perf_counter() < t_end and not self.should_close:
                self.step(force_draw=settled >= 3)
                if grabbed:
                    break
                ready = (self.frame_is_current() and not self.loader.busy()
                         and (self.state.scale is not None or self.worker._scale_fn is None
                              or self.state.scale_error))
                settled = settled + 1 if ready else 0
            if not grabbed:
                print(f"mipview: no full-resolution frame within {timeout_s:.0f} s",
                      flush=True)
                return 1
            meta = self._metadata(self._shown)
            meta["mipview.snapshot"] = "window pixels, UI included"
            path = save_png(out, grabbed[0], meta)
            print(f"mipview: snapshot saved to {path}", flush=True)
            return 0
        finally:
            self.close()

    def close(self) -> None:
        if self.window is None:
            return
        self.adaptation.shutdown()
        self._release_window()

    def _release_window(self) -> None:
        """Stop the render thread and free the GL objects, ImGui and the window."""
        self.worker.stop()
        for t in self.presenter.textures:
            t.release()
        self.ui_layer.release()
        imgui.backends.opengl3_shutdown()
        imgui.backends.glfw_shutdown()
        imgui.destroy_context()
        glfw.destroy_window(self.window)
        self.window = None
        glfw.poll_events()


def with_camera(app: ViewerApp, camera: Camera) -> None:
    """Start the view at a given camera (keeps its field of view; pose exact)."""
    app.state.nav.pose = app.state.nav.home = C.pose_from_camera(
        camera, app.state.nav.pose.distance)
