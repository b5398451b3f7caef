"""The navigation proxy in the real window (Xvfb): a drag draws the proxy, a still view
the full set; the stats say which; a model too big for memory keeps the current one."""

from __future__ import annotations

import time

import glfw
import numpy as np
import pytest
from viewer_support import make_app, settle, tiny_scene, window_pixels

from viewer.proxy_builder import ProxyBuilder

pytestmark = pytest.mark.gl

MENU = 24


@pytest.fixture
def app(tmp_path, monkeypatch):
    monkeypatch.setenv("MIPVIEW_CONFIG_DIR", str(tmp_path / "config"))
    a = make_app()
    yield a
    a.close()


def _use_small_proxy(app) -> None:
    """A proxy for the ~600-Gaussian test card (the real threshold is 600k)."""
    app.proxy = ProxyBuilder(threshold=100, target=150)
    app.proxy.start(app.state.model.gaussians, None, app.device)
    app.proxy.wait(120)
    assert app.proxy.status.state == "ready", app.proxy.status


def test_drag_draws_the_proxy_and_a_still_view_the_full_set(app):
    _use_small_proxy(app)
    n_full = len(app.state.model.gaussians)
    n_proxy = app.proxy.status.gaussians
    assert n_proxy < n_full / 2
    settle(app)
    still = window_pixels(app)[MENU:-30].astype(np.float64)
    assert app.state.stats.drawn_set == "full"

    # a left-button drag (orbit), the cursor moving every UI frame until a frame shows
    w, h = app.framebuffer_size
    x, y = w * 0.5, h * 0.5
    app.on_cursor_pos(None, x, y)
    app.step()
    app.on_mouse_button(None, glfw.MOUSE_BUTTON_LEFT, glfw.PRESS, 0)
    seen_proxy = None
    t_end = time.time() + 60
    while time.time() < t_end and seen_proxy is None:
        x += 1.0
        app.on_cursor_pos(None, x, y)
        app.step()
        f = app.shown_frame
        if f is not None and f.request.proxy:
            seen_proxy = f
    assert seen_proxy is not None, "no proxy frame was shown while dragging"
    assert app.state.stats.drawn_set == "proxy"
    assert max(seen_proxy.n_drawn) <= n_proxy
    moving = window_pixels(app)[MENU:-30].astype(np.float64)
    app.on_mouse_button(None, glfw.MOUSE_BUTTON_LEFT, glfw.RELEASE, 0)

    # the proxy looks like the model: the same picture, a little blurred (the orbit
    # moved by a few pixels' worth of degrees)
    assert moving.mean() > 0.5 * still.mean()
    assert abs(moving.mean() - still.mean()) < 0.25 * still.mean()

    settle(app)  # still: the full set again
    assert app.state.stats.drawn_set == "full"
    assert not app.shown_frame.request.proxy
    assert max(app.shown_frame.n_drawn) > n_proxy


def test_small_models_get_no_proxy(app):
    assert app.proxy.status.state == "none"  # the card is far below the threshold
    assert app.proxy.get(app.state.model.gaussians) is None


def test_a_model_too_big_for_memory_keeps_the_current_one(app, tmp_path, monkeypatch):
    from render.io import save_ply
    from render.io.limits import MEMORY_LIMIT_ENV as LIMIT_ENV

    path = tmp_path / "huge.ply"
    save_ply(tiny_scene(color=(0.9, 0.1, 0.1)), path)
    before = app.state.model.gaussians
    monkeypatch.setenv(LIMIT_ENV, "1000")  # bytes: as if the machine had no memory left
    assert app.open_model(path)
    app.loader.wait(60)
    for _ in range(3):
        app.step()
    assert app.state.model.gaussians is before
    assert "huge.ply" in app.state.ui.error_title
    text = app.state.ui.error_text
    assert "too big for this machine's memory" in text and "Gaussians" in text
    assert "need" in text


def test_a_loading_model_shows_progress_and_the_current_one_stays(app, tmp_path):
    import torch

    from render.gaussians import Gaussians
    from render.io import save_ply

    n = 100_000
    gen = torch.Generator().manual_seed(3)
    big = Gaussians(torch.randn(n, 3, generator=gen),
                    torch.nn.functional.normalize(torch.randn(n, 4, generator=gen), dim=1),
                    torch.randn(n, 3, generator=gen) - 4, torch.randn(n, generator=gen),
                    torch.randn(n, 16, 3, generator=gen) * 0.2)
    path = tmp_path / "big.ply"
    save_ply(big, path)
    before = app.state.model.gaussians
    settle(app)
    assert app.open_model(path)
    phases, steps = set(), 0
    t_end = time.time() + 120
    while app.loader.busy() and time.time() < t_end:
        app.step(force_draw=True)  # the window keeps drawing while the file loads
        steps += 1
        if app.loader.busy():
            assert app.state.model.gaussians is before  # still drawn until the new is ready
            phases.add(app.state.ui.loading_phase)
    for _ in range(3):
        app.step()
    assert steps >= 3
    assert phases - {""}, "no progress shown while loading"
    assert app.state.model.name == "big.ply" and len(app.state.model.gaussians) == n
    assert not app.state.ui.loading and not app.state.ui.loading_phase
