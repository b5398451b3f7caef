"""Model and camera files: INRIA .ply, SuperSplat compressed .ply, antimatter15 .splat,
INRIA cameras.json. Every unreadable file raises :class:`GaussianFileError`."""

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
from render.io.splat import save_splat

__all__ = [
    "FORMATS",
    "CameraRecord",
    "GaussianFileError",
    "LoadedModel",
    "detect_format",
    "find_cameras_json",
    "load_inria_cameras",
    "load_model",
    "save_compressed_ply",
    "save_inria_cameras",
    "save_ply",
    "save_splat",
]
