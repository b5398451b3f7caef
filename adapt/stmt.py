"""The single-scale-train / multi-scale-test protocol (Mipmap-GS, Table 1), on real images.

A base model is trained at ONE scale of a NeRF-synthetic scene; its test views are then
rendered at other scales and scored against the real, area-downsampled images there:

- zoom-out: base at 1/4 of the files (200^2 for lego), tested at 1/8 and 1/16 (x1/2, x1/4);
- zoom-in:  base at 1/8 (100^2), tested at 1/4, 1/2 and 1/1 (x2, x4, x8).

Methods per scale: vanilla 3DGS (`classic` dilation), the Mip-Splatting 2D filter (`mip`),
SA-GS-style zoom-scaled dilation (`adaptive`), and Mipmap-GS: the base finetuned per
level on pseudo-ground-truth, once on the TRAIN views (never scored: an honest figure)
and once on the TEST views themselves (what the paper's code does). Zoom-in levels use
the default zoom-in pseudo-GT (adapt.upsample.default_zoom_in_pseudo_gt); every other
candidate (bicubic, the adaptive render, waifu2x, an --sr-model checkpoint) is a row
twice: scored itself (`pseudo_gt_*`) and as the target of a train-view level.

:func:`run_protocol` measures; :func:`write_report` writes results.json, a markdown
table, a PSNR-vs-scale plot and an image grid of one crop per method and scale.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from adapt.metrics import lpips, lpips_unavailable_reason, psnr, ssim
from adapt.views import ViewSettings
from render import Camera, Gaussians, RenderOptions, render
from render.io.nerf_synthetic import PosedImages, format_scale

WHITE = (1.0, 1.0, 1.0)


@dataclass(frozen=True)
class Setting:
    """One base model and the scales it is tested at (fractions of the files' size)."""

    name: str
    base_scale: float
    test_scales: tuple[float, ...]

    def zooms(self) -> tuple[float, ...]:
        """Test scales relative to the base: x1/2, x2, ..."""
        return tuple(s / self.base_scale for s in self.test_scales)


ZOOM_OUT = Setting("zoom-out", 1 / 4, (1 / 8, 1 / 16))
ZOOM_IN = Setting("zoom-in", 1 / 8, (1 / 4, 1 / 2, 1.0))


@dataclass(frozen=True)
class Method:
    """A way to render a base model at another scale.

    Attributes:
        key: short id used in the JSON.
        label: what the table and plot call it.
        antialias: the render mode used at test time.
        adapt_on: None (training-free), `train` or `test`: which views' pseudo-GT the
            Mipmap-GS copy is finetuned on.
        upsampler: the zoom-in pseudo-GT (adapt.upsample.make_upsampler: `bicubic`,
            `adaptive`, `waifu2x` or a spandrel checkpoint's path), for adapted methods
            and pseudo-GT rows.
        pseudo_gt: not a renderer: scores the Mipmap-GS pseudo-GT itself (the base
            rendered at its own rate, then area-downsampled or upsampled), the target the
            adapted copies are fitted to.
        zoom_in_only: measured at zoom-in scales only (a zoom-in pseudo-GT candidate;
            its zoom-out cells would repeat another row's).
        chain: zoom-in levels finer than x2 are derived from the x2 level (when the
            protocol's LevelSettings.chain_zoom_in is on); False finetunes every level.
    """

    key: str
    label: str
    antialias: str = "classic"
    adapt_on: str | None = None
    upsampler: str = "bicubic"
    pseudo_gt: bool = False
    zoom_in_only: bool = False
    chain: bool = True


_PSEUDO_GT_LABELS = {"bicubic": "bicubic", "adaptive": "adaptive render",
                     "waifu2x": "waifu2x x2"}


def default_methods(sr_model: str | None = None) -> list[Method]:
    """Every row: the training-free modes, Mipmap-GS with the default zoom-in pseudo-GT
    (adapt.upsample.default_zoom_in_pseudo_gt) on train and test views, Mipmap-GS on
    train views with each other zoom-in pseudo-GT candidate, and the candidates
    themselves (`pseudo_gt*` rows)."""
    from adapt.upsample import default_zoom_in_pseudo_gt, waifu2x_available

    best = default_zoom_in_pseudo_gt()
    cands = ["bicubic", "adaptive"] + (["waifu2x"] if waifu2x_available() is None else [])
    methods = [
        Method("3dgs", "3DGS (classic)", "classic"),
        Method("mip", "Mip-Splatting 2D filter", "mip"),
        Method("adaptive", "SA-GS-style adaptive", "adaptive"),
        Method("blend", "Gaussian Blending", "blend"),
        Method("mipmap_train", f"Mipmap-GS (train views; {_PSEUDO_GT_LABELS[best]})",
               "classic", "train", best),
        Method("mipmap_test", f"Mipmap-GS (test views; {_PSEUDO_GT_LABELS[best]})",
               "classic", "test", best),
        Method("mipmap_blend_train",
               f"Mipmap-GS under blend (train views; {_PSEUDO_GT_LABELS[best]})",
               "blend", "train", best),
        Method("mipmap_perlevel_train",
               f"Mipmap-GS, every level finetuned (train views; {_PSEUDO_GT_LABELS[best]})",
               "classic", "train", best, zoom_in_only=True, chain=False),
    ]
    methods += [Method(f"mipmap_{c}_train", f"Mipmap-GS (train views; {_PSEUDO_GT_LABELS[c]})",
                       "classic", "train", c, zoom_in_only=True) for c in cands if c != best]
    if sr_model:
        methods.append(Method("mipmap_sr_train", "Mipmap-GS (train views; SR model)", "classic",
                              "train", str(sr_model), zoom_in_only=True))
    methods.append(Method("pseudo_gt", "pseudo-GT (bicubic/area)", pseudo_gt=True))
    methods += [Method(f"pseudo_gt_{c}", f"pseudo-GT ({_PSEUDO_GT_LABELS[c]})", upsampler=c,
                       pseudo_gt=True, zoom_in_only=True) for c in cands if c != "bicubic"]
    if sr_model:
        methods.append(Method("pseudo_gt_sr", "pseudo-GT (SR model)", upsampler=str(sr_model),
                              pseudo_gt=True, zoom_in_only=True))
    return methods


@dataclass
class Score:
    """One method at one test scale, averaged over the test views (PSNR per view, then mean)."""

    setting: str
    method: str
    scale: float
    zoom: float
    psnr: float
    ssim: float
    lpips: float | None = None
    psnr_per_view: list[float] = field(default_factory=list)
    n_gaussians: int = 0
    render_ms: float = 0.0


@dataclass
class StmtResults:
    """Everything the protocol measured; serialised as results.json."""

    data: str
    n_test_views: int
    settings: list[dict] = field(default_factory=list)
    methods: list[dict] = field(default_factory=list)
    base: dict = field(default_factory=dict)  # setting -> {seconds, psnr, ssim, n, scale}
    adaptation: list[dict] = field(default_factory=list)  # per setting/method/scale timing
    scores: list[Score] = field(default_factory=list)
    lpips_skipped: str | None = None
    config: dict = field(default_factory=dict)
    grid_crop: list[float] = field(default_factory=list)

    def score(self, setting: str, method: str, scale: float) -> Score | None:
        for s in self.scores:
            if s.setting == setting and s.method == method and math.isclose(s.scale, scale):
                return s
        return None

    def to_json(self) -> dict:
        d = asdict(self)
        d["scores"] = [asdict(s) for s in self.scores]
        return d


# -- rendering and scoring ------------------------------------------------------------------

def render_views(g: Gaussians, cameras: list[Camera], options: RenderOptions) -> list[Tensor]:
    """Render each camera. -> list of [H, W, 3] in [0, 1] (no grad)."""
    with torch.no_grad():
        return [render(g, cam, options).rgb.clamp(0, 1).cpu() for cam in cameras]


def pseudo_gt_views(base: Gaussians, cameras: list[Camera], zoom: float,
                    upsampler: str = "bicubic") -> list[Tensor]:
    """The Mipmap-GS pseudo-GT of each camera (at the test scale). -> list of [H, W, 3]"""
    from adapt.pseudo_gt import pseudo_gt
    from adapt.scale import level_for_scale
    from adapt.upsample import make_upsampler

    up = make_upsampler(upsampler, device=base.device)
    level = level_for_scale(zoom)
    opts = RenderOptions(background=WHITE)
    return [pseudo_gt(base, cam, level, up, opts).clamp(0, 1) for cam in cameras]


def score_views(
    renders: list[Tensor], gts: Tensor, with_lpips: bool
) -> tuple[list[float], float, float | None]:
    """(PSNR per view, mean SSIM, mean LPIPS or None) against ground truth [N, H, W, 3]."""
    p = [psnr(r, gt) for r, gt in zip(renders, gts, strict=True)]
    s = float(np.mean([ssim(r, gt) for r, gt in zip(renders, gts, strict=True)]))
    lp = (float(np.mean([lpips(r, gt) for r, gt in zip(renders, gts, strict=True)]))
          if with_lpips else None)
    return p, s, lp


def method_options(method: Method, zoom: float) -> RenderOptions:
    """How a method renders a view at `zoom` times the base sampling rate."""
    return RenderOptions(antialias=method.antialias, zoom=zoom, background=WHITE)


# -- the image grid ---------------------------------------------------------------------------

def crop_box(width: int, height: int, crop: tuple[float, float, float, float]) -> tuple[int, ...]:
    """Pixel box (x0, y0, x1, y1) of a crop given as fractions (x0, y0, x1, y1) of the image."""
    x0, y0 = int(math.floor(crop[0] * width)), int(math.floor(crop[1] * height))
    x1, y1 = max(x0 + 1, int(math.ceil(crop[2] * width))), max(y0 + 1, int(math.ceil(crop[3]
                                                                                     * height)))
    return x0, y0, x1, y1


def crop_for_grid(img: Tensor, crop: tuple[float, float, float, float], cell: int) -> np.ndarray:
    """The crop of an image, nearest-upscaled (or area-reduced) to cell x cell uint8 pixels,
    so every scale shows the same scene region with its own pixels visible. [H, W, 3] ->
    [cell, cell, 3]
    """
    h, w = img.shape[:2]
    x0, y0, x1, y1 = crop_box(w, h, crop)
    c = img[y0:y1, x0:x1].float().clamp(0, 1)
    x = c.permute(2, 0, 1)[None]
    mode = "nearest" if c.shape[0] <= cell else "area"
    y = torch.nn.functional.interpolate(x, size=(cell, cell), mode=mode)
    return (y[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)


# -- the protocol --------------------------------------------------------------------------

@dataclass
class StmtConfig:
    """Sizes of one protocol run.

    Attributes:
        settings: the bases and their test scales.
        methods: what to compare.
        test_every, test_limit: which test views are scored (every k-th, at most n).
        crop: the grid's crop as fractions (x0, y0, x1, y1) of the image.
        grid_view: which scored test view the grid shows.
        grid_cell: pixel size of one grid cell.
    """

    settings: tuple[Setting, ...] = (ZOOM_OUT, ZOOM_IN)
    methods: tuple[Method, ...] = tuple(default_methods())
    test_every: int = 1
    test_limit: int | None = None
    crop: tuple[float, float, float, float] = (0.3, 0.3, 0.7, 0.7)
    grid_view: int = 0
    grid_cell: int = 128


# adapt(base, setting, zoom, method, views) -> (adapted Gaussians, seconds, info dict)
AdaptFn = Callable[[Gaussians, Setting, float, Method, list[Camera]],
                   tuple[Gaussians, float, dict]]
# load(split, scale) -> PosedImages
LoadFn = Callable[[str, float], PosedImages]
# cameras(split, scale) -> cameras of the split at that scale (no images needed)
CamerasFn = Callable[[str, float], list[Camera]]


def run_protocol(
    bases: dict[str, tuple[Gaussians, float]],
    load: LoadFn,
    cameras: CamerasFn,
    adapt_level: AdaptFn,
    config: StmtConfig,
    data_name: str = "",
    log: Callable[[str], None] = print,
) -> tuple[StmtResults, dict]:
    """Score every method at every test scale of every setting.

    Args:
        bases: setting name -> (base Gaussians trained at its base scale, training seconds).
        load: gives a split of the data at a scale (cached by the loader).
        cameras: gives a split's cameras at a scale (the train views Mipmap-GS adapts on).
        adapt_level: builds the Mipmap-GS copy of a base for one zoom from the cameras
            given (train or test views at the TEST scale); returns (copy, seconds, info).
        config: sizes.
        log: one line per step.

    Returns:
        (results, grid images): grid[(setting, method or 'gt', scale)] = [cell, cell, 3] uint8.
    """
    lp_reason = lpips_unavailable_reason()
    with_lpips = lp_reason is None
    res = StmtResults(data=data_name, n_test_views=0, lpips_skipped=lp_reason,
                      settings=[asdict(s) for s in config.settings],
                      methods=[asdict(m) for m in config.methods], grid_crop=list(config.crop))
    grid: dict[tuple[str, str, float], np.ndarray] = {}

    def test_split(scale: float) -> PosedImages:
        data = load("test", scale)
        idx = list(range(0, len(data), max(1, config.test_every)))
        if config.test_limit is not None:
            idx = idx[: config.test_limit]
        return data.subset(idx)

    for setting in config.settings:
        base, base_seconds = bases[setting.name]
        own = test_split(setting.base_scale)
        res.n_test_views = len(own)
        renders = render_views(base, own.cameras, RenderOptions(background=WHITE))
        p, s, _ = score_views(renders, own.images, False)
        res.base[setting.name] = {"scale": setting.base_scale, "seconds": base_seconds,
                                  "psnr": float(np.mean(p)), "ssim": s, "n_gaussians": len(base),
                                  "size": list(own.size)}
        log(f"[{setting.name}] base at {format_scale(setting.base_scale)} "
            f"({own.size[0]}x{own.size[1]}): PSNR {np.mean(p):.2f} dB, SSIM {s:.4f}, "
            f"{len(base)} Gaussians, trained in {base_seconds:.0f} s")
        train_views: dict[float, list[Camera]] = {}
        for scale, zoom in zip(setting.test_scales, setting.zooms(), strict=True):
            test = test_split(scale)
            grid[(setting.name, "gt", scale)] = crop_for_grid(
                test.images[config.grid_view], config.crop, config.grid_cell)
            for method in config.methods:
                if method.zoom_in_only and zoom < 1:
                    continue
                g, opts = base, method_options(method, zoom)
                if method.adapt_on is not None:
                    if method.adapt_on == "train":
                        if scale not in train_views:
                            train_views[scale] = cameras("train", scale)
                        views = train_views[scale]
                    else:
                        views = test.cameras
                    g, secs, info = adapt_level(base, setting, zoom, method, views)
                    # the adapted set is shown in the mode it was finetuned in
                    opts = opts.replace(antialias=info.get("antialias", method.antialias))
                    res.adaptation.append({"setting": setting.name, "method": method.key,
                                           "scale": scale, "zoom": zoom, "seconds": secs,
                                           "ratio_to_base": secs / max(base_seconds, 1e-9),
                                           "n_gaussians": len(g), **info})
                    log(f"[{setting.name}] {method.key} x{format_scale(zoom)}: adapted in "
                        f"{secs:.0f} s, {len(g)} Gaussians")
                t0 = time.perf_counter()
                if method.pseudo_gt:
                    renders = pseudo_gt_views(base, test.cameras, zoom, method.upsampler)
                else:
                    renders = render_views(g, test.cameras, opts)
                ms = (time.perf_counter() - t0) * 1e3 / max(1, len(renders))
                p, s, lp = score_views(renders, test.images, with_lpips)
                res.scores.append(Score(setting.name, method.key, scale, zoom,
                                        float(np.mean(p)), s, lp, p, len(g), ms))
                grid[(setting.name, method.key, scale)] = crop_for_grid(
                    renders[config.grid_view], config.crop, config.grid_cell)
                log(f"[{setting.name}] x{format_scale(zoom)} ({test.size[0]}x{test.size[1]}) "
                    f"{method.key:<16} PSNR {np.mean(p):6.2f} dB  SSIM {s:.4f}")
    return res, grid


# -- Mipmap-GS per level, through adapt.pseudo_gt and adapt.finetune ---------------------------

def _protocol_views() -> ViewSettings:
    # The paper's mipmap level: the zoom-out pseudo-GT is the base at its own rate. On lego,
    # rendering the base 8x finer than the target (ViewSettings' default) makes a pseudo-GT
    # 4-5 dB further from the real images at x1/2: the base seen finer than its training
    # rate shows needles.
    return ViewSettings(zoom_out_supersample=1)


@dataclass(frozen=True)
class LevelSettings:
    """Sizes of one level's adaptation in the protocol.

    Attributes:
        iters: finetune steps (paper: 1,000).
        views: adaptation views and crops (adapt.views.ViewSettings); `n_views` of the
            given views are chosen evenly, its seed also seeds the finetune.
        chain_zoom_in: zoom-in levels finer than x2 are derived from the x2 level
            (adapt.worker.AdaptSettings.chain_zoom_in), as the viewer builds them.
    """

    iters: int = 1000
    views: ViewSettings = field(default_factory=_protocol_views)
    chain_zoom_in: bool = True


def evenly(items: list, n: int) -> list:
    """n items spread evenly over the list (all of them when there are no more than n)."""
    if len(items) <= n:
        return list(items)
    idx = np.linspace(0, len(items) - 1, n).round().astype(int)
    return [items[i] for i in idx]


def mipmap_adapter(settings: LevelSettings, base_cameras: CamerasFn | None = None,
                   log: Callable[[str], None] = print) -> AdaptFn:
    """An AdaptFn building the Mipmap-GS copy for a zoom: pseudo-GT of the base on the
    given views at the target scale (area-downsampled supersampled renders for zoom-out,
    the method's upsampler for zoom-in), then adapt.finetune's L2 finetune in the render
    mode adapt.finetune picks for the level (info["antialias"]: the adapted set must be
    shown in it). base_cameras(split, scale) gives the train cameras at the base scale,
    for the per-Gaussian base sampling rate of the finetune's warm start.

    With settings.chain_zoom_in, zoom-in levels finer than x2 are derived from the
    method's x2 level (adapt.finetune.derive_zoom_in), built on the same views at x2 the
    first time it is needed; their seconds are the derivation's, info["parent_seconds"]
    the x2 level's.
    """
    from adapt.finetune import CHAIN_FROM_LEVEL, FinetuneConfig, derive_zoom_in, finetune
    from adapt.pseudo_gt import build_views
    from adapt.scale import BaseSampling, level_for_scale
    from adapt.upsample import make_upsampler
    from adapt.views import rescaled_exact

    upsamplers: dict[str, object] = {}
    parents: dict[tuple, tuple[Gaussians, float]] = {}

    def base_rate(g: Gaussians, scale: float):
        if base_cameras is None:
            return None
        return BaseSampling.from_cameras(g, base_cameras("train", scale)).rate

    def finetuned(base: Gaussians, setting: Setting, zoom: float, method: Method,
                  views: list[Camera]) -> tuple[Gaussians, float, dict]:
        level = level_for_scale(zoom)
        key = method.upsampler
        if key not in upsamplers:
            upsamplers[key] = make_upsampler(key, device=base.device)
        options = RenderOptions(background=WHITE)
        vs = settings.views
        cams = evenly(views, vs.n_views)
        t0 = time.perf_counter()
        pairs = build_views(base, cams, level, upsamplers[key], vs, options)
        t1 = time.perf_counter()
        # A method drawn with Gaussian Blending is also finetuned under it, unmerged: the
        # zoom-out merge is there for frame time, and cost this row 0.4 dB at x1/2 and
        # 0.4 dB at x1/4 on lego. Others in the mode adapt.finetune picks for the level.
        mode = ({"antialias": "blend", "zoom_out_merge_px": 0.0}
                if method.antialias == "blend" else {})
        cfg = FinetuneConfig(iters=settings.iters, background=WHITE, seed=vs.seed, **mode)
        rate = base_rate(base, setting.base_scale)

        def progress(it: int, loss: float, n: int) -> None:
            if it % 100 == 0 or it == settings.iters:
                log(f"[{setting.name}] {method.key} x{format_scale(zoom)}: step {it}/"
                    f"{settings.iters}, L2 {loss:.5f}, {n} Gaussians")

        g = finetune(base, level, [c for c, _ in pairs], [img for _, img in pairs], cfg,
                     progress, base_rate=rate)
        t2 = time.perf_counter()
        return g, t2 - t0, {"level": level, "views": len(cams), "targets": len(pairs),
                            "iters": settings.iters, "pseudo_gt_seconds": t1 - t0,
                            "finetune_seconds": t2 - t1, "upsampler": key,
                            "antialias": cfg.render_options(level).antialias,
                            "zoom_out_supersample": vs.zoom_out_supersample}

    def adapt_level(base: Gaussians, setting: Setting, zoom: float, method: Method,
                    views: list[Camera]) -> tuple[Gaussians, float, dict]:
        level = level_for_scale(zoom)
        if not math.isclose(2.0**level, zoom, rel_tol=1e-6):
            raise ValueError(f"Mipmap-GS levels are powers of two; zoom {zoom} is not")
        chained = settings.chain_zoom_in and method.chain and method.antialias == "classic"
        pkey = (setting.name, method.key, id(base))
        if not chained or level <= CHAIN_FROM_LEVEL:
            g, secs, info = finetuned(base, setting, zoom, method, views)
            if chained and level == CHAIN_FROM_LEVEL:
                parents[pkey] = (g, secs)
            return g, secs, info
        step = 2.0**CHAIN_FROM_LEVEL
        if pkey not in parents:
            coarse = [rescaled_exact(c, step / zoom) for c in views]
            parent, secs, _ = finetuned(base, setting, step, method, coarse)
            parents[pkey] = (parent, secs)
        parent, parent_secs = parents[pkey]
        t0 = time.perf_counter()
        rate = base_rate(parent, setting.base_scale * step)
        if rate is None:
            raise ValueError("a derived zoom-in level needs the base cameras")
        g = derive_zoom_in(parent, rate, level - CHAIN_FROM_LEVEL)
        return g, time.perf_counter() - t0, {
            "level": level, "views": 0, "targets": 0, "iters": 0, "upsampler": method.upsampler,
            "antialias": "classic", "from_level": CHAIN_FROM_LEVEL,
            "parent_seconds": parent_secs}

    return adapt_level


# -- the report ---------------------------------------------------------------------------------

def _columns(res: StmtResults) -> list[tuple[str, float, float]]:
    """(setting, scale, zoom) for every table column, zoom-out first."""
    cols = []
    for s in res.settings:
        for scale in s["test_scales"]:
            cols.append((s["name"], scale, scale / s["base_scale"]))
    return cols


def table_markdown(res: StmtResults) -> str:
    """Method x scale tables (PSNR, then SSIM), like the paper's Table 1."""
    cols = _columns(res)
    head = "| method | " + " | ".join(f"×{format_scale(z)} ({format_scale(sc)})"
                                      for _, sc, z in cols) + " |"
    rule = "|---|" + "---|" * len(cols)
    out = []
    for metric, fmt in (("psnr", "{:.2f}"), ("ssim", "{:.4f}"), ("lpips", "{:.4f}")):
        if metric == "lpips" and res.lpips_skipped:
            out.append(f"LPIPS skipped: {res.lpips_skipped}.\n")
            continue
        bases = ", ".join(f"{s['name']} base at {format_scale(s['base_scale'])}"
                          for s in res.settings)
        out += [f"**{metric.upper()}** (mean over {res.n_test_views} test views; {bases}; "
                "columns: test scale / base scale (fraction of the images))", "", head, rule]
        for m in res.methods:
            cells = []
            for setting, scale, _ in cols:
                sc = res.score(setting, m["key"], scale)
                cells.append("–" if sc is None or getattr(sc, metric) is None
                             else fmt.format(getattr(sc, metric)))
            out.append(f"| {m['label']} | " + " | ".join(cells) + " |")
        out.append("")
    out.append("**Base models** (scored at their own scale on the same test views)")
    out.append("")
    out.append("| setting | scale | size | Gaussians | train s | PSNR | SSIM |")
    out.append("|---|---|---|---|---|---|---|")
    for name, b in res.base.items():
        out.append(f"| {name} | {format_scale(b['scale'])} | {b['size'][0]}×{b['size'][1]} | "
                   f"{b['n_gaussians']} | {b['seconds']:.0f} | {b['psnr']:.2f} | "
                   f"{b['ssim']:.4f} |")
    if res.adaptation:
        out += ["", "**Adaptation time per level** (seconds; ratio to the base's training)", "",
                "| setting | method | zoom | seconds | ratio | Gaussians | iters | shown with "
                "| zoom-in pseudo-GT |",
                "|---|---|---|---|---|---|---|---|---|"]
        for a in res.adaptation:
            iters = a.get("iters", "?")
            if "from_level" in a:  # derived: no finetune of its own
                iters = f"0 (×{format_scale(2.0 ** a['from_level'])} level, " \
                        f"{a['parent_seconds']:.1f} s)"
            out.append(f"| {a['setting']} | {a['method']} | ×{format_scale(a['zoom'])} | "
                       f"{a['seconds']:.1f} | {a['ratio_to_base']:.3f} | {a['n_gaussians']} | "
                       f"{iters} | {a.get('antialias', 'classic')} | "
                       f"{a.get('upsampler', 'bicubic') if a['zoom'] > 1 else '–'} |")
    return "\n".join(out) + "\n"


def plot_psnr(res: StmtResults, path: Path) -> None:
    """PSNR vs zoom, one line a method, one panel a setting (log2 x axis)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(res.settings), figsize=(4.2 * len(res.settings), 3.4),
                             squeeze=False, dpi=100)
    for ax, s in zip(axes[0], res.settings, strict=True):
        zooms = [sc / s["base_scale"] for sc in s["test_scales"]]
        for m in res.methods:
            ys = [res.score(s["name"], m["key"], sc) for sc in s["test_scales"]]
            if any(y is None for y in ys):
                continue
            ax.plot(zooms, [y.psnr for y in ys], marker="o", label=m["label"])
        ax.set_xscale("log", base=2)
        ax.set_xticks(zooms, [f"×{format_scale(z)}" for z in zooms])
        ax.minorticks_off()
        b = res.base.get(s["name"], {})
        ax.set_title(f"{s['name']} (base {format_scale(s['base_scale'])}"
                     + (f", {b['psnr']:.1f} dB at own scale)" if b else ")"), fontsize=9)
        ax.set_xlabel("test scale / base scale")
        ax.set_ylabel("PSNR (dB)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)


def grid_image(res: StmtResults, grid: dict, cell: int) -> np.ndarray:
    """Rows: ground truth, the base at its own scale, then each method; columns: every
    test scale of every setting. Empty cells are grey. -> [rows*cell, cols*cell, 3] uint8
    """
    from PIL import Image, ImageDraw

    cols = _columns(res)
    rows = [("gt", "ground truth")] + [(m["key"], m["label"]) for m in res.methods]
    label_w, head_h = 150, 18
    canvas = np.full((head_h + len(rows) * cell, label_w + len(cols) * cell, 3), 255, np.uint8)
    for r, (key, _) in enumerate(rows):
        for c, (setting, scale, _) in enumerate(cols):
            img = grid.get((setting, key, scale))
            if img is not None and img.shape[:2] != (cell, cell):
                img = np.asarray(Image.fromarray(img).resize((cell, cell), Image.BOX))
            y, x = head_h + r * cell, label_w + c * cell
            canvas[y:y + cell, x:x + cell] = img if img is not None else 200
    im = Image.fromarray(canvas)
    draw = ImageDraw.Draw(im)
    for c, (setting, _, zoom) in enumerate(cols):
        draw.text((label_w + c * cell + 4, 3), f"{setting} x{format_scale(zoom)}", fill=(0, 0, 0))
    for r, (_, label) in enumerate(rows):
        draw.text((4, head_h + r * cell + cell // 2 - 6), label[:24], fill=(0, 0, 0))
    return np.asarray(im)


def write_report(res: StmtResults, grid: dict, out_dir: Path, cell: int) -> dict[str, Path]:
    """results.json, table.md, psnr_vs_scale.png, grid.png in out_dir (temp name + rename)."""
    from PIL import Image

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"results": out_dir / "results.json", "table": out_dir / "table.md",
             "plot": out_dir / "psnr_vs_scale.png", "grid": out_dir / "grid.png"}

    def put_text(path: Path, text: str) -> None:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text)
        tmp.replace(path)

    put_text(paths["results"], json.dumps(res.to_json(), indent=1, allow_nan=False,
                                          default=_json_default))
    # the grid's cells, so that reports of separate runs can be merged into one
    cells = {f"{k[0]}|{k[1]}|{k[2]!r}": v for k, v in grid.items()}
    tmp_npz = out_dir / ".grid_cells.tmp.npz"
    np.savez_compressed(tmp_npz, **cells)
    tmp_npz.replace(out_dir / "grid_cells.npz")
    put_text(paths["table"], table_markdown(res))
    plot_psnr(res, paths["plot"])
    tmp = out_dir / ".grid.png.tmp.png"
    Image.fromarray(grid_image(res, grid, cell)).save(tmp, optimize=True)
    tmp.replace(paths["grid"])
    return paths


def load_report(out_dir: Path) -> tuple[StmtResults, dict]:
    """Read back what :func:`write_report` wrote (results.json, grid_cells.npz)."""
    d = json.loads((out_dir / "results.json").read_text())
    scores = [Score(**sc) for sc in d.pop("scores")]
    res = StmtResults(**d)
    res.scores = scores
    grid = {}
    cells = out_dir / "grid_cells.npz"
    if cells.is_file():
        with np.load(cells) as z:
            for k in z.files:
                setting, method, scale = k.split("|")
                grid[(setting, method, float(scale))] = z[k]
    return res, grid


def merge_results(parts: list[tuple[StmtResults, dict]]) -> tuple[StmtResults, dict]:
    """One report from runs on the same data: of different settings, or of other methods
    on the same setting (settings and methods in first-seen order; scores of a method at a
    scale measured twice are both kept, the first one is shown)."""
    res = StmtResults(data=parts[0][0].data, n_test_views=parts[0][0].n_test_views,
                      lpips_skipped=parts[0][0].lpips_skipped,
                      config=parts[0][0].config, grid_crop=parts[0][0].grid_crop)
    grid: dict = {}
    res.methods = []
    for r, g in parts:
        if r.data != res.data:
            raise ValueError(f"cannot merge runs on different data: {r.data} vs {res.data}")
        # methods in first-seen order; a method a run left out shows as '–' there
        known = {m["key"] for m in res.methods}
        res.methods += [m for m in r.methods if m["key"] not in known]
        # the same setting in two runs (e.g. a method added later) keeps one column set
        names = {x["name"] for x in res.settings}
        res.settings += [x for x in r.settings if x["name"] not in names]
        for name, b in r.base.items():
            res.base.setdefault(name, b)
        res.adaptation += r.adaptation
        res.scores += r.scores
        grid.update(g)
    if len(parts) > 1:
        res.config = {"runs": [r.config for r, _ in parts]}
    return res, grid


def _json_default(o):
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    raise TypeError(f"cannot serialise {type(o).__name__}")
