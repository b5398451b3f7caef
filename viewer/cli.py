"""`mipview` command line: `mipview [MODEL]` opens the viewer; subcommands do the rest."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# Before any torch import: torch's OpenMP threads otherwise spin between ops and take the
# cores from the CPU rasterizer's threads (measured: forward 81 -> 68 ms, backward 112 -> 89 ms).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# torch's CPU buffers of 2 MiB and more on transparent huge pages (numpy's already are):
# a finetune step allocates ~10 tensors of N x 48 floats, each a fresh mmap that faulted
# in 4 KiB at a time (272k Gaussians: 16 ms a 52 MB copy, 5 ms on huge pages; a step
# 173 -> 140 ms). Read once, at torch's first allocation.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

from viewer.memory import tame_malloc  # noqa: E402  (after the OpenMP setting)

# subcommand -> module in viewer/commands with add_arguments(parser) and run(args) -> int
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "info": ("viewer.commands.info", "print a model's format, size and bounds as JSON"),
    "render": ("viewer.commands.render_cmd", "render cameras or a camera path headless"),
    "adapt": ("viewer.commands.adapt_cmd", "build one Mipmap-GS scale level headless"),
    "train": ("viewer.commands.train_cmd", "train a base model on a NeRF-synthetic folder"),
    "eval": ("viewer.commands.eval_cmd", "single-scale-train / multi-scale-test evaluation"),
    "convert": ("viewer.commands.convert_cmd", "convert a model between .ply, .spz, .sog, ..."),
    "view": ("viewer.commands.view", "open the viewer (the default)"),
}


def build_parser(name: str) -> argparse.ArgumentParser:
    module, help_text = SUBCOMMANDS[name]
    parser = argparse.ArgumentParser(prog=f"mipview {name}" if name != "view" else "mipview",
                                     description=help_text)
    importlib.import_module(module).add_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        print("usage: mipview [MODEL] [options]   open the viewer (mipview view --help)")
        for name, (_, help_text) in SUBCOMMANDS.items():
            print(f"       mipview {name:<7} ...          {help_text}")
        return 0
    name = argv.pop(0) if argv and argv[0] in SUBCOMMANDS else "view"
    args = build_parser(name).parse_args(argv)
    module = importlib.import_module(SUBCOMMANDS[name][0])
    # Every subcommand streams frames or training steps: their buffers stay in the heap.
    tame_malloc()
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
