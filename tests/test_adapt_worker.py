"""The background worker: returns at once, newest request wins, failures stay contained."""

from __future__ import annotations

import errno
import threading
import time

import pytest
import torch

from adapt.cache import LevelCache
from adapt.finetune import FinetuneConfig
from adapt.views import ViewSettings
from adapt.worker import AdaptSettings, AdaptWorker
from render.camera import Camera
from render.gaussians import Gaussians


def _scene(n: int = 150) -> Gaussians:
    g = torch.Generator().manual_seed(2)
    means = torch.cat([torch.rand(n, 2, generator=g) * 1.6 - 0.8, torch.zeros(n, 1)], 1)
    return Gaussians.from_colors(means, torch.rand(n, 3, generator=g),
                                 torch.full((n, 3), 0.01), torch.full((n,), 0.9))


def _cams() -> list[Camera]:
    return [Camera.look_at((x, 0.1, -3), (0, 0, 0), fov_y_deg=40, width=48, height=48)
            for x in (-0.6, -0.3, 0.0, 0.3, 0.6)]


def _settings(iters: int = 30, rival_check: bool = False) -> AdaptSettings:
    return AdaptSettings(finetune=FinetuneConfig(iters=iters),
                         views=ViewSettings(n_views=3, n_user=1, holdout_every=5),
                         rival_check=rival_check)


def _wait_for(pred, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.02)


@pytest.fixture
def worker(tmp_path):
    w = AdaptWorker(_scene(), _cams(), LevelCache("h", "s", tmp_path / "cache"), _settings(),
                    render_threads=1)
    yield w
    w.shutdown()


def test_request_returns_at_once_and_the_level_becomes_ready(worker):
    t0 = time.perf_counter()
    worker.request(-1, view=_cams()[2])
    assert time.perf_counter() - t0 < 0.1
    phases = set()
    _wait_for(lambda: phases.add(worker.status().phase) or worker.status().phase == "done")
    st = worker.status()
    assert st.level == -1 and st.step == st.total == 30 and st.error == ""
    assert {"finetune", "done"} <= phases
    g = worker.get(-1)
    assert g is not None and len(g) <= len(worker.base)
    assert worker.get(0) is worker.base
    assert (worker.cache.directory / "level_-1.ply").is_file()
    # Asking again for a ready level starts no job.
    worker.request(-1)
    assert not worker.busy()


def test_newest_request_wins_and_the_old_job_is_cancelled(tmp_path):
    w = AdaptWorker(_scene(), _cams(), LevelCache("h", "s", tmp_path / "c"),
                    _settings(iters=400), render_threads=1)
    try:
        w.request(-1)
        _wait_for(lambda: w.status().phase == "finetune" and w.status().step >= 2)
        w.request(-2)
        _wait_for(lambda: w.status().level == -2, timeout=60)
        # The -1 job stopped between steps, long before its 400 iterations.
        w.cancel()
        assert w.wait_idle(60)
        assert w.cache.get(-1) is None and w.status().phase == "cancelled"
    finally:
        w.shutdown()


def test_a_failing_job_reports_an_error_and_the_worker_goes_on(tmp_path, monkeypatch):
    cache = LevelCache("h", "s", tmp_path / "c")
    w = AdaptWorker(_scene(), _cams(), cache, _settings(iters=5), render_threads=1)
    try:
        def disk_full(*_a, **_k):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr("adapt.cache.save_ply", disk_full)
        w.request(1)
        assert w.wait_idle(120)
        st = w.status()
        assert st.phase == "error" and "No space left" in st.error and "x2" in st.error
        assert cache.get(1) is None and not (tmp_path / "c" / "manifest.json").exists()
        monkeypatch.undo()
        w.request(1)
        assert w.wait_idle(120) and w.status().phase == "done" and cache.get(1) is not None
    finally:
        w.shutdown()


def test_bad_sr_model_is_an_error_not_an_exception(tmp_path):
    s = AdaptSettings(finetune=FinetuneConfig(iters=5), views=ViewSettings(n_views=2),
                      sr_model=str(tmp_path / "missing.safetensors"))
    w = AdaptWorker(_scene(), _cams(), LevelCache("h", "s", None), s, render_threads=1)
    try:
        w.request(2)
        assert w.wait_idle(60)
        assert w.status().phase == "error" and "missing.safetensors" in w.status().error
    finally:
        w.shutdown()


def test_worker_threads_are_limited_inside_the_worker_only(worker):
    seen = {}

    def probe():
        seen["main"] = torch.get_num_threads()

    t = threading.Thread(target=probe)
    t.start()
    t.join()
    before = torch.get_num_threads()
    worker.request(-1)
    assert worker.wait_idle(120)
    assert torch.get_num_threads() == before  # the caller's pool is untouched
    worker.shutdown()
    assert not worker._thread.is_alive()


def test_zoom_in_pseudo_gt_choice_keys_the_cache():
    from adapt.upsample import default_zoom_in_pseudo_gt

    default = AdaptSettings()
    assert default.zoom_in_pseudo_gt() == default_zoom_in_pseudo_gt()
    keys = {AdaptSettings(sr_model=n).key() for n in (None, "bicubic", "adaptive", "waifu2x")}
    assert len(keys) == 4  # levels built on one pseudo-GT are never served for another
    assert AdaptSettings(sr_model="adaptive").zoom_in_pseudo_gt() == "adaptive"


def test_a_deep_zoom_in_level_is_derived_from_the_cached_x2_level(worker):
    """Asking for x4 first builds (and caches) x2, then x4 is x2 with the finer grid's
    extra dilation in its scales: same centres, colours and opacities, wider splats,
    no finetune of its own."""
    worker.request(2, view=_cams()[2])
    _wait_for(lambda: worker.get(2) is not None)
    assert worker.wait_idle(60)
    x2, x4 = worker.get(1), worker.get(2)
    assert x2 is not None, "the x2 level it derives from is cached too"
    assert sorted(worker.cache.levels()) == [1, 2]
    assert worker.cache.levels()[2].info["iterations"] == 0
    assert torch.equal(x4.means, x2.means) and torch.equal(x4.sh, x2.sh)
    assert torch.equal(x4.opacity_logits, x2.opacity_logits)
    assert bool((x4.log_scales > x2.log_scales).all())
    # with the chain off, x4 is finetuned on its own and x2 is never built
    settings = _settings()
    assert settings.derives(2) and not settings.derives(1) and not settings.derives(-2)
    off = AdaptSettings(finetune=settings.finetune, views=settings.views, chain_zoom_in=False)
    assert not off.derives(2) and off.key() != settings.key()
    # a level finetuned and drawn under blend is never a classic bake of x2
    blend = AdaptSettings(finetune=FinetuneConfig(antialias="blend"))
    assert not blend.derives(2)


def test_a_zoom_in_finetune_that_does_worse_than_its_start_is_not_kept():
    """A finetune that wrecks the level (absurd learning rates) scores under its warm start
    on the held-out views, so the level is the warm start (no iterations kept)."""
    from adapt.finetune import warm_start
    from adapt.params import LearningRates
    from adapt.scale import BaseSampling
    from adapt.upsample import BicubicUpsampler
    from adapt.worker import adapt_level

    wild = LearningRates(means_init=0.5, means_final=0.5, opacity=5.0, scales=2.0, sh_dc=1.0)
    settings = AdaptSettings(finetune=FinetuneConfig(iters=20, lrs=wild),
                             views=ViewSettings(n_views=3, n_user=1, holdout_every=2),
                             rival_check=False)
    base, cams = _scene(), _cams()
    res = adapt_level(base, cams, 1, settings, BicubicUpsampler())
    assert res.held_out and res.iterations == 0
    start = warm_start(base, BaseSampling.from_cameras(base, cams).rate, 1)
    assert torch.equal(res.gaussians.log_scales, start.log_scales)
    assert torch.equal(res.gaussians.means, start.means)
    # the same with sane rates: the finetune helps and is kept
    sane = AdaptSettings(finetune=FinetuneConfig(iters=20), views=settings.views,
                         rival_check=False)
    assert adapt_level(base, cams, 1, sane, BicubicUpsampler()).iterations == 20


def _stub_scores(monkeypatch, scores: dict[str, float], seen: list | None = None) -> None:
    """adapt.worker's held-out PSNR replaced by fixed scores per candidate name."""
    import adapt.worker as W

    def held_out_psnr(candidates, *args, **kw):
        if seen is not None:
            seen.append({k: o.antialias for k, (_, o) in candidates.items()})
        return {k: scores[k] for k in candidates}

    monkeypatch.setattr(W, "held_out_psnr", held_out_psnr)


def test_a_level_under_its_training_free_rival_is_the_base_drawn_in_that_mode(monkeypatch):
    """check_level weighs the finetuned level against the base drawn adaptive and under
    blend (and, at zoom-in, the warm start): the best on the held-out views is kept, ties
    to the finetune; rival_check=False leaves the base out."""
    from adapt.upsample import BicubicUpsampler
    from adapt.worker import adapt_level

    settings = AdaptSettings(finetune=FinetuneConfig(iters=5),
                             views=ViewSettings(n_views=3, n_user=1, holdout_every=2))
    base, cams = _scene(), _cams()
    seen: list = []
    _stub_scores(monkeypatch, {"adapted": 30.0, "start": 31.0, "adaptive": 31.5,
                               "blend": 32.0}, seen)
    res = adapt_level(base, cams, -1, settings, BicubicUpsampler())
    assert seen[-1] == {"adapted": "mip", "adaptive": "adaptive", "blend": "blend"}
    assert res.antialias == "blend" and res.gaussians is base and res.iterations == 0
    _stub_scores(monkeypatch, {"adapted": 30.0, "start": 31.0, "adaptive": 32.0,
                               "blend": 31.5}, seen)
    res = adapt_level(base, cams, 1, settings, BicubicUpsampler())
    assert seen[-1] == {"adapted": "classic", "start": "classic", "adaptive": "adaptive",
                        "blend": "blend"}
    assert res.antialias == "adaptive" and res.gaussians is base
    _stub_scores(monkeypatch, {"adapted": 32.0, "start": 31.0, "adaptive": 32.0,
                               "blend": 32.0}, seen)
    res = adapt_level(base, cams, -1, settings, BicubicUpsampler())
    assert res.antialias is None and res.iterations == 5 and len(res.gaussians) < len(base)
    off = AdaptSettings(finetune=settings.finetune, views=settings.views, rival_check=False)
    assert off.key() != settings.key()
    adapt_level(base, cams, 1, off, BicubicUpsampler())
    assert seen[-1] == {"adapted": "classic", "start": "classic"}


def test_the_worker_draws_and_derives_a_rival_level_in_its_mode(tmp_path, monkeypatch):
    """The x2 level kept as the base under the adaptive filter (held-out scores stubbed so):
    the cache keeps that mode, the worker draws the level with it, and x4 derived from it
    is the base in the same mode."""
    from render.options import RenderOptions

    _stub_scores(monkeypatch, {"adapted": 20.0, "start": 25.0, "adaptive": 30.0,
                               "blend": 29.0})
    base = _scene()
    w = AdaptWorker(base, _cams(), LevelCache("h", "s", tmp_path / "cache"),
                    _settings(rival_check=True), render_threads=1)
    try:
        w.request(2, view=_cams()[2])
        _wait_for(lambda: w.get(2) is not None)
        assert w.wait_idle(60)
        for level in (1, 2):
            assert w.cache.info(level)["antialias"] == "adaptive"
            assert torch.equal(w.get(level).means, base.means)
            assert torch.equal(w.get(level).log_scales, base.log_scales)
            assert w.options_for(level, RenderOptions()).antialias == "adaptive"
        assert w.options_for(-1, RenderOptions()).antialias == "mip"  # a level's own mode
    finally:
        w.shutdown()
