"""The antimatter15 `.splat` format (the WebGL splat viewer's, also written by many tools).

No header: a sequence of 32-byte records, little endian, one per Gaussian:

| bytes | what |
|---|---|
| 0-11  | position x, y, z, float32 |
| 12-23 | scale x, y, z, float32, linear standard deviations (not log) |
| 24-27 | colour R, G, B, A, uint8: RGB = 255 * (0.5 + SH_C0 * f_dc), A = 255 * opacity |
| 28-31 | rotation w, x, y, z, uint8: q * 128 + 128 of the unit quaternion, clipped |

Only band-0 colour is stored: a set of higher SH degree loses its view dependence.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from render.gaussians import SH_C0, Gaussians
from render.io.atomic import atomic_write_bytes
from render.io.errors import GaussianFileError
from render.io.gaussian_arrays import GaussianArrays, gaussians_to_numpy

RECORD = np.dtype([("position", "<f4", 3), ("scale", "<f4", 3),
                   ("rgba", "u1", 4), ("rot", "u1", 4)])
assert RECORD.itemsize == 32

# Real .splat files hold world positions and scales of sane size; bytes of another kind
# of file read as float32 give mostly NaN, Inf, zero or astronomic values.
_PLAUSIBLE = 1e8


def splat_plausibility(data: bytes) -> float:
    """Share of records [0, 1] whose position and scale look like a real Gaussian's.

    Used to tell a .splat from some other file with a size divisible by 32; looks at
    up to 4096 records spread over the file.
    """
    n = len(data) // RECORD.itemsize
    if n == 0:
        return 0.0
    rec = np.frombuffer(data, dtype=RECORD, count=n)
    rec = rec[:: max(1, n // 4096)]
    with np.errstate(invalid="ignore", over="ignore"):
        pos = rec["position"].astype(np.float64)
        scl = rec["scale"].astype(np.float64)
        ok = (np.isfinite(pos).all(axis=1) & (np.abs(pos) < _PLAUSIBLE).all(axis=1)
              & np.isfinite(scl).all(axis=1) & (scl > 0).all(axis=1)
              & (scl < _PLAUSIBLE).all(axis=1))
    return float(ok.mean())


def decode_splat(path: Path, data: bytes) -> GaussianArrays:
    """The Gaussians of a .splat file's bytes."""
    if len(data) % RECORD.itemsize:
        raise GaussianFileError(
            path, f"not a .splat file: {len(data)} bytes is not a whole number of "
            f"{RECORD.itemsize}-byte records")
    rec = np.frombuffer(data, dtype=RECORD)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        # a zero or negative scale gives -inf / NaN: such rows are dropped as invalid
        log_scales = np.log(rec["scale"].astype(np.float64)).astype(np.float32)
        rgba = rec["rgba"].astype(np.float64) / 255.0
        # alpha 0 / 255 stand for "within half a step of 0 / 1": keep the logit finite
        alpha = np.clip(rgba[:, 3], 0.5 / 255.0, 254.5 / 255.0)
        sh = ((rgba[:, :3] - 0.5) / SH_C0).astype(np.float32)[:, None, :]
    return GaussianArrays(
        means=rec["position"].astype(np.float32),
        quats=((rec["rot"].astype(np.float32) - 128.0) / 128.0),
        log_scales=log_scales,
        opacity_logits=np.log(alpha / (1.0 - alpha)).astype(np.float32),
        sh=sh,
    )


def encode_splat(gaussians: Gaussians) -> bytes:
    """The bytes of a .splat file holding the set (band-0 colour only)."""
    a = gaussians_to_numpy(gaussians)
    rec = np.empty(len(a), dtype=RECORD)
    rec["position"] = a.means
    with np.errstate(over="ignore"):
        rec["scale"] = np.exp(a.log_scales.astype(np.float64))
        opacity = 1.0 / (1.0 + np.exp(-a.opacity_logits.astype(np.float64)))
    color = 0.5 + SH_C0 * a.sh[:, 0, :].astype(np.float64)
    rgba = np.concatenate([color, opacity[:, None]], axis=1)
    rec["rgba"] = np.clip(np.round(rgba * 255.0), 0, 255)
    q = a.quats.astype(np.float64)
    norm = np.linalg.norm(q, axis=1, keepdims=True)
    q = np.where(norm > 0, q / np.where(norm > 0, norm, 1.0), np.array([1.0, 0, 0, 0]))
    rec["rot"] = np.clip(np.round(q * 128.0 + 128.0), 0, 255)
    return rec.tobytes()


def save_splat(gaussians: Gaussians, path: str | Path) -> Path:
    """Save as an antimatter15 .splat (lossy: 8-bit colour, opacity and rotation, band-0
    colour only). Written to a temporary name and renamed. Returns the path written.
    """
    return atomic_write_bytes(path, encode_splat(gaussians))
