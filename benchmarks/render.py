"""Speed of the rasterizer on the real donut: forward, backward, pairs, compile times.

Prints ONE JSON object. Usage:
    python benchmarks/render.py [--backend cpu] [--repeats 15] [--width 640 --height 480]
Needs the real data file donut_mipsplat_sh0.ply ($MIPVIEW_DATA or ../shared/data).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# As `mipview` does (viewer/cli.py), before torch loads its OpenMP runtime: idle OpenMP
# threads sleep instead of spinning on the cores the rasterizer's threads need.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from render import Camera, Gaussians, RenderOptions, render  # noqa: E402
from render.rasterize.cpu_threads import num_threads  # noqa: E402


def data_path(name: str) -> Path:
    base = Path(os.environ.get("MIPVIEW_DATA", REPO.parent / "shared" / "data"))
    path = base / name
    if not path.exists():
        sys.exit(f"benchmarks/render.py: real data {name} not found in {base} (set MIPVIEW_DATA)")
    return path


def load_gaussians(path: Path) -> Gaussians:
    """The model through render.io when it is there, else a minimal INRIA .ply read."""
    try:
        from render.io import load_model  # type: ignore[attr-defined]

        return load_model(path).gaussians
    except ImportError:
        pass
    from plyfile import PlyData

    v = PlyData.read(str(path))["vertex"]

    def cols(*names: str) -> torch.Tensor:
        return torch.from_numpy(np.stack([np.asarray(v[n], np.float32) for n in names], 1))

    return Gaussians(
        means=cols("x", "y", "z"),
        quats=torch.nn.functional.normalize(cols("rot_0", "rot_1", "rot_2", "rot_3"), dim=-1),
        log_scales=cols("scale_0", "scale_1", "scale_2"),
        opacity_logits=cols("opacity")[:, 0].contiguous(),
        sh=cols("f_dc_0", "f_dc_1", "f_dc_2")[:, None, :].contiguous(),
    )


def framing_camera(g: Gaussians, width: int, height: int, fill: float = 0.7) -> Camera:
    """A camera looking down at 45 degrees on the object (z up) so that the central 98 %
    of its Gaussians span `fill` of the image width."""
    pts = g.means.double().numpy()
    lo, hi = np.percentile(pts, 1, axis=0), np.percentile(pts, 99, axis=0)
    centre = 0.5 * (lo + hi)
    direction = np.array([0.0, -1.0, 1.0]) / np.sqrt(2.0)
    dist = float(np.linalg.norm(hi - lo))
    for _ in range(4):  # the span scales almost as 1 / distance; a few rounds settle it
        cam = Camera.look_at(centre + dist * direction, centre, up=(0.0, 0.0, 1.0),
                             fov_y_deg=50.0, width=width, height=height)
        pc = pts @ cam.viewmat[:3, :3].double().numpy().T + cam.viewmat[:3, 3].double().numpy()
        u = cam.fx * pc[:, 0] / pc[:, 2] + cam.cx
        span = np.percentile(u, 99) - np.percentile(u, 1)
        dist *= span / (fill * width)
    return cam


def time_render(g: Gaussians, cam: Camera, options: RenderOptions, repeats: int) -> dict:
    """Median forward (render) and backward (loss.backward) times in ms: wall clock, and
    CPU time summed over all threads (robust when other processes share the cores)."""
    params = {k: v.clone().requires_grad_(True) for k, v in g.tensors().items()}
    gg = Gaussians(**params)
    fwd, bwd, fwd_cpu, bwd_cpu = [], [], [], []
    target = torch.rand(cam.height, cam.width, 3, generator=torch.Generator().manual_seed(0))
    for i in range(repeats + 1):
        c0, t0 = time.process_time(), time.perf_counter()
        res = render(gg, cam, options)
        c1, t1 = time.process_time(), time.perf_counter()
        loss = (res.rgb - target).abs().mean()
        c2, t2 = time.process_time(), time.perf_counter()
        loss.backward()
        c3, t3 = time.process_time(), time.perf_counter()
        for p in params.values():
            p.grad = None
        if i:  # the first call warms caches
            fwd.append((t1 - t0) * 1e3)
            bwd.append((t3 - t2) * 1e3)
            fwd_cpu.append((c1 - c0) * 1e3)
            bwd_cpu.append((c3 - c2) * 1e3)
    with torch.no_grad():
        nograd = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            render(g, cam, options)
            nograd.append((time.perf_counter() - t0) * 1e3)
        # Counted apart: counting costs the cpu forward ~4 % (RenderOptions.count_pairs).
        pairs = int(render(g, cam, options.replace(count_pairs=True)).meta.get("n_pairs", 0))
    med = statistics.median
    return {"forward_ms": med(fwd), "backward_ms": med(bwd), "forward_min_ms": min(fwd),
            "backward_min_ms": min(bwd), "forward_cpu_ms": med(fwd_cpu),
            "backward_cpu_ms": med(bwd_cpu), "forward_nograd_ms": med(nograd),
            "pairs_blended": pairs, "tile_pairs": int(res.meta.get("n_tile_pairs", 0))}


_STARTUP = """
import time; t0 = time.perf_counter()
import torch
t1 = time.perf_counter()
from render import Camera, Gaussians, RenderOptions, render
g = Gaussians.from_colors(torch.rand(64, 3) + torch.tensor([0, 0, 3.0]), torch.rand(64, 3),
                          torch.full((64, 3), 0.05), torch.full((64,), 0.5))
p = {k: v.clone().requires_grad_(True) for k, v in g.tensors().items()}
r = render(Gaussians(**p), Camera.look_at((0, 0, 0), (0, 0, 3), width=64, height=48),
           RenderOptions(backend="cpu"))
r.rgb.sum().backward()
t2 = time.perf_counter()
print(t1 - t0, t2 - t1)
"""


def startup_seconds(cache_dir: str) -> tuple[float, float]:
    """In a fresh process: (seconds to import torch, seconds from there to the end of the
    first render + first backward: importing mipview's renderer and loading or compiling
    its kernels)."""
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    out = subprocess.run([sys.executable, "-c", _STARTUP], env=env, cwd=REPO, check=True,
                         capture_output=True, text=True)
    torch_s, kernels_s = out.stdout.strip().splitlines()[-1].split()
    return float(torch_s), float(kernels_s)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="cpu")
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--no-compile", action="store_true", help="skip the cold/warm startup runs")
    args = ap.parse_args()

    compile_info = {}
    if not args.no_compile:
        cache = tempfile.mkdtemp(prefix="mipview_numba_")
        try:
            # Empty cache: compiles. Then the same cache in a new process: loads. The
            # rasterizer's own part is reported apart from torch's import, which no
            # code of ours can shorten (about 1.5 s here).
            torch_s, compile_info["startup_cold_s"] = startup_seconds(cache)
            torch_s, compile_info["startup_warm_s"] = startup_seconds(cache)
            compile_info["import_torch_s"] = torch_s
            compile_info["process_startup_warm_s"] = torch_s + compile_info["startup_warm_s"]
        finally:
            shutil.rmtree(cache, ignore_errors=True)

    g = load_gaussians(data_path("donut_mipsplat_sh0.ply"))
    cam = framing_camera(g, args.width, args.height)
    options = RenderOptions(backend=args.backend)
    t = time_render(g, cam, options, args.repeats)
    print(json.dumps({
        "backend": args.backend,
        "gaussians": len(g),
        "resolution": [args.width, args.height],
        "threads": num_threads(),
        **{k: round(v, 2) if isinstance(v, float) else v for k, v in t.items()},
        "pairs_per_second": round(t["pairs_blended"] / (t["forward_ms"] / 1e3)),
        **{k: round(v, 2) for k, v in compile_info.items()},
        "repeats": args.repeats,
        # Other processes on the same cores stretch wall times: say how busy they were.
        "load_average_1min": round(os.getloadavg()[0], 2),
    }))


if __name__ == "__main__":
    main()
