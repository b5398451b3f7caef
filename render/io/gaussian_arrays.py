"""Decoded Gaussian parameters as numpy arrays, and the checks that make them a `Gaussians`.

Every format decoder produces a :class:`GaussianArrays`; :func:`to_gaussians` then does
what all formats share: refuse an empty set, drop rows holding NaN or Inf or values no
model holds (centres beyond 1e7 units, log-scales whose exponential overflows what the
renderers square; counted), refuse a file where most rows are such (a body of the other
endianness, say), and make the quaternions unit length.

torch is imported where a `Gaussians` is built or read, not here: the bounds and
`GaussianArrays` serve `mipview info`'s header scan, which runs without torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from render.io.errors import GaussianFileError

if TYPE_CHECKING:
    import torch

    from render.gaussians import Gaussians

# A quaternion whose norm is within this of 1 is kept bit for bit, so that a file written
# from unit quaternions reads back exactly; float32 normalisation leaves |q| - 1 < 1e-6.
UNIT_TOLERANCE = 1e-6

# Bounds of a plausible Gaussian; a value beyond them breaks the float32 maths of the
# renderers and the viewer (squared centres and scales overflow, SVDs fail). Centres: 1e7
# units is 10,000 km in metres, beyond any capture. Log-scales: e^20 ~ 5e8 units, and its
# square still fits float32; below e^-100 a scale is zero anyway, so such a value only
# comes from a damaged file. Opacity logits and SH coefficients of real models stay
# within tens.
MAX_ABS_CENTRE = 1e7
LOG_SCALE_RANGE = (-100.0, 20.0)
MAX_ABS_COEFF = 1e6


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
    """rows dropped for NaN/Inf or absurd values"""
    n_zero_quats: int
    """all-zero quaternions replaced by the identity rotation"""


def to_gaussians(path: Path, arrays: GaussianArrays) -> CleanResult:
    """Validate decoded arrays and build a float32 CPU `Gaussians`.

    Rows with any NaN/Inf value, or a value outside the plausible bounds (MAX_ABS_CENTRE,
    LOG_SCALE_RANGE, MAX_ABS_COEFF), are dropped and counted; a file where more than half
    the rows are out of bounds is refused (its values are not what its header says). A
    zero quaternion is replaced by the identity, which is how the INRIA rasterizer renders
    it (its rotation matrix of a zero quaternion is the identity); other quaternions are
    normalised.

    Raises:
        GaussianFileError: no Gaussians, none valid, or mostly absurd values.
    """
    from render.gaussians import Gaussians

    n = len(arrays)
    if n == 0:
        raise GaussianFileError(path, "the file holds zero Gaussians")
    parts = [arrays.means, arrays.quats, arrays.log_scales,
             arrays.opacity_logits[:, None], arrays.sh.reshape(n, -1)]
    finite = np.ones(n, dtype=bool)
    for a in parts:
        finite &= np.isfinite(a).all(axis=1)
    if not finite.any():
        raise GaussianFileError(path, f"all {n} Gaussians hold NaN or infinite values")
    plausible = _plausible(arrays) & finite
    n_absurd = int((finite & ~plausible).sum())
    if n_absurd * 2 > n:
        raise GaussianFileError(
            path, f"{n_absurd} of its {n} Gaussians hold absurd values (centres beyond "
            f"{MAX_ABS_CENTRE:g} units or scales beyond e^{LOG_SCALE_RANGE[1]:g}): the data "
            "is not what the header says (is the endianness in its format line right?)")
    finite = plausible
    n_keep = int(finite.sum())
    if n_keep == 0:
        raise GaussianFileError(path, f"none of its {n} Gaussians holds valid values")
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


def _plausible(a: GaussianArrays) -> np.ndarray:
    """[N] bool: every value of the row within the bounds a real model keeps (NaN is not)."""
    n = len(a)
    with np.errstate(invalid="ignore"):
        ok = (np.abs(a.means) <= MAX_ABS_CENTRE).all(axis=1)
        ok &= ((a.log_scales >= LOG_SCALE_RANGE[0]) & (a.log_scales <= LOG_SCALE_RANGE[1])
               ).all(axis=1)
        ok &= np.abs(a.opacity_logits) <= MAX_ABS_COEFF
        ok &= (np.abs(a.sh.reshape(n, -1)) <= MAX_ABS_COEFF).all(axis=1)
        ok &= (np.abs(a.quats) <= 1e18).all(axis=1)  # its float64 norm must not overflow
    return ok


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
    import torch

    a = np.ascontiguousarray(a, dtype=np.float32)
    if not a.flags.writeable:  # a view into the file's bytes: torch wants its own memory
        a = a.copy()
    return torch.from_numpy(a)


def gaussians_to_numpy(g: Gaussians) -> GaussianArrays:
    """The parameters of a set as float32 numpy arrays (detached, on the CPU)."""
    import torch

    def arr(t: torch.Tensor) -> np.ndarray:
        return np.ascontiguousarray(t.detach().to("cpu", torch.float32).numpy())

    return GaussianArrays(arr(g.means), arr(g.quats), arr(g.log_scales),
                          arr(g.opacity_logits), arr(g.sh))
