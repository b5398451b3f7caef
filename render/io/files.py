"""Reading a user's file into memory with errors that say what went wrong."""

from __future__ import annotations

import errno
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
    except FileNotFoundError:
        raise GaussianFileError(path, "file not found") from None
    except PermissionError:
        raise GaussianFileError(path, "cannot read the file: permission denied") from None
    except MemoryError:
        raise GaussianFileError(path, "not enough memory to read the file") from None
    except OSError as e:
        reason = e.strerror or errno.errorcode.get(e.errno or 0, str(e))
        raise GaussianFileError(path, f"cannot read the file: {reason}") from None
    if not data:
        raise GaussianFileError(path, f"the file is empty, not a {what}")
    return data


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
