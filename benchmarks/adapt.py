"""Mipmap-GS adaptation figures: seconds per level, PSNR on held-out views, Gaussians, and
the main thread's render rate while the worker adapts vs idle. Prints ONE JSON object.

    python benchmarks/adapt.py [--scenes demo,donut] [--levels 1/4,1/8,x2,x4]
        [--iters 1000] [--views 24] [--threads N] [--fps-seconds 10]

demo: the built-in chart with its base cameras. donut: the real Mip-Splatting donut
(../shared/data or $MIPVIEW_DATA), no cameras, so virtual base cameras at --base-size.
PSNR is against the ideal reference on held-out base views (never adapted on): zoom-out,
the base rendered 8x supersampled and area-downsampled; zoom-in, the upsampled base render.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from adapt.cache import LevelCache  # noqa: E402
from adapt.finetune import FinetuneConfig  # noqa: E402
from adapt.pseudo_gt import measure_level  # noqa: E402
from adapt.scale import level_label, parse_level, virtual_base_cameras  # noqa: E402
from adapt.upsample import BicubicUpsampler  # noqa: E402
from adapt.views import ViewSettings  # noqa: E402
from adapt.worker import AdaptSettings, AdaptWorker, adapt_level  # noqa: E402
from render import render  # noqa: E402


def load(scene: str, base_size: int):
    if scene == "demo":
        from render.demo import demo_scene

        d = demo_scene()
        return d.gaussians, list(d.base_cameras), d.camera
    from render.io import load_model

    data = Path(os.environ.get("MIPVIEW_DATA", REPO.parent / "shared" / "data"))
    g = load_model(data / "donut_mipsplat_sh0.ply").gaussians
    cams = virtual_base_cameras(g, base_size, base_size)
    return g, cams, cams[0]


def render_rate(g, cam, seconds: float) -> float:
    """Frames per second of render() in this (the main) thread over `seconds`."""
    render(g, cam)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        render(g, cam)
        n += 1
    return n / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--scenes", default="demo,donut")
    p.add_argument("--levels", default="1/4,1/8,x2,x4")
    p.add_argument("--iters", type=int, default=1000)
    p.add_argument("--views", type=int, default=24)
    p.add_argument("--base-size", type=int, default=512)
    p.add_argument("--threads", type=int, default=None, help="worker threads (half the cores)")
    p.add_argument("--fps-seconds", type=float, default=10.0)
    p.add_argument("--fps-scene", default="donut")
    p.add_argument("--no-fps", action="store_true", help="skip the render-rate measurement")
    p.add_argument("--merge-px", type=float, default=FinetuneConfig.zoom_out_merge_px,
                   help="zoom-out: merge Gaussians closer than this many target pixels (0 = off)")
    p.add_argument("--prune-weight", type=float, default=FinetuneConfig.zoom_out_prune_weight,
                   help="zoom-out: importance-prune this fraction of the blend weight (0 = off)")
    p.add_argument("--save-dir", help="also save each adapted level as <scene>_<level>.ply")
    args = p.parse_args()
    with contextlib.redirect_stdout(sys.stderr):
        from render.rasterize import auto_backend

        backend = auto_backend()[0]
    out = {"backend": backend, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
           "iters": args.iters, "views": args.views, "merge_px": args.merge_px,
           "prune_weight": args.prune_weight, "levels": {}}
    for scene in args.scenes.split(","):
        g, cams, _ = load(scene, args.base_size)
        out["levels"][scene] = {}
        for text in args.levels.split(","):
            level = parse_level(text)
            ft = FinetuneConfig(iters=args.iters, zoom_out_merge_px=args.merge_px,
                                zoom_out_prune_weight=args.prune_weight)
            settings = AdaptSettings(finetune=ft,
                                     views=ViewSettings(n_views=args.views),
                                     use_current_view=False)
            t0 = time.perf_counter()
            res = adapt_level(g, cams, level, settings, BicubicUpsampler())
            secs = time.perf_counter() - t0
            drawn = settings.finetune.render_options(level)
            if res.antialias is not None:  # kept as the base in its rival mode
                drawn = drawn.replace(antialias=res.antialias)
            scores = measure_level(g, res.gaussians, res.held_out, level, BicubicUpsampler(),
                                   settings.finetune.base_options(), settings.views,
                                   adapted_options=drawn)
            out["levels"][scene][level_label(level)] = {
                "seconds": round(secs, 1), "kept": res.antialias or "finetuned",
                "gaussians_before": len(g),
                "gaussians_after": len(res.gaussians), "views": res.n_views,
                "held_out": len(res.held_out),
                "psnr": {k: round(v, 2) for k, v in scores.items()}}
            if args.save_dir:
                from render.io import save_ply

                name = level_label(level).replace("/", "-")
                save_ply(res.gaussians, Path(args.save_dir) / f"{scene}_{name}.ply")
            print(f"{scene} {text}: {out['levels'][scene][level_label(level)]}",
                  file=sys.stderr, flush=True)
    if not args.no_fps:
        out["render_rate"] = measure_render_rate(args)
    print(json.dumps(out))


def measure_render_rate(args) -> dict:
    """Render rate of the main thread, idle vs while the worker adapts a level."""
    g, cams, cam = load(args.fps_scene, args.base_size)
    idle = render_rate(g, cam, args.fps_seconds)
    settings = AdaptSettings(finetune=FinetuneConfig(iters=100_000),
                             views=ViewSettings(n_views=4), use_current_view=False)
    worker = AdaptWorker(g, cams, LevelCache("bench", settings.key(), None), settings,
                         render_threads=args.threads)
    worker.request(-2)
    while worker.status().phase != "finetune":
        time.sleep(0.1)
    step0, t0 = worker.status().step, time.perf_counter()
    busy = render_rate(g, cam, args.fps_seconds)
    steps = worker.status().step - step0
    dt = time.perf_counter() - t0
    worker.shutdown()
    return {"scene": args.fps_scene, "size": [cam.width, cam.height],
            "idle_fps": round(idle, 2), "adapting_fps": round(busy, 2),
            "ratio": round(busy / idle, 3), "worker_threads": worker.render_threads,
            "worker_iters_per_s_while_rendering": round(steps / dt, 2)}


if __name__ == "__main__":
    main()
