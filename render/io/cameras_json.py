"""INRIA 3DGS `cameras.json`: the training cameras the reference trainer writes.

A JSON list with one object per camera:
`{"id", "img_name", "width", "height", "position": [3], "rotation": [[3] x 3], "fx", "fy"}`
where `rotation` and `position` are the camera-to-world rotation and the camera centre
(OpenCV axes: x right, y down, z forward) and the principal point is the image centre.
mipview also writes `cx`, `cy` when a camera's principal point is off-centre (other
readers ignore the extra keys).

The trainer's output folder looks like `<out>/cameras.json` beside
`<out>/point_cloud/iteration_<N>/point_cloud.ply`; :func:`find_cameras_json` finds it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from render.io.atomic import atomic_write_bytes
from render.io.errors import GaussianFileError
from render.io.files import read_file_bytes
from render.io.limits import LimitError, check_image_size, parse_json_bounded

if TYPE_CHECKING:
    from render.camera import Camera

CAMERAS_JSON = "cameras.json"
_REQUIRED = ("id", "img_name", "width", "height", "position", "rotation", "fx", "fy")
_ROTATION_TOLERANCE = 1e-3  # |R^T R - I|: JSON files round values, garbage is far off


@dataclass
class CameraRecord:
    """One camera of a cameras.json: its id, image name and the camera itself."""

    id: int
    name: str
    camera: Camera


def find_cameras_json(model_path: str | Path) -> Path | None:
    """The cameras.json that belongs to a model file, or None.

    Looks beside the file, then, for the INRIA layout
    `<out>/point_cloud/iteration_<N>/<file>.ply`, at `<out>/cameras.json`.
    """
    p = Path(model_path)
    candidates = [p / CAMERAS_JSON] if p.is_dir() else [p.parent / CAMERAS_JSON]
    parent = p.parent
    if parent.name.startswith("iteration_") and parent.parent.name == "point_cloud":
        candidates.append(parent.parent.parent / CAMERAS_JSON)
    for c in candidates:
        if c.is_file():
            return c
    return None


def load_inria_cameras(path: str | Path) -> list[CameraRecord]:
    """Read a cameras.json into cameras (see the module docstring for the layout)."""
    return [_record(e) for e in _read_entries(Path(path))]


def count_inria_cameras(path: str | Path) -> int:
    """The number of cameras in a cameras.json, checked as `load_inria_cameras` checks
    them (same errors) but without building `Camera`s, which needs torch."""
    return len(_read_entries(Path(path)))


@dataclass
class _Entry:
    """One checked camera entry: what a `CameraRecord` is built from."""

    id: int
    name: str
    c2w: np.ndarray  # [4, 4] float64, camera-to-world, OpenCV axes
    fx: float
    fy: float
    width: int
    height: int
    cx: float | None
    cy: float | None


def _read_entries(path: Path) -> list[_Entry]:
    """The checked entries of a cameras.json.

    Raises:
        GaussianFileError: naming the file and the first problem found.
    """
    data = read_file_bytes(path, what="camera file")
    try:
        # bounded depth and size; NaN/Infinity pass here and are named by the field checks
        entries = parse_json_bounded(data, path, nonfinite="keep")
    except LimitError as e:
        raise GaussianFileError(path, f"not a cameras.json: {e.field} {e.value}: "
                                f"{e.limit}") from None
    except UnicodeDecodeError:
        raise GaussianFileError(path, "not a cameras.json: the file is not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise GaussianFileError(path, f"not valid JSON: {e.msg} at line {e.lineno} "
                                f"column {e.colno}") from None
    except RecursionError:
        raise GaussianFileError(path, "not a cameras.json: JSON nested too deeply") from None
    if not isinstance(entries, list):
        raise GaussianFileError(
            path, f"a cameras.json holds a list of cameras, this holds a {_kind(entries)}")
    if not entries:
        raise GaussianFileError(path, "the camera list is empty")
    return [_entry(path, i, e) for i, e in enumerate(entries)]


def _kind(v) -> str:
    return {dict: "JSON object", list: "list", str: "string"}.get(type(v), type(v).__name__)


def _record(e: _Entry) -> CameraRecord:
    from render.camera import Camera

    camera = Camera.from_c2w(e.c2w, e.fx, e.fy, e.width, e.height, cx=e.cx, cy=e.cy)
    return CameraRecord(e.id, e.name, camera)


def _entry(path: Path, i: int, entry) -> _Entry:
    where = f"camera entry {i}"
    if not isinstance(entry, dict):
        raise GaussianFileError(path, f"{where} is a {_kind(entry)}, not a JSON object")
    missing = [k for k in _REQUIRED if k not in entry]
    if missing:
        raise GaussianFileError(path, f"{where} lacks {', '.join(repr(k) for k in missing)}")
    cam_id = _integer(path, where, "id", entry["id"], minimum=None)
    where = f"camera entry {i} (id {cam_id})"
    name = entry["img_name"]
    if not isinstance(name, (str, int)) or isinstance(name, bool):
        raise GaussianFileError(path, f"{where}: img_name must be a string")
    width = _integer(path, where, "width", entry["width"], minimum=1)
    height = _integer(path, where, "height", entry["height"], minimum=1)
    try:  # absolute limits; the memory a render needs is checked by whoever renders
        check_image_size(path, "width x height", width, height, available=1 << 62)
    except LimitError as e:
        raise GaussianFileError(path, f"{where}: width x height = {e.value}: "
                                f"{e.limit}") from None
    fx = _number(path, where, "fx", entry["fx"])
    fy = _number(path, where, "fy", entry["fy"])
    if fx <= 0 or fy <= 0:
        raise GaussianFileError(path, f"{where}: focal lengths must be positive "
                                f"(fx={fx}, fy={fy})")
    position = _array(path, where, "position", entry["position"], (3,))
    rotation = _array(path, where, "rotation", entry["rotation"], (3, 3))
    err = np.abs(rotation.T @ rotation - np.eye(3)).max()
    if err > _ROTATION_TOLERANCE or np.linalg.det(rotation) < 0:
        raise GaussianFileError(path, f"{where}: 'rotation' is not a rotation matrix "
                                f"(|R^T R - I| = {err:.3g}, det = {np.linalg.det(rotation):.3g})")
    cx = _number(path, where, "cx", entry["cx"]) if "cx" in entry else None
    cy = _number(path, where, "cy", entry["cy"]) if "cy" in entry else None
    c2w = np.eye(4)
    c2w[:3, :3] = rotation
    c2w[:3, 3] = position
    return _Entry(cam_id, str(name), c2w, fx, fy, width, height, cx, cy)


def _number(path: Path, where: str, key: str, v) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise GaussianFileError(path, f"{where}: {key!r} must be a number, not {_kind(v)}")
    f = float(v)
    if not math.isfinite(f):
        raise GaussianFileError(path, f"{where}: {key!r} is not finite")
    return f


def _integer(path: Path, where: str, key: str, v, minimum: int | None) -> int:
    f = _number(path, where, key, v)
    if f != int(f):
        raise GaussianFileError(path, f"{where}: {key!r} must be a whole number, not {v}")
    if minimum is not None and f < minimum:
        raise GaussianFileError(path, f"{where}: {key!r} must be at least {minimum}, not {v}")
    return int(f)


def _array(path: Path, where: str, key: str, v, shape: tuple[int, ...]) -> np.ndarray:
    want = " x ".join(map(str, shape))
    try:
        a = np.array(v, dtype=np.float64)
    except (ValueError, TypeError):
        raise GaussianFileError(path, f"{where}: {key!r} must be {want} numbers") from None
    if a.shape != shape:
        raise GaussianFileError(
            path, f"{where}: {key!r} has shape {list(a.shape)}, expected {want}")
    if not np.isfinite(a).all():
        raise GaussianFileError(path, f"{where}: {key!r} holds values that are not finite")
    return a


def camera_entry(record: CameraRecord) -> dict:
    """The cameras.json object of one camera."""
    cam = record.camera
    c2w = np.linalg.inv(cam.viewmat.double().numpy())
    entry = {
        "id": int(record.id), "img_name": record.name,
        "width": cam.width, "height": cam.height,
        "position": c2w[:3, 3].tolist(), "rotation": c2w[:3, :3].tolist(),
        "fy": float(cam.fy), "fx": float(cam.fx),
    }
    if abs(cam.cx - cam.width / 2.0) > 1e-6 or abs(cam.cy - cam.height / 2.0) > 1e-6:
        entry["cx"], entry["cy"] = float(cam.cx), float(cam.cy)
    return entry


def save_inria_cameras(records: list[CameraRecord], path: str | Path) -> Path:
    """Write cameras in the INRIA cameras.json layout (temporary name, then renamed)."""
    text = "[\n" + ",\n".join(json.dumps(camera_entry(r)) for r in records) + "\n]\n"
    return atomic_write_bytes(path, text.encode("utf-8"))
