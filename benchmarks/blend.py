"""Display-frame time of the `blend` antialias mode (Gaussian Blending) against `classic`.

    python benchmarks/blend.py [--repeats 7] [--scenes donut,1.2M] [--code DIR]

Frames as the viewer draws them: RenderOptions(bgra8=True), no gradient (blend falls back
to float images where a checkout has no bgra8 path for it). Scenes: the real donut
(45,624 Gaussians) from a framing camera at 640 x 480, and benchmarks/big_scene.py's
1.2 M scene (8 blocks built from the real files in $MIPVIEW_DATA, SH degree 3) from its
`outside` camera at 1280 x 720; on request (--scenes garden8) the garden's real COLMAP
points as Gaussians tiled 8 times (~1.1 M) from its first camera at 648 x 420. Classic
and blend alternate frame by frame so that both see the same load on a shared machine.
Then one more round each under a stage timer (the kernels the rasterizer runs on its
threads, and the rest). Prints ONE JSON object: median ms per mode, the ratio
blend / classic, per-stage ms.

--code runs another checkout's renderer (before/after comparisons; set NUMBA_CACHE_DIR so
its compiled kernels land outside that checkout).
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

REPO = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent]


def data_dir() -> Path:
    return Path(os.environ.get("MIPVIEW_DATA", REPO.parent / "shared" / "data"))


def donut():
    from benchmarks.render import framing_camera
    from render.io import load_model

    g = load_model(data_dir() / "donut_mipsplat_sh0.ply", find_cameras=False).gaussians
    return g, framing_camera(g, 640, 480)


def big(size: str):
    from benchmarks.big_scene import SIZES, build_scene, cameras

    g, grid = build_scene(SIZES[size])
    return g, cameras(grid, 1280, 720)["outside"]


def garden(tile: int):
    """The garden's 138,766 real COLMAP points as Gaussians (std 0.03 units, opacity 0.8),
    `tile` copies on a grid of offsets the size of the central points' span (8: ~1.1 M),
    from its first real camera (648 x 420)."""
    import numpy as np
    import torch

    from render import Camera, Gaussians

    d = np.load(data_dir() / "gsplat_test_garden.npz")
    pts = torch.from_numpy(d["means3d"].astype(np.float32))
    cols = torch.from_numpy(d["colors"].astype(np.float32) / 255.0)
    span = torch.quantile(pts[::10], 0.9, dim=0) - torch.quantile(pts[::10], 0.1, dim=0)
    k = max(1, round(tile ** (1 / 3)))
    offs = [torch.tensor([i, j, m], dtype=torch.float32) * span * 0.5
            for i in range(k) for j in range(k) for m in range(k)][:tile]
    means = torch.cat([pts + o for o in offs])
    n = means.shape[0]
    g = Gaussians.from_colors(means, cols.repeat(len(offs), 1), torch.full((n, 3), 0.03),
                              torch.full((n,), 0.8), torch.tensor([1.0, 0, 0, 0]).repeat(n, 1))
    K = d["Ks"][0]
    cam = Camera(viewmat=torch.from_numpy(d["viewmats"][0].astype(np.float32)),
                 fx=float(K[0, 0]), fy=float(K[1, 1]), cx=float(K[0, 2]), cy=float(K[1, 2]),
                 width=int(d["width"]), height=int(d["height"]))
    return g, cam


SCENES = {"donut": donut, "garden8": lambda: garden(8)}


def stage_timer():
    """benchmarks/big_scene.StageTimer, also wrapping the blend module's kernels."""
    from benchmarks.big_scene import StageTimer

    timer = StageTimer()
    try:
        from render.rasterize import cpu_blend
    except ImportError:
        return timer
    timer._wrap(cpu_blend, "run_chunks", lambda kernel, *a: kernel.__name__)
    return timer


def time_modes(g, cam, repeats: int) -> dict:
    import torch

    from render import RenderOptions, render

    modes = {"classic": RenderOptions(backend="cpu", bgra8=True),
             "blend": RenderOptions(backend="cpu", bgra8=True, antialias="blend")}
    times: dict[str, list[float]] = {k: [] for k in modes}
    stages: dict[str, dict[str, float]] = {}
    packed = {}
    with torch.no_grad():
        for k, o in modes.items():  # compile, warm caches and the pool
            packed[k] = render(g, cam, o).bgra8_gl is not None
        for _ in range(repeats):
            for k, o in modes.items():
                t0 = time.perf_counter()
                render(g, cam, o)
                times[k].append((time.perf_counter() - t0) * 1e3)
        for k, o in modes.items():
            timer = stage_timer()
            t0 = time.perf_counter()
            try:
                res = render(g, cam, o)
            finally:
                timer.restore()
            total = (time.perf_counter() - t0) * 1e3
            st = {s: round(v, 1) for s, v in timer.ms.items()}
            st["other"] = round(total - sum(timer.ms.values()), 1)
            st["total"] = round(total, 1)
            st["tile_pairs"] = int(res.meta.get("n_tile_pairs", 0))
            stages[k] = st
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"gaussians": len(g), "size": [cam.width, cam.height], "bgra8": packed,
            "ms": {k: round(v, 1) for k, v in med.items()},
            "blend_over_classic": round(med["blend"] / med["classic"], 2),
            "stages_ms": stages}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--scenes", default="donut,1.2M",
                   help="donut, garden8 (the tiled COLMAP points), 1.2M, 3M, 6M")
    p.add_argument("--code", default=str(REPO), help="the mipview checkout to render with")
    args = p.parse_args(argv)
    sys.path.insert(0, str(Path(args.code).resolve()))
    sys.path.insert(1, str(REPO))  # benchmarks.* from this checkout
    out = {"code": str(Path(args.code).resolve())}
    for name in args.scenes.split(","):
        scene = SCENES[name]() if name in SCENES else big(name)
        out[name] = time_modes(*scene, args.repeats if name == "donut"
                               else max(3, args.repeats // 2))
        del scene
    out["load_average_1min"] = round(os.getloadavg()[0], 2)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
