"""`mipview render`: render training cameras or a camera path headless.

    mipview render MODEL --cameras cameras.json --out DIR [--scale F] ...
        one PNG per camera of an INRIA cameras.json: DIR/<img_name>.png

    mipview render MODEL --path camera_path.json --out video.mp4|frames_dir/
        [--size WxH] [--fps F] [--side-by-side --b-aa MODE | --b-model OTHER.ply]
        every frame of a nerfstudio-layout camera path, optionally as A | B side by side

Everything is read and checked before anything is written: a bad model, camera or path
file exits with status 2 and a one-line error on stderr, and leaves the output alone.
PNGs carry the camera, model and render options as text metadata.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from render.io.atomic import make_temp_dir
from render.io.limits import (
    MAX_SIDE,
    MAX_VIDEO_SIDE,
    LimitError,
    check_frame_count,
    check_image_size,
)
from render.options import ANTIALIAS_MODES, BACKENDS, RenderOptions
from viewer.capture import render_still, save_png
from viewer.commands.progress import interrupted, progress_bar
from viewer.video import is_video_path

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1
# the antialias modes that read the view's effective scale (RenderOptions.zoom)
ZOOM_MODES = ("adaptive", "blend")


class UsageError(Exception):
    """A problem with the command line or an input file: printed without a traceback."""


# ---------------------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------------------
def _size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[xX*,]\s*(\d+)\s*", text)
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT like 1280x720, got {text!r}")
    return int(m.group(1)), int(m.group(2))


def _rgb(text: str) -> tuple[float, float, float]:
    try:
        vals = tuple(float(v) for v in text.split(","))
    except ValueError:
        vals = ()
    if len(vals) != 3 or not all(0.0 <= v <= 1.0 for v in vals):
        raise argparse.ArgumentTypeError(f"expected R,G,B in [0, 1] like 1,1,1, got {text!r}")
    return vals  # type: ignore[return-value]


def _positive(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return v


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="the Gaussian model (.ply, compressed .ply, .splat, .spz, "
                                      ".sog)")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--cameras", metavar="CAMERAS.json",
                     help="INRIA cameras.json: render every camera to OUT/<img_name>.png")
    src.add_argument("--path", metavar="PATH.json",
                     help="nerfstudio camera_path.json: render every frame to OUT")
    parser.add_argument("--out", required=True,
                        help="with --cameras a folder; with --path a video (.mp4, .mov, .mkv) "
                             "or a folder of numbered PNG frames")
    parser.add_argument("--backend", choices=BACKENDS, default="auto",
                        help="rasterizer (auto: CUDA through gsplat when it works, else CPU)")
    parser.add_argument("--aa", choices=ANTIALIAS_MODES, default=None,
                        help="antialias mode of the render (side A; default: the model's "
                             "tag, mip for a file tagged anti-aliased, else classic)")
    parser.add_argument("--scale", type=_positive, default=1.0,
                        help="multiply the resolution and focal lengths (same field of view)")
    parser.add_argument("--sh-degree", type=int, choices=range(4), default=None,
                        help="SH degree to evaluate (default: the model's)")
    parser.add_argument("--background", type=_rgb, default=(0.0, 0.0, 0.0),
                        metavar="R,G,B", help="background colour in [0, 1] (default 0,0,0)")
    parser.add_argument("--zoom", type=_positive, default=None,
                        help="effective scale for --aa adaptive/blend (default: --scale with "
                             "--cameras; with --path, measured per frame against the "
                             "training cameras found beside the model, else against "
                             "virtual base cameras, as the viewer does)")
    parser.add_argument("--size", type=_size, default=None, metavar="WxH",
                        help="--path: render size per side (default: the path's)")
    parser.add_argument("--fps", type=_positive, default=None,
                        help="--path: frames per second (default: the path's; the path is "
                             "re-sampled from its keyframes)")
    parser.add_argument("--side-by-side", action="store_true",
                        help="--path: render A | B side by side (needs --b-aa or --b-model)")
    parser.add_argument("--b-aa", choices=ANTIALIAS_MODES, default=None,
                        help="antialias mode of side B (default: --aa, else B's tag)")
    parser.add_argument("--b-model", default=None, metavar="OTHER.ply",
                        help="model of side B (default: MODEL)")
    parser.add_argument("--no-labels", action="store_true",
                        help="--side-by-side: leave out the A / B captions")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


# ---------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------
@dataclass
class Source:
    """One side of a render: a model and how to draw it.

    Attributes:
        zoom_of: for `adaptive` antialiasing without a fixed --zoom, the effective scale
            of a camera against the model's base sampling; None keeps options.zoom.
    """

    label: str
    model_path: Path
    gaussians: object  # render.Gaussians, on the backend's device
    options: RenderOptions
    zoom_of: Callable[[object], float] | None = None

    def options_for(self, camera) -> RenderOptions:
        if self.zoom_of is None:
            return self.options
        return self.options.replace(zoom=self.zoom_of(camera))


def _load_model(path: str, find_cameras: bool):
    from render.io import GaussianFileError, load_model

    try:
        loaded = load_model(path, find_cameras=find_cameras)
    except GaussianFileError as e:
        raise UsageError(f"cannot load model {e}") from e
    except OSError as e:
        raise UsageError(f"cannot load model {path}: {e.strerror or e}") from e
    for warning in loaded.warnings:
        print(f"mipview render: {path}: {warning}", file=sys.stderr)
    return loaded


def _zoom_measure(loaded) -> Callable[[object], float]:
    """The effective scale of a camera for this model (adapt.scale), as the viewer shows it:
    against the training cameras found beside the model, else virtual base cameras."""
    from adapt.scale import BaseSampling, effective_scale, virtual_base_cameras

    g = loaded.gaussians
    base_cams = ([r.camera for r in loaded.cameras] if loaded.cameras
                 else virtual_base_cameras(g))
    base = BaseSampling.from_cameras(g, base_cams)

    def zoom_of(camera) -> float:
        s = effective_scale(base, g, camera)
        return s if math.isfinite(s) and s > 0 else 1.0  # nothing seen: no change

    return zoom_of


def _resolve_backend(name: str) -> str:
    from render.rasterize import gsplat_backend, resolve_backend

    if name == "cuda":
        ok, why = gsplat_backend.available()
        if not ok:
            raise UsageError(f"--backend cuda is not available here: {why}")
    return resolve_backend(name)


def _check_video_extra(args) -> None:
    """A video output needs the `video` extra: say so before any frame is rendered."""
    from viewer.commands.extras import missing_extra
    from viewer.video import is_video_path

    if args.path and args.out and is_video_path(args.out):
        need = missing_extra("video", f"writing {Path(args.out).name}")
        if need:
            raise UsageError(f"{need} (or give a folder name to write PNG frames)")


def _check_sides(args) -> None:
    if args.side_by_side and not args.path:
        raise UsageError("--side-by-side works with --path only")
    if (args.b_aa or args.b_model) and not args.side_by_side:
        raise UsageError("--b-aa and --b-model need --side-by-side")
    if args.side_by_side and not (args.b_aa or args.b_model):
        raise UsageError("--side-by-side needs --b-aa MODE or --b-model OTHER.ply (or both)")
    if args.cameras and (args.size or args.fps):
        raise UsageError("--size and --fps work with --path only (use --scale with --cameras)")


# ---------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------
def _render_rgb(source: Source, camera) -> np.ndarray:
    """One view as uint8 [H, W, 3]; a large one in tiles (see viewer.capture.render_still)."""
    from render import render

    options = source.options_for(camera)  # the zoom of the whole view, not of a tile

    def one(cam):
        with torch.no_grad():
            return render(source.gaussians, cam, options).rgb

    return render_still(one, camera)


def _label(frame: np.ndarray, text: str) -> np.ndarray:
    """Write a caption in the top-left corner (white on a dark box), for side-by-side."""
    from PIL import Image, ImageDraw, ImageFont

    h = frame.shape[0]
    size = max(10, min(28, h // 22))
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType sizes: the bitmap font
        font = ImageFont.load_default()
    im = Image.fromarray(frame)
    draw = ImageDraw.Draw(im)
    x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
    pad = max(2, size // 4)
    draw.rectangle((0, 0, x1 - x0 + 2 * pad, y1 - y0 + 2 * pad), fill=(0, 0, 0))
    draw.text((pad - x0, pad - y0), text, fill=(255, 255, 255), font=font)
    return np.asarray(im)


def _image_name(name: str, taken: set[str], cam_id) -> str:
    """A safe, unique PNG file name for a camera's img_name."""
    stem = re.sub(r"[\\/:\0]", "_", name).strip() or f"camera_{cam_id}"
    stem = re.sub(r"\.(png|jpe?g|exr|tiff?|webp|bmp)$", "", stem, flags=re.IGNORECASE)
    if stem.startswith("."):
        stem = "_" + stem[1:]
    candidate = stem
    if candidate in taken:
        candidate = f"{stem}_{cam_id}"
    n = 2
    while candidate in taken:
        candidate = f"{stem}_{cam_id}_{n}"
        n += 1
    taken.add(candidate)
    return candidate + ".png"


def _metadata(source: Source, camera, **extra) -> dict[str, str]:
    o = source.options
    meta = {
        "Software": "mipview",
        "mipview.model": str(source.model_path),
        "mipview.camera": json.dumps(camera.to_dict()),
        "mipview.antialias": o.antialias,
        "mipview.backend": o.backend,
        "mipview.sh_degree": "model" if o.sh_degree is None else str(o.sh_degree),
        "mipview.zoom": repr(o.zoom),
    }
    meta.update({f"mipview.{k}": str(v) for k, v in extra.items()})
    return meta


def _scaled_size(width: int, height: int, scale: float) -> tuple[float, float]:
    """The size Camera.scaled(scale) gives, computed without making the camera."""
    return max(1, round(width * scale)), max(1, round(height * scale))


def render_cameras(args, source: Source) -> int:
    """--cameras: every camera of a cameras.json to OUT/<img_name>.png.

    Every size is checked before anything is rendered; the images are rendered into a
    temporary folder beside OUT and moved into OUT once all are done, so an interrupted
    or failed run adds nothing to OUT and replaces nothing in it.
    """
    from render.io import GaussianFileError, load_inria_cameras

    try:
        records = load_inria_cameras(args.cameras)
    except GaussianFileError as e:
        raise UsageError(f"cannot load cameras {e}") from e
    except OSError as e:
        raise UsageError(f"cannot load cameras {args.cameras}: {e.strerror or e}") from e
    field = "width x height" + (f" x --scale {args.scale:g}" if args.scale != 1.0 else "")
    for rec in records:
        w, h = _scaled_size(rec.camera.width, rec.camera.height, args.scale)
        try:
            check_image_size(args.cameras, f"camera {rec.id}: {field}", w, h, tiled=True)
        except LimitError as e:
            raise UsageError(str(e)) from None
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        staging = make_temp_dir(out / ".render")
    except OSError as e:
        raise UsageError(f"cannot create --out {out}: {e.strerror or e}") from e
    taken: set[str] = set()
    names = []
    try:
        with progress_bar(len(records), "render", not args.quiet, "image") as bar:
            for rec in records:
                cam = rec.camera.scaled(args.scale) if args.scale != 1.0 else rec.camera
                rgb = _render_rgb(source, cam)
                name = _image_name(str(rec.name), taken, rec.id)
                save_png(staging / name, rgb, _metadata(source, cam, scale=repr(args.scale),
                                                        camera_id=rec.id, img_name=rec.name))
                names.append(name)
                bar.update(1)
        for name in names:  # renames within one folder: quick, and nothing is half-written
            os.replace(staging / name, out / name)
    except OSError as e:
        print(f"mipview render: cannot write into {out}: {e.strerror or e}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(f"wrote {len(records)} images to {out}", file=sys.stderr)
    return 0


def render_path(args, a: Source, b: Source | None) -> int:
    """--path: every frame of a camera path to a video or a folder of PNGs."""
    from viewer.camera_path import CameraPathError, load_camera_path
    from viewer.video import FrameWriter, VideoError

    try:
        path = load_camera_path(args.path)
    except CameraPathError as e:
        raise UsageError(str(e)) from e
    if args.size:
        path.width, path.height = args.size
    if args.scale != 1.0:
        path.width = max(1, int(round(path.width * args.scale)))
        path.height = max(1, int(round(path.height * args.scale)))
    if args.fps:
        path.fps = args.fps
    _check_path_sizes(args, path, b is not None)
    problems = path.problems()
    if problems:
        raise UsageError(f"camera path {args.path}: " + "; ".join(problems))
    cameras = path.iter_frames()
    meta = {"Software": "mipview", "mipview.model": str(a.model_path),
            "mipview.camera_path": str(args.path), "mipview.antialias": a.options.antialias}
    if b is not None:
        meta.update({"mipview.b_model": str(b.model_path),
                     "mipview.b_antialias": b.options.antialias})
    try:
        with FrameWriter(args.out, fps=path.fps, metadata=meta) as writer, \
                progress_bar(path.n_frames, "render", not args.quiet, "frame") as bar:
            for cam in cameras:
                frame = _render_rgb(a, cam)
                if b is not None:
                    right = _render_rgb(b, cam)
                    if not args.no_labels:
                        frame, right = _label(frame, a.label), _label(right, b.label)
                    frame = np.concatenate([frame, right], axis=1)
                writer.write(frame)
                bar.update(1)
    except (VideoError, OSError) as e:
        print(f"mipview render: cannot write {args.out}: {e}", file=sys.stderr)
        return EXIT_FAILED
    w, h = writer.size
    note = " (padded to even size for H.264)" if writer.padded else ""
    print(f"wrote {writer.frames_written} frames of {w}x{h} at {path.fps:g} fps to "
          f"{args.out}{note}", file=sys.stderr)
    return 0


def _check_path_sizes(args, path, side_by_side: bool) -> None:
    """The frame size (after --size and --scale) and count (fps x seconds, after --fps)
    against the limits and the memory, before anything is rendered."""
    sources = [str(args.path)] + [o for o, v in (("--size", args.size), ("--scale", args.scale
                                  != 1.0), ("--fps", args.fps)) if v]
    source = " with ".join(sources)
    width = path.width * (2 if side_by_side else 1)
    field = "frame size" + (" (A | B side by side)" if side_by_side else "")
    try:
        check_image_size(source, field, width, path.height, tiled=True,
                         max_side=MAX_VIDEO_SIDE if is_video_path(args.out) else MAX_SIDE)
        if math.isfinite(path.fps) and math.isfinite(path.seconds):
            check_frame_count(source, f"fps x seconds ({path.fps:g} x {path.seconds:g})",
                              path.fps * path.seconds)
    except LimitError as e:
        raise UsageError(str(e)) from None


def run(args) -> int:
    try:
        _check_sides(args)
        _check_video_extra(args)
        backend = _resolve_backend(args.backend)
        from render.rasterize import backend_device

        device = backend_device(backend)
        zoom = args.zoom if args.zoom is not None else (args.scale if args.cameras else 1.0)
        # a path's zoom changes from frame to frame: measure it where adaptive needs it
        measure = args.path is not None and args.zoom is None
        model_a = _load_model(args.model, find_cameras=measure)
        aa = args.aa or model_a.antialias  # the file's anti-aliasing tag unless --aa is given
        options = RenderOptions(sh_degree=args.sh_degree, background=tuple(args.background),
                                antialias=aa, backend=backend, zoom=zoom)
        g_a = model_a.gaussians.to(device)
        a = Source(f"A: {Path(args.model).name} {aa}", Path(args.model), g_a, options,
                   _zoom_measure(model_a) if measure and aa in ZOOM_MODES else None)
        b = None
        if args.side_by_side:
            b_path = Path(args.b_model) if args.b_model else a.model_path
            model_b = _load_model(args.b_model, measure) if args.b_model else model_a
            b_aa = args.b_aa or args.aa or model_b.antialias
            g_b = model_b.gaussians.to(device) if args.b_model else g_a
            b = Source(f"B: {b_path.name} {b_aa}", b_path, g_b, options.replace(antialias=b_aa),
                       _zoom_measure(model_b) if measure and b_aa in ZOOM_MODES else None)
        if args.cameras:
            return render_cameras(args, a)
        return render_path(args, a, b)
    except UsageError as e:
        print(f"mipview render: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return interrupted("render")
    except MemoryError:  # the output is removed on the way out (FrameWriter, staging)
        print("mipview render: out of memory while rendering; nothing was written (try a "
              "smaller --size or --scale)", file=sys.stderr)
        return EXIT_FAILED
