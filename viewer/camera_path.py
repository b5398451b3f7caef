"""Camera paths: keyframes, smooth interpolation, and the nerfstudio `camera_path.json` layout.

Time. A path lasts `seconds`; keyframes are spaced evenly in time. An open path
(`loop=False`) puts keyframe k of K at t = k / (K - 1) * seconds, so it starts on the first
keyframe and ends on the last; a closed path (`loop=True`) puts keyframe k at
t = k / K * seconds and returns to keyframe 0 at t = seconds. `camera_at(t)` takes t in
seconds (clamped to [0, seconds] on an open path, wrapped on a closed one).

Frames. `frames()` gives round(fps * seconds) cameras: on an open path frame i is at
t = i / (N - 1) * seconds (first and last frame on the end keyframes); on a closed path at
t = i / N * seconds (the first frame is not repeated at the end). nerfstudio samples an
open path at i / N instead, which stops one frame short of its last keyframe; its own
frames are kept as they are when its file is loaded (see `CameraPath.baked`).

Interpolation (C1 across keyframes):
- positions: cubic Hermite with Catmull-Rom tangents m_k = c (p_{k+1} - p_{k-1}) / 2,
  c = 2 * smoothness (smoothness 0.5 is plain Catmull-Rom, 0 stops at every keyframe);
- rotations: spherical cubic Bezier (De Casteljau with slerp) whose control rotations
  come from the same Catmull-Rom tangents taken in the rotation's tangent space, so
  the angular velocity is continuous at keyframes and rotations stay orthonormal;
- vertical field of view: the same Hermite spline as the positions.

File layout (nerfstudio `camera_path.json`, also read and written by gsplat's viewer):
`keyframes` [{matrix: camera-to-world 4x4 flattened row-major in OpenGL axes (x right,
y up, z backward), fov: vertical degrees, aspect}], `camera_type` "perspective",
`render_width`, `render_height`, `fps`, `seconds`, `smoothness_value`, `is_cycle`,
`camera_path` [{camera_to_world: 4x4 flattened row-major OpenGL, fov, aspect}] with one
entry per frame. The old three.js nerfstudio viewer stored keyframe matrices as a JSON
string of column-major elements; that form is read too.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from render.camera import Camera
from render.io.atomic import atomic_write_bytes
from render.io.limits import (
    MAX_FRAMES,
    LimitError,
    check_frame_count,
    check_image_size,
    parse_json_bounded,
)

# OpenCV camera axes (x right, y down, z forward) <-> OpenGL (x right, y up, z backward):
# c2w_gl = c2w_cv @ _CV_GL and back; the matrix is its own inverse, so this is exact.
_CV_GL = np.diag([1.0, -1.0, -1.0, 1.0])

# A camera path file: 10^5 baked frames of nerfstudio's layout are ~60 MB.
MAX_PATH_BYTES = 128 * 1024 * 1024

# How far from orthonormal a file's rotation may be (rounding in other tools' output).
_RIGID_TOL = 1e-3


class CameraPathError(ValueError):
    """A camera path file that cannot be read or written; the message names the file."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"camera path {self.path}: {reason}")


# ---------------------------------------------------------------------------------------
# Keyframes and the path
# ---------------------------------------------------------------------------------------
@dataclass
class Keyframe:
    """One pose of a path.

    Attributes:
        c2w: camera-to-world, OpenCV axes (x right, y down, z forward). [4, 4] float64
        fov_y_deg: vertical field of view in degrees.
    """

    c2w: np.ndarray
    fov_y_deg: float

    def __post_init__(self) -> None:
        self.c2w = np.array(self.c2w, dtype=np.float64).reshape(4, 4)
        self.fov_y_deg = float(self.fov_y_deg)

    @staticmethod
    def from_camera(camera: Camera) -> Keyframe:
        """The pose and vertical field of view of a camera (its pixel size is not kept)."""
        c2w = np.linalg.inv(camera.viewmat.double().numpy())
        return Keyframe(c2w, math.degrees(camera.fov_y))

    def camera(self, width: int, height: int) -> Camera:
        """This pose as a camera of the given size: square pixels, centred principal point."""
        f = height / (2.0 * math.tan(math.radians(self.fov_y_deg) / 2.0))
        return Camera.from_c2w(self.c2w, f, f, width, height)


@dataclass
class CameraPath:
    """Keyframes and how to play them (see the module docstring for the time convention).

    Attributes:
        keyframes: the poses the path passes through, in order.
        fps: frames per second of a rendered video.
        seconds: duration of the whole path.
        width, height: render size in pixels.
        loop: a closed path that returns from the last keyframe to the first
            (nerfstudio `is_cycle`).
        smoothness: tangent scale in [0, 1]; 0.5 is Catmull-Rom (nerfstudio
            `smoothness_value`).
        baked: per-frame poses read from a file's `camera_path` (nerfstudio renders
            those, not its keyframes). `frames()` returns them while they match the
            frame count; any keyframe edit drops them.
    """

    keyframes: list[Keyframe] = field(default_factory=list)
    fps: float = 30.0
    seconds: float = 4.0
    width: int = 1280
    height: int = 720
    loop: bool = False
    smoothness: float = 0.5
    baked: list[Keyframe] | None = None

    # -- sizes and times -------------------------------------------------------------------
    @property
    def n_frames(self) -> int:
        """Number of frames of a render: round(fps * seconds), at least 1."""
        return max(1, int(round(self.fps * self.seconds)))

    @property
    def aspect(self) -> float:
        return self.width / self.height

    def keyframe_time(self, index: int) -> float:
        """Time of keyframe `index` in seconds."""
        k = len(self.keyframes)
        if not 0 <= index < k:
            raise IndexError(f"keyframe {index} of {k}")
        if self.loop:
            return index / k * self.seconds
        return 0.0 if k == 1 else index / (k - 1) * self.seconds

    def frame_times(self) -> np.ndarray:
        """Times of the frames of a render, in seconds. [n_frames]"""
        n = self.n_frames
        if self.loop:
            return np.arange(n) / n * self.seconds
        return np.zeros(1) if n == 1 else np.arange(n) / (n - 1) * self.seconds

    def problems(self) -> list[str]:
        """What makes this path unusable (empty when it can be rendered)."""
        out = []
        if not self.keyframes:
            out.append("the path has no keyframes")
        if not (math.isfinite(self.fps) and self.fps > 0):
            out.append(f"fps must be positive, got {self.fps}")
        if not (math.isfinite(self.seconds) and self.seconds > 0):
            out.append(f"seconds must be positive, got {self.seconds}")
        try:
            check_image_size("camera path", "render size", self.width, self.height,
                             available=1 << 62)
        except LimitError as e:
            out.append(f"render size {e.value}: {e.limit}")
        if math.isfinite(self.fps) and math.isfinite(self.seconds) and \
                self.fps * self.seconds > MAX_FRAMES:
            out.append(f"fps x seconds = {self.fps * self.seconds:g} frames: at most "
                       f"{MAX_FRAMES} frames")
        if not 0.0 <= self.smoothness <= 1.0:
            out.append(f"smoothness must be in [0, 1], got {self.smoothness}")
        for i, kf in enumerate(self.keyframes):
            reason = _pose_problem(kf.c2w, kf.fov_y_deg)
            if reason:
                out.append(f"keyframe {i}: {reason}")
        return out

    # -- interpolation ---------------------------------------------------------------------
    def pose_at(self, t: float) -> Keyframe:
        """The interpolated pose at time t in seconds (see the module docstring)."""
        kfs = self.keyframes
        if not kfs:
            raise ValueError("the camera path has no keyframes")
        k = len(kfs)
        if k == 1:
            return Keyframe(kfs[0].c2w.copy(), kfs[0].fov_y_deg)
        seconds = self.seconds if self.seconds > 0 else 1.0
        n_seg = k if self.loop else k - 1
        if self.loop:
            u = (t / seconds) % 1.0
        else:
            u = min(max(t / seconds, 0.0), 1.0)
        x = u * n_seg
        seg = min(int(math.floor(x)), n_seg - 1)
        s = x - seg
        i0, i1 = seg, (seg + 1) % k

        c = 2.0 * self.smoothness
        pos = np.stack([kf.c2w[:3, 3] for kf in kfs])
        fov = np.array([kf.fov_y_deg for kf in kfs])
        # only the rotations of the two keyframes and their neighbours are needed
        needed = {i0, i1, *self._neighbours(i0), *self._neighbours(i1)}
        quats = {i: _mat_to_quat(kfs[i].c2w[:3, :3]) for i in needed}

        p = _hermite(pos[i0], pos[i1], c * self._diff(pos, i0), c * self._diff(pos, i1), s)
        f = _hermite(fov[i0], fov[i1], c * self._diff(fov, i0), c * self._diff(fov, i1), s)
        w0 = c * self._rot_tangent(quats, i0)
        w1 = c * self._rot_tangent(quats, i1)
        # cubic spherical Bezier: b1 leaves q0 along w0, b2 arrives at q1 along w1
        q0, q1 = quats[i0], quats[i1]
        b1 = _qmul(q0, _qexp(w0 / 3.0))
        b2 = _qmul(q1, _qexp(-w1 / 3.0))
        q = _bezier_slerp(q0, b1, b2, q1, s)

        c2w = np.eye(4)
        c2w[:3, :3] = _quat_to_mat(q)
        c2w[:3, 3] = p
        return Keyframe(c2w, float(np.clip(f, 1e-3, 179.0)))

    def _neighbours(self, i: int) -> tuple[int, int]:
        """Indices of the keyframes before and after i (end keyframes repeat themselves)."""
        k = len(self.keyframes)
        if self.loop:
            return (i - 1) % k, (i + 1) % k
        return max(i - 1, 0), min(i + 1, k - 1)

    def _diff(self, values: np.ndarray, i: int) -> np.ndarray:
        """Catmull-Rom tangent (v_{i+1} - v_{i-1}) / 2 per segment of parameter."""
        a, b = self._neighbours(i)
        return (values[b] - values[a]) / 2.0

    def _rot_tangent(self, quats: dict[int, np.ndarray], i: int) -> np.ndarray:
        """Catmull-Rom tangent of the rotation at keyframe i, in its own tangent space
        (half-angle rotation vector per segment of parameter). [3]"""
        a, b = self._neighbours(i)
        qi_inv = _qconj(quats[i])
        return (_qlog(_qmul(qi_inv, quats[b])) - _qlog(_qmul(qi_inv, quats[a]))) / 2.0

    def camera_at(self, t: float, width: int | None = None, height: int | None = None) -> Camera:
        """The camera at time t in seconds, at the path's size or the one given (vertical
        field of view kept, square pixels, centred principal point)."""
        return self.pose_at(t).camera(int(width or self.width), int(height or self.height))

    def camera_at_fraction(self, u: float, width: int | None = None,
                           height: int | None = None) -> Camera:
        """The camera at a fraction u of the path (u in [0, 1]; t = u * seconds)."""
        return self.camera_at(u * self.seconds, width, height)

    def frame_poses(self) -> list[Keyframe]:
        """The pose of every frame: the file's own frames while they fit (see `baked`),
        else the interpolation at frame_times()."""
        if self.baked is not None and len(self.baked) == self.n_frames:
            return [Keyframe(kf.c2w.copy(), kf.fov_y_deg) for kf in self.baked]
        return [self.pose_at(float(t)) for t in self.frame_times()]

    def frames(self, width: int | None = None, height: int | None = None) -> list[Camera]:
        """round(fps * seconds) cameras, at the path's size or the one given."""
        return list(self.iter_frames(width, height))

    def iter_frames(self, width: int | None = None, height: int | None = None):
        """The cameras of frames(), one at a time (a long path is never held whole)."""
        w, h = int(width or self.width), int(height or self.height)
        if self.baked is not None and len(self.baked) == self.n_frames:
            for kf in self.baked:
                yield kf.camera(w, h)
            return
        for t in self.frame_times():
            yield self.pose_at(float(t)).camera(w, h)

    # -- editing (every edit drops the file's baked frames) --------------------------------
    def add_keyframe(self, keyframe: Keyframe, index: int | None = None) -> int:
        """Insert a keyframe before `index` (append when None); returns its index."""
        index = len(self.keyframes) if index is None else max(0, min(index, len(self.keyframes)))
        self.keyframes.insert(index, keyframe)
        self.baked = None
        return index

    def delete_keyframe(self, index: int) -> None:
        del self.keyframes[index]
        self.baked = None

    def move_keyframe(self, index: int, new_index: int) -> int:
        """Move keyframe `index` to position `new_index` (clamped); returns where it went."""
        new_index = max(0, min(new_index, len(self.keyframes) - 1))
        kf = self.keyframes.pop(index)
        self.keyframes.insert(new_index, kf)
        self.baked = None
        return new_index

    def replace_keyframe(self, index: int, keyframe: Keyframe) -> None:
        self.keyframes[index] = keyframe
        self.baked = None

    def clear(self) -> None:
        self.keyframes.clear()
        self.baked = None


# ---------------------------------------------------------------------------------------
# Quaternions (w, x, y, z), unit length; log/exp use half-angle rotation vectors
# ---------------------------------------------------------------------------------------
def _qmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    aw, ax, ay, az = a
    bw, bx, by, bz = b
    return np.array([
        aw * bw - ax * bx - ay * by - az * bz,
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
    ])


def _qconj(q: np.ndarray) -> np.ndarray:
    return np.array([q[0], -q[1], -q[2], -q[3]])


def _qlog(q: np.ndarray) -> np.ndarray:
    """Half-angle rotation vector of the shorter of the two rotations q and -q. [3]"""
    if q[0] < 0:
        q = -q
    v = q[1:]
    s = np.linalg.norm(v)
    if s < 1e-12:
        return v.copy()
    return v / s * math.atan2(s, q[0])


def _qexp(v: np.ndarray) -> np.ndarray:
    a = np.linalg.norm(v)
    if a < 1e-12:
        out = np.array([1.0, v[0], v[1], v[2]])
        return out / np.linalg.norm(out)
    return np.concatenate([[math.cos(a)], math.sin(a) * v / a])


def _slerp(a: np.ndarray, b: np.ndarray, s: float) -> np.ndarray:
    return _qmul(a, _qexp(s * _qlog(_qmul(_qconj(a), b))))


def _bezier_slerp(q0, q1, q2, q3, s: float) -> np.ndarray:
    """De Casteljau evaluation of a cubic spherical Bezier curve at s in [0, 1]."""
    a, b, c = _slerp(q0, q1, s), _slerp(q1, q2, s), _slerp(q2, q3, s)
    d, e = _slerp(a, b, s), _slerp(b, c, s)
    q = _slerp(d, e, s)
    return q / np.linalg.norm(q)


def _hermite(p0, p1, m0, m1, s: float):
    s2, s3 = s * s, s * s * s
    return ((2 * s3 - 3 * s2 + 1) * p0 + (s3 - 2 * s2 + s) * m0
            + (-2 * s3 + 3 * s2) * p1 + (s3 - s2) * m1)


def _mat_to_quat(r: np.ndarray) -> np.ndarray:
    """Rotation matrix [3, 3] -> unit quaternion (w, x, y, z); projects onto SO(3) first."""
    u, _, vt = np.linalg.svd(r)
    r = u @ vt
    if np.linalg.det(r) < 0:  # callers validate det > 0; keep a rotation regardless
        r = u @ np.diag([1.0, 1.0, -1.0]) @ vt
    tr = np.trace(r)
    if tr > 0:
        s = math.sqrt(tr + 1.0) * 2
        q = [0.25 * s, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s]
    elif r[0, 0] > r[1, 1] and r[0, 0] > r[2, 2]:
        s = math.sqrt(1.0 + r[0, 0] - r[1, 1] - r[2, 2]) * 2
        q = [(r[2, 1] - r[1, 2]) / s, 0.25 * s, (r[0, 1] + r[1, 0]) / s, (r[0, 2] + r[2, 0]) / s]
    elif r[1, 1] > r[2, 2]:
        s = math.sqrt(1.0 + r[1, 1] - r[0, 0] - r[2, 2]) * 2
        q = [(r[0, 2] - r[2, 0]) / s, (r[0, 1] + r[1, 0]) / s, 0.25 * s, (r[1, 2] + r[2, 1]) / s]
    else:
        s = math.sqrt(1.0 + r[2, 2] - r[0, 0] - r[1, 1]) * 2
        q = [(r[1, 0] - r[0, 1]) / s, (r[0, 2] + r[2, 0]) / s, (r[1, 2] + r[2, 1]) / s, 0.25 * s]
    q = np.array(q)
    return q / np.linalg.norm(q)


def _quat_to_mat(q: np.ndarray) -> np.ndarray:
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


# ---------------------------------------------------------------------------------------
# nerfstudio camera_path.json
# ---------------------------------------------------------------------------------------
def _pose_problem(c2w: np.ndarray, fov: float) -> str | None:
    """Why a camera-to-world matrix [4, 4] and vertical FOV (degrees) is unusable, or None."""
    if not np.all(np.isfinite(c2w)):
        return "matrix has non-finite numbers"
    if not (math.isfinite(fov) and 0.0 < fov < 180.0):
        return f"fov must be in (0, 180) degrees, got {fov}"
    if np.abs(c2w[3] - [0.0, 0.0, 0.0, 1.0]).max() > _RIGID_TOL:
        return f"matrix's last row is {c2w[3].tolist()}, expected [0, 0, 0, 1]"
    r = c2w[:3, :3]
    if np.abs(r.T @ r - np.eye(3)).max() > _RIGID_TOL or np.linalg.det(r) <= 0:
        return "matrix's rotation part is not a rotation (scaled, sheared or mirrored)"
    return None


def _number(d: dict, key: str, file, where: str = "", default=None) -> float:
    if key not in d:
        if default is not None:
            return float(default)
        raise CameraPathError(file, f"missing key {key!r}{where}")
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise CameraPathError(file, f"{key!r}{where} must be a finite number, got {v!r}")
    return float(v)


def _matrix(value, file, where: str, column_major_if_string: bool) -> np.ndarray:
    """A flattened 4x4 from the file as an OpenGL camera-to-world [4, 4] float64."""
    column_major = False
    if isinstance(value, str) and column_major_if_string:
        # the three.js viewer stored JSON.stringify(matrix.elements): column-major
        try:
            value = parse_json_bounded(value, file, max_depth=4)
        except (json.JSONDecodeError, LimitError) as e:
            raise CameraPathError(file, f"matrix{where} is a string that is not JSON "
                                        "of 16 finite numbers") from e
        column_major = True
    if isinstance(value, list) and len(value) == 4 and all(isinstance(r, list) for r in value):
        value = [x for row in value for x in row]  # a nested 4x4 list is taken row by row
    if not isinstance(value, list) or len(value) != 16:
        n = len(value) if isinstance(value, list) else type(value).__name__
        raise CameraPathError(file, f"matrix{where} must have 16 numbers, got {n}")
    if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value):
        raise CameraPathError(file, f"matrix{where} must hold numbers only")
    m = np.array(value, dtype=np.float64).reshape(4, 4)
    return m.T.copy() if column_major else m


def _pose_from_json(entry, file, where: str, key: str, default_fov) -> Keyframe:
    if not isinstance(entry, dict):
        raise CameraPathError(file, f"{where.strip()} must be an object")
    if key not in entry:
        raise CameraPathError(file, f"missing key {key!r} in {where.strip()}")
    gl = _matrix(entry[key], file, f" of {where.strip()}", column_major_if_string=True)
    fov = _number(entry, "fov", file, f" of {where.strip()}", default=default_fov)
    reason = _pose_problem(gl, fov)
    if reason:
        raise CameraPathError(file, f"{where.strip()}: {reason}")
    return Keyframe(gl @ _CV_GL, fov)


def camera_path_from_dict(data, file="<memory>") -> CameraPath:
    """Parse the nerfstudio layout (see the module docstring); raises CameraPathError."""
    if not isinstance(data, dict):
        raise CameraPathError(file, f"expected a JSON object, got {type(data).__name__}")
    camera_type = str(data.get("camera_type", "perspective")).lower()
    if camera_type != "perspective":
        raise CameraPathError(file, f"only perspective paths are supported, got {camera_type!r}")
    width = _number(data, "render_width", file)
    height = _number(data, "render_height", file)
    if width < 1 or height < 1 or width != int(width) or height != int(height):
        raise CameraPathError(file, f"render size must be positive whole pixels, got "
                                    f"{width}x{height}")
    try:  # absolute limits here; the memory a render needs is checked by whoever renders
        check_image_size(file, "render_width x render_height", width, height,
                         available=1 << 62)
    except LimitError as e:
        raise CameraPathError(file, f"render_width x render_height = {e.value}: "
                                    f"{e.limit}") from None
    default_fov = data.get("default_fov")
    if default_fov is not None and not isinstance(default_fov, (int, float)):
        default_fov = None
    if default_fov is not None:
        default_fov = _number(data, "default_fov", file)

    raw_kfs = data.get("keyframes") or []
    raw_frames = data.get("camera_path") or []
    if not isinstance(raw_kfs, list) or not isinstance(raw_frames, list):
        raise CameraPathError(file, "'keyframes' and 'camera_path' must be lists")
    if not raw_kfs and not raw_frames:
        raise CameraPathError(file, "no keyframes and no camera_path frames (zero frames)")
    keyframes = [_pose_from_json(e, file, f"keyframe {i}", "matrix", default_fov)
                 for i, e in enumerate(raw_kfs)]
    baked = [_pose_from_json(e, file, f"camera_path entry {i}", "camera_to_world", default_fov)
             for i, e in enumerate(raw_frames)]

    fps = _number(data, "fps", file, default=30.0)
    if fps <= 0:
        raise CameraPathError(file, f"fps must be positive, got {fps}")
    if baked and not keyframes:
        # only frames: they are the path; its length follows from them
        keyframes = [Keyframe(kf.c2w.copy(), kf.fov_y_deg) for kf in baked]
        seconds = len(baked) / fps
    else:
        seconds = _number(data, "seconds", file)
        if seconds <= 0:
            raise CameraPathError(file, f"seconds must be positive, got {seconds}")
    try:
        check_frame_count(file, "fps x seconds", fps * seconds)
    except LimitError as e:
        raise CameraPathError(file, f"fps x seconds = {fps:g} x {seconds:g} = "
                                    f"{fps * seconds:g} frames: {e.limit}") from None
    smoothness = _number(data, "smoothness_value", file, default=0.5)
    return CameraPath(
        keyframes=keyframes, fps=fps, seconds=seconds, width=int(width), height=int(height),
        loop=bool(data.get("is_cycle", False)),
        smoothness=min(max(smoothness, 0.0), 1.0),
        baked=baked or None,
    )


def camera_path_to_dict(path: CameraPath) -> dict:
    """The nerfstudio layout of a path, with one camera_path entry per frame."""
    aspect = path.width / path.height
    n_segments = max(1, len(path.keyframes) if path.loop else len(path.keyframes) - 1)

    def gl(kf: Keyframe) -> list[float]:
        return [float(x) for x in (kf.c2w @ _CV_GL).reshape(-1)]

    return {
        "camera_type": "perspective",
        "render_width": int(path.width),
        "render_height": int(path.height),
        "fps": float(path.fps),
        "seconds": float(path.seconds),
        "smoothness_value": float(path.smoothness),
        "is_cycle": bool(path.loop),
        "default_fov": float(path.keyframes[0].fov_y_deg),
        # nerfstudio's viewer times a path by per-keyframe transitions; this makes the
        # duration it computes equal to `seconds`
        "default_transition_sec": float(path.seconds) / n_segments,
        "keyframes": [{"matrix": gl(kf), "fov": kf.fov_y_deg, "aspect": aspect}
                      for kf in path.keyframes],
        "camera_path": [{"camera_to_world": gl(kf), "fov": kf.fov_y_deg, "aspect": aspect}
                        for kf in path.frame_poses()],
    }


def load_camera_path(file) -> CameraPath:
    """Read a `camera_path.json` (written by mipview, nerfstudio or gsplat's viewer).

    Raises CameraPathError naming the file for anything unreadable: not JSON, missing
    keys, matrices that are not 16 numbers or not rigid, non-finite numbers, zero frames.
    """
    file = Path(file)
    try:
        size = file.stat().st_size
        if size > MAX_PATH_BYTES:
            raise CameraPathError(file, f"file size {size} bytes: at most {MAX_PATH_BYTES}")
        with open(file, "rb") as f:
            text = f.read(MAX_PATH_BYTES + 1)
    except OSError as e:
        raise CameraPathError(file, f"cannot read: {e.strerror or e}") from e
    try:
        # bounded: depth, size; NaN, Infinity and overflowing numbers are refused
        data = parse_json_bounded(text, file, max_bytes=MAX_PATH_BYTES, nonfinite="keep")
    except LimitError as e:
        raise CameraPathError(file, f"{e.field} {e.value}: {e.limit}") from None
    except RecursionError:  # a deep string-held matrix, beyond the depth scan's reach
        raise CameraPathError(file, "not a camera path: JSON nested too deeply") from None
    except UnicodeDecodeError:
        raise CameraPathError(file, "cannot read: the file is not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise CameraPathError(file, f"not JSON ({e})") from e
    return camera_path_from_dict(data, file)


def save_camera_path(path: CameraPath, file) -> Path:
    """Write a path in the nerfstudio layout, atomically (temp file + rename).

    A path that cannot be written (no keyframes, non-finite numbers, bad size) raises
    CameraPathError before anything is touched; an existing file is replaced only by a
    complete new one.
    """
    file = Path(file)
    problems = path.problems()
    if problems:
        raise CameraPathError(file, "not saved: " + "; ".join(problems))
    try:
        text = json.dumps(camera_path_to_dict(path), indent=2, allow_nan=False)
    except ValueError as e:
        raise CameraPathError(file, f"not saved: {e}") from e
    try:  # temporary name + rename; the file gets the umask's mode, not mkstemp's 0600
        atomic_write_bytes(file, text.encode("utf-8"))
    except OSError as e:
        raise CameraPathError(file, f"cannot write: {e.strerror or e}") from e
    return file
