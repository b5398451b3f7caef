"""`mipview eval DATA --out REPORT`: the single-scale-train / multi-scale-test protocol.

    mipview eval DATA --base-out 1/4:base4.ply --base-in 1/8:base8.ply --out REPORT

For each base (zoom-out: trained at 1/4 of the images, tested at 1/8 and 1/16; zoom-in:
trained at 1/8, tested at 1/4, 1/2, 1/1) it renders the test views at every test scale
with vanilla 3DGS, the Mip-Splatting 2D filter, SA-GS-style adaptive dilation and
Mipmap-GS adapted per level (on train views, and on the test views as the paper did),
scores them against the real images there (PSNR, SSIM; LPIPS where its weights are on
disk) and writes REPORT/results.json, table.md, psnr_vs_scale.png and grid.png.
A base that is not given is trained first (`mipview train` with --train-iters).
`--merge A B` combines the reports of separate runs (say one per setting) into --out.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path

from render.io.atomic import make_temp_dir
from viewer.commands.progress import interrupted, progress_bar


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", type=Path, nargs="?",
                        help="NeRF-synthetic folder (transforms_train.json, transforms_test.json)")
    parser.add_argument("--out", type=Path, required=True, help="report folder")
    parser.add_argument("--base-out", metavar="SCALE:PLY",
                        help="zoom-out base model, e.g. 1/4:base4.ply (trained if not given)")
    parser.add_argument("--base-in", metavar="SCALE:PLY",
                        help="zoom-in base model, e.g. 1/8:base8.ply (trained if not given)")
    parser.add_argument("--out-scale", default="1/4", help="zoom-out base scale (default 1/4)")
    parser.add_argument("--in-scale", default="1/8", help="zoom-in base scale (default 1/8)")
    parser.add_argument("--out-tests", default="1/8,1/16",
                        help="zoom-out test scales, comma-separated (default 1/8,1/16)")
    parser.add_argument("--in-tests", default="1/4,1/2,1",
                        help="zoom-in test scales, comma-separated (default 1/4,1/2,1)")
    parser.add_argument("--only", choices=("zoom-out", "zoom-in"),
                        help="run one setting only (merge runs with --merge)")
    parser.add_argument("--train-iters", type=int, default=1500,
                        help="steps for a base trained here (default 1500)")
    parser.add_argument("--train-init", type=int, default=30_000,
                        help="initial random Gaussians for a base trained here")
    parser.add_argument("--adapt-iters", type=int, default=1000,
                        help="Mipmap-GS finetune steps per level (paper: 1000)")
    parser.add_argument("--adapt-views", type=int, default=24,
                        help="views (and their pseudo-GT) each level adapts on")
    parser.add_argument("--adapt-crop", type=int, default=256,
                        help="large adaptation targets are cut into crops of this side")
    parser.add_argument("--crops-per-view", type=int, default=4)
    parser.add_argument("--zoom-out-supersample", type=int, default=1,
                        help="zoom-out pseudo-GT renders the base at max(N, this) x the "
                             "target resolution (1: the base rate, as the paper)")
    parser.add_argument("--test-every", type=int, default=1, help="score every k-th test view")
    parser.add_argument("--test-limit", type=int, default=None, help="score at most n views")
    parser.add_argument("--sr-model", type=Path, default=None,
                        help="super-resolution checkpoint (spandrel) for the rows "
                             "mipmap_sr_train and pseudo_gt_sr")
    parser.add_argument("--no-test-adapt", action="store_true",
                        help="leave out Mipmap-GS adapted on the test views")
    parser.add_argument("--methods", default=None,
                        help="comma-separated method keys to run (default all: 3dgs, mip, "
                             "adaptive, blend, mipmap_train, mipmap_test (on the default "
                             "zoom-in pseudo-GT), mipmap_blend_train, mipmap_<candidate>_train "
                             "for the other zoom-in pseudo-GTs (bicubic, adaptive, waifu2x), "
                             "pseudo_gt, pseudo_gt_<candidate>, and the _sr_ rows with "
                             "--sr-model)")
    parser.add_argument("--crop", default="0.3,0.3,0.7,0.7",
                        help="grid crop as fractions x0,y0,x1,y1 of the image")
    parser.add_argument("--grid-view", type=int, default=0, help="which scored view the grid shows")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--merge", type=Path, nargs="+", metavar="REPORT",
                        help="merge these report folders into --out instead of running")
    parser.add_argument("--quiet", action="store_true")


def _base_arg(text: str | None, default_scale: str) -> tuple[str, Path | None]:
    """'1/4:base.ply' -> ('1/4', path); 'base.ply' -> (default, path); None -> (default, None)."""
    if not text:
        return default_scale, None
    head, sep, tail = text.partition(":")
    if sep and ("/" in head or head.replace(".", "").isdigit()):
        return head, Path(tail)
    return default_scale, Path(text)


def _scales(text: str) -> tuple[float, ...]:
    from render.io.nerf_synthetic import parse_scale

    return tuple(parse_scale(t) for t in text.split(",") if t.strip())


def _train_seconds(model: Path) -> float | None:
    """Training time recorded beside a model by `mipview train` (train_summary.json)."""
    p = model.with_name("train_summary.json")
    try:
        return float(json.loads(p.read_text())["seconds"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def run(args: argparse.Namespace) -> int:
    from adapt import stmt
    from render.io.errors import GaussianFileError
    from viewer.commands.extras import missing_extra

    need = missing_extra("eval", "mipview eval (SSIM and the report's plot)")
    if need:
        print(f"mipview eval: {need}", file=sys.stderr)
        return 2
    log = (lambda _m: None) if args.quiet else (lambda m: print(m, flush=True))
    if args.merge:
        try:
            parts = [stmt.load_report(p) for p in args.merge]
            res, grid = stmt.merge_results(parts)
        except (OSError, ValueError, KeyError, TypeError) as e:
            print(f"mipview eval: cannot merge: {e}", file=sys.stderr)
            return 1
        cell = next(iter(grid.values())).shape[0] if grid else 128
        paths = stmt.write_report(res, grid, args.out, cell)
        log(json.dumps({k: str(v) for k, v in paths.items()}))
        return 0
    if args.data is None:
        print("mipview eval: DATA is required (or --merge)", file=sys.stderr)
        return 2
    try:
        return _run(args, stmt, log)
    except KeyboardInterrupt:  # the report goes in only when complete (_write_report)
        return interrupted("eval")
    except MemoryError:
        print("mipview eval: out of memory; no report was written", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"mipview eval: cannot write into {args.out}: {e.strerror or e}",
              file=sys.stderr)
        return 1
    except GaussianFileError as e:
        print(f"mipview eval: {e}", file=sys.stderr)
        return 1
    except ValueError as e:
        print(f"mipview eval: {e}", file=sys.stderr)
        return 2


def _run(args, stmt, log) -> int:
    import torch

    from adapt.views import ViewSettings
    from render.io import load_model
    from render.io.nerf_synthetic import (
        load_nerf_synthetic,
        load_nerf_synthetic_cameras,
        parse_scale,
    )
    from render.rasterize import backend_device
    from viewer.commands.train_cmd import train_to_file

    crop = tuple(float(v) for v in args.crop.split(","))
    if len(crop) != 4 or not (0 <= crop[0] < crop[2] <= 1 and 0 <= crop[1] < crop[3] <= 1):
        raise ValueError(f"--crop must be x0,y0,x1,y1 fractions with x0<x1, y0<y1: {args.crop}")
    out_scale, out_path = _base_arg(args.base_out, args.out_scale)
    in_scale, in_path = _base_arg(args.base_in, args.in_scale)
    settings = [stmt.Setting("zoom-out", parse_scale(out_scale), _scales(args.out_tests)),
                stmt.Setting("zoom-in", parse_scale(in_scale), _scales(args.in_tests))]
    paths = {"zoom-out": out_path, "zoom-in": in_path}
    if args.only:
        settings = [s for s in settings if s.name == args.only]
    methods = [m for m in stmt.default_methods(str(args.sr_model) if args.sr_model else None)
               if not (args.no_test_adapt and m.adapt_on == "test")]
    if args.methods:
        wanted = [k.strip() for k in args.methods.split(",") if k.strip()]
        unknown = sorted(set(wanted) - {m.key for m in methods})
        if unknown:
            raise ValueError(f"--methods: unknown {', '.join(unknown)} (known: "
                             f"{', '.join(m.key for m in methods)})")
        methods = [m for m in methods if m.key in wanted]
    config = stmt.StmtConfig(settings=tuple(settings), methods=tuple(methods),
                             test_every=args.test_every, test_limit=args.test_limit,
                             crop=crop, grid_view=args.grid_view)
    adapt_settings = stmt.LevelSettings(
        iters=args.adapt_iters,
        views=ViewSettings(n_views=args.adapt_views, crop=args.adapt_crop,
                           crops_per_view=args.crops_per_view, seed=args.seed,
                           zoom_out_supersample=args.zoom_out_supersample))
    torch.manual_seed(args.seed)
    device = backend_device("auto")
    t_start = time.perf_counter()
    bases = {}
    for s in settings:
        path = paths[s.name]
        if path is None:
            path = args.out / f"base_{s.name}" / "point_cloud.ply"
            log(f"[{s.name}] training a base at {s.base_scale:g} for {args.train_iters} steps")
            summary = train_to_file(args.data, s.base_scale, args.train_iters, path,
                                    args.train_init, seed=args.seed, quiet=args.quiet)
            seconds = summary["seconds"]
        else:
            seconds = _train_seconds(path)
            if seconds is None:
                log(f"[{s.name}] {path}: no train_summary.json beside it, training time "
                    "unknown (ratios will be against 0 s)")
                seconds = 0.0
        # on the backend's device once: each render would copy a host-side base again
        bases[s.name] = (load_model(path, find_cameras=False).gaussians.to(device), seconds)

    def load(split: str, scale: float):
        return load_nerf_synthetic(args.data, split, scale)

    def cameras(split: str, scale: float):
        return load_nerf_synthetic_cameras(args.data, split, scale)

    cells = sum(len(s.test_scales) for s in settings) * len(methods)
    with _CellProgress(cells, log, not args.quiet) as bar_log:
        adapter = stmt.mipmap_adapter(adapt_settings, cameras, bar_log)
        res, grid = stmt.run_protocol(bases, load, cameras, adapter, config,
                                      data_name=str(args.data), log=bar_log)
    res.config = {"train_iters": args.train_iters, "train_init": args.train_init,
                  "adapt": {"iters": adapt_settings.iters, **asdict(adapt_settings.views)},
                  "test_every": args.test_every, "test_limit": args.test_limit,
                  "torch_threads": torch.get_num_threads(),
                  "wall_seconds": time.perf_counter() - t_start,
                  "bases": {k: (str(v) if v else "trained here") for k, v in paths.items()}}
    written = _write_report(stmt, res, grid, args.out, config.grid_cell)
    log(json.dumps({k: str(v) for k, v in written.items()}))
    return 0


class _CellProgress:
    """A tqdm bar over the protocol's cells (setting x test scale x method) with an ETA;
    run_protocol's log lines are printed above it, and its score line of a cell
    ("[setting] x1/4 (200x200) method PSNR ...") advances it."""

    _SCORED = re.compile(r"^\[[^\]]+\] x\S+ \(\d+x\d+\) .* PSNR ")

    def __init__(self, total: int, log, enabled: bool):
        self.total, self.log, self.enabled, self.bar = total, log, enabled, None

    def __enter__(self):
        self.bar = progress_bar(self.total, "eval", self.enabled, "cell")
        return self

    def __call__(self, line: str) -> None:
        if self.enabled:
            self.bar.write(line, file=sys.stdout)
        if self._SCORED.match(line):
            self.bar.update(1)

    def __exit__(self, *exc) -> None:
        self.bar.close()


def _write_report(stmt, res, grid, out: Path, cell: int) -> dict:
    """stmt.write_report into a temporary folder beside OUT, then each file moved into OUT:
    an interrupted or failed write leaves no part of a new report in OUT."""
    out.mkdir(parents=True, exist_ok=True)
    staging = make_temp_dir(out / ".report")
    try:
        written = stmt.write_report(res, grid, staging, cell)
        for p in sorted(staging.iterdir()):  # every file it wrote (grid_cells.npz too)
            if not p.name.startswith("."):
                os.replace(p, out / p.name)
        return {key: out / Path(p).name for key, p in written.items()}
    finally:
        shutil.rmtree(staging, ignore_errors=True)
