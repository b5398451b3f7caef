"""The process's host memory: glibc's malloc settings for a frame loop, and the readout.

Every CPU frame allocates and frees tens of MiB (Gaussian-tile pairs, sort keys, images;
~40 MiB at 640 x 480 for the demo scene, more for larger models). Where those buffers
come from decides what a frame costs. Served by fresh mmap()s, as a fixed 256 KiB mmap
threshold did (the viewer's setting until 2026-11), every frame faults all its pages in
again: ~3,300 minor page faults a frame for the demo scene and ~4,800 for the 45k-
Gaussian donut at 640 x 480, ~4.5 ms and ~17 ms of CPU a frame. Served by the heap, the
pages stay mapped and the next frame reuses them.

glibc's defaults adapt its mmap and trim thresholds to the sizes freed so far, which
suits a frame loop once warm, but they also keep one arena per thread, where freed
frames of changing sizes (resizes, reduced-resolution frames while dragging,
screenshots) fragment the heaps and the resident set creeps up. So the viewer fixes
them: buffers up to 32 MiB (the ceiling of glibc's own adaptive threshold) come from the
heap, up to 256 MiB of free heap stays mapped, and two arenas serve all threads.
:func:`release_free` hands the free memory back when the viewer goes idle.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys

MMAP_THRESHOLD = 32 * 2**20  # bytes; larger buffers are mmapped, as glibc does anyway
TRIM_THRESHOLD = 256 * 2**20  # bytes of free heap kept mapped while frames stream
ARENA_MAX = 2
# mallopt parameters, from glibc's malloc.h.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8


@functools.cache
def _libc():
    """glibc, or None where there is none (macOS, Windows, musl...)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def tame_malloc() -> bool:
    """Set glibc's malloc up for a frame loop (see the module docstring); call it before
    the render threads start. Returns whether all three settings were applied."""
    libc = _libc()
    if libc is None:
        return False
    return all([bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)),
                bool(libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)),
                bool(libc.mallopt(_M_ARENA_MAX, ARENA_MAX))])


def release_free() -> bool:
    """Give the heap's free pages back to the OS (malloc_trim): for when no frames stream,
    as the next frame would fault them in again. Takes ~1 ms. Returns whether any were."""
    libc = _libc()
    return bool(libc.malloc_trim(0)) if libc is not None else False


def resident_mib() -> float:
    """This process's resident memory in MiB (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return 0.0


def memory_text(device) -> str:
    """Device memory in use: CUDA allocator, else the process's resident set."""
    if getattr(device, "type", "cpu") == "cuda":
        import torch

        return (f"CUDA {torch.cuda.memory_allocated() / 2**20:,.0f} MiB allocated, "
                f"{torch.cuda.memory_reserved() / 2**20:,.0f} MiB reserved")
    return f"RSS {resident_mib():,.0f} MiB"
