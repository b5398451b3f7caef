"""Reading a user's file into memory with errors that say what went wrong."""

from __future__ import annotations

import errno
import mmap
import stat
from pathlib import Path

from render.io.errors import GaussianFileError


def read_file_bytes(path: str | Path, what: str = "model file") -> bytes:
    """The whole content of a regular file, or a `GaussianFileError` saying why not.

    Args:
        path: the file.
        what: what the file should be, for the messages ("model file", "camera file").
    """
    path = Path(path)
    try:
        mode = path.stat().st_mode
        if stat.S_ISDIR(mode):
            raise GaussianFileError(path, f"is a directory, not a {what}{_dir_hint(path)}")
        if not stat.S_ISREG(mode):  # opening a FIFO blocks, a device may never end
            raise GaussianFileError(path, f"not a regular file, so not a {what}")
        with open(path, "rb") as f:
            data = f.read()
    except GaussianFileError:
        raise
    except MemoryError:
        raise GaussianFileError(path, "not enough memory to read the file") from None
    except OSError as e:
        raise _access_error(path, e, "read") from None
    if not data:
        raise GaussianFileError(path, f"the file is empty, not a {what}")
    return data


# Files at least this big are memory-mapped rather than read: a 700 MB model is then
# decoded straight from the page cache, without a 700 MB copy first.
MAP_MIN_BYTES = 16 * 2**20


def map_file_bytes(path: str | Path, what: str = "model file") -> bytes | mmap.mmap:
    """The content of a regular file: a read-only memory map for big files, else bytes.

    The same checks and errors as :func:`read_file_bytes`. A map supports what the
    readers use of bytes (len, slicing, find, the buffer protocol for numpy).
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if not path.is_file() or size < MAP_MIN_BYTES:
            return read_file_bytes(path, what)
        with open(path, "rb") as f:
            return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except GaussianFileError:
        raise
    except (OSError, ValueError) as e:
        raise _access_error(path, e, "map") from None


def _access_error(path: Path, e: Exception, verb: str) -> GaussianFileError:
    """The GaussianFileError of an OSError (or mmap's ValueError) met reading `path`."""
    if isinstance(e, FileNotFoundError):
        return GaussianFileError(path, "file not found")
    if isinstance(e, PermissionError):
        return GaussianFileError(path, "cannot read the file: permission denied")
    reason = getattr(e, "strerror", None) or (
        errno.errorcode.get(e.errno or 0, str(e)) if isinstance(e, OSError) else str(e))
    return GaussianFileError(path, f"cannot {verb} the file: {reason}")


def _dir_hint(folder: Path) -> str:
    """For an INRIA output folder, name the model file inside it."""
    try:
        iterations = sorted(
            (p for p in (folder / "point_cloud").glob("iteration_*") if p.is_dir()),
            key=lambda p: int(p.name.split("_")[-1]) if p.name.split("_")[-1].isdigit() else -1)
    except OSError:
        return ""
    for it in reversed(iterations):
        ply = it / "point_cloud.ply"
        if ply.is_file():
            return f" (did you mean {ply}?)"
    return ""
