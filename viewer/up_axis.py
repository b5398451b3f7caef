"""Which way is up for a model without training cameras, guessed from its shape.

Captured scenes and objects are flattest along their up axis (a ground plane, a table
top, a donut lying on it): the principal axis of least spread of the Gaussians' centres.
When that axis is clearly the flattest (its variance under half the next one) and close
to a coordinate axis, the model is taken to be in that axis' usual convention: Z up as
Blender and most Z-up tools write (+Z), Y up as COLMAP/OpenCV captures (-Y), X as +X.
Otherwise there is no guess and the viewer's default (-Y) stays; the View panel's
"world up" menu changes it either way.
"""

from __future__ import annotations

import numpy as np

# principal axis index -> UP_CHOICES key
_AXIS_CHOICE = {0: "+X", 1: "-Y (OpenCV / COLMAP)", 2: "+Z (Blender)"}
FLAT_RATIO = 0.5  # least variance / middle variance below this: clearly flat
AXIS_COS = 0.9  # |cos| between the flattest direction and a coordinate axis (~26 degrees)
MAX_POINTS = 200_000


def guess_up_choice(means: np.ndarray, seed: int = 0) -> str | None:
    """The UP_CHOICES key of the guessed up axis, or None when the shape does not tell.

    Args:
        means: Gaussian centres, world units. [N, 3]; non-finite rows are ignored.
    """
    pts = np.asarray(means, dtype=np.float64).reshape(-1, 3)
    pts = pts[np.isfinite(pts).all(axis=1)]
    if len(pts) > MAX_POINTS:
        pts = pts[np.random.default_rng(seed).choice(len(pts), MAX_POINTS, replace=False)]
    if len(pts) < 16:
        return None
    lo, hi = np.quantile(pts, 0.01, axis=0), np.quantile(pts, 0.99, axis=0)
    pts = pts[((pts >= lo) & (pts <= hi)).all(axis=1)]  # stray floaters do not decide
    if len(pts) < 16:
        return None
    centred = pts - pts.mean(axis=0)
    scale = float(np.abs(centred).max())
    if not np.isfinite(scale) or scale == 0.0:
        return None
    centred /= scale  # eigh on a unit-sized covariance: no overflow whatever the units
    try:
        var, vec = np.linalg.eigh(centred.T @ centred / len(centred))
    except np.linalg.LinAlgError:
        return None
    if not (var[1] > 0 and var[0] < FLAT_RATIO * var[1]):
        return None
    axis = int(np.argmax(np.abs(vec[:, 0])))
    if abs(vec[axis, 0]) < AXIS_COS:
        return None
    return _AXIS_CHOICE[axis]
