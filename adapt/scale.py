"""Effective scale of a view and the scale levels (mipmap levels) built from it.

The effective scale s of a view says how much finer (s > 1) or coarser (s < 1) its pixel
grid samples the scene than the base (training) cameras did. Per Gaussian, the sampling
rate of a camera is focal / depth in pixels per world unit (the rate Mip-Splatting's 3D
filter uses); the base rate of a Gaussian is the highest rate over the base cameras that
see it. The view's scale is the median, over the Gaussians it sees, of its own rate over
the base rate. Dolly (depth), FOV (focal) and render resolution (focal in pixels) all
enter through focal / depth.

Levels are powers of two: level L is the scale 2^L, from 1/8 (L = -3) to 8 (L = 3);
level 0 is the base set, which is never adapted.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from render.camera import Camera
from render.gaussians import Gaussians

MIN_LEVEL = -3
MAX_LEVEL = 3
SCALE_SAMPLE = 4096
"""Gaussians sampled (deterministically, strided) by :func:`effective_scale`: the median
of 4096 is within about 2 % of the full one, and the readout runs on the render thread
between frames (~0.8 ms against ~3 ms for 32k Gaussians)."""
FOV_MARGIN = 0.15
"""A Gaussian counts as seen when it projects within the image widened by this fraction
on each side (the same guard band the projection uses)."""


def _camera_rates(means, cam: Camera):
    """(rate [N] in pixels per world unit, seen [N] bool) of one camera for the means
    [N, 3] float32: a tensor (any device), or a numpy array, which gives numpy results."""
    vm = cam.viewmat.to(torch.float32)
    rot_t, t = vm[:3, :3].T, vm[:3, 3]
    if isinstance(means, np.ndarray):
        rot_t, t = rot_t.numpy(), t.numpy()
    else:
        rot_t, t = rot_t.to(means.device), t.to(means.device)
    pc = means @ rot_t + t
    z = pc[:, 2]
    zs = z.clip(min=1e-8)
    u = cam.fx * pc[:, 0] / zs + cam.cx
    v = cam.fy * pc[:, 1] / zs + cam.cy
    mx, my = FOV_MARGIN * cam.width, FOV_MARGIN * cam.height
    seen = ((z > cam.near) & (z < cam.far) & (u > -mx) & (u < cam.width + mx)
            & (v > -my) & (v < cam.height + my))
    focal = math.sqrt(cam.fx * cam.fy)
    return focal / zs, seen


@dataclass
class BaseSampling:
    """The sampling rate each Gaussian was trained (or is defined) at.

    Attributes:
        rate: highest focal / depth over the base cameras that see the Gaussian, in pixels
            per world unit; Gaussians seen by no base camera get the median. [N]
    """

    rate: Tensor

    def __len__(self) -> int:
        return int(self.rate.shape[0])

    @staticmethod
    def from_cameras(gaussians: Gaussians, cameras: list[Camera]) -> BaseSampling:
        """The base rates of `gaussians` [N] under the base `cameras` (at least one)."""
        if not cameras:
            raise ValueError("BaseSampling.from_cameras needs at least one base camera")
        means = gaussians.means.detach().float().cpu()
        best = torch.zeros(len(means))
        for cam in cameras:
            rate, seen = _camera_rates(means, cam)
            best = torch.where(seen, torch.maximum(best, rate), best)
        seen_any = best > 0
        fill = float(best[seen_any].median()) if bool(seen_any.any()) else 1.0
        best[~seen_any] = fill
        return BaseSampling(best)

    @staticmethod
    def from_camera(gaussians: Gaussians, camera: Camera) -> BaseSampling:
        """"This view is x1": the given view becomes the base for every Gaussian.

        Gaussians the camera sees get its rate; the others keep the median of those.
        """
        return BaseSampling.from_cameras(gaussians, [camera])


def _sample_indices(n: int, k: int = SCALE_SAMPLE) -> Tensor:
    """A deterministic, evenly strided subset of range(n) of at most about k indices."""
    step = max(1, n // k)
    return torch.arange(0, n, step)


class ScaleProbe:
    """:func:`effective_scale` of views against one set's base rates, its strided sample
    of the set gathered once, in numpy: the viewer's readout runs on the render thread
    between two frames, where gathering the sample and torch's per-call overhead took
    ~0.8 ms a readout (2 ms with the UI running), this ~0.2 ms."""

    def __init__(self, base: BaseSampling, gaussians: Gaussians) -> None:
        if len(gaussians) != len(base):
            raise ValueError(f"effective_scale: {len(gaussians)} Gaussians but base rates "
                             f"for {len(base)}; pass the base set the rates were computed "
                             "for")
        idx = _sample_indices(len(base))
        means = gaussians.means.detach()[idx.to(gaussians.device)]
        self._means = means.float().cpu().numpy()  # [K, 3]
        self._base_rate = base.rate[idx].clamp_min(1e-12).float().numpy()  # [K]

    def __call__(self, camera: Camera) -> float:
        """The scale of `camera`'s view; NaN when it sees none of the sample."""
        rate, seen = _camera_rates(self._means, camera)
        ratio = rate[seen] / self._base_rate[seen]
        if ratio.size == 0:
            return math.nan
        # The lower of the two middle values for an even count, as torch.median.
        k = (ratio.size - 1) // 2
        return float(np.partition(ratio, k)[k])


def effective_scale(base: BaseSampling, gaussians: Gaussians, camera: Camera) -> float:
    """Median over the Gaussians `camera` sees of (its focal/depth) / base rate.

    `gaussians` must be the set `base` was computed for (same N). Subsamples to about
    SCALE_SAMPLE Gaussians, so it costs under a millisecond per call on a CPU (a
    :class:`ScaleProbe` kept for many views, ~0.2 ms). Returns NaN when the camera sees
    none of them (nothing to adapt: callers keep their level).
    """
    return ScaleProbe(base, gaussians)(camera)


# -- levels ------------------------------------------------------------------------------
def level_for_scale(s: float) -> int:
    """The level whose scale 2^L is nearest to s in log terms, clamped to [-3, 3]."""
    if not (s > 0 and math.isfinite(s)):
        raise ValueError(f"scale must be a positive finite number, got {s}")
    return int(min(MAX_LEVEL, max(MIN_LEVEL, round(math.log2(s)))))


def level_band(level: int) -> tuple[float, float]:
    """(lo, hi) = (2^(L-0.5), 2^(L+0.5)): the scales served by level L."""
    return 2.0 ** (level - 0.5), 2.0 ** (level + 0.5)


def level_scale(level: int) -> float:
    """The scale 2^L of a level."""
    return 2.0 ** level


def scale_label(s: float) -> str:
    """"×1/4.3" for s < 1, "×2.0" for s >= 1."""
    if s < 1.0:
        return f"×1/{1.0 / s:.1f}"
    return f"×{s:.1f}"


def level_label(level: int) -> str:
    """"1/4" for level -2, "x2" for level 1, "1" for level 0."""
    if level < 0:
        return f"1/{2 ** -level}"
    if level == 0:
        return "1"
    return f"x{2 ** level}"


_LEVEL_RE = re.compile(r"^\s*(?:(?P<inv>1\s*/\s*(?P<den>\d+))|[x×]?\s*(?P<num>\d+))\s*$",
                       re.IGNORECASE)


def parse_level(text: str) -> int:
    """"1/4" -> -2, "x4" -> 2, "4" -> 2, "1" -> 0. Powers of two from 1/8 to 8 only."""
    m = _LEVEL_RE.match(str(text))
    if m is None:
        raise ValueError(f"bad level {text!r}: write 1/8, 1/4, 1/2, 1, x2, x4 or x8")
    n = int(m.group("den") if m.group("inv") else m.group("num"))
    if n <= 0 or n & (n - 1):
        raise ValueError(f"bad level {text!r}: {n} is not a power of two "
                         f"(levels are 1/8, 1/4, 1/2, 1, x2, x4, x8)")
    level = -int(math.log2(n)) if m.group("inv") else int(math.log2(n))
    if not MIN_LEVEL <= level <= MAX_LEVEL:
        raise ValueError(f"bad level {text!r}: levels go from 1/8 to x8")
    return level


# -- virtual base cameras --------------------------------------------------------------------
def _fibonacci_sphere(n: int) -> np.ndarray:
    """n unit vectors spread evenly over the sphere. [n, 3]"""
    i = np.arange(n, dtype=np.float64) + 0.5
    z = 1.0 - 2.0 * i / n
    r = np.sqrt(np.clip(1.0 - z * z, 0.0, 1.0))
    phi = math.pi * (3.0 - math.sqrt(5.0)) * i
    return np.stack([r * np.cos(phi), z, r * np.sin(phi)], axis=-1)


def virtual_base_cameras(
    gaussians: Gaussians, width: int = 800, height: int = 800, n: int = 24,
    fov_y_deg: float = 40.0, up: tuple[float, float, float] = (0.0, -1.0, 0.0),
) -> list[Camera]:
    """A sphere of n views looking at the model's centre, each framing its robust bounding
    sphere, at the stated base resolution. Used as base cameras when the training
    cameras are unknown: the model is then defined to be "x1" at this resolution.
    """
    if n < 1:
        raise ValueError(f"virtual_base_cameras needs n >= 1, got {n}")
    lo, hi = (b.detach().cpu() for b in gaussians.bounds(quantile=0.01))  # model may be on a GPU
    centre = ((lo + hi) * 0.5).double().numpy()
    radius = max(float(torch.linalg.norm(hi - lo)) * 0.5, 1e-6)
    half_fov = math.radians(min(fov_y_deg * width / height, fov_y_deg)) / 2.0
    dist = radius / math.sin(half_fov)
    cams = []
    for d in _fibonacci_sphere(n):
        eye = centre + dist * d
        cams.append(Camera.look_at(eye, centre, up=up, fov_y_deg=fov_y_deg, width=width,
                                   height=height, near=dist * 0.01))
    return cams


# -- when to ask for a level -------------------------------------------------------------------
@dataclass
class LevelTracker:
    """Decides when the viewer should ask for another level. Pure: fed (time, scale).

    A level is requested when the scale has stayed outside the band of the level in use
    (2^(L±0.5)) for `hold_s` seconds without interruption; the request is for the level
    of the latest scale. After a request the tracker takes that level as the one in use
    (call :meth:`set_level` when the viewer settles on another one, e.g. a manual pick).
    Non-finite scales (nothing visible) are ignored.

    Attributes:
        level: the level in use (or last requested).
        hold_s: how long the scale must stay out of band, in seconds.
    """

    level: int = 0
    hold_s: float = 0.5
    _out_since: float | None = None

    def set_level(self, level: int) -> None:
        self.level = int(level)
        self._out_since = None

    def update(self, t: float, s: float) -> int | None:
        """Feed the time (seconds, monotonic) and the current effective scale; returns the
        level to request now, or None."""
        if not (s > 0 and math.isfinite(s)):
            return None
        lo, hi = level_band(self.level)
        wanted = level_for_scale(s)
        if lo <= s <= hi or wanted == self.level:
            self._out_since = None
            return None
        if self._out_since is None:
            self._out_since = t
            return None
        if t - self._out_since >= self.hold_s:
            self.set_level(wanted)
            return wanted
        return None
