"""`mipview train DATA --scale 1/4 --iters N --out base.ply`: a base model on CPU.

Trains on the train split of a NeRF-synthetic folder at one scale from a seeded random
init in the scene box, writes the model (.ply) and, beside it, the training cameras at
that scale (cameras.json), which tells the viewer the model's base sampling rate.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from viewer.commands.progress import interrupted, progress_bar


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


class TrainProgress:
    """train_base's progress callback (step, total, loss, Gaussians) as a tqdm bar."""

    def __init__(self, label: str, enabled: bool = True):
        self.label, self.enabled, self.bar = label, enabled, None

    def __call__(self, step: int, total: int, loss: float, n: int) -> None:
        if self.bar is None:
            self.bar = progress_bar(total, self.label, self.enabled, "step")
        self.bar.update(step - self.bar.n)
        self.bar.set_postfix(loss=f"{loss:.4f}", G=n, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


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
    from viewer.commands.outputs import check_finite

    train = load_nerf_synthetic(data_dir, "train", scale)
    box = scene_box(data_dir)
    config = TrainConfig(iters=iters, n_init=n_init, sh_degree=sh_degree, seed=seed,
                         carve=carve)
    bar = TrainProgress(f"train {format_scale(scale)}", enabled=not quiet)
    try:
        g, stats = train_base(train, box, config, progress=bar)
    finally:
        bar.close()
    check_finite(g, f"the trained model for {out}")  # OutputError: nothing written
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
    from viewer.commands.outputs import OutputError, check_output_path

    try:
        scale = parse_scale(args.scale)
    except ValueError as e:
        print(f"mipview train: {e}", file=sys.stderr)
        return 2
    if args.iters < 1:
        print("mipview train: --iters must be at least 1", file=sys.stderr)
        return 2
    from viewer.commands.extras import missing_extra

    need = missing_extra("default", "mipview train (its SSIM score)")
    if need:
        print(f"mipview train: {need}", file=sys.stderr)
        return 2
    try:  # before the work: an hour of training must not end in "cannot write"
        check_output_path(args.out, "--out", (".ply",), make_parent=True)
    except OutputError as e:
        print(f"mipview train: {e}", file=sys.stderr)
        return 2
    try:
        summary = train_to_file(args.data, scale, args.iters, args.out, args.init,
                                args.sh_degree, args.seed, not args.no_carve, args.quiet)
    except (GaussianFileError, OutputError) as e:
        print(f"mipview train: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # the model is written atomically: whole or not at all
        return interrupted("train")
    except MemoryError:
        print("mipview train: out of memory; nothing was written (try a smaller --scale "
              "or --init)", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"mipview train: cannot write {args.out}: {e.strerror or e}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=1))
    return 0
