"""`save_model`: write a set in the format its file name asks for, with its tag.

| name | format |
|---|---|
| `*.compressed.ply` | SuperSplat compressed .ply |
| `*.ply` | INRIA .ply |
| `*.splat` | antimatter15 .splat (no place for the tag: it is lost) |
| `*.spz` | Niantic .spz, version 4 |
| `*.sog` | PlayCanvas SOG, zipped |
| `meta.json` | PlayCanvas SOG, a folder of files beside it |
"""

from __future__ import annotations

from pathlib import Path

from render.gaussians import Gaussians
from render.io.compressed_ply import save_compressed_ply
from render.io.inria_ply import save_ply
from render.io.sog import META_NAME
from render.io.sog_write import save_sog
from render.io.splat import save_splat
from render.io.splat_model import check_model
from render.io.spz import save_spz

WRITE_FORMATS = ("inria_ply", "compressed_ply", "splat", "spz", "sog")
TAGLESS_FORMATS = ("splat",)


def format_for_path(path: str | Path) -> str:
    """The format a file name asks for; ValueError for a name that says none."""
    name = Path(path).name.lower()
    if name.endswith(".compressed.ply"):
        return "compressed_ply"
    if name == META_NAME:
        return "sog"
    suffix = Path(name).suffix
    formats = {".ply": "inria_ply", ".splat": "splat", ".spz": "spz", ".sog": "sog"}
    if suffix not in formats:
        raise ValueError(
            f"cannot tell the format from the name {Path(path).name!r}: use .ply, "
            ".compressed.ply, .splat, .spz, .sog or meta.json")
    return formats[suffix]


def save_model(gaussians: Gaussians, path: str | Path, model: str = "default",
               fmt: str | None = None) -> Path:
    """Save `gaussians` to `path` in `fmt` (default: from the name), tagged with `model`
    ("default", "antialiased" or "2dgs"; a .splat cannot hold it). Every writer writes
    to a temporary name and renames. Returns the path written."""
    check_model(model)
    fmt = fmt or format_for_path(path)
    if fmt == "inria_ply":
        return save_ply(gaussians, path, model=model)
    if fmt == "compressed_ply":
        return save_compressed_ply(gaussians, path, model=model)
    if fmt == "splat":
        return save_splat(gaussians, path)
    if fmt == "spz":
        return save_spz(gaussians, path, model=model)
    if fmt == "sog":
        return save_sog(gaussians, path, model=model)
    raise ValueError(f"unknown format {fmt!r}; one of {WRITE_FORMATS}")
