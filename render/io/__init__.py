"""Model and camera files: INRIA .ply, SuperSplat compressed .ply, antimatter15 .splat,
Niantic .spz, PlayCanvas SOG, INRIA cameras.json. Every unreadable file raises
:class:`GaussianFileError`.

The names below are loaded on first use (PEP 562): `mipview info` reads a file's header
and rows with numpy alone and must not pay for importing torch (see render/__init__.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from render.lazy import lazy_exports

if TYPE_CHECKING:
    from render.io.cameras_json import (
        CameraRecord,
        find_cameras_json,
        load_inria_cameras,
        save_inria_cameras,
    )
    from render.io.compressed_ply import save_compressed_ply
    from render.io.errors import GaussianFileError
    from render.io.inria_ply import save_ply
    from render.io.model import FORMATS, LoadedModel, detect_format, load_model
    from render.io.save import format_for_path, save_model
    from render.io.sog_write import save_sog
    from render.io.splat import save_splat
    from render.io.splat_model import SPLAT_MODELS, antialias_for, model_for_antialias
    from render.io.spz import save_spz

# exported name -> module that defines it
_EXPORTS = {
    "CameraRecord": "render.io.cameras_json",
    "find_cameras_json": "render.io.cameras_json",
    "load_inria_cameras": "render.io.cameras_json",
    "save_inria_cameras": "render.io.cameras_json",
    "save_compressed_ply": "render.io.compressed_ply",
    "GaussianFileError": "render.io.errors",
    "save_ply": "render.io.inria_ply",
    "FORMATS": "render.io.model",
    "LoadedModel": "render.io.model",
    "detect_format": "render.io.model",
    "load_model": "render.io.model",
    "format_for_path": "render.io.save",
    "save_model": "render.io.save",
    "save_sog": "render.io.sog_write",
    "save_splat": "render.io.splat",
    "SPLAT_MODELS": "render.io.splat_model",
    "antialias_for": "render.io.splat_model",
    "model_for_antialias": "render.io.splat_model",
    "save_spz": "render.io.spz",
}

__all__ = [
    "FORMATS",
    "CameraRecord",
    "GaussianFileError",
    "LoadedModel",
    "SPLAT_MODELS",
    "antialias_for",
    "detect_format",
    "find_cameras_json",
    "format_for_path",
    "load_inria_cameras",
    "load_model",
    "model_for_antialias",
    "save_compressed_ply",
    "save_inria_cameras",
    "save_model",
    "save_ply",
    "save_sog",
    "save_splat",
    "save_spz",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
