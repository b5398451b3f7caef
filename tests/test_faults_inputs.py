"""Fault injection, hostile inputs: sizes, counts and JSON from users are checked before
anything is allocated; each gives a clear error naming the file, the field, the value and
the limit, a non-zero exit, and nothing written."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from render import Camera
from render.gaussians import Gaussians
from render.io import (
    CameraRecord,
    GaussianFileError,
    load_inria_cameras,
    save_inria_cameras,
    save_ply,
)
from render.io import limits as limits_mod
from render.io.limits import (
    MAX_FRAMES,
    MAX_SIDE,
    LimitError,
    check_image_size,
    parse_json_bounded,
)
from viewer.camera_path import CameraPath, CameraPathError, Keyframe, load_camera_path
from viewer.cli import main

pytestmark = pytest.mark.fault

W, H = 24, 16


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    torch.manual_seed(3)
    g = Gaussians.from_colors(torch.randn(200, 3) * 0.5, torch.rand(200, 3),
                              scales=torch.rand(200, 3) * 0.05 + 0.01,
                              opacities=torch.rand(200) * 0.8 + 0.15)
    return save_ply(g, tmp_path_factory.mktemp("m") / "model.ply")


def _camera(w=W, h=H) -> Camera:
    return Camera.look_at((0.0, 0.0, -3.0), (0, 0, 0), fov_y_deg=45, width=w, height=h)


def _path_dict(**kw) -> dict:
    from viewer.camera_path import camera_path_to_dict

    cams = [_camera(), Camera.look_at((2.0, 0.0, -2.0), (0, 0, 0), fov_y_deg=45,
                                      width=W, height=H)]
    d = camera_path_to_dict(CameraPath([Keyframe.from_camera(c) for c in cams], fps=4.0,
                                       seconds=1.0, width=W, height=H))
    d.update(kw)
    return d


def _write(path, data) -> str:
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


def _render(model, out, *args) -> int:
    return main(["render", str(model), *args, "--out", str(out), "--backend", "cpu", "--quiet"])


def _assert_clear(err: str, *words) -> None:
    assert "Traceback" not in err
    for w in words:
        assert w in err, (w, err)


# ---------------------------------------------------------------------------------------
# render --path: sizes and frame counts
# ---------------------------------------------------------------------------------------
def test_path_width_1e300_is_a_clear_error(model, tmp_path, capsys):
    f = _write(tmp_path / "wide.json", _path_dict(render_width=1e300, camera_path=[]))
    out = tmp_path / "out.mp4"
    assert _render(model, out, "--path", f) == 2
    _assert_clear(capsys.readouterr().err, "wide.json", "render_width", "1e+300",
                  str(MAX_SIDE))
    assert not out.exists()


def test_path_of_1e12_frames_is_refused_before_allocation(model, tmp_path, capsys):
    f = _write(tmp_path / "long.json", _path_dict(fps=1e6, seconds=1e6, camera_path=[]))
    out = tmp_path / "frames"
    assert _render(model, out, "--path", f) == 2
    _assert_clear(capsys.readouterr().err, "long.json", "fps x seconds", str(MAX_FRAMES))
    assert not out.exists()


def test_fps_option_that_makes_too_many_frames_is_refused(model, tmp_path, capsys):
    f = _write(tmp_path / "p.json", _path_dict(camera_path=[]))
    out = tmp_path / "frames"
    assert _render(model, out, "--path", f, "--fps", "1e9") == 2
    _assert_clear(capsys.readouterr().err, "--fps", "fps x seconds", str(MAX_FRAMES))
    assert not out.exists()


@pytest.mark.parametrize("args", [["--size", "100000x100000"], ["--scale", "1000"]])
def test_path_size_options_beyond_the_limits_are_refused(model, tmp_path, capsys, args):
    f = _write(tmp_path / "p.json", _path_dict())
    out = tmp_path / "v.mp4"
    assert _render(model, out, "--path", f, *args) == 2
    _assert_clear(capsys.readouterr().err, args[0], "frame size", "limit")
    assert not out.exists()


def test_path_frames_that_do_not_fit_in_memory_are_refused(model, tmp_path, capsys,
                                                           monkeypatch):
    monkeypatch.setattr(limits_mod, "available_memory", lambda: 64 * 2**20)  # 64 MiB free
    f = _write(tmp_path / "p.json", _path_dict())
    out = tmp_path / "v.mp4"
    assert _render(model, out, "--path", f, "--size", "8000x6000") == 2
    _assert_clear(capsys.readouterr().err, "--size", "8000 x 6000", "GiB available")
    assert not out.exists()


def test_path_nested_in_a_matrix_string_is_a_clear_error(tmp_path):
    d = _path_dict()
    d["keyframes"][0]["matrix"] = "[" * 50_000 + "]" * 50_000  # the three.js string form
    f = tmp_path / "deep.json"
    _write(f, d)
    with pytest.raises(CameraPathError, match="deep.json.*matrix"):
        load_camera_path(f)


def test_path_with_infinite_default_fov_is_a_clear_error(tmp_path):
    d = _path_dict(default_fov=1e400)  # json writes inf as Infinity; 1e400 overflows to it
    text = json.dumps(d).replace("Infinity", "1e400")
    f = tmp_path / "fov.json"
    f.write_text(text)
    with pytest.raises(CameraPathError, match="default_fov"):
        load_camera_path(f)


# ---------------------------------------------------------------------------------------
# render --cameras: cameras.json sizes and --scale
# ---------------------------------------------------------------------------------------
def _cameras_file(tmp_path, w, h) -> str:
    path = tmp_path / "cameras.json"
    save_inria_cameras([CameraRecord(0, "a", _camera())], path)
    entries = json.loads(path.read_text())
    entries[0]["width"], entries[0]["height"] = w, h
    path.write_text(json.dumps(entries))
    return str(path)


def test_cameras_json_of_100000_pixels_is_a_clear_error(model, tmp_path, capsys):
    f = _cameras_file(tmp_path, 100000, 100000)
    out = tmp_path / "out"
    assert _render(model, out, "--cameras", f) == 2
    _assert_clear(capsys.readouterr().err, "cameras.json", "width x height",
                  "100000 x 100000", str(MAX_SIDE))
    assert not out.exists()


def test_cameras_json_width_1e300_is_a_clear_error(tmp_path):
    f = _cameras_file(tmp_path, 1e300, 16)
    with pytest.raises(GaussianFileError, match="width"):
        load_inria_cameras(f)


def test_scale_1000_on_training_cameras_is_refused(model, tmp_path, capsys):
    f = _cameras_file(tmp_path, 640, 480)
    out = tmp_path / "out"
    assert _render(model, out, "--cameras", f, "--scale", "1000") == 2
    _assert_clear(capsys.readouterr().err, "cameras.json", "--scale 1000", "640000 x 480000")
    assert not out.exists()


def test_a_still_that_does_not_fit_in_memory_is_refused(model, tmp_path, capsys, monkeypatch):
    # 30000 x 30000 is within the absolute limits; the 8-bit image alone is 2.5 GiB
    monkeypatch.setattr(limits_mod, "available_memory", lambda: 2 * 2**30)
    f = _cameras_file(tmp_path, 30000, 30000)
    out = tmp_path / "out"
    assert _render(model, out, "--cameras", f) == 2
    _assert_clear(capsys.readouterr().err, "30000 x 30000", "GiB of memory", "GiB available")
    assert not out.exists()


def test_cameras_json_nested_deep_is_a_clear_error(tmp_path):
    f = tmp_path / "cameras.json"
    f.write_text("[" * 5000 + "]" * 5000)
    with pytest.raises(GaussianFileError, match="nested too deeply"):
        load_inria_cameras(f)


# ---------------------------------------------------------------------------------------
# other JSON from users: transforms.json, view --camera
# ---------------------------------------------------------------------------------------
def test_transforms_json_nested_deep_is_a_dataset_error(tmp_path):
    from render.io.nerf_synthetic import read_transforms

    f = tmp_path / "transforms_train.json"
    f.write_text('{"frames": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(GaussianFileError, match="nested too deeply"):
        read_transforms(f)


def test_view_camera_file_nested_deep_is_a_clear_exit(tmp_path):
    from viewer.commands.view import load_start_camera

    f = tmp_path / "cam.json"
    f.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(SystemExit, match="cam.json.*nested too deeply"):
        load_start_camera(f)


@pytest.mark.parametrize("text, words", [
    ('{"a": NaN}', "NaN"), ('{"a": -Infinity}', "Infinity"), ('{"a": 1e999}', "finite"),
    ('{"a": ' + "9" * 5000 + "}", "18 digits"), ("[" * 65 + "]" * 65, "nested too deeply"),
])
def test_bounded_json_refuses_what_json_accepts(text, words):
    with pytest.raises(LimitError, match=words) as info:
        parse_json_bounded(text, "user.json")
    assert "user.json" in str(info.value)


def test_bounded_json_refuses_a_file_over_the_size_limit(tmp_path):
    f = tmp_path / "big.json"
    f.write_text("[" + "0," * 1000 + "0]")
    with pytest.raises(LimitError, match="big.json.*at most 100 bytes"):
        limits_mod.load_json_bounded(f, max_bytes=100)


def test_brackets_inside_strings_do_not_count_as_depth():
    assert parse_json_bounded('{"a": "' + "[" * 500 + '"}', "x.json") == {"a": "[" * 500}


# ---------------------------------------------------------------------------------------
# tiles: large stills are rendered in crops and assembled as 8-bit
# ---------------------------------------------------------------------------------------
def test_a_tiled_still_equals_the_whole_render(model):
    from render import RenderOptions, render
    from render.io import load_model
    from viewer.capture import render_still, to_uint8

    g = load_model(model, find_cameras=False).gaussians
    cam = _camera(53, 37)  # sizes no tile divides
    opts = RenderOptions(backend="cpu")

    def one(c):
        with torch.no_grad():
            return render(g, c, opts).rgb

    whole = to_uint8(one(cam))
    tiled = render_still(one, cam, tile=16)
    assert tiled.dtype == np.uint8 and tiled.shape == (37, 53, 3)
    assert whole.std() > 5
    # the same pixels up to float rounding in the blend (one 8-bit step at most)
    assert np.abs(tiled.astype(int) - whole.astype(int)).max() <= 1
    assert (tiled != whole).mean() < 0.01


def test_a_16k_still_fits_a_24_gib_machine_tiled_but_not_whole():
    free = 8 * 2**30  # what a 24 GiB machine has free with a desktop and a model open
    assert check_image_size("s", "size", 16384, 16384, tiled=True, available=free) == (
        16384, 16384)
    with pytest.raises(LimitError, match="GiB available"):
        check_image_size("s", "size", 16384, 16384, tiled=False, available=free)
