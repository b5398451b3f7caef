"""Posed image sets on disk: the NeRF-synthetic (Blender) layout and INRIA-style cameras.json.

NeRF-synthetic: a folder holding `transforms_{train,test,val}.json`, each with
`camera_angle_x` (horizontal field of view, radians) and `frames`, each frame a
`file_path` (relative to the folder, with or without `.png`) and a `transform_matrix`
(camera-to-world, OpenGL axes: x right, y up, z backward). Images are RGBA; they are
composited on a background (white for the usual protocol) and area-downsampled to the
requested scale, which is how the multi-scale ground truth of Mip-NeRF / Mip-Splatting /
Mipmap-GS is made. Scale 1/4 of the 800 x 800 lego images is 200 x 200.

Loaded images are cached in memory per (file, mtime, scale, background), so asking for
the same split twice costs nothing; the cached tensors are shared, so callers must not
modify them in place.
"""

from __future__ import annotations

import json
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from render.camera import Camera
from render.io.cameras_json import load_inria_cameras
from render.io.errors import GaussianFileError
from render.io.limits import LimitError, load_json_bounded

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".PNG", ".JPG", ".JPEG")


class DatasetError(GaussianFileError):
    """A posed image set that cannot be read: names the file and says what is wrong.

    A GaussianFileError, so code that reports bad files catches both with one clause.
    """


@dataclass
class PosedImages:
    """Images with their cameras, all of one size.

    Attributes:
        cameras: one per image, OpenCV convention, at the images' pixel size.
        images: RGB composited on the background, in [0, 1]. [N, H, W, 3] float32
        names: the frames' file paths as written in the transforms file.
        scale: the images' size relative to the files on disk (1/4: a quarter).
        source: the file the cameras came from.
    """

    cameras: list[Camera]
    images: Tensor
    names: list[str]
    scale: float
    source: Path

    def __len__(self) -> int:
        return len(self.cameras)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return int(self.images.shape[2]), int(self.images.shape[1])

    def subset(self, indices: list[int]) -> PosedImages:
        idx = list(indices)
        return PosedImages([self.cameras[i] for i in idx], self.images[idx],
                           [self.names[i] for i in idx], self.scale, self.source)


# -- scales ---------------------------------------------------------------------------------

def parse_scale(text: str | float) -> float:
    """'1/4' -> 0.25, '0.5' -> 0.5, '2' -> 2.0; positive only."""
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        s = str(text).strip().lower().lstrip("x")
        try:
            if "/" in s:
                num, den = s.split("/", 1)
                value = float(num) / float(den)
            else:
                value = float(s)
        except (ValueError, ZeroDivisionError):
            raise ValueError(f"not a scale: {text!r} (use e.g. 1/4, 0.5 or 2)") from None
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"scale must be positive, got {text!r}")
    return value


def format_scale(value: float) -> str:
    """0.25 -> '1/4', 2.0 -> '2', 0.3 -> '0.3'."""
    if value >= 1 and float(value).is_integer():
        return str(int(value))
    inv = 1.0 / value
    if abs(inv - round(inv)) < 1e-6:
        return f"1/{int(round(inv))}"
    return f"{value:g}"


def scaled_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """Pixel size of a (width, height) image at `scale`, at least 1 x 1."""
    return max(1, int(round(width * scale))), max(1, int(round(height * scale)))


# -- images ---------------------------------------------------------------------------------

def area_resize(image: Tensor, width: int, height: int) -> Tensor:
    """Resize with an area (box) filter: each output pixel averages the input it covers.

    For integer reduction factors this is the exact mean of each k x k block, the
    antialiased downsampling the multi-scale ground truth uses. Upsizing falls back to
    bilinear (area has nothing to average there). [H, W, C] -> [height, width, C]
    """
    if image.shape[0] == height and image.shape[1] == width:
        return image
    x = image.permute(2, 0, 1)[None].float()
    if height <= image.shape[0] and width <= image.shape[1]:
        y = F.interpolate(x, size=(height, width), mode="area")
    else:
        y = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False,
                          antialias=True)
    return y[0].permute(1, 2, 0).contiguous()


def read_rgb(path: Path, background: tuple[float, float, float]) -> Tensor:
    """An image file as RGB in [0, 1], alpha composited on `background`. [H, W, 3]"""
    try:
        with Image.open(path) as im:
            im.load()
            has_alpha = im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency"
                                                       in im.info)
            arr = np.asarray(im.convert("RGBA" if has_alpha else "RGB"), dtype=np.float32)
    except FileNotFoundError:
        raise DatasetError(path, "image file not found") from None
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise DatasetError(path, f"cannot read image: {e}") from None
    if arr.shape[-1] == 4:
        a = arr[..., 3:] * np.float32(1.0 / 255.0)
        rgb = arr[..., :3]
        rgb *= a / np.float32(255.0)
        # Straight (non-premultiplied) alpha: composite before any filtering, so edges
        # average against the background the ground truth is scored on.
        rgb += (1.0 - a) * np.asarray(background, dtype=np.float32)
        arr = rgb
    else:
        arr = arr * np.float32(1.0 / 255.0)
    return torch.from_numpy(np.ascontiguousarray(arr))


_cache: dict[tuple, tuple[Tensor, int, int]] = {}
_split_cache: dict[tuple, PosedImages] = {}
_cache_lock = threading.Lock()


def _load_image(path: Path, scale: float, background: tuple[float, float, float],
                size: tuple[int, int] | None = None) -> tuple[Tensor, int, int]:
    """(image at scale [h, w, 3], full width, full height)."""
    full = read_rgb(path, background)
    fh, fw = full.shape[:2]
    w, h = size if size is not None else scaled_size(fw, fh, scale)
    return area_resize(full, w, h), fw, fh


def _load_image_cached(path: Path, scale: float, background: tuple[float, float, float],
                       size: tuple[int, int] | None = None) -> tuple[Tensor, int, int]:
    """:func:`_load_image`, cached per file version."""
    try:
        mtime = path.stat().st_mtime_ns
    except FileNotFoundError:
        raise DatasetError(path, "image file not found") from None
    key = (str(path.resolve()), mtime, float(scale), tuple(background), size)
    with _cache_lock:
        hit = _cache.get(key)
    if hit is not None:
        return hit
    entry = _load_image(path, scale, background, size)
    with _cache_lock:
        _cache[key] = entry
    return entry


def clear_cache() -> None:
    """Forget every cached image (tests, or to free memory)."""
    with _cache_lock:
        _cache.clear()
        _split_cache.clear()


def _resolve_image(folder: Path, file_path: str, source: Path) -> Path:
    """The image file a frame names; NeRF-synthetic leaves out the extension."""
    p = folder / file_path
    if p.suffix in IMAGE_SUFFIXES and p.is_file():
        return p
    for suffix in IMAGE_SUFFIXES:
        q = p.with_name(p.name + suffix)
        if q.is_file():
            return q
    tried = ", ".join(IMAGE_SUFFIXES[:3])
    raise DatasetError(source, f"frame {file_path!r}: no image file {p} (tried {tried})")


# -- NeRF-synthetic -------------------------------------------------------------------------

def transforms_path(folder: str | Path, split: str) -> Path:
    """The transforms file of a split; `folder` may also be the file itself."""
    folder = Path(folder)
    if folder.is_file():
        return folder
    if not folder.exists():
        raise DatasetError(folder, "no such folder")
    path = folder / f"transforms_{split}.json"
    if not path.is_file():
        found = sorted(p.name for p in folder.glob("transforms_*.json"))
        hint = f" (found {', '.join(found)})" if found else " (no transforms_*.json at all)"
        raise DatasetError(path, f"missing: not a NeRF-synthetic folder for split {split!r}"
                           + hint)
    return path


def _read_json(path: Path):
    """A transforms file parsed with limits (size, depth, finite numbers); DatasetError."""
    try:
        return load_json_bounded(path, "transforms file")
    except LimitError as e:
        raise DatasetError(path, f"{e.field} {e.value}: {e.limit}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetError(path, f"not valid JSON: {e}") from None
    except OSError as e:
        raise DatasetError(path, f"cannot read: {e.strerror or e}") from None


def read_transforms(path: Path) -> tuple[float, list[tuple[str, np.ndarray]]]:
    """(camera_angle_x in radians, [(file_path, c2w [4, 4] OpenGL axes)]), validated."""
    meta = _read_json(path)
    if not isinstance(meta, dict):
        raise DatasetError(path, "top level must be an object with camera_angle_x and frames")
    angle = meta.get("camera_angle_x")
    if not isinstance(angle, (int, float)) or not 0 < float(angle) < math.pi:
        raise DatasetError(path, f"camera_angle_x must be an angle in (0, pi) radians, "
                                 f"got {angle!r}")
    frames = meta.get("frames")
    if not isinstance(frames, list) or not frames:
        raise DatasetError(path, "'frames' must be a non-empty list")
    out = []
    for i, fr in enumerate(frames):
        if not isinstance(fr, dict) or "file_path" not in fr or "transform_matrix" not in fr:
            raise DatasetError(path, f"frame {i} needs file_path and transform_matrix")
        try:
            m = np.asarray(fr["transform_matrix"], dtype=np.float64)
        except (TypeError, ValueError):
            m = np.zeros(0)
        if m.shape not in ((4, 4), (3, 4)) or not np.isfinite(m).all():
            raise DatasetError(path, f"frame {i} ({fr['file_path']}): transform_matrix must "
                                     f"be a finite 4x4 matrix, got shape {m.shape}")
        if m.shape == (3, 4):
            m = np.vstack([m, [0.0, 0.0, 0.0, 1.0]])
        if abs(np.linalg.det(m[:3, :3])) < 1e-6:
            raise DatasetError(path, f"frame {i} ({fr['file_path']}): singular rotation")
        out.append((str(fr["file_path"]), m))
    return float(angle), out


def load_nerf_synthetic(
    folder: str | Path,
    split: str = "train",
    scale: float | str = 1.0,
    background: tuple[float, float, float] = (1.0, 1.0, 1.0),
    limit: int | None = None,
    every: int = 1,
) -> PosedImages:
    """Load one split of a NeRF-synthetic folder at a scale.

    Args:
        folder: the scene folder (holding transforms_<split>.json), or the json itself.
        split: `train`, `test` or `val`.
        scale: image size relative to the files (1/4: 800 -> 200); '1/4' strings accepted.
        background: RGB the alpha channel is composited on (white: the usual protocol).
        limit: keep the first `limit` frames (after `every`), None for all.
        every: keep every `every`-th frame.

    Returns:
        PosedImages with cameras at the scaled size: focal length from camera_angle_x and
        the scaled width, principal point at the image centre.

    Raises:
        DatasetError naming the file and the problem.
    """
    scale = parse_scale(scale)
    path = transforms_path(folder, split)
    root = path.parent
    angle, frames = read_transforms(path)
    frames = frames[::max(1, int(every))]
    if limit is not None:
        frames = frames[: max(0, int(limit))]
    key = (str(path.resolve()), path.stat().st_mtime_ns, scale, tuple(background),
           limit, every)
    with _cache_lock:
        hit = _split_cache.get(key)
    if hit is not None:
        return hit
    derived = _derive_from_cached(key)
    if derived is not None:
        cameras = [Camera.from_blender(c2w, angle, derived.shape[2], derived.shape[1])
                   for _, c2w in frames]
        result = PosedImages(cameras, derived, [f for f, _ in frames], scale, path)
        with _cache_lock:
            _split_cache[key] = result
        return result
    paths = [_resolve_image(root, file_path, path) for file_path, _ in frames]
    # PNG decoding releases the GIL: a few threads overlap it with the filtering.
    with ThreadPoolExecutor(max_workers=4) as pool:
        loaded = list(pool.map(lambda p: _load_image(p, scale, background), paths))
    if not loaded:
        raise DatasetError(path, "no frames left after every/limit")
    size = (loaded[0][0].shape[1], loaded[0][0].shape[0])
    cameras, images, names = [], [], []
    for (file_path, c2w), img_path, (img, fw, fh) in zip(frames, paths, loaded, strict=True):
        if (img.shape[1], img.shape[0]) != size:
            raise DatasetError(img_path, f"size {fw}x{fh} differs from the split's first image")
        cameras.append(Camera.from_blender(c2w, angle, size[0], size[1]))
        images.append(img)
        names.append(file_path)
    result = PosedImages(cameras, torch.stack(images), names, scale, path)
    with _cache_lock:
        _split_cache[key] = result
    return result


def _derive_from_cached(key: tuple) -> Tensor | None:
    """The images of `key` area-reduced from a cached finer scale of the same split, when
    the ratio is a whole number and the sizes divide exactly: the block mean of block
    means is the block mean, so this equals loading from the files. [N, h, w, 3] or None
    """
    path, mtime, scale, bg, limit, every = key
    with _cache_lock:
        entries = list(_split_cache.items())
    for (p, m, s, b, lim, ev), hit in entries:
        if (p, m, b, lim, ev) != (path, mtime, bg, limit, every) or s <= scale:
            continue
        ratio = s / scale
        w, h = hit.size
        if abs(ratio - round(ratio)) > 1e-9 or w % round(ratio) or h % round(ratio):
            continue
        k = int(round(ratio))
        x = hit.images.permute(0, 3, 1, 2)
        return F.avg_pool2d(x, k).permute(0, 2, 3, 1).contiguous()
    return None


def load_nerf_synthetic_cameras(folder: str | Path, split: str = "train",
                                scale: float | str = 1.0) -> list[Camera]:
    """The cameras of a split at a scale, without decoding the images (only the first
    image's header is read, for the size)."""
    scale = parse_scale(scale)
    path = transforms_path(folder, split)
    angle, frames = read_transforms(path)
    first = _resolve_image(path.parent, frames[0][0], path)
    try:
        with Image.open(first) as im:
            fw, fh = im.size
    except (OSError, ValueError) as e:
        raise DatasetError(first, f"cannot read image: {e}") from None
    w, h = scaled_size(fw, fh, scale)
    return [Camera.from_blender(c2w, angle, w, h) for _, c2w in frames]


def scene_box(folder: str | Path) -> tuple[Tensor, Tensor]:
    """The axis-aligned box to initialise Gaussians in, ([3], [3]) world units.

    NeRF-synthetic objects sit in [-1.5, 1.5]^3 around the origin; that is the usual
    random-init box. A folder may override it with `aabb` ([[x0,y0,z0],[x1,y1,z1]]) in
    its train transforms, as instant-ngp style exports do.
    """
    path = transforms_path(folder, "train")
    meta = _read_json(path)
    aabb = meta.get("aabb") if isinstance(meta, dict) else None
    if aabb is not None:
        try:
            box = torch.tensor(aabb, dtype=torch.float32).reshape(2, 3)
        except (TypeError, ValueError, RuntimeError):
            raise DatasetError(path, f"aabb must be [[x0,y0,z0],[x1,y1,z1]], got {aabb!r}")\
                from None
        return box[0], box[1]
    return torch.full((3,), -1.5), torch.full((3,), 1.5)


# -- INRIA cameras.json with an image folder ------------------------------------------------

def load_cameras_json_images(
    cameras_json: str | Path,
    images_dir: str | Path,
    scale: float | str = 1.0,
    background: tuple[float, float, float] = (1.0, 1.0, 1.0),
    limit: int | None = None,
) -> PosedImages:
    """Posed images from an INRIA 3DGS `cameras.json` and the folder of its images.

    Each entry holds `img_name` (without extension), `width`, `height`, `position`
    (camera centre, world), `rotation` (camera-to-world 3x3, OpenCV axes), `fx`, `fy`.
    The images are resized (area filter) to `scale` times the size the entry states, so
    images on disk at another size than the cameras were solved at still line up.
    """
    scale = parse_scale(scale)
    cameras_json = Path(cameras_json)
    images_dir = Path(images_dir)
    records = load_inria_cameras(cameras_json)  # raises GaussianFileError naming the file
    if limit is not None:
        records = records[: max(0, int(limit))]
    if not records:
        raise DatasetError(cameras_json, "no cameras left after limit")
    cameras, images, names = [], [], []
    size = None
    for i, rec in enumerate(records):
        cam = rec.camera
        w, h = scaled_size(cam.width, cam.height, scale)
        if size is None:
            size = (w, h)
        elif (w, h) != size:
            raise DatasetError(cameras_json, f"camera {i} is {cam.width}x{cam.height}, "
                                             "unlike the first; one size per set")
        img_path = _resolve_image(images_dir, rec.name, cameras_json)
        img, _, _ = _load_image_cached(img_path, scale, background, size=(w, h))
        cameras.append(cam.resized(w, h))
        images.append(img)
        names.append(rec.name)
    return PosedImages(cameras, torch.stack(images), names, scale, cameras_json)
