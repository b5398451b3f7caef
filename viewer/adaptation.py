"""Live Mipmap-GS in the viewer: the controller between the window and adapt.worker.

:class:`AdaptController` owns, for the model on screen, the background
:class:`~adapt.worker.AdaptWorker` and its :class:`~adapt.cache.LevelCache`. The window
calls :meth:`AdaptController.update` once per UI frame (on the GL thread); it costs a
status copy under a lock and a few comparisons, never a render, a file read or a
host-to-device copy:

- it feeds the :class:`~adapt.scale.LevelTracker` with the effective scale of the
  full-resolution view (the render thread computes it at most every 0.2 s, so this is
  throttled already) and, when auto-adapt is on, asks the worker for the level the
  tracker wants (the newest request wins: a job for a level no longer wanted stops);
- it picks the level in use: the wanted level when it is ready, else the ready level
  nearest to it (level 0, the base set, is always ready);
- it plugs the adapted set of the level in use into the comparison as source B,
  "Mipmap-GS (level ...)", against A "vanilla". The swap happens at a frame boundary:
  the render thread gets its Gaussians through the next FrameRequest, so a render in
  flight finishes with the old set and the next one uses the new set. Sets that must
  move to another device (CUDA) are copied in a helper thread first, so the UI thread
  never waits for an upload;
- it notices a new model (the app replaced ``state.model``) and restarts: the old worker
  is told to stop (without waiting for it), a new cache and worker are set up in a
  helper thread (hashing a large file and reading cached levels take seconds).

Everything the panel (viewer/adapt_panel.py) shows is read from this object.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from adapt.cache import LevelCache, LevelInfo, cache_dir_for, file_sha256, gaussians_sha256
from adapt.scale import (
    MAX_LEVEL,
    MIN_LEVEL,
    BaseSampling,
    LevelTracker,
    ScaleProbe,
    effective_scale,
    level_label,
)
from adapt.upsample import PSEUDO_GT_NAMES, default_zoom_in_pseudo_gt
from adapt.worker import AdaptSettings, AdaptStatus, AdaptWorker
from render.camera import Camera
from render.gaussians import Gaussians
from viewer.compare import Source, other_antialias

log = logging.getLogger("mipview.viewer")

LEVELS: tuple[int, ...] = tuple(lv for lv in range(MIN_LEVEL, MAX_LEVEL + 1) if lv != 0)
A_LABEL = "vanilla"


def b_overrides(level: int, info: dict | None = None) -> dict:
    """Render options of source B: each level is drawn with the rasterizer mode it was
    finetuned in (`mip` for zoom-out levels by default, vanilla 3DGS for zoom-in), or, a
    level kept as the base in its training-free rival mode (adapt.worker.check_level;
    its cache info says so), in that mode; the base set (level 0) as the user set it,
    like source A (the single view shows B)."""
    if level == 0:
        return {}
    rival = (info or {}).get("antialias")
    return {"antialias": rival or AdaptSettings().finetune.antialias_for(level)}


def b_label(level: int, info: dict | None = None) -> str:
    """The label of source B for the level in use."""
    if level == 0:
        return "Mipmap-GS (level 1 = base)"
    rival = (info or {}).get("antialias")
    if rival:
        return f"Mipmap-GS (level {level_label(level)}: the base, {rival})"
    return f"Mipmap-GS (level {level_label(level)})"


def base_b_label(antialias: str) -> str:
    """The label of source B beside A before any level exists: the base, drawn with the
    other antialias mode."""
    return f"Mipmap-GS: no level yet, base ({antialias})"


def a_label(antialias: str) -> str:
    """The label of source A: the base set with the UI's antialias mode."""
    return A_LABEL if antialias == "classic" else f"base ({antialias})"


def nearest_ready(wanted: int, ready: set[int]) -> int:
    """The ready level nearest to `wanted` (in levels, i.e. log2 scale); ties go to the
    level nearer to the base. Level 0 always counts as ready."""
    pool = set(ready) | {0}
    return min(pool, key=lambda lv: (abs(lv - wanted), abs(lv)))


@dataclass
class AdaptOptions:
    """What the panel edits (applied with :meth:`AdaptController.apply_settings`).

    Attributes:
        iters: finetune iterations per level (paper: 1,000).
        views: adaptation views per level.
        sr_model: the zoom-in pseudo-GT: "" for the default (see
            :func:`zoom_in_pseudo_gt_text`), `bicubic`, `adaptive`, `waifu2x`, or a
            spandrel super-resolution checkpoint's path.
        build_level: the level "Build level now" asks for.
        export_path: where "Export .ply" writes ("" = next to the model / in the cwd).
        export_baked: export zoom-out levels with the mip filter baked in, untagged, for
            viewers that know no anti-aliasing tag (adapt.bake).
        rival_check: a level that scores under the base drawn in its training-free rival
            mode on held-out views is that instead (AdaptSettings.rival_check).
    """

    iters: int = 1000
    views: int = 24
    sr_model: str = ""
    build_level: int = -2
    export_path: str = ""
    export_baked: bool = False
    rival_check: bool = True

    def settings(self, base: AdaptSettings | None = None) -> AdaptSettings:
        base = base or AdaptSettings()
        ft = replace(base.finetune, iters=max(1, int(self.iters)), views=max(1, int(self.views)))
        vs = replace(base.views, n_views=max(1, int(self.views)))
        return replace(base, finetune=ft, views=vs, sr_model=self.sr_model.strip() or None,
                       rival_check=self.rival_check)


@dataclass
class _Setup:
    """What the helper thread prepares for one model (or one re-basing)."""

    model: object
    cameras: list[Camera] = field(default_factory=list)
    own_cameras: list[Camera] = field(default_factory=list)
    worker: AdaptWorker | None = None
    cache: LevelCache | None = None
    base: BaseSampling | None = None
    levels: dict[int, LevelInfo] = field(default_factory=dict)
    error: str = ""


class AdaptController:
    """Owns the adaptation of the model on screen. See the module docstring.

    Args:
        device: the render device; adapted sets are moved there before B uses them.
        cache_root: put each model's level cache in `cache_root/<model hash>` instead of
            beside the model file (tests, benchmarks); None = adapt.cache's rule.
        options: the initial settings (iterations, views, SR model).
        render_threads: CPU threads of the worker (None: adapt.worker's default, half
            the cores).
        clock: monotonic seconds; the level tracker's hold time is measured with it.
    """

    def __init__(self, device: torch.device | str = "cpu", cache_root: str | Path | None = None,
                 options: AdaptOptions | None = None, render_threads: int | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.device = torch.device(device)
        self.cache_root = Path(cache_root) if cache_root is not None else None
        self.options = options or AdaptOptions()
        self.render_threads = render_threads
        self.clock = clock
        self.auto = True
        self.tracker = LevelTracker()
        self.worker: AdaptWorker | None = None
        self.cache: LevelCache | None = None
        self.levels: dict[int, LevelInfo] = {}
        self.level_in_use = 0
        self.pinned: int | None = None  # a level picked by hand (auto-adapt off)
        self.message = ""  # the last action's outcome (export, delete, rebase)
        self.error = ""  # a failure of the controller itself (setup, export)
        self.rebased: Camera | None = None  # "this view is x1", None = the model's base
        self._lock = threading.Lock()
        self._model = None
        self._gaussians: Gaussians | None = None
        self._base_cameras: list[Camera] = []  # the cameras the worker adapts from
        self._own_cameras: list[Camera] = []  # the model's own (training or virtual)
        self._up: tuple[float, float, float] = (0.0, -1.0, 0.0)
        self.plug_b = True  # compare: B = Mipmap-GS (the panel can turn it off)
        self._setup_result: _Setup | None = None
        self._setup_token = 0
        self._status = AdaptStatus()
        self._last_event: tuple = ()
        self._source: Source | None = None
        self._source_key: tuple | None = None
        self._staging: dict[tuple, Gaussians | None] = {}
        self._scale_fn = None

    # -- what the panel reads -------------------------------------------------------------
    @property
    def ready(self) -> bool:
        """Whether the worker for the current model is running."""
        return self.worker is not None

    @property
    def status(self) -> AdaptStatus:
        """The worker's status as of the last update() (a copy)."""
        return self._status

    @property
    def wanted_level(self) -> int:
        """The level the view asks for: the tracker's (auto) or the pinned one."""
        if not self.auto and self.pinned is not None:
            return self.pinned
        return self.tracker.level

    @property
    def source(self) -> Source | None:
        """Source B as plugged in now (None before the first frame)."""
        return self._source

    def busy(self) -> bool:
        return self.worker is not None and self.worker.busy()

    # -- the per-frame hook --------------------------------------------------------------
    def update(self, app) -> None:
        """Once per UI frame, on the GL thread, before the view is requested."""
        s = app.state
        if s.model is not self._model:
            self._attach(s.model, app)
        self._poll_setup(app)
        if self.worker is None:
            return
        self._status = self.worker.status()
        event = (self._status.level, self._status.phase)
        if event != self._last_event:
            self._last_event = event
            if self._status.phase == "done":
                self.refresh_levels()
        scale = s.scale
        if self.auto and scale is not None and math.isfinite(scale) and scale > 0:
            level = self.tracker.update(self.clock(), scale)
            if level is not None:
                self.worker.request(level, app.view_camera())
        self._plug_source(app)

    # -- model lifecycle -----------------------------------------------------------------
    def _attach(self, model, app) -> None:
        """A new model is on screen: drop everything of the old one, set up the new."""
        self._stop_worker(wait=False)
        self._model = model
        self._gaussians = model.gaussians
        self.levels = {}
        self.level_in_use = 0
        self.pinned = None
        self.tracker.set_level(0)
        self.rebased = None
        self._staging.clear()
        self._source = None
        self._source_key = None
        self._status = AdaptStatus()
        self._last_event = ()
        self.error = ""
        self.message = ""
        self._base_cameras, self._own_cameras = [], []
        self._up = tuple(float(v) for v in app.state.nav.up)
        self._start_setup(model, None)

    def _start_setup(self, model, rebase_view: Camera | None, readout: bool = False) -> None:
        """Prepare cache and worker in a helper thread (hashing and reading cached levels
        of a large model take seconds; the UI keeps drawing meanwhile)."""
        self._setup_token += 1
        token = self._setup_token
        options = self.options
        own, up = list(self._own_cameras), self._up

        def job() -> None:
            res = _Setup(model)
            try:
                from viewer.models import base_cameras_for

                g = model.gaussians
                res.own_cameras = own or base_cameras_for(model, up)
                cams, base = res.own_cameras, None
                if rebase_view is not None:
                    cams, base = rebased_cameras(g, res.own_cameras, rebase_view)
                elif readout:  # back to the model's own base for the zoom readout
                    base = BaseSampling.from_cameras(g, res.own_cameras)
                res.cameras, res.base = cams, base
                path = getattr(model, "path", None)
                settings = options.settings()
                key = settings.key()
                if base is not None:  # a re-based view: levels of the model's base differ
                    key += "-x1" + _cameras_hash(cams)
                h = file_sha256(path) if path is not None else gaussians_sha256(g)
                if self.cache_root is not None:
                    directory = self.cache_root / h[:32]
                else:
                    directory = cache_dir_for(path, h)
                cache = LevelCache(h, key, directory)
                res.levels = cache.levels()  # reads valid levels from disk into memory
                res.cache = cache
                res.worker = AdaptWorker(g, cams, cache, settings, self.render_threads)
            except Exception as exc:  # no adaptation is better than no viewer
                log.exception("setting up adaptation failed")
                res.error = f"adaptation unavailable: {type(exc).__name__}: {exc}"
            with self._lock:
                if token == self._setup_token:
                    self._setup_result = res
                elif res.worker is not None:  # superseded while it ran
                    res.worker.shutdown(timeout=0)

        threading.Thread(target=job, name="mipview-adapt-setup", daemon=True).start()

    def _poll_setup(self, app) -> None:
        with self._lock:
            res, self._setup_result = self._setup_result, None
        if res is None:
            return
        if res.model is not self._model:
            if res.worker is not None:
                res.worker.shutdown(timeout=0)
            return
        if res.error:
            self.error = res.error
            return
        self.worker, self.cache, self.levels = res.worker, res.cache, res.levels
        self._base_cameras, self._own_cameras = res.cameras, res.own_cameras
        if res.base is not None:
            try:
                # Relative to the model's own set, whichever source the view shows.
                probe = ScaleProbe(res.base, self._gaussians)
                self._scale_fn = lambda _shown, cam: probe(cam)
                app.worker.set_scale_fn(self._scale_fn)
                # The render thread recomputes the readout with the next view it renders;
                # the view has not changed, so compute it now (subsampled: ~0.2 ms).
                app.worker.scale = probe(app.view_camera())
            except Exception as exc:
                self.error = f"zoom readout: {type(exc).__name__}: {exc}"

    def wait_ready(self, app, timeout: float = 60.0) -> bool:
        """Step the app until the worker is set up (scripts and tests)."""
        t_end = time.monotonic() + timeout
        while self.worker is None and time.monotonic() < t_end:
            app.step()
            time.sleep(0.01)
        return self.worker is not None

    def _stop_worker(self, wait: bool) -> None:
        self._setup_token += 1  # a setup still running is superseded
        w, self.worker, self.cache = self.worker, None, None
        if w is not None:
            w.shutdown(timeout=10.0 if wait else 0.0)

    def shutdown(self) -> None:
        """Stop the worker and wait for it (the window is closing)."""
        self._stop_worker(wait=True)

    # -- source B --------------------------------------------------------------------------
    def _plug_source(self, app) -> None:
        ready = set(self.levels)
        in_use = nearest_ready(self.wanted_level, ready)
        g = self._gaussians if in_use == 0 else self._device_set(in_use)
        if g is None:  # still being copied to the device: keep what is shown
            in_use = self.level_in_use if self._source is not None else 0
            g = self._source.gaussians if self._source is not None else self._gaussians
        cmp = app.state.compare
        info = self.levels[in_use].info if in_use in self.levels else None
        label, overrides = b_label(in_use, info), b_overrides(in_use, info)
        if in_use == 0 and cmp.mode != "single":
            # No level yet: two panes of the same base with the same options would be
            # identical; B shows the other antialias mode until a level exists (--help).
            alt = other_antialias(app.state.render.antialias)
            label, overrides = base_b_label(alt), {"antialias": alt}
        key = (in_use, id(g), label)
        if key != self._source_key:
            self._source = Source(g, label, overrides)
            self._source_key = key
            self.level_in_use = in_use
        ours = cmp.custom_b is not None and cmp.custom_b.label.startswith("Mipmap-GS")
        if self.plug_b and (cmp.custom_b is None or ours) and cmp.custom_b is not self._source:
            if not ours:
                # From now on the single view shows the set the viewer adapts (the base
                # until a level is built, then that level, hot-swapped in); the flip key
                # shows vanilla.
                cmp.shown = "B"
            cmp.set_source_b(self._source)  # a B plugged in by someone else stays
        elif not self.plug_b and ours:
            cmp.set_source_b(None)
            cmp.shown = "A"
        if cmp.custom_b is self._source:
            cmp.a_label = a_label(app.state.render.antialias)
        elif cmp.a_label == A_LABEL or cmp.a_label.startswith("base ("):
            cmp.a_label = ""

    def _device_set(self, level: int) -> Gaussians | None:
        """The cached set of a level on the render device, or None while it is copied."""
        info = self.levels.get(level)
        g = self.cache.get(level) if self.cache is not None and info is not None else None
        if g is None:
            return None
        if g.device == self.device:
            return g
        key = (level, id(g))
        if key in self._staging:
            return self._staging[key]
        for old in [k for k in self._staging if k[0] == level]:
            del self._staging[old]  # an older build of this level
        self._staging[key] = None
        staging = self._staging  # cleared (not replaced) on restart: a late copy is dropped

        def copy() -> None:
            moved = g.to(self.device)
            if key in staging:
                staging[key] = moved

        threading.Thread(target=copy, name="mipview-adapt-upload", daemon=True).start()
        return None

    # -- actions (the panel calls these) ------------------------------------------------
    def set_auto(self, on: bool) -> None:
        if on and not self.auto:
            self.tracker.set_level(self.level_in_use)
            self.pinned = None
        elif not on:
            self.pinned = self.level_in_use
        self.auto = bool(on)

    def use_level(self, level: int) -> None:
        """Show a level picked by hand (turns auto-adapt off)."""
        self.auto = False
        self.pinned = int(level)

    def build(self, level: int, view: Camera | None = None) -> None:
        """"Build level now": ask the worker for a level (the newest request wins)."""
        if self.worker is None:
            self.message = "the worker is still starting"
            return
        self.worker.request(int(level), view)

    def cancel(self) -> None:
        if self.worker is not None:
            self.worker.cancel()

    def refresh_levels(self) -> None:
        if self.cache is not None:
            self.levels = self.cache.levels()

    def delete(self, level: int) -> None:
        if self.cache is None:
            return
        try:
            self.cache.delete(level)
            self.message = f"deleted level {level_label(level)}"
        except OSError as exc:
            self.error = f"deleting level {level_label(level)} failed: {exc}"
        self.refresh_levels()

    def default_export_path(self, level: int) -> str:
        model = self._model
        stem = Path(model.path).stem if model is not None and model.path else "demo"
        folder = Path(model.path).parent if model is not None and model.path else Path.cwd()
        tag = level_label(level).replace("/", "-")
        return str(folder / f"{stem}_level_{tag}.ply")

    def export(self, level: int, path: str | Path) -> threading.Thread | None:
        """Write a cached level at `path` in the format its name asks for (.ply,
        .compressed.ply, .splat, .spz, .sog), tagged with the antialias mode it was
        finetuned in (a zoom-out level: `antialiased`; with options.export_baked, the mip
        filter baked in at the level's scale instead, untagged), in a helper thread (a
        large set takes a second); the outcome goes to message / error."""
        if self.cache is None or level not in self.levels:
            self.error = f"level {level_label(level)} is not built"
            return None
        info = self.levels[level].info
        if info.get("antialias"):
            self.error = (f"level {level_label(level)} is the base drawn {info['antialias']}"
                          " (it beat the finetune on held-out views), a view-dependent "
                          "filter no file carries: export the base instead")
            return None
        g = self.cache.get(level)
        path = Path(path).expanduser()
        bake = self.options.export_baked
        self.message = f"exporting level {level_label(level)} to {path} ..."
        self.error = ""

        def job() -> None:
            from render.io import format_for_path, model_for_antialias, save_model

            try:
                fmt = format_for_path(path)
                if not path.parent.is_dir():
                    raise FileNotFoundError(f"folder {path.parent} does not exist")
                tag = model_for_antialias(b_overrides(level).get("antialias", "classic"))
                out = g
                if bake and tag == "antialiased":
                    from adapt.bake import bake_level

                    out = bake_level(g, self._base_cameras, level,
                                     self.options.settings().finetune.base_options())
                    tag = "default"
                save_model(out, path, model=tag, fmt=fmt)
                self.message = f"exported level {level_label(level)} to {path}"
            except Exception as exc:
                self.message = ""
                self.error = f"export to {path} failed: {type(exc).__name__}: {exc}"

        t = threading.Thread(target=job, name="mipview-adapt-export", daemon=True)
        t.start()
        return t

    def apply_settings(self, options: AdaptOptions | None = None) -> None:
        """New iterations / views / SR model: a new worker (and cache key); levels built
        with other settings are not reused."""
        if options is not None:
            self.options = options
        sr = self.options.sr_model.strip()
        if sr and sr not in PSEUDO_GT_NAMES and not Path(sr).is_file():
            self.error = f"SR model {sr} not found"
            return
        self._restart()
        self.message = "settings applied"

    def rebase(self, view: Camera) -> None:
        """"This view is x1": the current view becomes the base sampling rate (see
        :func:`rebased_cameras`); the zoom readout then reads x1 here. Levels built on
        the old base are kept on disk under their own key but not used."""
        self.rebased = view
        self.tracker.set_level(0)
        self.pinned = None
        self._restart()
        self.message = "this view is now x1"

    def reset_base(self, app) -> None:
        """Back to the model's own base cameras (and the app's own zoom readout)."""
        if self.rebased is None:
            return
        self.rebased = None
        self.tracker.set_level(0)
        self._restart(readout=True)
        self.message = "base: the model's own cameras"

    def _restart(self, readout: bool = False) -> None:
        if self._model is None:
            return
        self._stop_worker(wait=False)
        self.levels = {}
        self._staging.clear()
        self._status = AdaptStatus()
        self._last_event = ()
        self.error = ""
        self._start_setup(self._model, self.rebased, readout)


def rebased_cameras(g: Gaussians, own: list[Camera],
                    view: Camera) -> tuple[list[Camera], BaseSampling]:
    """Base cameras and sampling for "this view is x1".

    The model's own base cameras are rescaled by the view's scale against them, so they
    sample at the rate of the view, and the view itself joins them; the readout's base
    sampling is the view's own rate (so the view reads exactly x1). Cameras that would
    shrink below 8 pixels are dropped.
    """
    s = effective_scale(BaseSampling.from_cameras(g, own), g, view)
    if not (math.isfinite(s) and s > 0):
        s = 1.0
    cams = [view] + [c.scaled(s) for c in own if min(c.width, c.height) * s >= 8]
    return cams, BaseSampling.from_camera(g, view)


def _cameras_hash(cams: list[Camera]) -> str:
    h = hashlib.sha256()
    for c in cams:
        h.update(c.viewmat.numpy().tobytes())
        h.update(f"{c.fx:.6g},{c.fy:.6g},{c.cx:.6g},{c.cy:.6g},{c.width},{c.height}".encode())
    return h.hexdigest()[:12]


def progress_text(st: AdaptStatus) -> tuple[float, str]:
    """(fraction in [0, 1], overlay text) of the progress bar for a status."""
    if st.phase in ("idle",) or st.level is None:
        return 0.0, "idle"
    lab = level_label(st.level)
    if st.phase == "pseudo-gt":
        frac = st.step / st.total if st.total else 0.0
        return 0.1 * frac, f"{lab}: pseudo-GT view {st.step}/{st.total}"
    if st.phase == "finetune":
        frac = st.step / st.total if st.total else 0.0
        eta = f", ETA {st.eta_s:.0f} s" if math.isfinite(st.eta_s) else ""
        loss = f", loss {st.loss:.2e}" if math.isfinite(st.loss) else ""
        return 0.1 + 0.9 * frac, f"{lab}: finetune {st.step}/{st.total}{loss}{eta}"
    if st.phase == "checking":
        return 1.0, f"{lab}: checking it on held-out views"
    if st.phase == "saving":
        return 1.0, f"{lab}: saving"
    if st.phase == "done":
        return 1.0, f"{lab}: done in {st.seconds:.0f} s ({st.gaussians:,} Gaussians)"
    if st.phase == "cancelled":
        return 0.0, f"{lab}: cancelled"
    return 0.0, f"{lab}: failed"


def level_rows(ctrl: AdaptController) -> list[tuple[int, str, str, str]]:
    """The table of cached levels: (level, "1/4", "12,345", "95 s"), finest last; a level
    kept as the base in a 2D mode names it ("x2 adaptive")."""
    def name(lv: int, info: LevelInfo) -> str:
        mode = info.info.get("antialias")
        return f"{level_label(lv)} {mode}" if mode else level_label(lv)

    return [(lv, name(lv, info), f"{info.gaussians:,}", f"{info.seconds:.0f} s")
            for lv, info in sorted(ctrl.levels.items())]


_PSEUDO_GT_TEXT = {
    "waifu2x": "waifu2x photo x2 super-resolution of the base render, then bicubic",
    "adaptive": "the base drawn at the target rate with the adaptive dilation",
    "bicubic": "bicubic upsampling of the base render",
}


def zoom_in_pseudo_gt_text(options: AdaptOptions) -> str:
    """What zoom-in levels are finetuned on, for the panel: the default (the winner of
    the protocol, docs/stmt_table.md) or the user's choice. The x2 level is finetuned on
    it; finer levels are derived from the x2 level (adapt.finetune.derive_zoom_in)."""
    sr = options.sr_model.strip()
    name = sr or default_zoom_in_pseudo_gt()
    text = _PSEUDO_GT_TEXT.get(name, f"super-resolution by {Path(name).name} (spandrel)")
    return (f"zoom-in pseudo-GT (x2 level): {text}" + ("" if sr else " (default)")
            + "\nx4 and finer: the x2 level with their dilation baked in")


def error_text(ctrl: AdaptController) -> str:
    """The error the panel shows in red ("" when none)."""
    st = ctrl.status
    if st.phase == "error" and st.error:
        return st.error
    return ctrl.error
