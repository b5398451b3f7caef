"""The SuperSplat / PlayCanvas "compressed .ply" (often named `*.compressed.ply`).

A binary little-endian PLY with these elements:

- `chunk`, one row per 256 Gaussians (in file order): float bounds `min_x min_y min_z
  max_x max_y max_z`, `min_scale_x .. max_scale_z` (bounds of the log-scales) and, in
  files from SuperSplat >= 1.9 / splat-transform, `min_r min_g min_b max_r max_g max_b`
  (bounds of the band-0 colour 0.5 + SH_C0 * f_dc; older files store colour directly).
- `vertex`, one row per Gaussian: four uint32 words
  - `packed_position`: x, y, z as 11, 10, 11-bit unsigned fractions of the chunk's
    bounds (x in the top bits);
  - `packed_rotation`: "smallest three": the top 2 bits name the largest-magnitude
    component of the unit quaternion (rot_0..rot_3 = w, x, y, z; the sign is flipped to
    make it positive), then the other three in order, 10 bits each, storing
    `v * sqrt(2)/2 + 0.5` (they lie within +-1/sqrt(2));
  - `packed_scale`: log-scales, 11/10/11 bits like positions;
  - `packed_color`: RGBA, 8 bits each from the top: colour fractions of the chunk's
    colour bounds, then the opacity (sigmoid of the logit) itself.
- optional `sh`, one row per Gaussian: `f_rest_0..` (9, 24 or 45) as uint8, storing
  `trunc((v / 8 + 0.5) * 256)` clamped to 0..255, channel-grouped as in INRIA files.

Fractions f of b bits are stored as round(f * (2^b - 1)) and read back as
q / (2^b - 1); values are lerp(min, max, f). The quantisation error of a value is at
most half a step: (max - min) / (2 * (2^b - 1)).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from render.io.atomic import atomic_write_bytes
from render.io.errors import GaussianFileError
from render.io.gaussian_arrays import GaussianArrays, gaussians_to_numpy
from render.io.ply_format import PlyHeader, ply_bytes
from render.io.splat_model import ply_comments_for

if TYPE_CHECKING:
    from render.gaussians import Gaussians

CHUNK_SIZE = 256
CHUNK_BOUNDS = ("min_x", "min_y", "min_z", "max_x", "max_y", "max_z",
                "min_scale_x", "min_scale_y", "min_scale_z",
                "max_scale_x", "max_scale_y", "max_scale_z")
CHUNK_COLOR = ("min_r", "min_g", "min_b", "max_r", "max_g", "max_b")
PACKED = ("packed_position", "packed_rotation", "packed_scale", "packed_color")
SH_DEGREE_FOR_COUNT = {9: 1, 24: 2, 45: 3}
LOG_SCALE_LIMIT = 20.0  # chunk log-scale bounds are clamped to +-20, as SuperSplat does
_SQRT_HALF = math.sqrt(0.5)
# the three "other" components for each choice of the largest one
_OTHERS = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])


def is_compressed_layout(header: PlyHeader) -> bool:
    """Whether a PLY header is (meant to be) the compressed layout."""
    vertex = header.element("vertex")
    packed = vertex is not None and any(n.startswith("packed_") for n in vertex.property_names)
    return packed or header.element("chunk") is not None


def compressed_elements(header: PlyHeader) -> list[str]:
    """The elements the decoder reads."""
    return ["chunk", "vertex"] + (["sh"] if header.element("sh") is not None else [])


# -- reading ----------------------------------------------------------------------------------

def decode_compressed(path: Path, header: PlyHeader,
                      elements: dict[str, dict[str, np.ndarray]]) -> GaussianArrays:
    """The Gaussians of a compressed .ply, read as columns by `read_elements`."""
    chunk, vertex = elements["chunk"], elements["vertex"]
    n = header.element("vertex").count
    n_chunks = header.element("chunk").count
    _require(path, "chunk", chunk, CHUNK_BOUNDS)
    _require(path, "vertex", vertex, PACKED)
    has_color = any(p in chunk for p in CHUNK_COLOR)
    if has_color:
        _require(path, "chunk", chunk, CHUNK_COLOR)
    if n_chunks * CHUNK_SIZE < n:
        raise GaussianFileError(
            path, f"compressed .ply: {n_chunks} chunks cannot hold {n} Gaussians "
            f"({CHUNK_SIZE} per chunk)")
    words = {}
    for p in PACKED:
        col = vertex[p]
        if col.dtype.kind not in "ui" or col.dtype.itemsize != 4:
            raise GaussianFileError(path, f"compressed .ply: vertex.{p} must be a uint, "
                                    f"not {col.dtype.name}")
        words[p] = col.astype(np.uint32)
    ci = np.arange(n) // CHUNK_SIZE  # chunk of each Gaussian

    def bounds(names) -> tuple[np.ndarray, np.ndarray]:
        """Per-Gaussian (min [N, 3], max [N, 3]) from three min and three max columns."""
        with np.errstate(over="ignore", invalid="ignore"):
            t = np.stack([chunk[c].astype(np.float64) for c in names], axis=1)[ci]
        return t[:, :3], t[:, 3:]

    pos_lo, pos_hi = bounds(CHUNK_BOUNDS[:6])
    scl_lo, scl_hi = bounds(CHUNK_BOUNDS[6:])
    means = _lerp(pos_lo, pos_hi, _unpack_11_10_11(words["packed_position"]))
    log_scales = _lerp(scl_lo, scl_hi, _unpack_11_10_11(words["packed_scale"]))
    rgba = _unpack_8888(words["packed_color"])
    color = rgba[:, :3]
    if has_color:
        col_lo, col_hi = bounds(CHUNK_COLOR)
        color = _lerp(col_lo, col_hi, color)
    # an alpha byte of 0 or 255 means "at most / at least half a step from the end"
    alpha = np.clip(rgba[:, 3], 0.5 / 255.0, 254.5 / 255.0)
    opacity_logits = np.log(alpha / (1.0 - alpha))
    quats = unpack_rotations(words["packed_rotation"])

    k = 1
    sh_rest = None
    if "sh" in elements:
        k, sh_rest = _decode_sh(path, header, elements["sh"], n)
    from render.gaussians import SH_C0  # here: is_compressed_layout serves info without torch

    sh = np.empty((n, k, 3), dtype=np.float32)
    sh[:, 0, :] = (color - 0.5) / SH_C0
    if sh_rest is not None:
        sh[:, 1:, :] = sh_rest.reshape(n, 3, k - 1).transpose(0, 2, 1)
    with np.errstate(over="ignore", invalid="ignore"):
        return GaussianArrays(
            means=means.astype(np.float32), quats=quats.astype(np.float32),
            log_scales=log_scales.astype(np.float32),
            opacity_logits=opacity_logits.astype(np.float32), sh=sh)


def _require(path: Path, element: str, columns: dict, names) -> None:
    missing = [p for p in names if p not in columns]
    if missing:
        raise GaussianFileError(
            path, f"compressed .ply: the {element} element lacks {', '.join(missing)}")


def _decode_sh(path: Path, header: PlyHeader, columns: dict[str, np.ndarray],
               n: int) -> tuple[int, np.ndarray]:
    """(K, higher-order SH [N, 3*(K-1)] channel-major) from the uint8 `sh` element."""
    m = len(header.element("sh").properties)
    if m not in SH_DEGREE_FOR_COUNT:
        raise GaussianFileError(
            path, f"compressed .ply: the sh element has {m} properties; expected 9, 24 or 45")
    if header.element("sh").count != n:
        raise GaussianFileError(
            path, f"compressed .ply: {header.element('sh').count} sh rows for {n} Gaussians")
    names = [f"f_rest_{i}" for i in range(m)]
    _require(path, "sh", columns, names)
    out = np.empty((n, m), dtype=np.float32)
    for j, name in enumerate(names):
        col = columns[name]
        if col.dtype != np.uint8:
            raise GaussianFileError(path, f"compressed .ply: sh.{name} must be a uchar")
        frac = (col.astype(np.float32) + 0.5) / 256.0
        frac[col == 0] = 0.0  # the writer clamps to 0..255: the end bins hold the clamped
        frac[col == 255] = 1.0
        out[:, j] = (frac - 0.5) * 8.0
    return m // 3 + 1, out  # K = (degree + 1)^2 = m / 3 + 1


def _unorm(words: np.ndarray, shift: int, bits: int) -> np.ndarray:
    top = (1 << bits) - 1
    return ((words >> np.uint32(shift)) & np.uint32(top)).astype(np.float64) / top


def _unpack_11_10_11(words: np.ndarray) -> np.ndarray:
    """Fractions [N, 3] from 11/10/11-bit packed words (x in the top bits)."""
    return np.stack([_unorm(words, 21, 11), _unorm(words, 11, 10), _unorm(words, 0, 11)],
                    axis=1)


def _unpack_8888(words: np.ndarray) -> np.ndarray:
    """Fractions [N, 4] from RGBA8 words (red in the top byte)."""
    return np.stack([_unorm(words, s, 8) for s in (24, 16, 8, 0)], axis=1)


def _lerp(lo: np.ndarray, hi: np.ndarray, t: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):
        return lo * (1.0 - t) + hi * t


def unpack_rotations(words: np.ndarray) -> np.ndarray:
    """Unit quaternions (w, x, y, z) [N, 4] float64 from smallest-three words [N]."""
    largest = (words >> np.uint32(30)).astype(np.intp)
    small = np.stack([(_unorm(words, s, 10) - 0.5) / _SQRT_HALF for s in (20, 10, 0)], axis=1)
    big = np.sqrt(np.maximum(0.0, 1.0 - np.square(small).sum(axis=1)))
    q = np.empty((len(words), 4), dtype=np.float64)
    rows = np.arange(len(words))
    q[rows, largest] = big
    q[rows[:, None], _OTHERS[largest]] = small
    return q


# -- writing ----------------------------------------------------------------------------------

def _pack_unorm(frac: np.ndarray, bits: int) -> np.ndarray:
    top = (1 << bits) - 1
    return np.clip(np.floor(frac * top + 0.5), 0, top).astype(np.uint32)


def _fractions(values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """(values - lo) / (hi - lo) in [0, 1]; 0 where the chunk's range is (nearly) empty."""
    span = hi - lo
    ok = span >= 1e-5
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.where(ok, (values - lo) / np.where(ok, span, 1.0), 0.0)
    return np.clip(f, 0.0, 1.0)


def pack_rotations(quats: np.ndarray) -> np.ndarray:
    """Smallest-three words [N] uint32 from quaternions (w, x, y, z) [N, 4]."""
    q = quats.astype(np.float64)
    norm = np.linalg.norm(q, axis=1, keepdims=True)
    q = np.where(norm > 0, q / np.where(norm > 0, norm, 1.0), np.array([1.0, 0, 0, 0]))
    rows = np.arange(len(q))
    largest = np.argmax(np.abs(q), axis=1)
    q *= np.where(q[rows, largest] < 0, -1.0, 1.0)[:, None]  # q and -q are one rotation
    small = q[rows[:, None], _OTHERS[largest]]
    f = small * _SQRT_HALF + 0.5
    return (largest.astype(np.uint32) << np.uint32(30)) | _pack_fields(
        [f[:, 0], f[:, 1], f[:, 2]], (10, 10, 10))


def _pack_fields(fractions: list[np.ndarray], bits: tuple[int, ...]) -> np.ndarray:
    """Pack fractions [N] each into one uint32 word [N], the first in the top bits."""
    word = np.zeros(len(fractions[0]), dtype=np.uint32)
    for f, b in zip(fractions, bits, strict=True):
        word = (word << np.uint32(b)) | _pack_unorm(f, b)
    return word


def _pack_11_10_11(f: np.ndarray) -> np.ndarray:
    """Words [N] from fractions [N, 3]: x in the top 11 bits, y in 10, z in the low 11."""
    return _pack_fields([f[:, 0], f[:, 1], f[:, 2]], (11, 10, 11))


def _spread_bits(v: np.ndarray) -> np.ndarray:
    """Put the 10 low bits of each value 3 bits apart (for a Morton code). uint64 [N]"""
    v = v.astype(np.uint64)
    for shift, mask in ((16, 0x030000FF), (8, 0x0300F00F), (4, 0x030C30C3), (2, 0x09249249)):
        v = (v | (v << np.uint64(shift))) & np.uint64(mask)
    return v


def morton_order(means: np.ndarray) -> np.ndarray:
    """A permutation [N] that sorts points [N, 3] along a Z-order curve.

    Chunks of 256 consecutive Gaussians then cover small regions, which keeps their
    bounds tight and the quantisation error small.
    """
    m = np.nan_to_num(means.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = m.min(axis=0), m.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    cell = np.clip((m - lo) / span * 1023.0, 0, 1023).astype(np.uint64)
    code = (_spread_bits(cell[:, 0]) | (_spread_bits(cell[:, 1]) << np.uint64(1))
            | (_spread_bits(cell[:, 2]) << np.uint64(2)))
    return np.argsort(code, kind="stable")


def encode_compressed(gaussians: Gaussians, sort: bool = True, model: str = "default") -> bytes:
    """The bytes of a compressed .ply holding the set (see the module docstring), tagged
    with `model` (a `SplatRenderMode:` header comment unless `default`).

    With `sort` the Gaussians are stored in Morton order (smaller chunks, less error);
    without it they keep their order, so the file's i-th Gaussian is the set's i-th.
    """
    from render.gaussians import SH_C0

    a = gaussians_to_numpy(gaussians)
    n = len(a)
    if n == 0:
        raise ValueError("cannot write an empty Gaussian set")
    order = morton_order(a.means) if sort else np.arange(n)
    n_chunks = -(-n // CHUNK_SIZE)
    # pad the last chunk by repeating the last Gaussian: it does not widen the bounds
    pad = np.concatenate([order, np.full(n_chunks * CHUNK_SIZE - n, order[-1])])

    def chunked(x: np.ndarray) -> np.ndarray:  # [N, D] -> [chunks, 256, D] float64
        return x[pad].astype(np.float64).reshape(n_chunks, CHUNK_SIZE, -1)

    def lo_hi(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return x.min(axis=1), x.max(axis=1)

    def per_row(x: np.ndarray) -> np.ndarray:  # [chunks, D] -> [N, D] in file order
        return np.repeat(x, CHUNK_SIZE, axis=0)[:n]

    pos = chunked(a.means)
    p_lo, p_hi = lo_hi(pos)
    scl = chunked(a.log_scales)
    s_lo, s_hi = (np.clip(b, -LOG_SCALE_LIMIT, LOG_SCALE_LIMIT) for b in lo_hi(scl))
    col = chunked(0.5 + SH_C0 * a.sh[:, 0, :])
    c_lo, c_hi = lo_hi(col)

    def fractions(x, lo, hi):
        return _fractions(x.reshape(-1, x.shape[-1])[:n], per_row(lo), per_row(hi))

    with np.errstate(over="ignore"):
        opacity = 1.0 / (1.0 + np.exp(-a.opacity_logits[order].astype(np.float64)))
    cf = fractions(col, c_lo, c_hi)
    color = _pack_fields([cf[:, 0], cf[:, 1], cf[:, 2], opacity], (8, 8, 8, 8))
    vertex = np.empty(n, dtype=[(p, "<u4") for p in PACKED])
    vertex["packed_position"] = _pack_11_10_11(fractions(pos, p_lo, p_hi))
    vertex["packed_rotation"] = pack_rotations(a.quats[order])
    vertex["packed_scale"] = _pack_11_10_11(fractions(scl, s_lo, s_hi))
    vertex["packed_color"] = color

    chunk = np.empty(n_chunks, dtype=[(p, "<f4") for p in CHUNK_BOUNDS + CHUNK_COLOR])
    for name, values in zip(CHUNK_BOUNDS + CHUNK_COLOR,
                            np.concatenate([p_lo, p_hi, s_lo, s_hi, c_lo, c_hi], axis=1).T,
                            strict=True):
        chunk[name] = values
    elements = [("chunk", chunk), ("vertex", vertex)]

    k = a.sh.shape[1]
    if k > 1:
        rest = a.sh[order, 1:, :].transpose(0, 2, 1).reshape(n, 3 * (k - 1))
        q = np.clip(np.trunc((rest.astype(np.float64) / 8.0 + 0.5) * 256.0), 0, 255)
        sh = np.empty(n, dtype=[(f"f_rest_{i}", "u1") for i in range(rest.shape[1])])
        for i in range(rest.shape[1]):
            sh[f"f_rest_{i}"] = q[:, i]
        elements.append(("sh", sh))
    return ply_bytes(elements, comments=["Generated by mipview (SuperSplat compressed layout)"]
                     + ply_comments_for(model))


def save_compressed_ply(gaussians: Gaussians, path: str | Path, sort: bool = True,
                        model: str = "default") -> Path:
    """Save in the SuperSplat compressed .ply layout (about 4x smaller than INRIA's for
    SH degree 0; lossy, see the module docstring). Written to a temporary name and
    renamed. Returns the path written.
    """
    return atomic_write_bytes(path, encode_compressed(gaussians, sort=sort, model=model))
