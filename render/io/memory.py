"""How much host memory a loader may still take, so a model too big is refused up front."""

from __future__ import annotations

import os
from pathlib import Path

MEMINFO = Path("/proc/meminfo")
# A test (or a user on a shared machine) can lower the ceiling: bytes, e.g. "2e9".
LIMIT_ENV = "MIPVIEW_MEMORY_LIMIT"


def available_memory() -> int | None:
    """Bytes that can be allocated without swapping, or None where unknown.

    Linux's MemAvailable (free memory plus page cache that can be dropped), capped by
    $MIPVIEW_MEMORY_LIMIT when set; elsewhere only the variable, or None.
    """
    free: int | None = None
    try:
        for line in MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                free = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError, IndexError):
        free = None
    limit = os.environ.get(LIMIT_ENV)
    if limit:
        try:
            cap = int(float(limit))
        except ValueError:
            cap = None
        if cap is not None:
            free = cap if free is None else min(free, cap)
    return free
