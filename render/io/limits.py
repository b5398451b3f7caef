"""Bounds on what users hand us: JSON parsed with limits, image sizes and frame counts checked
against absolute limits and against the memory the machine has, before anything is allocated.

    data = load_json_bounded(path, what="camera path")      # LimitError / JSON errors named
    check_image_size(path, "render_width x render_height", w, h)
    check_frame_count(path, "fps x seconds", n)

A Gaussian count a compressed file (.spz, .sog) declares is checked with `check_count`
before anything is decompressed: a few kB of ZSTD or lossless WebP can stand for gigabytes.

Every error of the user-size checks is a `LimitError` (a ValueError) whose message names
the file, the field, the value and the limit, so a command prints it on one line and exits
non-zero.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import numpy as np

from render.io.errors import GaussianFileError

# 2^28 Gaussians: no real scene is near it (the largest public ones hold ~10^8), and a
# 16383 x 16383 SOG texture, the biggest WebP, holds this many texels.
MAX_GAUSSIANS = 1 << 28
# A JSON file a user gives (camera path, cameras.json, transforms.json, manifest): 256 MiB
# is far beyond any real one (a 10^5-frame camera path is ~60 MB).
MAX_JSON_BYTES = 256 * 1024 * 1024
# Real files nest 4-5 levels deep; Python's parser recurses per level.
MAX_JSON_DEPTH = 64
# Absolute image limits, whatever the memory: 65536 a side, 2^30 pixels (32k x 32k).
MAX_SIDE = 65536
MAX_PIXELS = 1 << 30
# A video frame: H.264's largest level (6.2) is 8192 pixels wide; ffmpeg refuses much more.
MAX_VIDEO_SIDE = 8192
# A camera path of 10^6 frames is 9 hours at 30 fps; more is a typo (fps x seconds).
MAX_FRAMES = 1_000_000
# Bytes a pixel of one full (untiled) render holds at its peak: rgb, alpha, depth and the
# rasterizer's per-pixel buffers in float32, and the 8-bit copy.
RENDER_BYTES_PER_PIXEL = 64
# Pixels rendered at once when a large still is rendered in tiles.
TILE_SIDE = 2048
# The 8-bit image a tiled still is assembled into, and PNG encoding's working copy.
STILL_BYTES_PER_PIXEL = 3 * 2


class LimitError(ValueError):
    """A user-given size, count or file beyond what mipview can or will handle.

    Attributes:
        source: the file or option it came from ("--scale", "cam.json").
        field: the field ("render_width", "fps x seconds").
        value: the value given.
        limit: the limit it broke, in words.
    """

    def __init__(self, source, field: str, value, limit: str):
        self.source, self.field, self.value, self.limit = str(source), field, value, limit
        super().__init__(f"{self.source}: {field} = {value} is beyond the limit: {limit}")


# ---------------------------------------------------------------------------------------
# Memory
# ---------------------------------------------------------------------------------------
# A test (or a user on a shared machine) can lower the memory ceiling: bytes, e.g. "2e9".
MEMORY_LIMIT_ENV = "MIPVIEW_MEMORY_LIMIT"


def available_memory() -> int:
    """Bytes the process can still allocate: MemAvailable of /proc/meminfo, capped by a
    cgroup memory limit when one is set and by $MIPVIEW_MEMORY_LIMIT; without /proc, the
    physical memory."""
    avail = None
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError):
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            avail = 1 << 34
    for cg in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(cg).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < (1 << 60):
            used = _cgroup_used(cg)
            avail = min(avail, max(0, int(text) - used))
    cap = os.environ.get(MEMORY_LIMIT_ENV)
    if cap:
        try:
            avail = min(avail, int(float(cap)))
        except ValueError:
            pass
    return int(avail)


def _cgroup_used(limit_file: str) -> int:
    usage = limit_file.replace("memory.max", "memory.current").replace(
        "limit_in_bytes", "usage_in_bytes")
    try:
        return int(Path(usage).read_text().strip())
    except (OSError, ValueError):
        return 0


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def check_memory(source, field: str, value, need_bytes: float,
                 available: int | None = None) -> None:
    """Raise LimitError when a job needs more bytes than the machine has available."""
    have = available_memory() if available is None else available
    if need_bytes > have:
        raise LimitError(source, field, value,
                         f"needs about {_gib(need_bytes)} of memory, {_gib(have)} available")


# ---------------------------------------------------------------------------------------
# Sizes and counts
# ---------------------------------------------------------------------------------------
def check_image_size(source, field: str, width, height, tiled: bool = False,
                     available: int | None = None,
                     max_side: int = MAX_SIDE) -> tuple[int, int]:
    """A render size checked before anything is allocated; returns (width, height) as ints.

    Args:
        source: the file or option the size came from, for the message.
        field: the field(s) it came from ("render_width x render_height", "--size").
        width, height: pixels (any number; non-finite, fractional or < 1 is an error).
        tiled: the image is rendered in TILE_SIDE tiles and assembled as 8-bit, so only
            the 8-bit image must fit in memory, not a full render's float buffers.
        available: bytes available (default: measured), for tests.
        max_side: the longest side allowed (MAX_VIDEO_SIDE for a video's frames).
    """
    value = f"{width} x {height}"
    for v in (width, height):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise LimitError(source, field, value, "sizes are whole numbers of pixels")
        if not math.isfinite(v) or v != int(v) or v < 1:
            raise LimitError(source, field, value, "sizes are whole numbers of pixels, >= 1")
    w, h = int(width), int(height)
    if max(w, h) > max_side:
        what = " in a video (H.264)" if max_side == MAX_VIDEO_SIDE else ""
        raise LimitError(source, field, value, f"at most {max_side} pixels a side{what}")
    if w * h > MAX_PIXELS:
        raise LimitError(source, field, value, f"at most {MAX_PIXELS} pixels "
                         f"({int(math.sqrt(MAX_PIXELS))} x {int(math.sqrt(MAX_PIXELS))})")
    per_pixel = STILL_BYTES_PER_PIXEL if tiled else RENDER_BYTES_PER_PIXEL
    need = w * h * per_pixel
    if tiled:
        need += TILE_SIDE * TILE_SIDE * RENDER_BYTES_PER_PIXEL
    check_memory(source, field, value, need, available)
    return w, h


def needs_tiles(width: int, height: int) -> bool:
    """True when a still is large enough to be rendered in tiles."""
    return width * height > TILE_SIDE * TILE_SIDE


def check_frame_count(source, field: str, n) -> int:
    """A number of frames (fps x seconds) checked against MAX_FRAMES; returns it as int."""
    if not (isinstance(n, (int, float)) and math.isfinite(n)) or n > MAX_FRAMES:
        raise LimitError(source, field, n, f"at most {MAX_FRAMES} frames")
    return max(1, int(round(n)))


# ---------------------------------------------------------------------------------------
# JSON
# ---------------------------------------------------------------------------------------
class JSONLimitError(LimitError):
    """A JSON file too big, too deeply nested or holding a number that is not finite."""


_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)


def json_depth(data: bytes) -> int:
    """The deepest nesting of arrays and objects in JSON text, without recursing."""
    stripped = _STRING.sub(b'""', data)
    a = np.frombuffer(stripped, dtype=np.uint8)
    step = (np.isin(a, (ord("["), ord("{"))).astype(np.int64)
            - np.isin(a, (ord("]"), ord("}"))).astype(np.int64))
    return int(np.cumsum(step).max()) if len(step) else 0


def _finite_float(source):
    def parse(text: str) -> float:
        v = float(text)
        if not math.isfinite(v):
            raise JSONLimitError(source, "a number", text, "numbers must be finite")
        return v
    return parse


def _bounded_int(source):
    def parse(text: str) -> int:
        if len(text.lstrip("-")) > 18:  # beyond int64: no size, count or id is this large
            raise JSONLimitError(source, "a number", text[:24] + "...",
                                 "whole numbers of at most 18 digits")
        return int(text)
    return parse


def _no_constant(source):
    def parse(text: str):
        raise JSONLimitError(source, "a number", text, "numbers must be finite "
                             "(NaN and Infinity are not JSON)")
    return parse


def parse_json_bounded(data: bytes | str, source, max_bytes: int = MAX_JSON_BYTES,
                       max_depth: int = MAX_JSON_DEPTH, nonfinite: str = "error"):
    """Parse JSON text with limits on size and depth; NaN, Infinity, numbers that overflow
    to infinity and integers past 18 digits raise JSONLimitError naming `source`.

    Args:
        nonfinite: "error" (the default) refuses NaN and infinities; "keep" lets them
            through as floats for a reader whose own checks name the field they sit in.

    Raises:
        JSONLimitError for a limit, json.JSONDecodeError / UnicodeDecodeError for text
        that is not JSON.
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    if len(data) > max_bytes:
        raise JSONLimitError(source, "file size", f"{len(data)} bytes",
                             f"at most {max_bytes} bytes")
    depth = json_depth(data)
    if depth > max_depth:
        raise JSONLimitError(source, "nesting depth", depth,
                             f"JSON nested too deeply: at most {max_depth} levels")
    text = data.decode("utf-8-sig")
    if nonfinite == "keep":
        return json.loads(text, parse_int=_bounded_int(source))
    return json.loads(text, parse_float=_finite_float(source), parse_int=_bounded_int(source),
                      parse_constant=_no_constant(source))


def load_json_bounded(path, what: str = "JSON file", max_bytes: int = MAX_JSON_BYTES,
                      max_depth: int = MAX_JSON_DEPTH, nonfinite: str = "error"):
    """Read and parse a JSON file with the limits of parse_json_bounded; the size is
    checked before the file is read. OSError is left to the caller."""
    path = Path(path)
    size = path.stat().st_size
    if size > max_bytes:
        raise JSONLimitError(path, f"{what} size", f"{size} bytes", f"at most {max_bytes} bytes")
    with open(path, "rb") as f:
        data = f.read(max_bytes + 1)
    return parse_json_bounded(data, path, max_bytes, max_depth, nonfinite)


# ---------------------------------------------------------------------------------------
# Gaussian counts a file declares
# ---------------------------------------------------------------------------------------
def bytes_per_gaussian(sh_degree: int) -> int:
    """float32 bytes one loaded Gaussian takes: mean, quat, scales, opacity, SH."""
    return 4 * (3 + 4 + 3 + 1 + 3 * (sh_degree + 1) ** 2)


def check_count(path: Path, count: int, sh_degree: int, fmt: str,
                extra_bytes_each: int = 0) -> None:
    """Refuse an absurd or unaffordable declared Gaussian count (GaussianFileError).

    Args:
        path: the file, for the message.
        count: the count the file declares.
        sh_degree: its SH degree (0..3).
        fmt: the format's name, for the message (".spz", ".sog").
        extra_bytes_each: decoder working memory per Gaussian on top of the result.
    """
    if count <= 0:
        raise GaussianFileError(path, f"{fmt}: the file declares {count} Gaussians")
    if count > MAX_GAUSSIANS:
        raise GaussianFileError(
            path, f"{fmt}: the file declares {count:,} Gaussians, more than any real scene "
            f"holds (at most {MAX_GAUSSIANS:,} are accepted)")
    need = count * (bytes_per_gaussian(sh_degree) + extra_bytes_each)
    have = available_memory()
    if need > have:
        raise GaussianFileError(
            path, f"{fmt}: the file declares {count:,} Gaussians, which need "
            f"{need / 2**30:.1f} GiB to load; only {have / 2**30:.1f} GiB is available")
