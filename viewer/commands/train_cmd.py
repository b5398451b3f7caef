"""`mipview train DATA --scale 1/4 --iters N --out base.ply`: a base model on CPU.

Trains on the train split of a NeRF-synthetic folder at one scale from a seeded random
init in the scene box, writes the model (.ply) and, beside it, the training cameras at
that scale (cameras.json), which tells the viewer the model's base sampling rate.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", type=Path, help="NeRF-synthetic folder (transforms_train.json)")
    parser.add_argument("--scale", default="1/4",
                        help="image scale to train at, relative to the files (default 1/4)")
    parser.add_argument("--iters", type=int, default=1500, help="optimisation steps (default 1500)")
    parser.add_argument("--init", type=int, default=30_000,
                        help="random Gaussians in the scene box at the start")
    parser.add_argument("--sh-degree", type=int, default=1, choices=range(4))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True, help="model file to write (.ply)")
    parser.add_argument("--no-carve", action="store_true",
                        help="keep init points over the background too (slower to train)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


class ProgressBar:
    """A one-line progress bar on stderr: step/total, loss, Gaussians, rate, ETA."""

    def __init__(self, label: str, enabled: bool = True, stream=None):
        self.label, self.enabled = label, enabled
        self.stream = stream or sys.stderr
        self.t0 = time.perf_counter()
        self.last = 0.0

    def __call__(self, step: int, total: int, loss: float, n: int) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if step != total and now - self.last < 0.5:
            return
        self.last = now
        el = now - self.t0
        eta = el / max(step, 1) * (total - step)
        fill = int(30 * step / max(total, 1))
        self.stream.write(f"\r{self.label} [{'#' * fill}{'.' * (30 - fill)}] {step}/{total} "
                          f"loss {loss:.4f} {n} G {el:.0f}s eta {eta:.0f}s ")
        if step == total:
            self.stream.write("\n")
        self.stream.flush()


def train_to_file(data_dir: Path, scale: float, iters: int, out: Path, n_init: int = 30_000,
                  sh_degree: int = 1, seed: int = 0, carve: bool = True,
                  quiet: bool = False) -> dict:
    """Train a base, write it and its cameras; return a JSON-ready summary
    (seconds, Gaussians, PSNR/SSIM on the test views at the same scale)."""
    import torch

    from adapt.metrics import psnr, ssim
    from adapt.train import TrainConfig, train_base
    from render import RenderOptions, render
    from render.io import save_inria_cameras, save_ply
    from render.io.cameras_json import CameraRecord
    from render.io.nerf_synthetic import format_scale, load_nerf_synthetic, scene_box

    train = load_nerf_synthetic(data_dir, "train", scale)
    box = scene_box(data_dir)
    config = TrainConfig(iters=iters, n_init=n_init, sh_degree=sh_degree, seed=seed,
                         carve=carve)
    bar = ProgressBar(f"train {format_scale(scale)}", enabled=not quiet)
    g, stats = train_base(train, box, config, progress=bar)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_ply(g, out)
    cams_path = out.with_name("cameras.json") if out.suffix == ".ply" else out.with_suffix(
        ".cameras.json")
    save_inria_cameras([CameraRecord(i, Path(n).name, c) for i, (n, c)
                        in enumerate(zip(train.names, train.cameras, strict=True))], cams_path)
    summary = {"model": str(out), "cameras": str(cams_path), "scale": scale,
               "size": list(train.size), "iters": stats.iters, "seconds": stats.seconds,
               "n_gaussians": len(g), "final_loss": stats.final_loss}
    try:
        test = load_nerf_synthetic(data_dir, "test", scale)
    except Exception as e:  # a folder with no test split still trains
        summary["test"] = f"not scored: {e}"
        _write_summary(out, summary)
        return summary
    opts = RenderOptions(background=(1.0, 1.0, 1.0))
    with torch.no_grad():
        # the images are on the host; a cuda render is copied back to be scored
        renders = [render(g, c, opts).rgb.cpu() for c in test.cameras]
    summary["test_psnr"] = sum(psnr(r, t) for r, t in zip(renders, test.images, strict=True)) \
        / len(renders)
    summary["test_ssim"] = sum(ssim(r, t) for r, t in zip(renders, test.images, strict=True)) \
        / len(renders)
    summary["test_views"] = len(renders)
    _write_summary(out, summary)
    return summary


def _write_summary(model: Path, summary: dict) -> None:
    """train_summary.json beside the model: `mipview eval` reads the training time there."""
    from render.io.atomic import atomic_write_bytes

    atomic_write_bytes(model.with_name("train_summary.json"),
                       json.dumps(summary, indent=1).encode("utf-8"))


def run(args: argparse.Namespace) -> int:
    from render.io.errors import GaussianFileError
    from render.io.nerf_synthetic import parse_scale

    try:
        scale = parse_scale(args.scale)
    except ValueError as e:
        print(f"mipview train: {e}", file=sys.stderr)
        return 2
    if args.iters < 1:
        print("mipview train: --iters must be at least 1", file=sys.stderr)
        return 2
    try:
        summary = train_to_file(args.data, scale, args.iters, args.out, args.init,
                                args.sh_degree, args.seed, not args.no_carve, args.quiet)
    except GaussianFileError as e:
        print(f"mipview train: {e}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=1))
    return 0
