"""Speed of display frames on scenes of 1-6 M Gaussians at SH degree 3 (the `cpu` backend).

The scenes are NOT trained captures: they are built, deterministically, from the real
files in $MIPVIEW_DATA so that their geometry, opacities and SH coefficients are real
ones at a realistic density. A block (145,952 Gaussians, a "150k-class scene") is three
rotated copies of the trained donut (donut_mipsplat_sh0.ply, dense geometry; its SH
bands 1-3 are borrowed from the INRIA model) and the INRIA SH-3 model
(inria_iter7000_sh3.ply) shrunk to the block's size; blocks sit on a grid, each turned
about z by its own angle. Sizes: 1.2M = 8 blocks (1,167,616), 3M = 20, 6M = 40.

For each size, three cameras (outside, everything in view; inside, at the middle of the
grid looking along it, most Gaussians behind or beside it; behind, the outside camera
turned around, everything culled) at 1280x720 and 1920x1080: the display frame as the
viewer draws it (RenderOptions(bgra8=True), no gradient, glibc malloc as `mipview` sets
it), median ms (wall, and CPU time of all threads: the machine may be shared), its split
by stage (kernels as run on the rasterizer's threads, the sort), the per-Gaussian
stages' sum (all but the blending) and per Gaussian of the scene (`ns_per_gaussian`:
outside, the cost of one in view; behind, see `frame_ns_per_gaussian`, of one culled),
and peak memory. Prints ONE JSON object.
Usage:

    python benchmarks/big_scene.py [--sizes 1.2M,3M,6M] [--repeats 5] [--code DIR]

--code runs another checkout's renderer on the same scenes (before/after comparisons;
set NUMBA_CACHE_DIR so its compiled kernels land outside that checkout).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `mipview` does (viewer/cli.py)

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SIZES = {"1.2M": 8, "3M": 20, "6M": 40}  # blocks
RESOLUTIONS = ((1280, 720), (1920, 1080))
BLOCK_SPACING = 0.5  # world units between block centres (a donut spans ~0.2)


def data_path(name: str) -> Path:
    base = Path(os.environ.get("MIPVIEW_DATA", REPO.parent / "shared" / "data"))
    path = base / name
    if not path.exists():
        sys.exit(f"benchmarks/big_scene.py: real data {name} not found in {base} "
                 "(set MIPVIEW_DATA)")
    return path


def _quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product a * b, (w, x, y, z). a [4] or [N, 4], b [N, 4] -> [N, 4]"""
    aw, ax, ay, az = np.moveaxis(np.broadcast_to(a, b.shape), -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack([aw * bw - ax * bx - ay * by - az * bz,
                     aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw], -1)


def _turned(means: np.ndarray, quats: np.ndarray, angle: float):
    """Means [N, 3] and quats [N, 4] turned by `angle` radians about z (through 0)."""
    c, s = math.cos(angle), math.sin(angle)
    rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    q = np.array([math.cos(angle / 2), 0.0, 0.0, math.sin(angle / 2)])
    return means @ rot.T, _quat_mul(q, quats)


def _sources():
    """(donut, inria) as dicts of float64 numpy arrays; the donut centred, the INRIA
    model centred and scaled to fill a block, both at SH degree 3 ([N, 16, 3])."""
    from render.io import load_model

    def arrays(name):
        g = load_model(data_path(name), find_cameras=False).gaussians
        return {k: v.double().numpy().copy() for k, v in g.tensors().items()}

    donut, inria = arrays("donut_mipsplat_sh0.ply"), arrays("inria_iter7000_sh3.ply")
    donut["means"] -= np.median(donut["means"], axis=0)
    lo, hi = np.percentile(inria["means"], [2, 98], axis=0)
    f = 0.4 / float(np.max(hi - lo))
    inria["means"] = (inria["means"] - 0.5 * (lo + hi)) * f
    inria["log_scales"] += math.log(f)
    # The donut is SH 0: bands 1-3 from the INRIA model's real coefficients, cycled.
    rest = inria["sh"][np.arange(len(donut["means"])) % len(inria["means"]), 1:, :]
    donut["sh"] = np.concatenate([donut["sh"], 0.5 * rest], axis=1)
    return donut, inria


def build_scene(n_blocks: int):
    """The scene of `n_blocks` blocks (see the module docstring) as Gaussians, and the
    grid's (columns, rows)."""
    import torch

    from render import Gaussians

    donut, inria = _sources()
    rows = max(1, round(math.sqrt(n_blocks / 2)))
    cols = math.ceil(n_blocks / rows)
    offsets = ((-0.12, -0.08, 0.0), (0.12, -0.08, 0.0), (0.0, 0.12, 0.0))
    pieces = [(donut, np.array(o)) for o in offsets] + [(inria, np.zeros(3))]
    per_block = sum(len(src["means"]) for src, _ in pieces)
    # Filled in place, float32: 6 M Gaussians are 1.4 GB; no float64 copy of the whole.
    out = {k: np.empty((n_blocks * per_block, *v.shape[1:]), np.float32)
           for k, v in donut.items()}
    at = 0
    for b in range(n_blocks):
        centre = np.array([(b % cols) * BLOCK_SPACING, (b // cols) * BLOCK_SPACING, 0.0])
        for k, (src, off) in enumerate(pieces):
            angle = 2.399963 * (4 * b + k)  # the golden angle: no two copies alike
            means, quats = _turned(src["means"], src["quats"], angle)
            end = at + len(means)
            out["means"][at:end] = means + off + centre
            out["quats"][at:end] = quats
            for key in ("log_scales", "opacity_logits", "sh"):
                out[key][at:end] = src[key]
            at = end
    tensors = {k: torch.from_numpy(v) for k, v in out.items()}
    return Gaussians(**tensors), (cols, rows)


def cameras(grid: tuple[int, int], width: int, height: int):
    """{"outside": everything in view, "inside": at the grid's middle looking along +x,
    "behind": the outside camera turned around, everything culled}."""
    from render import Camera

    cols, rows = grid
    span = np.array([(cols - 1) * BLOCK_SPACING, (rows - 1) * BLOCK_SPACING, 0.0])
    centre = 0.5 * span
    size = float(np.linalg.norm(span)) + 2 * BLOCK_SPACING
    # 50 degrees of vertical field: from 1.3 sizes away at 45 degrees down, it all fits.
    eye = centre + 1.3 * size * np.array([0.0, -1.0, 1.0]) / math.sqrt(2.0)
    outside = Camera.look_at(eye, centre, up=(0.0, 0.0, 1.0), fov_y_deg=50.0, width=width,
                             height=height)
    inside_eye = centre + np.array([0.0, 0.0, 0.05])
    inside = Camera.look_at(inside_eye, inside_eye + np.array([1.0, 0.0, 0.0]),
                            up=(0.0, 0.0, 1.0), fov_y_deg=60.0, width=width, height=height)
    behind = Camera.look_at(eye, 2 * eye - centre, up=(0.0, 0.0, 1.0), fov_y_deg=50.0,
                            width=width, height=height)
    return {"outside": outside, "inside": inside, "behind": behind}


class StageTimer:
    """Times, per frame, each kernel the rasterizer runs on its threads (run_chunks) and
    the depth sort, by wrapping them in the rasterizer's modules."""

    def __init__(self):
        from render.rasterize import cpu, cpu_project

        self.ms: dict[str, float] = defaultdict(float)
        self.cpu_ms: dict[str, float] = defaultdict(float)
        self._patched = []
        for mod in (cpu, cpu_project):
            self._wrap(mod, "run_chunks", lambda kernel, *a: kernel.__name__)
        if hasattr(cpu, "depth_order"):
            self._wrap(cpu, "depth_order", lambda *a: "sort")

    def _wrap(self, mod, name, label):
        orig = getattr(mod, name)

        def timed(*args, **kw):
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                return orig(*args, **kw)
            finally:
                self.ms[label(*args)] += (time.perf_counter() - t0) * 1e3
                # CPU time of all the process's threads: robust to other programs' load
                self.cpu_ms[label(*args)] += (time.process_time() - c0) * 1e3

        setattr(mod, name, timed)
        self._patched.append((mod, name, orig))

    def restore(self):
        for mod, name, orig in reversed(self._patched):
            setattr(mod, name, orig)


def peak_rss_mb() -> float:
    """The process's peak resident memory since the last reset_peak() (VmHWM)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak() -> None:
    try:  # Linux: "5" resets the peak resident set size (VmHWM) to the current one
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def time_view(g, cam, repeats: int) -> dict:
    """Median display-frame ms, the median split by stage, frame stats and peak memory."""
    import torch

    from render import RenderOptions, render

    opts = RenderOptions(backend="cpu", bgra8=True)
    reset_peak()
    with torch.no_grad():
        res = render(g, cam, opts)  # warm caches (and the pool)
        frames, frames_cpu = [], []
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            render(g, cam, opts)
            frames.append((time.perf_counter() - t0) * 1e3)
            frames_cpu.append((time.process_time() - c0) * 1e3)
        stages: dict[str, list[float]] = defaultdict(list)
        stages_cpu: dict[str, list[float]] = defaultdict(list)
        for _ in range(repeats):
            timer = StageTimer()
            t0 = time.perf_counter()
            try:
                render(g, cam, opts)
            finally:
                timer.restore()
            total = (time.perf_counter() - t0) * 1e3
            for k, v in timer.ms.items():
                stages[k].append(v)
                stages_cpu[k].append(timer.cpu_ms[k])
            stages["other"].append(total - sum(timer.ms.values()))
    n = len(g)
    drawn = int(res.meta.get("n_drawn", 0))
    ms = statistics.median(frames)
    split = {k: statistics.median(v) for k, v in stages.items()}
    # Everything but the tiles' blending runs per Gaussian (projection, colours, packing,
    # sort, binning); "behind" culls them all, so there its whole frame is per Gaussian.
    per_gaussian = sum(v for k, v in split.items() if k not in ("forward_bgra8", "other"))
    return {"frame_ms": round(ms, 1), "frame_min_ms": round(min(frames), 1),
            "per_gaussian_ms": round(per_gaussian, 1),
            "ns_per_gaussian": round(per_gaussian * 1e6 / n, 1),
            "frame_ns_per_gaussian": round(ms * 1e6 / n, 1),
            "frame_cpu_ms": round(statistics.median(frames_cpu), 1),
            "stages_ms": {k: round(v, 1) for k, v in split.items()},
            "stages_cpu_ms": {k: round(statistics.median(v), 1) for k, v in
                              stages_cpu.items()},
            "n_drawn": drawn, "n_culled": n - drawn,
            "tile_pairs": int(res.meta.get("n_tile_pairs", 0)),
            "peak_rss_mb": round(peak_rss_mb())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1.2M,3M,6M",
                    help=f"comma-separated, of {', '.join(SIZES)}")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--resolutions", default="1280x720,1920x1080")
    ap.add_argument("--code", default=str(REPO), help="the mipview checkout to render with")
    args = ap.parse_args()
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    for s in sizes:
        if s not in SIZES:
            ap.error(f"unknown size {s!r}: choose from {', '.join(SIZES)}")
    res_list = [tuple(int(v) for v in r.split("x")) for r in args.resolutions.split(",")]
    sys.path.insert(0, str(Path(args.code).resolve()))
    from render.rasterize.cpu_threads import num_threads
    from viewer.memory import tame_malloc

    tame_malloc()  # malloc as `mipview` sets it: the frames cost what the viewer's do

    out = {"code": str(Path(args.code).resolve()), "threads": num_threads(),
           "repeats": args.repeats, "scenes": {}}
    for size in sizes:
        t0 = time.perf_counter()
        g, grid = build_scene(SIZES[size])
        scene = {"gaussians": len(g), "sh_degree": g.sh_degree, "grid": list(grid),
                 "build_s": round(time.perf_counter() - t0, 1),
                 "params_mb": round(sum(t.numel() * 4 for t in g.tensors().values()) / 2**20),
                 "views": {}}
        for w, h in res_list:
            for name, cam in cameras(grid, w, h).items():
                scene["views"][f"{name}_{w}x{h}"] = time_view(g, cam, args.repeats)
        out["scenes"][size] = scene
        del g
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    # Other processes on the same cores stretch wall times: say how busy they were.
    out["load_average_1min"] = round(os.getloadavg()[0], 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
