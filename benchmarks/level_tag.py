"""A zoom-out level exported in every format and drawn with its defaults, as `mipview
render LEVEL` draws it: held-out PSNR; prints one JSON object.

Adapts the donut (virtual base cameras at --base-size) at --level, writes the level as
`mipview adapt` does (tagged with the mode it was finetuned in) as .ply, .spz and .sog,
loads each back, and draws the held-out views (never adapted on) with the antialias mode
the loaded file asks for (`LoadedModel.antialias`, the default of `mipview render` and the
viewer) against the 8x supersampled, area-downsampled base. Also: the base drawn classic
(`vanilla`) and with the mip filter (`base_mip`), the .ply level drawn classic (what
a viewer that ignores the tag shows, and what mipview showed before the tag), and the
level with its filter baked in (`mipview adapt --bake-filter`), drawn classic.

    python benchmarks/level_tag.py [--level 1/4] [--iters 1000] [--views 24]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(REPO)  # benchmarks/render.py must not shadow the render package
DATA = Path(os.environ.get("MIPVIEW_DATA", REPO.parent / "shared" / "data"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--level", default="1/4")
    p.add_argument("--iters", type=int, default=1000)
    p.add_argument("--views", type=int, default=24)
    p.add_argument("--base-size", type=int, default=512)
    args = p.parse_args()

    from adapt.bake import bake_level
    from adapt.finetune import FinetuneConfig
    from adapt.metrics import psnr
    from adapt.pseudo_gt import pick_crops, reference, render_tiled
    from adapt.scale import level_label, parse_level, virtual_base_cameras
    from adapt.upsample import BicubicUpsampler
    from adapt.views import ViewSettings, needs_crops
    from adapt.worker import AdaptSettings, adapt_level
    from render.io import load_model, model_for_antialias, save_model

    base = load_model(DATA / "donut_mipsplat_sh0.ply").gaussians
    cams = virtual_base_cameras(base, args.base_size, args.base_size)
    level = parse_level(args.level)
    settings = AdaptSettings(finetune=FinetuneConfig(iters=args.iters),
                             views=ViewSettings(n_views=args.views), use_current_view=False,
                             rival_check=False)  # the level is saved as files
    t0 = time.perf_counter()
    def on_step(it: int, loss: float, n: int) -> None:
        if it % 50 == 0:
            print(f"finetune {it}/{args.iters} N={n} {time.perf_counter() - t0:.0f}s",
                  file=sys.stderr, flush=True)

    res = adapt_level(base, cams, level, settings, BicubicUpsampler(), progress=on_step)
    adapt_s = time.perf_counter() - t0
    tag = model_for_antialias(settings.finetune.antialias_for(level))
    options = settings.finetune.base_options()
    with tempfile.TemporaryDirectory() as tmp:
        files = {ext: load_model(save_model(res.gaussians, Path(tmp) / f"level.{ext}",
                                            model=tag))
                 for ext in ("ply", "spz", "sog")}
        drawn = {f"level_{ext}_defaults": (m.gaussians, options.replace(antialias=m.antialias))
                 for ext, m in files.items()}
        drawn["level_ply_classic"] = (files["ply"].gaussians, options)
        drawn["level_baked_classic"] = (bake_level(res.gaussians, cams, level, options),
                                        options)
        drawn["vanilla"] = (base, options)
        drawn["base_mip"] = (base, options.replace(antialias="mip"))
        scores: dict[str, list[float]] = {k: [] for k in drawn}
        rng = random.Random(settings.views.seed + 1)  # as adapt.pseudo_gt.measure_level
        for cam in res.held_out:
            parts = (pick_crops(base, cam, level, settings.views, options, rng)
                     if needs_crops(cam, settings.views) else [cam])
            for c in parts:
                ref = reference(base, c, level, BicubicUpsampler(), options)
                for k, (g, o) in drawn.items():
                    scores[k].append(psnr(render_tiled(g, c, o), ref))
    out = {"scene": "donut", "level": level_label(level), "iters": args.iters,
           "views": args.views, "base_size": args.base_size, "held_out": len(res.held_out),
           "adapt_seconds": round(adapt_s, 1), "tag_written": tag,
           "modes_read": {ext: m.antialias for ext, m in files.items()},
           "psnr": {k: round(sum(v) / len(v), 2) for k, v in scores.items()}}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
