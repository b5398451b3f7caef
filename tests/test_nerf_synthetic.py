"""NeRF-synthetic and cameras.json loading: real lego files, conventions, bad folders."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch
from conftest import data_file
from PIL import Image

from render.io.errors import GaussianFileError
from render.io.nerf_synthetic import (
    DatasetError,
    area_resize,
    format_scale,
    load_cameras_json_images,
    load_nerf_synthetic,
    parse_scale,
    read_rgb,
    scene_box,
)


@pytest.fixture(scope="module")
def lego_train_8():
    folder = data_file("lego/transforms_train.json").parent
    return folder, load_nerf_synthetic(folder, "train", "1/8")


def test_lego_train_has_100_views_at_the_asked_size(lego_train_8):
    _, data = lego_train_8
    assert len(data) == 100
    assert data.images.shape == (100, 100, 100, 3)
    assert data.images.dtype == torch.float32
    assert data.size == (100, 100)
    assert all(c.width == 100 and c.height == 100 for c in data.cameras)
    assert data.images.min() >= 0.0 and data.images.max() <= 1.0
    # RGBA composited on white: the corners are background
    assert torch.all(data.images[:, 0, 0] > 0.99)


def test_lego_test_split_and_scales():
    folder = data_file("lego/transforms_test.json").parent
    data = load_nerf_synthetic(folder, "test", "1/16", limit=3)
    assert len(data) == 3 and data.size == (50, 50)
    assert data.names[1] == "./test/r_8"
    full = load_nerf_synthetic(folder, "test", 1.0, limit=1)
    assert full.size == (800, 800)


def test_camera_centre_is_the_transform_translation(lego_train_8):
    folder, data = lego_train_8
    meta = json.loads((folder / "transforms_train.json").read_text())
    for cam, frame in zip(data.cameras, meta["frames"], strict=True):
        c2w = np.asarray(frame["transform_matrix"])
        assert torch.allclose(cam.position, torch.tensor(c2w[:3, 3], dtype=torch.float32),
                              atol=1e-4)
    # focal length from the horizontal field of view and the scaled width
    f = 0.5 * 100 / math.tan(0.5 * meta["camera_angle_x"])
    assert data.cameras[0].fx == pytest.approx(f, rel=1e-6)
    assert data.cameras[0].cx == pytest.approx(50.0)


def test_scene_origin_projects_near_the_image_centre_in_front(lego_train_8):
    _, data = lego_train_8
    for cam in data.cameras:
        p = cam.viewmat[:3, :3] @ torch.zeros(3) + cam.viewmat[:3, 3]
        assert p[2] > 1.0  # in front of the camera (OpenCV +z), about 4 units away
        u = cam.fx * p[0] / p[2] + cam.cx
        v = cam.fy * p[1] / p[2] + cam.cy
        assert abs(u - 50.0) < 3.0 and abs(v - 50.0) < 3.0


def test_image_up_is_world_up(lego_train_8):
    # lego's world is z-up; a point above the origin must show above the centre (smaller v)
    _, data = lego_train_8
    for cam in data.cameras[:10]:
        p = cam.viewmat[:3, :3] @ torch.tensor([0.0, 0.0, 0.5]) + cam.viewmat[:3, 3]
        v = cam.fy * p[1] / p[2] + cam.cy
        assert v < 50.0


def test_downsampling_is_the_block_mean_of_the_composited_image(lego_train_8):
    folder, data = lego_train_8
    full = read_rgb(folder / "train" / "r_0.png", (1.0, 1.0, 1.0))  # [800, 800, 3]
    block = full.reshape(100, 8, 100, 8, 3).mean(dim=(1, 3))
    assert torch.allclose(data.images[0], block, atol=1e-5)
    # and the object is there: many pixels are far from white
    assert (data.images[0].mean(-1) < 0.8).float().mean() > 0.05


def test_background_is_applied(lego_train_8):
    folder, _ = lego_train_8
    black = load_nerf_synthetic(folder, "train", "1/8", background=(0.0, 0.0, 0.0), limit=1)
    assert torch.all(black.images[0, 0, 0] < 0.01)


def test_second_load_is_served_from_the_cache(lego_train_8):
    folder, data = lego_train_8
    again = load_nerf_synthetic(folder, "train", "1/8")
    assert again.images is data.images


def test_area_resize_keeps_the_mean_and_constants():
    img = torch.rand(64, 48, 3)
    small = area_resize(img, 12, 16)
    assert small.shape == (16, 12, 3)
    assert torch.allclose(small.mean(), img.mean(), atol=1e-5)
    flat = torch.full((30, 30, 3), 0.25)
    assert torch.allclose(area_resize(flat, 7, 9), torch.full((9, 7, 3), 0.25), atol=1e-6)


def test_parse_and_format_scale():
    assert parse_scale("1/4") == 0.25
    assert parse_scale("0.5") == 0.5
    assert parse_scale("x2") == 2.0
    assert format_scale(0.125) == "1/8" and format_scale(4.0) == "4"
    for bad in ("0", "-1/2", "abc", "1/0"):
        with pytest.raises(ValueError):
            parse_scale(bad)


def test_scene_box_is_the_nerf_synthetic_cube(lego_train_8):
    folder, _ = lego_train_8
    lo, hi = scene_box(folder)
    assert torch.allclose(lo, torch.full((3,), -1.5)) and torch.allclose(hi, torch.full((3,), 1.5))


# -- broken folders ---------------------------------------------------------------------------

def _mini_scene(tmp_path, n=2, size=16):
    (tmp_path / "train").mkdir()
    frames = []
    for i in range(n):
        rgba = np.zeros((size, size, 4), np.uint8)
        rgba[..., 0] = 200
        rgba[4:12, 4:12, 3] = 255
        Image.fromarray(rgba, "RGBA").save(tmp_path / "train" / f"r_{i}.png")
        m = np.eye(4)
        m[2, 3] = 4.0
        frames.append({"file_path": f"./train/r_{i}", "transform_matrix": m.tolist()})
    (tmp_path / "transforms_train.json").write_text(
        json.dumps({"camera_angle_x": 0.7, "frames": frames}))
    return tmp_path


def test_a_tiny_hand_made_scene_loads(tmp_path):
    data = load_nerf_synthetic(_mini_scene(tmp_path), "train", "1/2")
    assert data.images.shape == (2, 8, 8, 3)
    # 4x4 opaque red-ish square in an 8x8 image, the rest white
    assert torch.allclose(data.images[0, 3, 3], torch.tensor([200 / 255, 0.0, 0.0]), atol=1e-5)
    assert torch.allclose(data.images[0, 0, 0], torch.ones(3))


@pytest.mark.parametrize(
    "breakage, named",
    [
        ("no_folder", "nowhere"),
        ("no_transforms", "transforms_train.json"),
        ("bad_json", "transforms_train.json"),
        ("no_angle", "transforms_train.json"),
        ("bad_matrix", "transforms_train.json"),
        ("missing_image", "transforms_train.json"),
        ("corrupt_image", "r_1.png"),
    ],
)
def test_broken_folders_raise_a_dataset_error_naming_the_file(tmp_path, breakage, named):
    folder = _mini_scene(tmp_path)
    tf = folder / "transforms_train.json"
    meta = json.loads(tf.read_text())
    if breakage == "no_folder":
        folder = folder / "nowhere"
    elif breakage == "no_transforms":
        tf.unlink()
    elif breakage == "bad_json":
        tf.write_text("{ not json")
    elif breakage == "no_angle":
        del meta["camera_angle_x"]
        tf.write_text(json.dumps(meta))
    elif breakage == "bad_matrix":
        meta["frames"][1]["transform_matrix"] = [[1, 0], [0, 1]]
        tf.write_text(json.dumps(meta))
    elif breakage == "missing_image":
        (folder / "train" / "r_1.png").unlink()
    elif breakage == "corrupt_image":
        (folder / "train" / "r_1.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DatasetError) as info:
        load_nerf_synthetic(folder, "train", 1.0)
    assert named in str(info.value)
    assert isinstance(info.value, GaussianFileError)


# -- INRIA cameras.json -----------------------------------------------------------------------

def test_cameras_json_with_an_image_folder_matches_the_blender_cameras(tmp_path, lego_train_8):
    folder, data = lego_train_8
    images = tmp_path / "images"
    images.mkdir()
    entries = []
    for i in range(3):
        name = f"r_{i}"
        shutil.copy(folder / "train" / f"{name}.png", images / f"{name}.png")
        cam = load_nerf_synthetic(folder, "train", 1.0, limit=3).cameras[i]
        c2w = cam.c2w.numpy()
        entries.append({"id": i, "img_name": name, "width": 800, "height": 800,
                        "position": c2w[:3, 3].tolist(), "rotation": c2w[:3, :3].tolist(),
                        "fx": cam.fx, "fy": cam.fy})
    cj = tmp_path / "cameras.json"
    cj.write_text(json.dumps(entries))
    got = load_cameras_json_images(cj, images, scale="1/8")
    assert got.images.shape == (3, 100, 100, 3)
    for i in range(3):
        assert torch.allclose(got.images[i], data.images[i], atol=1e-5)
        assert torch.allclose(got.cameras[i].viewmat, data.cameras[i].viewmat, atol=1e-4)
        assert got.cameras[i].fx == pytest.approx(data.cameras[i].fx, rel=1e-5)


def test_cameras_json_errors_name_the_file(tmp_path):
    cj = tmp_path / "cameras.json"
    cj.write_text(json.dumps([{"img_name": "a"}]))
    with pytest.raises(GaussianFileError, match="cameras.json"):
        load_cameras_json_images(cj, tmp_path)
    good = [{"id": 0, "img_name": "missing", "width": 8, "height": 8, "position": [0, 0, 0],
             "rotation": np.eye(3).tolist(), "fx": 8.0, "fy": 8.0}]
    cj.write_text(json.dumps(good))
    with pytest.raises(DatasetError, match="missing"):
        load_cameras_json_images(cj, tmp_path)
