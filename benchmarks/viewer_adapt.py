"""The viewer's frame rate while a Mipmap-GS level adapts in the background, against idle.

Opens the real window (under Xvfb when there is no display: it re-runs itself with
xvfb-run) on the demo chart, compare mode split (vanilla | Mipmap-GS), the camera
orbiting a little every UI frame so the render thread always has a new view to render.
The UI loop is paced at 60 Hz as vsync would (Xvfb has none). Windows of --seconds:

    idle -> adapting (the worker builds level --level with --iters iterations) -> idle

and then a short level is built to completion to time the UI frame at the swap.
Prints ONE JSON object: UI frames per second, rendered frames per second (full frames
reaching the screen), worst and 95th-percentile UI frame times, per window; the
ratios adapting / idle; the worker's iterations per second. Target (issue #4): UI >= 30
FPS and render rate >= half of idle while a level adapts on the CPU. The UI frames of
those windows wait for rendered ones (the loop sleeps while a frame renders and no input
comes): ui_panel_fps gives, idle, during the pseudo-GT and during the finetune, the UI
frames a second in which ImGui ran with the mouse over the side panel while the view
turns (benchmarks/viewer_big.panel_fps), the panels' frame rate on a large model.

    python benchmarks/viewer_adapt.py [--size 960x600] [--seconds 8] [--level 1/4]
    python benchmarks/viewer_adapt.py --model big.ply --iters 1000   # a large scene

Only the swap (about 20 s): the view held still at the level's scale, a --swap-iters
level built with 2 views, UI frame times before (by worker phase), at and after the
frame that plugs the new set in as B, and how many frames until it is on screen.

    python benchmarks/viewer_adapt.py --swap-only [--swap-iters 20]

With --shots DIR it instead takes the README screenshots with the real window (panels
hidden): zoom out to about 1/4, let auto-adapt build the level, save the split view
(divider through the Siemens star) as DIR/split_quarter.png; pan to the chart's text,
zoom in to about x4, same, DIR/split_x4.png. It prints one JSON object about them.

    python benchmarks/viewer_adapt.py --shots docs --size 640x400 [--iters 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", help="a model file instead of the demo chart (its proxy, "
                   "if it gets one, draws while the view turns)")
    p.add_argument("--size", default="960x600", help="window size WxH")
    p.add_argument("--seconds", type=float, default=8.0, help="length of each window")
    p.add_argument("--level", default="1/4", help="the level adapted during the test")
    p.add_argument("--iters", type=int, default=1000, help="iterations of that level")
    p.add_argument("--views", type=int, default=24, help="adaptation views")
    p.add_argument("--swap-iters", type=int, default=20,
                   help="iterations of the short level whose swap is timed (0: skip)")
    p.add_argument("--backend", default="cpu")
    p.add_argument("--fps", type=float, default=60.0, help="UI pacing (vsync stand-in)")
    p.add_argument("--shots", metavar="DIR", help="take the split-view screenshots instead")
    p.add_argument("--swap-only", action="store_true",
                   help="skip the idle / adapting windows, only time the swap")
    return p.parse_args()


def ensure_display() -> None:
    if os.environ.get("DISPLAY") or os.environ.get("MIPVIEW_BENCH_NO_XVFB"):
        return
    exe = shutil.which("xvfb-run")
    if exe is None:
        sys.exit("benchmarks/viewer_adapt.py: no DISPLAY and no xvfb-run")
    env = {**os.environ, "MIPVIEW_BENCH_NO_XVFB": "1"}
    args = [exe, "-a", "-s", "-screen 0 1400x900x24", sys.executable, *sys.argv]
    os.execve(exe, args, env)


class Meter:
    """Drives the window for a while and measures it."""

    def __init__(self, app, fps: float) -> None:
        self.app = app
        self.period = 1.0 / fps
        self.dtheta = 2.0  # pixels of orbit drag per UI frame

    def frame(self) -> float:
        """One paced UI frame with a small orbit; returns its duration in seconds."""
        from viewer import controls as C

        nav = self.app.state.nav
        nav.pose = C.orbit(nav.pose, nav.up, self.dtheta, 0.0)
        t0 = time.perf_counter()
        self.app.step()
        dt = time.perf_counter() - t0
        if dt < self.period:
            time.sleep(self.period - dt)
        return dt

    def settle(self) -> None:
        """Paced frames until the full-resolution frame of the view is on screen."""
        app = self.app
        t_end = time.time() + 300
        while time.time() < t_end:
            self.frame()
            if app.frame_is_current() and app.worker.idle() and app.state.scale:
                break
        for _ in range(3):
            self.frame()

    def zoom_until(self, cond, notch: float) -> None:
        """Dolly notch by notch (at the window's centre) until cond(scale) holds."""
        app = self.app
        w, h = app.window_size
        dtheta, self.dtheta = self.dtheta, 0.0
        self.settle()
        for _ in range(60):
            if cond(app.state.scale):
                break
            app.on_cursor_pos(None, w / 2, h / 2)
            app.on_scroll(None, 0, notch)
            self.settle()
        self.dtheta = dtheta

    def window(self, seconds: float, while_cond=None) -> dict:
        st = self.app.state.stats
        ctrl = self.app.adaptation
        shown0 = st.frames_shown
        step0 = ctrl.status.step
        times = []
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            if while_cond is not None and not while_cond():
                break
            times.append(self.frame())
        wall = time.perf_counter() - t0
        if not times:
            return {"seconds": 0.0, "worker_phase": ctrl.status.phase,
                    "worker_error": ctrl.status.error}
        times.sort()
        return {
            "seconds": round(wall, 2),
            "ui_fps": round(len(times) / wall, 1),
            "render_fps": round((st.frames_shown - shown0) / wall, 2),
            "ui_frame_ms_p95": round(1e3 * times[int(0.95 * (len(times) - 1))], 1),
            "ui_frame_ms_max": round(1e3 * times[-1], 1),
            "ui_frame_ms_median": round(1e3 * statistics.median(times), 1),
            "worker_phase": ctrl.status.phase,
            "worker_steps": ctrl.status.step - step0 if ctrl.status.phase == "finetune" else 0,
        }


def take_screenshots(args: argparse.Namespace) -> int:
    """The README screenshots (see the module docstring)."""
    import glfw
    from PIL import Image

    from viewer.adaptation import AdaptOptions, level_rows
    from viewer.app import ViewerApp
    from viewer.models import demo_model

    w, h = (int(v) for v in args.size.lower().split("x"))
    out_dir = Path(args.shots)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="mipview_shots_"))
    os.environ["MIPVIEW_CONFIG_DIR"] = str(tmp / "config")
    app = ViewerApp(demo_model(), size=(w, h), backend=args.backend, vsync=False)
    ctrl = app.adaptation
    ctrl.cache_root = tmp / "levels"
    ctrl.options = AdaptOptions(iters=args.iters, views=args.views)
    app.state.compare.mode = "split"
    app.state.ui.show_panels = False
    m = Meter(app, 30.0)
    m.dtheta = 0.0
    report = {"benchmark": "viewer_adapt screenshots", "window": f"{w}x{h}",
              "iters": args.iters, "views": args.views, "shots": []}

    settle, zoom_until = m.settle, m.zoom_until

    def wait_level(level: int) -> float:
        t0 = time.time()
        while not (ctrl.level_in_use == level and app.frame_is_current()):
            m.frame()
            if ctrl.status.phase == "error":
                raise SystemExit(f"adapting failed: {ctrl.status.error}")
            if time.time() - t0 > 3600:
                raise SystemExit("no level within an hour")
        settle()
        return time.time() - t0

    def shot(name: str, seconds: float) -> None:
        img = app.read_window()
        path = out_dir / name
        Image.fromarray(img).save(path, optimize=True)
        report["shots"].append({
            "file": str(path), "bytes": path.stat().st_size,
            "labels": app.shown_frame.request.tag["labels"],
            "scale": round(app.state.scale, 3), "divider": round(app.state.compare.divider, 3),
            "seconds_to_level": round(seconds, 1),
            "levels": [list(r[1:]) for r in level_rows(ctrl)]})

    try:
        if not ctrl.wait_ready(app, 120):
            raise SystemExit(f"adaptation did not start: {ctrl.error}")
        zoom_until(lambda s: s <= 0.27, -1)
        secs = wait_level(-2)
        chart_w = 560 * app.state.scale  # the demo chart is 560 base pixels wide
        app.state.compare.divider = (w / 2 + 0.31 * chart_w) / w  # through the star
        m.frame()
        shot("split_quarter.png", secs)
        app.state.compare.divider = 0.5
        app.reset_view()
        settle()
        # Drag the chart's text line (about 0.23 chart widths left of and 0.29 chart
        # heights below the centre) to the middle of the window.
        s0 = app.state.scale
        x0, y0 = w / 2 - 0.23 * 560 * s0, h / 2 + 0.29 * 420 * s0
        app.on_cursor_pos(None, x0, y0)
        m.frame()
        app.on_mouse_button(None, glfw.MOUSE_BUTTON_RIGHT, glfw.PRESS, 0)
        for i in range(1, 9):
            app.on_cursor_pos(None, x0 + (w / 2 - x0) * i / 8, y0 + (h / 2 - y0) * i / 8)
            m.frame()
        app.on_mouse_button(None, glfw.MOUSE_BUTTON_RIGHT, glfw.RELEASE, 0)
        zoom_until(lambda s: s >= 3.8, 1)
        secs = wait_level(2)
        shot("split_x4.png", secs)
    finally:
        app.close()
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(report, indent=1))
    return 0


def time_swap(args: argparse.Namespace, app, m: Meter, level: int) -> dict | None:
    """Build a short level with the view held still (as a user waiting for it), then
    time the UI frames around the moment B switches to it.

    The level is pinned first (as "Build level now" + picking it in the panel does):
    with auto-adapt off the controller shows the pinned level, and before this it was
    pinned to the level in use when auto-adapt went off (the base), so B never switched
    and the loop below waited its full 900 s (the earlier hang).
    """
    from viewer.adaptation import AdaptOptions

    ctrl = app.adaptation
    note(f"building a short level ({args.swap_iters} iterations) to time the swap")
    ctrl.options = AdaptOptions(iters=args.swap_iters, views=2)
    ctrl.apply_settings()
    if not ctrl.wait_ready(app, 120):
        raise SystemExit(f"the worker did not restart: {ctrl.error}")
    ctrl.use_level(level)
    ctrl.build(level, app.view_camera())
    dtheta, m.dtheta = m.dtheta, 0.0
    frames: list[tuple[float, float, int, str]] = []  # (UI frame s, render_ms, shown, phase)
    st = app.state.stats
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < 300 and ctrl.level_in_use != level:
        frames.append((m.frame(), st.render_ms, st.frames_shown, ctrl.status.phase))
        if ctrl.status.phase in ("error", "cancelled"):
            raise SystemExit(f"the short level failed: {ctrl.status}")
    if ctrl.level_in_use != level:
        note("the level was not swapped in within 300 s")
        return None
    secs = time.perf_counter() - t0
    swap = frames[-1][0]  # the frame whose update() plugged the new set in as B
    shown0 = st.frames_shown
    # With the view held still, the swap makes B stale: the render thread renders the
    # new set and the UI shows it; then the orbit resumes for a steady state.
    after = []
    while len(after) < 240 and (st.frames_shown == shown0 or len(after) < 60):
        after.append((m.frame(), st.render_ms, st.frames_shown))
    first_shown = next((i for i, f in enumerate(after) if f[2] > shown0), None)
    m.dtheta = dtheta
    steady = [m.frame() for _ in range(60)]
    before = [f[0] for f in frames[-61:-1]]
    worst = max(range(len(frames) - 1), key=lambda i: frames[i][0]) if len(frames) > 1 else None
    phases: dict[str, list[float]] = {}
    for f in frames[:-1]:
        phases.setdefault(f[3], []).append(f[0])
    ms = lambda v: round(1e3 * v, 1)  # noqa: E731
    return {
        "seconds_to_level": round(secs, 1),
        "ui_frame_ms_median_60_before": ms(statistics.median(before)) if before else None,
        "ui_frame_ms_max_60_before": ms(max(before)) if before else None,
        "ui_frame_ms_swap_frame": ms(swap),
        "ui_frame_ms_worst_while_building": ms(frames[worst][0]) if worst is not None else None,
        "worst_frame_phase": frames[worst][3] if worst is not None else None,
        "worst_frame_frames_before_swap": len(frames) - 1 - worst if worst is not None else None,
        "ui_frame_ms_max_by_phase": {k: ms(max(v)) for k, v in phases.items()},
        "ui_frame_ms_median_by_phase": {k: ms(statistics.median(v)) for k, v in phases.items()},
        "ui_frame_ms_after": [ms(f[0]) for f in after[:10]],
        "ui_frame_ms_max_60_after": ms(max(f[0] for f in after[:60])),
        "ui_frame_ms_median_60_after": ms(statistics.median(f[0] for f in after[:60])),
        "ui_frames_until_new_set_on_screen": first_shown,
        "render_ms_first_frame_of_new_set": after[first_shown][1]
        if first_shown is not None else None,
        "ui_frame_ms_median_orbiting_after": ms(statistics.median(steady)),
        "ui_frame_ms_max_orbiting_after": ms(max(steady)),
        "b_label": app.shown_frame.request.tag["labels"][1],
        "gaussians_base": len(app.state.model.gaussians),
        "gaussians_level": ctrl.levels[level].gaussians if level in ctrl.levels else None,
    }


def note(text: str) -> None:
    """Progress on stderr (stdout carries the JSON)."""
    print(f"[viewer_adapt {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def main() -> int:
    args = parse_args()
    ensure_display()
    if args.shots:
        return take_screenshots(args)
    from adapt.scale import level_label, parse_level
    from benchmarks.viewer_big import panel_fps
    from viewer.adaptation import AdaptOptions
    from viewer.app import ViewerApp
    from viewer.models import demo_model, file_model

    w, h = (int(v) for v in args.size.lower().split("x"))
    level = parse_level(args.level)
    tmp = Path(tempfile.mkdtemp(prefix="mipview_bench_"))
    os.environ["MIPVIEW_CONFIG_DIR"] = str(tmp / "config")
    model = file_model(args.model) if args.model else demo_model()
    app = ViewerApp(model, size=(w, h), backend=args.backend, vsync=False)
    try:
        ctrl = app.adaptation
        ctrl.cache_root = tmp / "levels"
        ctrl.options = AdaptOptions(iters=args.iters, views=args.views)
        ctrl.set_auto(False)  # the benchmark decides when a level is built
        app.state.compare.mode = "split"
        app.state.render.adaptive_resolution = False  # full frames only: a fair rate
        if not ctrl.wait_ready(app, 120):
            sys.exit(f"adaptation did not start: {ctrl.error}")
        m = Meter(app, args.fps)
        # The user has zoomed out to the level being built (its jittered copies of the
        # view are adaptation views at the level's scale).
        m.zoom_until(lambda s: s <= 2.0 ** (level + 0.25), -1)
        m.zoom_until(lambda s: s >= 2.0 ** (level - 0.25), 1)
        scale = app.state.scale
        note(f"view at x{scale:.3f}; measuring idle")
        m.window(3.0)  # warm up: kernels compiled, first frames shown
        if args.swap_only:
            swap = time_swap(args, app, m, level)
            print(json.dumps({"benchmark": "viewer_adapt swap", "window": f"{w}x{h}",
                              "view_scale": round(scale, 3), "level": level_label(level),
                              "load_avg_1min": round(os.getloadavg()[0], 2),
                              "swap": swap}, indent=1))
            return 0
        idle1 = m.window(args.seconds)
        panels = {"idle": panel_fps(app, 3.0)}

        note(f"building level {level_label(level)}: pseudo-GT")
        ctrl.build(level, app.view_camera())
        panels["pseudo_gt"] = panel_fps(app, 3.0)
        pseudo = m.window(900.0, lambda: ctrl.status.phase in ("idle", "pseudo-gt")
                          or (ctrl.status.phase == "finetune" and ctrl.status.step < 2))
        # Skip the first finetune steps (optimizer set-up, imports) and measure the steady
        # state of the heavy phase.
        note("measuring while the finetune runs")
        adapting = m.window(args.seconds, lambda: ctrl.status.phase == "finetune")
        panels["finetune"] = panel_fps(app, 3.0)
        adapt_phase_ok = ctrl.status.phase == "finetune"
        if not adapt_phase_ok or not adapting["seconds"]:
            raise SystemExit(f"the level did not reach its finetune: {ctrl.status}")
        its = adapting["worker_steps"] / adapting["seconds"]
        ctrl.cancel()
        m.window(120.0, lambda: ctrl.busy())
        idle2 = m.window(args.seconds)

        swap = time_swap(args, app, m, level) if args.swap_iters > 0 else None

        idle_ui = (idle1["ui_fps"] + idle2["ui_fps"]) / 2
        idle_render = (idle1["render_fps"] + idle2["render_fps"]) / 2
        out = {
            "benchmark": "viewer_adapt",
            "scene": args.model or "demo chart", "gaussians": len(model.gaussians),
            "window": f"{w}x{h}", "compare": "split", "backend": app.state.stats.backend,
            "cpu_count": os.cpu_count(),
            "load_avg_1min": round(os.getloadavg()[0], 2),
            "worker_threads": ctrl.worker.render_threads if ctrl.worker else None,
            "view_scale": round(scale, 3),
            "level": level_label(level), "iters": args.iters, "views": args.views,
            "ui_pacing_fps": args.fps,
            "idle_before": idle1, "pseudo_gt_phase": pseudo, "adapting": adapting,
            "idle_after": idle2,
            "adapting_measured_in_finetune": adapt_phase_ok,
            "worker_iters_per_s": round(its, 2),
            "projected_level_seconds": round(args.iters / its, 0) if its > 0 else None,
            "seconds_to_first_finetune_step": round(pseudo["seconds"], 1),
            "ui_fps_adapting": adapting["ui_fps"],
            "ui_panel_fps": panels,
            "render_fps_ratio_adapting_over_idle": round(adapting["render_fps"] / idle_render, 3)
            if idle_render else None,
            "ui_fps_ratio_adapting_over_idle": round(adapting["ui_fps"] / idle_ui, 3),
            "target_met": bool(adapting["ui_fps"] >= 30
                               and adapting["render_fps"] >= 0.5 * idle_render),
            "swap": swap,
        }
        print(json.dumps(out, indent=1))
        return 0
    finally:
        app.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
