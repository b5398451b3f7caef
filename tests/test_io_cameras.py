"""INRIA cameras.json: the convention, round trips, finding it, and bad files."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_io_ply import random_gaussians

from render.camera import Camera
from render.io import (
    CameraRecord,
    GaussianFileError,
    find_cameras_json,
    load_inria_cameras,
    load_model,
    save_inria_cameras,
    save_ply,
)


def entry(i=0, position=(0.0, 0.0, -5.0), rotation=None, **kw) -> dict:
    e = {"id": i, "img_name": f"img_{i:03d}", "width": 640, "height": 480,
         "position": list(position),
         "rotation": np.eye(3).tolist() if rotation is None else
         (rotation.tolist() if isinstance(rotation, np.ndarray) else rotation),
         "fy": 500.0, "fx": 510.0}
    e.update(kw)
    return e


def write_json(path, value) -> None:
    path.write_text(json.dumps(value))


def project(cam: Camera, point) -> tuple[float, float, float]:
    """Pixel (u, v) and depth of a world point, with the camera's own matrices."""
    p = cam.viewmat.double() @ torch.tensor([*point, 1.0], dtype=torch.float64)
    return cam.fx * p[0] / p[2] + cam.cx, cam.fy * p[1] / p[2] + cam.cy, float(p[2])


def test_inria_convention(tmp_path):
    """rotation/position are camera-to-world in OpenCV axes; principal point at the centre."""
    # camera 1 turned 90 degrees about world y: its forward axis (3rd column) is world +x
    turn = np.array([[0.0, 0, 1], [0, 1, 0], [-1, 0, 0]])
    write_json(tmp_path / "cameras.json",
               [entry(0), entry(1, position=(-3.0, 0.0, 0.0), rotation=turn)])
    recs = load_inria_cameras(tmp_path / "cameras.json")
    assert [r.id for r in recs] == [0, 1] and recs[1].name == "img_001"
    c0 = recs[0].camera
    assert (c0.width, c0.height, c0.fx, c0.fy, c0.cx, c0.cy) == (640, 480, 510, 500, 320, 240)
    u, v, depth = project(c0, (0.0, 0.0, 0.0))  # the origin is straight ahead, 5 units away
    assert abs(u - 320) < 1e-4 and abs(v - 240) < 1e-4 and abs(depth - 5) < 1e-5
    u, v, _ = project(c0, (1.0, 1.0, 0.0))  # x right, y down on screen
    assert abs(u - (320 + 510 / 5)) < 1e-3 and abs(v - (240 + 500 / 5)) < 1e-3
    u, v, depth = project(recs[1].camera, (0.0, 0.0, 0.0))
    assert abs(u - 320) < 1e-4 and abs(v - 240) < 1e-4 and abs(depth - 3) < 1e-5
    assert torch.allclose(recs[1].camera.position, torch.tensor([-3.0, 0, 0]), atol=1e-6)


def test_save_load_round_trip(tmp_path):
    cams = [Camera.look_at((3, -2, 4), (0, 0, 0), width=800, height=600),
            Camera.look_at((-1, 0.5, -6), (0.2, 0, 0), fov_y_deg=30, width=320, height=240)
            .crop(10, 20, 200, 100)]  # an off-centre principal point
    recs = [CameraRecord(7, "front", cams[0]), CameraRecord(9, "side", cams[1])]
    path = save_inria_cameras(recs, tmp_path / "out" / "cameras.json")
    raw = json.loads(path.read_text())
    assert set(raw[0]) == {"id", "img_name", "width", "height", "position", "rotation",
                           "fx", "fy"}  # exactly the INRIA keys when centred
    assert raw[1]["cx"] == pytest.approx(cams[1].cx)
    back = load_inria_cameras(path)
    for a, b in zip(recs, back, strict=True):
        assert (a.id, a.name) == (b.id, b.name)
        ca, cb = a.camera, b.camera
        assert (ca.width, ca.height) == (cb.width, cb.height)
        assert ca.fx == pytest.approx(cb.fx) and ca.cy == pytest.approx(cb.cy)
        assert torch.allclose(ca.viewmat, cb.viewmat, atol=1e-5)
    assert [p.name for p in path.parent.iterdir()] == ["cameras.json"]


def test_find_cameras_json(tmp_path):
    out = tmp_path / "output"
    it = out / "point_cloud" / "iteration_30000"
    it.mkdir(parents=True)
    ply = save_ply(random_gaussians(5, 0), it / "point_cloud.ply")
    assert find_cameras_json(ply) is None
    write_json(out / "cameras.json", [entry()])
    assert find_cameras_json(ply) == out / "cameras.json"
    write_json(it / "cameras.json", [entry(), entry(1)])  # one beside the file wins
    assert find_cameras_json(ply) == it / "cameras.json"
    other = save_ply(random_gaussians(5, 0), tmp_path / "loose" / "model.ply")
    assert find_cameras_json(other) is None


def test_load_model_brings_the_training_cameras(tmp_path):
    out = tmp_path / "output"
    it = out / "point_cloud" / "iteration_7000"
    it.mkdir(parents=True)
    ply = save_ply(random_gaussians(5, 0), it / "point_cloud.ply")
    write_json(out / "cameras.json", [entry(i) for i in range(3)])
    m = load_model(ply)
    assert m.cameras_path == out / "cameras.json" and len(m.cameras) == 3
    assert m.cameras[2].name == "img_002" and isinstance(m.cameras[0].camera, Camera)
    assert load_model(ply, find_cameras=False).cameras is None


def test_a_bad_cameras_json_beside_a_good_model_is_a_warning(tmp_path):
    ply = save_ply(random_gaussians(5, 0), tmp_path / "model.ply")
    (tmp_path / "cameras.json").write_text("{not json")
    m = load_model(ply)
    assert len(m.gaussians) == 5 and m.cameras is None and m.cameras_path is None
    assert any("cameras.json" in w and "not valid JSON" in w for w in m.warnings)


R_BAD = [[1, 0, 0], [0, 1, 0], [0, 0, 2]]
R_MIRROR = [[1, 0, 0], [0, 1, 0], [0, 0, -1]]


@pytest.mark.parametrize("content,fragment", [
    ("{not json", "not valid JSON"),
    ('{"cameras": []}', "holds a JSON object"),
    ("[]", "empty"),
    ("[1, 2]", "camera entry 0 is a int"),
    (json.dumps([{k: v for k, v in entry().items() if k != "fx"}]), "lacks 'fx'"),
    (json.dumps([entry(position=[1, 2])]), "'position' has shape [2]"),
    (json.dumps([entry(rotation=[[1, 0], [0, 1]])]), "'rotation' has shape [2, 2]"),
    (json.dumps([entry(rotation=[[1, 0, 0], [0, 1], [0, 0, 1]])]), "'rotation' must be 3 x 3"),
    (json.dumps([entry(rotation=R_BAD)]), "not a rotation matrix"),
    (json.dumps([entry(rotation=R_MIRROR)]), "not a rotation matrix"),
    (json.dumps([entry(position=["a", 0, 0])]), "'position' must be 3 numbers"),
    (json.dumps([entry(width=0)]), "'width' must be at least 1"),
    (json.dumps([entry(height=10.5)]), "'height' must be a whole number"),
    (json.dumps([entry(fx=-3.0)]), "focal lengths must be positive"),
    (json.dumps([entry(fy="500")]), "'fy' must be a number"),
    (json.dumps([entry(fx=True)]), "'fx' must be a number"),
    (json.dumps([entry(), entry(1, img_name=None)]), "entry 1 (id 1): img_name"),
    (json.dumps([entry(fx=math.nan)]), "'fx' is not finite"),
    (json.dumps([entry(position=[math.inf, 0, 0])]), "'position' holds values that are not"),
    ("[" * 100000 + "]" * 100000, "nested too deeply"),
])
def test_bad_cameras_json(tmp_path, content, fragment):
    path = tmp_path / "cameras.json"
    path.write_text(content)
    with pytest.raises(GaussianFileError) as info:
        load_inria_cameras(path)
    assert info.value.path == path and fragment in info.value.reason, info.value.reason


def test_camera_file_read_errors(tmp_path):
    with pytest.raises(GaussianFileError, match="not found"):
        load_inria_cameras(tmp_path / "missing.json")
    with pytest.raises(GaussianFileError, match="is a directory"):
        load_inria_cameras(tmp_path)
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(GaussianFileError, match="not UTF-8"):
        load_inria_cameras(tmp_path / "bin.json")


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["id", "img_name", "width", "height", "position", "rotation", "fx",
                         "fy", "cx", "x"]), inner, max_size=9),
    max_leaves=30)


@settings(max_examples=100, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=_json, base=st.booleans())
def test_any_json_gives_cameras_or_the_one_error(tmp_path_factory, value, base):
    """Arbitrary JSON, alone or patched into a valid entry: GaussianFileError or cameras."""
    if base and isinstance(value, dict):
        value = [{**entry(), **value}]
    path = tmp_path_factory.mktemp("j") / "cameras.json"
    path.write_text(json.dumps(value))
    try:
        recs = load_inria_cameras(path)
    except GaussianFileError:
        return
    for r in recs:
        assert torch.isfinite(r.camera.viewmat).all() and r.camera.fx > 0
