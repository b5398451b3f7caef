"""`mipview convert IN OUT`: a model from any format mipview reads to any it writes.

    mipview convert scene.ply scene.spz
    mipview convert scene.sog scene.compressed.ply --tag antialiased

IN is told from its content (.ply, compressed .ply, .splat, .spz, .sog, a SOG folder or
its meta.json); OUT's format from its name (.ply, .compressed.ply, .splat, .spz, .sog,
meta.json). The anti-aliasing tag is kept (`--tag` sets another); a .splat cannot hold
it, nor SH above degree 0, and says so. An existing OUT is kept unless --force. Progress
goes to stderr (a bar for files over 16 MiB), then one line saying what was written.
Exit 0 on success, 2 for bad input (unreadable IN, a name that says no format), 1 when
OUT cannot be written.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tqdm import tqdm

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
BAR_FROM_BYTES = 16 << 20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="model to read (.ply, .compressed.ply, .splat, .spz, "
                                      ".sog, a SOG folder or meta.json)")
    parser.add_argument("output", help="file to write; the format comes from the name: .ply, "
                                       ".compressed.ply, .splat, .spz, .sog or meta.json")
    parser.add_argument("--tag", choices=("keep", "default", "antialiased", "2dgs"),
                        default="keep", help="anti-aliasing tag to write (default: IN's)")
    parser.add_argument("--force", action="store_true", help="replace an existing OUTPUT")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _size(path: Path) -> int:
    try:
        if path.is_dir():
            return sum(p.stat().st_size for p in path.iterdir() if p.is_file())
        return path.stat().st_size
    except OSError:
        return 0


def run(args: argparse.Namespace) -> int:
    """Convert; Ctrl-C exits 130 with OUT untouched (it is written under a temporary name)."""
    from viewer.commands.progress import interrupted

    try:
        return _convert(args)
    except KeyboardInterrupt:
        return interrupted("convert")


def _convert(args: argparse.Namespace) -> int:
    from render.io import GaussianFileError, format_for_path, load_model, save_model

    src, out = Path(args.input), Path(args.output)
    try:
        fmt = format_for_path(out)
    except ValueError as exc:
        print(f"mipview convert: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if out.exists() and not args.force:
        print(f"mipview convert: {out} exists; pass --force to replace it", file=sys.stderr)
        return EXIT_BAD_INPUT
    if out.exists() and src.exists() and out.resolve() == src.resolve():
        print(f"mipview convert: {out} is the input itself", file=sys.stderr)
        return EXIT_BAD_INPUT
    bar = tqdm(total=2, unit="step", desc=f"convert {src.name}", file=sys.stderr,
               disable=args.quiet or _size(src) < BAR_FROM_BYTES, leave=False)
    t0 = time.perf_counter()
    with bar:
        bar.set_postfix_str("reading")
        try:
            model = load_model(src, find_cameras=False)
        except GaussianFileError as exc:
            print(f"mipview convert: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
        bar.update(1)
        bar.set_postfix_str(f"writing {fmt}")
        tag = model.splat_model if args.tag == "keep" else args.tag
        try:
            written = save_model(model.gaussians, out, model=tag, fmt=fmt)
        except (OSError, ValueError, RuntimeError) as exc:
            print(f"mipview convert: cannot write {out}: {exc}", file=sys.stderr)
            return EXIT_FAILED
        bar.update(1)
    for warning in model.warnings:
        print(f"mipview convert: {src}: {warning}", file=sys.stderr)
    g = model.gaussians
    if fmt == "splat":
        lost = ["the tag"] if tag != "default" else []
        lost += [f"SH degree {g.sh_degree}"] if g.sh_degree else []
        if lost:
            print(f"mipview convert: a .splat cannot hold {' or '.join(lost)}: written "
                  "without", file=sys.stderr)
    elif fmt == "spz" and tag == "2dgs":
        print("mipview convert: .spz has no 2dgs flag: written untagged", file=sys.stderr)
    print(f"wrote {written} ({fmt}, {len(g):,} Gaussians, SH degree "
          f"{g.sh_degree if fmt != 'splat' else 0}, tag {tag if fmt != 'splat' else 'none'}, "
          f"{_size(written) / 2**20:.1f} MiB) in {time.perf_counter() - t0:.1f} s",
          file=sys.stderr)
    return 0
