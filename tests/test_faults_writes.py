"""Fault injection, writes: a full disk, an unwritable folder, Ctrl-C, kill -9, a render
that runs out of memory. Expected: a one-line error (or exit 130 for Ctrl-C), no traceback,
the output whole or absent, and what was there before untouched."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from render import Camera
from render.gaussians import Gaussians
from render.io import CameraRecord, save_inria_cameras, save_ply
from viewer.camera_path import CameraPath, Keyframe, save_camera_path
from viewer.cli import main

pytestmark = pytest.mark.fault

REPO = Path(__file__).resolve().parents[1]
W, H = 24, 16


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    torch.manual_seed(4)
    g = Gaussians.from_colors(torch.randn(200, 3) * 0.5, torch.rand(200, 3),
                              scales=torch.rand(200, 3) * 0.05 + 0.01,
                              opacities=torch.rand(200) * 0.8 + 0.15)
    return save_ply(g, tmp_path_factory.mktemp("m") / "model.ply")


def _cams(n=3) -> list[Camera]:
    return [Camera.look_at((2.0 * (i % 3 - 1), 0.3, -3.0), (0, 0, 0), fov_y_deg=45,
                           width=W, height=H) for i in range(n)]


def _cameras_file(tmp_path, n=3) -> str:
    path = tmp_path / "cameras.json"
    save_inria_cameras([CameraRecord(i, f"img{i}", c) for i, c in enumerate(_cams(n))], path)
    return str(path)


def _path_file(tmp_path) -> str:
    p = CameraPath([Keyframe.from_camera(c) for c in _cams()], fps=4.0, seconds=1.0,
                   width=W, height=H)
    return str(save_camera_path(p, tmp_path / "path.json"))


def _render(model, out, *args) -> int:
    return main(["render", str(model), *args, "--out", str(out), "--backend", "cpu", "--quiet"])


def _visible(folder: Path) -> dict[str, bytes]:
    """The files a user sees in a folder (no hidden temporaries), with their content."""
    return {p.name: (p.read_bytes() if p.is_file() else b"<dir>")
            for p in folder.iterdir() if not p.name.startswith(".")}


def _no_leftovers(folder: Path) -> None:
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == []


def _enospc_on_call(monkeypatch, module, name: str, n: int) -> None:
    """Make `module.name` raise ENOSPC from its n-th call on (1-based)."""
    real = getattr(module, name)
    calls = {"n": 0}

    def fake(*a, **k):
        calls["n"] += 1
        if calls["n"] >= n:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(*a, **k)

    monkeypatch.setattr(module, name, fake)


# ---------------------------------------------------------------------------------------
# render --cameras: a folder of PNGs appears whole or not at all
# ---------------------------------------------------------------------------------------
def test_disk_full_in_render_cameras_adds_nothing_to_the_folder(model, tmp_path, capsys,
                                                                monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "img0.png").write_bytes(b"the user's own file")
    before = _visible(out)
    import render.io.atomic as atomic

    _enospc_on_call(monkeypatch, atomic.os, "fsync", 2)  # the second image hits a full disk
    assert _render(model, out, "--cameras", _cameras_file(tmp_path)) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "Traceback" not in err
    assert _visible(out) == before
    _no_leftovers(out)


def test_ctrl_c_in_render_cameras_exits_130_and_adds_nothing(model, tmp_path, capsys,
                                                             monkeypatch):
    import viewer.commands.render_cmd as rc_mod

    real, calls = rc_mod._render_rgb, {"n": 0}

    def interrupted_on_second(source, cam):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(source, cam)

    monkeypatch.setattr(rc_mod, "_render_rgb", interrupted_on_second)
    out = tmp_path / "out"
    assert _render(model, out, "--cameras", _cameras_file(tmp_path)) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "Traceback" not in err
    assert _visible(out) == {}
    _no_leftovers(out)


def test_out_of_memory_in_a_render_is_a_clear_error(model, tmp_path, capsys, monkeypatch):
    import viewer.commands.render_cmd as rc_mod

    def oom(source, cam):
        raise MemoryError

    monkeypatch.setattr(rc_mod, "_render_rgb", oom)
    out = tmp_path / "v.mp4"
    out.write_bytes(b"an older video")
    assert _render(model, out, "--path", _path_file(tmp_path)) == 1
    err = capsys.readouterr().err
    assert "out of memory" in err and "Traceback" not in err
    assert out.read_bytes() == b"an older video"
    _no_leftovers(tmp_path)


def test_kill_9_in_render_cameras_leaves_no_image_in_the_folder(model, tmp_path):
    """A real process killed (SIGKILL) after its first image is on disk: the folder shows
    none of the new images (they sit in a hidden staging folder until all are done)."""
    out = tmp_path / "out"
    out.mkdir()
    cams = _cameras_file(tmp_path, n=400)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-m", "viewer.cli", "render", str(model), "--cameras", cams,
         "--out", str(out), "--backend", "cpu", "--quiet"],
        env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not any(out.rglob("*.png")):
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no image was written in 120 s"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
    assert _visible(out) == {}


# ---------------------------------------------------------------------------------------
# render --path: frames folders and videos
# ---------------------------------------------------------------------------------------
def test_a_frame_named_sub_folder_is_never_removed(model, tmp_path, capsys):
    frames = tmp_path / "frames"
    (frames / "00001.png").mkdir(parents=True)
    (frames / "00001.png" / "notes.txt").write_text("mine")
    (frames / "00000.png").write_bytes(b"an old frame")
    assert _render(model, frames, "--path", _path_file(tmp_path)) == 1
    err = capsys.readouterr().err
    assert "00001.png/" in err and "Traceback" not in err
    assert (frames / "00001.png" / "notes.txt").read_text() == "mine"
    assert (frames / "00000.png").read_bytes() == b"an old frame"


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_outputs_get_the_umask_mode_not_private_ones(model, tmp_path, umask):
    old = os.umask(umask)
    try:
        out = tmp_path / "out"
        assert _render(model, out, "--cameras", _cameras_file(tmp_path)) == 0
        frames = tmp_path / "frames"
        frames.mkdir()  # replaced by the render: the new folder gets the umask's mode
        assert _render(model, frames, "--path", _path_file(tmp_path)) == 0
        saved = save_camera_path(CameraPath([Keyframe.from_camera(_cams()[0])]),
                                 tmp_path / "p2.json")
    finally:
        os.umask(old)
    for png in out.glob("*.png"):
        assert png.stat().st_mode & 0o777 == 0o666 & ~umask, png
    assert frames.stat().st_mode & 0o777 == 0o777 & ~umask
    for png in frames.glob("*.png"):
        assert png.stat().st_mode & 0o777 == 0o666 & ~umask, png
    assert saved.stat().st_mode & 0o777 == 0o666 & ~umask


def test_video_gets_the_umask_mode(model, tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    old = os.umask(0o022)
    try:
        out = tmp_path / "v.mp4"
        assert _render(model, out, "--path", _path_file(tmp_path)) == 0
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o644


# ---------------------------------------------------------------------------------------
# adapt, train, eval
# ---------------------------------------------------------------------------------------
def _fake_adapt(model_g):
    return SimpleNamespace(gaussians=model_g, iterations=1, n_views=1, held_out=[],
                           upsampler="none", seconds=0.0)


def test_ctrl_c_in_adapt_exits_130_and_keeps_the_old_file(tmp_path, capsys, monkeypatch):
    import viewer.commands.adapt_cmd as ad

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(ad, "adapt_level", interrupted)
    out = tmp_path / "level.ply"
    out.write_bytes(b"an older level")
    assert main(["adapt", "demo", "--level", "1/2", "--out", str(out), "--quiet"]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "Traceback" not in err
    assert out.read_bytes() == b"an older level"
    _no_leftovers(tmp_path)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES])
def test_adapt_that_cannot_write_its_ply_is_a_clear_error(tmp_path, capsys, monkeypatch,
                                                          code):
    import render.io.atomic as atomic
    import viewer.commands.adapt_cmd as ad

    monkeypatch.setattr(ad, "adapt_level", lambda base, *a, **k: _fake_adapt(base))

    def refuse(*a, **k):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(atomic.tempfile, "mkstemp", refuse)
    out = tmp_path / "level.ply"
    out.write_bytes(b"an older level")
    assert main(["adapt", "demo", "--level", "1/2", "--out", str(out), "--quiet",
                 "--no-eval"]) == 1
    err = capsys.readouterr().err
    assert os.strerror(code) in err and "level.ply" in err and "Traceback" not in err
    assert out.read_bytes() == b"an older level"


def _tiny_nerf_folder(folder: Path) -> Path:
    """A NeRF-synthetic folder of two 8 x 8 RGBA images."""
    import numpy as np
    from PIL import Image

    folder.mkdir()
    frames = []
    for i in range(2):
        Image.fromarray(np.full((8, 8, 4), 200, np.uint8)).save(folder / f"r_{i}.png")
        c2w = np.eye(4)
        c2w[2, 3] = 4.0 + i
        frames.append({"file_path": f"./r_{i}", "transform_matrix": c2w.tolist()})
    (folder / "transforms_train.json").write_text(
        json.dumps({"camera_angle_x": 0.7, "frames": frames}))
    return folder


def test_ctrl_c_in_train_exits_130_and_writes_no_model(tmp_path, capsys, monkeypatch):
    import adapt.train

    lego = _tiny_nerf_folder(tmp_path / "scene")
    tmp_path = tmp_path / "out"
    tmp_path.mkdir()

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(adapt.train, "train_base", interrupted)
    out = tmp_path / "base.ply"
    assert main(["train", str(lego), "--scale", "1", "--iters", "5", "--out", str(out),
                 "--quiet"]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_in_eval_exits_130(tmp_path, capsys, monkeypatch):
    import viewer.commands.train_cmd as tc

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(tc, "train_to_file", interrupted)
    out = tmp_path / "report"
    assert main(["eval", str(tmp_path), "--out", str(out), "--quiet"]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "Traceback" not in err


def test_a_report_that_fails_half_way_leaves_the_old_report_whole(tmp_path):
    from viewer.commands.eval_cmd import _write_report

    out = tmp_path / "report"
    out.mkdir()
    (out / "results.json").write_text('{"old": true}')

    def write_report(res, grid, folder, cell):
        (folder / "results.json").write_text('{"new": true}')
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(OSError):
        _write_report(SimpleNamespace(write_report=write_report), None, {}, out, 8)
    assert json.loads((out / "results.json").read_text()) == {"old": True}
    assert _visible(out).keys() == {"results.json"}
    _no_leftovers(out)


# ---------------------------------------------------------------------------------------
# kill -9 in the middle of a write
# ---------------------------------------------------------------------------------------
_WRITER = """
import sys, time
from render.io.atomic import atomic_open
with atomic_open(sys.argv[1]) as f:
    f.write(b"new" * 100000)
    f.flush()
    print("half", flush=True)
    time.sleep(60)
    f.write(b"rest")
"""


def test_kill_9_mid_write_leaves_the_old_file(tmp_path):
    target = tmp_path / "model.ply"
    target.write_bytes(b"the old, complete file")
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(target)], cwd=REPO,
                            env=dict(os.environ, PYTHONPATH=str(REPO)),
                            stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline().strip() == b"half"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    assert target.read_bytes() == b"the old, complete file"


# ---------------------------------------------------------------------------------------
# convert (more in test_faults_convert.py): no temporary file can be made
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES])
def test_convert_that_cannot_write_is_a_clear_error(model, tmp_path, capsys, monkeypatch,
                                                    code):
    import render.io.atomic as atomic

    def refuse(*a, **k):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(atomic.tempfile, "mkstemp", refuse)
    out = tmp_path / "scene.ply"
    out.write_bytes(b"an older model")
    assert main(["convert", str(model), str(out), "--force", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert os.strerror(code) in err and "scene.ply" in err and "Traceback" not in err
    assert out.read_bytes() == b"an older model"
    _no_leftovers(tmp_path)


def _vanish_after_the_first_image(monkeypatch, folder: Path) -> None:
    """Another program removes `folder` while `mipview render` draws its second image."""
    import shutil

    import viewer.commands.render_cmd as rc

    real, calls = rc._render_rgb, {"n": 0}

    def vanish(source, camera):
        calls["n"] += 1
        if calls["n"] == 2:
            shutil.rmtree(folder)
        return real(source, camera)

    monkeypatch.setattr(rc, "_render_rgb", vanish)


@pytest.mark.parametrize("name", ["frames", "path.mp4"])
def test_a_folder_that_vanishes_during_render_path_is_a_clear_error(model, tmp_path, capsys,
                                                                     monkeypatch, name):
    folder = tmp_path / "shots"
    folder.mkdir()
    _vanish_after_the_first_image(monkeypatch, folder)
    out = folder / name
    code = _render(model, out, "--path", _path_file(tmp_path))
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err and "shots" in err
    assert not out.exists()  # nothing half-written (the folder is gone, not rebuilt half-full)


def test_a_folder_that_vanishes_during_render_cameras_is_a_clear_error(model, tmp_path, capsys,
                                                                        monkeypatch):
    out = tmp_path / "shots"
    _vanish_after_the_first_image(monkeypatch, out)
    code = _render(model, out, "--cameras", _cameras_file(tmp_path))
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err and "shots" in err
    assert not out.exists() or _visible(out) == {}  # never a set of images missing the first
