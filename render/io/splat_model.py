"""The anti-aliasing tag: how a file says its Gaussians must be drawn.

Splat tools agree on three "models" (PlayCanvas splat-transform's names):

- `default`: classic 3DGS, the 2D dilation of 0.3 pixel^2;
- `antialiased`: trained with the Mip-Splatting 2D filter, which must also draw it
  (mipview's `mip` antialias mode);
- `2dgs`: 2D Gaussian surfels (mipview draws them as flat 3D Gaussians, classic).

Each format spells it its own way: a PLY header comment `SplatRenderMode: default | mip
| 2dgs` (Brush, splat-transform) or `antialiased 0 | 1` (Postshot), the `"model"` field
of a SOG's meta.json, bit 0 of the flags byte of an SPZ header. An antimatter15 .splat
has no place for it.
"""

from __future__ import annotations

from collections.abc import Iterable

SPLAT_MODELS: tuple[str, ...] = ("default", "antialiased", "2dgs")
_MODE_TO_MODEL = {"default": "default", "mip": "antialiased", "2dgs": "2dgs"}
_MODEL_TO_MODE = {v: k for k, v in _MODE_TO_MODEL.items()}
_MODE_KEY = "splatrendermode:"
_AA_KEY = "antialiased "


def model_from_ply_comments(comments: Iterable[str]) -> str:
    """The model a PLY header's comments declare; `default` when none does.

    Case-insensitive; the last matching comment wins, as in Brush's importer.
    """
    model = "default"
    for comment in comments:
        c = comment.strip().lower()
        if c.startswith(_MODE_KEY):
            model = _MODE_TO_MODEL.get(c[len(_MODE_KEY):].strip(), model)
        elif c.startswith(_AA_KEY):
            value = c[len(_AA_KEY):].strip()
            if value in ("0", "1"):
                model = "antialiased" if value == "1" else "default"
    return model


def ply_comments_for(model: str) -> list[str]:
    """The header comments that tag a PLY with `model` (none for `default`)."""
    check_model(model)
    return [] if model == "default" else [f"SplatRenderMode: {_MODEL_TO_MODE[model]}"]


def antialias_for(model: str) -> str:
    """The mipview antialias mode that draws a model as it was trained."""
    return "mip" if model == "antialiased" else "classic"


def model_for_antialias(antialias: str) -> str:
    """The tag for a set finetuned / shown in a mipview antialias mode."""
    return "antialiased" if antialias == "mip" else "default"


def check_model(model: str) -> str:
    if model not in SPLAT_MODELS:
        raise ValueError(f"model must be one of {SPLAT_MODELS}, got {model!r}")
    return model
