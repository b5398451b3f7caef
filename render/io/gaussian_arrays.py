"""Decoded Gaussian parameters as numpy arrays, and the checks that make them a `Gaussians`.

Every format decoder produces a :class:`GaussianArrays`; :func:`to_gaussians` then does
what all formats share: refuse an empty set, drop rows holding NaN or Inf (and count
them), and make the quaternions unit length.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from render.gaussians import Gaussians
from render.io.errors import GaussianFileError

# A quaternion whose norm is within this of 1 is kept bit for bit, so that a file written
# from unit quaternions reads back exactly; float32 normalisation leaves |q| - 1 < 1e-6.
UNIT_TOLERANCE = 1e-6


@dataclass
class GaussianArrays:
    """Raw per-Gaussian parameters, float32, as a file holds them.

    Attributes:
        means: centres, world units. [N, 3]
        quats: rotations (w, x, y, z), any length. [N, 4]
        log_scales: log standard deviations. [N, 3]
        opacity_logits: logit opacities. [N]
        sh: SH coefficients, band 0 first. [N, K, 3]
    """

    means: np.ndarray
    quats: np.ndarray
    log_scales: np.ndarray
    opacity_logits: np.ndarray
    sh: np.ndarray

    def __len__(self) -> int:
        return self.means.shape[0]


@dataclass
class CleanResult:
    """A validated set and what the checks changed."""

    gaussians: Gaussians
    n_dropped: int
    """rows dropped for NaN/Inf values"""
    n_zero_quats: int
    """all-zero quaternions replaced by the identity rotation"""


def to_gaussians(path: Path, arrays: GaussianArrays) -> CleanResult:
    """Validate decoded arrays and build a float32 CPU `Gaussians`.

    Rows with any NaN/Inf value are dropped and counted. A zero quaternion is replaced by
    the identity, which is how the INRIA rasterizer renders it (its rotation matrix of a
    zero quaternion is the identity); other quaternions are normalised.
    """
    n = len(arrays)
    if n == 0:
        raise GaussianFileError(path, "the file holds zero Gaussians")
    parts = [arrays.means, arrays.quats, arrays.log_scales,
             arrays.opacity_logits[:, None], arrays.sh.reshape(n, -1)]
    finite = np.ones(n, dtype=bool)
    for a in parts:
        finite &= np.isfinite(a).all(axis=1)
    n_keep = int(finite.sum())
    if n_keep == 0:
        raise GaussianFileError(path, f"all {n} Gaussians hold NaN or infinite values")
    a = arrays
    if n_keep < n:
        a = GaussianArrays(a.means[finite], a.quats[finite], a.log_scales[finite],
                           a.opacity_logits[finite], a.sh[finite])
    quats, n_zero = _unit_quats(a.quats)
    g = Gaussians(
        means=_tensor(a.means),
        quats=_tensor(quats),
        log_scales=_tensor(a.log_scales),
        opacity_logits=_tensor(a.opacity_logits),
        sh=_tensor(a.sh),
    )
    return CleanResult(g, n - n_keep, n_zero)


def _unit_quats(q: np.ndarray) -> tuple[np.ndarray, int]:
    """Unit quaternions [N, 4] and the number of zero ones set to the identity."""
    q = np.array(q, dtype=np.float32)  # a private, writable copy
    norm = np.sqrt(np.square(q.astype(np.float64)).sum(axis=1))
    zero = norm == 0.0
    fix = (np.abs(norm - 1.0) > UNIT_TOLERANCE) & ~zero
    if fix.any():
        q[fix] = (q[fix].astype(np.float64) / norm[fix, None]).astype(np.float32)
    if zero.any():
        q[zero] = np.array([1.0, 0.0, 0.0, 0.0], dtype=np.float32)
    return q, int(zero.sum())


def _tensor(a: np.ndarray) -> torch.Tensor:
    a = np.ascontiguousarray(a, dtype=np.float32)
    if not a.flags.writeable:  # a view into the file's bytes: torch wants its own memory
        a = a.copy()
    return torch.from_numpy(a)


def gaussians_to_numpy(g: Gaussians) -> GaussianArrays:
    """The parameters of a set as float32 numpy arrays (detached, on the CPU)."""
    def arr(t: torch.Tensor) -> np.ndarray:
        return np.ascontiguousarray(t.detach().to("cpu", torch.float32).numpy())

    return GaussianArrays(arr(g.means), arr(g.quats), arr(g.log_scales),
                          arr(g.opacity_logits), arr(g.sh))
