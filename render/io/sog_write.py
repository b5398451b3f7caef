"""Writing PlayCanvas SOG (version 2), zipped (`.sog`) or as a folder (`meta.json` + images).

The layout is described in :mod:`render.io.sog`. Lossy steps: 16-bit log-space
positions, 8-bit quaternions and opacity, 256-entry codebooks for log scales and colour
(1D k-means), and for SH degree > 0 a palette of at most 65536 SH vectors (each Gaussian
its own entry when there are no more than that; k-means otherwise) whose coefficients
index a 256-entry codebook. The images are lossless WebP (Pillow).
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from render.gaussians import Gaussians
from render.io.atomic import atomic_write_bytes
from render.io.compressed_ply import morton_order
from render.io.gaussian_arrays import gaussians_to_numpy
from render.io.sog import META_NAME, PALETTE_WIDTH, SH_COEFFS
from render.io.splat_model import check_model

MAX_PALETTE = 1 << 16
PALETTE_ITERATIONS = 3  # k-means rounds for sets bigger than the palette
CODEBOOK_ITERATIONS = 12


def codebook_1d(values: np.ndarray, size: int = 256,
                iterations: int = CODEBOOK_ITERATIONS) -> tuple[np.ndarray, np.ndarray]:
    """A 1D k-means codebook of `values` [M] and each value's index [M] uint8.

    Starts from quantiles and runs Lloyd rounds on the sorted values (each cluster is a
    contiguous run, so a round is a searchsorted and a reduceat).
    """
    v = values.astype(np.float64).ravel()
    order = np.argsort(v, kind="stable")
    s = v[order]
    centres = np.unique(np.quantile(s, (np.arange(size) + 0.5) / size))
    for _ in range(iterations):
        edges = np.searchsorted(s, (centres[1:] + centres[:-1]) / 2)
        starts = np.concatenate([[0], edges])
        counts = np.diff(np.concatenate([starts, [len(s)]]))
        keep = counts > 0
        sums = np.add.reduceat(s, np.minimum(starts, len(s) - 1))
        new = np.where(keep, sums / np.maximum(counts, 1), centres)
        new = np.unique(new[keep])
        if len(new) == len(centres) and np.allclose(new, centres):
            break
        centres = new
    edges = np.searchsorted(s, (centres[1:] + centres[:-1]) / 2)
    idx_sorted = np.zeros(len(s), np.int64)
    idx_sorted[edges[edges < len(s)]] += 1
    idx_sorted = np.cumsum(idx_sorted)
    index = np.empty(len(s), np.uint8)
    index[order] = idx_sorted
    return centres.astype(np.float32), index.reshape(values.shape)


def sh_palette(rest: np.ndarray, limit: int = MAX_PALETTE,
               iterations: int = PALETTE_ITERATIONS, seed: int = 0
               ) -> tuple[np.ndarray, np.ndarray]:
    """(palette [P, D], labels [N]) of SH vectors `rest` [N, D]: the vectors themselves
    when N <= limit, else k-means with `limit` centres started from a random sample."""
    n = len(rest)
    if n <= limit:
        return rest.astype(np.float32), np.arange(n)
    x = torch.from_numpy(np.ascontiguousarray(rest, dtype=np.float32))
    gen = torch.Generator().manual_seed(seed)
    centres = x[torch.randperm(n, generator=gen)[:limit]].clone()
    labels = torch.empty(n, dtype=torch.int64)
    for _ in range(iterations):
        c2 = (centres * centres).sum(1)
        for i in range(0, n, 1024):  # [1024, limit] distances at a time: 256 MiB
            xb = x[i:i + 1024]
            labels[i:i + 1024] = (c2[None, :] - 2.0 * xb @ centres.T).argmin(1)
        sums = torch.zeros_like(centres).index_add_(0, labels, x)
        counts = torch.bincount(labels, minlength=limit).to(x.dtype)
        filled = counts > 0
        centres[filled] = sums[filled] / counts[filled, None]
    return centres.numpy(), labels.numpy()


def _webp(rgba: np.ndarray) -> bytes:
    """Lossless WebP of an RGBA image [H, W, 4]; `exact` keeps the colour of texels whose
    alpha is 0 (they carry data, not pixels). Effort 25 / method 2: on the donut's images
    about 10x faster than Pillow's default effort for files within ~2 % of its size."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgba), "RGBA").save(
        buf, format="WEBP", lossless=True, quality=25, method=2, exact=True)
    return buf.getvalue()


def texture_size(n: int) -> tuple[int, int]:
    """(width, height) of the per-Gaussian images, as splat-transform sizes them."""
    width = math.ceil(math.sqrt(n) / 4) * 4
    return width, math.ceil(n / width / 4) * 4


def encode_sog(gaussians: Gaussians, model: str = "default") -> dict[str, bytes]:
    """The files of a SOG holding the set: {name: bytes}, meta.json included."""
    check_model(model)
    a = gaussians_to_numpy(gaussians)
    n = len(a)
    if n == 0:
        raise ValueError("cannot write an empty Gaussian set")
    order = morton_order(a.means)
    width, height = texture_size(n)

    def image(texels: np.ndarray) -> bytes:
        full = np.zeros((width * height, 4), np.uint8)
        full[:, 3] = 255
        full[:n, :texels.shape[1]] = texels
        return _webp(full.reshape(height, width, 4))

    files: dict[str, bytes] = {}
    m = a.means[order].astype(np.float64)
    lg = np.sign(m) * np.log1p(np.abs(m))
    lo, hi = lg.min(axis=0), lg.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    q16 = np.clip(np.round((lg - lo) / span * 65535.0), 0, 65535).astype(np.uint32)
    files["means_l.webp"] = image((q16 & 0xFF).astype(np.uint8))
    files["means_u.webp"] = image((q16 >> 8).astype(np.uint8))
    files["quats.webp"] = image(_pack_quats(a.quats[order]))

    scale_cb, scale_idx = codebook_1d(a.log_scales[order])
    files["scales.webp"] = image(scale_idx)
    color_cb, color_idx = codebook_1d(a.sh[order, 0, :])
    with np.errstate(over="ignore"):
        alpha = 1.0 / (1.0 + np.exp(-a.opacity_logits[order].astype(np.float64)))
    opacity = np.clip(np.round(alpha * 255.0), 0, 255).astype(np.uint8)
    files["sh0.webp"] = image(np.concatenate([color_idx, opacity[:, None]], axis=1))

    meta = {
        "version": 2,
        "asset": {"generator": "mipview"},
        "count": n,
        **({} if model == "default" else {"model": model}),
        "means": {"mins": lo.tolist(), "maxs": hi.tolist(),
                  "files": ["means_l.webp", "means_u.webp"]},
        "scales": {"codebook": scale_cb.tolist(), "files": ["scales.webp"]},
        "quats": {"files": ["quats.webp"]},
        "sh0": {"codebook": color_cb.tolist(), "files": ["sh0.webp"]},
    }
    degree = gaussians.sh_degree
    if degree:
        meta["shN"] = _encode_shn(a.sh[order, 1:, :], degree, files, image)
    files[META_NAME] = json.dumps(meta).encode("utf-8")
    return files


def _encode_shn(rest: np.ndarray, degree: int, files: dict, image) -> dict:
    """Fill the shN images into `files`; the shN section of meta.json."""
    n, c = len(rest), SH_COEFFS[degree]
    # channel-major vectors [N, 3c] (all of red's coefficients, then green's, then blue's)
    palette, labels = sh_palette(rest.transpose(0, 2, 1).reshape(n, 3 * c))
    cb, idx = codebook_1d(palette)
    p = len(palette)
    rows = -(-p // PALETTE_WIDTH)
    cent = np.zeros((rows * PALETTE_WIDTH, c, 4), np.uint8)
    cent[:, :, 3] = 255
    cent[:p, :, :3] = idx.reshape(p, 3, c).transpose(0, 2, 1)
    files["shN_centroids.webp"] = _webp(cent.reshape(rows, PALETTE_WIDTH * c, 4))
    lab = labels.astype(np.uint32)
    files["shN_labels.webp"] = image(
        np.stack([lab & 0xFF, lab >> 8, np.zeros_like(lab)], axis=1).astype(np.uint8))
    return {"count": p, "bands": degree, "codebook": cb.tolist(),
            "files": ["shN_centroids.webp", "shN_labels.webp"]}


def _pack_quats(quats: np.ndarray) -> np.ndarray:
    """Texels [N, 4] of unit quaternions (w, x, y, z): smallest three + 252 + largest."""
    q = quats.astype(np.float64)
    norm = np.linalg.norm(q, axis=1, keepdims=True)
    q = np.where(norm > 0, q / np.where(norm > 0, norm, 1.0), np.array([1.0, 0, 0, 0]))
    n = len(q)
    largest = np.argmax(np.abs(q), axis=1)
    q = np.where(q[np.arange(n), largest][:, None] < 0, -q, q) * math.sqrt(2.0)
    others = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])[largest]
    abc = q[np.arange(n)[:, None], others]
    out = np.empty((n, 4), np.uint8)
    out[:, :3] = np.clip(np.round((abc * 0.5 + 0.5) * 255.0), 0, 255)
    out[:, 3] = 252 + largest
    return out


def save_sog(gaussians: Gaussians, path: str | Path, model: str = "default") -> Path:
    """Save as SOG tagged with `model`: a zip (`.sog`, or any name but meta.json) or, when
    `path` is named meta.json, a folder of files beside it. Each file is written to a
    temporary name and renamed (meta.json last, so a folder is complete once it exists).
    Returns the path written.
    """
    path = Path(path)
    files = encode_sog(gaussians, model)
    if path.name == META_NAME:
        for name, blob in files.items():
            if name != META_NAME:
                atomic_write_bytes(path.parent / name, blob)
        return atomic_write_bytes(path, files[META_NAME])
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as z:
        for name, blob in files.items():
            z.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), blob)
    return atomic_write_bytes(path, buf.getvalue())
