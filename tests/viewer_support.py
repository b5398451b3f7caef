"""Helpers for the tests that drive the real viewer window: a display (Xvfb when DISPLAY is
unset, or a skip that says why), a tiny scene, and loops that wait for frames."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import time

import numpy as np
import pytest
import torch

from render.camera import Camera
from render.gaussians import Gaussians

_xvfb: subprocess.Popen | None = None


def ensure_display() -> str:
    """DISPLAY of a running X server: the caller's, or an Xvfb started for this process.

    Skips the test (with the reason) when no server can be had.
    """
    global _xvfb
    if os.environ.get("DISPLAY"):
        return os.environ["DISPLAY"]
    exe = shutil.which("Xvfb")
    if exe is None:
        pytest.skip("no DISPLAY and no Xvfb (apt-get install xvfb) to open the viewer window")
    r, w = os.pipe()
    try:
        proc = subprocess.Popen([exe, "-displayfd", str(w), "-screen", "0", "1280x800x24",
                                 "-nolisten", "tcp"], pass_fds=(w,),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    finally:
        os.close(w)
    number = b""
    t_end = time.time() + 20
    while time.time() < t_end and not number.endswith(b"\n"):
        chunk = os.read(r, 16)
        if not chunk:
            break
        number += chunk
    os.close(r)
    if not number.strip().isdigit():
        proc.kill()
        pytest.skip("Xvfb did not start, so the viewer window cannot open")
    _xvfb = proc
    os.environ["DISPLAY"] = f":{number.decode().strip()}"
    import atexit

    atexit.register(proc.terminate)
    return os.environ["DISPLAY"]


def tiny_scene(n_side: int = 24, color=(0.2, 0.8, 0.3), seed: int = 0) -> Gaussians:
    """A small card of n_side^2 Gaussians in z = 0 with a colour ramp, plus a few in front
    of it (so orbiting shows parallax). About 600 Gaussians: fast on the CPU path."""
    g = torch.Generator().manual_seed(seed)
    xs = torch.linspace(-1.0, 1.0, n_side)
    gy, gx = torch.meshgrid(xs, xs, indexing="ij")
    means = torch.stack([gx.ravel(), gy.ravel() * 0.75, torch.zeros(n_side * n_side)], 1)
    ramp = (gx.ravel() + 1) / 2
    base = torch.tensor(color)
    colors = (base[None] * (0.4 + 0.6 * ramp[:, None])).clamp(0, 1)
    front = torch.rand(40, 3, generator=g) * torch.tensor([1.6, 1.2, 0.6]) - torch.tensor(
        [0.8, 0.6, 0.9])
    means = torch.cat([means, front])
    colors = torch.cat([colors, torch.ones(40, 3) * base])
    scales = torch.full((len(means), 3), 0.05)
    scales[:, 2] = 0.01
    return Gaussians.from_colors(means, colors, scales, torch.full((len(means),), 0.9))


def tiny_cameras() -> list[Camera]:
    """Base cameras looking at the tiny card from z = -3 (y down, OpenCV world)."""
    cams = []
    for k in range(4):
        a = 2 * math.pi * k / 4
        eye = (0.3 * math.cos(a), 0.3 * math.sin(a), -3.0)
        cams.append(Camera.look_at(eye, (0, 0, 0), fov_y_deg=40, width=320, height=240))
    return cams


def tiny_model(color=(0.2, 0.8, 0.3), name: str = "tiny card"):
    from viewer.state import ModelState

    g = tiny_scene(color=color)
    cams = tiny_cameras()
    return ModelState(gaussians=g, name=name, cameras=cams,
                      camera_names=[f"cam {i}" for i in range(len(cams))],
                      base_cameras=cams, up=(0.0, -1.0, 0.0), initial=cams[0],
                      sh_degree=0, info=["test scene"])


def make_app(model=None, size=(320, 240), backend: str = "cpu"):
    """A real viewer window on the tiny scene (panels hidden so the scene is visible)."""
    ensure_display()
    from viewer.app import ViewerApp

    try:
        app = ViewerApp(model or tiny_model(), size=size, backend=backend, vsync=False)
    except RuntimeError as exc:
        pytest.skip(f"the viewer window could not open: {exc}")
    app.state.ui.show_panels = False
    return app


def settle(app, timeout_s: float = 120.0, frames_after: int = 2) -> None:
    """Step the window until the full-resolution frame of the current view is on screen
    (and the zoom readout is computed), then a few more UI frames."""
    t_end = time.time() + timeout_s
    while time.time() < t_end:
        app.step()
        if app.frame_is_current() and app.worker.idle() and not app.loader.busy():
            break
    else:
        raise AssertionError("the viewer showed no full-resolution frame in time")
    for _ in range(frames_after):
        app.step(force_draw=True)


def window_pixels(app) -> np.ndarray:
    """The window as drawn now, UI included. [H, W, 3] uint8"""
    app.step(force_draw=True)
    return app.read_window()


def x11_window_pixels(app) -> np.ndarray:
    """What the X server shows in the window now (XGetImage), not the GL back buffer.
    [H, W, 3] uint8"""
    import ctypes

    import glfw

    class XImage(ctypes.Structure):  # the leading fields of Xlib's XImage
        _fields_ = [(name, ctypes.c_int) for name in ("width", "height", "xoffset", "format")]
        _fields_ += [("data", ctypes.c_void_p)]
        _fields_ += [(name, ctypes.c_int) for name in (
            "byte_order", "bitmap_unit", "bitmap_bit_order", "bitmap_pad", "depth",
            "bytes_per_line", "bits_per_pixel")]

    x11 = ctypes.CDLL("libX11.so.6")
    x11.XGetImage.restype = ctypes.POINTER(XImage)
    x11.XGetImage.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int, ctypes.c_int,
                              ctypes.c_uint, ctypes.c_uint, ctypes.c_ulong, ctypes.c_int]
    x11.XFree.argtypes = [ctypes.c_void_p]
    display = glfw.get_x11_display()
    w, h = app.framebuffer_size
    x11.XSync(ctypes.c_void_p(display), 0)  # the copies sent so far are done
    ptr = x11.XGetImage(display, glfw.get_x11_window(app.window), 0, 0, w, h,
                        0xFFFFFFFF, 2)  # all planes, ZPixmap
    image = ptr.contents
    try:
        assert image.bits_per_pixel == 32 and image.byte_order == 0, "expected 32-bit BGRX"
        raw = (ctypes.c_ubyte * (image.bytes_per_line * h)).from_address(image.data)
        rows = np.frombuffer(raw, np.uint8).reshape(h, image.bytes_per_line)
        return rows[:, :w * 4].reshape(h, w, 4)[..., 2::-1].copy()
    finally:
        x11.XFree(ctypes.c_void_p(image.data))
        x11.XFree(ctypes.cast(ptr, ctypes.c_void_p))


def drag(app, button: int, start: tuple[float, float], end: tuple[float, float],
         steps: int = 4) -> None:
    """A mouse drag through the glfw callbacks, with UI frames in between."""
    import glfw

    app.on_cursor_pos(None, *start)
    app.step()
    app.on_mouse_button(None, button, glfw.PRESS, 0)
    for i in range(1, steps + 1):
        t = i / steps
        app.on_cursor_pos(None, start[0] + (end[0] - start[0]) * t,
                          start[1] + (end[1] - start[1]) * t)
        app.step()
    app.on_mouse_button(None, button, glfw.RELEASE, 0)


def press(app, key: int, mods: int = 0) -> None:
    import glfw

    app.on_key(None, key, 0, glfw.PRESS, mods)
    app.step()
    app.on_key(None, key, 0, glfw.RELEASE, mods)
