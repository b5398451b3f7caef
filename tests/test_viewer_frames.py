"""The render thread (viewer/frames.py) and the recent-files list, without a window."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
from viewer_support import tiny_cameras, tiny_scene

from render.options import RenderOptions
from viewer.compare import Source
from viewer.frames import FrameRequest, RenderWorker, render_panes, to_bgra8


def _request(seq, cam, g, full=True):
    return FrameRequest(seq, (cam,), (Source(g, "tiny"),),
                        RenderOptions(backend="cpu"), full, cam)


def _wait(pred, timeout=120):
    t_end = time.time() + timeout
    while not pred():
        if time.time() > t_end:
            raise AssertionError("timed out")
        time.sleep(0.01)


def test_worker_renders_the_newest_request_and_drops_stale_ones():
    g = tiny_scene()
    cam = tiny_cameras()[0].scaled(0.25)
    gate = threading.Event()
    calls = []

    def slow_scale(gs, c):  # holds the thread after the first frame until released
        calls.append(c)
        gate.wait(30)
        return 1.0

    w = RenderWorker(scale_fn=slow_scale)
    try:
        w.request(_request(1, cam, g))
        _wait(lambda: calls)  # frame 1 rendered, thread blocked in the scale function
        for seq in range(2, 7):
            w.request(_request(seq, cam, g))
        gate.set()
        _wait(lambda: w.latest() is not None and w.latest().request.seq == 6)
        _wait(w.idle)
        assert w.latest().request.seq == 6
        assert w.started_seq == 6
        assert w.scale == 1.0
    finally:
        gate.set()
        w.stop()


def test_worker_wakes_the_ui_after_every_frame_once_per_streamed_frame():
    """A UI loop that sleeps until woken sees every frame the thread publishes, and while
    views stream (the next view posted as soon as the last was taken up, as a drag does)
    one wake-up a frame serves both the publication and the next take-up."""
    g = tiny_scene()
    cam = tiny_cameras()[0].scaled(0.25)
    n = 12
    seen: list[int] = []  # per wake-up, the newest frame the UI would show
    w: RenderWorker | None = None
    posted = [1]

    def on_event():  # the UI loop, woken: shows the newest frame, posts the next view
        latest = w.latest()
        seen.append(latest.request.seq if latest is not None else 0)
        if w.started_seq == posted[0] < n:
            posted[0] += 1
            w.request(_request(posted[0], cam, g))

    w = RenderWorker(on_event=on_event)
    try:
        w.request(_request(1, cam, g))
        _wait(lambda: w.idle() and posted[0] == n)
        time.sleep(0.05)
        assert set(range(1, n + 1)) <= set(seen), seen  # every frame was seen
        assert seen[-1] == n
        assert len(seen) <= n + 3, seen  # two wake-ups a frame before
    finally:
        w.stop()


def test_worker_capture_jobs_are_never_dropped_and_errors_are_reported():
    g = tiny_scene()
    cam = tiny_cameras()[0].scaled(0.25)
    w = RenderWorker()
    try:
        for seq in range(3):
            w.capture(_request(seq, cam, g))
        bad = FrameRequest(9, (cam,), (Source(g, "bad", {"backend": "nonsense"}),),
                           RenderOptions(backend="cpu"), True, cam)
        w.request(bad)
        got = []
        _wait(lambda: got.extend(w.take_captures()) or len(got) == 3)
        assert [f.request.seq for f in got] == [0, 1, 2]
        _wait(lambda: w.latest() is not None)
        assert w.latest().error and "nonsense" in w.latest().error
    finally:
        w.stop()


def test_frame_images_are_the_render_as_bgra8():
    g = tiny_scene()
    cam = tiny_cameras()[0].scaled(0.25)
    frame = render_panes(_request(0, cam, g), keep_on_device=False)
    result, _ = frame.panes[0]
    assert result.rgb is None  # the display render: 8-bit colour only, no float images
    img = frame.images[0]
    assert img.shape == (cam.height, cam.width, 4) and img.dtype == np.uint8
    assert (img[..., 3] == 255).all()
    from render.rasterize import render

    rgb = render(g, cam, RenderOptions(backend="cpu")).rgb.numpy()
    want = np.floor(np.clip(rgb, 0, 1) * np.float32(255) + np.float32(0.5)).astype(np.uint8)
    assert np.array_equal(img[..., 2::-1], want)  # B, G, R: the float render's colour
    depth = to_bgra8(render(g, cam, RenderOptions(backend="cpu", output="depth")), "depth")
    assert depth.shape == img.shape and int(depth[..., 0].max()) == 255


def test_recent_files_are_written_atomically(tmp_path, monkeypatch):
    from viewer.state import load_recent, push_recent, recent_file, save_recent

    monkeypatch.setenv("MIPVIEW_CONFIG_DIR", str(tmp_path))
    assert load_recent() == []
    recent = []
    for i in range(12):
        recent = push_recent(recent, tmp_path / f"m{i}.ply")
    recent = push_recent(recent, tmp_path / "m5.ply")
    save_recent(recent)
    got = load_recent()
    assert got[0].endswith("m5.ply") and len(got) == 10 and len(set(got)) == 10
    assert [p.name for p in tmp_path.iterdir()] == ["recent.json"]  # no temp file left
    recent_file().write_text("{not json")
    assert load_recent() == []  # a damaged list is ignored, never fatal
    assert json.loads(json.dumps(got)) == got


@pytest.mark.parametrize("output", ["rgb", "alpha"])
def test_outputs_are_grey_or_colour(output):
    g = tiny_scene()
    cam = tiny_cameras()[0].scaled(0.25)
    from render.rasterize import render

    img = to_bgra8(render(g, cam, RenderOptions(backend="cpu", output=output)), output)
    if output == "alpha":
        assert (img[..., 0] == img[..., 1]).all()


def test_start_camera_files(tmp_path):
    from render.io import CameraRecord, save_inria_cameras
    from viewer.commands.view import load_start_camera

    cam = tiny_cameras()[1]
    p = tmp_path / "cam.json"
    p.write_text(json.dumps(cam.to_dict()))
    got = load_start_camera(p)
    assert np.allclose(got.viewmat.numpy(), cam.viewmat.numpy())
    inria = tmp_path / "cameras.json"
    save_inria_cameras([CameraRecord(0, "first", cam)], inria)
    got = load_start_camera(inria)
    assert np.allclose(got.viewmat.numpy(), cam.viewmat.numpy(), atol=1e-5)
    bad = tmp_path / "bad.json"
    bad.write_text('{"hello": 1}')
    with pytest.raises(SystemExit, match="bad.json"):
        load_start_camera(bad)
    with pytest.raises(SystemExit, match="missing.json"):
        load_start_camera(tmp_path / "missing.json")
