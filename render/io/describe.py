"""The fields of a model's summary (what `mipview info` prints), from numpy arrays alone.

`LoadedModel.summary` and the header scan of :mod:`render.io.summary` both build their
JSON here, so the two give the same object. Nothing here imports torch: `mipview info`
on a large file would otherwise spend most of its time importing it.

The bounds and extent are those of `Gaussians.bounds()` / `Gaussians.extent()`, computed
the way torch computes them on the CPU, so the figures `info` prints did not change when
it stopped using torch: the robust box is the linear-interpolation 1 % / 99 % quantile
of a strided sample of at most ~1 M centres (ranks and weights in float32, interpolated
with a fused multiply-add), and the norm of its diagonal sums the squares with fused
multiply-adds in float32.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from render.io.cameras_json import count_inria_cameras, find_cameras_json
from render.io.errors import GaussianFileError
from render.io.splat_model import antialias_for

EXTENT_QUANTILE = 0.01  # Gaussians.extent's robust box: ignores the far floaters
_QUANTILE_SAMPLE = 1_000_000  # as Gaussians.bounds: a strided sample of about this many


def centre_bounds(means: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(min [3], max [3], extent) of centres `means` [N, 3] float32, world units.

    The extent is the scene radius as 3DGS defines it: half the diagonal of the box
    spanning the 1 %..99 % quantiles per axis, at least 1e-6 (see the module docstring).
    An empty set has the zero box.
    """
    means = np.asarray(means, dtype=np.float32)
    if len(means) == 0:
        zero = np.zeros(3, np.float32)
        return zero, zero.copy(), 1e-6
    lo, hi = means.min(axis=0), means.max(axis=0)
    sample = means[:: max(1, len(means) // _QUANTILE_SAMPLE)]
    q_lo = _quantile(sample, EXTENT_QUANTILE)
    q_hi = _quantile(sample, 1.0 - EXTENT_QUANTILE)
    return lo, hi, max(_norm32(q_hi - q_lo) * 0.5, 1e-6)


def _quantile(x: np.ndarray, q: float) -> np.ndarray:
    """[3] float32: per column of `x` [M, 3], the linear-interpolation quantile `q`."""
    rank = np.float32(q) * np.float32(len(x) - 1)
    below, above = int(rank), int(math.ceil(rank))
    part = np.partition(x, sorted({below, above}), axis=0)  # exact order statistics
    v0, v1 = part[below], part[above]
    w = np.float32(rank - np.float32(below))
    # torch's lerp: v0 + w (v1 - v0) below w = 0.5, v1 + (w - 1)(v1 - v0) above, fused
    # (the float64 product of two float32 values is exact; the sum is rounded to float32)
    base, coeff = (v0, w) if w < 0.5 else (v1, w - np.float32(1.0))
    diff = (v1 - v0).astype(np.float64)
    return (np.float64(coeff) * diff + base).astype(np.float32)


def _norm32(v: np.ndarray) -> float:
    """|v| of a float32 vector: squares summed in order with fused multiply-adds."""
    acc = np.float32(0.0)
    for x in v.astype(np.float64):
        acc = np.float32(x * x + np.float64(acc))
    return float(np.float32(math.sqrt(acc)))


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


def camera_count(path: Path) -> tuple[int | None, Path | None, list[str]]:
    """(number of cameras, cameras.json path, warnings) for a model file, as
    `model_cameras` finds and checks them, without building the cameras."""
    cam_path = find_cameras_json(path)
    if cam_path is None:
        return None, None, []
    try:
        return count_inria_cameras(cam_path), cam_path, []
    except GaussianFileError as e:
        return None, None, [camera_warning(e)]


def camera_warning(error: GaussianFileError) -> str:
    """The warning for a cameras.json beside the model that cannot be read."""
    return f"training cameras not loaded: {error}"
