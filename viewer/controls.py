"""Camera navigation as pure math: orbit, pan, dolly, FOV zoom, fly, framing.

No GL and no window here, so every motion is testable on its own. A view is a
:class:`ViewPose`: a camera-to-world rotation in OpenCV axes (columns: right, down,
forward), a position, the distance to the pivot the orbit turns around, and the vertical
field of view. Orbit and mouse-look turn about the world up axis and the camera's own
right axis, so a view keeps whatever roll it had (a training camera stays exact) and
never flips over the pole.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np
import torch

from render.camera import Camera

MIN_FOV = math.radians(1.0)
MAX_FOV = math.radians(150.0)
# Orbit and look stop this far from looking straight along the up axis, where the
# turntable degenerates (yaw about up would spin the image instead of turning it).
POLE_MARGIN = math.radians(2.0)
DOLLY_STEP = 0.85  # distance factor per scroll notch
FOV_STEP = 0.9  # tan(fov/2) factor per scroll notch


@dataclass(frozen=True)
class ViewPose:
    """Where the viewer's camera is.

    Attributes:
        rotation: camera-to-world rotation, columns = right, down, forward (OpenCV). [3, 3]
        position: camera centre in world units. [3]
        distance: distance from the camera to the orbit pivot along forward, world units.
        fov_y: vertical field of view in radians.
    """

    rotation: np.ndarray
    position: np.ndarray
    distance: float
    fov_y: float

    @property
    def right(self) -> np.ndarray:
        return self.rotation[:, 0]

    @property
    def down(self) -> np.ndarray:
        return self.rotation[:, 1]

    @property
    def forward(self) -> np.ndarray:
        return self.rotation[:, 2]

    @property
    def pivot(self) -> np.ndarray:
        """The point orbit turns around. [3]"""
        return self.position + self.forward * self.distance

    def c2w(self) -> np.ndarray:
        """Camera-to-world transform, OpenCV axes. [4, 4] float64"""
        m = np.eye(4)
        m[:3, :3] = self.rotation
        m[:3, 3] = self.position
        return m

    @cached_property
    def _viewmat(self) -> np.ndarray:
        """World-to-camera transform [4, 4] float32: the rigid inverse of c2w (R^T,
        -R^T t), as the viewer asks for it on every UI frame that moves."""
        m = np.eye(4)
        m[:3, :3] = self.rotation.T
        m[:3, 3] = -(self.rotation.T @ self.position)
        return m.astype(np.float32)

    def camera(self, width: int, height: int, near: float = 0.01, far: float = 1e10) -> Camera:
        """The render camera for a width x height image: square pixels, centred principal
        point, this pose's vertical field of view."""
        f = height / (2.0 * math.tan(self.fov_y / 2.0))
        return Camera(torch.from_numpy(self._viewmat.copy()), f, f, width / 2.0, height / 2.0,
                      width, height, near=near, far=far)

    @cached_property
    def _key(self) -> tuple:
        return (tuple(self.rotation.round(9).ravel().tolist()),
                tuple(self.position.round(9).tolist()), round(self.fov_y, 9))

    def key(self) -> tuple:
        """A hashable summary, to tell whether the view changed between frames (a pose is
        immutable: computed once)."""
        return self._key


# The turns of a drag run on every mouse report, on the UI thread, while the render
# thread wants the cores (and the GIL): on 3 x 3 matrices numpy's per-call overhead is
# most of the cost, and plain floats take a fifth of the time (an orbit step: ~22
# against ~120 us). Matrices here are lists of rows.
def _rotation_rows(axis, angle: float) -> list[list[float]]:
    """Rodrigues: the rotation by `angle` radians about `axis` (normalised here)."""
    x, y, z = (float(v) for v in axis)
    n = max(math.sqrt(x * x + y * y + z * z), 1e-12)
    x, y, z = x / n, y / n, z / n
    c, s = math.cos(angle), math.sin(angle)
    t = 1.0 - c
    return [[t * x * x + c, t * x * y - s * z, t * x * z + s * y],
            [t * x * y + s * z, t * y * y + c, t * y * z - s * x],
            [t * x * z - s * y, t * y * z + s * x, t * z * z + c]]


def _product(a: list[list[float]], b: list[list[float]]) -> list[list[float]]:
    cols = list(zip(*b))
    return [[ra[0] * cb[0] + ra[1] * cb[1] + ra[2] * cb[2] for cb in cols] for ra in a]


def _column_dot(m: list[list[float]], j: int, v) -> float:
    return m[0][j] * v[0] + m[1][j] * v[1] + m[2][j] * v[2]


def _rigid(m: list[list[float]]) -> np.ndarray:
    """A rotation from one that drifted (many small products): right kept in direction,
    forward made orthogonal to it, down = forward x right (det +1). [3, 3]"""
    rx, ry, rz = m[0][0], m[1][0], m[2][0]
    n = math.sqrt(rx * rx + ry * ry + rz * rz)
    rx, ry, rz = rx / n, ry / n, rz / n
    fx, fy, fz = m[0][2], m[1][2], m[2][2]
    d = fx * rx + fy * ry + fz * rz
    fx, fy, fz = fx - d * rx, fy - d * ry, fz - d * rz
    n = math.sqrt(fx * fx + fy * fy + fz * fz)
    fx, fy, fz = fx / n, fy / n, fz / n
    dx, dy, dz = fy * rz - fz * ry, fz * rx - fx * rz, fx * ry - fy * rx
    return np.array([[rx, dx, fx], [ry, dy, fy], [rz, dz, fz]])


def _orthonormal(r: np.ndarray) -> np.ndarray:
    """The rotation nearest to a 3 x 3 matrix (SVD), det +1."""
    u, _, vt = np.linalg.svd(r)
    m = u @ vt
    if np.linalg.det(m) < 0:
        u[:, -1] *= -1
        m = u @ vt
    return m


def pose_from_camera(camera: Camera, distance: float) -> ViewPose:
    """The pose of a render camera, with its vertical field of view, orbiting a pivot
    `distance` in front of it."""
    c2w = np.linalg.inv(camera.viewmat.double().numpy())
    return ViewPose(_orthonormal(c2w[:3, :3]), c2w[:3, 3].copy(), max(float(distance), 1e-6),
                    camera.fov_y)


def _turn(rotation: np.ndarray, up: np.ndarray, yaw: float, pitch: float) -> np.ndarray:
    """Yaw about world up, then pitch about the new right axis, stopping short of the poles."""
    up = [float(v) for v in up]
    r = _product(_rotation_rows(up, yaw), rotation.tolist())
    side = math.copysign(1.0, -_column_dot(r, 1, up) or 1.0)
    right = [r[0][0], r[1][0], r[2][0]]

    def ok(m: list[list[float]]) -> bool:
        # Forward stays POLE_MARGIN away from +-up, and screen-up stays on the same side
        # of the world-up axis (crossing the pole would turn the image upside down).
        return (abs(_column_dot(m, 2, up)) <= math.cos(POLE_MARGIN)
                and -_column_dot(m, 1, up) * side > 0)

    pitched = _product(_rotation_rows(right, pitch), r)
    if not ok(pitched):  # go as far towards the pole as allowed
        lo, hi = 0.0, 1.0
        for _ in range(30):
            mid = (lo + hi) / 2
            if ok(_product(_rotation_rows(right, pitch * mid), r)):
                lo = mid
            else:
                hi = mid
        pitched = _product(_rotation_rows(right, pitch * lo), r)
    return _rigid(pitched)


def orbit(pose: ViewPose, up: np.ndarray, dx: float, dy: float,
          radians_per_px: float = 0.005) -> ViewPose:
    """Turn the camera around its pivot for a mouse drag of (dx, dy) pixels.

    Dragging right swings the camera to its left, so the model turns with the mouse;
    dragging down raises the camera over the model.
    """
    up = np.asarray(up, dtype=np.float64)
    pivot = pose.pivot
    r = _turn(pose.rotation, up, -dx * radians_per_px, -dy * radians_per_px)
    return replace(pose, rotation=r, position=pivot - r[:, 2] * pose.distance)


def look(pose: ViewPose, up: np.ndarray, dx: float, dy: float,
         radians_per_px: float = 0.003) -> ViewPose:
    """Fly-mode mouse look: turn the camera about its own centre (the pivot moves along)."""
    r = _turn(pose.rotation, np.asarray(up, dtype=np.float64), -dx * radians_per_px,
              -dy * radians_per_px)
    return replace(pose, rotation=r)


def world_per_pixel(pose: ViewPose, height: int) -> float:
    """World units per screen pixel at the pivot's depth."""
    return 2.0 * pose.distance * math.tan(pose.fov_y / 2.0) / max(height, 1)


def pan(pose: ViewPose, dx: float, dy: float, height: int) -> ViewPose:
    """Slide the camera (and its pivot) in the image plane so the point under the mouse
    at the pivot's depth follows the mouse by (dx, dy) pixels."""
    s = world_per_pixel(pose, height)
    return replace(pose, position=pose.position - pose.right * dx * s - pose.down * dy * s)


def dolly(pose: ViewPose, notches: float, min_distance: float = 1e-4) -> ViewPose:
    """Move towards (notches > 0) or away from the pivot; each notch scales the distance
    by DOLLY_STEP, so zooming feels the same at every scale."""
    d = max(pose.distance * DOLLY_STEP**notches, min_distance)
    pivot = pose.pivot
    return replace(pose, distance=d, position=pivot - pose.forward * d)


def zoom_fov(pose: ViewPose, notches: float) -> ViewPose:
    """Narrow (notches > 0) or widen the field of view: tan(fov/2) scales by FOV_STEP per
    notch, which is a constant factor on the focal length."""
    t = math.tan(pose.fov_y / 2.0) * FOV_STEP**notches
    return set_fov(pose, 2.0 * math.atan(t))


def set_fov(pose: ViewPose, fov_y: float) -> ViewPose:
    return replace(pose, fov_y=float(min(max(fov_y, MIN_FOV), MAX_FOV)))


def fly(pose: ViewPose, up: np.ndarray, forward: float, right: float, rise: float) -> ViewPose:
    """Fly-mode translation in world units: along the view direction, the camera's right
    axis and the world up axis (Q/E). The pivot travels with the camera."""
    up = np.asarray(up, dtype=np.float64)
    up = up / max(np.linalg.norm(up), 1e-12)
    step = pose.forward * forward + pose.right * right + up * rise
    return replace(pose, position=pose.position + step)


def frame_bounds(pose: ViewPose, lo: np.ndarray, hi: np.ndarray, aspect: float,
                 margin: float = 1.1) -> ViewPose:
    """Keep the orientation, move the pivot to the centre of the box [lo, hi] and back off
    until the box's bounding sphere fits the narrower field of view."""
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    centre = (lo + hi) / 2.0
    radius = max(float(np.linalg.norm(hi - lo)) / 2.0, 1e-6)
    fov_x = 2.0 * math.atan(math.tan(pose.fov_y / 2.0) * aspect)
    half = min(pose.fov_y, fov_x) / 2.0
    d = radius * margin / math.sin(half)
    return replace(pose, distance=d, position=centre - pose.forward * d)


def up_from_cameras(c2w_rotations: list[np.ndarray]) -> np.ndarray | None:
    """World up from training cameras: the average of their -y axes (OpenCV y points down
    on screen). None when there are none or they disagree so much the mean vanishes."""
    if not c2w_rotations:
        return None
    ups = np.stack([-np.asarray(r, dtype=np.float64)[:, 1] for r in c2w_rotations])
    mean = ups.mean(axis=0)
    n = float(np.linalg.norm(mean))
    return mean / n if n > 1e-3 else None


def camera_rotation(camera: Camera) -> np.ndarray:
    """A camera's camera-to-world rotation. [3, 3] float64"""
    return np.linalg.inv(camera.viewmat.double().numpy())[:3, :3]


def level(pose: ViewPose, up: np.ndarray) -> ViewPose:
    """Remove roll: keep forward, make screen-up as close to world up as possible."""
    up = np.asarray(up, dtype=np.float64)
    fwd = pose.forward
    right = np.cross(fwd, -up)
    if np.linalg.norm(right) < 1e-9:
        return pose
    right /= np.linalg.norm(right)
    down = np.cross(fwd, right)
    return replace(pose, rotation=np.stack([right, down, fwd], axis=1))


UP_CHOICES: dict[str, tuple[float, float, float]] = {
    "-Y (OpenCV / COLMAP)": (0.0, -1.0, 0.0),
    "+Y (OpenGL)": (0.0, 1.0, 0.0),
    "+Z (Blender)": (0.0, 0.0, 1.0),
    "-Z": (0.0, 0.0, -1.0),
    "+X": (1.0, 0.0, 0.0),
    "-X": (-1.0, 0.0, 0.0),
}
