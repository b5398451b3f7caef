"""`mipview adapt`: build one Mipmap-GS scale level headless.

    mipview adapt MODEL|demo --level 1/4|x4 --out OUT.ply|.spz|.sog|... [--cameras cameras.json]
        [--sr-model PATH] [--iters 1000] [--views N] [--seed S] [--base-size WxH]
        [--bake-filter]

Base cameras: --cameras, else a cameras.json found beside the model, else the demo's
own, else virtual cameras on a sphere framing the model at --base-size (800x800). A
progress bar goes to stderr; a JSON summary goes to stdout: seconds, iterations,
Gaussians before / after, and mean PSNR on held-out views (never adapted on) against
the reference (zoom-out: the base rendered 8x supersampled and area-downsampled;
zoom-in: the upsampled base render) of `vanilla` (base, 3DGS rasterizer), `mip`,
`adaptive` and `adapted`. Exit 2 with a one-line error for bad input.

The level is written in the format the --out name asks for, tagged with the antialias
mode it was finetuned in (a zoom-out level: `antialiased`, drawn with the Mip-Splatting
filter), so `mipview render OUT` and other viewers draw it as the viewer does. With
--bake-filter a zoom-out level is written untagged with the filter baked in at its scale
(adapt.bake), for viewers that know no tag; `adapted_baked_classic` scores it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import time

from adapt.bake import bake_level
from adapt.finetune import FinetuneConfig
from adapt.optimize import Cancelled
from adapt.pseudo_gt import measure_level
from adapt.scale import level_label, parse_level, virtual_base_cameras
from adapt.upsample import make_upsampler
from adapt.views import ViewSettings
from adapt.worker import AdaptSettings, adapt_level
from render.camera import Camera
from render.gaussians import Gaussians
from render.io.limits import LimitError, check_image_size
from viewer.commands.outputs import OutputError, check_finite, check_output_path
from viewer.commands.progress import interrupted, progress_bar

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1


class UsageError(Exception):
    """Bad command line or input file: printed on one line, exit status 2."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="model file (.ply / .splat) or 'demo' for the built-in chart")
    p.add_argument("--level", required=True, help="1/8, 1/4, 1/2, x2, x4 or x8")
    p.add_argument("--out", required=True, help="where to write the adapted level (.ply, "
                   ".compressed.ply, .spz, .sog, meta.json, .splat; tagged with its mode)")
    p.add_argument("--cameras", help="INRIA cameras.json with the training cameras")
    p.add_argument("--sr-model", help="zoom-in pseudo-GT: waifu2x (the default where "
                   "installed), adaptive, bicubic, or a super-resolution checkpoint (spandrel: "
                   "SwinIR, Real-ESRGAN, HAT, ...; .safetensors or .pth)")
    p.add_argument("--iters", type=int, default=None,
                   help="finetune iterations (default 1000; a zoom-out level of a base over "
                        "600k Gaussians takes fewer, see README)")
    p.add_argument("--views", type=int, default=24, help="adaptation views (24)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--base-size", default="800x800",
                   help="resolution of the virtual base cameras when none are known")
    p.add_argument("--bake-filter", action="store_true",
                   help="zoom-out levels: write the level with its mip filter baked in at "
                        "the level's scale, untagged, for viewers that know no anti-aliasing "
                        "tag (they draw it classic)")
    p.add_argument("--no-eval", action="store_true", help="skip the PSNR measurement")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
        if w <= 0 or h <= 0:
            raise ValueError
    except ValueError:
        raise UsageError(f"--base-size {text!r}: expected WxH, e.g. 800x800") from None
    try:  # the views are rendered whole at this size (and finer for zoom-out)
        return check_image_size("--base-size", "WxH", w, h)
    except LimitError as e:
        raise UsageError(str(e)) from None


def load_scene(model: str, cameras: str | None,
               base_size: tuple[int, int]) -> tuple[Gaussians, list[Camera], str, str]:
    """(base set, base cameras, model name, where the cameras came from)."""
    from render.io import GaussianFileError, load_inria_cameras, load_model

    if model == "demo":
        from render.demo import demo_scene

        scene = demo_scene()
        g, cams, source, name = scene.gaussians, list(scene.base_cameras), "demo", scene.name
    else:
        try:
            loaded = load_model(model, find_cameras=cameras is None)
        except GaussianFileError as exc:
            raise UsageError(str(exc)) from None
        g, name = loaded.gaussians, str(model)
        cams, source = ([r.camera for r in loaded.cameras], str(loaded.cameras_path)) \
            if loaded.cameras else ([], "")
    if cameras is not None:
        try:
            cams, source = [r.camera for r in load_inria_cameras(cameras)], str(cameras)
        except GaussianFileError as exc:
            raise UsageError(str(exc)) from None
        if not cams:
            raise UsageError(f"{cameras}: holds no cameras")
    if not cams:
        cams = virtual_base_cameras(g, width=base_size[0], height=base_size[1])
        source = f"virtual ({len(cams)} views at {base_size[0]}x{base_size[1]})"
    if len(g) == 0:
        raise UsageError(f"{model}: the model holds no Gaussians")
    return g, cams, name, source


class PhaseProgress:
    """One tqdm bar per phase of adapt_level (views, pseudo-GT, finetune, ...): a new
    label closes the previous bar and opens the next with its own total and ETA."""

    def __init__(self, enabled: bool) -> None:
        self.enabled, self.label, self.bar = enabled, None, None

    def show(self, label: str, done: int, total: int, **postfix) -> None:
        if label != self.label or self.bar is None or self.bar.total != total:
            self.close()
            self.label = label
            self.bar = progress_bar(total, label, self.enabled, "step")
        self.bar.update(done - self.bar.n)
        if postfix:
            self.bar.set_postfix(refresh=False, **postfix)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except UsageError as exc:
        print(f"mipview adapt: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:  # the .ply is written atomically: whole or not at all
        return interrupted("adapt")
    except MemoryError:
        print("mipview adapt: out of memory; nothing was written (try fewer --views or a "
              "smaller --base-size)", file=sys.stderr)
        return EXIT_FAILED


def _run(args: argparse.Namespace) -> int:
    from render.rasterize import auto_backend, backend_device

    # stdout carries only the JSON summary: the backend notice goes to stderr.
    with contextlib.redirect_stdout(sys.stderr):
        auto_backend()
    try:
        level = parse_level(args.level)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if level == 0:
        raise UsageError("level 1 is the base model itself; nothing to adapt")
    if (args.iters is not None and args.iters < 1) or args.views < 1:
        raise UsageError("--iters and --views must be at least 1")
    from render.io import format_for_path

    try:  # before the work: minutes of adaptation must not end in "cannot write"
        out = check_output_path(args.out, "--out", (".ply", ".splat", ".spz", ".sog", ".json"),
                                inputs=[None if args.model == "demo" else args.model,
                                        args.cameras, args.sr_model])
        format_for_path(out)
    except (OutputError, ValueError) as exc:
        raise UsageError(f"--out {args.out}: {exc}" if isinstance(exc, ValueError)
                         else str(exc)) from None
    device = backend_device("auto")
    try:
        upsampler = make_upsampler(args.sr_model, device=device)
    except (OSError, ValueError, ImportError) as exc:
        raise UsageError(f"--sr-model: {exc}") from None
    base, cams, name, source = load_scene(args.model, args.cameras, _parse_size(args.base_size))
    base = base.to(device)  # once: every render of the level would copy a host-side base
    settings = AdaptSettings(
        finetune=FinetuneConfig(views=args.views, seed=args.seed) if args.iters is None
        else FinetuneConfig(iters=args.iters, views=args.views, seed=args.seed, zoom_out_budget=0),
        views=ViewSettings(n_views=args.views, seed=args.seed), sr_model=args.sr_model,
        use_current_view=False, rival_check=False)  # the level is a file: no 2D filter
    bar = PhaseProgress(not args.quiet)

    iters = settings.finetune.iters_for(level, len(base))

    def on_step(it: int, loss: float, n: int) -> None:
        bar.show("finetune", it, iters, loss=f"{loss:.2e}", N=n)

    t0 = time.perf_counter()
    try:
        result = adapt_level(base, cams, level, settings, upsampler,
                             on_phase=lambda ph, d, n: bar.show(ph, d, n), progress=on_step)
    except Cancelled:  # nothing cancels a CLI run, but be explicit
        raise UsageError("cancelled") from None
    finally:
        bar.close()
    seconds = time.perf_counter() - t0
    from render.io import model_for_antialias, save_model

    try:
        check_finite(result.gaussians, f"the adapted level for {out}")
    except OutputError as exc:
        print(f"mipview adapt: {exc}", file=sys.stderr)
        return EXIT_FAILED
    tag = model_for_antialias(settings.finetune.antialias_for(level))
    written, others = result.gaussians, {}
    if args.bake_filter and tag == "antialiased":
        written = bake_level(result.gaussians, cams, level, settings.finetune.base_options())
        tag = "default"
        others["adapted_baked_classic"] = (written, settings.finetune.base_options())
    elif args.bake_filter:
        print("mipview adapt: --bake-filter: this level is drawn classic already; written "
              "as it is", file=sys.stderr)
    try:
        save_model(written, out, model=tag)
    except OSError as exc:
        print(f"mipview adapt: cannot write {out}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILED
    summary = {
        "model": name, "level": level_label(level), "scale": 2.0**level,
        "base_cameras": source, "seconds": round(seconds, 2),
        "iterations": result.iterations, "adaptation_views": result.n_views,
        "held_out_views": len(result.held_out), "gaussians_before": len(base),
        "gaussians_after": len(result.gaussians), "pseudo_gt": result.upsampler,
        "out": str(out), "tag": tag, "filter_baked": bool(others),
    }
    if result.from_level is not None:
        summary["derived_from"] = level_label(result.from_level)
    if not args.no_eval and result.held_out:
        t1 = time.perf_counter()
        scores = measure_level(base, result.gaussians, result.held_out, level, upsampler,
                               settings.finetune.base_options(), settings.views,
                               adapted_options=settings.finetune.render_options(level),
                               others=others)
        summary["psnr"] = {k: (round(v, 3) if math.isfinite(v) else None)
                           for k, v in scores.items()}
        summary["reference"] = ("base 8x supersampled, area-downsampled" if level < 0
                                else f"upsampled base render ({upsampler.describe(2**level)})")
        summary["eval_seconds"] = round(time.perf_counter() - t1, 2)
    print(json.dumps(summary, indent=1))
    return 0
