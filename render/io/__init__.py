"""Model and camera files: INRIA .ply, SuperSplat compressed .ply, antimatter15 .splat,
Niantic .spz, PlayCanvas SOG, INRIA cameras.json. Every unreadable file raises
:class:`GaussianFileError`."""

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
