"""Pinhole cameras in the OpenCV convention (x right, y down, z forward)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor

# Blender / NeRF / OpenGL cameras look down -z with y up; OpenCV looks down +z with y down.
_GL_TO_CV = np.diag([1.0, -1.0, -1.0, 1.0])


@dataclass(frozen=True)
class Camera:
    """A pinhole camera.

    Attributes:
        viewmat: world-to-camera transform, OpenCV axes. [4, 4] float32
        fx, fy: focal lengths in pixels.
        cx, cy: principal point in pixels; pixel (i, j) has its centre at (j + 0.5, i + 0.5).
        width, height: image size in pixels.
        near, far: clipping depths in world units.
    """

    viewmat: Tensor
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    near: float = 0.01
    far: float = 1e10

    def __post_init__(self) -> None:
        vm = self.viewmat
        # Checked first: the conversion's torch calls let go of the GIL, and cameras are
        # made on the UI thread while the render thread holds it (see c2w).
        if not (isinstance(vm, Tensor) and vm.dtype == torch.float32 and vm.is_cpu
                and vm.shape == (4, 4)):
            vm = torch.as_tensor(vm, dtype=torch.float32).reshape(4, 4).cpu()
            object.__setattr__(self, "viewmat", vm)
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"camera size must be positive, got {self.width}x{self.height}")
        if not (self.fx > 0 and self.fy > 0):
            raise ValueError(f"focal lengths must be positive, got fx={self.fx} fy={self.fy}")

    # -- derived ------------------------------------------------------------------------
    @property
    def K(self) -> Tensor:
        """Intrinsic matrix. [3, 3]"""
        return torch.tensor(
            [[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]],
            dtype=torch.float32,
        )

    @property
    def c2w(self) -> Tensor:
        """Camera-to-world transform, OpenCV axes. [4, 4]"""
        if self.viewmat.requires_grad:  # keep the graph
            return torch.linalg.inv(self.viewmat.double()).float()
        # In numpy: torch calls let go of the GIL, and the cpu renderer asks for the
        # camera centre on every frame (see render.rasterize.cpu_project.numpy_f32).
        inv = np.linalg.inv(self.viewmat.numpy().astype(np.float64))
        return torch.from_numpy(inv.astype(np.float32))

    @property
    def position(self) -> Tensor:
        """Camera centre in world coordinates. [3]"""
        return self.c2w[:3, 3]

    @property
    def fov_x(self) -> float:
        """Horizontal field of view in radians."""
        return 2.0 * math.atan(self.width / (2.0 * self.fx))

    @property
    def fov_y(self) -> float:
        """Vertical field of view in radians."""
        return 2.0 * math.atan(self.height / (2.0 * self.fy))

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height

    # -- derived cameras ----------------------------------------------------------------
    def scaled(self, f: float) -> Camera:
        """The same view on a pixel grid f times finer (f > 1) or coarser (f < 1).

        The field of view is kept: the size is rounded to whole pixels and the
        intrinsics are scaled by the exact ratio of the rounded sizes.
        """
        w = max(1, int(round(self.width * f)))
        h = max(1, int(round(self.height * f)))
        sx, sy = w / self.width, h / self.height
        return replace(self, fx=self.fx * sx, fy=self.fy * sy, cx=self.cx * sx,
                       cy=self.cy * sy, width=w, height=h)

    def resized(self, width: int, height: int) -> Camera:
        """The same view at another pixel size (per-axis scaling of the intrinsics)."""
        sx, sy = width / self.width, height / self.height
        return replace(self, fx=self.fx * sx, fy=self.fy * sy, cx=self.cx * sx,
                       cy=self.cy * sy, width=width, height=height)

    def crop(self, x: int, y: int, w: int, h: int) -> Camera:
        """The window [x, x+w) x [y, y+h) of this camera's image as a camera of its own.

        Rendering the crop gives exactly those pixels of the full render: only the
        principal point shifts.
        """
        return replace(self, cx=self.cx - x, cy=self.cy - y, width=w, height=h)

    def with_viewmat(self, viewmat: Tensor) -> Camera:
        return replace(self, viewmat=viewmat)

    def with_fov_y(self, fov_y: float) -> Camera:
        """Same pose and size, another vertical field of view (radians); square pixels."""
        f = self.height / (2.0 * math.tan(fov_y / 2.0))
        return replace(self, fx=f, fy=f)

    # -- constructors ---------------------------------------------------------------------
    @staticmethod
    def from_c2w(
        c2w: Tensor | np.ndarray,
        fx: float,
        fy: float,
        width: int,
        height: int,
        cx: float | None = None,
        cy: float | None = None,
        **kw,
    ) -> Camera:
        """From a camera-to-world matrix in OpenCV axes. [4, 4] or [3, 4]"""
        m = np.eye(4)
        m[:3, :] = np.asarray(c2w, dtype=np.float64).reshape(-1, 4)[:3]
        viewmat = torch.from_numpy(np.linalg.inv(m).astype(np.float32))
        return Camera(viewmat, float(fx), float(fy),
                      width / 2.0 if cx is None else float(cx),
                      height / 2.0 if cy is None else float(cy), width, height, **kw)

    @staticmethod
    def from_blender(
        transform_matrix: Tensor | np.ndarray, camera_angle_x: float, width: int, height: int,
        **kw,
    ) -> Camera:
        """From a NeRF/Blender camera: camera-to-world in OpenGL axes (y up, z backward)
        and the horizontal field of view in radians; square pixels, centred principal point.
        """
        c2w = np.asarray(transform_matrix, dtype=np.float64).reshape(4, 4) @ _GL_TO_CV
        f = 0.5 * width / math.tan(0.5 * camera_angle_x)
        return Camera.from_c2w(c2w, f, f, width, height, **kw)

    def to_blender(self) -> np.ndarray:
        """Camera-to-world in OpenGL axes (nerfstudio / Blender convention). [4, 4] float64"""
        return np.linalg.inv(self.viewmat.double().numpy()) @ _GL_TO_CV

    @staticmethod
    def look_at(
        eye, target, up=(0.0, -1.0, 0.0), fov_y_deg: float = 50.0,
        width: int = 640, height: int = 480, **kw,
    ) -> Camera:
        """A camera at `eye` looking at `target`; `up` is the world direction that shows
        as up on screen (OpenCV world with y down by default, as most 3DGS scenes are).
        """
        eye = np.asarray(eye, dtype=np.float64)
        fwd = np.asarray(target, dtype=np.float64) - eye
        fwd /= np.linalg.norm(fwd)
        up = np.asarray(up, dtype=np.float64)
        right = np.cross(fwd, up)  # screen x
        if np.linalg.norm(right) < 1e-9:  # looking along `up`: any perpendicular will do
            right = np.cross(fwd, np.array([1.0, 0.0, 0.0]) if abs(fwd[0]) < 0.9
                             else np.array([0.0, 0.0, 1.0]))
        right /= np.linalg.norm(right)
        down = np.cross(fwd, right)  # screen y points down in OpenCV
        c2w = np.eye(4)
        c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, down, fwd, eye
        f = height / (2.0 * math.tan(math.radians(fov_y_deg) / 2.0))
        return Camera.from_c2w(c2w, f, f, width, height, **kw)

    # -- serialisation ----------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "viewmat": self.viewmat.tolist(), "fx": self.fx, "fy": self.fy, "cx": self.cx,
            "cy": self.cy, "width": self.width, "height": self.height,
            "near": self.near, "far": self.far,
        }

    @staticmethod
    def from_dict(d: dict) -> Camera:
        return Camera(torch.tensor(d["viewmat"], dtype=torch.float32), float(d["fx"]),
                      float(d["fy"]), float(d["cx"]), float(d["cy"]), int(d["width"]),
                      int(d["height"]), float(d.get("near", 0.01)), float(d.get("far", 1e10)))
