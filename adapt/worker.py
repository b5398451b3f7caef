"""The background worker that builds levels while the viewer runs, and the job it runs.

One thread, one job at a time. `request(level, view)` returns at once; the newest request
wins: a running job for a level no longer wanted stops between two optimisation steps
(or between two pseudo-GT views). The worker never touches GL; the viewer reads
`status()` (a copy taken under a lock) each frame and takes finished levels with
`get(level)` at a frame boundary.

How the viewer uses it (second round):

    worker = AdaptWorker(base, base_cameras, LevelCache.for_model(base, settings.key(),
                         model_path), settings)
    tracker = LevelTracker()                    # adapt.scale
    each frame:
        s = effective_scale(base_sampling, base, camera)
        want = tracker.update(time.monotonic(), s)
        if want is not None and auto_adapt: worker.request(want, camera)
        st = worker.status()                    # progress bar: st.phase, st.step/st.total,
                                                #   st.eta_s, st.error; cancel -> worker.cancel()
        g = worker.get(tracker.level)           # None until ready: keep showing the base
        shown = g if g is not None else base    # swap at the frame boundary
        render(shown, camera, worker.options_for(level_shown, options))
    panel: worker.cache.levels() (Gaussians, build seconds), worker.cache.delete(L),
           worker.cache.export(L, path)
    on exit: worker.shutdown()

Cores: the job runs with `render_threads` threads (default: half the cores, at least 1)
for torch's intra-op pool (OpenMP, whose thread count is per calling thread) and for
numba's parallel kernels (`numba.set_num_threads`, thread-local); both are set inside the
worker thread, so the main thread keeps its own counts. On Linux the worker thread also
lowers its own scheduling priority (nice +10, per thread on Linux), so that when the
render loop and the job compete for a core the render loop wins.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from torch import Tensor

from adapt.cache import LevelCache, file_sha256
from adapt.finetune import (
    CHAIN_FROM_LEVEL,
    FinetuneConfig,
    derive_zoom_in,
    finetune,
    warm_start,
)
from adapt.optimize import Cancelled
from adapt.pseudo_gt import build_views, held_out_psnr
from adapt.scale import BaseSampling, level_label
from adapt.upsample import (
    PSEUDO_GT_NAMES,
    Upsampler,
    default_zoom_in_pseudo_gt,
    make_upsampler,
)
from adapt.views import ViewSettings, at_level, select_views
from render.camera import Camera
from render.gaussians import Gaussians
from render.options import RenderOptions

log = logging.getLogger("mipview.adapt")

PHASES = ("idle", "pseudo-gt", "finetune", "checking", "saving", "done", "error",
          "cancelled")


def checkpoint_sha256(path: Path) -> str | None:
    """sha256 of a checkpoint file, None when it cannot be read (keys are built once per
    model opened, so the file is simply read each time)."""
    try:
        return file_sha256(path)
    except OSError:
        return None


@dataclass(frozen=True)
class AdaptSettings:
    """Everything that decides what a level becomes (and so keys the cache).

    Attributes:
        finetune: iterations, learning rates, densification, background, backend.
        views: how many views, hold-out, jitter, crops.
        sr_model: the zoom-in pseudo-GT: None for the default (adapt.upsample.
            default_zoom_in_pseudo_gt: waifu2x where installed, else the adaptive
            render), `bicubic`, `adaptive`, `waifu2x`, or a spandrel checkpoint's path.
        use_current_view: add jittered copies of the user's view to the adaptation views.
        chain_zoom_in: zoom-in levels finer than x2 are derived from the x2 level
            (adapt.finetune.derive_zoom_in) instead of finetuned on their own.
        rival_check: a level that scores under the base drawn in a training-free mode
            (RIVAL_MODES) on held-out views is that instead (see check_level). Off
            where a level must be a file of its own (`mipview adapt`): no file format
            carries a view-dependent filter.
    """

    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    views: ViewSettings = field(default_factory=ViewSettings)
    sr_model: str | None = None
    use_current_view: bool = True
    chain_zoom_in: bool = True
    rival_check: bool = True

    def key(self) -> str:
        """A short stable hash of the settings (and of the SR checkpoint's content: new
        weights under the same name make new levels)."""
        d = {"finetune": asdict(self.finetune), "views": asdict(self.views),
             "use_current_view": self.use_current_view, "sr_model": None,
             "chain_zoom_in": self.chain_zoom_in, "rival_check": self.rival_check,
             "zoom_in_pseudo_gt": (default_zoom_in_pseudo_gt() if self.sr_model is None
                                   else None)}
        if self.sr_model is not None and self.sr_model not in PSEUDO_GT_NAMES:
            d["sr_model"] = checkpoint_sha256(Path(self.sr_model))
        elif self.sr_model is not None:
            d["sr_model"] = self.sr_model
        text = json.dumps(d, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def derives(self, level: int) -> bool:
        """Whether `level` is derived from level CHAIN_FROM_LEVEL, not finetuned: zoom-in
        levels drawn classic (the derivation bakes the classic dilation), as the
        protocol's chained methods."""
        return (self.chain_zoom_in and level > CHAIN_FROM_LEVEL
                and self.finetune.antialias_for(level) == "classic")

    def zoom_in_pseudo_gt(self) -> str:
        """The zoom-in pseudo-GT these settings use: a name or a checkpoint's path."""
        return self.sr_model if self.sr_model is not None else default_zoom_in_pseudo_gt()


@dataclass
class AdaptStatus:
    """A snapshot of the worker for the UI.

    Attributes:
        level: the level being (or last) worked on; None before the first request.
        phase: one of PHASES.
        step, total: progress within the phase (views for pseudo-gt, iterations for
            finetune).
        loss: the last finetune loss.
        eta_s: estimated seconds left for the whole job (NaN when unknown).
        error: the message of a failed job.
        gaussians: Gaussians in the set being optimised (or of the finished level).
        seconds: wall time of the job so far.
    """

    level: int | None = None
    phase: str = "idle"
    step: int = 0
    total: int = 0
    loss: float = math.nan
    eta_s: float = math.nan
    error: str = ""
    gaussians: int = 0
    seconds: float = 0.0


@dataclass
class LevelResult:
    """What one job produced."""

    gaussians: Gaussians
    seconds: float
    iterations: int
    n_views: int
    held_out: list[Camera]
    upsampler: str
    from_level: int | None = None  # a derived level: the level it comes from
    antialias: str | None = None  # drawn so, not in its level's own mode (check_level)


def adapt_level(
    base: Gaussians, base_cameras: list[Camera], level: int, settings: AdaptSettings,
    upsampler: Upsampler | None = None, view: Camera | None = None,
    on_phase: Callable[[str, int, int], None] | None = None,
    progress: Callable[[int, float, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    parent: LevelResult | None = None,
) -> LevelResult:
    """Build one level: choose views, make the pseudo-GT, finetune, check. Raises
    Cancelled.

    A level that settings.derives() comes from level CHAIN_FROM_LEVEL: `parent` when
    given (a cached one), else that level is built first. on_phase(phase, step, total)
    reports pseudo-GT progress; progress(it, loss, n) reports the finetune."""
    t0 = time.perf_counter()
    upsampler = upsampler or make_upsampler(settings.sr_model, device=base.device)
    if settings.derives(level):
        if parent is None:
            parent = adapt_level(base, base_cameras, CHAIN_FROM_LEVEL, settings, upsampler,
                                 view, on_phase, progress, should_stop)
        return derive_level(parent, base, base_cameras, level, settings, view, t0)
    split = select_views(base_cameras, level, settings.views,
                         view if settings.use_current_view else None, base)
    options = settings.finetune.base_options()
    pairs = build_views(base, split.adapt, level, upsampler, settings.views, options,
                        progress=None if on_phase is None else
                        (lambda d, n: on_phase("pseudo-gt", d, n)),
                        should_stop=should_stop)
    if should_stop is not None and should_stop():
        raise Cancelled(base, 0)
    rate = BaseSampling.from_cameras(base, base_cameras).rate
    g = finetune(base, level, [c for c, _ in pairs], [img for _, img in pairs],
                 settings.finetune, progress=progress, should_stop=should_stop,
                 base_rate=rate, whole_views=split.adapt)
    iters = settings.finetune.iters_for(level, len(base))
    mode = None
    if split.held_out:
        if on_phase is not None:
            on_phase("checking", 0, 1)
        kept, kept_set = check_level(g, base, rate, split.held_out, level, upsampler,
                                     settings)
        if kept != "adapted":
            log.info("level %s: the finetune scored under %s on held-out views; kept that",
                     level_label(level), kept)
            g, iters = kept_set, 0
            mode = kept if kept in RIVAL_MODES else None
    return LevelResult(g, time.perf_counter() - t0, iters, len(pairs),
                       split.held_out, upsampler.describe(2 ** abs(level)) if level > 0
                       else "base rendered at {0}x the target resolution, area /{0}".format(
                           max(2 ** -level, settings.views.zoom_out_supersample)),
                       antialias=mode)


RIVAL_MODES = ("adaptive", "blend")
"""The training-free modes a level is checked against: the best of them at zoom-in and
at zoom-out on lego (docs/stmt_table.md)."""


def check_level(adapted: Gaussians, base: Gaussians, base_rate: Tensor,
                held_out: list[Camera], level: int, upsampler: Upsampler,
                settings: AdaptSettings) -> tuple[str, Gaussians]:
    """Which set a level keeps, and that set, by PSNR against the level's reference on
    held-out views (ties go to the first): "adapted", the finetuned set; "start", at a zoom-in level
    drawn classic, the warm start it began from (with few views of a large capture the
    finetune can overfit them: on the 1.2 M scene of benchmarks/big_scene.py an x2 level
    scored 30.2 dB there, its start 37.6); with settings.rival_check, a RIVAL_MODES name:
    the base drawn in that training-free mode, which a level can score under (that x2
    level's start against the adaptive render's 40.4; the donut's 1/8 level, 38.6 dB
    against Gaussian Blending's 42.3)."""
    ft = settings.finetune
    drawn = ft.render_options(level)
    candidates = {"adapted": (adapted, drawn)}
    if level > 0 and ft.antialias_for(level) == "classic":
        candidates["start"] = (warm_start(base, base_rate, level, drawn.eps2d), drawn)
    if settings.rival_check:
        candidates.update({m: (base, drawn.replace(antialias=m)) for m in RIVAL_MODES})
    best = "adapted"
    if len(candidates) > 1:
        psnr = held_out_psnr(candidates, held_out, base, level, upsampler, ft.base_options(),
                             settings.views)
        for name in candidates:
            if psnr[name] > psnr[best]:
                best = name
    return best, candidates[best][0]


def derive_level(parent: LevelResult, base: Gaussians, base_cameras: list[Camera],
                 level: int, settings: AdaptSettings, view: Camera | None = None,
                 t0: float | None = None) -> LevelResult:
    """A zoom-in level derived from the adapted level CHAIN_FROM_LEVEL (`parent`) by
    adapt.finetune.derive_zoom_in: no pseudo-GT, no finetune. A parent that is the base
    in its rival mode (check_level) gives the base in that mode."""
    t0 = time.perf_counter() if t0 is None else t0
    split = select_views(base_cameras, level, settings.views,
                         view if settings.use_current_view else None, base)
    label = level_label(CHAIN_FROM_LEVEL)
    if parent.antialias is not None:
        return LevelResult(base, time.perf_counter() - t0, 0, 0, split.held_out,
                           f"none: the base drawn {parent.antialias}, as level {label}",
                           CHAIN_FROM_LEVEL, parent.antialias)
    g = parent.gaussians
    parent_cams = [at_level(c, CHAIN_FROM_LEVEL) for c in base_cameras]
    rate = BaseSampling.from_cameras(g, parent_cams).rate
    eps2d = settings.finetune.render_options(level).eps2d
    g = derive_zoom_in(g, rate, level - CHAIN_FROM_LEVEL, eps2d)
    return LevelResult(g, time.perf_counter() - t0, 0, 0, split.held_out,
                       f"none: level {label} with level {level_label(level)}'s dilation "
                       "baked in", CHAIN_FROM_LEVEL)


def warm_up_imports() -> None:
    """Take the optimiser's one-off import cost now, when the worker starts.

    torch.optim's first step imports torch._dynamo and sympy (about 800 modules, 1.7 s
    on the 2-core test machine). In this thread that holds the import lock and the GIL
    for up to a quarter of a second at a time, which stalled the viewer's UI frames
    (241 ms frames, benchmarks/viewer_adapt.py --swap-only) in the middle of the first
    level a user asks for. Started with the worker, it happens while the model opens.
    """
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([p], lr=0.0, eps=1e-15)
    p.grad = torch.zeros(1)
    opt.step()


def default_threads() -> int:
    return max(1, (os.cpu_count() or 2) // 2)


class AdaptWorker:
    """Builds levels in one background thread. See the module docstring."""

    def __init__(self, base: Gaussians, base_cameras: list[Camera], cache: LevelCache,
                 settings: AdaptSettings, render_threads: int | None = None) -> None:
        if not base_cameras:
            raise ValueError("AdaptWorker needs base cameras (virtual ones will do)")
        self.base = base.detach()
        self.base_cameras = list(base_cameras)
        self.cache = cache
        self.settings = settings
        self.render_threads = render_threads or default_threads()
        self._cond = threading.Condition()
        self._status = AdaptStatus()
        self._wanted: tuple[int, Camera | None] | None = None
        self._job_level: int | None = None
        self._cancel_job = False
        self._shutdown = False
        self._upsampler: Upsampler | None = None
        self._stream = None  # the job's own CUDA stream (a CUDA base only), made by the thread
        self._thread = threading.Thread(target=self._run, name="mipview-adapt", daemon=True)
        self._thread.start()

    # -- the API the viewer uses ------------------------------------------------------------
    def request(self, level: int, view: Camera | None = None) -> None:
        """Ask for a level (returns at once). Level 0 or a cached level needs no job; a
        running job for another level is cancelled."""
        with self._cond:
            if self._shutdown:
                return
            if level == 0 or self.cache.get(level) is not None:
                self._wanted = None
                if self._job_level is not None and self._job_level != level:
                    self._cancel_job = True
                self._cond.notify_all()
                return
            if self._job_level == level and not self._cancel_job:
                return  # already being built
            self._wanted = (level, view)
            if self._job_level is not None:
                self._cancel_job = True
            self._cond.notify_all()

    def options_for(self, level: int, options: RenderOptions) -> RenderOptions:
        """The options to show a level with: the viewer's own for level 0, else with the
        antialias mode the level was finetuned in (FinetuneConfig.antialias_for), or the
        rival mode of a level kept as the base in it (check_level)."""
        if level == 0:
            return options
        mode = self.cache.info(level).get("antialias")
        return options.replace(antialias=mode or self.settings.finetune.antialias_for(level))

    def status(self) -> AdaptStatus:
        with self._cond:
            return replace(self._status)

    def get(self, level: int) -> Gaussians | None:
        """The adapted set of a ready level (None if not built); level 0 is the base."""
        return self.base if level == 0 else self.cache.get(level)

    def cancel(self) -> None:
        """Stop the running job and forget pending requests."""
        with self._cond:
            self._wanted = None
            if self._job_level is not None:
                self._cancel_job = True
            self._cond.notify_all()

    def shutdown(self, timeout: float | None = 10.0) -> None:
        """Cancel, stop the thread and wait for it (up to timeout seconds)."""
        with self._cond:
            self._shutdown = True
            self._wanted = None
            self._cancel_job = True
            self._cond.notify_all()
        self._thread.join(timeout)

    def busy(self) -> bool:
        with self._cond:
            return self._job_level is not None or self._wanted is not None

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no job runs or waits (for scripts and tests); False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._job_level is not None or self._wanted is not None:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
            return True

    # -- the thread --------------------------------------------------------------------------
    def _set(self, **kw) -> None:
        with self._cond:
            for k, v in kw.items():
                setattr(self._status, k, v)
            self._cond.notify_all()

    def _limit_threads(self) -> None:
        torch.set_num_threads(self.render_threads)
        try:
            import numba

            numba.set_num_threads(min(self.render_threads, numba.config.NUMBA_NUM_THREADS))
        except Exception as exc:  # numba missing or its pool refusing: not fatal
            log.info("could not limit numba threads in the worker: %s", exc)
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        except (AttributeError, OSError) as exc:
            log.info("could not lower the worker thread's priority: %s", exc)

    def _run(self) -> None:
        self._limit_threads()
        try:
            warm_up_imports()
        except Exception:  # only a head start: the first job imports the same
            log.debug("warming up the optimiser imports failed", exc_info=True)
        while True:
            with self._cond:
                while self._wanted is None and not self._shutdown:
                    self._cond.wait()
                if self._shutdown:
                    return
                level, view = self._wanted
                self._wanted = None
                self._job_level = level
                self._cancel_job = False
            try:
                self._job(level, view)
            finally:
                with self._cond:
                    self._job_level = None
                    self._cond.notify_all()

    def _should_stop(self) -> bool:
        with self._cond:
            return self._cancel_job or self._shutdown

    def _job(self, level: int, view: Camera | None) -> None:
        parent = None
        if self.settings.derives(level):
            g = self.cache.get(CHAIN_FROM_LEVEL)
            if g is None:  # built (and cached) first, as a job of its own
                self._job(CHAIN_FROM_LEVEL, view)
                g = self.cache.get(CHAIN_FROM_LEVEL)
                if g is None or self._should_stop():
                    return  # it failed or was cancelled: the status says so
            parent = LevelResult(g, 0.0, 0, 0, [], "",
                                 antialias=self.cache.info(CHAIN_FROM_LEVEL).get("antialias"))
        t0 = time.perf_counter()
        iters = self.settings.finetune.iters_for(level, len(self.base))
        self._set(level=level, phase="pseudo-gt", step=0, total=0, loss=math.nan,
                  eta_s=math.nan, error="", gaussians=len(self.base), seconds=0.0)
        timing = {"ft_start": None}

        def on_phase(phase: str, done: int, total: int) -> None:
            if phase == "checking":  # the finetune's step / total stay on show
                self._set(phase=phase, seconds=time.perf_counter() - t0)
            else:
                self._set(phase=phase, step=done, total=total,
                          seconds=time.perf_counter() - t0)

        def on_step(it: int, loss: float, n: int) -> None:
            now = time.perf_counter()
            if timing["ft_start"] is None:
                timing["ft_start"] = now
                eta = math.nan
            else:
                per = (now - timing["ft_start"]) / max(it - 1, 1)
                eta = per * (iters - it)
            self._set(phase="finetune", step=it, total=iters, loss=loss, gaussians=n,
                      eta_s=eta, seconds=now - t0)

        try:
            if self._upsampler is None:
                self._upsampler = make_upsampler(self.settings.sr_model,
                                                 device=self.base.device)
            with self._job_stream():
                result = adapt_level(self.base, self.base_cameras, level, self.settings,
                                     self._upsampler, view, on_phase, on_step,
                                     self._should_stop, parent)
                if self._stream is not None:  # the level is whole before others read it
                    self._stream.synchronize()
            self._set(phase="saving", eta_s=0.0)
            info = {"label": level_label(level), "iterations": result.iterations,
                    "views": result.n_views, "base_gaussians": len(self.base),
                    "upsampler": result.upsampler}
            if result.antialias is not None:
                info["antialias"] = result.antialias
            self.cache.put(level, result.gaussians, result.seconds, info)
            self._set(phase="done", gaussians=len(result.gaussians),
                      seconds=time.perf_counter() - t0, eta_s=0.0)
        except Cancelled:
            self._set(phase="cancelled", seconds=time.perf_counter() - t0, eta_s=math.nan)
        except MemoryError:
            self._fail(level, "out of memory while adapting level "
                       f"{level_label(level)}; try fewer views or a smaller crop size", t0)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()  # give the job's cached blocks back to the viewer
            self._fail(level, "the GPU ran out of memory while adapting level "
                       f"{level_label(level)}; try fewer views, a smaller crop size or "
                       "closing other GPU programs", t0)
        except Exception as exc:  # the viewer must survive any failure of a job
            log.debug("adapt job failed:\n%s", traceback.format_exc())
            what = "saving" if self.status().phase == "saving" else "adapting"
            self._fail(level, f"{what} level {level_label(level)} failed: "
                       f"{type(exc).__name__}: {exc}", t0)

    def _job_stream(self):
        """A CUDA base: the job's kernels go to a stream of their own, so the viewer's
        frames (default stream) do not queue behind the finetune's. Else a no-op."""
        if self.base.device.type != "cuda":
            return contextlib.nullcontext()
        if self._stream is None:
            self._stream = torch.cuda.Stream(device=self.base.device)
        self._stream.wait_stream(torch.cuda.current_stream(self.base.device))
        return torch.cuda.stream(self._stream)

    def _fail(self, level: int, message: str, t0: float) -> None:
        log.warning("%s", message)
        self._set(phase="error", error=message, seconds=time.perf_counter() - t0,
                  eta_s=math.nan)
