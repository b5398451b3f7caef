"""`benchmarks/viewer.py --big N`: dragging on a scene of N Gaussians, proxy against full.

The scene is NOT a trained scene: the real 45,624-Gaussian donut (../shared/data) tiled
on a grid, each copy turned about the vertical, padded to SH degree 3 with small
deterministic higher-order coefficients (so the per-Gaussian SH work is that of a real
SH-3 capture). It is this benchmark's own small builder (benchmarks/big_scene.py, issue
19's part 1, builds the shared big scenes).

Measures, in one run on the CPU path:
- proxy: the seconds to build the navigation proxy (adapt.proxy) and its size, and how
  it looks against the full set at two views (PSNR, 640 x 480): the voxel moment merge
  and, at the same count, the importance subset (largest footprint mass) it was chosen
  over;
- drag: `--seconds` of a left-button orbit drag through the window's input callbacks
  (the cursor moves every UI frame, as a hand does), with the side panels shown: frames
  shown per second (new rendered frames on screen), which set they drew; then, the
  mouse over the side panel while the view keeps turning, the UI frames per second in
  which ImGui ran; then the full set's still frame time;
- with --shot PATH: the window mid-drag (the proxy) as a PNG, to look at.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import numpy as np
import torch

DATA = Path(os.environ.get("MIPVIEW_DATA", Path(__file__).resolve().parents[2] / "shared"
                           / "data"))


def tiled_donuts(n: int, degree: int = 3, spacing: float = 0.3):
    """n Gaussians: the real donut tiled on a grid in the x-z plane (see module doc)."""
    from render.gaussians import Gaussians
    from render.io import load_model

    d = load_model(DATA / "donut_mipsplat_sh0.ply").gaussians
    m, k = len(d), (degree + 1) ** 2
    copies = math.ceil(n / m)
    side = math.ceil(math.sqrt(copies))
    out = Gaussians(torch.empty(n, 3), torch.empty(n, 4), torch.empty(n, 3), torch.empty(n),
                    torch.zeros(n, k, 3))
    centred = d.means - d.means.mean(0)
    for t in range(copies):
        s, e = t * m, min(n, (t + 1) * m)
        a = 2.0 * math.pi * ((t * 0.618) % 1.0)  # the turn of this copy about y
        ca, sa = math.cos(a), math.sin(a)
        rot = torch.tensor([[ca, 0.0, sa], [0.0, 1.0, 0.0], [-sa, 0.0, ca]])
        off = torch.tensor([(t % side - side / 2) * spacing, 0.0,
                            (t // side - side / 2) * spacing])
        out.means[s:e] = (centred @ rot.T + off)[: e - s]
        # the same turn as a quaternion (w, 0, sin, 0) times each rotation q
        w1, y1 = math.cos(a / 2), math.sin(a / 2)
        q = d.quats[: e - s]
        out.quats[s:e] = torch.stack([w1 * q[:, 0] - y1 * q[:, 2], w1 * q[:, 1] + y1 * q[:, 3],
                                      w1 * q[:, 2] + y1 * q[:, 0],
                                      w1 * q[:, 3] - y1 * q[:, 1]], 1)
        out.log_scales[s:e] = d.log_scales[: e - s]
        out.opacity_logits[s:e] = d.opacity_logits[: e - s]
        out.sh[s:e, 0] = d.sh[: e - s, 0]
    gen = torch.Generator().manual_seed(0)
    for s in range(0, n, 1 << 20):  # small view-dependent colour, in chunks
        e = min(n, s + (1 << 20))
        out.sh[s:e, 1:] = torch.randn(e - s, k - 1, 3, generator=gen) * 0.03
    return out


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a - b) ** 2))
    return round(10 * math.log10(1.0 / max(mse, 1e-12)), 2)


def proxy_figures(g, proxy) -> dict:
    """PSNR of the proxy and of the importance subset of the same size against the full
    set, at an overview and a close view (640 x 480)."""
    from adapt.proxy import importance_subset
    from render.camera import Camera
    from render.options import RenderOptions
    from render.rasterize import render

    subset = importance_subset(g, len(proxy))
    lo, hi = g.bounds(quantile=0.01)
    c = ((lo + hi) / 2).tolist()
    ext = float((hi - lo).max())
    cams = {"overview": Camera.look_at((c[0], c[1] - ext * 0.5, c[2] - ext * 0.8), c,
                                       fov_y_deg=50, width=640, height=480),
            "close": Camera.look_at((c[0] + 0.1, c[1] - 0.35, c[2] - 0.2),
                                    (c[0], c[1], c[2] + 0.3), fov_y_deg=60,
                                    width=640, height=480)}
    out = {}
    with torch.no_grad():
        for name, cam in cams.items():
            full = render(g, cam, RenderOptions()).rgb.clamp(0, 1).numpy()
            out[name] = {
                "proxy_psnr": _psnr(render(proxy, cam, RenderOptions()).rgb.clamp(0, 1)
                                    .numpy(), full),
                "importance_subset_psnr": _psnr(render(subset, cam, RenderOptions()).rgb
                                                .clamp(0, 1).numpy(), full)}
    return out


def panel_fps(app, seconds: float) -> float:
    """UI frames a second in which ImGui ran, with the mouse over the side panel while the
    view turns at every UI step (as benchmarks/viewer.py measures it): the render thread
    always has a moving view, so the proxy, to draw."""
    from viewer import controls as C

    nav = app.state.nav
    _, h = app.framebuffer_size
    frames, i, last = 0, 0, app._last_panels_draw
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        i += 1
        app.on_cursor_pos(None, 100.0 + i % 40, h * 0.5)
        nav.pose = C.orbit(nav.pose, nav.up, 2.0, 0.0)
        app.step()
        if app._last_panels_draw != last:
            last = app._last_panels_draw
            frames += 1
    return round(frames / (time.perf_counter() - t0), 1)


def run_big(n: int, size: tuple[int, int], seconds: float, shot: str | None) -> dict:
    import glfw

    from viewer.app import ViewerApp
    from viewer.panels import PANEL_WIDTH
    from viewer.state import ModelState

    t0 = time.perf_counter()
    g = tiled_donuts(n)
    out: dict = {"gaussians": n, "scene_s": round(time.perf_counter() - t0, 1),
                 "size": list(size)}
    lo, hi = g.bounds(quantile=0.01)
    c = ((lo + hi) / 2).tolist()
    ext = float((hi - lo).max())
    from render.camera import Camera

    cam = Camera.look_at((c[0], c[1] - ext * 0.4, c[2] - ext * 0.7), c, fov_y_deg=50,
                         width=size[0], height=size[1])
    model = ModelState(gaussians=g, name=f"{n:,} tiled donuts", cameras=[cam],
                       camera_names=["overview"], base_cameras=[cam], up=(0.0, -1.0, 0.0),
                       initial=cam, sh_degree=3, info=["benchmark scene"])
    app = ViewerApp(model, size=size, backend="cpu", vsync=False)
    try:
        adaptation = getattr(app, "adaptation", None)
        if adaptation is not None:
            adaptation.auto = False  # no Mipmap-GS finetuning competing for the CPU
        # the window builds the proxy in its background thread, as for a user's model
        app.proxy.wait(900)
        proxy = app.proxy.get(app.state.model.gaussians)
        if proxy is None:
            raise RuntimeError(f"no navigation proxy: {app.proxy.status}")
        out["proxy"] = {"gaussians": len(proxy), "build_s": round(app.proxy.status.seconds, 1),
                        "looks": proxy_figures(g, proxy)}
        t_end = time.perf_counter() + 900
        while not app.frame_is_current():
            app.step()
            if time.perf_counter() > t_end:
                raise RuntimeError("no first frame in 15 minutes")
        out["still_full_render_ms"] = round(app.state.stats.render_ms, 1)
        w, h = app.framebuffer_size
        x, y = max(w * 0.55, PANEL_WIDTH + 40.0), h * 0.5
        app.on_cursor_pos(None, x, y)
        app.step(force_draw=True)
        app.on_mouse_button(None, glfw.MOUSE_BUTTON_LEFT, glfw.PRESS, 0)
        for _ in range(3):  # warm: the first proxy frames (compile, timing of the proxy)
            x += 2.0
            app.on_cursor_pos(None, x, y)
            app.step()
        t_warm = time.perf_counter() + 60
        while time.perf_counter() < t_warm and (app.shown_frame is None
                                                or not app.shown_frame.request.proxy):
            x += 2.0
            app.on_cursor_pos(None, x, y)
            app.step()
        seqs, sets, render_ms = set(), [], []
        t0 = time.perf_counter()
        saved = False
        while time.perf_counter() - t0 < seconds:
            x += 2.0  # 0.01 rad a UI frame
            app.on_cursor_pos(None, x, y)
            app.step()
            f = app.shown_frame
            if f is not None and f.request.seq not in seqs:
                seqs.add(f.request.seq)
                sets.append("proxy" if f.request.proxy else "full")
                render_ms.append(f.render_ms)
                if shot and not saved and f.request.proxy and len(seqs) > 5:
                    from PIL import Image

                    Image.fromarray(app.read_window()).save(shot)
                    saved = True
        dt = time.perf_counter() - t0
        app.on_mouse_button(None, glfw.MOUSE_BUTTON_LEFT, glfw.RELEASE, 0)
        out["drag"] = {
            "seconds": round(dt, 2), "frames_shown_per_s": round(len(seqs) / dt, 1),
            "frames_proxy": sets.count("proxy"), "frames_full": sets.count("full"),
            "render_ms_median": round(float(np.median(render_ms)), 1) if render_ms else None,
            "render_size_last": list(app.state.stats.render_size)}
        out["ui_panel_fps_while_moving"] = panel_fps(app, 3.0)
        t0 = time.perf_counter()
        while not app.frame_is_current() and time.perf_counter() - t0 < 120:
            app.step()
        out["still_after_drag"] = {"drawn_set": app.state.stats.drawn_set,
                                   "render_ms": round(app.state.stats.render_ms, 1),
                                   "seconds_to_full": round(time.perf_counter() - t0, 2)}
        if shot:
            out["shot"] = shot
    finally:
        app.close()
    return out
