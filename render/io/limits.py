"""Refusing sizes a file declares before anything of that size is allocated.

Compressed formats (.spz, .sog) can declare a Gaussian count that their bytes, once
decompressed, would not fit in memory: a few kB of ZSTD or lossless WebP can stand for
gigabytes. Readers call :func:`check_count` with the count a header declares before they
decompress or decode anything.
"""

from __future__ import annotations

import os
from pathlib import Path

from render.io.errors import GaussianFileError

# 2^28 Gaussians: no real scene is near it (the largest public ones hold ~10^8), and a
# 16383 x 16383 SOG texture, the biggest WebP, holds this many texels.
MAX_GAUSSIANS = 1 << 28


def available_memory() -> int:
    """Bytes of memory the system can still hand out (MemAvailable), or total RAM."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def bytes_per_gaussian(sh_degree: int) -> int:
    """float32 bytes one loaded Gaussian takes: mean, quat, scales, opacity, SH."""
    return 4 * (3 + 4 + 3 + 1 + 3 * (sh_degree + 1) ** 2)


def check_count(path: Path, count: int, sh_degree: int, fmt: str,
                extra_bytes_each: int = 0) -> None:
    """Refuse an absurd or unaffordable declared Gaussian count.

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
