"""Live Mipmap-GS in the real viewer window (Xvfb), on the demo chart with tiny iteration
counts: zooming out requests a level after the hold time, the finished level becomes
source B of the split view, a failing job shows its error and changes nothing, Cancel
stops a job, a new model restarts the adaptation, "this view is x1" re-bases the zoom."""

from __future__ import annotations

import time

import glfw
import numpy as np
import pytest
from viewer_support import drag, make_app, settle, tiny_scene, window_pixels

from viewer.adaptation import (
    AdaptOptions,
    base_b_label,
    error_text,
    level_rows,
    nearest_ready,
    progress_text,
)
from viewer.models import demo_model

pytestmark = pytest.mark.gl

MENU = 24  # rows of the menu bar
LABELS = 30  # rows of the A / B labels at the bottom


class FakeClock:
    """The controller's clock, advanced by the test (the 0.5 s hold made deterministic)."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def app(tmp_path, monkeypatch):
    monkeypatch.setenv("MIPVIEW_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    a = make_app(demo_model(), size=(400, 300))
    ctrl = a.adaptation
    ctrl.cache_root = tmp_path / "levels"
    # 3 steps: the level the finetune makes, not the base in its rival mode
    ctrl.options = AdaptOptions(iters=3, views=2, rival_check=False)
    ctrl.clock = FakeClock()
    a.state.compare.mode = "split"
    assert ctrl.wait_ready(a), ctrl.error
    yield a
    a.close()


def step_until(app, cond, timeout_s: float = 120.0, what: str = "") -> None:
    t_end = time.time() + timeout_s
    while time.time() < t_end:
        app.step()
        if cond():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}; status {app.adaptation.status}")


def zoom_out_to(app, below: float) -> None:
    """Dolly out notch by notch until the effective scale is below `below`."""
    settle(app)
    for _ in range(40):
        if app.state.scale < below:
            return
        app.on_cursor_pos(None, 200, 150)
        app.on_scroll(None, 0, -1)
        settle(app)
    raise AssertionError(f"could not zoom out below {below} (scale {app.state.scale})")


def test_zooming_out_builds_a_level_and_b_shows_it(app):
    ctrl = app.adaptation
    zoom_out_to(app, 0.33)  # past the band of 1/2: level 1/4 (2^-2.5 .. 2^-1.5)
    assert 2**-2.5 < app.state.scale < 2**-1.5
    for _ in range(5):  # the clock stands still: out of band, but not for 0.5 s yet
        app.step()
    assert not ctrl.busy() and ctrl.status.level is None
    ctrl.clock.t += 0.3
    app.step()
    assert not ctrl.busy()
    ctrl.clock.t += 0.3  # 0.6 s out of band: the level of the current scale is asked for
    app.step()
    assert ctrl.busy() and ctrl.wanted_level == -2
    step_until(app, lambda: -2 in ctrl.levels, what="level 1/4")
    assert ctrl.status.phase == "done" and ctrl.status.error == ""
    settle(app)
    assert ctrl.level_in_use == -2
    frame = app.shown_frame
    assert frame.request.tag["labels"] == ["vanilla", "Mipmap-GS (level 1/4)"]
    assert frame.request.sources[1].gaussians is ctrl.cache.get(-2)
    assert frame.request.sources[0].gaussians is app.state.model.gaussians
    # The split view's right half is the adapted set, the left half vanilla: with the
    # divider at the right edge (all A, no re-render) the left half stays the same and
    # the right half changes.
    split = window_pixels(app)[MENU:-LABELS].astype(np.float64)
    app.state.compare.divider = 1.0
    all_a = window_pixels(app)[MENU:-LABELS].astype(np.float64)
    w = split.shape[1]
    assert np.array_equal(split[:, : w // 2 - 2], all_a[:, : w // 2 - 2])
    diff = np.abs(split[:, w // 2 + 2:] - all_a[:, w // 2 + 2:])
    assert diff.max() > 40 and diff.mean() > 0.2, (diff.max(), diff.mean())
    # The panel lists the level; it draws with a finished job and a level row.
    rows = level_rows(ctrl)
    assert [r[1] for r in rows] == ["1/4"] and rows[0][2] == f"{len(ctrl.cache.get(-2)):,}"
    assert progress_text(ctrl.status)[1].startswith("1/4: done")
    app.state.ui.show_panels = True
    for _ in range(3):
        app.step()
    # On disk beside nothing (demo): under cache_root, with a manifest.
    assert (ctrl.cache.directory / "manifest.json").is_file()
    assert (ctrl.cache.directory / "level_-2.ply").is_file()
    # The single view shows the adapted set, swapped in; the flip key shows vanilla.
    app.state.compare.mode = "single"
    settle(app)
    assert app.shown_frame.request.sources[0].gaussians is ctrl.cache.get(-2)
    app.state.compare.flip()
    settle(app)
    assert app.shown_frame.request.sources[0].gaussians is app.state.model.gaussians
    # Choosing an antialias mode changes A: a single view showing the level turns to A.
    app.state.compare.flip()
    assert app.state.compare.shown == "B"
    app.set_antialias("adaptive")
    assert app.state.compare.shown == "A" and app.state.render.antialias == "adaptive"


def test_failing_jobs_show_their_error_and_change_nothing(app, tmp_path, monkeypatch):
    ctrl = app.adaptation
    ctrl.set_auto(False)
    settle(app)
    assert ctrl.levels == {} and ctrl.level_in_use == 0

    def broken_finetune(*args, **kwargs):
        raise RuntimeError("injected finetune failure")

    monkeypatch.setattr("adapt.worker.finetune", broken_finetune)
    ctrl.build(-1, app.view_camera())
    step_until(app, lambda: ctrl.status.phase == "error", what="the failure")
    assert "injected finetune failure" in error_text(ctrl)
    assert "1/2" in error_text(ctrl)
    app.state.ui.show_panels = True  # the panel draws the error (in red)
    for _ in range(3):
        app.step()
    app.state.ui.show_panels = False
    assert ctrl.levels == {} and not list(ctrl.cache.directory.glob("level_*.ply"))
    # The viewer keeps running: orbiting renders new frames, B is still the base set (in
    # the split, with the other antialias mode).
    before = app.shown_frame.request.seq
    drag(app, glfw.MOUSE_BUTTON_LEFT, (300, 150), (320, 160))
    settle(app)
    assert app.shown_frame.request.seq > before and app.shown_frame.error is None
    assert app.shown_frame.request.tag["labels"][1] == base_b_label("mip")

    # A cache folder that cannot be written (its parent is a file): the save fails.
    monkeypatch.undo()
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the cache folder should go")
    ctrl.cache_root = blocker / "levels"
    ctrl.apply_settings()
    assert ctrl.wait_ready(app), ctrl.error
    ctrl.build(-1, app.view_camera())
    step_until(app, lambda: ctrl.status.phase == "error", what="the save failure")
    assert "saving level 1/2 failed" in error_text(ctrl)
    assert ctrl.levels == {} and ctrl.cache.get(-1) is None and blocker.is_file()
    settle(app)
    assert ctrl.level_in_use == 0 and app.shown_frame.error is None


def test_cancel_stops_the_job(app):
    ctrl = app.adaptation
    ctrl.set_auto(False)
    ctrl.options = AdaptOptions(iters=5000, views=2)
    ctrl.apply_settings()
    assert ctrl.wait_ready(app), ctrl.error
    ctrl.build(-1, app.view_camera())
    step_until(app, lambda: ctrl.status.phase == "finetune" and ctrl.status.step >= 1,
               what="the finetune to start")
    frac, text = progress_text(ctrl.status)
    assert 0.1 <= frac < 0.2 and "finetune" in text and "/5000" in text
    ctrl.cancel()  # what the panel's Cancel button calls
    step_until(app, lambda: ctrl.status.phase == "cancelled" and not ctrl.busy(),
               timeout_s=60, what="the cancel")
    assert ctrl.status.step < 5000 and ctrl.levels == {}
    assert ctrl.cache.get(-1) is None


def test_new_model_restarts_and_this_view_is_x1(app, tmp_path):
    from render.io import save_ply

    ctrl = app.adaptation
    settle(app)
    old_worker = ctrl.worker
    path = tmp_path / "card.ply"
    card = tiny_scene()
    save_ply(card, path)
    app.on_drop(None, [str(path)])
    app.loader.wait(60)
    step_until(app, lambda: ctrl.worker is not None and ctrl.worker is not old_worker,
               timeout_s=60, what="the new worker")
    old_worker._thread.join(10)
    assert not old_worker._thread.is_alive()
    assert len(ctrl.worker.base) == len(card) == len(app.state.model.gaussians)
    settle(app)
    src_b = app.shown_frame.request.sources[1]
    assert src_b.gaussians is app.state.model.gaussians and src_b.label == base_b_label("mip")
    assert app.shown_frame.request.tag["labels"][0] == "vanilla"
    # "This view is x1": dolly in, re-base, the readout says x1 here.
    app.on_cursor_pos(None, 200, 150)
    app.on_scroll(None, 0, 2)
    settle(app)
    assert abs(app.state.scale - 1.0) > 0.1
    ctrl.rebase(app.view_camera())
    assert ctrl.wait_ready(app), ctrl.error
    settle(app)
    assert app.state.scale == pytest.approx(1.0, abs=1e-4)
    assert ctrl.worker.base_cameras[0].width == app.view_camera().width
    ctrl.reset_base(app)
    assert ctrl.wait_ready(app), ctrl.error
    settle(app)
    assert abs(app.state.scale - 1.0) > 0.1


def test_nearest_ready_level():
    assert nearest_ready(-2, set()) == 0
    assert nearest_ready(-2, {-1}) == -1
    assert nearest_ready(-2, {-3, -1}) == -1  # a tie goes to the level nearer the base
    assert nearest_ready(2, {-2, 3}) == 3
    assert nearest_ready(0, {-1, 1}) == 0


def test_sets_for_another_device_are_copied_off_the_ui_thread():
    """On a CUDA render device a cached level (kept on the CPU) must be moved before B
    can use it; the copy runs in a helper thread and B keeps its set until it is done.
    The 'meta' device stands in for CUDA here (same code path, no GPU needed)."""
    from adapt.cache import LevelCache
    from viewer.adaptation import AdaptController

    ctrl = AdaptController(device="meta")
    ctrl.cache = LevelCache("hash", "key", None)  # in memory only
    ctrl.cache.put(-2, tiny_scene(), 1.0)
    ctrl.refresh_levels()
    assert ctrl._device_set(-2) is None or ctrl._device_set(-2).device.type == "meta"
    t_end = time.time() + 30
    moved = None
    while moved is None and time.time() < t_end:
        moved = ctrl._device_set(-2)
        time.sleep(0.01)
    assert moved is not None and moved.device.type == "meta"
    assert len(moved) == len(ctrl.cache.get(-2))
    assert ctrl._device_set(-2) is moved  # copied once, then reused


def test_panel_names_the_zoom_in_pseudo_gt():
    from adapt.upsample import default_zoom_in_pseudo_gt
    from viewer.adaptation import AdaptOptions, zoom_in_pseudo_gt_text

    text, chain = zoom_in_pseudo_gt_text(AdaptOptions()).split("\n")
    assert text.endswith("(default)") and chain.startswith("x4 and finer: the x2 level")
    assert ("waifu2x" in text) == (default_zoom_in_pseudo_gt() == "waifu2x")
    assert "bicubic upsampling" in zoom_in_pseudo_gt_text(AdaptOptions(sr_model="bicubic"))
    assert "adaptive dilation" in zoom_in_pseudo_gt_text(AdaptOptions(sr_model="adaptive"))
    assert "x4.pth" in zoom_in_pseudo_gt_text(AdaptOptions(sr_model="/m/x4.pth"))


def test_a_level_kept_as_the_base_in_its_rival_mode_is_drawn_and_named_so():
    """A level whose cache info names a rival mode (adapt.worker.check_level) is drawn in
    that mode as B and says so; other levels keep their own mode."""
    from viewer.adaptation import b_label, b_overrides

    assert b_overrides(2, {"antialias": "adaptive"}) == {"antialias": "adaptive"}
    assert b_overrides(2, {"iterations": 0}) == {"antialias": "classic"}
    assert b_overrides(-2) == {"antialias": "mip"} and b_overrides(0) == {}
    assert b_label(2, {"antialias": "adaptive"}) == "Mipmap-GS (level x4: the base, adaptive)"
    assert b_label(-3) == "Mipmap-GS (level 1/8)"
    from types import SimpleNamespace

    from adapt.cache import LevelInfo

    ctrl = SimpleNamespace(levels={2: LevelInfo(2, 10, 1.0, "", None, {"antialias": "adaptive"}),
                                   -1: LevelInfo(-1, 5, 2.0, "", None, {"iterations": 9})})
    assert [r[1] for r in level_rows(ctrl)] == ["1/2", "x4 adaptive"]
