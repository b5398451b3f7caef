"""The built-in demo scene: a procedural aliasing test chart made of Gaussians.

Everything on the chart is about one base pixel wide, so it aliases the way trained 3DGS
models do: zoom out and the fine detail thickens and brightens; zoom in and the splats
turn into needles with gaps between them. The chart is a card in the plane z = 0
(x right, y down, OpenCV-style world), with a few wires hanging in front of it at other
depths so that orbiting shows parallax. Its base cameras look at it from about 2.4 units
at 640 x 480, where one chart pixel is one image pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from render.camera import Camera
from render.gaussians import Gaussians

BASE_WIDTH, BASE_HEIGHT = 640, 480
BASE_FOV_Y_DEG = 40.0
CHART_PX_W, CHART_PX_H = 560, 420  # chart size in base pixels
PX = 2.0 / CHART_PX_W  # world units per base pixel: the chart is 2.0 x 1.5 units
WHITE = (0.95, 0.95, 0.95)
BACKDROP = (0.08, 0.08, 0.1)

# 5 x 7 bitmap glyphs, one string per row, '#' = ink.
_GLYPHS = {
    "M": ["#...#", "##.##", "#.#.#", "#.#.#", "#...#", "#...#", "#...#"],
    "I": ["#####", "..#..", "..#..", "..#..", "..#..", "..#..", "#####"],
    "P": ["####.", "#...#", "#...#", "####.", "#....", "#....", "#...."],
    "V": ["#...#", "#...#", "#...#", "#...#", ".#.#.", ".#.#.", "..#.."],
    "E": ["#####", "#....", "#....", "####.", "#....", "#....", "#####"],
    "W": ["#...#", "#...#", "#...#", "#.#.#", "#.#.#", "##.##", "#...#"],
    "3": ["####.", "....#", "....#", ".###.", "....#", "....#", "####."],
    "D": ["####.", "#...#", "#...#", "#...#", "#...#", "#...#", "####."],
    "G": [".####", "#....", "#....", "#..##", "#...#", "#...#", ".####"],
    "S": [".####", "#....", "#....", ".###.", "....#", "....#", "####."],
    "A": [".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"],
    "N": ["#...#", "##..#", "#.#.#", "#.#.#", "#..##", "#...#", "#...#"],
    "T": ["#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."],
    "L": ["#....", "#....", "#....", "#....", "#....", "#....", "#####"],
    " ": ["....."] * 7,
}


@dataclass
class DemoScene:
    """The demo model with the cameras it was 'trained' at.

    Attributes:
        gaussians: the chart. [N] Gaussians, SH degree 0.
        base_cameras: the views that define the base sampling rate (640 x 480).
        camera: a good first view (the frontal base camera).
        up: world direction shown as up on screen.
        name: shown in the window title.
    """

    gaussians: Gaussians
    base_cameras: list[Camera]
    camera: Camera
    up: tuple[float, float, float]
    name: str = "demo: aliasing test chart"


class _Builder:
    """Collects splats in chart pixel units (origin at the chart centre, y down)."""

    def __init__(self) -> None:
        self.parts: list[dict[str, np.ndarray]] = []

    def add(self, xy, color, sx, sy, angle=0.0, z=0.0, opacity=0.98, sz=0.25) -> None:
        """Splats at xy [M, 2] px with std devs sx, sy px along their own axes, rotated by
        `angle` radians about the view axis, at depth z px (negative = towards the camera)."""
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        m = len(xy)
        if m == 0:
            return

        def col(v, k):
            return np.broadcast_to(np.asarray(v, dtype=np.float64), (m, k) if k > 1 else (m,))

        self.parts.append({
            "xy": xy, "z": col(z, 1), "color": col(color, 3), "sx": col(sx, 1),
            "sy": col(sy, 1), "sz": col(sz, 1), "angle": col(angle, 1),
            "opacity": col(opacity, 1),
        })

    def line(self, p0, p1, width, color, z=0.0, step=1.5, opacity=0.98) -> None:
        """A straight stroke `width` px wide (2 sigma) from p0 to p1, built of elongated splats."""
        p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
        length = float(np.linalg.norm(p1 - p0))
        n = max(1, int(math.ceil(length / step)))
        t = (np.arange(n) + 0.5) / n
        pts = p0 + (p1 - p0) * t[:, None]
        angle = math.atan2(p1[1] - p0[1], p1[0] - p0[0])
        self.add(pts, color, sx=0.6 * length / n, sy=width / 2, angle=angle, z=z, opacity=opacity)

    def polyline(self, pts, width, color, z=0.0) -> None:
        for a, b in zip(pts[:-1], pts[1:]):
            self.line(a, b, width, color, z=z, step=2.0)

    def gaussians(self) -> Gaussians:
        cat = {k: np.concatenate([p[k] for p in self.parts]) for k in self.parts[0]}
        means = np.stack([cat["xy"][:, 0], cat["xy"][:, 1], cat["z"]], axis=1) * PX
        scales = np.stack([cat["sx"], cat["sy"], cat["sz"]], axis=1) * PX
        half = cat["angle"] / 2.0  # rotation about z
        quats = np.stack([np.cos(half), np.zeros_like(half), np.zeros_like(half),
                          np.sin(half)], axis=1)
        t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
        return Gaussians.from_colors(t(means), t(cat["color"]), t(scales), t(cat["opacity"]),
                                     quats=t(quats))


def _backdrop(b: _Builder) -> None:
    """A dark card behind everything, of wide overlapping splats."""
    step = 6.0
    xs = np.arange(-CHART_PX_W / 2 + 3, CHART_PX_W / 2, step)
    ys = np.arange(-CHART_PX_H / 2 + 3, CHART_PX_H / 2, step)
    gx, gy = np.meshgrid(xs, ys)
    b.add(np.stack([gx.ravel(), gy.ravel()], 1), BACKDROP, sx=4.0, sy=4.0, z=3.0, sz=1.0,
          opacity=0.99)


def _gratings(b: _Builder, x0: float, y0: float) -> None:
    """Line gratings of period 2, 3, 4 and 6 px, vertical above, horizontal below."""
    for i, period in enumerate((2, 3, 4, 6)):
        bx = x0 + i * 58
        for x in np.arange(bx, bx + 48, period):
            b.line((x, y0), (x, y0 + 80), 1.0, WHITE, step=4.0)
        for y in np.arange(y0 + 92, y0 + 140, period):
            b.line((bx, y), (bx + 48, y), 1.0, WHITE, step=4.0)


def _siemens_star(b: _Builder, cx: float, cy: float, radius: float, spokes: int = 36) -> None:
    """Alternating wedges filled with one-pixel splats on the pixel grid."""
    r = int(radius)
    gx, gy = np.meshgrid(np.arange(-r, r + 1) + 0.5, np.arange(-r, r + 1) + 0.5)
    rr = np.hypot(gx, gy)
    wedge = np.floor((np.arctan2(gy, gx) + math.pi) / (2 * math.pi) * 2 * spokes).astype(int)
    keep = (rr <= radius) & (wedge % 2 == 0)
    b.add(np.stack([gx[keep] + cx, gy[keep] + cy], 1), WHITE, sx=0.5, sy=0.5)


def _wires(b: _Builder, x0: float, y0: float, w: float) -> None:
    """Sinusoidal wires from 0.4 to 1.2 px thick, in the chart plane."""
    x = np.linspace(x0, x0 + w, 120)
    for i, width in enumerate((0.4, 0.6, 0.8, 1.0, 1.2)):
        y = y0 + 14 * i + 5 * np.sin((x - x0) / w * 4 * math.pi + i)
        b.polyline(np.stack([x, y], 1), width, WHITE)


def _dots(b: _Builder, x0: float, y0: float) -> None:
    """A grid of isolated dots shrinking from 1.5 to 0.3 px sigma, in colour rows."""
    colors = [(1.0, 0.3, 0.3), (0.3, 1.0, 0.3), (0.4, 0.5, 1.0), WHITE]
    for row, color in enumerate(colors):
        for col, s in enumerate(np.linspace(1.5, 0.3, 10)):
            b.add([(x0 + col * 9, y0 + row * 9)], color, sx=s, sy=s)


def _text(b: _Builder, text: str, x0: float, y0: float, px: float) -> None:
    """Bitmap text, each glyph pixel `px` base pixels wide."""
    pts = []
    for k, ch in enumerate(text):
        for row, bits in enumerate(_GLYPHS[ch]):
            for colm, bit in enumerate(bits):
                if bit == "#":
                    pts.append((x0 + (k * 6 + colm + 0.5) * px, y0 + (row + 0.5) * px))
    b.add(pts, WHITE, sx=0.6 * px, sy=0.6 * px)


def _colour_patches(b: _Builder, x0: float, y0: float) -> None:
    """Flat colour regions with a one-pixel checker inside the last two."""
    colors = [(0.9, 0.15, 0.1), (0.1, 0.75, 0.2), (0.15, 0.3, 0.95), (0.95, 0.85, 0.1),
              (0.1, 0.85, 0.9), (0.85, 0.2, 0.85)]
    for i, color in enumerate(colors):
        px0, py0 = x0 + (i % 3) * 46, y0 + (i // 3) * 46
        if i < 4:
            g = np.arange(1.5, 40, 3.0)
            gx, gy = np.meshgrid(g, g)
            b.add(np.stack([gx.ravel() + px0, gy.ravel() + py0], 1), color, sx=2.0, sy=2.0)
        else:  # one-pixel checkerboard: averages to half intensity when zoomed out
            g = np.arange(0, 40) + 0.5
            gx, gy = np.meshgrid(g, g)
            on = ((gx.astype(int) + gy.astype(int)) % 2) == 0
            b.add(np.stack([gx[on] + px0, gy[on] + py0], 1), color, sx=0.5, sy=0.5)


def _zone_plate(b: _Builder, cx: float, cy: float, radius: float, rings: int = 12) -> None:
    """Concentric rings at radius R sqrt(k / rings): spacing shrinks to ~2 px at the rim."""
    for k in range(1, rings + 1):
        r = radius * math.sqrt(k / rings)
        t = np.linspace(0, 2 * math.pi, max(12, int(2 * math.pi * r / 2.0)) + 1)
        b.polyline(np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], 1), 0.8, WHITE)


def _hanging_wires(b: _Builder) -> None:
    """Three thin wires in front of the card at different depths, for parallax."""
    for depth, (p0, p1) in zip((-60.0, -120.0, -200.0),
                               [((-270, -200), (270, 190)), ((-270, 150), (270, -160)),
                                ((-200, 200), (-160, -200))]):
        b.line(p0, p1, 0.8, (1.0, 0.75, 0.3), z=depth, step=2.0)


def base_cameras() -> list[Camera]:
    """The frontal view plus eight views on a 12 degree cone, all at the base rate."""
    f = BASE_HEIGHT / (2 * math.tan(math.radians(BASE_FOV_Y_DEG) / 2))
    dist = f * 2.0 / CHART_PX_W  # the chart's width spans CHART_PX_W pixels
    cams = [Camera.look_at((0, 0, -dist), (0, 0, 0), fov_y_deg=BASE_FOV_Y_DEG,
                           width=BASE_WIDTH, height=BASE_HEIGHT)]
    tilt = math.radians(12)
    for k in range(8):
        phi = 2 * math.pi * k / 8
        eye = (dist * math.sin(tilt) * math.cos(phi), dist * math.sin(tilt) * math.sin(phi),
               -dist * math.cos(tilt))
        cams.append(Camera.look_at(eye, (0, 0, 0), fov_y_deg=BASE_FOV_Y_DEG,
                                   width=BASE_WIDTH, height=BASE_HEIGHT))
    return cams


def demo_scene() -> DemoScene:
    """Build the chart (about 30k Gaussians; deterministic, no randomness)."""
    b = _Builder()
    _backdrop(b)
    _gratings(b, -270, -200)
    _siemens_star(b, 165, -95, 100)
    _wires(b, -270, -40, 240)
    _dots(b, -270, 40)
    _text(b, "MIPVIEW", -170, 40, 1.0)
    _text(b, "3DGS ANTIALIAS", -170, 56, 1.0)
    _text(b, "MIPVIEW", -170, 70, 2.0)
    _text(b, "MIPVIEW 3DGS", -270, 110, 4.0)
    _colour_patches(b, 30, 40)
    _zone_plate(b, 225, 150, 52)
    _hanging_wires(b)
    cams = base_cameras()
    return DemoScene(b.gaussians(), cams, cams[0], up=(0.0, -1.0, 0.0))
