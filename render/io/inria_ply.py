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
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from render.io.atomic import atomic_write_bytes
from render.io.errors import GaussianFileError
from render.io.gaussian_arrays import GaussianArrays, gaussians_to_numpy
from render.io.limits import available_memory
from render.io.ply_format import PlyHeader, ply_bytes
from render.io.splat_model import ply_comments_for

if TYPE_CHECKING:
    from render.gaussians import Gaussians

REQUIRED = ("x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
            "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3")
F_REST_DEGREE = {0: 0, 9: 1, 24: 2, 45: 3}
_F_REST = re.compile(r"f_rest_(\d+)$")
ASCII_BYTES_PER_VALUE = 72  # a bytes token (~45), its share of the joined text, a float64
_BLOCK_ROWS = 8192  # rows decoded together: 8192 x 248 B (SH 3) = 2 MB, in L2


def inria_sh_coeffs(path: Path, header: PlyHeader, columns: dict[str, np.ndarray]) -> int:
    """Check that the `vertex` columns are an INRIA layout; returns K, the SH coefficients
    per colour channel (1, 4, 9 or 16)."""
    vertex = header.element("vertex")
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
    return m // 3 + 1


def check_ascii_memory(path: Path, header: PlyHeader, body_bytes: int) -> None:
    """need_memory for an ASCII INRIA .ply before its text is parsed (the parse holds
    every value as a token and a float64 first: ~ASCII_BYTES_PER_VALUE bytes a value).
    A count the body's `body_bytes` cannot hold is left to the reader's size check, whose
    error (a truncated or inconsistent file) is the truer one."""
    vertex = header.element("vertex")
    if vertex.count * len(vertex.properties) > body_bytes // 2 + 1:
        return
    n_rest = sum(1 for p in vertex.property_names if _F_REST.match(p))
    k = n_rest // 3 + 1 if n_rest in F_REST_DEGREE else 1
    need_memory(path, vertex.count, k,
                extra=vertex.count * len(vertex.properties) * ASCII_BYTES_PER_VALUE)


def decode_inria(path: Path, header: PlyHeader, columns: dict[str, np.ndarray],
                 done_rows: Callable[[int], None] | None = None) -> GaussianArrays:
    """The Gaussians of an INRIA-layout `vertex` element, read as columns.

    `done_rows(r)`, when given, is called once rows [0, r) are decoded (a memory-mapped
    file releases those pages then, so the file and the arrays are not both resident).
    """
    n = header.element("vertex").count
    k = inria_sh_coeffs(path, header, columns)
    need_memory(path, n, k)
    means = np.empty((n, 3), dtype=np.float32)
    quats = np.empty((n, 4), dtype=np.float32)
    log_scales = np.empty((n, 3), dtype=np.float32)
    opacity = np.empty(n, dtype=np.float32)
    sh = np.empty((n, k, 3), dtype=np.float32)
    targets = (  # (output column view maker, property names)
        (lambda s, e: means[s:e], ("x", "y", "z")),
        (lambda s, e: quats[s:e], ("rot_0", "rot_1", "rot_2", "rot_3")),
        (lambda s, e: log_scales[s:e], ("scale_0", "scale_1", "scale_2")),
        (lambda s, e: opacity[s:e, None], ("opacity",)),
        (lambda s, e: sh[s:e, 0, :], ("f_dc_0", "f_dc_1", "f_dc_2")),
    )
    # f_rest is channel-major in the file: sh[:, 1 + i, c] = f_rest_{c*(K-1) + i}
    rest = [(1 + i, c, f"f_rest_{c * (k - 1) + i}") for c in range(3) for i in range(k - 1)]
    # Row blocks that stay in cache: each block of the file is read from memory once,
    # however many columns are taken from it (column-at-a-time reads it 60 times).
    with np.errstate(over="ignore", invalid="ignore"):  # float64 overflow -> inf, dropped
        for s in range(0, n, _BLOCK_ROWS):
            e = min(n, s + _BLOCK_ROWS)
            for view, props in targets:
                out = view(s, e)
                for j, prop in enumerate(props):
                    out[:, j] = columns[prop][s:e]
            for i, c, prop in rest:
                sh[s:e, i, c] = columns[prop][s:e]
            if done_rows is not None:
                done_rows(e)
    return GaussianArrays(means=means, quats=quats, log_scales=log_scales,
                          opacity_logits=opacity, sh=sh)


def need_memory(path: Path, n: int, k: int, extra: int = 0) -> None:
    """Refuse, before allocating, a set whose float32 arrays (and `extra` bytes of
    reading) do not fit in free memory.

    The decoded arrays take (3 + 4 + 3 + 1 + 3K) * 4 bytes a Gaussian; the check runs
    before any of them exists, so the caller's current model is untouched.
    """
    need = n * (11 + 3 * k) * 4 + extra
    free = available_memory()
    if need > free:
        raise GaussianFileError(
            path, f"too big for this machine's memory: {n:,} Gaussians at SH degree "
            f"{F_REST_DEGREE[3 * (k - 1)]} need {need / 2**30:.2f} GiB, "
            f"only {free / 2**30:.2f} GiB is available")


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
