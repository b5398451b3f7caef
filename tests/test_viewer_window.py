"""The real viewer window under Xvfb (or the caller's display), driven through its glfw
callbacks: navigation changes the picture and the zoom readout, compare modes show both
sources, screenshots equal offscreen renders, loads fail gracefully, `--snapshot` works."""

from __future__ import annotations

import subprocess
import sys
import time

import glfw
import numpy as np
import pytest
from viewer_support import (
    drag,
    ensure_display,
    make_app,
    press,
    settle,
    tiny_model,
    tiny_scene,
    window_pixels,
    x11_window_pixels,
)

from viewer.capture import read_png_metadata
from viewer.compare import Source, compose, pane_cameras
from viewer.frames import FrameRequest, render_panes

pytestmark = pytest.mark.gl

MENU = 24  # rows of the menu bar at the top of the window


@pytest.fixture
def app(tmp_path, monkeypatch):
    monkeypatch.setenv("MIPVIEW_CONFIG_DIR", str(tmp_path / "config"))
    a = make_app()
    a.state.shot.folder = str(tmp_path / "shots")
    yield a
    a.close()


def scene(img: np.ndarray) -> np.ndarray:
    """The window without the menu bar and the bottom label row."""
    return img[MENU:-30].astype(np.float64)


def test_orbit_changes_the_picture(app):
    settle(app)
    before = window_pixels(app)
    pose = app.state.nav.pose
    drag(app, glfw.MOUSE_BUTTON_LEFT, (160, 120), (230, 140))
    settle(app)
    after = window_pixels(app)
    assert np.allclose(app.state.nav.pose.pivot, pose.pivot)
    assert not np.allclose(app.state.nav.pose.position, pose.position)
    diff = np.abs(scene(after) - scene(before)).mean()
    assert diff > 2.0, f"orbiting hardly changed the picture (mean diff {diff:.2f})"
    # Reset brings the first picture back exactly.
    press(app, glfw.KEY_R)
    settle(app)
    assert np.array_equal(scene(window_pixels(app)), scene(before))


def test_pan_and_fly_move_the_view(app):
    settle(app)
    p0 = app.state.nav.pose.position.copy()
    drag(app, glfw.MOUSE_BUTTON_RIGHT, (160, 120), (200, 120))
    p1 = app.state.nav.pose.position.copy()
    assert np.dot(p1 - p0, app.state.nav.pose.right) < 0  # scene follows the mouse
    app.on_key(None, glfw.KEY_W, 0, glfw.PRESS, 0)
    for _ in range(5):
        app.step()
    app.on_key(None, glfw.KEY_W, 0, glfw.RELEASE, 0)
    assert np.dot(app.state.nav.pose.position - p1, app.state.nav.pose.forward) > 0


def test_zoom_changes_the_readout(app):
    from adapt.scale import scale_label

    settle(app)
    s0 = app.state.scale
    assert s0 is not None and s0 > 0
    app.on_cursor_pos(None, 160, 120)
    app.on_scroll(None, 0, 3)  # dolly in three notches
    settle(app)
    s1 = app.state.scale
    assert s1 > s0 * 1.3
    assert scale_label(s1) != scale_label(s0)
    # Ctrl + scroll zooms the field of view: the focal length grows by 1/0.9 per notch
    # and so does the effective scale (depths are unchanged).
    app.on_key(None, glfw.KEY_LEFT_CONTROL, 0, glfw.PRESS, glfw.MOD_CONTROL)
    app.on_scroll(None, 0, 2)
    app.on_key(None, glfw.KEY_LEFT_CONTROL, 0, glfw.RELEASE, 0)
    settle(app)
    assert app.state.scale == pytest.approx(s1 / 0.9**2, rel=0.02)
    # Resolution counts too: half the render resolution halves the scale.
    app.state.render.resolution_scale = 0.5
    settle(app)
    assert app.state.scale == pytest.approx(s1 / 0.9**2 * 0.5, rel=0.03)


def test_camera_drag_puts_the_cached_panels_over_each_new_frame(app, monkeypatch):
    """The moves of a camera drag change only the rendered frame: the UI frames that show
    the new frames put the cached panel layer over them instead of running ImGui (with a
    software GL an ImGui frame of the panels costs ~8 ms of CPU the renders need)."""
    import viewer.app as A

    monkeypatch.setattr(A, "STREAMING_REDRAW_S", 1e9)  # no periodic refresh: only input
    monkeypatch.setattr(A, "IDLE_REDRAW_S", 1e9)
    monkeypatch.setattr(A, "READOUT_REDRAW_S", 1e9)
    app.state.ui.show_panels = True
    settle(app)
    reasons = []
    draw_window = app._draw_window
    monkeypatch.setattr(app, "_draw_window",
                        lambda r, size: reasons.append(r) or draw_window(r, size))
    imgui_runs = []
    imgui_frame = app._imgui_frame
    monkeypatch.setattr(app, "_imgui_frame", lambda: imgui_runs.append(1) or imgui_frame())
    app.on_cursor_pos(None, 250, 120)
    app.on_mouse_button(None, glfw.MOUSE_BUTTON_LEFT, glfw.PRESS, 0)
    seqs = set()
    for i in range(60):
        app.on_cursor_pos(None, 250 - i, 120)
        app.step()
        seqs.add(app._shown_seq)
    app.on_mouse_button(None, glfw.MOUSE_BUTTON_LEFT, glfw.RELEASE, 0)
    assert len(seqs) >= 5  # the drag streamed new frames
    assert reasons.count(A.DRAW_FRAME) >= 4
    assert len(imgui_runs) <= 4  # the press and the frames ImGui settles hover states in
    assert app.ui_layer.usable(app.framebuffer_size)


def test_zoom_readout_on_screen_follows_a_scroll(app, monkeypatch):
    """Scrolling to zoom is navigation (no ImGui frame of its own): the menu bar's readout
    is redrawn once it no longer says the view's scale."""
    import viewer.app as A
    from viewer.panels import zoom_readout

    monkeypatch.setattr(A, "STREAMING_REDRAW_S", 1e9)  # only a stale readout refreshes
    monkeypatch.setattr(A, "IDLE_REDRAW_S", 1e9)
    settle(app)
    shown, s0 = app.state.ui.readout_shown, app.state.scale
    assert shown == zoom_readout(app.state)
    app.on_cursor_pos(None, 160, 120)
    app.step(force_draw=True)  # ImGui sees the mouse over the scene
    app.on_scroll(None, 0, 3)
    t_end = time.time() + 60
    while time.time() < t_end and app.state.scale == s0:
        app.step()
    t_end = time.time() + 5
    while time.time() < t_end and app.state.ui.readout_shown != zoom_readout(app.state):
        app.step()
    assert app.state.ui.readout_shown == zoom_readout(app.state) != shown


def test_reduced_resolution_while_moving_does_not_change_the_readout(app):
    settle(app)
    s = app.state.scale
    app.worker.full_ms["cpu"] = 1000.0  # pretend full frames are slow
    app._shown.backend = "cpu"
    assert app._moving_scale() < 1.0
    app.on_key(None, glfw.KEY_D, 0, glfw.PRESS, 0)
    app.step()
    app.on_key(None, glfw.KEY_D, 0, glfw.RELEASE, 0)
    app.state.nav.pose = app.state.nav.home  # back where we were, so the scale is the same
    t_end = time.time() + 60
    while time.time() < t_end:
        app.step()
        f = app.shown_frame
        if f is not None and not f.request.full_res:
            break
    assert not app.shown_frame.request.full_res
    view = app.shown_frame.request.view_camera
    assert view.width == 320 and app.shown_frame.request.cameras[0].width < 320
    settle(app)
    assert app.shown_frame.request.full_res
    assert app.state.scale == pytest.approx(s, rel=1e-6)


def _two_colour_app(app):
    """B: a red card (with fewer Gaussians, as an adapted set may have), A green."""
    red = tiny_scene(n_side=20, color=(0.9, 0.1, 0.1))
    app.set_source_b(Source(red, "red card"))


def _channel_share(img: np.ndarray) -> tuple[float, float]:
    """Total red and green in the image."""
    return float(img[..., 0].sum()), float(img[..., 1].sum())


def test_split_view_shows_both_sources(app):
    _two_colour_app(app)
    app.state.compare.mode = "split"
    app.state.compare.divider = 0.5
    settle(app)
    img = scene(window_pixels(app))
    left, right = img[:, 20:140], img[:, 180:300]
    r_l, g_l = _channel_share(left)
    r_r, g_r = _channel_share(right)
    assert g_l > 2 * r_l and r_r > 2 * g_r, (r_l, g_l, r_r, g_r)
    # The divider is drawn where it is.
    col = window_pixels(app)[MENU + 20:-40, 160]
    assert (col == 230).all()
    # Dragging the divider moves it, with no re-render.
    drag(app, glfw.MOUSE_BUTTON_LEFT, (160, 100), (80, 100))
    assert app.state.compare.divider == pytest.approx(0.25, abs=0.01)
    app.step()
    img = scene(window_pixels(app))
    r_m, g_m = _channel_share(img[:, 100:150])
    assert r_m > 2 * g_m
    # A divider set by a script (no input, nothing new to render) is drawn at the next
    # UI frame too, not held back by the pacing of UI frames that follow a draw.
    app.step(force_draw=True)
    app.state.compare.divider = 0.75
    assert app.step()
    assert (app.read_window()[MENU + 20:-40, 240] == 230).all()


def test_single_view_shows_the_frame_pixels_upright(app):
    """A full-resolution single view reaches the screen through the present pass from the
    frame texture (stored bottom row first, BGRA where it can be): the window holds
    exactly the frame's pixels, top up."""
    from viewer.display import read_screen

    app.state.compare.mode = "single"
    drag(app, glfw.MOUSE_BUTTON_LEFT, (250, 120), (262, 128))  # not a symmetric view
    settle(app)
    size = app.framebuffer_size
    frame = app.shown_frame.images[0]
    assert frame.shape[:2] == (size[1], size[0])
    app.presenter.draw((0, 0, *size), app.state.compare.divider)
    got = read_screen(app.ctx, *size)
    assert not np.array_equal(got, got[::-1])  # the check below can see a flip
    assert np.array_equal(got, frame[..., 2::-1])  # BGRA frame, RGB screen


def test_side_by_side_and_flip(app):
    _two_colour_app(app)
    press(app, glfw.KEY_C)  # single -> split
    press(app, glfw.KEY_C)  # split -> side by side
    assert app.state.compare.mode == "side_by_side"
    settle(app)
    img = scene(window_pixels(app))
    r_l, g_l = _channel_share(img[:, :160])
    r_r, g_r = _channel_share(img[:, 160:])
    assert g_l > 2 * r_l and r_r > 2 * g_r
    assert [im.shape[1] for im in app.shown_frame.images] == [160, 160]
    press(app, glfw.KEY_X)  # flip: a single view of B
    settle(app)
    assert app.state.compare.mode == "single" and app.state.compare.shown == "B"
    r, g = _channel_share(scene(window_pixels(app)))
    assert r > 2 * g
    # The readout still refers to the model (A), whatever B holds.
    assert app.state.scale_error is None and app.state.scale > 0


def _offscreen(app, mode: str, divider: float, w: int, h: int) -> np.ndarray:
    """The same picture rendered without the window: panes + compose."""
    cam = app.view_camera(w, h)
    req = app.build_request(cam, True, 0, cam)
    assert req.tag["mode"] == mode
    frame = render_panes(FrameRequest(0, tuple(pane_cameras(mode, cam)), req.sources,
                                      req.options), keep_on_device=False)
    imgs = [im[..., 2::-1] for im in frame.images]  # BGRA frames, RGB screenshots
    return compose(imgs[0], imgs[1] if len(imgs) > 1 else None, mode, divider)


@pytest.mark.parametrize("mode", ["split", "side_by_side"])
def test_screenshot_equals_offscreen_render(app, mode):
    _two_colour_app(app)
    app.state.compare.mode = mode
    app.state.compare.divider = 0.37
    drag(app, glfw.MOUSE_BUTTON_LEFT, (250, 120), (270, 110))  # some non-trivial view
    settle(app)
    app.screenshot(width=200, height=130)  # another size than the window: re-rendered
    t_end = time.time() + 60
    while not app.captured and time.time() < t_end:
        app.step()
    assert app.captured, "the screenshot was never written"
    path, img = app.captured[-1]
    assert img.shape == (130, 200, 3)
    expected = _offscreen(app, mode, 0.37, 200, 130)
    assert np.abs(img.astype(int) - expected.astype(int)).max() <= 1
    from PIL import Image

    assert np.array_equal(np.asarray(Image.open(path).convert("RGB")), img)
    meta = read_png_metadata(path)
    assert meta["mipview.model"] == "tiny card"
    assert meta["mipview.mode"] == mode
    assert '"width": 200' in meta["mipview.camera"]
    assert "red card" in meta["mipview.sources"]
    assert meta["mipview.scale_label"].startswith("×")
    assert path.name.startswith("mipview_")


@pytest.mark.parametrize("mode", ["split", "side_by_side"])
def test_a_large_screenshot_is_rendered_in_tiles_and_equals_the_whole_render(
        app, mode, monkeypatch):
    """Past TILE_SIDE^2 pixels (2048^2; 64^2 here) a screenshot's panes are rendered in
    tiles, composed in 8-bit: the same picture as the whole render's."""
    from render.io import limits
    from viewer import frames

    monkeypatch.setattr(limits, "TILE_SIDE", 64)
    tiled_frames = []
    real = frames.render_panes_tiled
    monkeypatch.setattr(frames, "render_panes_tiled",
                        lambda req: tiled_frames.append(req) or real(req))
    _two_colour_app(app)
    app.state.compare.mode = mode
    app.state.compare.divider = 0.37
    settle(app)
    app.captured.clear()
    app.screenshot(width=200, height=130)
    t_end = time.time() + 60
    while not app.captured and time.time() < t_end:
        app.step()
    assert app.captured and len(tiled_frames) == 1 and not app.state.shot.last_error
    _, img = app.captured[-1]
    assert img.shape == (130, 200, 3)
    expected = _offscreen(app, mode, 0.37, 200, 130)
    assert np.abs(img.astype(int) - expected.astype(int)).max() <= 1


def test_failed_load_shows_error_and_keeps_model(app, tmp_path):
    bad = tmp_path / "broken.ply"
    bad.write_bytes(b"ply\nformat ascii 1.0\nelement vertex 3\nend_header\n1 2\n")
    before = app.state.model.gaussians
    assert app.open_model(bad)
    app.loader.wait(60)
    for _ in range(3):
        app.step()
    assert app.state.model.gaussians is before
    assert "broken.ply" in app.state.ui.error_title
    assert app.state.ui.error_text
    press(app, glfw.KEY_ESCAPE)
    assert not app.state.ui.error_text
    assert app.state.ui.recent == []


def test_good_load_swaps_model_and_remembers_it(app, tmp_path):
    from render.io import save_ply

    path = tmp_path / "other.ply"
    save_ply(tiny_scene(color=(0.1, 0.2, 0.9)), path)
    app.on_drop(None, [str(path)])  # as if dropped on the window
    app.loader.wait(60)
    settle(app)
    assert app.state.model.name == "other.ply"
    assert app.state.ui.recent[0] == str(path.resolve())
    from viewer.state import load_recent

    assert load_recent()[0] == str(path.resolve())
    r, g = _channel_share(scene(window_pixels(app)))
    b = float(scene(window_pixels(app))[..., 2].sum())
    assert b > r and b > g


def test_training_camera_keys_jump_to_cameras(app):
    settle(app)
    press(app, glfw.KEY_PERIOD)
    assert app.state.nav.camera_index == 0
    press(app, glfw.KEY_PERIOD)
    assert app.state.nav.camera_index == 1
    cam = app.state.model.cameras[1]
    got = app.state.nav.pose.camera(cam.width, cam.height)
    assert np.allclose(got.viewmat.numpy(), cam.viewmat.numpy(), atol=1e-5)
    press(app, glfw.KEY_COMMA)
    assert app.state.nav.camera_index == 0


def test_ui_keeps_running_while_a_frame_renders(tmp_path):
    """The loop does not wait for the rasterizer: with the slow reference backend, the
    mouse keeps moving and UI frames keep being drawn while one render is in flight."""
    a = make_app(tiny_model(), size=(200, 150), backend="reference")
    try:
        a.step()
        ui_frames_while_busy = 0
        t_end = time.time() + 60
        i = 0
        while time.time() < t_end and a.shown_frame is None:
            i += 1
            a.on_cursor_pos(None, 100 + i % 7, 100)  # hovering: ImGui must redraw
            busy = a.worker.busy
            drew = a.step()
            ui_frames_while_busy += busy and drew
        assert a.shown_frame is not None
        assert ui_frames_while_busy >= 3
    finally:
        a.close()


def test_render_events_wake_the_loop_wherever_it_sleeps(app):
    """A finished frame wakes a loop asleep in glfw (the render thread posts an event only
    then), and one that comes just before the loop would go to sleep is not lost."""
    import threading

    settle(app)
    assert not app.worker.busy  # so _wait sleeps in glfw, not on the render thread's event
    app._woken.clear()
    timer = threading.Timer(0.3, app._wake_up)
    t0 = time.perf_counter()
    timer.start()
    app._wait(30.0)
    timer.join()
    assert time.perf_counter() - t0 < 10.0, "the wake-up did not reach the sleeping loop"

    app._woken.clear()
    app._wake_up()  # the loop is awake: nothing posted, the event is kept
    t0 = time.perf_counter()
    app._wait(30.0)
    assert time.perf_counter() - t0 < 10.0, "a wake-up before the wait was lost"


@pytest.mark.parametrize("mode", ["split", "single"])
def test_new_frame_reuses_the_cached_panels_as_drawn(app, mode):
    """A UI frame that only shows a new rendered frame composites the cached panel
    layer, over the boxes the panels drew in, instead of running ImGui: the window must
    look as if the panels were drawn."""
    from viewer.app import DRAW_FRAME, DRAW_INPUT, DRAW_PANELS
    from viewer.display import read_screen

    app.state.ui.show_panels = True
    app.state.compare.mode = mode
    settle(app)
    size = app.framebuffer_size

    def draw(reason):
        app.ctx.screen.use()
        app.ctx.clear(1.0, 0.0, 1.0, 1.0)  # magenta: wherever nothing is drawn
        app._canvas_layer = None  # (so the back buffer holds nothing to keep)
        app._draw_window(reason, size)
        return read_screen(app.ctx, *size).astype(int)

    direct = draw(DRAW_INPUT)
    assert not app.ui_layer.usable(size)  # input: ImGui drew onto the screen
    refreshed = draw(DRAW_PANELS)
    assert app.ui_layer.usable(size)
    cached = draw(DRAW_FRAME)
    panels = np.abs(direct - scene_free(app, size)).max(axis=-1) > 8
    assert panels.mean() > 0.05  # the panels cover a good part of the window
    layer = app.ui_layer
    # The side panel's opaque background is copied, and the frame is not presented
    # under it; the rest of the panels is blended.
    copied = sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1, *_ in layer.opaque)
    assert copied > 0.2 * size[0] * size[1]
    mask = np.zeros(size[::-1], int)  # how often each pixel is composited
    for x0, y0, x1, y1, *_ in layer.regions + layer.opaque:
        mask[int(y0):int(y1), int(x0):int(x1)] += 1
    assert mask.max() == 1  # never twice (that would darken it)
    assert mask.mean() < 0.98  # the panels' boxes, not the whole window
    for got in (refreshed, cached):
        assert np.abs(got - direct).max() <= 2  # 8-bit rounding of the layer only


def test_new_frames_under_the_panels_reach_the_screen_whole(app, monkeypatch):
    """With a software GL on X11 a new frame under unchanged panels is drawn, and put on
    screen, only outside their opaque part (SubBufferCopy): what the X server shows
    must still be the new frame with the panels over it, as a full draw makes it."""
    import viewer.app as A
    from viewer.display import read_screen

    if app.sub_buffer is None:
        pytest.skip("the window's GL is not Mesa's software GL on GLX: buffers are swapped")
    for name in ("STREAMING_REDRAW_S", "IDLE_REDRAW_S", "READOUT_REDRAW_S"):
        monkeypatch.setattr(A, name, 1e9)  # the panels stay as they are: only new frames
    app.state.ui.show_panels = True
    settle(app)
    before = x11_window_pixels(app)
    shown = []
    show = app.sub_buffer.show
    monkeypatch.setattr(app.sub_buffer, "show",
                        lambda rects: shown.append(list(rects)) or show(rects))
    w, h = app.framebuffer_size
    app.on_cursor_pos(None, 250, 120)
    app.step()
    app.on_mouse_button(None, glfw.MOUSE_BUTTON_LEFT, glfw.PRESS, 0)
    for i in range(30):
        app.on_cursor_pos(None, 250 - 2 * i, 120)
        app.step()
    settle(app, frames_after=0)  # the button still held, no input since the last move
    assert shown[-1] != [(0, 0, w, h)], "the last frame was not put on screen in part"
    screen = x11_window_pixels(app)
    assert np.abs(scene(screen) - scene(before)).max() > 30  # the view turned
    assert np.array_equal(screen, read_screen(app.ctx, w, h))  # all of the back buffer
    assert np.abs(window_pixels(app).astype(int) - screen).max() <= 2  # as drawn whole
    app.on_mouse_button(None, glfw.MOUSE_BUTTON_LEFT, glfw.RELEASE, 0)


def test_copies_the_x_server_refuses_fall_back_to_a_swap(app, monkeypatch):
    """A copy outside the back buffer (a resize under way) is refused by the X server:
    Xlib's default would end the process; the viewer swaps instead and goes on."""
    if app.sub_buffer is None:
        pytest.skip("the window's GL is not Mesa's software GL on GLX: buffers are swapped")
    settle(app)
    w, h = app.framebuffer_size
    assert app.sub_buffer.show([(0, 0, w, h)])
    assert not app.sub_buffer.show([(0, 0, w + 500, h + 500)])
    swaps = []
    swap = glfw.swap_buffers
    monkeypatch.setattr(glfw, "swap_buffers", lambda window: swaps.append(1) or swap(window))
    app._show_back_buffer([(0, 0, w + 500, h + 500)], (w, h))
    assert swaps == [1]
    assert app.step(force_draw=True)  # and the window goes on
    assert app.sub_buffer.show([(0, 0, w, h)])


def scene_free(app, size) -> np.ndarray:
    """The window with the present pass alone (no panels). [H, W, 3] int"""
    from viewer.display import read_screen

    app.presenter.draw((0, 0, *size), app.state.compare.divider)
    return read_screen(app.ctx, *size).astype(int)


def test_snapshot_command(tmp_path):
    from render.io import save_ply

    display = ensure_display()
    model = tmp_path / "card.ply"
    save_ply(tiny_scene(), model)
    out = tmp_path / "snap.png"
    env = {**__import__("os").environ, "DISPLAY": display,
           "MIPVIEW_CONFIG_DIR": str(tmp_path / "cfg")}
    proc = subprocess.run([sys.executable, "-m", "viewer.cli", str(model), "--snapshot",
                           str(out), "--size", "360x240", "--backend", "cpu"],
                          env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    from PIL import Image

    img = np.asarray(Image.open(out).convert("RGB"))
    assert img.shape == (240, 360, 3)
    assert img[MENU:].std() > 5  # the scene, not an empty window
    meta = read_png_metadata(out)
    assert meta["mipview.model"] == "card.ply"
    assert "UI included" in meta["mipview.snapshot"]


class _FakeCudaTensor:
    """Stands in for a CUDA tensor where there is no GPU: interop must fail cleanly."""

    is_cuda = True

    def __init__(self, arr: np.ndarray) -> None:
        self.arr, self.shape = arr, arr.shape

    def cpu(self):
        return self

    def numpy(self) -> np.ndarray:
        return self.arr

    def data_ptr(self) -> int:
        return 0


def test_interop_failure_falls_back_to_upload_and_says_why(app):
    from viewer.display import FrameTexture

    img = np.random.default_rng(0).integers(0, 256, (9, 13, 4), dtype=np.uint8)
    tex = FrameTexture(app.ctx, allow_interop=True)
    try:
        tex.put(_FakeCudaTensor(img))
        assert tex.path == "cpu-upload"
        assert "interop unavailable" in tex.reason
        assert not tex.allow_interop  # not retried every frame
        assert np.array_equal(tex.read(), img)
    finally:
        tex.release()


def test_key_4_draws_a_with_gaussian_blending_and_b_stays_comparable(app):
    settle(app)
    before = window_pixels(app)
    press(app, glfw.KEY_4)
    assert app.state.render.antialias == "blend"
    settle(app)
    assert not np.array_equal(scene(window_pixels(app)), scene(before))
    # split view: A is the base drawn with Gaussian Blending, labelled so
    app.state.compare.cycle_mode()
    settle(app)
    sources = app.shown_frame.request.sources
    assert len(sources) == 2 and sources[0].label == "base (blend)"
    assert sources[0].options(app.shown_frame.request.options).antialias == "blend"
