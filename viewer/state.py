"""The viewer's state as plain dataclasses: what the panels show and edit each frame.

The GL objects, the window and the render thread live in viewer/app.py; everything here is
data, so panels are functions of it and tests can build and inspect it without a window.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from render.camera import Camera
from render.gaussians import Gaussians
from render.options import RenderOptions
from viewer.compare import Comparison
from viewer.controls import ViewPose

MAX_RECENT = 10


@dataclass
class ModelState:
    """The model on screen.

    Attributes:
        gaussians: the loaded set (on the render device).
        name: shown in the title bar and in screenshots.
        path: the file it came from; None for the demo scene.
        cameras: training cameras (from cameras.json) or the demo's base cameras.
        camera_names: one name per camera.
        base_cameras: the cameras that define the base sampling rate for the zoom readout.
        up: world up from the cameras, None when unknown.
        up_guess: without cameras, the UP_CHOICES key guessed from the model's shape
            (viewer.up_axis), None when it does not tell.
        initial: the first view to show.
        sh_degree: the model's own SH degree.
        info: lines for the model panel (format, dropped rows, warnings).
        antialias: the mode the file's anti-aliasing tag asks for ("mip" for a file
            tagged antialiased, else "classic"): the viewer's default for this model.
    """

    gaussians: Gaussians
    name: str
    path: Path | None = None
    cameras: list[Camera] = field(default_factory=list)
    camera_names: list[str] = field(default_factory=list)
    base_cameras: list[Camera] = field(default_factory=list)
    up: tuple[float, float, float] | None = None
    up_guess: str | None = None
    initial: Camera | None = None
    sh_degree: int = 0
    info: list[str] = field(default_factory=list)
    antialias: str = "classic"


@dataclass
class RenderSettings:
    """The render options panel.

    Attributes:
        backend: the RenderOptions backend asked for ("auto", "cpu", "cuda").
        sh_degree: SH degree to evaluate, -1 for the model's own.
        background: RGB in [0, 1].
        antialias: classic, mip, adaptive or blend (Gaussian Blending, CPU).
        output: rgb, depth or alpha.
        resolution_scale: render size over window size (1 = one sample per pixel).
        adaptive_resolution: on the CPU path, render smaller while the camera moves.
    """

    backend: str = "auto"
    sh_degree: int = -1
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)
    antialias: str = "classic"
    output: str = "rgb"
    resolution_scale: float = 1.0
    adaptive_resolution: bool = True

    def options(self, zoom: float = 1.0) -> RenderOptions:
        return RenderOptions(
            sh_degree=None if self.sh_degree < 0 else self.sh_degree,
            background=tuple(float(c) for c in self.background),
            antialias=self.antialias, output=self.output, backend=self.backend,
            zoom=max(float(zoom), 1e-6))


@dataclass
class NavState:
    """Navigation.

    Attributes:
        pose: the current view.
        home: the view Reset goes back to.
        up: world up used by orbit, fly and Q/E.
        up_choice: the UI choice when the cameras do not tell (a key of UP_CHOICES).
        up_from_cameras: whether `up` came from the training cameras.
        up_guessed: whether `up_choice` was guessed from the model's shape.
        fly: fly mode (left drag looks around instead of orbiting).
        fly_speed: world units per second for WASD.
        camera_index: training camera last jumped to, -1 for none.
    """

    pose: ViewPose
    home: ViewPose
    up: np.ndarray
    up_choice: str = "-Y (OpenCV / COLMAP)"
    up_from_cameras: bool = False
    up_guessed: bool = False
    fly: bool = False
    fly_speed: float = 1.0
    camera_index: int = -1


@dataclass
class Stats:
    """What the stats panel shows (milliseconds unless said otherwise)."""

    fps: float = 0.0
    frame_ms: float = 0.0
    render_ms: float = 0.0
    display_ms: float = 0.0
    ui_ms: float = 0.0
    frames_shown: int = 0
    n_drawn: list[int] = field(default_factory=list)
    backend: str = ""
    backend_reason: str = ""
    frame_path: str = "cpu-upload"
    frame_path_reason: str = ""
    memory: str = ""
    render_size: tuple[int, int] = (0, 0)
    full_res: bool = True
    drawn_set: str = "full"  # "proxy" while moving on a large model (adapt.proxy), or "full"
    render_error: str | None = None


@dataclass
class ScreenshotSettings:
    """Screenshot options.

    Attributes:
        folder: where timestamped PNGs go.
        window_size: take the window's size; else width x height (re-rendered).
        width, height: the chosen size.
        last_path: the last file written; last_error: the last failure.
    """

    folder: str = field(default_factory=lambda: str(Path.home() / "Pictures" / "mipview"))
    window_size: bool = True
    width: int = 1920
    height: int = 1080
    last_path: str = ""
    last_error: str = ""


@dataclass
class UiState:
    """Windows, modals and text fields."""

    show_panels: bool = True
    show_help: bool = False
    error_title: str = ""
    error_text: str = ""  # non-empty: the error modal is open
    open_path: str = ""
    recent: list[str] = field(default_factory=list)
    loading: str = ""  # the file being loaded in the background, "" when none
    loading_phase: str = ""  # what that load is doing ("reading 40%"), for the progress text
    status: str = ""
    readout_shown: str = ""  # the menu bar's zoom readout as ImGui last drew it


@dataclass
class ViewerState:
    """Everything the panels read and write."""

    model: ModelState
    render: RenderSettings
    nav: NavState
    compare: Comparison = field(default_factory=Comparison)
    stats: Stats = field(default_factory=Stats)
    shot: ScreenshotSettings = field(default_factory=ScreenshotSettings)
    ui: UiState = field(default_factory=UiState)
    scale: float | None = None  # effective scale of the full-resolution view
    scale_error: str | None = None


# -- recent files ---------------------------------------------------------------------------
def config_dir() -> Path:
    """$MIPVIEW_CONFIG_DIR, else $XDG_CONFIG_HOME/mipview, else ~/.config/mipview."""
    if os.environ.get("MIPVIEW_CONFIG_DIR"):
        return Path(os.environ["MIPVIEW_CONFIG_DIR"])
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "mipview"


def recent_file() -> Path:
    return config_dir() / "recent.json"


def load_recent() -> list[str]:
    """The recent-files list; an unreadable or malformed file counts as empty, and entries
    that are not non-empty strings are skipped (it is only a convenience: it must never
    stop the viewer from starting)."""
    try:
        data = json.loads(recent_file().read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return []
    items = data.get("recent") if isinstance(data, dict) else None
    if not isinstance(items, list):
        return []
    return [p for p in items if isinstance(p, str) and p and "\0" not in p][:MAX_RECENT]


def push_recent(recent: list[str], path: str | Path) -> list[str]:
    """The list with `path` first (absolute), without duplicates, at most MAX_RECENT."""
    p = str(Path(path).resolve())
    return ([p] + [r for r in recent if r != p])[:MAX_RECENT]


def save_recent(recent: list[str]) -> Path:
    """Write the list atomically: a temporary file in the same folder, then a rename."""
    path = recent_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".recent.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"recent": recent[:MAX_RECENT]}, f, indent=1)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
