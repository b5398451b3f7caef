"""Milliseconds per finetune step of a zoom-out level of a large scene, split by stage.

The scene is benchmarks/big_scene.py's (NOT a trained capture: real Gaussians tiled;
default 1.2M, 1,167,616 Gaussians at SH degree 3). Its 1/4 level starts as the finetune
starts it: neighbours closer than half a target pixel merged (adapt.merge, ~270k
Gaussians). Each step renders one of the 24 virtual base views at 1/4 (200 x 200 pixels)
under the mip filter, takes the L2 loss against a fixed target, runs the backward pass
and one Adam step, as adapt.optimize does (no densification).

With malloc as `mipview` sets it (viewer.memory.tame_malloc) and torch's buffers on
huge pages (viewer/cli.py). Prints ONE JSON object: the median ms per step of each of
`--rounds` runs (a fresh Trainable each), and the split of the last by profiler op (ms
per step).

    python benchmarks/adapt_step.py [--size 1.2M] [--steps 20] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `mipview` does (viewer/cli.py)
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from benchmarks.big_scene import SIZES, build_scene  # noqa: E402


def level_start(base, level: int = -2):
    """The finetune's start of a zoom-out level: base merged as adapt.finetune does."""
    from adapt.finetune import FinetuneConfig
    from adapt.merge import merge_neighbours
    from adapt.scale import BaseSampling, virtual_base_cameras

    cams = virtual_base_cameras(base)
    rate = BaseSampling.from_cameras(base, cams).rate
    cfg = FinetuneConfig()
    radius = cfg.zoom_out_merge_px / (rate.float().clamp_min(1e-12) * 2.0**level)
    return merge_neighbours(base, radius, cfg.zoom_out_merge_passes), cams


def time_steps(start, cams, steps: int, profile: bool = False) -> tuple[float, dict]:
    """(median ms per step, {op: ms per step} when profiling)."""
    from adapt.params import Trainable
    from adapt.views import at_level
    from render.options import RenderOptions
    from render.rasterize import render

    views = [at_level(c, -2) for c in cams]
    target = torch.rand(views[0].height, views[0].width, 3,
                        generator=torch.Generator().manual_seed(0))
    t = Trainable(start)
    opts = RenderOptions(antialias="mip", backend="cpu")

    def step(k: int) -> None:
        res = render(t.gaussians(), views[k % len(views)], opts)
        loss = torch.mean((res.rgb - target) ** 2)
        t.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        t.optimizer.step()

    for k in range(3):  # kernels compiled, Adam's state allocated
        step(k)
    times = []
    for k in range(steps):
        t0 = time.perf_counter()
        step(k)
        times.append((time.perf_counter() - t0) * 1e3)
    split = {}
    if profile:
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as torch_profile

        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            for k in range(5):
                step(k)
        ops = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
        split = {e.key: round(e.self_cpu_time_total / 1e3 / 5, 1) for e in ops[:12]}
    return statistics.median(times), split


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="1.2M", choices=sorted(SIZES))
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    from viewer.memory import tame_malloc

    tame_malloc()
    base, _ = build_scene(SIZES[args.size])
    t0 = time.perf_counter()
    start, cams = level_start(base)
    merge_s = time.perf_counter() - t0
    del base
    runs: list[float] = []
    split: dict = {}
    for r in range(args.rounds):
        ms, split = time_steps(start, cams, args.steps, profile=r == args.rounds - 1)
        runs.append(round(ms, 1))
    print(json.dumps({
        "scene": args.size, "gaussians": len(start), "merge_s": round(merge_s, 1),
        "view": [cams[0].width // 4, cams[0].height // 4], "threads": torch.get_num_threads(),
        "step_ms": statistics.median(runs), "step_ms_runs": runs, "split_ms": split,
        "load_average_1min": round(os.getloadavg()[0], 2),
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
