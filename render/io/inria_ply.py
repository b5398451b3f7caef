"""The INRIA 3DGS .ply layout (what the reference trainer and most tools write).

One `vertex` element with float properties, in this order when written:
`x y z nx ny nz f_dc_0..2 f_rest_0..(3(K-1)-1) opacity scale_0..2 rot_0..3`.

- `opacity` is the logit of the opacity, `scale_*` the log of the standard deviations,
  `rot_*` a quaternion (w, x, y, z), not necessarily of unit length.
- colour from SH band 0 is `0.5 + 0.28209479 * f_dc`.
- `f_rest_*` is grouped by colour channel: the K-1 higher-order coefficients of red,
  then of green, then of blue, so `sh[:, 1:, c] = f_rest[:, c*(K-1):(c+1)*(K-1)]`.
- the number of `f_rest_*` gives the SH degree: 0, 9, 24, 45 for degree 0, 1, 2, 3.

Reading accepts any property order, float32 or float64 (or integer) storage, with or
without normals, ignores properties it does not know, and takes ASCII and binary files
of either endianness (the container is read by :mod:`render.io.ply_format`).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from render.gaussians import Gaussians
from render.io.atomic import atomic_write_bytes
from render.io.errors import GaussianFileError
from render.io.gaussian_arrays import GaussianArrays, gaussians_to_numpy
from render.io.ply_format import PlyHeader, ply_bytes
from render.io.splat_model import ply_comments_for

REQUIRED = ("x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
            "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3")
F_REST_DEGREE = {0: 0, 9: 1, 24: 2, 45: 3}
_F_REST = re.compile(r"f_rest_(\d+)$")


def decode_inria(path: Path, header: PlyHeader,
                 columns: dict[str, np.ndarray]) -> GaussianArrays:
    """The Gaussians of an INRIA-layout `vertex` element, read as columns."""
    vertex = header.element("vertex")
    n = vertex.count
    names = vertex.property_names
    missing = [p for p in REQUIRED if p not in columns]
    if missing:
        have = " ".join(names[:24]) + (" ..." if len(names) > 24 else "")
        raise GaussianFileError(
            path, f"the vertex element lacks {', '.join(missing)}; an INRIA 3DGS .ply needs "
            f"x y z f_dc_0..2 opacity scale_0..2 rot_0..3 (it has: {have or 'nothing'})")
    rest_ids = sorted(int(m.group(1)) for m in map(_F_REST.match, names) if m)
    m = len(rest_ids)
    if m not in F_REST_DEGREE:
        raise GaussianFileError(
            path, f"{m} f_rest_* properties: an INRIA .ply has 0, 9, 24 or 45 "
            "(SH degree 0, 1, 2 or 3)")
    if rest_ids != list(range(m)):
        gap = sorted(set(range(m)) - set(rest_ids))
        raise GaussianFileError(
            path, f"f_rest_* properties are not numbered 0..{m - 1}"
            + (f" (f_rest_{gap[0]} is missing)" if gap else ""))

    def stack(props) -> np.ndarray:
        out = np.empty((n, len(props)), dtype=np.float32)
        with np.errstate(over="ignore", invalid="ignore"):  # float64 overflow -> inf, dropped
            for j, p in enumerate(props):
                out[:, j] = columns[p]
        return out

    k = m // 3 + 1
    sh = np.empty((n, k, 3), dtype=np.float32)
    sh[:, 0, :] = stack(["f_dc_0", "f_dc_1", "f_dc_2"])
    if m:
        rest = stack([f"f_rest_{i}" for i in range(m)])  # [N, 3*(K-1)], channel-major
        sh[:, 1:, :] = rest.reshape(n, 3, k - 1).transpose(0, 2, 1)
    return GaussianArrays(
        means=stack(["x", "y", "z"]),
        quats=stack(["rot_0", "rot_1", "rot_2", "rot_3"]),
        log_scales=stack(["scale_0", "scale_1", "scale_2"]),
        opacity_logits=stack(["opacity"])[:, 0],
        sh=sh,
    )


def inria_property_names(sh_degree: int) -> list[str]:
    """Vertex properties in the order the INRIA trainer writes them."""
    n_rest = 3 * ((sh_degree + 1) ** 2 - 1)
    return (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
            + [f"f_rest_{i}" for i in range(n_rest)]
            + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])


def encode_inria(gaussians: Gaussians, model: str = "default",
                 comments: tuple[str, ...] = ()) -> bytes:
    """The bytes of a binary little-endian INRIA .ply holding the set (float32 values),
    tagged with `model` (a `SplatRenderMode:` header comment unless `default`), with
    `comments` as further header comment lines."""
    a = gaussians_to_numpy(gaussians)
    n, k = a.sh.shape[:2]
    rest = a.sh[:, 1:, :].transpose(0, 2, 1).reshape(n, 3 * (k - 1))  # channel-major
    table = np.concatenate([
        a.means, np.zeros((n, 3), np.float32), a.sh[:, 0, :], rest,
        a.opacity_logits[:, None], a.log_scales, a.quats,
    ], axis=1)
    names = inria_property_names(gaussians.sh_degree)
    rows = np.ascontiguousarray(table, dtype="<f4").view(
        np.dtype([(p, "<f4") for p in names])).reshape(n)
    return ply_bytes([("vertex", rows)], comments=[*ply_comments_for(model), *comments])


def save_ply(gaussians: Gaussians, path: str | Path, model: str = "default",
             comments: tuple[str, ...] = ()) -> Path:
    """Save in the INRIA layout (binary little endian, float32, zero normals), tagged
    with `model` (render.io.splat_model) and with `comments` as header comment lines.

    The file is written under a temporary name and renamed; `load_model` of the result
    gives back exactly the same float32 values (unit quaternions are kept bit for bit).
    Returns the path written.
    """
    return atomic_write_bytes(path, encode_inria(gaussians, model, comments))
