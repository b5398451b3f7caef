"""Viewer frame rate against the bare rasterizer's, for the same views, in one run.

    python benchmarks/viewer.py [MODEL] [--size 640x480] [--views 60] [--backend auto]

Opens the real window (needs a display: run under `xvfb-run -s "-screen 0 1920x1200x24"`
when there is none), orbits through `--views` views around the model and measures:

- bare: `render.render()` of each view at the window's size, back to back (CUDA
  synchronised), on a thread of its own like the viewer's renders, as frames per
  second;
- viewer: the same views through the window: each view is posted to the render thread
  as soon as the previous one was taken up (as a continuous drag does), and a frame
  counts once it is on screen; frames per second from the first post to the last frame
  shown, with the UI frame rate and the per-frame split meanwhile.

They alternate, bare first and last (`--rounds` viewer runs); each viewer run is
compared with the mean of the bare runs on either side of it. Prints one JSON object;
ratio = viewer_fps / bare_fps of the median round (target >= 0.9).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# As `mipview` does (viewer/cli.py), before torch loads its OpenMP runtime: idle OpenMP
# threads sleep instead of spinning on the cores the rasterizer's threads need.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", nargs="?", help="model file; default: the demo scene")
    p.add_argument("--size", default="640x480")
    p.add_argument("--views", type=int, default=60)
    p.add_argument("--backend", default="auto")
    p.add_argument("--degrees", type=float, default=90.0, help="orbit span over the views")
    p.add_argument("--rounds", type=int, default=5, help="viewer runs, each between two bare")
    args = p.parse_args(argv)
    w, h = (int(v) for v in args.size.lower().split("x"))

    import torch

    from render.rasterize import render
    from viewer import controls as C
    from viewer.app import ViewerApp
    from viewer.models import demo_model, file_model

    model = file_model(args.model) if args.model else demo_model()
    app = ViewerApp(model, size=(w, h), backend=args.backend, vsync=False)
    try:
        app.state.render.adaptive_resolution = False  # full resolution throughout
        # This measures the window, UI and frame path: no Mipmap-GS finetuning in the
        # background competing for the CPU (it would run only if the zoom left its band).
        adaptation = getattr(app, "adaptation", None)
        if adaptation is not None:
            adaptation.auto = False
        nav = app.state.nav
        home = nav.pose
        step_px = math.radians(args.degrees) / args.views / 0.005
        poses = [C.orbit(home, nav.up, dx=i * step_px, dy=0.0) for i in range(args.views)]
        cuda = app.device.type == "cuda"
        sync = torch.cuda.synchronize if cuda else (lambda: None)

        # Warm up both paths (JIT compilation, allocator, textures).
        t_end = time.perf_counter() + 600
        while app.shown_frame is None or not app.frame_is_current():
            app.step()
            if time.perf_counter() > t_end:
                raise RuntimeError("no first frame within 10 minutes")
        # The Mipmap-GS worker's start-up (cache set-up, then ~1.7 s of CPU importing
        # torch's optimiser stack) is a one-off of opening a model, not a per-frame cost:
        # let it finish before timing (taking the imports here waits for its thread's).
        from adapt.worker import warm_up_imports

        while (adaptation is not None and adaptation.worker is None and not adaptation.error
               and time.perf_counter() < t_end):
            app.step()
        warm_up_imports()
        opts = app.ui_options()
        cams = []
        for pose in poses:
            nav.pose = pose
            cams.append(app.view_camera())
        nav.pose = home
        g = app.state.model.gaussians

        bare_cpu: list[float] = []  # process CPU seconds (all threads) per bare run
        bare_thread = ThreadPoolExecutor(1, thread_name_prefix="bare-render")

        def bare_seconds() -> float:
            """The same views through render() alone, back to back, on a thread of their
            own as the viewer's renders are: on the main thread a render measured 55-66
            ms against 35 ms on a thread (2 cores, shared; likely torch's OpenMP team of
            the main thread spin-waiting against the rasterizer's threads), which made
            the comparison flatter the viewer."""
            out: list[float] = []

            def run() -> None:
                with torch.no_grad():
                    t0, c0 = time.perf_counter(), time.process_time()
                    for cam in cams:
                        render(g, cam, opts)
                    sync()
                    bare_cpu.append(time.process_time() - c0)
                    out.append(time.perf_counter() - t0)

            bare_thread.submit(run).result()
            return out[0]

        # -- the viewer ------------------------------------------------------------------
        frame_ms: list[float] = []
        ui_ms: list[float] = []
        disp_ms: list[float] = []
        render_ms: list[float] = []

        def viewer_run() -> tuple[float, float, int]:
            """The views through the window: (seconds, process CPU seconds, views shown)."""
            shown_views: set[int] = set()
            seq_to_view: dict[int, int] = {}
            k = 0
            nav.pose = poses[0]
            t0, c0 = time.perf_counter(), time.process_time()
            app.step()
            seq_to_view[app._last_view_seq] = 0
            # Until the last view is on screen. A view whose frame was replaced by a newer
            # one before a UI frame showed it is not counted (nor waited for).
            while k + 1 < len(poses) or not app.frame_is_current():
                # The render thread took the last view up: post the next one now.
                if k + 1 < len(poses) and app.worker.started_seq >= app._last_view_seq:
                    k += 1
                    nav.pose = poses[k]
                a = time.perf_counter()
                app.step()
                frame_ms.append((time.perf_counter() - a) * 1e3)
                ui_ms.append(app.state.stats.ui_ms)
                disp_ms.append(app.state.stats.display_ms)
                seq_to_view.setdefault(app._last_view_seq, k)
                f = app.shown_frame
                if f is not None and f.request.seq in seq_to_view:
                    if seq_to_view[f.request.seq] not in shown_views:
                        render_ms.append(f.render_ms)
                    shown_views.add(seq_to_view[f.request.seq])
                if time.perf_counter() - t0 > 900:
                    break
            return time.perf_counter() - t0, time.process_time() - c0, len(shown_views)

        # -- rounds: bare, viewer, bare, viewer, ..., bare. A shared machine's speed drifts
        # by tens of percent within a minute, so each viewer run is compared with the mean
        # of the bare runs just before and after it, and the rounds' median is reported.
        bare_seconds()  # warm-up (the first renders on a thread pay its set-up)
        bare_cpu.clear()
        bare_runs = [bare_seconds()]
        viewer_runs = []
        for _ in range(args.rounds):
            viewer_runs.append(viewer_run())
            while not app.worker.idle():
                app.step()
            bare_runs.append(bare_seconds())
        n = len(poses)
        ratios, cpu_ratios = [], []
        for r, (v_s, v_cpu, shown) in enumerate(viewer_runs):
            bare_s = (bare_runs[r] + bare_runs[r + 1]) / 2
            bare_c = (bare_cpu[r] + bare_cpu[r + 1]) / 2
            # Views skipped on screen (the UI loop slower than the renders) do not count.
            ratios.append((shown / v_s) / (n / bare_s))
            cpu_ratios.append((bare_c / n) / (v_cpu / max(shown, 1)))
        mid = sorted(range(len(ratios)), key=ratios.__getitem__)[len(ratios) // 2]
        viewer_s, viewer_cpu, n_shown = viewer_runs[mid]
        bare_s = (bare_runs[mid] + bare_runs[mid + 1]) / 2
        bare_fps = n / bare_s
        viewer_fps = n_shown / viewer_s

        # -- UI responsiveness behind slow frames: drag-orbit for 3 s (every UI frame is
        # drawn, the render thread always has a view to render) and count drawn frames.
        import glfw

        cx, cy = w * 0.6, h * 0.5
        app.on_cursor_pos(None, cx, cy)
        app.on_mouse_button(None, glfw.MOUSE_BUTTON_LEFT, glfw.PRESS, 0)
        drawn, busy_drawn, t_ui = 0, 0, time.perf_counter()
        i = 0
        while time.perf_counter() - t_ui < 3.0:
            i += 1
            app.on_cursor_pos(None, cx + (i % 40), cy)
            busy = app.worker.busy
            if app.step():
                drawn += 1
                busy_drawn += busy
        ui_s = time.perf_counter() - t_ui
        app.on_mouse_button(None, glfw.MOUSE_BUTTON_LEFT, glfw.RELEASE, 0)
        bare_thread.shutdown()
        out = {
            "model": str(args.model or "demo"),
            "gaussians": len(g),
            "size": [w, h],
            "views": n,
            "backend": app.state.stats.backend,
            "frame_path": app.state.stats.frame_path,
            "bare_fps": round(bare_fps, 2),
            "bare_ms_per_frame": round(1e3 / bare_fps, 2),
            "bare_fps_runs": [round(n / b, 2) for b in bare_runs],
            "viewer_fps": round(viewer_fps, 2),
            "views_shown": n_shown,
            "ratio": round(viewer_fps / bare_fps, 3),
            "ratio_rounds": [round(r, 3) for r in ratios],
            # Load-independent view of the same question: CPU time of the whole process
            # (render thread, UI thread, the software GL's threads) per frame.
            "bare_cpu_ms_per_frame": round(1e3 * sum(bare_cpu) / len(bare_cpu) / n, 1),
            "viewer_cpu_ms_per_frame": round(1e3 * viewer_cpu / max(n_shown, 1), 1),
            "cpu_ratio": round(statistics.median(cpu_ratios), 3),
            # Time the render thread spent per frame (render + RGBA8 conversion): the
            # rest of the gap to bare_ms_per_frame is the UI thread's share of the CPU.
            "viewer_render_ms_median": round(statistics.median(render_ms), 2),
            "ui_loop_steps_per_s": round(len(frame_ms) / sum(v[0] for v in viewer_runs), 1),
            "ui_drawn_fps_while_dragging": round(drawn / ui_s, 1),
            "ui_drawn_frames_while_render_busy": busy_drawn,
            "ui_frame_ms_median": round(statistics.median(frame_ms), 2),
            "ui_frame_ms_max": round(max(frame_ms), 2),
            "imgui_ms_median": round(statistics.median(ui_ms), 2),
            "display_ms_median": round(statistics.median(disp_ms), 2),
            "gl_renderer": app.ctx.info.get("GL_RENDERER", "?"),
        }
    finally:
        app.close()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
