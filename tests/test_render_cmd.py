"""`mipview render`: training cameras to PNGs, camera paths to videos and frame folders."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from render import Camera, RenderOptions, render
from render.gaussians import Gaussians
from render.io import CameraRecord, save_inria_cameras, save_ply
from viewer.camera_path import CameraPath, Keyframe, save_camera_path
from viewer.capture import read_png_metadata, to_uint8
from viewer.cli import main

W, H = 32, 24


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A small random model saved as .ply, and the Gaussians as loaded back."""
    from render.io import load_model

    torch.manual_seed(1)
    n = 400
    g = Gaussians.from_colors(torch.randn(n, 3) * 0.6, torch.rand(n, 3),
                              scales=torch.rand(n, 3) * 0.06 + 0.01,
                              opacities=torch.rand(n) * 0.8 + 0.15)
    folder = tmp_path_factory.mktemp("scene")
    ply = save_ply(g, folder / "model.ply")
    return ply, load_model(ply, find_cameras=False).gaussians


def _cameras() -> list[Camera]:
    eyes = [(0.0, 0.0, -3.0), (2.0, -0.5, -2.5), (-2.5, 0.3, -1.5)]
    return [Camera.look_at(e, (0, 0, 0), fov_y_deg=45, width=W, height=H) for e in eyes]


def _direct(g, cam, **opts) -> np.ndarray:
    with torch.no_grad():
        return to_uint8(render(g, cam, RenderOptions(backend="cpu", **opts)).rgb)


def _png(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def _path_file(tmp_path, **kw) -> tuple:
    path = CameraPath([Keyframe.from_camera(c) for c in _cameras()],
                      **{"fps": 5.0, "seconds": 1.2, "width": W, "height": H, **kw})
    return save_camera_path(path, tmp_path / "path.json"), path


# ---------------------------------------------------------------------------------------
# --cameras
# ---------------------------------------------------------------------------------------
def test_cameras_render_one_png_per_camera_matching_a_direct_render(scene, tmp_path):
    ply, g = scene
    cams = _cameras()
    names = ["frame_a", "sub/dir:b", "frame_c.jpg"]
    save_inria_cameras([CameraRecord(i, n, c) for i, (n, c) in enumerate(zip(names, cams))],
                       tmp_path / "cameras.json")
    out = tmp_path / "out"
    rc = main(["render", str(ply), "--cameras", str(tmp_path / "cameras.json"), "--out",
               str(out), "--backend", "cpu", "--quiet"])
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == ["frame_a.png", "frame_c.png",
                                                    "sub_dir_b.png"]
    for name, cam in zip(["frame_a", "sub_dir_b", "frame_c"], cams):
        img = _png(out / f"{name}.png")
        assert img.shape == (H, W, 3)
        assert np.array_equal(img, _direct(g, cam)), name
        assert img.std() > 5  # something was drawn
    meta = read_png_metadata(out / "frame_a.png")
    assert Camera.from_dict(json.loads(meta["mipview.camera"])).width == W
    assert meta["mipview.antialias"] == "classic" and meta["mipview.model"] == str(ply)


def test_cameras_scale_and_antialias_options(scene, tmp_path):
    ply, g = scene
    cam = _cameras()[0]
    save_inria_cameras([CameraRecord(0, "v", cam)], tmp_path / "cameras.json")
    rc = main(["render", str(ply), "--cameras", str(tmp_path / "cameras.json"), "--out",
               str(tmp_path / "out"), "--backend", "cpu", "--scale", "1.5", "--aa", "mip",
               "--sh-degree", "0", "--background", "1,1,1", "--quiet"])
    assert rc == 0
    img = _png(tmp_path / "out" / "v.png")
    assert img.shape == (36, 48, 3)
    want = _direct(g, cam.scaled(1.5), antialias="mip", sh_degree=0, background=(1, 1, 1),
                   zoom=1.5)
    assert np.array_equal(img, want)


# ---------------------------------------------------------------------------------------
# --path
# ---------------------------------------------------------------------------------------
def test_path_to_mp4_has_every_frame(scene, tmp_path, capsys):
    imageio = pytest.importorskip("imageio.v2")
    pytest.importorskip("imageio_ffmpeg")
    ply, _ = scene
    file, path = _path_file(tmp_path)
    out = tmp_path / "video.mp4"
    rc = main(["render", str(ply), "--path", str(file), "--out", str(out), "--backend", "cpu",
               "--size", "40x30"])
    assert rc == 0
    err = capsys.readouterr().err
    assert "6/6 [" in err and "render" in err  # the tqdm bar reached the end
    reader = imageio.get_reader(out, format="ffmpeg")
    frames = [np.asarray(f) for f in reader]
    reader.close()
    assert len(frames) == path.n_frames == 6
    assert frames[0].shape == (30, 40, 3)


def test_path_to_frames_folder_matches_direct_renders(scene, tmp_path):
    ply, g = scene
    file, path = _path_file(tmp_path)
    out = tmp_path / "frames"
    rc = main(["render", str(ply), "--path", str(file), "--out", str(out), "--backend", "cpu",
               "--quiet"])
    assert rc == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"{i:05d}.png" for i in range(6)]
    cams = path.frames()
    for i in (0, 3, 5):
        assert np.array_equal(_png(out / names[i]), _direct(g, cams[i])), i
    # first and last frames sit on the first and last keyframes
    assert np.array_equal(_png(out / names[0]), _direct(g, _cameras()[0]))
    assert read_png_metadata(out / names[0])["mipview.camera_path"] == str(file)


def test_fps_override_resamples_the_path(scene, tmp_path):
    ply, _ = scene
    file, _ = _path_file(tmp_path)
    rc = main(["render", str(ply), "--path", str(file), "--out", str(tmp_path / "f"),
               "--backend", "cpu", "--fps", "10", "--quiet"])
    assert rc == 0
    assert len(list((tmp_path / "f").iterdir())) == 12


def test_side_by_side_doubles_the_width(scene, tmp_path):
    ply, g = scene
    file, path = _path_file(tmp_path)
    out = tmp_path / "sbs"
    rc = main(["render", str(ply), "--path", str(file), "--out", str(out), "--backend", "cpu",
               "--side-by-side", "--b-aa", "mip", "--no-labels", "--quiet"])
    assert rc == 0
    img = _png(out / "00002.png")
    assert img.shape == (H, 2 * W, 3)
    cam = path.frames()[2]
    assert np.array_equal(img[:, :W], _direct(g, cam))
    assert np.array_equal(img[:, W:], _direct(g, cam, antialias="mip"))
    assert not np.array_equal(img[:, :W], img[:, W:])  # the two modes do differ

    # with a second model and captions
    other = save_ply(g.subset(torch.arange(len(g)) % 2 == 0), tmp_path / "half.ply")
    rc = main(["render", str(ply), "--path", str(file), "--out", str(tmp_path / "sbs2"),
               "--backend", "cpu", "--side-by-side", "--b-model", str(other), "--quiet"])
    assert rc == 0
    img2 = _png(tmp_path / "sbs2" / "00002.png")
    assert img2.shape == (H, 2 * W, 3)
    assert not np.array_equal(img2[:, W:], img[:, W:])


# ---------------------------------------------------------------------------------------
# Bad input: non-zero exit, one clear line on stderr, nothing overwritten
# ---------------------------------------------------------------------------------------
def test_bad_model_exits_non_zero_and_writes_nothing(tmp_path, capsys):
    bad = tmp_path / "broken.ply"
    bad.write_text("ply\nformat ascii 1.0\nelement vertex 3\nend_header\n1 2\n")
    save_inria_cameras([CameraRecord(0, "v", _cameras()[0])], tmp_path / "cameras.json")
    rc = main(["render", str(bad), "--cameras", str(tmp_path / "cameras.json"), "--out",
               str(tmp_path / "out"), "--backend", "cpu"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "broken.ply" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_bad_cameras_file_leaves_existing_output(scene, tmp_path, capsys):
    ply, _ = scene
    out = tmp_path / "out"
    out.mkdir()
    (out / "v.png").write_bytes(b"previous render")
    (tmp_path / "cameras.json").write_text('[{"id": 0, "img_name": "v"}]')
    rc = main(["render", str(ply), "--cameras", str(tmp_path / "cameras.json"), "--out",
               str(out), "--backend", "cpu"])
    err = capsys.readouterr().err
    assert rc == 2 and "cameras.json" in err
    assert (out / "v.png").read_bytes() == b"previous render"


def test_bad_path_file_leaves_existing_video(scene, tmp_path, capsys):
    ply, _ = scene
    video = tmp_path / "video.mp4"
    video.write_bytes(b"previous video")
    bad = tmp_path / "path.json"
    bad.write_text(json.dumps({"render_width": 32, "render_height": 24, "fps": 5,
                               "seconds": 1, "camera_path": [{"camera_to_world": [1, 0, 0],
                                                              "fov": 50}]}))
    rc = main(["render", str(ply), "--path", str(bad), "--out", str(video), "--backend", "cpu"])
    err = capsys.readouterr().err
    assert rc == 2 and "path.json" in err and "16 numbers" in err
    assert video.read_bytes() == b"previous video"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["path.json", "video.mp4"]


def test_bad_option_combinations_are_refused(scene, tmp_path, capsys):
    ply, _ = scene
    file, _ = _path_file(tmp_path)
    rc = main(["render", str(ply), "--path", str(file), "--out", str(tmp_path / "x"),
               "--side-by-side"])
    assert rc == 2 and "--b-aa" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # argparse: a malformed size
        main(["render", str(ply), "--path", str(file), "--out", "x", "--size", "big"])
    assert e.value.code == 2
    assert not (tmp_path / "x").exists()


def test_console_entry_point_reports_without_traceback(tmp_path):
    """Through the real command line: exit status and stderr as a user sees them."""
    missing = tmp_path / "nope.ply"
    (tmp_path / "cameras.json").write_text("[]")
    proc = subprocess.run(
        [sys.executable, "-m", "viewer.cli", "render", str(missing), "--cameras",
         str(tmp_path / "cameras.json"), "--out", str(tmp_path / "out"), "--backend", "cpu"],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "nope.ply" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_adaptive_path_measures_zoom_per_frame_against_training_cameras(scene, tmp_path):
    """With --aa adaptive and no --zoom, each frame's zoom is its effective scale against
    the training cameras beside the model: on a training view it is x1 (the same picture
    as classic); twice as far away it is about x1/2 (a smaller dilation, another picture).
    """
    _, g = scene
    folder = tmp_path / "model"
    ply = save_ply(g, folder / "model.ply")
    near = Camera.look_at((0.0, 0.0, -3.0), (0, 0, 0), fov_y_deg=45, width=W, height=H)
    save_inria_cameras([CameraRecord(0, "train", near)], folder / "cameras.json")
    far = Camera.look_at((0.0, 0.0, -6.0), (0, 0, 0), fov_y_deg=45, width=W, height=H)
    path = CameraPath([Keyframe.from_camera(near), Keyframe.from_camera(far)], fps=2,
                      seconds=1, width=W, height=H)
    file = save_camera_path(path, tmp_path / "p.json")
    out = tmp_path / "frames"
    rc = main(["render", str(ply), "--path", str(file), "--out", str(out), "--backend", "cpu",
               "--aa", "adaptive", "--quiet"])
    assert rc == 0
    first, last = _png(out / "00000.png"), _png(out / "00001.png")
    assert np.array_equal(first, _direct(g, near, antialias="classic"))
    # the measured zoom is a median of per-Gaussian depth ratios, near but not exactly 1/2
    half = np.abs(last.astype(int) - _direct(g, far, antialias="adaptive", zoom=0.5))
    classic = np.abs(last.astype(int) - _direct(g, far, antialias="classic"))
    assert half.max() <= 3
    assert classic.sum() > 3 * half.sum()
