"""`mipview [MODEL]`: open the viewer (the default subcommand).

    mipview                                  the built-in demo scene
    mipview model.ply                        a model (cameras.json next to it is used)
    mipview model.ply --snapshot out.png     open the real window, wait for the first
                                             full-resolution frame, save the window's
                                             pixels (UI included), exit 0
    --camera PATH.json   start at a camera: a nerfstudio camera_path.json (its first
                         frame), a Camera JSON (viewmat, fx, fy, ...), or an INRIA
                         cameras.json (its first camera)
    --size WxH           window size (default 1280x800)
    --backend NAME       auto, cpu, cuda or reference
    --compare MODE       single, split or side_by_side; --antialias MODE for source A
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from render.camera import Camera
from render.io.limits import load_json_bounded
from render.options import ANTIALIAS_MODES, BACKENDS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", nargs="?",
                        help="model file (.ply, .splat, .spz, .sog); default: demo")
    parser.add_argument("--snapshot", metavar="OUT.png",
                        help="save the window's first full-resolution frame and exit")
    parser.add_argument("--camera", metavar="PATH.json", help="start at this camera")
    parser.add_argument("--size", default="1280x800", metavar="WxH", help="window size")
    parser.add_argument("--backend", default="auto", choices=BACKENDS)
    parser.add_argument("--compare", choices=("single", "split", "side_by_side"),
                        default="single", help="start in this compare mode (B: the same "
                        "model with the other antialias mode)")
    parser.add_argument("--antialias", choices=ANTIALIAS_MODES,
                        default=None, help="antialias mode of source A (default: the "
                        "model's tag, mip for a file tagged anti-aliased, else classic)")
    parser.add_argument("--no-panels", action="store_true", help="start with the panels hidden")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="--snapshot: give up after this many seconds (exit 1)")


def parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise SystemExit(f"mipview: --size wants WxH, e.g. 1280x800, got {text!r}") from None
    if w < 16 or h < 16 or w > 16384 or h > 16384:
        raise SystemExit(f"mipview: --size {text}: each side must be 16..16384 pixels")
    return w, h


def load_start_camera(path: str | Path) -> Camera:
    """The first camera of a camera file (see the module doc); SystemExit naming the file
    and the problem when it is none of those."""
    path = Path(path)
    try:
        data = load_json_bounded(path, "camera file")  # bounded depth, size, finite numbers
    except (OSError, ValueError) as exc:
        raise SystemExit(f"mipview: --camera {path}: {exc}") from None
    if isinstance(data, dict) and "viewmat" in data:
        try:
            return Camera.from_dict(data)
        except (KeyError, ValueError, TypeError) as exc:
            raise SystemExit(f"mipview: --camera {path}: not a camera: {exc}") from None
    if isinstance(data, dict) and ("camera_path" in data or "keyframes" in data):
        from viewer.camera_path import CameraPathError, load_camera_path

        try:
            cp = load_camera_path(path)
            return cp.camera_at(0.0)
        except CameraPathError as exc:
            raise SystemExit(f"mipview: --camera: {exc}") from None
    if isinstance(data, list):
        from render.io import GaussianFileError, load_inria_cameras

        try:
            records = load_inria_cameras(path)
        except GaussianFileError as exc:
            raise SystemExit(f"mipview: --camera: {exc}") from None
        if records:
            return records[0].camera
    raise SystemExit(f"mipview: --camera {path}: neither a camera_path.json, a camera JSON "
                     "(viewmat, fx, fy, cx, cy, width, height) nor a cameras.json")


def run(args: argparse.Namespace) -> int:
    size = parse_size(args.size)
    start = load_start_camera(args.camera) if args.camera else None
    if args.snapshot:  # before the model loads and the window opens
        from viewer.commands.outputs import OutputError, check_output_path

        try:
            check_output_path(args.snapshot, "--snapshot", (".png",),
                              inputs=[args.model, args.camera], make_parent=True)
        except OutputError as exc:
            print(f"mipview: {exc}", file=sys.stderr)
            return 2
    from viewer.models import demo_model, file_model

    if args.model:
        from render.io import GaussianFileError

        try:
            model = file_model(args.model)
        except (GaussianFileError, OSError) as exc:
            print(f"mipview: {exc}", file=sys.stderr)
            return 2
    else:
        model = demo_model()
    from viewer.app import ViewerApp, with_camera

    try:
        app = ViewerApp(model, size=size, backend=args.backend, vsync=not args.snapshot)
    except RuntimeError as exc:
        print(f"mipview: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a model the view cannot frame: one line, no traceback
        print(f"mipview: cannot show {model.name}: {type(exc).__name__}: {exc}",
              file=sys.stderr)
        return 2
    app.state.compare.mode = args.compare
    app.state.render.antialias = args.antialias or model.antialias
    app.state.ui.show_panels = not args.no_panels
    if start is not None:
        # The window's aspect wins; the camera's pose and vertical field of view are kept.
        with_camera(app, start)
    if args.snapshot:
        return app.run_snapshot(args.snapshot, timeout_s=args.timeout)
    return app.run()
