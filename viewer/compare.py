"""Side-by-side comparison: two sources that share the camera, and how they are composed.

A source is a Gaussian set, the render options that differ from the UI's, and a label.
Source A is the model as loaded; source B defaults to the same model with another
antialias mode, and :meth:`Comparison.set_source_b` lets the adaptation integration plug
in its adapted set ("Mipmap-GS (level in use)"). :func:`compose` is the numpy twin of the
present shader (shaders/present.frag): screenshots and tests use it to build exactly the
picture the window shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from render.camera import Camera
from render.gaussians import Gaussians
from render.options import RenderOptions

CompareMode = Literal["single", "split", "side_by_side"]
COMPARE_MODES: tuple[str, ...] = ("single", "split", "side_by_side")
MODE_LABELS = {"single": "single view", "split": "split (A | B)", "side_by_side": "side by side"}

# The divider line of the split view: its colour (uint8) and half-width in pixels. The
# shader uses the same numbers (uniforms set from these).
DIVIDER_RGB = (230, 230, 230)
DIVIDER_HALF_WIDTH = 1.0


@dataclass(frozen=True)
class Source:
    """One side of a comparison.

    Attributes:
        gaussians: the set to draw.
        label: what the UI and screenshots call it.
        overrides: RenderOptions fields that differ from the UI's options, e.g.
            {"antialias": "mip"}; empty = exactly the UI's options.
    """

    gaussians: Gaussians
    label: str
    overrides: dict = field(default_factory=dict)

    def options(self, ui: RenderOptions) -> RenderOptions:
        return ui.replace(**self.overrides) if self.overrides else ui


def other_antialias(mode: str) -> str:
    """The antialias mode B shows by default: mip against classic, classic otherwise."""
    return "mip" if mode == "classic" else "classic"


@dataclass
class Comparison:
    """The two sources and how they are shown.

    Attributes:
        mode: single, split or side_by_side.
        shown: which source a single view shows ("A" or "B"); the flip key toggles it.
        divider: split position as a fraction of the width, left of it A, right B.
        custom_b: the plugged-in source B, or None for the default (other antialias mode).
        a_label: what to call source A ("" = the model's name); "vanilla" while B is
            the Mipmap-GS set.
    """

    mode: str = "single"
    shown: str = "A"
    divider: float = 0.5
    custom_b: Source | None = None
    a_label: str = ""

    def set_source_b(self, source: Source | None) -> None:
        """Plug a source in as B (e.g. the Mipmap-GS set of the level in use); None goes
        back to the default B."""
        self.custom_b = source

    def source_b(self, a: Source, ui: RenderOptions) -> Source:
        if self.custom_b is not None:
            return self.custom_b
        alt = other_antialias(ui.antialias)
        return Source(a.gaussians, f"{a.label} ({alt})", {"antialias": alt})

    def visible_sources(self, a: Source, ui: RenderOptions) -> list[Source]:
        """The sources the current mode draws, in texture order."""
        b = self.source_b(a, ui)
        if self.mode == "single":
            return [a if self.shown == "A" else b]
        return [a, b]

    def flip(self) -> None:
        """Show the other source in a single view (from a split too)."""
        self.shown = "B" if self.shown == "A" else "A"
        self.mode = "single"

    def cycle_mode(self) -> None:
        self.mode = COMPARE_MODES[(COMPARE_MODES.index(self.mode) + 1) % len(COMPARE_MODES)]


def pane_sizes(mode: str, width: int, height: int) -> list[tuple[int, int]]:
    """(width, height) of each texture a mode needs for a width x height view."""
    if mode == "side_by_side":
        left = width // 2
        return [(left, height), (width - left, height)]
    if mode == "split":
        return [(width, height), (width, height)]
    return [(width, height)]


def pane_cameras(mode: str, camera: Camera) -> list[Camera]:
    """The cameras to render each pane with, from the view camera (same vertical field of
    view; side by side halves the width, so each pane shows a narrower slice)."""
    sizes = pane_sizes(mode, camera.width, camera.height)
    out = []
    for w, h in sizes:
        if (w, h) == (camera.width, camera.height):
            out.append(camera)
        else:  # same focal length and vertical FOV, narrower image, centred principal point
            out.append(Camera(camera.viewmat, camera.fx, camera.fy, w / 2.0, camera.cy, w, h,
                              camera.near, camera.far))
    return out


def divider_px(divider: float, width: int) -> int:
    """The split position in whole pixels: columns x < divider_px show A."""
    return int(round(min(max(divider, 0.0), 1.0) * width))


def compose(frame_a: np.ndarray, frame_b: np.ndarray | None, mode: str,
            divider: float = 0.5) -> np.ndarray:
    """What the window shows for one or two rendered panes. [H, W, 3], dtype of the input.

    Args:
        frame_a: source A (or the single source shown). [H, W, C>=3] uint8 or float in [0, 1]
        frame_b: source B, same size as A for split; its own pane size for side_by_side.
        mode: single, split or side_by_side.
        divider: split position as a fraction of the width.
    """
    a = np.asarray(frame_a)[..., :3]
    if mode == "single" or frame_b is None:
        return a.copy()
    b = np.asarray(frame_b)[..., :3]
    if mode == "side_by_side":
        if a.shape[0] != b.shape[0]:
            raise ValueError(f"side-by-side panes differ in height: {a.shape} vs {b.shape}")
        return np.concatenate([a, b], axis=1)
    if mode != "split":
        raise ValueError(f"unknown compare mode {mode!r}")
    if a.shape != b.shape:
        raise ValueError(f"split panes differ in size: {a.shape} vs {b.shape}")
    h, w = a.shape[:2]
    d = divider_px(divider, w)
    centres = np.arange(w) + 0.5
    out = np.where((centres < d)[None, :, None], a, b)
    line = np.abs(centres - d) < DIVIDER_HALF_WIDTH
    colour = np.array(DIVIDER_RGB, dtype=np.float64)
    if np.issubdtype(a.dtype, np.floating):
        colour = colour / 255.0
    out[:, line] = colour.astype(a.dtype)
    return out
