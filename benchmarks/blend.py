"""Frame time of the `blend` antialias mode (Gaussian Blending) against `classic`.

    python benchmarks/blend.py [--repeats 9] [--tile 8]

Scenes: the real donut (45,624 Gaussians) from a framing camera at 640 x 480, and the
garden's 138,766 real COLMAP points as Gaussians, tiled --tile times (2 x 2 x 2 copies
side by side for 8: ~1.1 M), from its first real camera (648 x 420). Renders without
gradients, classic and blend alternated so that both see the same load on a shared
machine; classic both as `render()` gives it (float images) and as the viewer asks for it
(RenderOptions.bgra8; blend has no such path and writes float images). Prints ONE JSON
object: median ms per mode and the ratios blend / classic.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent]
sys.path.insert(0, str(REPO))

from render import Camera, Gaussians, RenderOptions, render  # noqa: E402


def data_dir() -> Path:
    return Path(os.environ.get("MIPVIEW_DATA", REPO.parent / "shared" / "data"))


def donut() -> tuple[Gaussians, Camera]:
    from benchmarks.render import framing_camera
    from render.io import load_model

    g = load_model(data_dir() / "donut_mipsplat_sh0.ply").gaussians
    return g, framing_camera(g, 640, 480)


def garden(tile: int) -> tuple[Gaussians, Camera]:
    """COLMAP points as isotropic Gaussians (std 0.03 units, opacity 0.8), `tile` copies
    on a grid of offsets the size of the central points' span; the first real camera."""
    d = np.load(data_dir() / "gsplat_test_garden.npz")
    pts = torch.from_numpy(d["means3d"].astype(np.float32))
    cols = torch.from_numpy(d["colors"].astype(np.float32) / 255.0)
    span = torch.quantile(pts[::10], 0.9, dim=0) - torch.quantile(pts[::10], 0.1, dim=0)
    k = max(1, round(tile ** (1 / 3)))
    offs = [torch.tensor([i, j, m], dtype=torch.float32) * span * 0.5
            for i in range(k) for j in range(k) for m in range(k)][:tile]
    means = torch.cat([pts + o for o in offs])
    colors = cols.repeat(len(offs), 1)
    n = means.shape[0]
    g = Gaussians.from_colors(means, colors, torch.full((n, 3), 0.03), torch.full((n,), 0.8),
                              torch.tensor([1.0, 0, 0, 0]).repeat(n, 1))
    K = d["Ks"][0]
    cam = Camera(viewmat=torch.from_numpy(d["viewmats"][0].astype(np.float32)),
                 fx=float(K[0, 0]), fy=float(K[1, 1]), cx=float(K[0, 2]), cy=float(K[1, 2]),
                 width=int(d["width"]), height=int(d["height"]))
    return g, cam


def time_modes(g: Gaussians, cam: Camera, repeats: int) -> dict:
    modes = {"classic": RenderOptions(backend="cpu"),
             "classic_bgra8": RenderOptions(backend="cpu", bgra8=True),
             "blend": RenderOptions(backend="cpu", antialias="blend")}
    times: dict[str, list[float]] = {k: [] for k in modes}
    with torch.no_grad():
        for o in modes.values():  # compile, warm caches
            render(g, cam, o)
        for _ in range(repeats):
            for k, o in modes.items():
                t0 = time.perf_counter()
                render(g, cam, o)
                times[k].append((time.perf_counter() - t0) * 1e3)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"gaussians": len(g), "size": [cam.width, cam.height],
            "ms": {k: round(v, 1) for k, v in med.items()},
            "blend_over_classic": round(med["blend"] / med["classic"], 2),
            "blend_over_classic_bgra8": round(med["blend"] / med["classic_bgra8"], 2)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--tile", type=int, default=8)
    args = p.parse_args(argv)
    out = {"donut": time_modes(*donut(), args.repeats),
           "garden_tiled": time_modes(*garden(args.tile), max(3, args.repeats // 3))}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
