"""Fault injection, the viewer's entry points through their non-GL functions: open, the
screenshot, the camera path editor and the export of an adapted level. Expected: the error
is shown in the panel, the viewer's state is what it was (no wrong model, no crash), and no
file is half-written."""

from __future__ import annotations

import errno
import json
import os
from types import SimpleNamespace

import pytest
import torch

from adapt.cache import LevelCache
from render import Camera
from render.gaussians import Gaussians
from render.io import CameraRecord, load_model, save_inria_cameras, save_ply
from render.io import limits as limits_mod
from viewer import path_panel as pp
from viewer.camera_path import CameraPath, Keyframe, camera_path_to_dict, save_camera_path
from viewer.state import ScreenshotSettings

pytestmark = pytest.mark.fault


def _set(n: int = 60, seed: int = 0) -> Gaussians:
    g = torch.Generator().manual_seed(seed)
    return Gaussians.from_colors(torch.randn(n, 3, generator=g), torch.rand(n, 3, generator=g),
                                 torch.full((n, 3), 0.02), torch.full((n,), 0.7))


def _cam(w=32, h=24, x=0.0) -> Camera:
    return Camera.look_at((x, 0.0, -3.0), (0, 0, 0), fov_y_deg=45, width=w, height=h)


# ---------------------------------------------------------------------------------------
# open
# ---------------------------------------------------------------------------------------
def test_open_with_a_huge_training_camera_keeps_the_model_and_says_why(tmp_path):
    ply = save_ply(_set(), tmp_path / "model.ply")
    save_inria_cameras([CameraRecord(0, "a", _cam())], tmp_path / "cameras.json")
    entries = json.loads((tmp_path / "cameras.json").read_text())
    entries[0]["width"] = entries[0]["height"] = 100000
    (tmp_path / "cameras.json").write_text(json.dumps(entries))
    loaded = load_model(ply)
    assert len(loaded.gaussians) == 60  # the model opens
    assert loaded.cameras is None  # but no camera the viewer or adaptation cannot render
    assert any("100000 x 100000" in w and "cameras.json" in w for w in loaded.warnings)


# ---------------------------------------------------------------------------------------
# screenshot
# ---------------------------------------------------------------------------------------
def _fake_app(shot: ScreenshotSettings):
    captured = []
    app = SimpleNamespace(
        state=SimpleNamespace(shot=shot, render=SimpleNamespace(output="rgb")), _seq=0,
        worker=SimpleNamespace(capture=captured.append),
        view_camera=lambda w=None, h=None: _cam(w or 32, h or 24),
        build_request=lambda cam, full, seq, view, tag: (cam, tag))
    return app, captured


@pytest.mark.parametrize("size", [(100000, 100000), (30000, 30000)])
def test_a_screenshot_too_large_is_refused_in_the_panel(size, monkeypatch):
    from viewer.app import ViewerApp as App

    monkeypatch.setattr(limits_mod, "available_memory", lambda: 4 * 2**30)
    shot = ScreenshotSettings(folder="/nonexistent", window_size=False, width=size[0],
                              height=size[1])
    app, captured = _fake_app(shot)
    App.screenshot(app)
    assert captured == []  # nothing queued, nothing allocated
    assert "screenshot not taken" in shot.last_error and f"{size[0]} x {size[1]}" in \
        shot.last_error
    shot.width, shot.height = 640, 480  # the viewer goes on: a sane size is taken
    App.screenshot(app)
    assert len(captured) == 1 and shot.last_error == ""
    assert not captured[0][1]["tiled"]


def test_a_screenshot_beyond_a_whole_render_is_taken_in_tiles(monkeypatch):
    """12000 x 8000 needs ~6 GB rendered whole, 0.6 GB in tiles: with 4 GiB free it is
    queued as a tiled capture, not refused."""
    from viewer.app import ViewerApp as App

    monkeypatch.setattr(limits_mod, "available_memory", lambda: 4 * 2**30)
    shot = ScreenshotSettings(folder="/nonexistent", window_size=False, width=12000,
                              height=8000)
    app, captured = _fake_app(shot)
    App.screenshot(app)
    assert shot.last_error == "" and len(captured) == 1
    cam, tag = captured[0]
    assert (cam.width, cam.height) == (12000, 8000) and tag["tiled"]


# ---------------------------------------------------------------------------------------
# camera path editor
# ---------------------------------------------------------------------------------------
def _editor(tmp_path) -> pp.PathEditorState:
    st = pp.PathEditorState(path=CameraPath([Keyframe.from_camera(_cam(x=x)) for x in (0, 1)]))
    st.file_name = str(tmp_path / "path.json")
    return st


def _hostile(tmp_path, name: str, **changes) -> str:
    d = camera_path_to_dict(CameraPath([Keyframe.from_camera(_cam(x=x)) for x in (0, 1)],
                                       fps=4, seconds=1))
    d.update(changes)
    f = tmp_path / name
    f.write_text(json.dumps(d))
    return str(f)


@pytest.mark.parametrize("name, changes, words", [
    ("deep.json", {"keyframes": [{"matrix": "[" * 50_000 + "]" * 50_000, "fov": 40}]},
     "matrix"),
    ("long.json", {"fps": 1e6, "seconds": 1e6, "camera_path": []}, "fps x seconds"),
    ("wide.json", {"render_width": 1e300, "camera_path": []}, "render_width"),
])
def test_loading_a_hostile_path_keeps_the_current_one(tmp_path, name, changes, words):
    st = _editor(tmp_path)
    before = st.path
    st.file_name = _hostile(tmp_path, name, **changes)
    assert pp.load(st) is False
    assert st.path is before
    assert name in st.last_error and words in st.last_error


def test_saving_a_path_on_a_full_disk_keeps_the_old_file(tmp_path, monkeypatch):
    import render.io.atomic as atomic

    st = _editor(tmp_path)
    old = save_camera_path(CameraPath([Keyframe.from_camera(_cam())]), st.file_name)
    before = old.read_bytes()

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic.os, "fsync", full)
    assert pp.save(st) is False
    assert "No space left" in st.last_error
    assert old.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["path.json"]


# ---------------------------------------------------------------------------------------
# export of an adapted level
# ---------------------------------------------------------------------------------------
def test_export_on_a_full_disk_says_so_and_keeps_the_old_file(tmp_path, monkeypatch):
    import render.io.atomic as atomic
    from viewer.adaptation import AdaptController

    cache = LevelCache("h", "s", tmp_path / "cache")
    cache.put(-1, _set(30))
    ctrl = AdaptController()
    ctrl.cache, ctrl.levels = cache, cache.levels()
    out = tmp_path / "export" / "level.ply"
    out.parent.mkdir()
    out.write_bytes(b"an older export")

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic.os, "fsync", full)
    ctrl.export(-1, out).join(30)
    assert "No space left" in ctrl.error and "level.ply" in ctrl.error
    assert out.read_bytes() == b"an older export"
    assert [p.name for p in out.parent.iterdir()] == ["level.ply"]
