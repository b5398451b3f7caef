"""Turning files and the demo into what the viewer shows (ModelState), off the GL thread.

Loading a large .ply takes seconds, so :class:`ModelLoader` runs it in a thread; the
window keeps drawing and swaps the model in at a frame boundary. A file that fails keeps
the current model and gives the error text for the modal.
"""

from __future__ import annotations

import threading
import traceback
from dataclasses import dataclass
from pathlib import Path

from render.camera import Camera
from viewer.controls import camera_rotation, up_from_cameras
from viewer.state import ModelState

# Base resolution assumed for models without training cameras (see adapt.scale).
VIRTUAL_BASE_SIZE = (800, 800)


def demo_model() -> ModelState:
    """The built-in aliasing chart with its base cameras."""
    from render.demo import demo_scene

    d = demo_scene()
    return ModelState(
        gaussians=d.gaussians, name=d.name, path=None, cameras=list(d.base_cameras),
        camera_names=[f"base view {i}" for i in range(len(d.base_cameras))],
        base_cameras=list(d.base_cameras), up=tuple(d.up), initial=d.camera,
        sh_degree=d.gaussians.sh_degree,
        info=[f"{len(d.gaussians):,} Gaussians, SH degree {d.gaussians.sh_degree}",
              f"{len(d.base_cameras)} base cameras at "
              f"{d.base_cameras[0].width}x{d.base_cameras[0].height}"])


def file_model(path: str | Path, progress=None) -> ModelState:
    """A model file (and its cameras.json when found). Raises render.io.GaussianFileError.
    `progress(fraction)`: see render.io.load_model."""
    from render.io import load_model

    lm = load_model(path, progress=progress)
    cams = [rec.camera for rec in lm.cameras] if lm.cameras else []
    names = [rec.name or f"camera {rec.id}" for rec in lm.cameras] if lm.cameras else []
    up = up_from_cameras([camera_rotation(c) for c in cams])
    g = lm.gaussians
    info = [f"{lm.format}, {len(g):,} Gaussians, SH degree {g.sh_degree}"]
    if lm.splat_model != "default":
        info.append(f"tagged {lm.splat_model}: drawn {lm.antialias} by default")
    if lm.n_dropped:
        info.append(f"{lm.n_dropped:,} rows with NaN/Inf dropped")
    guess = None
    if cams:
        info.append(f"{len(cams)} training cameras from {Path(lm.cameras_path).name}")
    else:
        info.append("no cameras.json: zoom is relative to virtual base views "
                    f"at {VIRTUAL_BASE_SIZE[0]}x{VIRTUAL_BASE_SIZE[1]}")
    if up is None:
        from viewer.up_axis import guess_up_choice

        guess = guess_up_choice(g.means.detach().cpu().numpy())
        if guess is not None:
            info.append(f"world up {guess.split()[0]} guessed from the model's flattest axis")
    info.extend(lm.warnings)
    return ModelState(gaussians=g, name=Path(path).name, path=Path(path), cameras=cams,
                      camera_names=names, base_cameras=cams,
                      up=None if up is None else tuple(float(v) for v in up), up_guess=guess,
                      initial=cams[0] if cams else None, sh_degree=g.sh_degree, info=info,
                      antialias=lm.antialias)


def base_cameras_for(model: ModelState, up) -> list[Camera]:
    """The model's base cameras, or virtual ones around it when it has none."""
    if model.base_cameras:
        return model.base_cameras
    from adapt.scale import virtual_base_cameras

    w, h = VIRTUAL_BASE_SIZE
    return virtual_base_cameras(model.gaussians, width=w, height=h,
                                up=tuple(float(v) for v in up))


def scale_function(model: ModelState, up):
    """fn(shown_gaussians, camera) -> effective scale of the view against the model's
    base sampling (adapt.scale); raises if it cannot be built."""
    from adapt.scale import BaseSampling, ScaleProbe

    g = model.gaussians
    # Always the model's own set: the readout is relative to it, whichever source (an
    # adapted B with another number of Gaussians, say) the view shows.
    probe = ScaleProbe(BaseSampling.from_cameras(g, base_cameras_for(model, up)), g)
    return lambda _shown, cam: probe(cam)


@dataclass
class LoadResult:
    """What a background load produced: a model (and its scale function) or an error."""

    source: str
    model: ModelState | None = None
    scale_fn: object = None
    error: str = ""


class ModelLoader:
    """Loads one model at a time in a background thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._result: LoadResult | None = None
        self._thread: threading.Thread | None = None
        self.loading: str = ""
        self.phase: str = ""  # what the load is doing now, for the window ("reading 40%")

    def start(self, path: str | Path | None, device, up_hint) -> bool:
        """Begin loading `path` (None = the demo scene); False if a load is running."""
        if self._thread is not None and self._thread.is_alive():
            return False
        self.loading = "demo scene" if path is None else str(path)
        self.phase = "starting"
        self._thread = threading.Thread(target=self._load, args=(path, device, up_hint),
                                        name="mipview-load", daemon=True)
        self._thread.start()
        return True

    def _load(self, path, device, up_hint) -> None:
        source = "demo scene" if path is None else str(path)
        try:
            model = demo_model() if path is None else file_model(path, self._reading)
            self.phase = "moving to the device"
            model.gaussians = model.gaussians.to(device)
            up = model.up if model.up is not None else up_hint
            if model.up is None and model.up_guess is not None:
                from viewer.controls import UP_CHOICES

                up = UP_CHOICES[model.up_guess]
            self.phase = "preparing the zoom readout"
            try:
                fn = scale_function(model, up)
            except Exception:  # no readout is better than no model
                traceback.print_exc()
                fn = None
            res = LoadResult(source, model, fn)
        except Exception as exc:
            res = LoadResult(source, error=f"{type(exc).__name__}: {exc}")
        with self._lock:
            self._result = res

    def _reading(self, fraction: float) -> None:
        self.phase = f"reading {100 * fraction:.0f}%" if fraction < 1 else "checking values"

    def poll(self) -> LoadResult | None:
        """The finished load, once; None while loading or idle."""
        with self._lock:
            res, self._result = self._result, None
        if res is not None:
            self.loading = ""
        return res

    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
