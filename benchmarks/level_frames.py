"""Display-frame time of a zoom-out level against its base: a level in use has fewer
Gaussians (the merge of adapt/merge.py), so it should draw faster than the base it came
from. Prints one JSON object.

Both sets are drawn as the viewer draws them (RenderOptions(bgra8=True), no gradient, each
in its tagged mode: the level with the mip filter) from one camera outside the model with
all of it in view, at the same size. Frames alternate base, level, base, ... and the
medians are taken, so the ratio holds on a shared machine.

    python benchmarks/level_frames.py BASE.ply LEVEL.ply [--size 1280x720] [--repeats 5]

For the 1.2 M scene of benchmarks/big_scene.py:

    mipview adapt big12.ply --level 1/4 --out l4.ply
    python benchmarks/level_frames.py big12.ply l4.ply
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(REPO)  # benchmarks/render.py must not shadow the render package


def outside_camera(g, width: int, height: int):
    """A camera 45 degrees above the model's bounding box, everything in view (z up)."""
    import numpy as np

    from render import Camera

    lo, hi = (t.numpy() for t in g.bounds(0.001))
    centre = 0.5 * (lo + hi)
    size = float(np.linalg.norm(hi - lo))
    eye = centre + 1.1 * size * np.array([0.0, -1.0, 1.0]) / math.sqrt(2.0)
    return Camera.look_at(eye, centre, up=(0.0, 0.0, 1.0), fov_y_deg=50.0, width=width,
                          height=height)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("base")
    p.add_argument("level")
    p.add_argument("--size", default="1280x720")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))

    import torch

    from render import RenderOptions, render
    from render.io import load_model

    base, level = load_model(args.base), load_model(args.level)
    cam = outside_camera(base.gaussians, width, height)
    sets = {"base": (base.gaussians, RenderOptions(antialias=base.antialias, bgra8=True)),
            "level": (level.gaussians, RenderOptions(antialias=level.antialias, bgra8=True))}
    ms: dict[str, list[float]] = {k: [] for k in sets}
    with torch.no_grad():
        for g, o in sets.values():  # warm-up: kernels compiled, buffers allocated
            render(g, cam, o)
        for _ in range(args.repeats):
            for k, (g, o) in sets.items():
                t0 = time.perf_counter()
                render(g, cam, o)
                ms[k].append((time.perf_counter() - t0) * 1e3)
    med = {k: statistics.median(v) for k, v in ms.items()}
    print(json.dumps({
        "size": [width, height], "repeats": args.repeats,
        "gaussians": {"base": len(base.gaussians), "level": len(level.gaussians)},
        "antialias": {k: o.antialias for k, (_, o) in sets.items()},
        "ms": {k: round(v, 1) for k, v in med.items()},
        "level_over_base": round(med["level"] / med["base"], 3),
    }))


if __name__ == "__main__":
    main()
