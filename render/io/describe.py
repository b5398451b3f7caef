"""The fields of a model's summary (what `mipview info` prints), from numpy arrays alone.

`LoadedModel.summary` and the header scan of :mod:`render.io.summary` both build their
JSON here, so the two give the same object. Nothing here imports torch: `mipview info`
on a large file would otherwise spend most of its time importing it.

The bounds and extent are those of `Gaussians.bounds()` / `Gaussians.extent()`, in
numpy (equal to torch's up to float32 rounding).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np

from render.io.cameras_json import count_inria_cameras, find_cameras_json
from render.io.errors import GaussianFileError
from render.io.splat_model import antialias_for

T = TypeVar("T")

EXTENT_QUANTILE = 0.01  # Gaussians.extent's robust box: ignores the far floaters
_QUANTILE_SAMPLE = 1_000_000  # as Gaussians.bounds: a strided sample of about this many


def centre_bounds(means: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(min [3], max [3], extent) of centres `means` [N, 3] float32, world units.

    The extent is the scene radius as 3DGS defines it: half the diagonal of the box
    spanning the 1 %..99 % quantiles per axis (of a strided sample of about 1 M centres),
    at least 1e-6. An empty set has the zero box.
    """
    means = np.asarray(means, dtype=np.float32)
    if len(means) == 0:
        zero = np.zeros(3, np.float32)
        return zero, zero.copy(), 1e-6
    lo, hi = means.min(axis=0), means.max(axis=0)
    sample = means[:: max(1, len(means) // _QUANTILE_SAMPLE)]
    q = np.quantile(sample, [EXTENT_QUANTILE, 1.0 - EXTENT_QUANTILE], axis=0)
    return lo, hi, max(float(np.linalg.norm(q[1] - q[0])) * 0.5, 1e-6)


def summary_dict(path: Path, fmt: str, means: np.ndarray, sh_degree: int,
                 n_cameras: int | None, cameras_path: Path | None, n_dropped: int,
                 n_zero_quats: int, warnings: list[str],
                 splat_model: str = "default") -> dict:
    """The fields of `LoadedModel.summary` from what they are computed from (`means`:
    the kept Gaussians' centres, [N, 3] float32; `n_cameras`: the training cameras
    found, or None)."""
    lo, hi, extent = centre_bounds(means)
    return {
        "path": str(path),
        "format": fmt,
        "gaussians": int(means.shape[0]),
        "sh_degree": sh_degree,
        "model": splat_model,
        "antialias": antialias_for(splat_model),
        "bounds": {"min": [float(v) for v in lo], "max": [float(v) for v in hi]},
        "extent": extent,
        "training_cameras": None if n_cameras is None else {
            "count": n_cameras, "path": str(cameras_path)},
        "n_dropped": n_dropped,
        "n_zero_quats": n_zero_quats,
        "warnings": list(warnings),
    }


def load_warnings(n_dropped: int, n_zero_quats: int, splat_model: str = "default"
                  ) -> list[str]:
    """What loading changed, or how the model will be drawn, that the user should know."""
    out = []
    if n_dropped:
        out.append(f"{n_dropped} Gaussians with NaN, infinite or absurd values were dropped")
    if n_zero_quats:
        out.append(f"{n_zero_quats} Gaussians had an all-zero rotation; read as the identity")
    if splat_model == "2dgs":
        out.append("the file is tagged 2dgs (surfels); drawn as flat 3D Gaussians")
    return out


def cameras_beside(path: Path, read: Callable[[Path], T]
                   ) -> tuple[T | None, Path | None, list[str]]:
    """(read(cameras.json), its path, warnings) for a model file: the training cameras
    found beside it or in the INRIA output folder above it; one that cannot be read is a
    warning, not an error."""
    cam_path = find_cameras_json(path)
    if cam_path is None:
        return None, None, []
    try:
        return read(cam_path), cam_path, []
    except GaussianFileError as e:
        return None, None, [camera_warning(e)]


def camera_count(path: Path) -> tuple[int | None, Path | None, list[str]]:
    """(number of cameras, cameras.json path, warnings) for a model file, as
    `model_cameras` finds and checks them, without building the cameras."""
    return cameras_beside(path, count_inria_cameras)


def camera_warning(error: GaussianFileError) -> str:
    """The warning for a cameras.json beside the model that cannot be read."""
    return f"training cameras not loaded: {error}"
