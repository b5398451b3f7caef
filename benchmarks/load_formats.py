"""Load times of a 150k-class model in every format mipview reads; prints one JSON object.

No 150k-Gaussian file is in the shared data, so the donut (45,624 Gaussians) is tiled
three times side by side (136,872 Gaussians, SH degree 0, tagged antialiased) and saved by
mipview as .ply, .compressed.ply, .splat, .spz (v4) and .sog; each is then loaded
`--repeat` times (median). Times are absolute and noisy on a shared machine: compare
the ratios to the .ply of one run.

Usage: python benchmarks/load_formats.py [--repeat 5] [--tiles 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(REPO)  # benchmarks/render.py must not shadow the render package
DATA = Path(os.environ.get("MIPVIEW_DATA", REPO.parent / "shared" / "data"))
NAMES = {"inria_ply": "m.ply", "compressed_ply": "m.compressed.ply", "splat": "m.splat",
         "spz": "m.spz", "sog": "m.sog"}


def median_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000.0)
    return round(statistics.median(times), 1)


def tiled(g, tiles: int):
    """`tiles` copies of the set side by side along x."""
    import torch

    from render.gaussians import Gaussians

    lo, hi = g.bounds()
    step = float(hi[0] - lo[0]) * 1.1
    shift = torch.zeros(tiles * len(g), 3)
    shift[:, 0] = torch.arange(tiles).repeat_interleave(len(g)) * step
    return Gaussians(means=g.means.repeat(tiles, 1) + shift, quats=g.quats.repeat(tiles, 1),
                     log_scales=g.log_scales.repeat(tiles, 1),
                     opacity_logits=g.opacity_logits.repeat(tiles),
                     sh=g.sh.repeat(tiles, 1, 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--tiles", type=int, default=3)
    args = parser.parse_args()
    from render.io import load_model, save_model

    src = DATA / "donut_mipsplat_sh0.ply"
    if not src.exists():
        print(json.dumps({"error": f"missing {src} (set MIPVIEW_DATA)"}))
        return
    g = tiled(load_model(src).gaussians, args.tiles)
    result = {"gaussians": len(g), "sh_degree": g.sh_degree, "repeat": args.repeat,
              "source": f"{src.name} tiled x{args.tiles}", "formats": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for fmt, name in NAMES.items():
            path = Path(tmp) / name
            t = time.perf_counter()
            save_model(g, path, model="antialiased")
            save_ms = round((time.perf_counter() - t) * 1000.0, 1)
            m = load_model(path)
            assert len(m.gaussians) == len(g)
            result["formats"][fmt] = {
                "bytes": path.stat().st_size, "save_ms": save_ms,
                "load_ms": median_ms(lambda p=path: load_model(p, find_cameras=False),
                                     args.repeat),
                "tag": m.splat_model}
    ply_ms = result["formats"]["inria_ply"]["load_ms"]
    for entry in result["formats"].values():
        entry["load_vs_ply"] = round(entry["load_ms"] / ply_ms, 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
