"""Screenshots: PNG files with text metadata, written atomically under names that never collide.

The viewer and `mipview render` both save through :func:`save_png`, so every image mipview
writes carries what made it (camera, model, sources, scale) as PNG text chunks that any
PNG reader shows (`read_png_metadata`, `exiftool`, `identify -verbose`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from render.io.atomic import atomic_open
from render.io.limits import TILE_SIDE, LimitError, check_image_size

# Names handed out by timestamped_path in this process: two screenshots taken within the
# same second get different names even before the first one is written.
_handed_out: set[Path] = set()
_handed_out_lock = threading.Lock()


def to_uint8(rgb) -> np.ndarray:
    """An image in [0, 1] as 8-bit pixels.

    Args:
        rgb: torch tensor or numpy array [H, W, C] (C = 1, 3 or 4), float in [0, 1]
            (values outside are clipped, NaN becomes 0), or already uint8 (returned as is).

    Returns:
        contiguous numpy uint8 array [H, W, C], rounded to nearest.
    """
    if hasattr(rgb, "detach"):  # a torch tensor, possibly on the GPU or in a graph
        rgb = rgb.detach().to("cpu").numpy()
    arr = np.asarray(rgb)
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an image [H, W, 1|3|4], got shape {arr.shape}")
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    arr = np.nan_to_num(arr.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    return np.ascontiguousarray(np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8))


def _png_info(metadata: dict[str, str]) -> PngInfo:
    """PNG text chunks: tEXt where the value is Latin-1, iTXt (UTF-8) where it is not."""
    info = PngInfo()
    for key, value in metadata.items():
        key, value = str(key), str(value)
        # The PNG spec allows 1-79 Latin-1 characters in a keyword, no leading/trailing space.
        if not 1 <= len(key) <= 79 or key != key.strip():
            raise ValueError(f"PNG metadata key {key!r} must be 1-79 characters without "
                             "leading or trailing spaces")
        try:
            key.encode("latin-1")
        except UnicodeEncodeError as e:
            raise ValueError(f"PNG metadata key {key!r} must be Latin-1") from e
        try:
            value.encode("latin-1")
            info.add_text(key, value)
        except UnicodeEncodeError:
            info.add_itxt(key, value)
    return info


def save_png(path, rgb: np.ndarray, metadata: dict[str, str] | None = None) -> Path:
    """Write an image as PNG with text metadata, atomically.

    The image goes to a temporary file in the same folder, which is renamed over `path`
    only once it is complete: a crash or a full disk never leaves a half-written PNG and
    never destroys an existing file of that name.

    Args:
        path: destination; its folder is created if missing.
        rgb: pixels [H, W, 3] uint8 (or [H, W, 4] RGBA, or float in [0, 1], see to_uint8).
        metadata: text chunks {keyword: value}; values are stored as strings.

    Returns:
        the path written, as a Path.
    """
    path = Path(path)
    pixels = to_uint8(rgb)
    if pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    info = _png_info(metadata or {})
    # the file gets the mode open() would give (the umask's), not mkstemp's 0600
    with atomic_open(path) as f:
        Image.fromarray(pixels).save(f, format="PNG", pnginfo=info)
    return path


def render_still(render_rgb: Callable[[object], object], camera,
                 tile: int = TILE_SIDE) -> np.ndarray:
    """A still as 8-bit pixels, rendered in tiles when it is large.

    A render holds float buffers for every pixel (~64 bytes each); a 16k x 16k still
    would need 16 GiB at once. In tiles of `tile` x `tile` pixels (cameras cropped from
    `camera`, which render exactly those pixels of the full view) only the 8-bit image
    (3 bytes a pixel) is held whole.

    Args:
        render_rgb: renders one camera to an image [h, w, 3] (float in [0, 1] or uint8).
        camera: the full view (render.Camera).
        tile: tile side in pixels.

    Returns:
        uint8 [H, W, 3].
    """
    w, h = camera.width, camera.height
    if w * h <= tile * tile:
        return to_uint8(render_rgb(camera))
    out = np.empty((h, w, 3), dtype=np.uint8)
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            tw, th = min(tile, w - x0), min(tile, h - y0)
            out[y0:y0 + th, x0:x0 + tw] = to_uint8(render_rgb(camera.crop(x0, y0, tw, th)))
    return out


def screenshot_size_problem(width, height, available: int | None = None,
                            tiled: bool = False) -> str:
    """Why the viewer cannot take a screenshot of width x height pixels ("" when it can):
    whole, it needs a render's float buffers and the GL composite; `tiled`, only the
    8-bit images (viewer.frames.render_panes_tiled)."""
    try:
        check_image_size("screenshot", "size", width, height, tiled=tiled,
                         available=available)
    except LimitError as e:
        return f"screenshot not taken: {e.field} {e.value}: {e.limit}"
    return ""


def read_png_metadata(path) -> dict[str, str]:
    """The text chunks (tEXt, zTXt, iTXt) of a PNG file as {keyword: value}."""
    with Image.open(path) as im:
        im.load()  # text chunks after the image data are only seen once it is read
        return {str(k): str(v) for k, v in getattr(im, "text", {}).items()}


def timestamped_path(folder, prefix: str = "mipview", ext: str = ".png") -> Path:
    """A new file name `folder/<prefix>_<YYYYmmdd-HHMMSS><ext>` that is not taken.

    If the name exists (or was handed out earlier in this process, e.g. two screenshots in
    one second), a counter is added: `<prefix>_<stamp>_2<ext>`, `_3`, ... The folder is
    created if missing. Nothing is written: call save_png with the result.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if ext and not ext.startswith("."):
        ext = "." + ext
    stamp = time.strftime("%Y%m%d-%H%M%S")
    with _handed_out_lock:
        n = 1
        while True:
            name = f"{prefix}_{stamp}{ext}" if n == 1 else f"{prefix}_{stamp}_{n}{ext}"
            candidate = folder / name
            if not candidate.exists() and candidate.resolve() not in _handed_out:
                _handed_out.add(candidate.resolve())
                return candidate
            n += 1
