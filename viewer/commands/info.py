"""`mipview info MODEL`: what a model file holds, as one JSON object on stdout.

Prints path, format, number of Gaussians, SH degree, the anti-aliasing tag (`model`:
default, antialiased or 2dgs, and `antialias`: the mode mipview draws it in by default),
bounds of the centres, scene extent, the training cameras found next to the model (count
and path) and the number of Gaussians dropped as invalid. A file that cannot be read
exits 1 with the reason on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys

from render.io import GaussianFileError
from render.io.summary import model_summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a .ply (INRIA or SuperSplat compressed), .splat, .spz "
                                      "or SOG (.sog, a folder or its meta.json)")
    parser.add_argument("--no-cameras", action="store_true",
                        help="do not look for a cameras.json next to the model")


def run(args: argparse.Namespace) -> int:
    try:
        summary = model_summary(args.model, find_cameras=not args.no_cameras)
    except GaussianFileError as e:
        print(f"mipview info: {e}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=2))
    return 0
